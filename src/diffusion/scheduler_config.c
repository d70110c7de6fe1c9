/* diffusers' scheduler_config.json for DDPMScheduler, DDIMScheduler and DPMSolverMultistepScheduler
 * (diffusers 0.31.0, src/diffusers/schedulers/scheduling_{ddpm,ddim,dpmsolver_multistep}.py):
 * every key of each class is honoured or refused with its value named, and the betas are
 * computed as those classes compute them. docs/diffusers.md has the table of keys. */
#include "diffusion/diffusion_impl.h"
#include "io/json_file.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CONFIG_BYTES (16u << 20) /* trained_betas of T = 100000 fit easily */
#define MAX_T 100000

static const char *const class_names[] = {"DDPMScheduler", "DDIMScheduler",
                                          "DPMSolverMultistepScheduler"};

const char *dm_scheduler_class_name(dm_scheduler_class c) {
    return (int)c >= 0 && (int)c < 3 ? class_names[c] : "unknown";
}

/* The keys each class's __init__ takes (diffusers 0.31.0); any other key is refused. */
static const char *const ddpm_keys[] = {
    "num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "trained_betas",
    "variance_type", "clip_sample", "prediction_type", "thresholding",
    "dynamic_thresholding_ratio", "clip_sample_range", "sample_max_value", "timestep_spacing",
    "steps_offset", "rescale_betas_zero_snr", NULL};
static const char *const ddim_keys[] = {
    "num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "trained_betas",
    "clip_sample", "set_alpha_to_one", "steps_offset", "prediction_type", "thresholding",
    "dynamic_thresholding_ratio", "clip_sample_range", "sample_max_value", "timestep_spacing",
    "rescale_betas_zero_snr", NULL};
static const char *const dpm_keys[] = {
    "num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "trained_betas",
    "solver_order", "prediction_type", "thresholding", "dynamic_thresholding_ratio",
    "sample_max_value", "algorithm_type", "solver_type", "lower_order_final", "euler_at_final",
    "use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas", "use_lu_lambdas",
    "final_sigmas_type", "lambda_min_clipped", "variance_type", "timestep_spacing",
    "steps_offset", "rescale_betas_zero_snr", NULL};

typedef struct {
    const cJSON *root;
    const char *path;
    dm_error *err;
} reader;

/* The value of key, or NULL when absent or null (the class's default then applies). */
static const cJSON *value(const reader *r, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(r->root, key);
    return v && !cJSON_IsNull(v) ? v : NULL;
}

static dm_status get_bool(const reader *r, const char *key, int *out) {
    const cJSON *v = value(r, key);
    if (!v) return DM_OK;
    if (!cJSON_IsBool(v))
        return dm_error_set(r->err, DM_ERR_FORMAT, "%s: \"%s\" must be true or false", r->path,
                            key);
    *out = cJSON_IsTrue(v);
    return DM_OK;
}

static dm_status get_double(const reader *r, const char *key, double *out, double lo, double hi) {
    const cJSON *v = value(r, key);
    if (!v) return DM_OK;
    /* written so that NaN fails */
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= lo && v->valuedouble <= hi))
        return dm_error_set(r->err, DM_ERR_FORMAT, "%s: \"%s\" must be a number in [%g, %g]",
                            r->path, key, lo, hi);
    *out = v->valuedouble;
    return DM_OK;
}

static dm_status get_int(const reader *r, const char *key, int32_t *out, int32_t lo, int32_t hi) {
    double d = *out;
    dm_status st = get_double(r, key, &d, lo, hi);
    if (st) return st;
    if (d != floor(d))
        return dm_error_set(r->err, DM_ERR_FORMAT, "%s: \"%s\" must be a whole number", r->path,
                            key);
    *out = (int32_t)d;
    return DM_OK;
}

/* *out = the index of the key's string value in names (count), which lists what is honoured;
 * a value in refused gets the reason after it; anything else is named as unknown. */
