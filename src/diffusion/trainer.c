/* The training loop (Ho et al. Algorithm 1 and its design space): shuffled mini-batches, one
 * pass over the data per epoch, t uniform or importance-sampled, the objective of
 * diffusion/objective.c for the chosen prediction, loss and reverse variance, Adam with
 * warm-up and a learning-rate schedule, gradient clipping, EMA of the weights, optionally the
 * batch run as grad_accum micro-batches whose gradients add up to the batch's (every random
 * draw is made for the whole batch first, so the examples, timesteps and noise are the same
 * with and without accumulation). Every buffer is sized at creation; dm_trainer_step allocates
 * nothing. Random streams of the seed: 1 model init, 2 horizontal
 * flips, 3 timesteps (and continuous t), 4 noise, 5 dropout (in the model), 6 the epochs'
 * shuffles, 7 the learned schedule's init, 8 the null-label drops.
 * Data parallelism (dm_trainer_set_data_parallel) is the accumulation spread over processes:
 * every rank makes the whole batch's draws, runs its own slice of the batch as its micro-batches
 * and the ranks' gradients are summed by the caller's allreduce. */
#include "diffusion/checkpoint.h"
#include "diffusion/diffusion_impl.h"
#include "diffusion/dsm.h"
#include "diffusion/pipeline_impl.h"
#include "diffusion/vdm.h"
#include "io/image_util.h"
#include "io/safetensors.h"
#include "models/model.h"
#include "nn/nn.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { STREAM_BATCH = 2, STREAM_TIME = 3, STREAM_NOISE = 4, STREAM_SHUFFLE = 6, STREAM_DROP = 8 };

struct dm_trainer {
    dm_train_config cfg;
    dm_model *model;
    dm_schedule sched;
    dm_objective obj;
    double *weights;   /* (T) the objective's mean-term weights */
    dm_importance imp; /* timestep history (importance sampling) */
    bool continuous;   /* loss vdm-continuous: the objective and schedule of vdm */
    dm_vdm vdm;
    dm_adam opt;
    float *ema;        /* (num_params) */
    dm_normalizer norm;
    dm_dataset data;   /* standardised copy */
    uint64_t data_hash;
    dm_rng batch_rng, time_rng, noise_rng, drop_rng;
    int64_t step;
    float *loss_hist;  /* (cfg.steps); NaN for a skipped step */
    bool skip_nonfinite;     /* skip a step whose loss or gradient is not finite (else stop) */
    int64_t skipped, skipped_in_a_row;
    int64_t inject_nan_step; /* testing: this step's (1-based) input is poisoned; 0 = none */
    int64_t loss_cap;
    /* per-step buffers */
    int32_t *perm;     /* (data.n) the order of the current epoch */
    int64_t perm_epoch; /* which epoch perm holds; -1 none */
    int64_t img_c, img_h, img_w; /* image shape for flips; 0 for points */
    float *coins;      /* (batch) uniform draws deciding the flips */
    float *drops;      /* (batch) uniform draws deciding the null labels (conditional) */
    int32_t *y;        /* (batch) the step's labels, NULL unless conditional */
    float *tdraw;      /* (batch) uniform draws of importance-sampled timesteps */
    int32_t *tidx;     /* (batch) */
    double *tscale;    /* (batch) importance weights 1 / (T p_t) */
    double *ex_loss;   /* (batch) each example's loss */
    float *t;          /* (batch) */
    float *x0;         /* (batch, dim) */
    float *eps;        /* (batch, dim) */
    float *xt;         /* (batch, dim) */
    float *out;        /* (micro-batch, out_dim) the model's output */
    float *dout;       /* (micro-batch, out_dim) */
    /* data parallelism: this trainer is rank dp_rank of dp_size (1: a single process) */
    int dp_rank, dp_size;
    dm_allreduce_fn dp_fn;
    void *dp_ctx;
    float *dp_sums;    /* (1 + batch) the loss and the examples' losses, summed over the ranks */
    uint64_t dp_drop_blocks; /* the model's dropout draws (rng blocks) per micro-batch */
};

void dm_train_config_default(dm_train_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->arch = DM_ARCH_MLP;
    dm_mlp_config_default(&cfg->mlp);
    dm_unet_config_default(&cfg->unet);
    dm_schedule_config_default(&cfg->schedule);
    dm_optim_config_default(&cfg->optim);
    cfg->steps = 8000;
    cfg->batch = 512;
    cfg->grad_accum = 1;
    cfg->seed = 0;
    cfg->normalize = 1;
    cfg->prediction = DM_PRED_EPS;
    cfg->loss = DM_LOSS_SIMPLE;
    cfg->var = DM_VAR_BETA;
    cfg->timesteps = DM_TIME_UNIFORM;
    cfg->hybrid_lambda = 0.001;
    cfg->num_classes = 0;
    cfg->p_uncond = 0.1;
    cfg->sde_training = 0;
    dm_sde_default(&cfg->sde, DM_SDE_VP);
}

static dm_status validate_config(const dm_train_config *c, dm_error *err) {
    const dm_optim_config *o = &c->optim;
    if (c->steps < 0) return dm_error_set(err, DM_ERR_ARG, "steps must be >= 0");
    if (c->batch < 1 || c->batch > (1 << 24))
        return dm_error_set(err, DM_ERR_ARG, "batch must be in 1..16777216");
    if (c->grad_accum < 1)
        return dm_error_set(err, DM_ERR_ARG, "gradient accumulation must be >= 1 (got %lld)",
                            (long long)c->grad_accum);
    if (c->grad_accum > c->batch || c->batch % c->grad_accum != 0)
        return dm_error_set(err, DM_ERR_ARG, "gradient accumulation %lld does not divide the "
                            "batch %lld: the batch (examples per optimiser step) is run as "
                            "grad_accum micro-batches of batch / grad_accum",
                            (long long)c->grad_accum, (long long)c->batch);
    if (c->grad_accum > 1 && c->loss == DM_LOSS_VDM_CONTINUOUS)
        return dm_error_set(err, DM_ERR_ARG, "gradient accumulation is not supported with loss "
                            "vdm-continuous (its timesteps are spread over the whole batch): "
                            "use gradient accumulation 1");
    if (!(o->lr > 0 && o->lr < 1)) return dm_error_set(err, DM_ERR_ARG, "lr must be in (0, 1)");
    if (!(o->beta1 >= 0 && o->beta1 < 1) || !(o->beta2 >= 0 && o->beta2 < 1))
        return dm_error_set(err, DM_ERR_ARG, "Adam betas must be in [0, 1)");
    if (!(o->eps > 0)) return dm_error_set(err, DM_ERR_ARG, "Adam eps must be > 0");
    if (!(o->weight_decay >= 0)) return dm_error_set(err, DM_ERR_ARG, "weight decay must be >= 0");
    if (o->warmup < 0) return dm_error_set(err, DM_ERR_ARG, "warmup must be >= 0");
    dm_status st = dm_lr_schedule_check(o, c->steps, err);
    if (st) return st;
    if (!(o->grad_clip >= 0)) return dm_error_set(err, DM_ERR_ARG, "grad clip must be >= 0");
    if (!(o->ema_decay >= 0 && o->ema_decay < 1))
        return dm_error_set(err, DM_ERR_ARG, "EMA decay must be in [0, 1)");
    if ((int)c->prediction < 0 || (int)c->prediction > DM_PRED_SCORE)
        return dm_error_set(err, DM_ERR_ARG, "unknown prediction %d (allowed: epsilon, x0, v, "
                            "score)", (int)c->prediction);
    if ((int)c->loss < 0 || (int)c->loss > DM_LOSS_VDM_CONTINUOUS)
        return dm_error_set(err, DM_ERR_ARG, "unknown loss %d (allowed: simple, vlb, vdm, "
                            "hybrid, vdm-continuous)", (int)c->loss);
    if (c->schedule.kind == DM_SCHEDULE_LEARNED && c->loss != DM_LOSS_VDM_CONTINUOUS)
        return dm_error_set(err, DM_ERR_ARG, "a learned schedule is trained by loss "
                            "vdm-continuous (got %s)", dm_loss_kind_name(c->loss));
    if ((int)c->var < 0 || (int)c->var > DM_VAR_LEARNED)
        return dm_error_set(err, DM_ERR_ARG, "unknown reverse variance %d (allowed: beta, "
                            "beta-tilde, learned)", (int)c->var);
    if (c->num_classes < 0 || c->num_classes >= 1000000)
        return dm_error_set(err, DM_ERR_ARG, "num_classes %d: must be 0..999999",
                            (int)c->num_classes);
    if (!(c->p_uncond >= 0 && c->p_uncond <= 1))
        return dm_error_set(err, DM_ERR_ARG, "p_uncond must be in [0, 1]");
    if ((int)c->timesteps < 0 || (int)c->timesteps > DM_TIME_IMPORTANCE)
        return dm_error_set(err, DM_ERR_ARG, "unknown timestep sampling %d (allowed: uniform, "
                            "importance)", (int)c->timesteps);
    if (c->sde_training) return dm_dsm_check_config(c, err);
    return DM_OK;
}

