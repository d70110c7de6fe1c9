/* Image classifiers p_phi(y | x_t, t): the UNet's encoder with a pooled linear head, trained
 * with cross-entropy on noisy inputs (for classifier guidance, Dhariwal & Nichol) or on clean
 * images (the evaluation classifier behind FID-FMNIST). Random streams of the seed: 1 model
 * init, 2 flips, 3 timesteps, 4 noise, 5 (the model's dropout), 6 the epochs' shuffles.
 *
 * A classifier folder: config.json (ours: kind, schedule, training settings), classifier/
 * config.json (the network, in the UNet's keys with "classifier_classes") and model.safetensors
 * (the EMA weights), written whole and swapped in like a diffusion checkpoint. */
#include "diffusion/checkpoint.h"
#include "diffusion/diffusion_impl.h"
#include "io/json_file.h"
#include "models/model.h"
#include "models/unet.h"
#include "nn/nn.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define CLF_FORMAT "diffusion.c classifier"
#define CLF_NET_DIR "classifier"

enum { STREAM_FLIP = 2, STREAM_TIME = 3, STREAM_NOISE = 4, STREAM_SHUFFLE = 6 };

struct dm_classifier {
    dm_classifier_config cfg;
    dm_model *model;
    dm_schedule sched; /* noisy classifiers: the schedule they were trained on */
    float *logits;     /* (cap, K) */
    float *dlogits;    /* (cap, K) */
    float *tzero;      /* (cap) zeros, for t = NULL */
    int64_t cap;
};

void dm_classifier_config_default(dm_classifier_config *c) {
    memset(c, 0, sizeof *c);
    dm_unet_preset(&c->net, "classifier-28", NULL);
    c->noisy = 0;
    dm_schedule_config_default(&c->schedule);
    dm_optim_config_default(&c->optim);
    c->optim.lr = 1e-3;
    c->optim.warmup = 100;
    c->optim.grad_clip = 1.0;
    c->optim.ema_decay = 0.999;
    c->steps = 2000;
    c->batch = 128;
    c->seed = 0;
    c->hflip = 0;
}

static dm_status check_config(const dm_classifier_config *c, dm_error *err) {
    if (c->net.classifier_classes < 2)
        return dm_error_set(err, DM_ERR_ARG, "a classifier needs classifier_classes >= 2 (got "
                            "%lld): use the preset classifier-28 or set it",
                            (long long)c->net.classifier_classes);
    if (c->steps < 1) return dm_error_set(err, DM_ERR_ARG, "classifier steps must be >= 1");
    if (c->batch < 1 || c->batch > 65536)
        return dm_error_set(err, DM_ERR_ARG, "classifier batch must be 1..65536");
    if (!(c->optim.lr > 0 && c->optim.lr < 1))
        return dm_error_set(err, DM_ERR_ARG, "lr must be in (0, 1)");
    if (!(c->optim.ema_decay >= 0 && c->optim.ema_decay < 1))
        return dm_error_set(err, DM_ERR_ARG, "EMA decay must be in [0, 1)");
    if (c->noisy && c->schedule.kind == DM_SCHEDULE_LEARNED)
        return dm_error_set(err, DM_ERR_ARG, "a noisy classifier needs a fixed schedule (linear, "
                                             "cosine or logsnr), not a learned one");
    return dm_unet_config_validate(&c->net, err);
}

/* ---------------------------------------------------------------------------------------- */
/* Files                                                                                    */

