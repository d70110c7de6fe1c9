/* Records a few points of the reverse process at chosen steps, for the strip picture. */
#pragma once

#include "diffusion.h"

#define CLI_SNAPSHOTS 7

typedef struct {
    int32_t steps[CLI_SNAPSHOTS]; /* i recorded, T first, 0 last: planned by cli_frame_steps,
                                   * then the i a strided sampler actually reached (the first
                                   * <= plan) */
    int taken[CLI_SNAPSHOTS];
    float *frames;                /* (CLI_SNAPSHOTS, n, dim) standardised values */
    int64_t n, dim;
    const dm_normalizer *norm;
    void (*progress)(void *ctx, int64_t done); /* optional: called every step */
    void *progress_ctx;
    int32_t T;
} cli_snapshots;

/* Steps i (x_i; i = T pure noise, 0 the sample) for `frames` pictures of the reverse process:
 * T first, 0 last, and between them evenly spaced in log-SNR from x_T's to x_1's. Evenly in i,
 * most frames of a linear or cosine schedule look like the same noise and the shape appears
 * only in the last; in log-SNR the frames span its emergence. */
void cli_frame_steps(int32_t *steps, int frames, const dm_schedule *s);
/* Plans snapshots by cli_frame_steps for up to n points; NULL frames on failure. */
int cli_snapshots_init(cli_snapshots *s, const dm_schedule *sched, int64_t n, int64_t dim,
                       const dm_normalizer *norm);
void cli_snapshots_observe(void *ctx, int32_t i, const float *x, int64_t B, int64_t dim);
/* Writes the strip PNG in data units. */
dm_status cli_snapshots_plot(cli_snapshots *s, const char *path, dm_error *err);
void cli_snapshots_free(cli_snapshots *s);