dm_status dm_train_config_check(const dm_train_config *cfg, dm_error *err) {
    if (!cfg) return dm_error_set(err, DM_ERR_ARG, "train config: NULL");
    return validate_config(cfg, err);
}

/* A learned variance doubles the network's outputs, and class conditioning gives the model K + 1
 * class embeddings (the last the null label); the saved config says so. */
static dm_status resolve_outputs(dm_train_config *c, dm_error *err) {
    const bool learned = c->var == DM_VAR_LEARNED;
    const int64_t embeds = c->num_classes ? (int64_t)c->num_classes + 1 : 0;
    if (c->arch == DM_ARCH_UNET && c->unet.num_class_embeds && !c->num_classes)
        return dm_error_set(err, DM_ERR_ARG, "the model config has num_class_embeds %lld but "
                            "training is unconditional: train class-conditionally (--conditional) "
                            "on labelled data",
                            (long long)c->unet.num_class_embeds);
    c->unet.num_class_embeds = c->arch == DM_ARCH_UNET ? embeds : c->unet.num_class_embeds;
    c->mlp.num_classes = c->arch == DM_ARCH_MLP ? embeds : 0;
    if (c->arch == DM_ARCH_UNET) {
        const int64_t want = learned ? 2 * c->unet.in_channels : c->unet.in_channels;
        if (c->unet.out_channels != c->unet.in_channels &&
            c->unet.out_channels != 2 * c->unet.in_channels)
            return dm_error_set(err, DM_ERR_ARG, "out_channels %lld: allowed in_channels (%lld) "
                                "or, with a learned variance, twice that",
                                (long long)c->unet.out_channels, (long long)c->unet.in_channels);
        if (c->unet.out_channels == 2 * c->unet.in_channels && !learned)
            return dm_error_set(err, DM_ERR_ARG, "the model has out_channels = 2 x in_channels "
                                "(a variance output) but the variance is %s: use --var learned",
                                dm_reverse_var_name(c->var));
        c->unet.out_channels = want;
    } else {
        c->mlp.out_dim = learned ? 2 * c->mlp.dim : 0;
    }
    return DM_OK;
}

int64_t dm_train_config_dim(const dm_train_config *c) {
    if (c->arch == DM_ARCH_UNET)
        return c->unet.in_channels * c->unet.sample_size * c->unet.sample_size;
    return c->mlp.dim;
}

static dm_status create_model(dm_model **m, const dm_train_config *c, dm_error *err) {
    if (c->arch == DM_ARCH_UNET) return dm_unet_create(m, &c->unet, c->seed, err);
    return dm_mlp_create(m, &c->mlp, c->seed, err);
}

uint64_t dm_train_data_hash(const dm_dataset *data, const dm_train_config *cfg) {
    /* a uint8 set hashes as its float form, so a run resumes from either form */
    const size_t count = (size_t)(data->n * data->dim);
    uint64_t h = data->x         ? dm_fnv1a(data->x, count * sizeof(float))
                 : data->u8_hash ? data->u8_hash
                 : data->u8      ? dm_pixels_hash_as_float(DM_FNV1A_START, data->u8, count)
                                 : DM_FNV1A_START; /* no values: refused by trainer_build */
    if (cfg->num_classes && data->labels) /* unconditional runs keep their old hashes */
        h ^= dm_fnv1a(data->labels, (size_t)data->n * sizeof *data->labels) * 0x9E3779B97F4A7C15ull;
    return h;
}

void dm_epoch_order(int32_t *perm, int64_t n, uint64_t seed, uint64_t stream, int64_t epoch) {
    for (int64_t i = 0; i < n; i++) perm[i] = (int32_t)i;
    for (int64_t i = n - 1; i > 0; i--) {
        uint32_t w[4];
        dm_rng_block(seed, stream, (uint64_t)(epoch * n + i), w);
        const uint64_t r = ((uint64_t)w[0] << 32) | w[1];
        const int64_t j = (int64_t)(r % (uint64_t)(i + 1));
        const int32_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

/* dm_copy_example from uint8 pixels: the same values dm_dataset_to_float gives. */
static void copy_example_u8(float *dst, const uint8_t *src, int64_t rows, int64_t W, bool flip) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t x = 0; x < W; x++)
            dst[r * W + x] = dm_pixel_from_u8(src[r * W + (flip ? W - 1 - x : x)]);
}

void dm_copy_example(float *dst, const float *src, int64_t rows, int64_t W, bool flip) {
    if (!flip) {
        memcpy(dst, src, (size_t)(rows * W) * sizeof *dst);
        return;
    }
    for (int64_t r = 0; r < rows; r++)
        for (int64_t x = 0; x < W; x++) dst[r * W + x] = src[r * W + (W - 1 - x)];
}

static dm_status grow_loss_history(dm_trainer *tr, int64_t cap, dm_error *err) {
    if (cap <= tr->loss_cap) return DM_OK;
    float *p = realloc(tr->loss_hist, (size_t)cap * sizeof *p);
    if (!p) return dm_error_set(err, DM_ERR_NOMEM, "out of memory for the loss history");
    tr->loss_hist = p;
    tr->loss_cap = cap;
    return DM_OK;
}

/* The trainer's rows: a float copy, or for a UNet on uint8 pixels a view of the caller's (no
 * copy of the set: its rows are converted as they are drawn). */