static dm_status write_config(const dm_classifier_config *c, int64_t step, const char *dir,
                              dm_error *err) {
    char path[4400];
    snprintf(path, sizeof path, "%s/" CLF_NET_DIR, dir);
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
        return dm_error_set(err, DM_ERR_IO, "%s: cannot create (%s)", path, strerror(errno));
    snprintf(path, sizeof path, "%s/" CLF_NET_DIR "/config.json", dir);
    dm_status st = dm_unet_config_write(&c->net, path, err);
    if (st) return st;
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "format", CLF_FORMAT);
    cJSON_AddNumberToObject(root, "version", 1);
    cJSON_AddStringToObject(root, "kind", c->noisy ? "noisy" : "clean");
    cJSON_AddNumberToObject(root, "num_classes", (double)c->net.classifier_classes);
    cJSON_AddStringToObject(root, "network", CLF_NET_DIR "/config.json");
    dm_schedule_config_add_json(root, &c->schedule);
    cJSON *tr = cJSON_AddObjectToObject(root, "training");
    cJSON_AddNumberToObject(tr, "step", (double)step);
    cJSON_AddNumberToObject(tr, "steps", (double)c->steps);
    cJSON_AddNumberToObject(tr, "batch", (double)c->batch);
    cJSON_AddNumberToObject(tr, "seed", (double)c->seed);
    cJSON_AddBoolToObject(tr, "hflip", c->hflip);
    cJSON_AddNumberToObject(tr, "lr", c->optim.lr);
    cJSON_AddNumberToObject(tr, "warmup", (double)c->optim.warmup);
    cJSON_AddNumberToObject(tr, "grad_clip", c->optim.grad_clip);
    cJSON_AddNumberToObject(tr, "ema_decay", c->optim.ema_decay);
    snprintf(path, sizeof path, "%s/config.json", dir);
    st = dm_json_write(path, root, err);
    cJSON_Delete(root);
    return st;
}

