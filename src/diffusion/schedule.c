/* Noise schedules: beta_t and the constants derived from it, computed in double.
 * Formulas and the 0-based index convention (i = t - 1, alpha_bar[-1] = 1): shared/MATH.md. */
#include "diffusion/diffusion_impl.h"

#include <math.h>
#include <string.h>

#define DM_SCHEDULE_T_MAX 100000
/* Nichol & Dhariwal clip beta so the last steps of the cosine schedule do not reach 1. */
#define DM_SCHEDULE_BETA_MAX 0.999

static const double dm_pi = 3.14159265358979323846;

void dm_schedule_config_default(dm_schedule_config *cfg) {
    cfg->kind = DM_SCHEDULE_LINEAR;
    cfg->T = 1000;
    cfg->beta_start = 1e-4;
    cfg->beta_end = 0.02;
    cfg->cosine_s = 0.008;
    cfg->gamma_min = -10.0;
    cfg->gamma_max = 10.0;
}

static const char *const kind_names[] = {"linear", "cosine", "logsnr", "learned"};
#define KIND_COUNT (int)(sizeof kind_names / sizeof kind_names[0])

const char *dm_schedule_kind_name(dm_schedule_kind kind) {
    if ((int)kind < 0 || (int)kind >= KIND_COUNT) return "unknown";
    return kind_names[kind];
}

dm_status dm_schedule_kind_parse(const char *name, dm_schedule_kind *kind, dm_error *err) {
    for (int k = 0; name && k < KIND_COUNT; k++) {
        if (strcmp(name, kind_names[k]) == 0) {
            *kind = (dm_schedule_kind)k;
            return DM_OK;
        }
    }
    return dm_error_set(err, DM_ERR_ARG,
                        "unknown schedule '%s' (allowed: linear, cosine, logsnr, learned)",
                        name ? name : "(null)");
}

/* Cosine schedule's f(t) for t in [0, T]. */
static double cosine_f(int32_t t, int32_t T, double s) {
    double c = cos(((double)t / T + s) / (1.0 + s) * dm_pi / 2.0);
    return c * c;
}

static double sigmoid(double x) {
    return x >= 0 ? 1.0 / (1.0 + exp(-x)) : exp(x) / (1.0 + exp(x));
}

static dm_status check_config(const dm_schedule_config *cfg, dm_error *err) {
    if (cfg->T < 1 || cfg->T > DM_SCHEDULE_T_MAX)
        return dm_error_set(err, DM_ERR_ARG, "schedule: T = %d, allowed 1 to %d", (int)cfg->T,
                            DM_SCHEDULE_T_MAX);
    switch (cfg->kind) {
    case DM_SCHEDULE_LINEAR:
        /* written so that NaN fails too */
        if (!(cfg->beta_start > 0 && cfg->beta_start <= cfg->beta_end && cfg->beta_end < 1))
            return dm_error_set(err, DM_ERR_ARG,
                                "schedule linear: beta_start = %g, beta_end = %g; need "
                                "0 < beta_start <= beta_end < 1",
                                cfg->beta_start, cfg->beta_end);
        return DM_OK;
    case DM_SCHEDULE_COSINE:
        if (!(cfg->cosine_s > 0 && isfinite(cfg->cosine_s)))
            return dm_error_set(err, DM_ERR_ARG,
                                "schedule cosine: s = %g; need a finite s > 0 (default 0.008)",
                                cfg->cosine_s);
        return DM_OK;
    case DM_SCHEDULE_LOGSNR:
    case DM_SCHEDULE_LEARNED: /* its starting point; the trained one comes from the checkpoint */
        if (!(isfinite(cfg->gamma_min) && isfinite(cfg->gamma_max) &&
              cfg->gamma_min < cfg->gamma_max))
            return dm_error_set(err, DM_ERR_ARG,
                                "schedule logsnr: gamma_min = %g, gamma_max = %g; need finite "
                                "gamma_min < gamma_max",
                                cfg->gamma_min, cfg->gamma_max);
        return DM_OK;
    }
    return dm_error_set(err, DM_ERR_ARG, "schedule: unknown kind %d (allowed: linear, cosine, "
                        "logsnr, learned)", (int)cfg->kind);
}