static dm_status init_data(dm_trainer *tr, const dm_dataset *data, dm_error *err) {
    if (data->x || tr->cfg.arch != DM_ARCH_UNET)
        return dm_dataset_init(&tr->data, data->n, data->dim, err);
    memset(&tr->data, 0, sizeof tr->data);
    tr->data.u8 = data->u8; /* u8_base NULL: not the trainer's to free */
    tr->data.n = data->n;
    tr->data.dim = data->dim;
    return DM_OK;
}

/* Everything but the weights, optimiser state and step, which create and resume set. */
static dm_status trainer_build(dm_trainer **out, const dm_train_config *cfg, const dm_dataset *data,
                               const dm_normalizer *norm, dm_error *err) {
    *out = NULL;
    dm_status st = validate_config(cfg, err);
    if (st) return st;
    const int64_t D = dm_train_config_dim(cfg);
    if (!data || data->n < 1 || data->dim != D)
        return dm_error_set(err, DM_ERR_ARG, "data have dimension %lld, the model expects %lld",
                            data ? (long long)data->dim : 0LL, (long long)D);
    if (data->n > INT32_MAX) return dm_error_set(err, DM_ERR_ARG, "more than 2^31 data rows");
    if (!data->x && !data->u8) return dm_error_set(err, DM_ERR_ARG, "data set without values");
    if (data->x && !dm_all_finite(data->x, (size_t)(data->n * data->dim)))
        return dm_error_set(err, DM_ERR_NUMERIC, "the data contain NaN or Inf");
    if (cfg->num_classes > 0) {
        if (!data->labels)
            return dm_error_set(err, DM_ERR_ARG, "class-conditional training needs labelled "
                                                 "data; these data have no labels");
        for (int64_t i = 0; i < data->n; i++)
            if (data->labels[i] < 0 || data->labels[i] >= cfg->num_classes)
                return dm_error_set(err, DM_ERR_ARG, "label %d of row %lld is outside 0..%d",
                                    (int)data->labels[i], (long long)i,
                                    (int)cfg->num_classes - 1);
    }

    dm_trainer *tr = calloc(1, sizeof *tr);
    if (!tr) return dm_error_set(err, DM_ERR_NOMEM, "out of memory");
    tr->cfg = *cfg;
    cfg = &tr->cfg;
    if (cfg->sde_training) dm_dsm_set_schedule(&tr->cfg);
    const int64_t B = cfg->batch, MB = cfg->batch / cfg->grad_accum; /* micro-batch */
    tr->perm_epoch = -1;
    tr->obj = (dm_objective){.s = &tr->sched, .pred = cfg->prediction, .loss = cfg->loss,
                             .var = cfg->var, .hybrid_lambda = cfg->hybrid_lambda};
    tr->continuous = cfg->loss == DM_LOSS_VDM_CONTINUOUS;
    if ((st = resolve_outputs(&tr->cfg, err)) ||
        (st = tr->continuous ? dm_vdm_init(&tr->vdm, cfg, D, err)
                             : dm_objective_check(&tr->obj, err)) ||
        (st = dm_schedule_init(&tr->sched, &cfg->schedule, err)) ||
        (st = dm_importance_init(&tr->imp, tr->sched.T, err)) ||
        (st = create_model(&tr->model, cfg, err)) ||
        (st = dm_adam_init(&tr->opt, &cfg->optim, dm_model_num_params(tr->model), err)) ||
        (st = init_data(tr, data, err)) ||
        (cfg->num_classes && (st = dm_dataset_add_labels(&tr->data, cfg->num_classes, err))))
        goto fail;
    /* the schedule's num_training_steps: the run's steps (raised on resume, the decay with it) */
    tr->opt.total_steps = cfg->steps;
    if (tr->continuous && tr->vdm.learned) tr->vdm.opt.total_steps = cfg->steps;
    tr->data_hash = dm_train_data_hash(data, cfg);
    if (tr->data.x && data->x)
        memcpy(tr->data.x, data->x, (size_t)(data->n * D) * sizeof(float));
    else if (tr->data.x) /* uint8 points for the MLP, whose normaliser needs floats */
        dm_pixels_from_u8(tr->data.x, data->u8, (size_t)(data->n * D));
    if (cfg->num_classes)
        memcpy(tr->data.labels, data->labels, (size_t)data->n * sizeof *data->labels);
    dm_model_image_shape(tr->model, &tr->img_c, &tr->img_h, &tr->img_w);
    if (cfg->arch == DM_ARCH_UNET) {
        tr->norm.dim = 0; /* images are used as they are, in [-1, 1] */
    } else if (norm) {
        tr->norm = *norm;
    } else if (cfg->normalize) {
        if ((st = dm_normalizer_fit(&tr->norm, &tr->data, err))) goto fail;
    } else {
        tr->norm.dim = D;
        for (int64_t d = 0; d < D; d++) tr->norm.mean[d] = 0, tr->norm.std[d] = 1;
    }
    if (tr->data.x) dm_normalizer_apply(&tr->norm, tr->data.x, tr->data.n);
    if (cfg->sde_training &&
        (st = dm_dsm_resolve_sigma_max(&tr->cfg.sde, tr->data.x, tr->data.u8, tr->data.n, D,
                                       cfg->seed, err)))
        goto fail;

    size_t P = dm_model_num_params(tr->model);
    const int64_t OD = dm_model_out_dim(tr->model);
    /* the EMA and the per-step buffers (the model and its Adam moments were checked as they
     * were allocated) */
    if ((st = dm_memory_check((P + (uint64_t)B * (uint64_t)(3 * D + 8) +
                               (uint64_t)MB * (uint64_t)(2 * OD)) * sizeof(float),
                              err))) {
        dm_error_prefix(err, "training at batch %lld", (long long)B);
        goto fail;
    }
    tr->ema = dm_alloc(P * sizeof(float));
    tr->weights = dm_alloc((size_t)tr->sched.T * sizeof(double));
    tr->perm = dm_alloc((size_t)data->n * sizeof(int32_t));
    tr->coins = dm_alloc((size_t)B * sizeof(float));
    tr->drops = dm_alloc((size_t)B * sizeof(float));
    tr->y = cfg->num_classes ? dm_alloc((size_t)B * sizeof(int32_t)) : NULL;
    tr->tdraw = dm_alloc((size_t)B * sizeof(float));
    tr->tidx = dm_alloc((size_t)B * sizeof(int32_t));
    tr->tscale = dm_alloc((size_t)B * sizeof(double));
    tr->ex_loss = dm_alloc((size_t)B * sizeof(double));
    tr->t = dm_alloc((size_t)B * sizeof(float));
    tr->x0 = dm_alloc((size_t)(B * D) * sizeof(float));
    tr->eps = dm_alloc((size_t)(B * D) * sizeof(float));
    tr->xt = dm_alloc((size_t)(B * D) * sizeof(float));
    tr->out = dm_alloc((size_t)(MB * OD) * sizeof(float));
    tr->dout = dm_alloc((size_t)(MB * OD) * sizeof(float));
    if (!tr->ema || !tr->weights || !tr->perm || !tr->coins || !tr->drops ||
        (cfg->num_classes && !tr->y) || !tr->tdraw || !tr->tidx ||
        !tr->tscale ||
        !tr->ex_loss || !tr->t || !tr->x0 || !tr->eps || !tr->xt || !tr->out || !tr->dout) {
        st = dm_error_set(err, DM_ERR_NOMEM, "out of memory for batch %lld", (long long)B);
        goto fail;
    }
    if (!tr->continuous && !(cfg->loss == DM_LOSS_VLB && cfg->var == DM_VAR_LEARNED) &&
        (st = dm_loss_weights(&tr->sched, cfg->prediction, cfg->loss, cfg->var, tr->weights, err)))
        goto fail;
    tr->obj.w = tr->weights;
    if ((st = grow_loss_history(tr, cfg->steps > 0 ? cfg->steps : 1, err))) goto fail;
    /* Size the activations once, now, rather than inside the first step: for one micro-batch.
     * Its dropout draws are put back, so the masks of the steps do not depend on the
     * micro-batch size (2 ranks equal one process with accumulation 2). */
    memset(tr->xt, 0, (size_t)(B * D) * sizeof(float));
    memset(tr->t, 0, (size_t)B * sizeof(float));
    for (int64_t b = 0; tr->y && b < B; b++) tr->y[b] = cfg->num_classes; /* the null label */
    const uint64_t drop0 = tr->model->rng.offset;
    if ((st = dm_model_forward_cond(tr->model, tr->out, tr->xt, tr->t, tr->y, MB, 1, err)))
        goto fail;
    tr->model->rng.offset = drop0;
    dm_rng_init(&tr->batch_rng, cfg->seed, STREAM_BATCH);
    dm_rng_init(&tr->drop_rng, cfg->seed, STREAM_DROP);
    dm_rng_init(&tr->time_rng, cfg->seed, STREAM_TIME);
    dm_rng_init(&tr->noise_rng, cfg->seed, STREAM_NOISE);
    tr->dp_size = 1;
    *out = tr;
    return DM_OK;
fail:
    dm_trainer_free(tr);
    return st;
}