static dm_status get_choice(const reader *r, const char *key, int *out, const char *const *names,
                            int count, const char *const *refused) {
    const cJSON *v = value(r, key);
    if (!v) return DM_OK;
    if (!cJSON_IsString(v))
        return dm_error_set(r->err, DM_ERR_FORMAT, "%s: \"%s\" must be a string", r->path, key);
    for (int i = 0; i < count; i++)
        if (strcmp(v->valuestring, names[i]) == 0) {
            *out = i;
            return DM_OK;
        }
    for (int i = 0; refused && refused[i]; i += 2)
        if (strcmp(v->valuestring, refused[i]) == 0)
            return dm_error_set(r->err, DM_ERR_FORMAT, "%s: %s \"%.100s\" is refused: %s",
                                r->path, key, v->valuestring, refused[i + 1]);
    char allowed[256] = "";
    for (int i = 0; i < count; i++) {
        strncat(allowed, i ? ", " : "", sizeof allowed - strlen(allowed) - 1);
        strncat(allowed, names[i], sizeof allowed - strlen(allowed) - 1);
    }
    return dm_error_set(r->err, DM_ERR_FORMAT, "%s: %s \"%.100s\" is not supported (allowed: "
                        "%s)", r->path, key, v->valuestring, allowed);
}

/* A boolean key honoured only when false: true is refused with the reason. */
static dm_status refuse_true(const reader *r, const char *key, const char *why) {
    int on = 0;
    dm_status st = get_bool(r, key, &on);
    if (st || !on) return st;
    return dm_error_set(r->err, DM_ERR_FORMAT, "%s: %s true is refused: %s", r->path, key,
                        why);
}

static float f32(double v) { return (float)v; }

/* diffusers' betas_for_alpha_bar (cosine): in double, capped at 0.999, then float32. */
static void squaredcos_cap_v2(double *b, int32_t T) {
    for (int32_t i = 0; i < T; i++) {
        const double t1 = (double)i / T, t2 = (double)(i + 1) / T;
        const double a1 = cos((t1 + 0.008) / 1.008 * M_PI / 2), a2 = cos((t2 + 0.008) / 1.008 * M_PI / 2);
        b[i] = f32(fmin(1.0 - (a2 * a2) / (a1 * a1), 0.999));
    }
}

/* torch.linspace(a, b, T) in float32 */
static double linspace_at(double a, double b, int32_t T, int32_t i) {
    if (T == 1) return f32(a);
    return f32(a + (b - a) * (double)i / (double)(T - 1));
}

static dm_status read_betas(const reader *r, dm_scheduler *sc) {
    static const char *const schedules[] = {"linear", "scaled_linear", "squaredcos_cap_v2",
                                            "sigmoid"};
    static const char *const refused_schedule[] = {
        "exp", "DDPM, DDIM and DPM-Solver take linear, scaled_linear, squaredcos_cap_v2 (and "
               "DDPM sigmoid)", NULL};
    int kind = 0;
    double start = 0.0001, end = 0.02;
    dm_status st;
    if ((st = get_choice(r, "beta_schedule", &kind, schedules, 4, refused_schedule)) ||
        (st = get_double(r, "beta_start", &start, 0, 1)) ||
        (st = get_double(r, "beta_end", &end, 0, 1)))
        return st;
    if (kind == 3 && sc->cls != DM_SCHEDULER_DDPM)
        return dm_error_set(r->err, DM_ERR_FORMAT, "%s: beta_schedule \"sigmoid\" is "
                            "refused: diffusers' %s does not implement it (DDPMScheduler does)",
                            r->path, dm_scheduler_class_name(sc->cls));
    sc->betas = dm_alloc((size_t)sc->T * sizeof(double));
    if (!sc->betas) return dm_error_set(r->err, DM_ERR_NOMEM, "%s: out of memory", r->path);
    const cJSON *trained = value(r, "trained_betas");
    if (trained) {
        if (!cJSON_IsArray(trained) || cJSON_GetArraySize(trained) != sc->T)
            return dm_error_set(r->err, DM_ERR_FORMAT, "%s: \"trained_betas\" must be an array "
                                "of num_train_timesteps = %d numbers", r->path, (int)sc->T);
        int32_t i = 0;
        for (const cJSON *b = trained->child; b; b = b->next, i++) {
            /* in (0, 1) as diffusers stores it, in float32 (1e-50 would become 0) */
            if (!cJSON_IsNumber(b) || !(b->valuedouble > 0 && b->valuedouble < 1) ||
                !(f32(b->valuedouble) > 0 && f32(b->valuedouble) < 1))
                return dm_error_set(r->err, DM_ERR_FORMAT, "%s: trained_betas[%d] must be a "
                                    "number in (0, 1), also in float32", r->path, (int)i);
            sc->betas[i] = f32(b->valuedouble);
        }
        return DM_OK;
    }
    for (int32_t i = 0; i < sc->T; i++) {
        switch (kind) {
        case 0: sc->betas[i] = linspace_at(start, end, sc->T, i); break;
        case 1: {
            const double v = linspace_at(sqrt(start), sqrt(end), sc->T, i);
            sc->betas[i] = f32(v * v);
            break;
        }
        case 3: {
            const double z = linspace_at(-6, 6, sc->T, i);
            sc->betas[i] = f32(f32(1.0 / (1.0 + exp(-z))) * (end - start) + start);
            break;
        }
        }
    }
    if (kind == 2) squaredcos_cap_v2(sc->betas, sc->T);
    for (int32_t i = 0; i < sc->T; i++)
        if (!(sc->betas[i] > 0 && sc->betas[i] < 1))
            return dm_error_set(r->err, DM_ERR_FORMAT, "%s: beta %d is %g; every beta must lie "
                                "in (0, 1) (beta_start %g, beta_end %g)", r->path, (int)i,
                                sc->betas[i], start, end);
    return DM_OK;
}