/* Fills beta (T) for the configured kind. */
static void fill_beta(const dm_schedule_config *cfg, double *beta) {
    const int32_t T = cfg->T;
    switch (cfg->kind) {
    case DM_SCHEDULE_LINEAR:
        for (int32_t i = 0; i < T; i++)
            beta[i] = T == 1 ? cfg->beta_start
                             : cfg->beta_start + (cfg->beta_end - cfg->beta_start) * i / (T - 1);
        break;
    case DM_SCHEDULE_COSINE: {
        const double f0 = cosine_f(0, T, cfg->cosine_s);
        double ab_prev = 1.0;
        for (int32_t t = 1; t <= T; t++) {
            double ab = cosine_f(t, T, cfg->cosine_s) / f0;
            beta[t - 1] = fmin(1.0 - ab / ab_prev, DM_SCHEDULE_BETA_MAX);
            ab_prev = ab;
        }
        break;
    }
    case DM_SCHEDULE_LOGSNR:
    case DM_SCHEDULE_LEARNED: {
        /* With alpha_bar = sigmoid(-gamma): 1 - ab_t / ab_{t-1} = sigmoid(gamma_t) *
         * (1 - exp(gamma_{t-1} - gamma_t)); expm1 keeps the small betas accurate. At t = 1 the
         * previous alpha_bar is 1 (MATH.md), so beta_1 = 1 - ab_1 = sigmoid(gamma_1). */
        const double g0 = cfg->gamma_min, dg = cfg->gamma_max - cfg->gamma_min;
        for (int32_t t = 1; t <= T; t++) {
            double g = g0 + dg * t / T;
            double b = t == 1 ? sigmoid(g) : -sigmoid(g) * expm1(g0 + dg * (t - 1) / T - g);
            beta[t - 1] = fmin(b, DM_SCHEDULE_BETA_MAX);
        }
        break;
    }
    }
}

/* One allocation for the five (T) arrays; s->T set. */
static dm_status schedule_alloc(dm_schedule *s, int32_t T, const char *what, dm_error *err) {
    memset(s, 0, sizeof *s);
    double *buf = dm_alloc(5 * (size_t)T * sizeof(double));
    if (!buf) return dm_error_set(err, DM_ERR_NOMEM, "%s: cannot allocate T = %d", what, (int)T);
    s->T = T;
    s->beta = buf;
    s->alpha = buf + T;
    s->alpha_bar = buf + 2 * (size_t)T;
    s->alpha_bar_prev = buf + 3 * (size_t)T;
    s->beta_tilde = buf + 4 * (size_t)T;
    return DM_OK;
}

/* The constants every schedule derives the same way from beta and alpha_bar (both filled):
 * alpha_bar_prev (1 at i = 0, MATH.md's alpha_bar[-1]) and the posterior variance beta_tilde
 * (0 at i = 0). The one copy of these formulas. */
static void fill_posterior(dm_schedule *s) {
    for (int32_t i = 0; i < s->T; i++) {
        const double ab_prev = i == 0 ? 1.0 : s->alpha_bar[i - 1];
        s->alpha_bar_prev[i] = ab_prev;
        s->beta_tilde[i] =
            i == 0 ? 0.0 : (1.0 - ab_prev) / (1.0 - s->alpha_bar[i]) * s->beta[i];
    }
}

dm_status dm_schedule_init(dm_schedule *s, const dm_schedule_config *cfg, dm_error *err) {
    memset(s, 0, sizeof *s);
    dm_status st = check_config(cfg, err);
    if (st) return st;
    const int32_t T = cfg->T;
    st = schedule_alloc(s, T, "schedule", err);
    if (st) return st;

    fill_beta(cfg, s->beta);
    for (int32_t i = 0; i < T; i++) {
        /* NaN fails this too; a beta of 0 or 1 would make the posterior divide by zero */
        if (!(s->beta[i] > 0 && s->beta[i] < 1)) {
            st = dm_error_set(err, DM_ERR_ARG,
                              "schedule %s: beta at index %d is %g; every beta must lie in (0, 1) "
                              "(adjust T, beta range, s or gamma range)",
                              dm_schedule_kind_name(cfg->kind), (int)i, s->beta[i]);
            dm_schedule_free(s);
            return st;
        }
    }
    /* alpha_bar is always the product of alpha, so the arrays agree even after clipping. */
    double ab = 1.0;
    for (int32_t i = 0; i < T; i++) {
        s->alpha[i] = 1.0 - s->beta[i];
        ab *= s->alpha[i];
        s->alpha_bar[i] = ab;
    }
    fill_posterior(s);
    return DM_OK;
}