dm_status dm_trainer_create(dm_trainer **out, const dm_train_config *cfg, const dm_dataset *data,
                            dm_error *err) {
    dm_status st = trainer_build(out, cfg, data, NULL, err);
    if (st) return st;
    dm_trainer *tr = *out;
    memcpy(tr->ema, dm_model_params(tr->model), dm_model_num_params(tr->model) * sizeof(float));
    return DM_OK;
}

dm_status dm_trainer_init_weights(dm_trainer *tr, const dm_model *from, dm_error *err) {
    if (!tr || !from) return dm_error_set(err, DM_ERR_ARG, "init weights: NULL argument");
    if (tr->step > 0)
        return dm_error_set(err, DM_ERR_ARG, "init weights: the trainer has taken %lld steps; "
                            "weights are set only before the first", (long long)tr->step);
    const dm_model *m = tr->model;
    if (from->n_tensors != m->n_tensors || from->num_params != m->num_params)
        return dm_error_set(err, DM_ERR_MISMATCH, "init weights: the model has %d tensors "
                            "(%zu parameters), the trainer's %d (%zu)", from->n_tensors,
                            from->num_params, m->n_tensors, m->num_params);
    /* by name and shape: both models register their tensors in the same order */
    for (int i = 0; i < m->n_tensors; i++) {
        const dm_param_tensor *a = &from->tensors[i], *b = &m->tensors[i];
        int same = strcmp(a->name, b->name) == 0 && a->ndim == b->ndim;
        for (int d = 0; same && d < a->ndim; d++) same = a->shape[d] == b->shape[d];
        if (!same)
            return dm_error_set(err, DM_ERR_MISMATCH, "init weights: tensor %d is %s in the "
                                "model and %s in the trainer's, or their shapes differ", i,
                                a->name, b->name);
    }
    memcpy(m->params, from->params, m->num_params * sizeof(float));
    memcpy(tr->ema, from->params, m->num_params * sizeof(float));
    return DM_OK;
}

/* A step whose loss or gradient is not finite, caught before the optimiser touches anything:
 * an error naming the step, or, when skipping, the step counted with a NaN loss (its batch and
 * noise are drawn either way, so a resumed run stays on the same path). */
enum { MAX_SKIPPED_IN_A_ROW = 100 };
static dm_status nonfinite_step(dm_trainer *tr, const char *what, double *loss_out,
                                dm_error *err) {
    const long long step = (long long)tr->step + 1;
    if (!tr->skip_nonfinite)
        return dm_error_set(err, DM_ERR_NUMERIC,
                            "step %lld: the %s is not finite; weights left unchanged", step, what);
    if (++tr->skipped_in_a_row > MAX_SKIPPED_IN_A_ROW)
        return dm_error_set(err, DM_ERR_NUMERIC,
                            "step %lld: the %s is not finite, %d steps in a row; stopping", step,
                            what, MAX_SKIPPED_IN_A_ROW + 1);
    dm_status st;
    if (tr->step >= tr->loss_cap && (st = grow_loss_history(tr, 2 * tr->loss_cap, err))) return st;
    tr->loss_hist[tr->step++] = NAN;
    tr->skipped++;
    if (loss_out) *loss_out = NAN;
    return DM_OK;
}

/* The caller's allreduce over the ranks; a failure is this rank's own (its peers may be gone). */
static dm_status dp_sum(dm_trainer *tr, float *buf, size_t n, const char *what, dm_error *err) {
    if (tr->dp_fn(buf, n, tr->dp_ctx) != 0)
        return dm_error_set(err, DM_ERR_IO, "step %lld: the sum of the %s over the %d ranks "
                            "failed (rank %d); weights left unchanged", (long long)tr->step + 1,
                            what, tr->dp_size, tr->dp_rank);
    return DM_OK;
}

/* The loss (this rank's share of the batch mean) and, for importance sampling, the examples'
 * losses (0 outside this rank's slice), summed over the ranks in one call: afterwards every rank
 * holds the batch's loss and every example's loss. The history keeps each example's loss as a
 * float, so the float sum (one non-zero term per example) changes nothing it records. */
static dm_status dp_reduce(dm_trainer *tr, double *loss, bool weighted, dm_error *err) {
    const int64_t B = tr->cfg.batch;
    float *s = tr->dp_sums;
    size_t n = 1;
    s[0] = (float)*loss;
    if (weighted) {
        for (int64_t b = 0; b < B; b++) s[1 + b] = (float)tr->ex_loss[b];
        n += (size_t)B;
    }
    dm_status st = dp_sum(tr, s, n, "loss", err);
    if (st) return st;
    *loss = s[0];
    if (weighted)
        for (int64_t b = 0; b < B; b++) tr->ex_loss[b] = s[1 + b];
    return DM_OK;
}