static dm_status read_prediction(const reader *r, dm_scheduler *sc) {
    static const char *const names[] = {"epsilon", "v_prediction", "sample"};
    static const dm_prediction kinds[] = {DM_PRED_EPS, DM_PRED_V, DM_PRED_X0};
    int k = 0;
    dm_status st = get_choice(r, "prediction_type", &k, names, 3, NULL);
    sc->prediction = kinds[k];
    return st;
}

static dm_status read_spacing(const reader *r, dm_scheduler *sc) {
    static const char *const names[] = {"leading", "trailing", "linspace"};
    int k = sc->spacing;
    dm_status st = get_choice(r, "timestep_spacing", &k, names, 3, NULL);
    sc->spacing = (dm_timestep_spacing)k;
    if (!st) st = get_int(r, "steps_offset", &sc->steps_offset, 0, MAX_T);
    return st;
}

static dm_status read_common(const reader *r, dm_scheduler *sc) {
    dm_status st;
    if ((st = read_prediction(r, sc)) || (st = read_spacing(r, sc)) ||
        (st = get_bool(r, "thresholding", &sc->thresholding)) ||
        (st = get_double(r, "dynamic_thresholding_ratio", &sc->dynamic_thresholding_ratio, 0,
                         1)) ||
        (st = get_double(r, "sample_max_value", &sc->sample_max_value, 1, 1e30)) ||
        (st = refuse_true(r, "rescale_betas_zero_snr",
                          "it makes alpha_bar of the last timestep 0, where diffusion.c's "
                          "samplers, which work from the predicted noise, divide by "
                          "sqrt(alpha_bar)")))
        return st;
    if (sc->cls != DM_SCHEDULER_DPMSOLVER &&
        ((st = get_bool(r, "clip_sample", &sc->clip_sample)) ||
         (st = get_double(r, "clip_sample_range", &sc->clip_sample_range, 1e-30, 1e30))))
        return st;
    return read_betas(r, sc);
}

static dm_status read_ddpm(const reader *r, dm_scheduler *sc) {
    static const char *const names[] = {"fixed_small", "fixed_small_log", "fixed_large",
                                        "learned", "learned_range"};
    static const char *const refused[] = {
        "fixed_large_log", "diffusers 0.31's DDPMScheduler.step takes the square root of "
                           "log(beta), which is NaN",
        NULL};
    int k = DM_DDPM_FIXED_SMALL;
    dm_status st = get_choice(r, "variance_type", &k, names, 5, refused);
    sc->variance = (dm_ddpm_variance)k;
    sc->variance_output = k == DM_DDPM_LEARNED || k == DM_DDPM_LEARNED_RANGE;
    return st;
}

