/* A trained model ready to sample: network + schedule + normalisation from a checkpoint. */
#include "diffusion/checkpoint.h"
#include "models/model.h"

#include <stdio.h>
#include <stdlib.h>

struct dm_pipeline {
    dm_checkpoint_config cfg;
    dm_model *model;
    dm_schedule sched;
};

dm_status dm_pipeline_load(dm_pipeline **out, const char *checkpoint, dm_error *err) {
    *out = NULL;
    char dir[4200], path[4400];
    dm_status st = dm_checkpoint_resolve(checkpoint, dir, sizeof dir, err);
    if (st) return st;
    dm_pipeline *p = calloc(1, sizeof *p);
    if (!p) return dm_error_set(err, DM_ERR_NOMEM, "out of memory");
    snprintf(path, sizeof path, "%s/" DM_CKPT_CONFIG, dir);
    if ((st = dm_checkpoint_config_read(path, &p->cfg, err))) goto fail;
    if ((st = dm_schedule_init(&p->sched, &p->cfg.train.schedule, err)) ||
        (st = dm_checkpoint_model_create(&p->model, &p->cfg, err))) {
        dm_error_prefix(err, "%s", path);
        goto fail;
    }
    dm_checkpoint_weights_path(path, sizeof path, dir, &p->cfg.train);
    if ((st = dm_model_weights_load(p->model, path, err))) goto fail;
    *out = p;
    return DM_OK;
fail:
    dm_pipeline_free(p);
    return st;
}

int64_t dm_pipeline_dim(const dm_pipeline *p) { return dm_model_dim(p->model); }
const dm_model *dm_pipeline_model(const dm_pipeline *p) { return p->model; }
const dm_schedule *dm_pipeline_schedule(const dm_pipeline *p) { return &p->sched; }
const dm_normalizer *dm_pipeline_normalizer(const dm_pipeline *p) { return &p->cfg.norm; }

static dm_status denoise_with_model(void *ctx, float *eps_hat, float *var_frac, const float *x,
                                    const float *t, int64_t B, dm_error *err) {
    return dm_model_forward((dm_model *)ctx, eps_hat, x, t, B, 0, err);
}

dm_status dm_pipeline_sample(dm_pipeline *p, float *x, int64_t n, const dm_sample_options *opt,
                             dm_error *err) {
    if (n < 1) return dm_error_set(err, DM_ERR_ARG, "number of samples must be >= 1");
    const int64_t D = dm_pipeline_dim(p);
    dm_sample_options o;
    if (opt) o = *opt; else dm_sample_options_default(&o);
    /* a UNet's activations grow with the batch: images are drawn in chunks, chunk k from
     * stream k, so the samples depend on the seed and the chunk size */
    const int64_t chunk = dm_model_image_shape(p->model, NULL, NULL, NULL) ? DM_PIPELINE_IMAGE_CHUNK
                                                                           : n;
    dm_status st = DM_OK;
    for (int64_t start = 0, k = 0; start < n && !st; start += chunk, k++) {
        const int64_t B = n - start < chunk ? n - start : chunk;
        dm_sample_options ok = o;
        ok.stream = o.stream + (uint64_t)k;
        st = dm_sample_ancestral(&p->sched, denoise_with_model, p->model, x + start * D, B, D, &ok,
                                 err);
    }
    if (st) return st;
    if (!dm_all_finite(x, (size_t)(n * D)))
        return dm_error_set(err, DM_ERR_NUMERIC, "sampling produced NaN or Inf");
    dm_normalizer_invert(&p->cfg.norm, x, n);
    return DM_OK;
}

void dm_pipeline_free(dm_pipeline *p) {
    if (!p) return;
    dm_model_free(p->model);
    dm_schedule_free(&p->sched);
    free(p);
}