dm_status dm_trainer_step(dm_trainer *tr, double *loss_out, dm_error *err) {
    const int64_t B = tr->cfg.batch, D = tr->data.dim, N = tr->data.n, n = B * D;
    dm_model *m = tr->model;
    dm_status st;

    const bool flips = tr->cfg.hflip && tr->img_w > 1;
    const int64_t width = tr->img_w > 0 ? tr->img_w : D; /* points: one row of D */
    if (flips) dm_rng_uniform(&tr->batch_rng, tr->coins, (size_t)B);
    if (tr->continuous) {
        /* t is continuous, drawn in dm_vdm_prepare below */
    } else if (tr->cfg.sde_training) {
        dm_rng_uniform(&tr->time_rng, tr->tdraw, (size_t)B); /* t, in dm_dsm_prepare below */
    } else if (tr->cfg.timesteps == DM_TIME_IMPORTANCE) {
        dm_importance_draw(&tr->imp, &tr->time_rng, tr->tidx, tr->tscale, tr->tdraw, B);
    } else {
        dm_rng_int(&tr->time_rng, tr->tidx, (size_t)B, 0, tr->sched.T);
    }
    dm_rng_normal(&tr->noise_rng, tr->eps, (size_t)n);
    if (tr->y) dm_rng_uniform(&tr->drop_rng, tr->drops, (size_t)B);
    for (int64_t b = 0; b < B; b++) {
        /* example g of the run is position g mod N of epoch g / N */
        const int64_t g = tr->step * B + b;
        if (g / N != tr->perm_epoch) {
            dm_epoch_order(tr->perm, N, tr->cfg.seed, STREAM_SHUFFLE, g / N);
            tr->perm_epoch = g / N;
        }
        const int32_t row = tr->perm[g % N];
        if (tr->data.x)
            dm_copy_example(tr->x0 + b * D, tr->data.x + (int64_t)row * D, D / width, width,
                            flips && tr->coins[b] < 0.5f);
        else
            copy_example_u8(tr->x0 + b * D, tr->data.u8 + (int64_t)row * D, D / width, width,
                            flips && tr->coins[b] < 0.5f);
        if (tr->y) /* classifier-free guidance's training: the label dropped to null at times */
            tr->y[b] = tr->drops[b] < tr->cfg.p_uncond ? tr->cfg.num_classes
                                                       : tr->data.labels[row];
        if (!tr->cfg.sde_training) tr->t[b] = (float)tr->tidx[b]; /* sde: dm_dsm_prepare */
    }
    const bool weighted = tr->cfg.timesteps == DM_TIME_IMPORTANCE;
    const bool poison = tr->step + 1 == tr->inject_nan_step;
    size_t P = dm_model_num_params(m);
    float *g = dm_model_grads(m);
    const bool schedule_grads = tr->continuous && tr->vdm.learned;
    double loss;
    if (tr->continuous) { /* never accumulated (validate_config) */
        dm_vdm_prepare(&tr->vdm, &tr->time_rng, tr->x0, tr->eps, tr->xt, tr->t, B, D);
        if (poison) tr->xt[0] = NAN;
        if ((st = dm_model_forward_cond(m, tr->out, tr->xt, tr->t, tr->y, B, 1, err))) return st;
        loss = dm_vdm_loss(&tr->vdm, tr->out, tr->x0, tr->eps, tr->dout, B, D);
        if (!isfinite(loss)) return nonfinite_step(tr, "loss", loss_out, err);
        memset(g, 0, P * sizeof(float));
        if (schedule_grads) {
            /* the learned schedule also needs d loss / d z_t */
            memset(tr->vdm.gx, 0, (size_t)n * sizeof(float));
            dm_model_backward_input(m, tr->dout, tr->vdm.gx, B);
        } else {
            dm_model_backward(m, tr->dout, B);
        }
    } else {
        /* The batch as K micro-batches of MB: each one's objective is its mean over MB
         * examples, so its output gradient is scaled by 1 / K and the backward passes add up
         * (nn.h: every backward adds into the gradients) to the gradient of the batch's mean,
         * and the loss recorded is the batch's mean. With K = 1 this is the plain step.
         * Over R ranks, rank r runs the batch's r-th slice of B / R examples as its K
         * micro-batches (the batch's micro-batches r K .. r K + K - 1 of R K in all), each
         * scaled by 1 / (R K), and the sums over the ranks (dp_reduce) complete the step. */
        const int64_t R = tr->dp_size, K = tr->cfg.grad_accum, MB = B / (R * K);
        const int64_t OD = dm_model_out_dim(m), first = tr->dp_rank * (B / R);
        const float inv_k = (float)(1.0 / (double)(R * K));
        if (tr->cfg.sde_training)
            dm_dsm_prepare(&tr->cfg.sde, tr->sched.T, tr->tdraw, tr->x0, tr->eps, tr->xt, tr->t,
                           tr->tidx, B, D);
        else
            dm_q_sample(&tr->sched, tr->xt, tr->x0, tr->eps, tr->tidx, B, D);
        if (poison) tr->xt[0] = NAN;
        /* dropout: this rank's micro-batches draw the masks one process draws at their place */
        const uint64_t drop0 = m->rng.offset;
        if (R > 1) {
            m->rng.offset = drop0 + (uint64_t)(tr->dp_rank * K) * tr->dp_drop_blocks;
            if (weighted) memset(tr->ex_loss, 0, (size_t)B * sizeof *tr->ex_loss);
        }
        loss = 0.0;
        for (int64_t k = 0; k < K; k++) {
            const int64_t o = first + k * MB;
            if ((st = dm_model_forward_cond(m, tr->out, tr->xt + o * D, tr->t + o,
                                            tr->y ? tr->y + o : NULL, MB, 1, err)))
                return st;
            const double part = dm_objective_batch(
                &tr->obj, tr->out, tr->xt + o * D, tr->eps + o * D, tr->tidx + o,
                weighted ? tr->tscale + o : NULL, tr->dout, tr->ex_loss + o, MB, D);
            if (!isfinite(part)) {
                if (R == 1) return nonfinite_step(tr, "loss", loss_out, err);
                loss = part; /* decided after the sum over the ranks, as every rank must */
                break;
            }
            if (R * K == 1) {
                loss = part;
            } else {
                loss += part / (double)(R * K);
                for (int64_t i = 0; i < MB * OD; i++) tr->dout[i] *= inv_k;
            }
            if (k == 0) memset(g, 0, P * sizeof(float));
            dm_model_backward(m, tr->dout, MB);
        }
        if (R > 1) {
            m->rng.offset = drop0 + (uint64_t)(R * K) * tr->dp_drop_blocks;
            if ((st = dp_reduce(tr, &loss, weighted, err))) return st;
            if (!isfinite(loss)) return nonfinite_step(tr, "loss", loss_out, err);
            if ((st = dp_sum(tr, g, P, "gradient", err))) return st;
        }
    }
    double norm = dm_grad_clip(g, P, tr->cfg.optim.grad_clip);
    if (!isfinite(norm)) return nonfinite_step(tr, "gradient", loss_out, err);
    dm_adam_step(&tr->opt, dm_model_params(m), g);
    const double decay = dm_ema_warmup_decay(tr->cfg.optim.ema_decay, tr->step);
    if (tr->cfg.optim.ema_decay > 0)
        dm_ema_update(tr->ema, dm_model_params(m), P, decay);
    else
        memcpy(tr->ema, dm_model_params(m), P * sizeof(float));
    if (schedule_grads)
        dm_vdm_update_schedule(&tr->vdm, tr->x0, tr->eps, B, D,
                               tr->cfg.optim.ema_decay > 0 ? decay : 0.0);
    if (weighted) dm_importance_update(&tr->imp, tr->tidx, tr->ex_loss, B);
    if (tr->step >= tr->loss_cap && (st = grow_loss_history(tr, 2 * tr->loss_cap, err))) return st;
    tr->loss_hist[tr->step++] = (float)loss;
    tr->skipped_in_a_row = 0;
    if (loss_out) *loss_out = loss;
    return DM_OK;
}

