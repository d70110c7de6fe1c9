/* Records a few points of the reverse process at chosen steps, for the strip picture. */
#pragma once

#include "diffusion.h"

#define CLI_SNAPSHOTS 7

typedef struct {
    int32_t steps[CLI_SNAPSHOTS]; /* i recorded, T first, 0 last: planned evenly, then the
                                   * i a strided sampler actually reached (the first <= plan) */
    int taken[CLI_SNAPSHOTS];
    float *frames;                /* (CLI_SNAPSHOTS, n, dim) standardised values */
    int64_t n, dim;
    const dm_normalizer *norm;
    void (*progress)(void *ctx, int64_t done); /* optional: called every step */
    void *progress_ctx;
    int32_t T;
} cli_snapshots;

/* Plans snapshots at i = T, evenly spaced, 0 for up to n points; NULL frames on failure. */
int cli_snapshots_init(cli_snapshots *s, int32_t T, int64_t n, int64_t dim,
                       const dm_normalizer *norm);
void cli_snapshots_observe(void *ctx, int32_t i, const float *x, int64_t B, int64_t dim);
/* Writes the strip PNG in data units. */
dm_status cli_snapshots_plot(cli_snapshots *s, const char *path, dm_error *err);
void cli_snapshots_free(cli_snapshots *s);
