/* Checkpoint folders: JSON config through cJSON, tensors through safetensors, and the folder
 * swap that keeps a complete checkpoint on disk at every moment. */
#include "diffusion/checkpoint.h"

#include "io/atomic_file.h"
#include "io/json_file.h"
#include "diffusion/vdm.h"
#include "io/safetensors.h"
#include "models/mlp.h"
#include "models/model.h"
#include "models/unet.h"

#include <cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---------------------------------------------------------------------------------------- */
/* config.json                                                                              */

void dm_schedule_config_add_json(cJSON *parent, const dm_schedule_config *c) {
    cJSON *sched = cJSON_AddObjectToObject(parent, "schedule");
    cJSON_AddStringToObject(sched, "kind", dm_schedule_kind_name(c->kind));
    cJSON_AddNumberToObject(sched, "T", c->T);
    cJSON_AddNumberToObject(sched, "beta_start", c->beta_start);
    cJSON_AddNumberToObject(sched, "beta_end", c->beta_end);
    cJSON_AddNumberToObject(sched, "cosine_s", c->cosine_s);
    cJSON_AddNumberToObject(sched, "gamma_min", c->gamma_min);
    cJSON_AddNumberToObject(sched, "gamma_max", c->gamma_max);
}

dm_status dm_checkpoint_config_write(const char *path, const dm_checkpoint_config *c,
                                     dm_error *err) {
    const dm_train_config *t = &c->train;
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "format", "diffusion.c checkpoint");
    cJSON_AddNumberToObject(root, "version", 1);
    cJSON_AddStringToObject(root, "prediction", dm_prediction_name(t->prediction));

    cJSON *model = cJSON_AddObjectToObject(root, "model");
    if (t->arch == DM_ARCH_UNET) {
        /* the architecture lives in diffusers' own file beside the weights */
        cJSON_AddStringToObject(model, "type", "unet");
        cJSON_AddStringToObject(model, "config", DM_CKPT_UNET_DIR "/" DM_DIFFUSERS_CONFIG);
    } else {
        cJSON_AddStringToObject(model, "type", "mlp");
        cJSON_AddNumberToObject(model, "dim", (double)t->mlp.dim);
        cJSON_AddNumberToObject(model, "hidden", (double)t->mlp.hidden);
        cJSON_AddNumberToObject(model, "temb_dim", (double)t->mlp.temb_dim);
        cJSON_AddNumberToObject(model, "layers", (double)t->mlp.layers);
        cJSON_AddNumberToObject(model, "out_dim", (double)t->mlp.out_dim);
    }

    cJSON *obj = cJSON_AddObjectToObject(root, "objective");
    cJSON_AddStringToObject(obj, "loss", dm_loss_kind_name(t->loss));
    cJSON_AddStringToObject(obj, "variance", dm_reverse_var_name(t->var));
    cJSON_AddStringToObject(obj, "timesteps", dm_time_sampling_name(t->timesteps));
    cJSON_AddNumberToObject(obj, "hybrid_lambda", t->hybrid_lambda);

    if (t->num_classes) {
        /* K data classes; the model's class embeddings are K + 1, index K the null label */
        cJSON *cond = cJSON_AddObjectToObject(root, "conditioning");
        cJSON_AddNumberToObject(cond, "num_classes", t->num_classes);
        cJSON_AddNumberToObject(cond, "null_label", t->num_classes);
        cJSON_AddNumberToObject(cond, "p_uncond", t->p_uncond);
    }

    dm_schedule_config_add_json(root, &t->schedule);
    if (t->sde_training) { /* trained in continuous time on this SDE (absent: the discrete chain) */
        cJSON *sde = cJSON_AddObjectToObject(root, "sde");
        cJSON_AddStringToObject(sde, "kind", dm_sde_kind_name(t->sde.kind));
        cJSON_AddNumberToObject(sde, "beta_min", t->sde.beta_min);
        cJSON_AddNumberToObject(sde, "beta_max", t->sde.beta_max);
        cJSON_AddNumberToObject(sde, "sigma_min", t->sde.sigma_min);
        cJSON_AddNumberToObject(sde, "sigma_max", t->sde.sigma_max);
        cJSON_AddNumberToObject(sde, "eps", t->sde.eps);
    }

    cJSON *norm = cJSON_AddObjectToObject(root, "normalization");
    cJSON_AddItemToObject(norm, "mean", cJSON_CreateDoubleArray(c->norm.mean, (int)c->norm.dim));
    cJSON_AddItemToObject(norm, "std", cJSON_CreateDoubleArray(c->norm.std, (int)c->norm.dim));

    cJSON *tr = cJSON_AddObjectToObject(root, "training");
    cJSON_AddNumberToObject(tr, "step", (double)c->step);
    cJSON_AddNumberToObject(tr, "steps", (double)t->steps);
    cJSON_AddNumberToObject(tr, "batch", (double)t->batch);
    cJSON_AddNumberToObject(tr, "seed", (double)t->seed);
    cJSON_AddBoolToObject(tr, "normalize", t->normalize);
    cJSON_AddBoolToObject(tr, "hflip", t->hflip);
    cJSON_AddNumberToObject(tr, "lr", t->optim.lr);
    cJSON_AddNumberToObject(tr, "beta1", t->optim.beta1);
    cJSON_AddNumberToObject(tr, "beta2", t->optim.beta2);
    cJSON_AddNumberToObject(tr, "eps", t->optim.eps);
    cJSON_AddNumberToObject(tr, "weight_decay", t->optim.weight_decay);
    cJSON_AddNumberToObject(tr, "warmup", (double)t->optim.warmup);
    /* the learning-rate schedule by diffusers' names (lr_scheduler, lr_num_cycles, lr_power) */
    cJSON_AddStringToObject(tr, "lr_scheduler", dm_lr_schedule_name(t->optim.lr_schedule));
    cJSON_AddNumberToObject(tr, "lr_num_cycles", t->optim.lr_num_cycles);
    cJSON_AddNumberToObject(tr, "lr_power", t->optim.lr_power);
    cJSON_AddNumberToObject(tr, "lr_end", t->optim.lr_end);
    cJSON_AddNumberToObject(tr, "gradient_accumulation_steps", (double)t->grad_accum);
    cJSON_AddNumberToObject(tr, "grad_clip", t->optim.grad_clip);
    cJSON_AddNumberToObject(tr, "ema_decay", t->optim.ema_decay);
    cJSON_AddNumberToObject(tr, "data_rows", (double)c->data_n);
    char hash[32];
    snprintf(hash, sizeof hash, "%016llx", (unsigned long long)c->data_hash);
    cJSON_AddStringToObject(tr, "data_fnv1a", hash);

    dm_status st = dm_json_write(path, root, err);
    cJSON_Delete(root);
    return st;
}