dm_status dm_trainer_pipeline(const dm_trainer *tr, dm_pipeline **out, dm_error *err) {
    *out = NULL;
    if (tr->cfg.schedule.kind == DM_SCHEDULE_LEARNED)
        return dm_error_set(err, DM_ERR_ARG, "a learned schedule is sampled from a saved "
                            "checkpoint (dm_pipeline_load), not from the trainer");
    dm_pipeline *p = calloc(1, sizeof *p);
    if (!p) return dm_error_set(err, DM_ERR_NOMEM, "out of memory");
    p->cfg = (dm_checkpoint_config){.train = tr->cfg, .norm = tr->norm, .step = tr->step,
                                    .data_n = tr->data.n, .data_hash = tr->data_hash};
    dm_status st;
    if ((st = dm_checkpoint_model_create(&p->model, &p->cfg, err)) ||
        (st = dm_schedule_init(&p->sched, &tr->cfg.schedule, err))) {
        dm_pipeline_free(p);
        return st;
    }
    /* the EMA weights, as a checkpoint saved now holds them */
    memcpy(dm_model_params(p->model), tr->ema, dm_model_num_params(tr->model) * sizeof(float));
    *out = p;
    return DM_OK;
}

dm_status dm_trainer_set_lr(dm_trainer *tr, double lr, dm_error *err) {
    dm_optim_config o = tr->cfg.optim;
    o.lr = lr;
    if (!(lr > 0 && lr < 1)) return dm_error_set(err, DM_ERR_ARG, "lr must be in (0, 1)");
    dm_status st = dm_lr_schedule_check(&o, tr->cfg.steps, err);
    if (st) return st;
    tr->cfg.optim.lr = lr;
    tr->opt.cfg.lr = lr;
    if (tr->continuous && tr->vdm.learned) tr->vdm.opt.cfg.lr = lr; /* its Adam follows the run's */
    return DM_OK;
}

dm_status dm_train_config_check_parallel(const dm_train_config *cfg, int nranks,
                                         dm_error *err) {
    if (!cfg) return dm_error_set(err, DM_ERR_ARG, "train config: NULL");
    if (nranks < 1) return dm_error_set(err, DM_ERR_ARG, "%d ranks: need at least 1", nranks);
    if (nranks == 1) return DM_OK;
    const long long B = (long long)cfg->batch, K = (long long)cfg->grad_accum;
    if (cfg->loss == DM_LOSS_VDM_CONTINUOUS)
        return dm_error_set(err, DM_ERR_ARG, "loss vdm-continuous trains on one process only "
                            "(its timesteps are spread over the whole batch); got %d ranks",
                            nranks);
    if (nranks > B)
        return dm_error_set(err, DM_ERR_ARG, "%d ranks for a batch of %lld: each rank needs at "
                            "least one example of the batch; use at most %lld ranks or a larger "
                            "batch", nranks, B, B);
    if (K < 1 || B % ((long long)nranks * K) != 0) {
        if (K > 1)
            return dm_error_set(err, DM_ERR_ARG, "batch %lld does not split over %d ranks with "
                                "gradient accumulation %lld: each rank runs batch / ranks "
                                "examples as %lld micro-batches, so the batch must be a "
                                "multiple of ranks x accumulation = %lld",
                                B, nranks, K, K, (long long)nranks * K);
        return dm_error_set(err, DM_ERR_ARG, "batch %lld does not split over %d ranks: each "
                            "rank runs batch / ranks examples, so the batch must be a multiple "
                            "of %d", B, nranks, nranks);
    }
    return DM_OK;
}

dm_status dm_trainer_set_data_parallel(dm_trainer *tr, int rank, int nranks, dm_allreduce_fn fn,
                                       void *ctx, dm_error *err) {
    if (!tr) return dm_error_set(err, DM_ERR_ARG, "data parallel: NULL trainer");
    if (nranks < 1 || rank < 0 || rank >= nranks)
        return dm_error_set(err, DM_ERR_ARG, "data parallel: rank %d of %d ranks: need "
                            "0 <= rank < ranks", rank, nranks);
    if (nranks > 1 && !fn)
        return dm_error_set(err, DM_ERR_ARG, "data parallel: %d ranks need an allreduce "
                            "function", nranks);
    dm_status st = dm_train_config_check_parallel(&tr->cfg, nranks, err);
    if (st) return st;
    dm_model *m = tr->model;
    uint64_t blocks = 0;
    if (nranks > 1) {
        const int64_t B = tr->cfg.batch, MB = B / ((int64_t)nranks * tr->cfg.grad_accum);
        if (!tr->dp_sums && !(tr->dp_sums = dm_alloc((size_t)(1 + B) * sizeof(float))))
            return dm_error_set(err, DM_ERR_NOMEM, "out of memory");
        /* the dropout draws of one micro-batch: a forward pass at its size, the stream put back
         * (the count depends on the shapes alone) */
        const uint64_t off = m->rng.offset;
        st = dm_model_forward_cond(m, tr->out, tr->xt, tr->t, tr->y, MB, 1, err);
        blocks = m->rng.offset - off;
        m->rng.offset = off;
        if (st) return st;
    }
    tr->dp_rank = rank;
    tr->dp_size = nranks;
    tr->dp_fn = fn;
    tr->dp_ctx = ctx;
    tr->dp_drop_blocks = blocks;
    return DM_OK;
}

void dm_trainer_set_skip_nonfinite(dm_trainer *tr, int skip) { tr->skip_nonfinite = skip != 0; }
int64_t dm_trainer_skipped_steps(const dm_trainer *tr) { return tr->skipped; }
void dm_trainer_inject_nan(dm_trainer *tr, int64_t step) { tr->inject_nan_step = step; }

int64_t dm_trainer_step_count(const dm_trainer *tr) { return tr->step; }
double dm_trainer_lr(const dm_trainer *tr) { return dm_adam_lr(&tr->opt); }
dm_model *dm_trainer_model(dm_trainer *tr) { return tr->model; }
const dm_train_config *dm_trainer_config(const dm_trainer *tr) { return &tr->cfg; }
const float *dm_trainer_loss_history(const dm_trainer *tr) { return tr->loss_hist; }

void dm_trainer_free(dm_trainer *tr) {
    if (!tr) return;
    dm_model_free(tr->model);
    dm_schedule_free(&tr->sched);
    dm_importance_free(&tr->imp);
    if (tr->continuous) dm_vdm_free(&tr->vdm);
    dm_free(tr->weights);
    dm_adam_free(&tr->opt);
    dm_dataset_free(&tr->data);
    dm_free(tr->ema);
    free(tr->loss_hist);
    dm_free(tr->perm);
    dm_free(tr->coins);
    dm_free(tr->drops);
    dm_free(tr->y);
    dm_free(tr->tdraw);
    dm_free(tr->tidx);
    dm_free(tr->tscale);
    dm_free(tr->ex_loss);
    dm_free(tr->t);
    dm_free(tr->x0);
    dm_free(tr->eps);
    dm_free(tr->xt);
    dm_free(tr->out);
    dm_free(tr->dout);
    dm_free(tr->dp_sums);
    free(tr);
}

/* ---------------------------------------------------------------------------------------- */
/* Save and resume                                                                          */

static void u64_str(char *buf, size_t cap, uint64_t v) { snprintf(buf, cap, "%" PRIu64, v); }

/* A learned schedule: its EMA parameters beside the EMA weights (for sampling), and the raw
 * parameters with their Adam state (for resuming). */