static dm_status read_config(dm_classifier_config *c, const char *dir, dm_error *err) {
    char path[4400];
    dm_classifier_config_default(c);
    snprintf(path, sizeof path, "%s/config.json", dir);
    cJSON *root;
    dm_status st = dm_json_read(&root, path, 65536, err);
    if (st) return st;
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(root, "format");
    const cJSON *kind = cJSON_GetObjectItemCaseSensitive(root, "kind");
    const cJSON *sc = cJSON_GetObjectItemCaseSensitive(root, "schedule");
    const cJSON *classes = cJSON_GetObjectItemCaseSensitive(root, "num_classes");
    if (!cJSON_IsString(fmt) || strcmp(fmt->valuestring, CLF_FORMAT) != 0)
        st = dm_error_set(err, DM_ERR_FORMAT, "%s: not a classifier (\"format\" is not \"%s\"; "
                          "a diffusion model's checkpoint is not a classifier)", path, CLF_FORMAT);
    else if (!cJSON_IsString(kind) || (strcmp(kind->valuestring, "noisy") != 0 &&
                                       strcmp(kind->valuestring, "clean") != 0))
        st = dm_error_set(err, DM_ERR_FORMAT, "%s: \"kind\" must be \"noisy\" or \"clean\"", path);
    else if (!cJSON_IsObject(sc))
        st = dm_error_set(err, DM_ERR_FORMAT, "%s: \"schedule\" missing", path);
    else if (!cJSON_IsNumber(classes))
        st = dm_error_set(err, DM_ERR_FORMAT, "%s: \"num_classes\" missing or not a number", path);
    else if (!(st = dm_schedule_config_read_json(sc, &c->schedule, path, err)))
        c->noisy = strcmp(kind->valuestring, "noisy") == 0;
    const double n_classes = cJSON_IsNumber(classes) ? classes->valuedouble : 0;
    cJSON_Delete(root);
    if (st) return st;
    snprintf(path, sizeof path, "%s/" CLF_NET_DIR "/config.json", dir);
    if ((st = dm_unet_config_read(&c->net, path, err))) return st;
    if (c->net.classifier_classes < 2 || (double)c->net.classifier_classes != n_classes)
        return dm_error_set(err, DM_ERR_FORMAT, "%s: classifier_classes %lld disagrees with the "
                            "%g classes of %s/config.json", path,
                            (long long)c->net.classifier_classes, n_classes, dir);
    return DM_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* Training                                                                                 */

/* Mean cross-entropy of logits (B, K) against y; dlogits = (softmax - onehot) / B. */
static double cross_entropy(const float *logits, const int32_t *y, float *dlogits, int64_t B,
                            int64_t K) {
    double total = 0;
    for (int64_t b = 0; b < B; b++) {
        const float *z = logits + b * K;
        double mx = z[0], sum = 0;
        for (int64_t k = 1; k < K; k++) mx = z[k] > mx ? z[k] : mx;
        for (int64_t k = 0; k < K; k++) sum += exp((double)z[k] - mx);
        const double log_sum = mx + log(sum);
        total += log_sum - z[y[b]];
        for (int64_t k = 0; k < K; k++)
            dlogits[b * K + k] = (float)((exp((double)z[k] - log_sum) - (k == y[b])) / (double)B);
    }
    return total / (double)B;
}

typedef struct {
    dm_model *model;
    dm_adam opt;
    dm_schedule sched;
    float *ema, *x0, *xt, *eps, *t, *logits, *dlogits, *coins;
    int32_t *y, *tidx, *perm;
} train_state;

static void train_state_free(train_state *s) {
    dm_model_free(s->model);
    dm_adam_free(&s->opt);
    dm_schedule_free(&s->sched);
    dm_free(s->ema), dm_free(s->x0), dm_free(s->xt), dm_free(s->eps), dm_free(s->t);
    dm_free(s->logits), dm_free(s->dlogits), dm_free(s->coins);
    dm_free(s->y), dm_free(s->tidx), dm_free(s->perm);
}

static dm_status save(const dm_classifier_config *cfg, const train_state *s, int64_t step,
                      const char *dir, dm_error *err) {
    char tmp[4200], path[4400];
    dm_status st = dm_checkpoint_begin(dir, tmp, sizeof tmp, err);
    if (st) return st;
    snprintf(path, sizeof path, "%s/" DM_CKPT_MODEL, tmp);
    if ((st = write_config(cfg, step, tmp, err)) ||
        (st = dm_model_weights_save(s->model, s->ema, path, err))) {
        dm_checkpoint_abort(tmp);
        return st;
    }
    return dm_checkpoint_commit(dir, tmp, err);
}

dm_status dm_classifier_train(const dm_classifier_config *cfg, const dm_dataset *data,
                              const char *dir, dm_classifier_progress progress, void *ctx,
                              int64_t *steps_done, dm_error *err) {
    if (steps_done) *steps_done = 0;
    if (data && !data->x) return dm_error_set(err, DM_ERR_ARG, "%s: the data are uint8 pixels; convert them with dm_dataset_to_float", "classifier training");
    dm_status st = check_config(cfg, err);
    if (st) return st;
    const dm_unet_config *net = &cfg->net;
    const int64_t K = net->classifier_classes, B = cfg->batch;
    const int64_t C = net->in_channels, H = net->sample_size, W = net->sample_size, D = C * H * W;
    if (!data || data->dim != D)
        return dm_error_set(err, DM_ERR_MISMATCH, "images of %lld values, the classifier takes "
                            "%lld x %lld x %lld", data ? (long long)data->dim : 0LL,
                            (long long)C, (long long)H, (long long)W);
    if (!data->labels)
        return dm_error_set(err, DM_ERR_ARG, "a classifier trains on labelled images; these "
                                             "have no labels");
    if (data->n > INT32_MAX) return dm_error_set(err, DM_ERR_ARG, "more than 2^31 images");
    for (int64_t i = 0; i < data->n; i++)
        if (data->labels[i] < 0 || data->labels[i] >= K)
            return dm_error_set(err, DM_ERR_ARG, "label %d of image %lld is outside 0..%lld (the "
                                "classifier has %lld classes)", (int)data->labels[i],
                                (long long)i, (long long)K - 1, (long long)K);

    train_state s = {0};
    if ((st = dm_unet_create(&s.model, net, cfg->seed, err)) ||
        (st = dm_adam_init(&s.opt, &cfg->optim, dm_model_num_params(s.model), err)) ||
        (st = dm_schedule_init(&s.sched, &cfg->schedule, err))) {
        train_state_free(&s);
        return st;
    }
    const size_t P = dm_model_num_params(s.model);
    s.ema = dm_alloc(P * sizeof(float));
    s.x0 = dm_alloc((size_t)(B * D) * sizeof(float));
    s.xt = dm_alloc((size_t)(B * D) * sizeof(float));
    s.eps = dm_alloc((size_t)(B * D) * sizeof(float));
    s.t = dm_alloc((size_t)B * sizeof(float));
    s.logits = dm_alloc((size_t)(B * K) * sizeof(float));
    s.dlogits = dm_alloc((size_t)(B * K) * sizeof(float));
    s.coins = dm_alloc((size_t)B * sizeof(float));
    s.y = dm_alloc((size_t)B * sizeof(int32_t));
    s.tidx = dm_alloc((size_t)B * sizeof(int32_t));
    s.perm = dm_alloc((size_t)data->n * sizeof(int32_t));
    if (!s.ema || !s.x0 || !s.xt || !s.eps || !s.t || !s.logits || !s.dlogits || !s.coins ||
        !s.y || !s.tidx || !s.perm) {
        train_state_free(&s);
        return dm_error_set(err, DM_ERR_NOMEM, "out of memory for classifier batch %lld",
                            (long long)B);
    }
    memcpy(s.ema, dm_model_params(s.model), P * sizeof(float));
    /* size the activations now, as the trainer does, rather than inside the first step */
    memset(s.x0, 0, (size_t)(B * D) * sizeof(float));
    memset(s.t, 0, (size_t)B * sizeof(float));
    if ((st = dm_model_forward(s.model, s.logits, s.x0, s.t, B, 1, err))) {
        train_state_free(&s);
        return st;
    }
    dm_rng flip_rng, time_rng, noise_rng;
    dm_rng_init(&flip_rng, cfg->seed, STREAM_FLIP);
    dm_rng_init(&time_rng, cfg->seed, STREAM_TIME);
    dm_rng_init(&noise_rng, cfg->seed, STREAM_NOISE);
    const int64_t N = data->n;
    int64_t epoch = -1, step = 0;
    for (; step < cfg->steps; step++) {
        if (cfg->hflip) dm_rng_uniform(&flip_rng, s.coins, (size_t)B);
        for (int64_t b = 0; b < B; b++) {
            const int64_t g = step * B + b;
            if (g / N != epoch) {
                epoch = g / N;
                dm_epoch_order(s.perm, N, cfg->seed, STREAM_SHUFFLE, epoch);
            }
            const int32_t row = s.perm[g % N];
            dm_copy_example(s.x0 + b * D, data->x + (int64_t)row * D, C * H, W,
                            cfg->hflip && s.coins[b] < 0.5f);
            s.y[b] = data->labels[row];
        }
        const float *input = s.x0;
        if (cfg->noisy) {
            dm_rng_int(&time_rng, s.tidx, (size_t)B, 0, s.sched.T);
            dm_rng_normal(&noise_rng, s.eps, (size_t)(B * D));
            dm_q_sample(&s.sched, s.xt, s.x0, s.eps, s.tidx, B, D);
            for (int64_t b = 0; b < B; b++) s.t[b] = (float)s.tidx[b];
            input = s.xt;
        } else {
            memset(s.t, 0, (size_t)B * sizeof(float));
        }
        if ((st = dm_model_forward(s.model, s.logits, input, s.t, B, 1, err))) break;
        const double loss = cross_entropy(s.logits, s.y, s.dlogits, B, K);
        if (!isfinite(loss)) {
            st = dm_error_set(err, DM_ERR_NUMERIC, "classifier step %lld: the loss is not "
                              "finite (lower the learning rate)", (long long)step + 1);
            break;
        }
        float *g = dm_model_grads(s.model);
        memset(g, 0, P * sizeof(float));
        dm_model_backward(s.model, s.dlogits, B);
        if (!isfinite(dm_grad_clip(g, P, cfg->optim.grad_clip))) {
            st = dm_error_set(err, DM_ERR_NUMERIC, "classifier step %lld: the gradient is not "
                              "finite", (long long)step + 1);
            break;
        }
        dm_adam_step(&s.opt, dm_model_params(s.model), g);
        dm_ema_update(s.ema, dm_model_params(s.model), P,
                      dm_ema_warmup_decay(cfg->optim.ema_decay, step));
        if (progress && progress(ctx, step + 1, cfg->steps, loss)) {
            step++;
            break;
        }
    }
    if (!st) st = save(cfg, &s, step, dir, err);
    if (steps_done) *steps_done = step;
    train_state_free(&s);
    return st;
}

/* ---------------------------------------------------------------------------------------- */
/* Using a trained classifier                                                               */

dm_status dm_classifier_load(dm_classifier **out, const char *dir, dm_error *err) {
    *out = NULL;
    dm_classifier *c = calloc(1, sizeof *c);
    if (!c) return dm_error_set(err, DM_ERR_NOMEM, "out of memory");
    char path[4400];
    dm_status st;
    snprintf(path, sizeof path, "%s/" DM_CKPT_MODEL, dir);
    if ((st = read_config(&c->cfg, dir, err)) ||
        (st = dm_schedule_init(&c->sched, &c->cfg.schedule, err)) ||
        (st = dm_weights_count_check(path, dm_unet_num_params(&c->cfg.net), err)) ||
        (st = dm_unet_create(&c->model, &c->cfg.net, 0, err)) ||
        (st = dm_model_weights_load(c->model, path, err))) {
        dm_classifier_free(c);
        return st;
    }
    *out = c;
    return DM_OK;
}

void dm_classifier_free(dm_classifier *c) {
    if (!c) return;
    dm_model_free(c->model);
    dm_schedule_free(&c->sched);
    dm_free(c->logits), dm_free(c->dlogits), dm_free(c->tzero);
    free(c);
}

const dm_classifier_config *dm_classifier_get_config(const dm_classifier *c) { return &c->cfg; }
int32_t dm_classifier_num_classes(const dm_classifier *c) {
    return (int32_t)c->cfg.net.classifier_classes;
}
int64_t dm_classifier_feature_dim(const dm_classifier *c) {
    const dm_unet_config *n = &c->cfg.net;
    return n->block_out_channels[n->levels - 1];
}

static dm_status ensure(dm_classifier *c, int64_t B, dm_error *err) {
    if (B <= c->cap) return DM_OK;
    const int64_t K = c->cfg.net.classifier_classes;
    dm_free(c->logits), dm_free(c->dlogits), dm_free(c->tzero);
    c->cap = 0;
    c->logits = dm_alloc((size_t)(B * K) * sizeof(float));
    c->dlogits = dm_alloc((size_t)(B * K) * sizeof(float));
    c->tzero = dm_alloc((size_t)B * sizeof(float));
    if (!c->logits || !c->dlogits || !c->tzero)
        return dm_error_set(err, DM_ERR_NOMEM, "out of memory for a classifier batch of %lld",
                            (long long)B);
    memset(c->tzero, 0, (size_t)B * sizeof(float));
    c->cap = B;
    return DM_OK;
}

dm_status dm_classifier_forward(dm_classifier *c, float *logits, float *features, const float *x,
                                const float *t, int64_t B, dm_error *err) {
    dm_status st = ensure(c, B, err);
    if (st) return st;
    if ((st = dm_model_forward(c->model, logits, x, t ? t : c->tzero, B, 0, err))) return st;
    if (features) {
        int64_t F = 0;
        const float *f = dm_unet_classifier_features(c->model, &F);
        memcpy(features, f, (size_t)(B * F) * sizeof *features);
    }
    return DM_OK;
}

dm_status dm_classifier_grad_log_prob(dm_classifier *c, float *grad, const float *x,
                                      const float *t, const int32_t *y, int64_t B,
                                      dm_error *err) {
    const int64_t K = c->cfg.net.classifier_classes, D = dm_model_dim(c->model);
    for (int64_t b = 0; b < B; b++)
        if (y[b] < 0 || y[b] >= K)
            return dm_error_set(err, DM_ERR_ARG, "class %d is outside the classifier's 0..%lld",
                                (int)y[b], (long long)K - 1);
    dm_status st = ensure(c, B, err);
    if (st) return st;
    /* a training forward keeps the activations the backward pass needs */
    if ((st = dm_model_forward(c->model, c->logits, x, t ? t : c->tzero, B, 1, err))) return st;
    /* d log softmax(z)_y / dz = onehot(y) - softmax(z); cross_entropy gives the negative / B */
    (void)cross_entropy(c->logits, y, c->dlogits, B, K);
    for (int64_t i = 0; i < B * K; i++) c->dlogits[i] *= -(float)B;
    memset(grad, 0, (size_t)(B * D) * sizeof *grad);
    /* the parameter gradients this also accumulates are not used */
    memset(dm_model_grads(c->model), 0, dm_model_num_params(c->model) * sizeof(float));
    dm_model_backward_input(c->model, c->dlogits, grad, B);
    return DM_OK;
}

dm_status dm_classifier_check_guidance(const dm_classifier *c, const dm_schedule *s, int64_t ch,
                                       int64_t h, int64_t w, dm_error *err) {
    const dm_unet_config *n = &c->cfg.net;
    if (!c->cfg.noisy)
        return dm_error_set(err, DM_ERR_MISMATCH, "this classifier was trained on clean images "
                            "(an evaluation classifier) and cannot guide sampling from noise: "
                            "train one with --noisy");
    if (n->in_channels != ch || n->sample_size != h || n->sample_size != w)
        return dm_error_set(err, DM_ERR_MISMATCH, "the classifier takes %lld x %lld x %lld images, "
                            "the diffusion model makes %lld x %lld x %lld",
                            (long long)n->in_channels, (long long)n->sample_size,
                            (long long)n->sample_size, (long long)ch, (long long)h, (long long)w);
    if (c->sched.T != s->T)
        return dm_error_set(err, DM_ERR_MISMATCH, "the classifier was trained on a schedule of "
                            "T = %d steps, the diffusion model has T = %d", (int)c->sched.T,
                            (int)s->T);
    for (int32_t i = 0; i < s->T; i++)
        if (fabs(c->sched.alpha_bar[i] - s->alpha_bar[i]) > 1e-9)
            return dm_error_set(err, DM_ERR_MISMATCH, "the classifier's noise schedule (%s) differs "
                                "from the diffusion model's at t = %d (alpha_bar %.6g vs %.6g): "
                                "train the classifier with the model's --schedule",
                                dm_schedule_kind_name(c->cfg.schedule.kind), (int)i + 1,
                                c->sched.alpha_bar[i], s->alpha_bar[i]);
    return DM_OK;
}

dm_status dm_classifier_accuracy(dm_classifier *c, const dm_dataset *data, const float *t,
                                 double *accuracy, dm_error *err) {
    if (data && !data->x) return dm_error_set(err, DM_ERR_ARG, "%s: the data are uint8 pixels; convert them with dm_dataset_to_float", "classifier accuracy");
    const int64_t K = c->cfg.net.classifier_classes, D = dm_model_dim(c->model);
    if (!data || data->dim != D || !data->labels || data->n < 1)
        return dm_error_set(err, DM_ERR_ARG, "accuracy needs labelled images of %lld values",
                            (long long)D);
    enum { CHUNK = 256 };
    float *logits = dm_alloc((size_t)(CHUNK * K) * sizeof(float));
    if (!logits) return dm_error_set(err, DM_ERR_NOMEM, "out of memory");
    int64_t right = 0;
    dm_status st = DM_OK;
    for (int64_t s = 0; s < data->n && !st; s += CHUNK) {
        const int64_t B = data->n - s < CHUNK ? data->n - s : CHUNK;
        st = dm_classifier_forward(c, logits, NULL, data->x + s * D, t ? t + s : NULL, B, err);
        for (int64_t b = 0; !st && b < B; b++) {
            int64_t best = 0;
            for (int64_t k = 1; k < K; k++)
                if (logits[b * K + k] > logits[b * K + best]) best = k;
            right += best == data->labels[s + b];
        }
    }
    dm_free(logits);
    if (!st) *accuracy = (double)right / (double)data->n;
    return st;
}