/* Reads a required number field of obj; errors name the file and the field. */
static dm_status get_number(const cJSON *obj, const char *section, const char *key, double *out,
                            const char *path, dm_error *err) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsNumber(item) || !isfinite(item->valuedouble))
        return dm_error_set(err, DM_ERR_FORMAT, "%s: field \"%s.%s\" missing or not a number",
                            path, section, key);
    *out = item->valuedouble;
    return DM_OK;
}

static dm_status get_int(const cJSON *obj, const char *section, const char *key, int64_t *out,
                         const char *path, dm_error *err) {
    double v = 0;
    dm_status st = get_number(obj, section, key, &v, path, err);
    if (st) return st;
    if (v != floor(v) || fabs(v) > 9007199254740992.0)
        return dm_error_set(err, DM_ERR_FORMAT, "%s: field \"%s.%s\" must be an integer", path,
                            section, key);
    *out = (int64_t)v;
    return DM_OK;
}

dm_status dm_schedule_config_read_json(const cJSON *sched, dm_schedule_config *c,
                                       const char *path, dm_error *err) {
    int64_t T = 0;
    dm_status st;
    if ((st = get_int(sched, "schedule", "T", &T, path, err)) ||
        (st = get_number(sched, "schedule", "beta_start", &c->beta_start, path, err)) ||
        (st = get_number(sched, "schedule", "beta_end", &c->beta_end, path, err)) ||
        (st = get_number(sched, "schedule", "cosine_s", &c->cosine_s, path, err)) ||
        (st = get_number(sched, "schedule", "gamma_min", &c->gamma_min, path, err)) ||
        (st = get_number(sched, "schedule", "gamma_max", &c->gamma_max, path, err)))
        return st;
    if (T < 1 || T > 100000)
        return dm_error_set(err, DM_ERR_FORMAT, "%s: schedule.T = %lld out of range", path,
                            (long long)T);
    c->T = (int32_t)T;
    const cJSON *kind = cJSON_GetObjectItemCaseSensitive(sched, "kind");
    if (!cJSON_IsString(kind))
        return dm_error_set(err, DM_ERR_FORMAT, "%s: schedule.kind missing", path);
    if ((st = dm_schedule_kind_parse(kind->valuestring, &c->kind, err))) {
        dm_error_prefix(err, "%s: schedule.kind", path); /* returns DM_OK when err is NULL */
        return st;
    }
    return DM_OK;
}

static const cJSON *get_object(const cJSON *root, const char *key, const char *path,
                               dm_error *err) {
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!cJSON_IsObject(o)) dm_error_set(err, DM_ERR_FORMAT, "%s: object \"%s\" missing", path, key);
    return cJSON_IsObject(o) ? o : NULL;
}

/* The range a checkpoint's normalisation must lie in (checked on load). */
#define DM_NORM_MIN_STD 1e-12
#define DM_NORM_MAX_ABS 1e30

static dm_status read_double_array(const cJSON *obj, const char *key, double *out, int64_t n,
                                   const char *path, dm_error *err) {
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) != n)
        return dm_error_set(err, DM_ERR_FORMAT,
                            "%s: \"normalization.%s\" must be an array of %lld numbers", path, key,
                            (long long)n);
    int64_t i = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, arr) {
        if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
            return dm_error_set(err, DM_ERR_FORMAT, "%s: \"normalization.%s[%lld]\" not a number",
                                path, key, (long long)i);
        out[i++] = v->valuedouble;
    }
    return DM_OK;
}

/* A named choice of the "objective" object, parsed by its own parser. */
static dm_status get_choice(const cJSON *obj, const char *key, int *out,
                            dm_status (*parse)(const char *, int *, dm_error *), const char *path,
                            dm_error *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsString(v))
        return dm_error_set(err, DM_ERR_FORMAT, "%s: \"objective.%s\" missing or not a string",
                            path, key);
    dm_status st = parse(v->valuestring, out, err);
    /* dm_error_prefix returns err's status, DM_OK when err is NULL (found by fuzzing: with a
     * NULL err an unknown name was accepted), so the parser's own status is returned */
    if (st) dm_error_prefix(err, "%s: objective.%s", path, key);
    return st;
}

/* *v is set only on success: k is indeterminate when the name is refused */
static dm_status parse_loss(const char *s, int *v, dm_error *e) {
    dm_loss_kind k;
    dm_status st = dm_loss_kind_parse(s, &k, e);
    if (!st) *v = (int)k;
    return st;
}
static dm_status parse_var(const char *s, int *v, dm_error *e) {
    dm_reverse_var k;
    dm_status st = dm_reverse_var_parse(s, &k, e);
    if (!st) *v = (int)k;
    return st;
}
static dm_status parse_time(const char *s, int *v, dm_error *e) {
    dm_time_sampling k;
    dm_status st = dm_time_sampling_parse(s, &k, e);
    if (!st) *v = (int)k;
    return st;
}

static dm_status parse_objective(const cJSON *obj, dm_train_config *t, const char *path,
                                 dm_error *err) {
    int loss = 0, var = 0, ts = 0;
    dm_status st;
    if ((st = get_choice(obj, "loss", &loss, parse_loss, path, err)) ||
        (st = get_choice(obj, "variance", &var, parse_var, path, err)) ||
        (st = get_choice(obj, "timesteps", &ts, parse_time, path, err)) ||
        (st = get_number(obj, "objective", "hybrid_lambda", &t->hybrid_lambda, path, err)))
        return st;
    t->loss = (dm_loss_kind)loss;
    t->var = (dm_reverse_var)var;
    t->timesteps = (dm_time_sampling)ts;
    return DM_OK;
}

/* The learning-rate schedule and gradient accumulation: absent in checkpoints written before
 * them (constant_with_warmup, no accumulation: what those runs did). Values out of range are
 * refused here, naming the file; dm_trainer_resume checks the rest (lr_end < lr, a decay
 * longer than the warm-up) as it checks a new run's. */
