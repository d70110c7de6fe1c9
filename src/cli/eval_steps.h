/* diffusion eval --metric steps: sample quality against the number of sampling steps, for
 * several samplers, as a table and a plot. */
#pragma once

#include "diffusion.h"

typedef struct {
    dm_pipeline *p;               /* the model (points) */
    const dm_dataset *ref_a, *ref_b; /* two independent held-out draws (the floor) */
    int64_t n;                    /* samples per point of the curve */
    const char *samplers;         /* comma-separated sampler names */
    const char *steps;            /* comma-separated step counts */
    const char *plot;             /* PNG of the MMD ratio against steps, or NULL */
    uint64_t seed;
    int json;
} cli_steps_args;

/* Returns the process exit status; errors are printed. */
int cli_eval_steps(const cli_steps_args *a);
