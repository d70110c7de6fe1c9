/* diffusion sample --sde-sampler: a trained model's samples from a continuous-time sampler of
 * the VP SDE its linear schedule discretises (dm_pipeline_sde_sample). */
#pragma once

#include "diffusion.h"

typedef struct {
    int64_t n;
    dm_sde_sample_options options;
    const char *out;  /* points: CSV or NPY */
    const char *plot; /* points: scatter plot, or NULL */
    const dm_dataset *background; /* drawn under the plot, or NULL */
    const char *grid; /* images: PNG grid */
    const char *npy;  /* images: uint8 NPY, or NULL */
    int scale;        /* images: pixels per image pixel */
    int quiet, json;
} cli_sde_sample_args;

/* Draws, writes and reports; returns the exit status. */
int cli_sample_sde(dm_pipeline *p, const cli_sde_sample_args *a, dm_error *err);