static dm_status parse_lr_schedule(const cJSON *tr, dm_train_config *t, const char *path,
                                   dm_error *err) {
    dm_status st;
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(tr, "lr_scheduler");
    if (name) {
        if (!cJSON_IsString(name))
            return dm_error_set(err, DM_ERR_FORMAT, "%s: field \"training.lr_scheduler\" is not "
                                "a string", path);
        if (dm_lr_schedule_parse(name->valuestring, &t->optim.lr_schedule, err)) {
            dm_error_prefix(err, "%s: training.lr_scheduler", path);
            if (err) err->status = DM_ERR_FORMAT; /* a damaged file, not a bad argument */
            return DM_ERR_FORMAT;
        }
    }
    int64_t cycles = t->optim.lr_num_cycles, accum = t->grad_accum;
    if ((cJSON_GetObjectItemCaseSensitive(tr, "lr_num_cycles") &&
         (st = get_int(tr, "training", "lr_num_cycles", &cycles, path, err))) ||
        (cJSON_GetObjectItemCaseSensitive(tr, "lr_power") &&
         (st = get_number(tr, "training", "lr_power", &t->optim.lr_power, path, err))) ||
        (cJSON_GetObjectItemCaseSensitive(tr, "lr_end") &&
         (st = get_number(tr, "training", "lr_end", &t->optim.lr_end, path, err))) ||
        (cJSON_GetObjectItemCaseSensitive(tr, "gradient_accumulation_steps") &&
         (st = get_int(tr, "training", "gradient_accumulation_steps", &accum, path, err))))
        return st;
    if (cycles < 1 || cycles > INT32_MAX)
        return dm_error_set(err, DM_ERR_FORMAT, "%s: training.lr_num_cycles = %lld: must be "
                            "1..%d", path, (long long)cycles, INT32_MAX);
    if (!(t->optim.lr_power > 0 && t->optim.lr_power <= 1e6) || !(t->optim.lr_end >= 0))
        return dm_error_set(err, DM_ERR_FORMAT, "%s: training.lr_power = %g or lr_end = %g out "
                            "of range", path, t->optim.lr_power, t->optim.lr_end);
    if (accum < 1 || accum > (1 << 24))
        return dm_error_set(err, DM_ERR_FORMAT, "%s: training.gradient_accumulation_steps = "
                            "%lld: must be 1..16777216", path, (long long)accum);
    t->optim.lr_num_cycles = (int32_t)cycles;
    t->grad_accum = accum;
    return DM_OK;
}

/* "sde" is present only for models trained in continuous time; every field required and the
 * whole checked as the trainer checks it. */
static dm_status parse_sde(const cJSON *root, dm_train_config *t, const char *path,
                           dm_error *err) {
    const cJSON *sde = cJSON_GetObjectItemCaseSensitive(root, "sde");
    if (!sde) return DM_OK;
    const cJSON *kind = cJSON_GetObjectItemCaseSensitive(sde, "kind");
    dm_status st;
    if (!cJSON_IsString(kind))
        return dm_error_set(err, DM_ERR_FORMAT, "%s: sde.kind missing", path);
    if ((st = dm_sde_kind_parse(kind->valuestring, &t->sde.kind, err))) {
        dm_error_prefix(err, "%s: sde.kind", path);
        return DM_ERR_FORMAT;
    }
    if ((st = get_number(sde, "sde", "beta_min", &t->sde.beta_min, path, err)) ||
        (st = get_number(sde, "sde", "beta_max", &t->sde.beta_max, path, err)) ||
        (st = get_number(sde, "sde", "sigma_min", &t->sde.sigma_min, path, err)) ||
        (st = get_number(sde, "sde", "sigma_max", &t->sde.sigma_max, path, err)) ||
        (st = get_number(sde, "sde", "eps", &t->sde.eps, path, err)))
        return st;
    t->sde_training = 1;
    if (dm_sde_check(&t->sde, err)) {
        dm_error_prefix(err, "%s", path);
        return DM_ERR_FORMAT;
    }
    return DM_OK;
}