dm_status dm_schedule_from_alpha_bar(dm_schedule *s, const double *alpha_bar, int32_t T,
                                     dm_error *err) {
    memset(s, 0, sizeof *s);
    if (!alpha_bar)
        return dm_error_set(err, DM_ERR_ARG, "schedule from alpha_bar: alpha_bar is NULL");
    if (T < 1 || T > DM_SCHEDULE_T_MAX)
        return dm_error_set(err, DM_ERR_ARG, "schedule from alpha_bar: T = %d, allowed 1 to %d",
                            (int)T, DM_SCHEDULE_T_MAX);
    for (int32_t i = 0; i < T; i++) {
        const double prev = i == 0 ? 1.0 : alpha_bar[i - 1];
        /* written so that NaN fails too; equal neighbours would give beta = 0 */
        if (!(alpha_bar[i] > 0 && alpha_bar[i] < prev))
            return dm_error_set(err, DM_ERR_ARG,
                                "schedule from alpha_bar: alpha_bar[%d] = %.17g (previous %.17g); "
                                "the values must be strictly decreasing and lie in (0, 1)",
                                (int)i, alpha_bar[i], prev);
    }
    dm_status st = schedule_alloc(s, T, "schedule from alpha_bar", err);
    if (st) return st;
    for (int32_t i = 0; i < T; i++) {
        const double prev = i == 0 ? 1.0 : alpha_bar[i - 1];
        s->alpha_bar[i] = alpha_bar[i];
        /* (prev - ab) / prev rather than 1 - ab / prev: the difference of close values is exact,
         * so small betas keep their relative precision */
        s->beta[i] = (prev - alpha_bar[i]) / prev;
        s->alpha[i] = alpha_bar[i] / prev;
    }
    fill_posterior(s);
    return DM_OK;
}

double dm_schedule_beta_tilde_clipped(const dm_schedule *s, int32_t i) {
    assert(s && i >= 0 && i < s->T);
    if (i > 0) return s->beta_tilde[i];
    return s->T > 1 ? s->beta_tilde[1] : s->beta[0];
}

/* Level k of S (k = 0 the noisiest) is index round(j (T - 1) / (S - 1)) with j = S - 1 - k,
 * rounded half up in integers: floor((2 j (T - 1) + S - 1) / (2 (S - 1))). Consecutive values of
 * j differ by (T - 1) / (S - 1) >= 1 before rounding when S <= T, and floor(y + d) >=
 * floor(y) + floor(d), so the indices strictly decrease; j = 0 gives 0 and j = S - 1 gives
 * T - 1 exactly. */
dm_status dm_timesteps(int32_t T, int32_t S, int32_t *out, dm_error *err) {
    if (T < 1)
        return dm_error_set(err, DM_ERR_ARG, "timesteps: T = %d; allowed T >= 1", (int)T);
    if (S < 1 || S > T)
        return dm_error_set(err, DM_ERR_ARG, "timesteps: steps = %d; allowed 1..%d (T)", (int)S,
                            (int)T);
    if (!out) return dm_error_set(err, DM_ERR_ARG, "timesteps: out is NULL");
    if (S == 1) {
        out[0] = T - 1;
        return DM_OK;
    }
    const int64_t den = 2 * (int64_t)(S - 1);
    for (int32_t k = 0; k < S; k++) {
        const int64_t j = S - 1 - k;
        out[k] = (int32_t)((2 * j * (int64_t)(T - 1) + (S - 1)) / den);
    }
    return DM_OK;
}

dm_status dm_schedule_respace(dm_schedule *out, const dm_schedule *s, const int32_t *idx,
                              int32_t S, dm_error *err) {
    memset(out, 0, sizeof *out);
    if (!s || !s->alpha_bar || s->T < 1)
        return dm_error_set(err, DM_ERR_ARG, "respace: no schedule (initialise it first)");
    if (!idx) return dm_error_set(err, DM_ERR_ARG, "respace: idx is NULL");
    if (S < 1 || S > s->T)
        return dm_error_set(err, DM_ERR_ARG, "respace: steps = %d; allowed 1..%d (T)", (int)S,
                            (int)s->T);
    for (int32_t k = 0; k < S; k++) {
        const int32_t lo = k == 0 ? 0 : idx[k - 1] + 1;
        if (idx[k] < lo || idx[k] >= s->T)
            return dm_error_set(err, DM_ERR_ARG,
                                "respace: idx[%d] = %d; indices must be strictly increasing and "
                                "lie in 0..%d",
                                (int)k, (int)idx[k], (int)(s->T - 1));
    }
    double *ab = dm_alloc((size_t)S * sizeof(double));
    if (!ab) return dm_error_set(err, DM_ERR_NOMEM, "respace: cannot allocate S = %d", (int)S);
    for (int32_t k = 0; k < S; k++) ab[k] = s->alpha_bar[idx[k]];
    dm_status st = dm_schedule_from_alpha_bar(out, ab, S, err);
    dm_free(ab);
    return st;
}

void dm_schedule_free(dm_schedule *s) {
    if (!s) return;
    dm_free(s->beta); /* the one allocation holding every array */
    memset(s, 0, sizeof *s);
}
