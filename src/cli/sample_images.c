/* diffusion sample for image models: a PNG grid, optionally every sample as its own PNG or all
 * of them in one NPY file, and a strip of the reverse process for a few samples. */
#include "common.h"
#include "parallel.h"
#include "progress.h"
#include "sample_images.h"
#include "sample_split.h"
#include "snapshots.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STRIP_FRAMES 10 /* columns of the strip: x_T, eight steps between, x_0 */

typedef struct {
    cli_progress *bar;
    int32_t T;
    int64_t chunk;     /* which chunk of DM_PIPELINE_IMAGE_CHUNK images is being drawn */
    int64_t strip_n;   /* samples recorded for the strip (all from the first chunk) */
    int64_t dim;
    int32_t steps[STRIP_FRAMES]; /* the frames' steps i; a strided sampler's first i <= each */
    int taken[STRIP_FRAMES];
    float *frames;     /* (strip_n, STRIP_FRAMES, dim) */
    int started;       /* a chunk has begun: the next i = T starts another */
} observer;

static void observe(void *ctx, int32_t i, const float *x, int64_t B, int64_t dim) {
    observer *o = ctx;
    /* each chunk starts at i = T; a diffusers scheduler's last step need not be i = 0 */
    if (i == o->T && o->started++) o->chunk++;
    if (i < o->T) cli_progress_update(o->bar, o->chunk * o->T + (o->T - i), NULL);
    if (o->frames && o->chunk == 0)
        for (int f = 0; f < STRIP_FRAMES; f++) {
            if (o->taken[f] || i > o->steps[f]) continue;
            o->taken[f] = 1;
            for (int64_t b = 0; b < o->strip_n && b < B; b++)
                memcpy(o->frames + (b * STRIP_FRAMES + f) * dim, x + b * dim,
                       (size_t)dim * sizeof(float));
        }
}

/* Columns of a near-square grid; with samples cycling through `classes` labels, a multiple of
 * it, so each column holds one class and the classes run in order across each group of
 * columns (1,000 samples of 10 classes: 30 columns, 34 rows, not 10 columns of 100). */
static int grid_columns(int64_t n, int classes) {
    int cols = 1;
    while ((int64_t)cols * cols < n) cols++;
    if (classes < 1) return cols;
    int64_t groups = (int64_t)llround((double)cols / classes);
    if (groups < 1) groups = 1;
    return (int)(groups * classes);
}

/* Writes each sample as DIR/sample_00000.png, ... */
static dm_status write_each(const char *dir, const float *x, int64_t n, int64_t c, int64_t h,
                            int64_t w, dm_error *err) {
    dm_status st = cli_make_dirs(dir, err);
    char path[4200];
    for (int64_t k = 0; k < n && !st; k++) {
        snprintf(path, sizeof path, "%s/sample_%05lld.png", dir, (long long)k);
        st = dm_image_write_png(path, x + k * c * h * w, c, h, w, 1, err);
    }
    return st;
}

int cli_sample_images(dm_pipeline *p, const cli_image_sample_args *a, dm_error *err) {
    int64_t c, h, w;
    dm_model_image_shape(dm_pipeline_model(p), &c, &h, &w);
    const int64_t dim = c * h * w, n = a->n;
    const int32_t T = dm_pipeline_schedule(p)->T;
    float *x = malloc((size_t)(n * dim) * sizeof *x);
    if (!x) {
        dm_error_set(err, DM_ERR_NOMEM, "cannot allocate %lld samples", (long long)n);
        return cli_fail(err);
    }
    cli_progress bar;
    /* this rank's chunks; over MPI rank 0's first is chunk 0, the strip's */
    const int64_t chunks = cli_sample_chunks_here(p, n);
    observer o = {.bar = &bar, .T = T, .dim = dim};
    if (a->strip) {
        o.strip_n = n < 8 ? n : 8;
        o.frames = calloc((size_t)(o.strip_n * STRIP_FRAMES * dim), sizeof(float));
        cli_frame_steps(o.steps, STRIP_FRAMES, dm_pipeline_schedule(p));
    }
    if (cli_parallel_setup_done(0, cli_parallel_fingerprint_model(dm_pipeline_model(p)), "model",
                                "sampling")) {
        free(o.frames);
        free(x);
        return 1; /* another rank failed, and said so */
    }
    dm_sample_options so = a->options;
    so.observe = observe;
    so.observe_ctx = &o;
    cli_progress_start(&bar, "sample", "steps", chunks * T, a->quiet);
    const double t0 = cli_now();
    dm_status st = cli_sample_split(p, x, n, &so, a->guidance, err);
    const double seconds = cli_now() - t0;
    cli_progress_finish(&bar);
    if (!cli_parallel_is_root()) { /* rank 0 writes and reports */
        free(o.frames);
        free(x);
        return st ? 1 : 0;
    }
    if (!st) {
        st = dm_image_write_grid(a->grid, x, n, c, h, w, grid_columns(n, a->classes), 2,
                                 a->scale, err);
    }
    if (!st && a->each) st = write_each(a->each, x, n, c, h, w, err);
    if (!st && a->npy) st = dm_image_npy_save(a->npy, x, n, c, h, w, err);
    /* the strip's last frame is x_0, whatever step the sampler ended on */
    for (int64_t b = 0; o.frames && b < o.strip_n; b++)
        memcpy(o.frames + (b * STRIP_FRAMES + STRIP_FRAMES - 1) * dim, x + b * dim,
               (size_t)dim * sizeof(float));
    if (!st && a->strip)
        st = dm_image_write_grid(a->strip, o.frames, o.strip_n * STRIP_FRAMES, c, h, w,
                                 STRIP_FRAMES, 2, a->scale, err);
    free(o.frames);
    free(x);
    if (st) return cli_sample_fail(err);
    const int64_t evals = cli_guided_evaluations(p, &a->options, a->guidance);
    const double evals_per_s = (double)n * (double)evals / seconds;
    if (a->json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddNumberToObject(j, "samples", (double)n);
        cJSON_AddNumberToObject(j, "network_evaluations", (double)evals);
        cJSON_AddNumberToObject(j, "seconds", seconds);
        cJSON_AddNumberToObject(j, "image_evaluations_per_s", evals_per_s);
        cJSON_AddStringToObject(j, "grid", a->grid);
        cJSON_AddNumberToObject(j, "grid_columns", grid_columns(n, a->classes));
        if (cli_parallel_size() > 1) cJSON_AddNumberToObject(j, "ranks", cli_parallel_size());
        if (a->strip) {
            /* the steps i of the strip's frames (x_i; T is pure noise, 0 the sample) */
            cJSON *steps = cJSON_AddArrayToObject(j, "strip_steps");
            for (int f = 0; f < STRIP_FRAMES; f++)
                cJSON_AddItemToArray(steps, cJSON_CreateNumber(f == STRIP_FRAMES - 1 ? 0
                                                                : o.steps[f]));
        }
        cli_print_json(j);
    } else {
        printf("drew %lld images (%lld network evaluations each) in %.1f s%s (%.1f image "
               "evaluations/s); wrote %s%s%s%s%s%s%s\n",
               (long long)n, (long long)evals, seconds, cli_ranks_note(), evals_per_s, a->grid,
               a->each ? ", " : "",
               a->each ? a->each : "", a->npy ? ", " : "", a->npy ? a->npy : "",
               a->strip ? ", " : "", a->strip ? a->strip : "");
    }
    return 0;
}