static dm_status parse_config(const cJSON *root, dm_checkpoint_config *c, const char *path,
                              dm_error *err) {
    dm_train_config *t = &c->train;
    dm_train_config_default(t);
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(root, "format");
    if (!cJSON_IsString(fmt) || strcmp(fmt->valuestring, "diffusion.c checkpoint") != 0)
        return dm_error_set(err, DM_ERR_FORMAT,
                            "%s: not a diffusion.c checkpoint config (\"format\" missing)", path);
    const cJSON *model = get_object(root, "model", path, err);
    const cJSON *sched = model ? get_object(root, "schedule", path, err) : NULL;
    const cJSON *norm = sched ? get_object(root, "normalization", path, err) : NULL;
    const cJSON *tr = norm ? get_object(root, "training", path, err) : NULL;
    if (!tr) return DM_ERR_FORMAT;

    const cJSON *type = cJSON_GetObjectItemCaseSensitive(model, "type");
    if (cJSON_IsString(type) && strcmp(type->valuestring, "unet") == 0)
        t->arch = DM_ARCH_UNET;
    else if (!cJSON_IsString(type) || strcmp(type->valuestring, "mlp") != 0)
        return dm_error_set(err, DM_ERR_MISMATCH, "%s: model.type must be \"mlp\" or \"unet\"",
                            path);
    dm_status st;
    const cJSON *pred = cJSON_GetObjectItemCaseSensitive(root, "prediction");
    if (!cJSON_IsString(pred))
        return dm_error_set(err, DM_ERR_FORMAT, "%s: \"prediction\" missing", path);
    if ((st = dm_prediction_parse(pred->valuestring, &t->prediction, err))) {
        dm_error_prefix(err, "%s: prediction", path); /* returns DM_OK when err is NULL */
        return st;
    }
    /* "objective" is absent in checkpoints written before the design-space options: those
     * trained L_simple with the defaults */
    const cJSON *obj = cJSON_GetObjectItemCaseSensitive(root, "objective");
    if (obj && (st = parse_objective(obj, t, path, err))) return st;
    /* "conditioning" is present only for class-conditional models */
    const cJSON *cond = cJSON_GetObjectItemCaseSensitive(root, "conditioning");
    if (cond) {
        int64_t k = 0;
        if ((st = get_int(cond, "conditioning", "num_classes", &k, path, err)) ||
            (st = get_number(cond, "conditioning", "p_uncond", &t->p_uncond, path, err)))
            return st;
        if (k < 1 || k >= 1000000 || !(t->p_uncond >= 0 && t->p_uncond <= 1))
            return dm_error_set(err, DM_ERR_FORMAT, "%s: conditioning.num_classes = %lld or "
                                "p_uncond = %g out of range", path, (long long)k, t->p_uncond);
        t->num_classes = (int32_t)k;
    }
    const int64_t embeds = t->num_classes ? (int64_t)t->num_classes + 1 : 0;
    int64_t seed, normalize_flag = 1;
    if (t->arch == DM_ARCH_UNET) {
        /* unet/config.json in the same folder */
        char unet_path[4400];
        const char *slash = strrchr(path, '/');
        snprintf(unet_path, sizeof unet_path, "%.*s" DM_CKPT_UNET_DIR "/" DM_DIFFUSERS_CONFIG,
                 slash ? (int)(slash - path + 1) : 0, path);
        if ((st = dm_unet_config_read(&t->unet, unet_path, err))) return st;
        if (t->unet.num_class_embeds != embeds)
            return dm_error_set(err, DM_ERR_FORMAT, "%s: num_class_embeds %lld disagrees with "
                                "the %d classes (+ null label) of %s", unet_path,
                                (long long)t->unet.num_class_embeds, (int)t->num_classes, path);
    } else if ((st = get_int(model, "model", "dim", &t->mlp.dim, path, err)) ||
               (st = get_int(model, "model", "hidden", &t->mlp.hidden, path, err)) ||
               (st = get_int(model, "model", "temb_dim", &t->mlp.temb_dim, path, err)) ||
               (st = get_int(model, "model", "layers", &t->mlp.layers, path, err))) {
        return st;
    } else if (cJSON_GetObjectItemCaseSensitive(model, "out_dim") &&
               (st = get_int(model, "model", "out_dim", &t->mlp.out_dim, path, err))) {
        return st;
    }
    if ((st = dm_schedule_config_read_json(sched, &t->schedule, path, err)) ||
        (st = get_int(tr, "training", "step", &c->step, path, err)) ||
        (st = get_int(tr, "training", "steps", &t->steps, path, err)) ||
        (st = get_int(tr, "training", "batch", &t->batch, path, err)) ||
        (st = get_int(tr, "training", "seed", &seed, path, err)) ||
        (st = get_number(tr, "training", "lr", &t->optim.lr, path, err)) ||
        (st = get_number(tr, "training", "beta1", &t->optim.beta1, path, err)) ||
        (st = get_number(tr, "training", "beta2", &t->optim.beta2, path, err)) ||
        (st = get_number(tr, "training", "eps", &t->optim.eps, path, err)) ||
        (st = get_number(tr, "training", "weight_decay", &t->optim.weight_decay, path, err)) ||
        (st = get_int(tr, "training", "warmup", &t->optim.warmup, path, err)) ||
        (st = get_number(tr, "training", "grad_clip", &t->optim.grad_clip, path, err)) ||
        (st = get_number(tr, "training", "ema_decay", &t->optim.ema_decay, path, err)) ||
        (st = get_int(tr, "training", "data_rows", &c->data_n, path, err)))
        return st;
    if (seed < 0) return dm_error_set(err, DM_ERR_FORMAT, "%s: training.seed < 0", path);
    if ((st = parse_sde(root, t, path, err))) return st;
    t->seed = (uint64_t)seed;
    if ((st = parse_lr_schedule(tr, t, path, err))) return st;
    const cJSON *nf = cJSON_GetObjectItemCaseSensitive(tr, "normalize");
    if (cJSON_IsBool(nf)) normalize_flag = cJSON_IsTrue(nf);
    t->normalize = (int)normalize_flag;
    const cJSON *hf = cJSON_GetObjectItemCaseSensitive(tr, "hflip");
    t->hflip = cJSON_IsTrue(hf);
    if (t->arch == DM_ARCH_MLP) t->mlp.num_classes = embeds;
    if (t->arch == DM_ARCH_MLP && (t->mlp.dim < 1 || t->mlp.dim > DM_MAX_DIM))
        return dm_error_set(err, DM_ERR_FORMAT, "%s: model.dim = %lld out of range 1..%d", path,
                            (long long)t->mlp.dim, DM_MAX_DIM);
    c->norm.dim = t->arch == DM_ARCH_MLP ? t->mlp.dim : 0;
    if ((st = read_double_array(norm, "mean", c->norm.mean, c->norm.dim, path, err)) ||
        (st = read_double_array(norm, "std", c->norm.std, c->norm.dim, path, err)))
        return st;
    for (int64_t d = 0; d < c->norm.dim; d++) {
        /* dm_normalizer_fit never writes a std below 1e-12 (a constant column gets 1); std 0
         * would map every sample to the mean. Beyond 1e30 a sample a few standard deviations
         * out overflows float32 (3.4e38) when it is de-normalised. */
        if (!(c->norm.std[d] >= DM_NORM_MIN_STD && c->norm.std[d] <= DM_NORM_MAX_ABS))
            return dm_error_set(err, DM_ERR_FORMAT,
                                "%s: \"normalization.std[%lld]\" = %g is outside [%g, %g]", path,
                                (long long)d, c->norm.std[d], DM_NORM_MIN_STD, DM_NORM_MAX_ABS);
        if (!(fabs(c->norm.mean[d]) <= DM_NORM_MAX_ABS))
            return dm_error_set(err, DM_ERR_FORMAT,
                                "%s: \"normalization.mean[%lld]\" = %g is outside [-%g, %g]",
                                path, (long long)d, c->norm.mean[d], DM_NORM_MAX_ABS,
                                DM_NORM_MAX_ABS);
    }
    const cJSON *hash = cJSON_GetObjectItemCaseSensitive(tr, "data_fnv1a");
    c->data_hash = cJSON_IsString(hash) ? strtoull(hash->valuestring, NULL, 16) : 0;
    return DM_OK;
}

dm_status dm_checkpoint_config_read(const char *path, dm_checkpoint_config *c, dm_error *err) {
    cJSON *root;
    dm_status st = dm_json_read(&root, path, 65536, err);
    if (st) return st;
    memset(c, 0, sizeof *c);
    st = parse_config(root, c, path, err);
    cJSON_Delete(root);
    return st;
}

/* ---------------------------------------------------------------------------------------- */
/* Folders                                                                                  */