static dm_status save_schedule(dm_trainer *tr, const char *dir, dm_error *err) {
    char path[4400], step[32];
    const dm_vdm *v = &tr->vdm;
    const int64_t n = (int64_t)v->net.num_params;
    dm_st_tensor ema = {.name = "gamma_net", .dtype = DM_DTYPE_F32, .ndim = 1, .shape = {n},
                        .data = v->ema};
    const char *meta[] = {"format", "pt"};
    snprintf(path, sizeof path, "%s/" DM_CKPT_SCHEDULE, dir);
    dm_status st = dm_safetensors_write(path, &ema, 1, meta, 1, err);
    if (st) return st;
    dm_st_tensor ts[3] = {
        {.name = "gamma_params", .dtype = DM_DTYPE_F32, .ndim = 1, .shape = {n},
         .data = v->net.params},
        {.name = "gamma_adam_m", .dtype = DM_DTYPE_F32, .ndim = 1, .shape = {n}, .data = v->opt.m},
        {.name = "gamma_adam_v", .dtype = DM_DTYPE_F32, .ndim = 1, .shape = {n}, .data = v->opt.v},
    };
    u64_str(step, sizeof step, (uint64_t)v->opt.step);
    const char *smeta[] = {"gamma_adam_step", step};
    snprintf(path, sizeof path, "%s/" DM_CKPT_SCHEDULE_STATE, dir);
    return dm_safetensors_write(path, ts, 3, smeta, 1, err);
}

/* Writes every file of a checkpoint into the folder tmp. */
static dm_status write_checkpoint_files(dm_trainer *tr, const char *tmp, dm_error *err) {
    char path[4400];
    dm_status st;
    dm_checkpoint_config c = {.train = tr->cfg, .norm = tr->norm, .step = tr->step,
                              .data_n = tr->data.n, .data_hash = tr->data_hash};
    snprintf(path, sizeof path, "%s/" DM_CKPT_CONFIG, tmp);
    if ((st = dm_checkpoint_config_write(path, &c, err))) return st;
    if (tr->cfg.arch == DM_ARCH_UNET) {
        /* a diffusers model folder and pipeline files beside our own */
        snprintf(path, sizeof path, "%s/" DM_CKPT_UNET_DIR, tmp);
        if ((st = dm_unet_save_diffusers(tr->model, tr->ema, path, err)) ||
            (st = dm_checkpoint_write_diffusers_pipeline(tmp, &tr->sched, &tr->cfg, err)))
            return st;
    } else {
        dm_checkpoint_weights_path(path, sizeof path, tmp, &tr->cfg);
        if ((st = dm_model_weights_save(tr->model, tr->ema, path, err))) return st;
    }
    const bool learned_schedule = tr->continuous && tr->vdm.learned;
    if (learned_schedule && (st = save_schedule(tr, tmp, err))) return st;

    size_t P = dm_model_num_params(tr->model);
    int64_t np = (int64_t)P, ns = tr->step > 0 ? tr->step : 0, T = tr->sched.T;
    float *counts = dm_alloc((size_t)T * sizeof(float)); /* (T) the history's counts */
    if (!counts) return dm_error_set(err, DM_ERR_NOMEM, "out of memory");
    for (int64_t i = 0; i < T; i++) counts[i] = (float)tr->imp.count[i];
    dm_st_tensor ts[6] = {
        {.name = "params", .dtype = DM_DTYPE_F32, .ndim = 1, .shape = {np},
         .data = dm_model_params(tr->model)},
        {.name = "adam_m", .dtype = DM_DTYPE_F32, .ndim = 1, .shape = {np}, .data = tr->opt.m},
        {.name = "adam_v", .dtype = DM_DTYPE_F32, .ndim = 1, .shape = {np}, .data = tr->opt.v},
        {.name = "loss_history", .dtype = DM_DTYPE_F32, .ndim = 1, .shape = {ns},
         .data = tr->loss_hist},
        {.name = "timestep_loss_history", .dtype = DM_DTYPE_F32, .ndim = 2,
         .shape = {T, DM_IMPORTANCE_HISTORY}, .data = tr->imp.history},
        {.name = "timestep_loss_count", .dtype = DM_DTYPE_F32, .ndim = 1, .shape = {T},
         .data = counts},
    };
    char step[32], adam_step[32], b_off[32], t_off[32], n_off[32], d_off[32], y_off[32];
    u64_str(step, sizeof step, (uint64_t)tr->step);
    u64_str(adam_step, sizeof adam_step, (uint64_t)tr->opt.step);
    u64_str(b_off, sizeof b_off, tr->batch_rng.offset);
    u64_str(t_off, sizeof t_off, tr->time_rng.offset);
    u64_str(n_off, sizeof n_off, tr->noise_rng.offset);
    u64_str(d_off, sizeof d_off, tr->model->rng.offset);
    u64_str(y_off, sizeof y_off, tr->drop_rng.offset);
    const char *meta[] = {"step", step, "adam_step", adam_step, "rng_batch_offset", b_off,
                          "rng_time_offset", t_off, "rng_noise_offset", n_off,
                          "rng_model_offset", d_off, "rng_drop_offset", y_off};
    snprintf(path, sizeof path, "%s/" DM_CKPT_STATE, tmp);
    st = dm_safetensors_write(path, ts, 6, meta, 7, err);
    dm_free(counts);
    return st;
}

dm_status dm_trainer_save(dm_trainer *tr, const char *dir, dm_error *err) {
    /* never write a state that could not be resumed (the step checks make this unreachable;
     * this is the last line of defence) */
    const size_t P = dm_model_num_params(tr->model);
    if (!dm_all_finite(dm_model_params(tr->model), P) || !dm_all_finite(tr->ema, P) ||
        !dm_all_finite(tr->opt.m, P) || !dm_all_finite(tr->opt.v, P))
        return dm_error_set(err, DM_ERR_NUMERIC,
                            "step %lld: the weights or optimiser state are not finite; the "
                            "checkpoint in %s was not overwritten",
                            (long long)tr->step, dir);
    char tmp[4200];
    dm_status st = dm_checkpoint_begin(dir, tmp, sizeof tmp, err);
    if (st) return st;
    if ((st = write_checkpoint_files(tr, tmp, err))) {
        dm_checkpoint_abort(tmp); /* a full disk gets its space back */
        dm_error_prefix(err, "checkpoint not written (the previous one is intact)");
        return st;
    }
    return dm_checkpoint_commit(dir, tmp, err);
}

static dm_status meta_u64(const dm_safetensors *sf, const char *key, uint64_t *out,
                          const char *path, dm_error *err) {
    const char *v = dm_safetensors_meta(sf, key);
    char *end;
    if (!v || !*v) return dm_error_set(err, DM_ERR_FORMAT, "%s: metadata \"%s\" missing", path, key);
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (*end || errno)
        return dm_error_set(err, DM_ERR_FORMAT, "%s: metadata \"%s\" = \"%s\" is not a count",
                            path, key, v);
    *out = x;
    return DM_OK;
}