static dm_status read_ddim(const reader *r, dm_scheduler *sc) {
    sc->set_alpha_to_one = 1;
    return get_bool(r, "set_alpha_to_one", &sc->set_alpha_to_one);
}

static dm_status read_dpm(const reader *r, dm_scheduler *sc) {
    static const char *const algorithms[] = {"dpmsolver++", "deis"}; /* deis: diffusers runs dpmsolver++ */
    static const char *const refused_alg[] = {
        "dpmsolver", "only the data-prediction form dpmsolver++ is implemented",
        "sde-dpmsolver++", "only the deterministic dpmsolver++ is implemented",
        "sde-dpmsolver", "only the deterministic dpmsolver++ is implemented", NULL};
    static const char *const solvers[] = {"midpoint", "heun", "logrho", "bh1", "bh2"};
    static const char *const finals[] = {"zero", "sigma_min"};
    static const char *const variances[] = {"learned", "learned_range"};
    int alg = 0, solver = 0, final = 0, var = -1;
    dm_status st;
    sc->solver_order = 2;
    sc->lower_order_final = 1;
    sc->spacing = DM_SPACING_LINSPACE;
    sc->lambda_min_clipped = -INFINITY;
    if ((st = get_choice(r, "algorithm_type", &alg, algorithms, 2, refused_alg)) ||
        (st = get_choice(r, "solver_type", &solver, solvers, 5, NULL)) ||
        (st = get_choice(r, "final_sigmas_type", &final, finals, 2, NULL)) ||
        (st = get_choice(r, "variance_type", &var, variances, 2, NULL)) ||
        (st = get_int(r, "solver_order", &sc->solver_order, 1, 3)) ||
        (st = get_bool(r, "lower_order_final", &sc->lower_order_final)) ||
        (st = get_bool(r, "euler_at_final", &sc->euler_at_final)) ||
        (st = get_double(r, "lambda_min_clipped", &sc->lambda_min_clipped, -INFINITY,
                         INFINITY)) ||
        (st = refuse_true(r, "use_karras_sigmas", "Karras sigmas are not implemented")) ||
        (st = refuse_true(r, "use_exponential_sigmas", "exponential sigmas are not implemented")) ||
        (st = refuse_true(r, "use_beta_sigmas", "beta sigmas are not implemented")) ||
        (st = refuse_true(r, "use_lu_lambdas", "Lu's lambdas are not implemented")))
        return st;
    if (sc->solver_order == 3)
        return dm_error_set(r->err, DM_ERR_FORMAT, "%s: solver_order 3 is refused: "
                            "DPM-Solver++(3M) is not implemented (1 and 2 are)", r->path);
    sc->heun = solver == 1; /* logrho, bh1, bh2: diffusers uses midpoint */
    sc->final_sigma_min = final == 1;
    /* learned variances: diffusers drops the variance channel; the model has one */
    sc->variance_output = var >= 0;
    return DM_OK;
}

