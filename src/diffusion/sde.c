/* The forward SDEs of Song et al. 2021 (VP, sub-VP, VE) as score_sde's sde_lib.py defines them:
 * drift and diffusion coefficients, perturbation kernels, priors, Song & Ermon's data-dependent
 * sigma_max, and the adapter from a discrete eps-predicting model to the VP SDE's score.
 * Formulas: sde.h and docs/continuous-time.md. Everything in double. */
#include "diffusion/sde.h"

#include "core/core.h"

#include <math.h>
#include <string.h>

void dm_sde_default(dm_sde *sde, dm_sde_kind kind) {
    sde->kind = kind;
    sde->beta_min = 0.1;
    sde->beta_max = 20.0;
    sde->sigma_min = 0.01;
    sde->sigma_max = 50.0;
    sde->eps = kind == DM_SDE_VE ? 1e-5 : 1e-3;
}

static const char *const kind_names[] = {"vp", "subvp", "ve"};

const char *dm_sde_kind_name(dm_sde_kind kind) {
    if ((int)kind < 0 || (int)kind > DM_SDE_VE) return "unknown";
    return kind_names[kind];
}

dm_status dm_sde_kind_parse(const char *name, dm_sde_kind *kind, dm_error *err) {
    for (int j = 0; name && j <= DM_SDE_VE; j++)
        if (strcmp(name, kind_names[j]) == 0) {
            *kind = (dm_sde_kind)j;
            return DM_OK;
        }
    if (name && strcmp(name, "sub-vp") == 0) {
        *kind = DM_SDE_SUBVP;
        return DM_OK;
    }
    return dm_error_set(err, DM_ERR_ARG, "unknown SDE '%s' (allowed: vp, subvp, ve)",
                        name ? name : "(null)");
}

dm_status dm_sde_check(const dm_sde *sde, dm_error *err) {
    if (!sde) return dm_error_set(err, DM_ERR_ARG, "sde: NULL");
    if ((int)sde->kind < 0 || (int)sde->kind > DM_SDE_VE)
        return dm_error_set(err, DM_ERR_ARG, "sde: unknown kind %d (allowed: vp, subvp, ve)",
                            (int)sde->kind);
    if (!(sde->eps > 0 && sde->eps < 1))
        return dm_error_set(err, DM_ERR_ARG, "sde: eps = %g; the smallest time must lie in (0, 1)",
                            sde->eps);
    if (sde->kind == DM_SDE_VE) {
        if (!(sde->sigma_min > 0 && isfinite(sde->sigma_min)))
            return dm_error_set(err, DM_ERR_ARG, "sde ve: sigma_min = %g; it must be > 0 and finite",
                                sde->sigma_min);
        if (!(sde->sigma_max > sde->sigma_min && isfinite(sde->sigma_max)))
            return dm_error_set(err, DM_ERR_ARG,
                                "sde ve: sigma_max = %g with sigma_min = %g; sigma_max must be "
                                "finite and > sigma_min",
                                sde->sigma_max, sde->sigma_min);
    } else {
        if (!(sde->beta_min >= 0 && isfinite(sde->beta_min)))
            return dm_error_set(err, DM_ERR_ARG, "sde %s: beta_min = %g; it must be >= 0 and finite",
                                dm_sde_kind_name(sde->kind), sde->beta_min);
        if (!(sde->beta_max >= sde->beta_min && sde->beta_max > 0 && isfinite(sde->beta_max)))
            return dm_error_set(err, DM_ERR_ARG,
                                "sde %s: beta_max = %g with beta_min = %g; beta_max must be "
                                "finite, > 0 and >= beta_min",
                                dm_sde_kind_name(sde->kind), sde->beta_max, sde->beta_min);
    }
    return DM_OK;
}

/* beta(t) and B(t) = int_0^t beta(s) ds of VP and sub-VP. */
static double beta_at(const dm_sde *s, double t) {
    return s->beta_min + t * (s->beta_max - s->beta_min);
}
static double beta_int(const dm_sde *s, double t) {
    return s->beta_min * t + 0.5 * (s->beta_max - s->beta_min) * t * t;
}
/* log(sigma_max / sigma_min) of VE. */
static double ve_log_ratio(const dm_sde *s) { return log(s->sigma_max / s->sigma_min); }

double dm_sde_drift(const dm_sde *sde, double t) {
    return sde->kind == DM_SDE_VE ? 0.0 : -0.5 * beta_at(sde, t);
}

double dm_sde_diffusion(const dm_sde *sde, double t) {
    switch (sde->kind) {
    case DM_SDE_VP: return sqrt(beta_at(sde, t));
    case DM_SDE_SUBVP: return sqrt(beta_at(sde, t) * -expm1(-2.0 * beta_int(sde, t)));
    case DM_SDE_VE: {
        const double L = ve_log_ratio(sde);
        return sde->sigma_min * exp(t * L) * sqrt(2.0 * L);
    }
    }
    return 0.0;
}

void dm_sde_marginal(const dm_sde *sde, double t, double *mean, double *std) {
    double m = 1.0, s = 0.0;
    switch (sde->kind) {
    case DM_SDE_VP: {
        const double B = beta_int(sde, t);
        m = exp(-0.5 * B);
        s = sqrt(-expm1(-B));
        break;
    }
    case DM_SDE_SUBVP: {
        const double B = beta_int(sde, t);
        m = exp(-0.5 * B);
        s = -expm1(-B);
        break;
    }
    case DM_SDE_VE:
        m = 1.0;
        s = sde->sigma_min * exp(t * ve_log_ratio(sde));
        break;
    }
    if (mean) *mean = m;
    if (std) *std = s;
}

