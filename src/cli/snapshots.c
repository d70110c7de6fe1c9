#include "snapshots.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* log(alpha_bar / (1 - alpha_bar)) of x_i, i >= 1 */
static double log_snr(const dm_schedule *s, int32_t i) {
    const double ab = s->alpha_bar[i - 1];
    return log(ab) - log1p(-ab);
}

void cli_frame_steps(int32_t *steps, int frames, const dm_schedule *s) {
    const int32_t T = s->T;
    const double first = log_snr(s, T), last = log_snr(s, 1);
    steps[0] = T;
    int32_t i = T;
    for (int k = 1; k < frames - 1; k++) {
        const double target = first + (last - first) * k / (frames - 1);
        /* log-SNR rises as i falls: the largest i at or above the target */
        while (i > 1 && log_snr(s, i) < target) i--;
        steps[k] = i;
    }
    steps[frames - 1] = 0;
}

int cli_snapshots_init(cli_snapshots *s, const dm_schedule *sched, int64_t n, int64_t dim,
                       const dm_normalizer *norm) {
    memset(s, 0, sizeof *s);
    s->T = sched->T;
    s->n = n;
    s->dim = dim;
    s->norm = norm;
    cli_frame_steps(s->steps, CLI_SNAPSHOTS, sched);
    s->frames = calloc((size_t)(CLI_SNAPSHOTS * n * dim), sizeof(float));
    return s->frames != NULL;
}

void cli_snapshots_observe(void *ctx, int32_t i, const float *x, int64_t B, int64_t dim) {
    cli_snapshots *s = ctx;
    for (int k = 0; k < CLI_SNAPSHOTS; k++)
        if (!s->taken[k] && i <= s->steps[k]) {
            s->taken[k] = 1;
            s->steps[k] = i;
            int64_t n = B < s->n ? B : s->n;
            memcpy(s->frames + (size_t)k * s->n * s->dim, x, (size_t)(n * dim) * sizeof(float));
        }
    if (s->progress) s->progress(s->progress_ctx, s->T - i);
}

dm_status cli_snapshots_plot(cli_snapshots *s, const char *path, dm_error *err) {
    char labels[CLI_SNAPSHOTS][32];
    const char *label_ptrs[CLI_SNAPSHOTS];
    for (int k = 0; k < CLI_SNAPSHOTS; k++) {
        /* observer index i is the step just taken; x_i in the paper's 1-based t */
        if (s->steps[k] == s->T) snprintf(labels[k], sizeof labels[k], "x_T (t = %d)", s->T);
        else if (s->steps[k] == 0) snprintf(labels[k], sizeof labels[k], "x_0");
        else snprintf(labels[k], sizeof labels[k], "t = %d", s->steps[k]);
        label_ptrs[k] = labels[k];
        dm_normalizer_invert(s->norm, s->frames + (size_t)k * s->n * s->dim, s->n);
    }
    return dm_plot_strip(path, s->frames, CLI_SNAPSHOTS, s->n, s->dim, label_ptrs, err);
}

void cli_snapshots_free(cli_snapshots *s) {
    free(s->frames);
    s->frames = NULL;
}