static dm_status read_importance(const dm_safetensors *sf, dm_importance *imp, const char *path,
                                 dm_error *err) {
    const int64_t T = imp->T, hist_shape[2] = {T, DM_IMPORTANCE_HISTORY};
    float *counts = dm_alloc((size_t)T * sizeof(float)); /* (T) */
    if (!counts) return dm_error_set(err, DM_ERR_NOMEM, "out of memory");
    dm_status st;
    if (!(st = dm_safetensors_read_f32(sf, "timestep_loss_history", imp->history, hist_shape, 2,
                                       err)) &&
        !(st = dm_safetensors_read_f32(sf, "timestep_loss_count", counts, &T, 1, err))) {
        for (int64_t i = 0; i < T && !st; i++) {
            if (!(counts[i] >= 0 && counts[i] <= DM_IMPORTANCE_HISTORY))
                st = dm_error_set(err, DM_ERR_FORMAT, "%s: timestep_loss_count[%lld] = %g is "
                                  "outside 0..%d", path, (long long)i, counts[i],
                                  DM_IMPORTANCE_HISTORY);
            else /* only a count in range is converted (a cast of 1e32 is undefined) */
                imp->count[i] = (int32_t)counts[i];
        }
    }
    dm_free(counts);
    return st;
}

static dm_status resume_schedule(dm_trainer *tr, const char *dir, dm_error *err) {
    char path[4400];
    dm_vdm *v = &tr->vdm;
    const int64_t n = (int64_t)v->net.num_params;
    dm_safetensors *sf;
    uint64_t step = 0;
    snprintf(path, sizeof path, "%s/" DM_CKPT_SCHEDULE, dir);
    dm_status st = dm_safetensors_open(&sf, path, err);
    if (st) return st;
    st = dm_safetensors_read_f32(sf, "gamma_net", v->ema, &n, 1, err);
    dm_safetensors_close(sf);
    if (st) return st;
    snprintf(path, sizeof path, "%s/" DM_CKPT_SCHEDULE_STATE, dir);
    if ((st = dm_safetensors_open(&sf, path, err))) return st;
    if (!(st = dm_safetensors_read_f32(sf, "gamma_params", v->net.params, &n, 1, err)) &&
        !(st = dm_safetensors_read_f32(sf, "gamma_adam_m", v->opt.m, &n, 1, err)) &&
        !(st = dm_safetensors_read_f32(sf, "gamma_adam_v", v->opt.v, &n, 1, err)))
        st = meta_u64(sf, "gamma_adam_step", &step, path, err);
    dm_safetensors_close(sf);
    if (st) return st;
    if (!dm_all_finite(v->net.params, (size_t)n) || !dm_all_finite(v->ema, (size_t)n))
        return dm_error_set(err, DM_ERR_NUMERIC, "%s: the schedule contains NaN or Inf", path);
    v->opt.step = (int64_t)step;
    return DM_OK;
}

dm_status dm_trainer_resume(dm_trainer **out, const char *checkpoint, const dm_dataset *data,
                            int64_t steps, dm_error *err) {
    *out = NULL;
    char dir[4200], path[4400];
    dm_status st = dm_checkpoint_resolve(checkpoint, dir, sizeof dir, err);
    if (st) return st;
    dm_checkpoint_config c;
    snprintf(path, sizeof path, "%s/" DM_CKPT_CONFIG, dir);
    if ((st = dm_checkpoint_config_read(path, &c, err))) return st;
    if (data->n != c.data_n || data->dim != dm_train_config_dim(&c.train) ||
        dm_train_data_hash(data, &c.train) != c.data_hash)
        return dm_error_set(err, DM_ERR_MISMATCH,
                            "%s: resuming needs the data the run was trained on (%lld rows of "
                            "dimension %lld); these data differ",
                            dir, (long long)c.data_n, (long long)dm_train_config_dim(&c.train));
    if (steps > 0) c.train.steps = steps;
    if (c.train.steps < c.step) c.train.steps = c.step;

    dm_checkpoint_weights_path(path, sizeof path, dir, &c.train);
    if ((st = dm_checkpoint_weights_check(&c.train, path, err))) return st;
    dm_trainer *tr;
    if ((st = trainer_build(&tr, &c.train, data, &c.norm, err))) {
        dm_error_prefix(err, "%s", dir);
        return st;
    }
    /* the weights file holds the EMA weights; load them through the model, then copy out */
    if ((st = dm_model_weights_load(tr->model, path, err))) goto fail;
    size_t P = dm_model_num_params(tr->model);
    memcpy(tr->ema, dm_model_params(tr->model), P * sizeof(float));

    snprintf(path, sizeof path, "%s/" DM_CKPT_STATE, dir);
    dm_safetensors *sf;
    if ((st = dm_safetensors_open(&sf, path, err))) goto fail;
    int64_t np = (int64_t)P, ns = c.step;
    uint64_t step = 0, adam_step = 0;
    if ((st = grow_loss_history(tr, ns > tr->loss_cap ? ns : tr->loss_cap, err)) ||
        (st = dm_safetensors_read_f32(sf, "params", dm_model_params(tr->model), &np, 1, err)) ||
        (st = dm_safetensors_read_f32(sf, "adam_m", tr->opt.m, &np, 1, err)) ||
        (st = dm_safetensors_read_f32(sf, "adam_v", tr->opt.v, &np, 1, err)) ||
        (st = dm_safetensors_read_f32(sf, "loss_history", tr->loss_hist, &ns, 1, err)) ||
        (st = meta_u64(sf, "step", &step, path, err)) ||
        (st = meta_u64(sf, "adam_step", &adam_step, path, err)) ||
        (st = meta_u64(sf, "rng_batch_offset", &tr->batch_rng.offset, path, err)) ||
        (st = meta_u64(sf, "rng_time_offset", &tr->time_rng.offset, path, err)) ||
        (st = meta_u64(sf, "rng_noise_offset", &tr->noise_rng.offset, path, err)) ||
        /* absent in checkpoints of models that draw nothing, written before it existed */
        (dm_safetensors_meta(sf, "rng_model_offset") &&
         (st = meta_u64(sf, "rng_model_offset", &tr->model->rng.offset, path, err))) ||
        /* absent before class conditioning */
        (dm_safetensors_meta(sf, "rng_drop_offset") &&
         (st = meta_u64(sf, "rng_drop_offset", &tr->drop_rng.offset, path, err)))) {
        dm_safetensors_close(sf);
        goto fail;
    }
    /* the timestep history: absent in checkpoints written before importance sampling */
    if (dm_safetensors_get(sf, "timestep_loss_history") &&
        (st = read_importance(sf, &tr->imp, path, err))) {
        dm_safetensors_close(sf);
        goto fail;
    }
    dm_safetensors_close(sf);
    if (step != (uint64_t)c.step) {
        st = dm_error_set(err, DM_ERR_FORMAT, "%s: step %llu differs from config.json's %lld",
                          path, (unsigned long long)step, (long long)c.step);
        goto fail;
    }
    if (!dm_all_finite(dm_model_params(tr->model), P) || !dm_all_finite(tr->opt.m, P) ||
        !dm_all_finite(tr->opt.v, P)) {
        st = dm_error_set(err, DM_ERR_NUMERIC, "%s: training state contains NaN or Inf", path);
        goto fail;
    }
    if (tr->continuous && tr->vdm.learned && (st = resume_schedule(tr, dir, err))) goto fail;
    tr->step = c.step;
    tr->opt.step = (int64_t)adam_step;
    *out = tr;
    return DM_OK;
fail:
    dm_trainer_free(tr);
    return st;
}