/* The scheduler a config object describes; path names it in errors. */
static dm_status scheduler_parse(dm_scheduler *sc, const cJSON *root, const char *path,
                                 dm_error *err) {
    memset(sc, 0, sizeof *sc);
    dm_status st = DM_OK;
    reader r = {root, path, err};
    const cJSON *cls = cJSON_GetObjectItemCaseSensitive(root, "_class_name");
    if (!cJSON_IsString(cls)) {
        st = dm_error_set(err, DM_ERR_FORMAT, "%s: no \"_class_name\": not a diffusers "
                          "scheduler config", path);
        goto done;
    }
    int found = -1;
    for (int i = 0; i < 3; i++)
        if (strcmp(cls->valuestring, class_names[i]) == 0) found = i;
    if (found < 0) {
        st = dm_error_set(err, DM_ERR_FORMAT, "%s: scheduler class \"%.100s\" is not run "
                          "by diffusion.c (DDPMScheduler, DDIMScheduler and "
                          "DPMSolverMultistepScheduler are)", path, cls->valuestring);
        goto done;
    }
    sc->cls = (dm_scheduler_class)found;
    const char *const *keys = found == 0 ? ddpm_keys : found == 1 ? ddim_keys : dpm_keys;
    for (const cJSON *c = root->child; c; c = c->next) {
        if (c->string[0] == '_') continue; /* _class_name, _diffusers_version, _use_default_values */
        int known = 0;
        for (int i = 0; keys[i] && !known; i++) known = strcmp(c->string, keys[i]) == 0;
        if (!known) {
            st = dm_error_set(err, DM_ERR_FORMAT, "%s: key \"%.100s\" is not one diffusers "
                              "0.31's %s takes; refused rather than ignored", path, c->string,
                              cls->valuestring);
            goto done;
        }
    }
    /* the classes' defaults */
    sc->T = 1000;
    sc->prediction = DM_PRED_EPS;
    sc->variance = DM_DDPM_FIXED_SMALL;
    sc->clip_sample = sc->cls != DM_SCHEDULER_DPMSOLVER;
    sc->clip_sample_range = 1.0;
    sc->dynamic_thresholding_ratio = 0.995;
    sc->sample_max_value = 1.0;
    sc->spacing = DM_SPACING_LEADING;
    sc->default_steps = sc->cls == DM_SCHEDULER_DDPM ? 1000 : sc->cls == DM_SCHEDULER_DDIM ? 50 : 20;
    if ((st = get_int(&r, "num_train_timesteps", &sc->T, 1, MAX_T))) goto done;
    if (sc->cls == DM_SCHEDULER_DDPM) st = read_ddpm(&r, sc);
    else if (sc->cls == DM_SCHEDULER_DDIM) st = read_ddim(&r, sc);
    else st = read_dpm(&r, sc);
    if (!st) st = read_common(&r, sc);
    if (sc->default_steps > sc->T) sc->default_steps = sc->T;
done:
    if (st) dm_scheduler_free(sc);
    return st;
}

dm_status dm_scheduler_read(dm_scheduler *sc, const char *path, dm_error *err) {
    memset(sc, 0, sizeof *sc);
    cJSON *root;
    dm_status st = dm_json_read_python(&root, path, MAX_CONFIG_BYTES, err);
    if (st) return st;
    st = scheduler_parse(sc, root, path, err);
    cJSON_Delete(root);
    return st;
}

dm_status dm_scheduler_default(dm_scheduler *sc, dm_scheduler_class cls, dm_error *err) {
    memset(sc, 0, sizeof *sc);
    cJSON *root = cJSON_CreateObject();
    if (!root || !cJSON_AddStringToObject(root, "_class_name", dm_scheduler_class_name(cls))) {
        cJSON_Delete(root);
        return dm_error_set(err, DM_ERR_NOMEM, "out of memory");
    }
    dm_status st = scheduler_parse(sc, root, dm_scheduler_class_name(cls), err);
    cJSON_Delete(root);
    return st;
}

void dm_scheduler_free(dm_scheduler *sc) {
    if (!sc) return;
    dm_free(sc->betas);
    sc->betas = NULL;
}

dm_status dm_scheduler_schedule(const dm_scheduler *sc, dm_schedule *s, dm_error *err) {
    if (!sc || !sc->betas || sc->T < 1)
        return dm_error_set(err, DM_ERR_ARG, "scheduler: not read (dm_scheduler_read first)");
    double *ab = dm_alloc((size_t)sc->T * sizeof(double));
    if (!ab) return dm_error_set(err, DM_ERR_NOMEM, "scheduler: out of memory");
    /* torch: alphas = 1 - betas in float32; cumprod accumulates in double on the CPU and
     * stores float32 */
    double acc = 1.0;
    for (int32_t i = 0; i < sc->T; i++) {
        acc *= (double)f32(1.0 - sc->betas[i]);
        ab[i] = f32(acc);
    }
    dm_status st = dm_schedule_from_alpha_bar(s, ab, sc->T, err);
    dm_free(ab);
    if (st) dm_error_prefix(err, "%s", dm_scheduler_class_name(sc->cls));
    return st;
}