static int is_file(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

static int is_dir(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* path without trailing slashes, into out */
static dm_status strip_slashes(const char *path, char *out, size_t cap, dm_error *err) {
    size_t len = strlen(path);
    while (len > 1 && path[len - 1] == '/') len--;
    if (len == 0 || len + 16 >= cap) return dm_error_set(err, DM_ERR_ARG, "bad path \"%s\"", path);
    memcpy(out, path, len);
    out[len] = '\0';
    return DM_OK;
}

/* The step of a training run's numbered checkpoint folder name "checkpoint-N"; -1 for any other
 * name (a leading zero, a sign or a suffix such as ".tmp" or ".old" included). */
int64_t dm_checkpoint_name_step(const char *name) {
    static const char prefix[] = "checkpoint-";
    if (strncmp(name, prefix, sizeof prefix - 1) != 0) return -1;
    const char *d = name + sizeof prefix - 1;
    if (!*d || (d[0] == '0' && d[1]) || strlen(d) > 15) return -1;
    int64_t n = 0;
    for (; *d; d++) {
        if (*d < '0' || *d > '9') return -1;
        n = 10 * n + (*d - '0');
    }
    return n;
}

/* The newest complete numbered checkpoint of a run folder (base/checkpoint-N with the largest N
 * holding a config.json) into out; 0 when there is none. */
static int newest_numbered(const char *base, char *out, size_t cap) {
    DIR *d = opendir(base);
    if (!d) return 0;
    int64_t best = -1;
    char probe[4400];
    struct dirent *e;
    while ((e = readdir(d))) {
        const int64_t n = dm_checkpoint_name_step(e->d_name);
        if (n <= best) continue;
        snprintf(probe, sizeof probe, "%s/%s/" DM_CKPT_CONFIG, base, e->d_name);
        if (is_file(probe)) best = n;
    }
    closedir(d);
    return best >= 0 && (size_t)snprintf(out, cap, "%s/checkpoint-%lld", base, (long long)best) < cap;
}

/* Whether PATH.old may be the complete copy a crash between the two renames of a save left:
 * PATH is gone, and PATH.tmp (the new copy, not yet renamed) is there or PATH is named as a
 * run's checkpoints are (checkpoint, checkpoint-N). Any other PATH.old is a sibling (runs/a.old
 * beside runs/a), never a stand-in for PATH. */
static bool cut_swap(const char *base) {
    char probe[4200];
    struct stat sb;
    if (lstat(base, &sb) == 0 && stat(base, &sb) == 0) return false;
    snprintf(probe, sizeof probe, "%s.tmp", base);
    if (is_dir(probe)) return true;
    const char *slash = strrchr(base, '/'), *name = slash ? slash + 1 : base;
    return strcmp(name, "checkpoint") == 0 || dm_checkpoint_name_step(name) >= 0;
}

dm_status dm_checkpoint_resolve(const char *path, char *out, size_t cap, dm_error *err) {
    char base[4096], probe[4200];
    dm_status st = strip_slashes(path, base, sizeof base, err);
    if (st) return st;
    const bool old_ok = cut_swap(base);
    const char *candidates[] = {"", "/checkpoint", ".old", "/checkpoint.old"};
    for (int i = 0; i < 4; i++) {
        if (i == 2 && !old_ok) continue;
        snprintf(probe, sizeof probe, "%s%s/" DM_CKPT_CONFIG, base, candidates[i]);
        if (is_file(probe)) {
            if ((size_t)snprintf(out, cap, "%s%s", base, candidates[i]) >= cap)
                return dm_error_set(err, DM_ERR_ARG, "%s: path too long", path);
            return DM_OK;
        }
    }
    /* a run folder whose checkpoint link is missing (a crash before it was made) */
    if (newest_numbered(base, out, cap)) return DM_OK;
    return dm_error_set(err, DM_ERR_IO, "%s: no checkpoint here (no %s in it, in %s/checkpoint "
                        "or in a %s/checkpoint-N)", path, DM_CKPT_CONFIG, path, path);
}

dm_status dm_checkpoint_find(const char *path, char *out, size_t cap, dm_error *err) {
    if (!path || !out || cap == 0) return dm_error_set(err, DM_ERR_ARG, "checkpoint: NULL path");
    return dm_checkpoint_resolve(path, out, cap, err);
}

/* Whether a file name is one of a checkpoint's or the temporary dm_atomic_open makes for one
 * ("<name>.tmp.<pid>"), which a process killed mid-write leaves behind. */
static bool is_checkpoint_file(const char *name, const char *const *names, size_t n) {
    for (size_t i = 0; i < n; i++) {
        const size_t len = strlen(names[i]);
        if (strncmp(name, names[i], len) != 0) continue;
        if (name[len] == '\0') return true;
        if (strncmp(name + len, ".tmp.", 5) != 0 || !name[len + 5]) continue;
        const char *d = name + len + 5;
        while (*d >= '0' && *d <= '9') d++;
        if (*d == '\0') return true;
    }
    return false;
}

/* Removes from the folder dfd the checkpoint files among names (and their stale temporaries).
 * unlinkat never follows a symbolic link: a link named like a checkpoint file goes, not the
 * file it points to. */
static void remove_checkpoint_files(int dfd, const char *const *names, size_t n) {
    const int fd = dup(dfd);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        if (fd >= 0) close(fd);
        return;
    }
    struct dirent *e;
    while ((e = readdir(d)))
        if (is_checkpoint_file(e->d_name, names, n)) unlinkat(dfd, e->d_name, 0);
    closedir(d);
}

/* Removes the subfolder sub of dfd holding the files among names; a symbolic link named sub is
 * removed itself, never followed. */
static void remove_checkpoint_subdir(int dfd, const char *sub, const char *const *names,
                                     size_t n) {
    struct stat sb;
    if (fstatat(dfd, sub, &sb, AT_SYMLINK_NOFOLLOW) != 0) return;
    if (S_ISLNK(sb.st_mode)) {
        unlinkat(dfd, sub, 0);
        return;
    }
    if (!S_ISDIR(sb.st_mode)) return;
    const int fd = openat(dfd, sub, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return;
    remove_checkpoint_files(fd, names, n);
    close(fd);
    unlinkat(dfd, sub, AT_REMOVEDIR);
}

/* The files a checkpoint folder may hold: at its top, in unet/ and in scheduler/. */
static const char *const ckpt_top[] = {DM_CKPT_CONFIG,   DM_CKPT_MODEL,          DM_CKPT_STATE,
                                       DM_CKPT_SCHEDULE, DM_CKPT_SCHEDULE_STATE,
                                       DM_CKPT_MODEL_INDEX};
static const char *const ckpt_unet[] = {DM_DIFFUSERS_CONFIG, DM_DIFFUSERS_WEIGHTS};
static const char *const ckpt_scheduler[] = {"scheduler_config.json"};

/* Removes a checkpoint folder: only the files a checkpoint holds (and the temporaries of a
 * write that was killed), then the folder, so a mistyped path can never delete anything else.
 * Symbolic links are never followed: when dir (or its unet/ or scheduler/) is a link, the link
 * goes and the folder it points to, which may lie outside the run folder, is left as it is. */
static dm_status remove_checkpoint_dir(const char *dir, dm_error *err) {
    struct stat sb;
    if (lstat(dir, &sb) != 0) return DM_OK;
    if (S_ISLNK(sb.st_mode)) {
        if (unlink(dir) != 0)
            return dm_error_set(err, DM_ERR_IO, "%s: cannot remove the symbolic link: %s", dir,
                                strerror(errno));
        return DM_OK;
    }
    if (!S_ISDIR(sb.st_mode)) return DM_OK;
    const int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return dm_error_set(err, DM_ERR_IO, "%s: cannot open the stale folder: %s", dir,
                            strerror(errno));
    remove_checkpoint_files(fd, ckpt_top, sizeof ckpt_top / sizeof ckpt_top[0]);
    remove_checkpoint_subdir(fd, DM_CKPT_UNET_DIR, ckpt_unet, 2);
    remove_checkpoint_subdir(fd, "scheduler", ckpt_scheduler, 1);
    close(fd);
    if (rmdir(dir) != 0)
        return dm_error_set(err, DM_ERR_IO,
                            "%s: cannot remove the stale folder (%s); it holds files that are "
                            "not a checkpoint's: move them away",
                            dir, strerror(errno));
    return DM_OK;
}

dm_status dm_checkpoint_remove(const char *dir, dm_error *err) {
    if (!dir || !*dir) return dm_error_set(err, DM_ERR_ARG, "checkpoint: NULL path");
    char base[4096];
    dm_status st = strip_slashes(dir, base, sizeof base, err);
    return st ? st : remove_checkpoint_dir(base, err);
}

static void fsync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

dm_status dm_checkpoint_begin(const char *dir, char *tmp, size_t cap, dm_error *err) {
    char base[4096];
    dm_status st = strip_slashes(dir, base, sizeof base, err);
    if (st) return st;
    if ((size_t)snprintf(tmp, cap, "%s.tmp", base) >= cap)
        return dm_error_set(err, DM_ERR_ARG, "%s: path too long", dir);
    if ((st = remove_checkpoint_dir(tmp, err))) return st;
    if (mkdir(tmp, 0755) != 0)
        return dm_error_set(err, DM_ERR_IO, "%s: cannot create folder: %s", tmp, strerror(errno));
    return DM_OK;
}

void dm_checkpoint_abort(const char *tmp) {
    dm_error ignored = {0};
    remove_checkpoint_dir(tmp, &ignored);
}

dm_status dm_checkpoint_commit(const char *dir, const char *tmp, dm_error *err) {
    char base[4096], old[4200], parent[4096];
    dm_status st = strip_slashes(dir, base, sizeof base, err);
    if (st) return st;
    snprintf(old, sizeof old, "%s.old", base);
    fsync_dir(tmp);
    if (is_dir(base)) {
        if ((st = remove_checkpoint_dir(old, err))) return st;
        if (rename(base, old) != 0)
            return dm_error_set(err, DM_ERR_IO, "%s: cannot move aside: %s", base, strerror(errno));
    }
    if (rename(tmp, base) != 0) {
        int saved = errno;
        rename(old, base); /* put the previous checkpoint back */
        return dm_error_set(err, DM_ERR_IO, "%s: cannot move into place: %s", tmp, strerror(saved));
    }
    snprintf(parent, sizeof parent, "%s", base);
    char *slash = strrchr(parent, '/');
    if (slash) *slash = '\0'; else snprintf(parent, sizeof parent, ".");
    fsync_dir(parent[0] ? parent : "/");
    return remove_checkpoint_dir(old, err);
}

/* dst as a second name of src (a hard link: no bytes copied, and safe because a checkpoint's
 * files are only ever replaced whole, never written in place), else a copy. */
static dm_status link_or_copy(const char *src, const char *dst, dm_error *err) {
    if (link(src, dst) == 0) return DM_OK;
    FILE *in = fopen(src, "rb");
    if (!in) return dm_error_set(err, DM_ERR_IO, "%s: cannot read: %s", src, strerror(errno));
    dm_atomic_file af;
    dm_status st = dm_atomic_open(&af, dst, err);
    if (st) {
        fclose(in);
        return st;
    }
    char buf[65536];
    size_t k;
    while (!st && (k = fread(buf, 1, sizeof buf, in)) > 0)
        if (fwrite(buf, 1, k, af.f) != k)
            st = dm_error_set(err, DM_ERR_IO, "%s: cannot write: %s", dst, strerror(errno));
    if (!st && ferror(in)) st = dm_error_set(err, DM_ERR_IO, "%s: cannot read", src);
    fclose(in);
    if (st) {
        dm_atomic_abort(&af);
        return st;
    }
    return dm_atomic_commit(&af, err);
}

/* The files among names in from/sub into to/sub (sub "" for the top). */
static dm_status copy_files(const char *from, const char *to, const char *sub,
                            const char *const *names, size_t n, dm_error *err) {
    char src[4400], dst[4400];
    snprintf(src, sizeof src, "%s/%s", from, sub);
    if (*sub) {
        if (!is_dir(src)) return DM_OK;
        snprintf(dst, sizeof dst, "%s/%s", to, sub);
        if (mkdir(dst, 0755) != 0)
            return dm_error_set(err, DM_ERR_IO, "%s: cannot create folder: %s", dst,
                                strerror(errno));
    }
    for (size_t i = 0; i < n; i++) {
        snprintf(src, sizeof src, "%s/%s%s%s", from, sub, *sub ? "/" : "", names[i]);
        snprintf(dst, sizeof dst, "%s/%s%s%s", to, sub, *sub ? "/" : "", names[i]);
        struct stat sb;
        if (lstat(src, &sb) != 0 || !S_ISREG(sb.st_mode)) continue;
        dm_status st = link_or_copy(src, dst, err);
        if (st) return st;
    }
    return DM_OK;
}

dm_status dm_checkpoint_copy(const char *from, const char *to, dm_error *err) {
    if (!from || !to) return dm_error_set(err, DM_ERR_ARG, "checkpoint: NULL path");
    char probe[4200], tmp[4200];
    snprintf(probe, sizeof probe, "%s/" DM_CKPT_CONFIG, from);
    if (!is_file(probe)) return dm_error_set(err, DM_ERR_IO, "%s: not a checkpoint", from);
    dm_status st = dm_checkpoint_begin(to, tmp, sizeof tmp, err);
    if (st) return st;
    if ((st = copy_files(from, tmp, "", ckpt_top, sizeof ckpt_top / sizeof ckpt_top[0], err)) ||
        (st = copy_files(from, tmp, DM_CKPT_UNET_DIR, ckpt_unet, 2, err)) ||
        (st = copy_files(from, tmp, "scheduler", ckpt_scheduler, 1, err))) {
        dm_checkpoint_abort(tmp);
        return st;
    }
    return dm_checkpoint_commit(to, tmp, err);
}

/* ---------------------------------------------------------------------------------------- */
/* Weights                                                                                  */

dm_status dm_model_weights_save(const dm_model *m, const float *weights, const char *path,
                                dm_error *err) {
    dm_st_tensor *ts = calloc((size_t)m->n_tensors, sizeof *ts);
    if (!ts) return dm_error_set(err, DM_ERR_NOMEM, "out of memory");
    for (int i = 0; i < m->n_tensors; i++) {
        const dm_param_tensor *p = &m->tensors[i];
        ts[i].name = p->name;
        ts[i].dtype = DM_DTYPE_F32;
        ts[i].ndim = p->ndim;
        for (int d = 0; d < p->ndim; d++) ts[i].shape[d] = p->shape[d];
        ts[i].data = weights + p->offset;
    }
    const char *meta[] = {"format", "pt"};
    dm_status st = dm_safetensors_write(path, ts, m->n_tensors, meta, 1, err);
    free(ts);
    return st;
}

/* *found: the file of files[] holding tensor p under its name or its alias, *held_as: the name
 * it has there (in buf); refused when none or more than one holds it. */
static dm_status find_tensor(dm_safetensors *const *files, int n_files, const dm_param_tensor *p,
                             dm_weights_alias alias, const char *what, dm_safetensors **out,
                             const char **held_as, char *buf, size_t cap, dm_error *err) {
    const char *names[2] = {p->name, alias ? alias(p->name, buf, cap) : NULL};
    dm_safetensors *found = NULL;
    for (int f = 0; f < n_files; f++) {
        for (int k = 0; k < 2; k++) {
            if (!names[k] || !dm_safetensors_get(files[f], names[k])) continue;
            if (found)
                return dm_error_set(err, DM_ERR_MISMATCH,
                                    "tensor '%s' is held twice: as '%s' in %s and as '%s' in %s",
                                    p->name, *held_as, dm_safetensors_path(found), names[k],
                                    dm_safetensors_path(files[f]));
            found = files[f];
            *held_as = names[k];
        }
    }
    if (!found && names[1])
        return dm_error_set(err, DM_ERR_MISMATCH, "%s: no tensor '%s' (nor '%s')", what,
                            names[0], names[1]);
    if (!found) return dm_error_set(err, DM_ERR_MISMATCH, "%s: no tensor '%s'", what, names[0]);
    *out = found;
    return DM_OK;
}

dm_status dm_model_weights_load_files(dm_model *m, dm_safetensors *const *files, int n_files,
                                      dm_weights_alias alias, const char *what, dm_error *err) {
    int held = 0;
    for (int f = 0; f < n_files; f++) held += dm_safetensors_count(files[f]);
    if (held != m->n_tensors)
        return dm_error_set(err, DM_ERR_MISMATCH,
                            "%s: holds %d tensors, the model described by its config has %d",
                            what, held, m->n_tensors);
    /* every tensor of m in exactly one file, and the counts equal: the files hold no other */
    for (int i = 0; i < m->n_tensors; i++) {
        const dm_param_tensor *p = &m->tensors[i];
        char buf[2 * DM_TENSOR_NAME_MAX];
        const char *name = NULL;
        dm_safetensors *sf = NULL;
        dm_status st =
            find_tensor(files, n_files, p, alias, what, &sf, &name, buf, sizeof buf, err);
        if (st) return st;
        float *dst = m->params + p->offset;
        if ((st = dm_safetensors_read_f32(sf, name, dst, p->shape, p->ndim, err))) return st;
        size_t numel = 1;
        for (int d = 0; d < p->ndim; d++) numel *= (size_t)p->shape[d];
        if (!dm_all_finite(dst, numel))
            return dm_error_set(err, DM_ERR_NUMERIC, "%s: tensor '%s' contains NaN or Inf",
                                dm_safetensors_path(sf), name);
    }
    return DM_OK;
}

dm_status dm_model_weights_load(dm_model *m, const char *path, dm_error *err) {
    dm_safetensors *sf;
    dm_status st = dm_safetensors_open(&sf, path, err);
    if (st) return st;
    st = dm_model_weights_load_files(m, &sf, 1, NULL, path, err);
    dm_safetensors_close(sf);
    return st;
}

dm_status dm_checkpoint_vdm(dm_vdm *v, const char *dir, const dm_train_config *t, dm_error *err) {
    memset(v, 0, sizeof *v);
    v->learned = t->schedule.kind == DM_SCHEDULE_LEARNED;
    v->gamma_min = t->schedule.gamma_min;
    v->gamma_max = t->schedule.gamma_max;
    v->T = t->schedule.T;
    if (!v->learned) return DM_OK;
    char path[4400];
    snprintf(path, sizeof path, "%s/" DM_CKPT_SCHEDULE, dir);
    dm_safetensors *sf;
    dm_status st = dm_safetensors_open(&sf, path, err);
    if (st) return st;
    const dm_st_tensor *info = dm_safetensors_get(sf, "gamma_net");
    int64_t n = info && info->ndim == 1 ? info->shape[0] : 0;
    if (n < 6 || (n - 3) % 3 != 0 || n > 3 + 3 * 65536) {
        dm_safetensors_close(sf);
        return dm_error_set(err, DM_ERR_FORMAT, "%s: no 1-D tensor \"gamma_net\" of 3 + 3 H "
                            "values", path);
    }
    if ((st = dm_gamma_net_init(&v->net, (n - 3) / 3, t->schedule.gamma_min,
                                t->schedule.gamma_max, 0, err))) {
        dm_safetensors_close(sf);
        return st;
    }
    st = dm_safetensors_read_f32(sf, "gamma_net", v->net.params, &n, 1, err);
    dm_safetensors_close(sf);
    if (!st && !dm_all_finite(v->net.params, v->net.num_params))
        st = dm_error_set(err, DM_ERR_NUMERIC, "%s: the schedule contains NaN or Inf", path);
    if (st) dm_vdm_free(v);
    return st;
}

dm_status dm_checkpoint_schedule(dm_schedule *s, const char *dir, const dm_train_config *t,
                                 dm_error *err) {
    if (t->schedule.kind != DM_SCHEDULE_LEARNED) return dm_schedule_init(s, &t->schedule, err);
    dm_vdm v;
    dm_status st = dm_checkpoint_vdm(&v, dir, t, err);
    if (st) return st;
    double *ab = dm_alloc((size_t)t->schedule.T * sizeof(double));
    if (!ab) {
        dm_vdm_free(&v);
        return dm_error_set(err, DM_ERR_NOMEM, "out of memory");
    }
    dm_vdm_alpha_bar(&v, v.net.params, ab);
    st = dm_schedule_from_alpha_bar(s, ab, t->schedule.T, err);
    if (st) dm_error_prefix(err, "%s/" DM_CKPT_SCHEDULE, dir);
    dm_vdm_free(&v);
    dm_free(ab);
    return st;
}

dm_status dm_weights_count_check_files(dm_safetensors *const *files, int n_files,
                                       const char *what, double expected, dm_error *err) {
    if (!(expected > 0)) return DM_OK; /* an invalid config: creating the model says why */
    double held = 0;
    int n = 0;
    for (int f = 0; f < n_files; f++) {
        const int nf = dm_safetensors_count(files[f]);
        for (int i = 0; i < nf; i++) {
            const dm_st_tensor *t = dm_safetensors_at(files[f], i);
            double numel = 1;
            for (int d = 0; d < t->ndim; d++) numel *= (double)t->shape[d];
            held += numel;
        }
        n += nf;
    }
    if (held != expected)
        return dm_error_set(err, DM_ERR_MISMATCH,
                            "%s: holds %.0f parameters (%d tensors), the model its config "
                            "describes has %.0f: refused before creating the model",
                            what, held, n, expected);
    return DM_OK;
}

dm_status dm_weights_count_check(const char *path, double expected, dm_error *err) {
    if (!(expected > 0)) return DM_OK; /* an invalid config: creating the model says why */
    dm_safetensors *sf;
    dm_status st = dm_safetensors_open(&sf, path, err);
    if (st) return st;
    st = dm_weights_count_check_files(&sf, 1, path, expected, err);
    dm_safetensors_close(sf);
    return st;
}

dm_status dm_checkpoint_weights_check(const dm_train_config *t, const char *path, dm_error *err) {
    const double expected =
        t->arch == DM_ARCH_UNET ? dm_unet_num_params(&t->unet) : dm_mlp_num_params(&t->mlp);
    return dm_weights_count_check(path, expected, err);
}

dm_status dm_checkpoint_model_create(dm_model **m, const dm_checkpoint_config *c, dm_error *err) {
    if (c->train.arch == DM_ARCH_UNET) return dm_unet_create(m, &c->train.unet, c->train.seed, err);
    return dm_mlp_create(m, &c->train.mlp, c->train.seed, err);
}

void dm_checkpoint_weights_path(char *out, size_t cap, const char *dir,
                                const dm_train_config *t) {
    if (t->arch == DM_ARCH_UNET)
        snprintf(out, cap, "%s/" DM_CKPT_UNET_DIR "/" DM_DIFFUSERS_WEIGHTS, dir);
    else
        snprintf(out, cap, "%s/" DM_CKPT_MODEL, dir);
}

/* model_index.json and scheduler/scheduler_config.json, so that diffusers' DDPMPipeline loads
 * the folder as it is. The betas are written out (trained_betas), which covers every schedule;
 * beta_schedule names the schedule where diffusers has it (linear; cosine with s = 0.008 is
 * squaredcos_cap_v2) and is "linear" between the first and last beta otherwise (diffusers reads
 * trained_betas first). A score-predicting model is not written as a pipeline: diffusers has
 * no score prediction and the weights cannot be converted (the unet/ folder still loads). Nor
 * is a UNet with Fourier features (our FourierUNet2DModel, named so in unet/config.json):
 * diffusers' UNet2DModel has no such input. */
dm_status dm_checkpoint_write_diffusers_pipeline(const char *dir, const dm_schedule *s,
                                                 const dm_train_config *t, dm_error *err) {
    if (t->prediction == DM_PRED_SCORE) return DM_OK;
    if (t->arch == DM_ARCH_UNET && t->unet.fourier_features) return DM_OK;
    static const char *const prediction_type[] = {"epsilon", "sample", "v_prediction", "score"};
    static const char *const variance_type[] = {"fixed_large", "fixed_small", "learned_range"};
    char path[4400];
    cJSON *idx = cJSON_CreateObject();
    cJSON_AddStringToObject(idx, "_class_name", "DDPMPipeline");
    cJSON_AddStringToObject(idx, "_diffusers_version", "0.31.0");
    const char *sched_pair[] = {"diffusers", "DDPMScheduler"};
    const char *unet_pair[] = {"diffusers", "UNet2DModel"};
    cJSON_AddItemToObject(idx, "scheduler", cJSON_CreateStringArray(sched_pair, 2));
    cJSON_AddItemToObject(idx, "unet", cJSON_CreateStringArray(unet_pair, 2));
    cJSON *sc = cJSON_CreateObject();
    cJSON_AddStringToObject(sc, "_class_name", "DDPMScheduler");
    cJSON_AddStringToObject(sc, "_diffusers_version", "0.31.0");
    cJSON_AddNumberToObject(sc, "num_train_timesteps", s->T);
    const dm_schedule_config *k = &t->schedule;
    const int linear = k->kind == DM_SCHEDULE_LINEAR;
    const int cosine = k->kind == DM_SCHEDULE_COSINE && k->cosine_s == 0.008;
    cJSON_AddStringToObject(sc, "beta_schedule", cosine ? "squaredcos_cap_v2" : "linear");
    cJSON_AddNumberToObject(sc, "beta_start", linear ? k->beta_start : s->beta[0]);
    cJSON_AddNumberToObject(sc, "beta_end", linear ? k->beta_end : s->beta[s->T - 1]);
    cJSON_AddItemToObject(sc, "trained_betas", cJSON_CreateDoubleArray(s->beta, s->T));
    cJSON_AddStringToObject(sc, "variance_type", variance_type[t->var]);
    cJSON_AddBoolToObject(sc, "clip_sample", 1);
    cJSON_AddNumberToObject(sc, "clip_sample_range", 1.0);
    cJSON_AddStringToObject(sc, "prediction_type", prediction_type[t->prediction]);
    dm_status st = DM_OK;
    cJSON *docs[2] = {idx, sc};
    const char *names[2] = {DM_CKPT_MODEL_INDEX, DM_CKPT_SCHEDULER_CONFIG};
    snprintf(path, sizeof path, "%s/scheduler", dir);
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
        st = dm_error_set(err, DM_ERR_IO, "%s: cannot create folder: %s", path, strerror(errno));
    for (int i = 0; i < 2 && !st; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        st = dm_json_write(path, docs[i], err);
    }
    cJSON_Delete(idx);
    cJSON_Delete(sc);
    return st;
}
