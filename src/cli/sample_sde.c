#include "sample_sde.h"
#include "common.h"
#include "parallel.h"
#include "progress.h"
#include "sample_split.h"

#include <stdio.h>
#include <stdlib.h>

typedef struct {
    cli_progress *bar;
} observer;

/* progress in the fraction of time covered, 1 -> eps (RK45's steps are not known ahead) */
static void observe(void *ctx, double t, const float *x, int64_t B, int64_t dim) {
    observer *o = ctx;
    cli_progress_update(o->bar, (int64_t)((1.0 - t) * 1000.0 + 0.5), NULL);
}

int cli_sample_sde(dm_pipeline *p, const cli_sde_sample_args *a, dm_error *err) {
    int64_t c = 0, h = 0, w = 0;
    const int images = dm_model_image_shape(dm_pipeline_model(p), &c, &h, &w);
    const int64_t D = dm_pipeline_dim(p), n = a->n;
    float *x = malloc((size_t)(n * D) * sizeof *x);
    /* over MPI every rank checks it has the same model; one that could not allocate fails all */
    if (cli_parallel_setup_done(!x, cli_parallel_fingerprint_model(dm_pipeline_model(p)),
                                "model", "sampling")) {
        if (!x) {
            dm_error_set(err, DM_ERR_NOMEM, "cannot allocate %lld samples", (long long)n);
            cli_fail(err);
        }
        free(x);
        return 1;
    }
    cli_progress bar;
    observer o = {.bar = &bar};
    dm_sde_sample_options so = a->options;
    so.observe = observe;
    so.observe_ctx = &o;
    dm_sde_sample_stats stats = {0};
    cli_progress_start(&bar, "sample", "/1000 of t", 1000, a->quiet);
    const double t0 = cli_now();
    dm_status st = cli_sample_split_sde(p, x, n, &so, &stats, err);
    const double seconds = cli_now() - t0;
    cli_progress_finish(&bar);
    if (!cli_parallel_is_root()) { /* rank 0 writes and reports */
        free(x);
        return st ? 1 : 0;
    }
    /* the SDE sampled: the model's own, or the VP SDE a discrete model discretises */
    const dm_train_config *tc = dm_pipeline_train_config(p);
    const char *sde_name = tc->sde_training ? dm_sde_kind_name(tc->sde.kind) : "vp";
    if (!st && images) {
        int cols = 1;
        while ((int64_t)cols * cols < n) cols++;
        st = dm_image_write_grid(a->grid, x, n, c, h, w, cols, 2, a->scale, err);
        if (!st && a->npy) st = dm_image_npy_save(a->npy, x, n, c, h, w, err);
    } else if (!st) {
        dm_dataset samples = {.x = x, .n = n, .dim = D};
        st = dm_dataset_save(&samples, a->out, err);
        if (!st && a->plot)
            st = dm_plot_scatter(a->plot, a->background ? a->background->x : NULL,
                                 a->background ? a->background->n : 0, x, n, D,
                                 "samples over data", err);
    }
    free(x);
    if (st) return cli_sample_fail(err);
    const char *written = images ? a->grid : a->out;
    if (a->json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddNumberToObject(j, "samples", (double)n);
        cJSON_AddStringToObject(j, "sde", sde_name);
        cJSON_AddStringToObject(j, "sde_sampler", dm_sde_sampler_name(a->options.sampler));
        cJSON_AddNumberToObject(j, "network_evaluations", (double)stats.score_evals);
        cJSON_AddNumberToObject(j, "steps", stats.steps);
        cJSON_AddNumberToObject(j, "rejected_steps", stats.rejected);
        cJSON_AddNumberToObject(j, "seconds", seconds);
        cJSON_AddStringToObject(j, images ? "grid" : "out", written);
        cli_print_json(j);
    } else {
        printf("drew %lld samples with the %s SDE's %s sampler (%lld network evaluations, %d "
               "steps) in %.1f s%s; wrote %s\n", (long long)n, sde_name,
               dm_sde_sampler_name(a->options.sampler), (long long)stats.score_evals,
               (int)stats.steps, seconds, cli_ranks_note(), cli_safe(written));
    }
    return 0;
}
