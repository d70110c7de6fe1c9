/* diffusion eval --metric accuracy|fid|prec-recall|guidance: image quality through an
 * evaluation classifier (eval_images.c). */
#pragma once

#include "diffusion.h"

typedef struct {
    const char *metric;     /* accuracy, fid, prec-recall, guidance */
    const char *classifier; /* the evaluation classifier's folder (required) */
    const char *model;      /* a diffusion checkpoint to draw from, or NULL */
    const char *samples;    /* or an NPY of images */
    const char *data;       /* reference images (NULL: fashion-mnist-test) */
    const char *real;       /* real images judged as the samples are, the floor (NULL:
                             * fashion-mnist, the training split) */
    const char *class_arg;  /* classes of the samples: K or "all" (NULL: all when conditional) */
    const char *guide_classifier; /* a noisy classifier for classifier guidance, or NULL */
    double cfg_scale, classifier_scale;
    const char *scales, *gammas; /* guidance: comma-separated w and gamma values */
    const char *sampler;
    int32_t steps;
    int64_t n;              /* samples drawn */
    int k;                  /* neighbours of precision/recall */
    uint64_t seed;
    const char *plot;       /* guidance: PNG of accuracy and FID against the scale, or NULL */
    int json;
} cli_image_eval_args;

/* Returns the process exit status; errors are printed. */
int cli_eval_images(const cli_image_eval_args *a);
