#include "previews.h"

#include <stdio.h>
#include <stdlib.h>

#define PREVIEW_IMAGES 64  /* an 8 x 8 grid (a conditional model: a column per class) */
#define PREVIEW_POINTS 2000

dm_status cli_preview_write(const dm_trainer *tr, const char *dir, int steps, dm_error *err) {
    char path[4300];
    snprintf(path, sizeof path, "%s/previews", dir);
    dm_status st = cli_make_dirs(path, err);
    if (st) return st;
    snprintf(path, sizeof path, "%s/previews/step-%lld.png", dir,
             (long long)dm_trainer_step_count(tr));
    dm_pipeline *p = NULL;
    if ((st = dm_trainer_pipeline(tr, &p, err))) return st;
    int64_t c = 0, h = 0, w = 0;
    const int images = dm_model_image_shape(dm_pipeline_model(p), &c, &h, &w);
    const int64_t n = images ? PREVIEW_IMAGES : PREVIEW_POINTS, D = dm_pipeline_dim(p);
    const int sde = dm_trainer_config(tr)->sde_training;
    const int K = sde ? 0 : dm_trainer_config(tr)->num_classes;
    dm_sample_options so;
    dm_sample_options_default(&so);
    so.sampler = DM_SAMPLER_DDIM;
    so.eta = 0;
    so.steps = steps;
    so.seed = 0; /* the same x_T at every preview */
    so.clip_x0 = images;
    so.var = dm_trainer_config(tr)->var;
    dm_guidance g;
    dm_guidance_default(&g);
    float *x = malloc((size_t)(n * D) * sizeof *x);
    int32_t *labels = K ? malloc((size_t)n * sizeof *labels) : NULL;
    if (!x || (K && !labels)) {
        st = dm_error_set(err, DM_ERR_NOMEM, "out of memory for the preview");
    } else if (sde) {
        /* a model trained in continuous time: the probability-flow ODE (Heun, two evaluations
         * a step) from the same prior draw each time; a conditional one's null label */
        dm_sde_sample_options o;
        dm_sde_sample_options_default(&o);
        o.sampler = DM_SDE_ODE_HEUN;
        o.steps = steps / 2 > 0 ? steps / 2 : 1;
        st = dm_pipeline_sde_sample(p, x, n, &o, NULL, err);
    } else {
        for (int64_t i = 0; K && i < n; i++) labels[i] = (int32_t)(i % K);
        g.labels = labels;
        st = dm_pipeline_sample_guided(p, x, n, &so, &g, err);
    }
    if (!st && images) {
        int cols = K ? K : 8;
        st = dm_image_write_grid(path, x, n, c, h, w, cols, 2, 2, err);
    } else if (!st) {
        char title[64];
        snprintf(title, sizeof title, sde ? "step %lld (EMA, ODE Heun %d steps)"
                                          : "step %lld (EMA, DDIM %d steps)",
                 (long long)dm_trainer_step_count(tr), sde ? (steps / 2 > 0 ? steps / 2 : 1)
                                                           : steps);
        st = dm_plot_scatter(path, NULL, 0, x, n, D, title, err);
    }
    free(labels);
    free(x);
    dm_pipeline_free(p);
    if (st) dm_error_prefix(err, "preview %s", path);
    return st;
}