double dm_sde_prior_std(const dm_sde *sde) {
    return sde->kind == DM_SDE_VE ? sde->sigma_max : 1.0;
}

double dm_sde_prior_logp(const dm_sde *sde, const float *z, int64_t dim) {
    const double s = dm_sde_prior_std(sde);
    double zz = 0;
    for (int64_t d = 0; d < dim; d++) zz += (double)z[d] * z[d];
    return -0.5 * (double)dim * log(2.0 * M_PI * s * s) - 0.5 * zz / (s * s);
}

dm_status dm_sde_ve_sigma_max(const float *x, int64_t n, int64_t dim, int64_t max_points,
                              uint64_t seed, double *sigma_max, dm_error *err) {
    if (!x || !sigma_max)
        return dm_error_set(err, DM_ERR_ARG, "ve sigma_max: %s is NULL", !x ? "x" : "sigma_max");
    if (n < 2 || dim < 1)
        return dm_error_set(err, DM_ERR_ARG,
                            "ve sigma_max: n = %lld, dim = %lld; needs n >= 2 points, dim >= 1",
                            (long long)n, (long long)dim);
    if (max_points < 0)
        return dm_error_set(err, DM_ERR_ARG, "ve sigma_max: max_points = %lld; must be >= 0 "
                            "(0: all points)", (long long)max_points);
    for (int64_t j = 0; j < n * dim; j++)
        if (!isfinite(x[j]))
            return dm_error_set(err, DM_ERR_NUMERIC,
                                "ve sigma_max: point %lld has a non-finite value",
                                (long long)(j / dim));
    int64_t m = n;
    int64_t *pick = NULL; /* (m) the rows used; NULL: all */
    if (max_points >= 2 && max_points < n) {
        /* a partial Fisher-Yates shuffle of 0..n-1 from (seed): its first max_points entries */
        int64_t *perm = dm_alloc((size_t)n * sizeof(int64_t));
        if (!perm) return dm_error_set(err, DM_ERR_NOMEM, "ve sigma_max: out of memory");
        for (int64_t j = 0; j < n; j++) perm[j] = j;
        dm_rng rng;
        dm_rng_init(&rng, seed, 0);
        for (int64_t j = 0; j < max_points; j++) {
            const int64_t k = j + (int64_t)(dm_rng_uniform1(&rng) * (double)(n - j));
            const int64_t tmp = perm[j];
            perm[j] = perm[k < n ? k : n - 1];
            perm[k < n ? k : n - 1] = tmp;
        }
        pick = perm;
        m = max_points;
    }
    /* the largest squared distance over pairs (i, j > i); each row's maximum is its own, so the
     * result does not depend on the thread count */
    double best = 0;
#pragma omp parallel for schedule(dynamic, 16) reduction(max : best) if (m * dim >= 4096)
    for (int64_t i = 0; i < m; i++) {
        const float *xi = x + (pick ? pick[i] : i) * dim;
        for (int64_t j = i + 1; j < m; j++) {
            const float *xj = x + (pick ? pick[j] : j) * dim;
            double d2 = 0;
            for (int64_t d = 0; d < dim; d++) {
                const double v = (double)xi[d] - (double)xj[d];
                d2 += v * v;
            }
            if (d2 > best) best = d2;
        }
    }
    dm_free(pick);
    *sigma_max = sqrt(best);
    return DM_OK;
}

/* ---- a discrete eps model as the VP SDE's score */

dm_status dm_sde_denoiser_score(void *vctx, float *score, const float *x, double t, int64_t B,
                                int64_t dim, dm_error *err) {
    const dm_sde_denoiser *a = vctx;
    if (!a || !a->sde || !a->s || !a->s->alpha_bar || !a->denoise)
        return dm_error_set(err, DM_ERR_ARG, "sde denoiser: sde, schedule and denoiser are needed");
    if (a->sde->kind != DM_SDE_VP)
        return dm_error_set(err, DM_ERR_ARG,
                            "sde denoiser: a discrete eps model is the score of the VP SDE only "
                            "(this SDE is %s; allowed: vp)",
                            dm_sde_kind_name(a->sde->kind));
    const int32_t T = a->s->T;
    double label = t * (double)(T - 1);
    label = label < 0 ? 0 : label > T - 1 ? T - 1 : label;
    const int32_t i = a->round_index ? (int32_t)lround(label) : (int32_t)floor(label);
    if (a->round_index) label = (double)i;
    float *tb = dm_alloc((size_t)B * sizeof(float));
    if (!tb) return dm_error_set(err, DM_ERR_NOMEM, "sde denoiser: out of memory");
    for (int64_t b = 0; b < B; b++) tb[b] = (float)label;
    /* eps_hat into score, then scaled in place */
    dm_status st = a->denoise(a->ctx, score, NULL, x, tb, B, err);
    dm_free(tb);
    if (st != DM_OK) return st;
    const float c = (float)(-1.0 / sqrt(1.0 - a->s->alpha_bar[i]));
    const size_t n = (size_t)B * (size_t)dim;
    for (size_t j = 0; j < n; j++) score[j] *= c;
    return DM_OK;
}
