/* The image branch of diffusion sample. */
#pragma once

#include "diffusion.h"

typedef struct {
    int64_t n;
    dm_sample_options options;
    const dm_guidance *guidance; /* classes and guidance, or NULL */
    int classes;       /* labels cycle through this many classes (--class all), else 0 */
    const char *grid;  /* PNG grid of all samples */
    const char *each;  /* folder for one PNG per sample, or NULL */
    const char *npy;   /* NPY file of all samples (uint8, n x c x h x w), or NULL */
    const char *strip; /* PNG of the reverse process for up to 8 samples, or NULL */
    int scale;         /* pixels per image pixel in the PNGs */
    int quiet, json;
} cli_image_sample_args;

/* Draws, writes and reports; returns the exit status. */
int cli_sample_images(dm_pipeline *p, const cli_image_sample_args *a, dm_error *err);
