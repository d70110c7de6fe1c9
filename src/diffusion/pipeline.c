/* A trained model ready to sample: network + schedule + normalisation from a checkpoint. */
#include "diffusion/checkpoint.h"
#include "diffusion/pipeline_impl.h"
#include "models/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


dm_status dm_pipeline_load(dm_pipeline **out, const char *checkpoint, dm_error *err) {
    *out = NULL;
    char dir[4200], path[4400];
    int diffusers = 0;
    dm_status st = dm_diffusers_folder_detect(checkpoint, &diffusers, err);
    if (st) return st;
    if (diffusers) return dm_pipeline_load_diffusers(out, checkpoint, NULL, NULL, err);
    st = dm_checkpoint_resolve(checkpoint, dir, sizeof dir, err);
    if (st) return st;
    dm_pipeline *p = calloc(1, sizeof *p);
    if (!p) return dm_error_set(err, DM_ERR_NOMEM, "out of memory");
    snprintf(path, sizeof path, "%s/" DM_CKPT_CONFIG, dir);
    if ((st = dm_checkpoint_config_read(path, &p->cfg, err))) goto fail;
    dm_checkpoint_weights_path(path, sizeof path, dir, &p->cfg.train);
    if ((st = dm_checkpoint_weights_check(&p->cfg.train, path, err))) goto fail;
    snprintf(path, sizeof path, "%s/" DM_CKPT_CONFIG, dir);
    if ((st = dm_checkpoint_schedule(&p->sched, dir, &p->cfg.train, err)) ||
        (st = dm_checkpoint_model_create(&p->model, &p->cfg, err))) {
        dm_error_prefix(err, "%s", path);
        goto fail;
    }
    dm_checkpoint_weights_path(path, sizeof path, dir, &p->cfg.train);
    if ((st = dm_model_weights_load(p->model, path, err))) goto fail;
    if (p->cfg.train.loss == DM_LOSS_VDM_CONTINUOUS) { /* for its continuous-time bound */
        if ((st = dm_checkpoint_vdm(&p->vdm, dir, &p->cfg.train, err))) goto fail;
        p->has_vdm = 1;
    }
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
const dm_train_config *dm_pipeline_train_config(const dm_pipeline *p) { return &p->cfg.train; }
const dm_scheduler *dm_pipeline_scheduler(const dm_pipeline *p) {
    return p->has_scheduler ? &p->scheduler : NULL;
}

dm_status dm_pipeline_default_labels(dm_pipeline *p, const int32_t **labels, int64_t B,
                                     dm_error *err) {
    *labels = NULL;
    if (!p->cfg.train.num_classes) return DM_OK;
    if (p->null_cap < B) {
        dm_free(p->null_labels);
        p->null_cap = 0;
        if (!(p->null_labels = dm_alloc((size_t)B * sizeof(int32_t))))
            return dm_error_set(err, DM_ERR_NOMEM, "out of memory for a batch of %lld",
                                (long long)B);
        p->null_cap = B;
    }
    dm_status st = dm_pipeline_null_labels(p, p->null_labels, B, err);
    if (!st) *labels = p->null_labels;
    return st;
}

dm_status dm_pipeline_denoise_labels(dm_pipeline *p, float *eps_hat, float *var_out,
                                     const float *x, const float *t, const int32_t *labels,
                                     int64_t B, dm_error *err) {
    const dm_train_config *tc = &p->cfg.train;
    if (tc->sde_training && tc->sde.kind != DM_SDE_VP)
        return dm_error_set(err, DM_ERR_ARG, "this model was trained in continuous time on the "
                            "%s SDE and has no discrete chain (the ancestral, DDIM and "
                            "DPM-Solver samplers and the discrete bound are for VP models): "
                            "sample it with an SDE sampler (--sde-sampler; "
                            "dm_pipeline_sde_sample), measure its likelihood with the ODE "
                            "(--likelihood ode; dm_pipeline_ode_nll)",
                            dm_sde_kind_name(tc->sde.kind));
    const int64_t D = dm_model_dim(p->model), OD = dm_model_out_dim(p->model);
    const bool has_var = OD == 2 * D;
    if (var_out && !has_var)
        return dm_error_set(err, DM_ERR_ARG, "this model has no variance output (it was trained "
                            "with variance %s): sample with variance beta or beta-tilde",
                            dm_reverse_var_name(p->cfg.train.var));
    /* a model with one output per value writes straight into eps_hat */
    float *out = eps_hat;
    if (has_var) {
        if (p->out_cap < B) {
            dm_free(p->out);
            p->out_cap = 0;
            if (!(p->out = dm_alloc((size_t)(B * OD) * sizeof(float))))
                return dm_error_set(err, DM_ERR_NOMEM, "out of memory for a batch of %lld",
                                    (long long)B);
            p->out_cap = B;
        }
        out = p->out;
    }
    dm_status st;
    if (!labels && (st = dm_pipeline_default_labels(p, &labels, B, err))) return st;
    if ((st = dm_model_forward_cond(p->model, out, x, t, labels, B, 0, err))) return st;
    const dm_prediction pred = p->cfg.train.prediction;
    for (int64_t b = 0; b < B; b++) {
        const int32_t i = (int32_t)lrint(t[b]);
        if (i < 0 || i >= p->sched.T)
            return dm_error_set(err, DM_ERR_ARG, "denoise: timestep %g outside 0..%d", t[b],
                                (int)p->sched.T - 1);
        dm_prediction_convert(pred, DM_PRED_EPS, p->sched.alpha_bar[i], x + b * D, out + b * OD,
                              eps_hat + b * D, D);
        if (var_out) memcpy(var_out + b * D, out + b * OD + D, (size_t)D * sizeof(float));
    }
    return DM_OK;
}

dm_status dm_pipeline_null_labels(dm_pipeline *p, int32_t *labels, int64_t B, dm_error *err) {
    const dm_train_config *c = &p->cfg.train;
    if (c->p_uncond <= 0)
        return dm_error_set(err, DM_ERR_ARG, "this class-conditional model was trained without "
                            "the null label (p_uncond 0), so it has no unconditional prediction: "
                            "give a class (--class) and no --guidance");
    for (int64_t b = 0; b < B; b++) labels[b] = c->num_classes;
    return DM_OK;
}

dm_status dm_pipeline_denoise(void *ctx, float *eps_hat, float *var_out, const float *x,
                              const float *t, int64_t B, dm_error *err) {
    return dm_pipeline_denoise_labels(ctx, eps_hat, var_out, x, t, NULL, B, err);
}

dm_status dm_pipeline_sample(dm_pipeline *p, float *x, int64_t n, const dm_sample_options *opt,
                             dm_error *err) {
    return dm_pipeline_sample_guided(p, x, n, opt, NULL, err);
}

void dm_pipeline_free(dm_pipeline *p) {
    if (!p) return;
    dm_model_free(p->model);
    dm_schedule_free(&p->sched);
    dm_scheduler_free(&p->scheduler);
    dm_free(p->out);
    dm_free(p->null_labels);
    if (p->has_vdm) dm_vdm_free(&p->vdm);
    free(p);
}
