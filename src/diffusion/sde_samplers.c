/* Samplers of the continuous-time processes of sde.c (Song et al. 2021; score_sde's
 * sampling.py): the reverse-time SDE by Euler-Maruyama, the reverse-diffusion predictor,
 * predictor-corrector with the Langevin corrector, and the probability-flow ODE by fixed-step
 * Euler, Heun and RK4 and by adaptive Dormand-Prince 5(4). The formulas are in sde.h; the state
 * is kept in double and handed to the score function in float. The samplers see only a score
 * callback and the process, never a network. */
#include "diffusion/langevin.h"
#include "diffusion/rk45.h"
#include "diffusion/sde.h"

#include "core/core.h"

#include <float.h>
#include <math.h>
#include <string.h>

/* Defaults of opt->steps = 0. The SDE samplers take score_sde's N = 1000; ODE Euler the same;
 * Heun 100 and RK4 50 steps spend the same 200 evaluations. On tests/test_sde.c's Gaussian data
 * their RMS errors against the exact ODE solution are Heun 1.2e-4 (VP) .. 1.2e-3 (VE), RK4
 * 1.2e-7 .. 3.9e-6, Euler 2.6e-4 .. 9.0e-3 (docs/continuous-time.md). */
#define SDE_DEFAULT_STEPS 1000
#define ODE_EULER_DEFAULT_STEPS 1000
#define ODE_HEUN_DEFAULT_STEPS 100
#define ODE_RK4_DEFAULT_STEPS 50

void dm_sde_sample_options_default(dm_sde_sample_options *opt) {
    memset(opt, 0, sizeof *opt);
    opt->sampler = DM_SDE_PC;
    opt->steps = 0;
    opt->predictor = DM_SDE_REVERSE_DIFFUSION;
    opt->corrector_steps = 0;
    opt->snr = 0.16;
    opt->rtol = 1e-5;
    opt->atol = 1e-5;
    opt->max_evals = 100000;
    opt->denoise = 1;
    opt->seed = 0;
    opt->stream = 0;
    opt->x_T = NULL;
    opt->noise = NULL;
    opt->chunk_first = 0;
    opt->chunk_step = 1;
    opt->observe = NULL;
    opt->observe_ctx = NULL;
}

static const char *const sampler_names[] = {"euler-maruyama", "reverse-diffusion", "pc",
                                            "ode-euler",      "ode-heun",          "ode-rk4",
                                            "ode-rk45"};
#define SAMPLER_COUNT (int)(sizeof sampler_names / sizeof sampler_names[0])

const char *dm_sde_sampler_name(dm_sde_sampler_kind kind) {
    if ((int)kind < 0 || (int)kind >= SAMPLER_COUNT) return "unknown";
    return sampler_names[kind];
}

dm_status dm_sde_sampler_parse(const char *name, dm_sde_sampler_kind *kind, dm_error *err) {
    for (int j = 0; name && j < SAMPLER_COUNT; j++)
        if (strcmp(name, sampler_names[j]) == 0) {
            *kind = (dm_sde_sampler_kind)j;
            return DM_OK;
        }
    return dm_error_set(err, DM_ERR_ARG,
                        "unknown SDE sampler '%s' (allowed: euler-maruyama, reverse-diffusion, "
                        "pc, ode-euler, ode-heun, ode-rk4, ode-rk45)",
                        name ? name : "(null)");
}

static int is_ode(dm_sde_sampler_kind k) {
    return k == DM_SDE_ODE_EULER || k == DM_SDE_ODE_HEUN || k == DM_SDE_ODE_RK4 ||
           k == DM_SDE_ODE_RK45;
}

static int32_t steps_of(const dm_sde_sample_options *opt) {
    if (opt->steps > 0) return opt->steps;
    switch (opt->sampler) {
    case DM_SDE_ODE_EULER: return ODE_EULER_DEFAULT_STEPS;
    case DM_SDE_ODE_HEUN: return ODE_HEUN_DEFAULT_STEPS;
    case DM_SDE_ODE_RK4: return ODE_RK4_DEFAULT_STEPS;
    default: return SDE_DEFAULT_STEPS;
    }
}

static int32_t corrector_steps_of(const dm_sde_sample_options *opt) {
    return opt->corrector_steps > 0 ? opt->corrector_steps : 1;
}

int64_t dm_sde_sample_evaluations(const dm_sde_sample_options *opt) {
    const int64_t N = steps_of(opt), extra = opt->denoise ? 1 : 0;
    switch (opt->sampler) {
    case DM_SDE_EULER_MARUYAMA:
    case DM_SDE_REVERSE_DIFFUSION:
    case DM_SDE_ODE_EULER: return N + extra;
    case DM_SDE_PC: return N * (corrector_steps_of(opt) + 1) + extra;
    case DM_SDE_ODE_HEUN: return 2 * N + extra;
    case DM_SDE_ODE_RK4: return 4 * N + extra;
    default: return -1;
    }
}

/* ---- one run's state */

typedef struct {
    const dm_sde *sde;
    dm_score_fn score;
    void *ctx;
    float *x; /* (n) the caller's output; the float copy of the state handed to the score */
    int64_t B, dim;
    size_t n;
    const dm_sde_sample_options *opt;
    dm_rng rng;
    double *y;   /* (n) the state */
    float *s;    /* (n) the latest score */
    float *z;    /* (n) standard normals */
    double *nrm; /* (2 B) per-sample norms (corrector) */
    size_t noise_block;
    dm_sde_sample_stats st;
    dm_error *err;
} run;

static void to_float(float *dst, const double *src, size_t n) {
#pragma omp parallel for schedule(static) if (n >= DM_PARALLEL_MIN)
    for (size_t j = 0; j < n; j++) dst[j] = (float)src[j];
}

/* r->s = score(ystate, t); ystate is rounded to float into r->x first. */
static dm_status eval_score(run *r, const double *ystate, double t) {
    to_float(r->x, ystate, r->n);
    r->st.score_evals++;
    dm_status st = r->score(r->ctx, r->s, r->x, t, r->B, r->dim, r->err);
    if (st != DM_OK && r->err && r->err->status != st)
        dm_error_set(r->err, st, "sde sample: score failed at t = %g (%s)", t,
                     dm_status_name(st));
    return st;
}

static void observe(run *r, double t) {
    if (!r->opt->observe) return;
    to_float(r->x, r->y, r->n);
    r->opt->observe(r->opt->observe_ctx, t, r->x, r->B, r->dim);
}

/* The next noise block into r->z: opt->noise's or drawn. */
static void next_noise(run *r) {
    if (r->opt->noise)
        memcpy(r->z, r->opt->noise + r->noise_block * r->n, r->n * sizeof(float));
    else
        dm_rng_normal(&r->rng, r->z, r->n);
    r->noise_block++;
}

/* t_k of the uniform grid from 1 to eps in N steps (t_N = eps exactly). */
static double grid_t(const dm_sde *sde, int32_t k, int32_t N) {
    return k == N ? sde->eps : 1.0 - (1.0 - sde->eps) * (double)k / (double)N;
}

/* y <- a y + b s + c z (c = 0: z unused). */
static void axpbz(run *r, double a, double b, double c) {
    double *y = r->y;
    const float *s = r->s, *z = r->z;
    const size_t n = r->n;
#pragma omp parallel for schedule(static) if (n >= DM_PARALLEL_MIN)
    for (size_t j = 0; j < n; j++) {
        double v = a * y[j] + b * (double)s[j];
        if (c != 0.0) v += c * (double)z[j];
        y[j] = v;
    }
}

/* ---- reverse-time SDE samplers */

/* Euler-Maruyama from t to t - h: y <- y - h (f y - g^2 s) + g sqrt(h) z. */
static dm_status em_step(run *r, double t, double h) {
    dm_status st = eval_score(r, r->y, t);
    if (st != DM_OK) return st;
    const double f = dm_sde_drift(r->sde, t), g = dm_sde_diffusion(r->sde, t);
    next_noise(r);
    axpbz(r, 1.0 - h * f, h * g * g, g * sqrt(h));
    return DM_OK;
}

/* The forward process's exact transition from t1 < t0 to t0: x_{t0} = c x_{t1} + sqrt(v) z. */
static void transition(const dm_sde *sde, double t0, double t1, double *c, double *v) {
    double m0, s0, m1, s1;
    dm_sde_marginal(sde, t0, &m0, &s0);
    dm_sde_marginal(sde, t1, &m1, &s1);
    *c = m0 / m1;
    if (sde->kind == DM_SDE_VP) {
        /* 1 - c^2 without the cancellation of s0^2 - c^2 s1^2 */
        *v = -expm1(2.0 * log(*c));
    } else {
        *v = s0 * s0 - (*c) * (*c) * s1 * s1;
    }
    if (*v < 0) *v = 0;
}

/* Reverse diffusion from t0 to t1: y <- (2 - c) y + v s + sqrt(v) z. */
static dm_status rd_step(run *r, double t0, double t1) {
    dm_status st = eval_score(r, r->y, t0);
    if (st != DM_OK) return st;
    double c, v;
    transition(r->sde, t0, t1, &c, &v);
    next_noise(r);
    axpbz(r, 2.0 - c, v, sqrt(v));
    return DM_OK;
}

/* score_sde's LangevinCorrector step at t0 (the next grid time t1 sets alpha): e = 2 alpha
 * (snr mean_b ||z_b|| / mean_b ||s_b||)^2, y <- y + e s + sqrt(2 e) z. The batch means run in a
 * fixed order. All scores exactly 0: the step is undefined and skipped (its noise still
 * consumed, so the stream's layout does not depend on the score). */
static dm_status corrector_step(run *r, double t0, double t1) {
    dm_status st = eval_score(r, r->y, t0);
    if (st != DM_OK) return st;
    next_noise(r);
    double s_norm, z_norm;
    dm_langevin_norm_sums(r->s, r->z, r->B, r->dim, r->nrm, &s_norm, &z_norm);
    if (!(s_norm > 0)) return DM_OK;
    double alpha = 1.0;
    if (r->sde->kind != DM_SDE_VE) {
        double c, v;
        transition(r->sde, t0, t1, &c, &v);
        alpha = c * c;
    }
    const double ratio = r->opt->snr * z_norm / s_norm;
    const double e = 2.0 * alpha * ratio * ratio;
    axpbz(r, 1.0, e, sqrt(2.0 * e));
    return DM_OK;
}

static dm_status run_sde(run *r, int32_t N) {
    const dm_sde_sample_options *opt = r->opt;
    const dm_sde_sampler_kind pred = opt->sampler == DM_SDE_PC ? opt->predictor : opt->sampler;
    const int32_t K = opt->sampler == DM_SDE_PC ? corrector_steps_of(opt) : 0;
    for (int32_t k = 0; k < N; k++) {
        const double t0 = grid_t(r->sde, k, N), t1 = grid_t(r->sde, k + 1, N);
        dm_status st = DM_OK;
        for (int32_t c = 0; c < K && st == DM_OK; c++) st = corrector_step(r, t0, t1);
        if (st == DM_OK)
            st = pred == DM_SDE_EULER_MARUYAMA ? em_step(r, t0, t0 - t1) : rd_step(r, t0, t1);
        if (st != DM_OK) return st;
        r->st.steps++;
        observe(r, t1);
    }
    return DM_OK;
}

/* ---- the probability-flow ODE dx/dt = f x - g^2 s / 2 */

/* k = velocity at (t, ystate) (n). */
static dm_status velocity(run *r, double t, const double *ystate, double *k) {
    dm_status st = eval_score(r, ystate, t);
    if (st != DM_OK) return st;
    const double f = dm_sde_drift(r->sde, t), g = dm_sde_diffusion(r->sde, t);
    const double hg2 = 0.5 * g * g;
    const float *s = r->s;
    const size_t n = r->n;
#pragma omp parallel for schedule(static) if (n >= DM_PARALLEL_MIN)
    for (size_t j = 0; j < n; j++) k[j] = f * ystate[j] - hg2 * (double)s[j];
    return DM_OK;
}

/* Euler, Heun or RK4 on the uniform grid; work holds 5 vectors of n doubles. */
static dm_status run_ode_fixed(run *r, int32_t N, double *work) {
    const size_t n = r->n;
    double *k[4] = {work, work + n, work + 2 * n, work + 3 * n};
    double *tmp = work + 4 * n;
    const dm_sde_sampler_kind kind = r->opt->sampler;
    for (int32_t step = 0; step < N; step++) {
        const double t0 = grid_t(r->sde, step, N), t1 = grid_t(r->sde, step + 1, N);
        const double dt = t1 - t0; /* < 0 */
        dm_status st;
        if ((st = velocity(r, t0, r->y, k[0])) != DM_OK) return st;
        if (kind == DM_SDE_ODE_EULER) {
            const double c[1] = {dt};
            dm_rk_combine(r->y, r->y, k, c, 1, n);
        } else if (kind == DM_SDE_ODE_HEUN) {
            const double c1[1] = {dt};
            dm_rk_combine(tmp, r->y, k, c1, 1, n);
            if ((st = velocity(r, t1, tmp, k[1])) != DM_OK) return st;
            const double c[2] = {0.5 * dt, 0.5 * dt};
            dm_rk_combine(r->y, r->y, k, c, 2, n);
        } else {
            const double c1[1] = {0.5 * dt};
            dm_rk_combine(tmp, r->y, k, c1, 1, n);
            if ((st = velocity(r, t0 + 0.5 * dt, tmp, k[1])) != DM_OK) return st;
            const double c2[2] = {0, 0.5 * dt};
            dm_rk_combine(tmp, r->y, k, c2, 2, n);
            if ((st = velocity(r, t0 + 0.5 * dt, tmp, k[2])) != DM_OK) return st;
            const double c3[3] = {0, 0, dt};
            dm_rk_combine(tmp, r->y, k, c3, 3, n);
            if ((st = velocity(r, t1, tmp, k[3])) != DM_OK) return st;
            const double c[4] = {dt / 6, dt / 3, dt / 3, dt / 6};
            dm_rk_combine(r->y, r->y, k, c, 4, n);
        }
        r->st.steps++;
        observe(r, t1);
    }
    return DM_OK;
}

/* The probability-flow ODE's right-hand side for the shared RK45 solver (rk45.c). */
static dm_status rk45_velocity(void *ctx, double t, const double *y, double *dy) {
    return velocity(ctx, t, y, dy);
}

static void rk45_observe(void *ctx, double t, const double *y) {
    (void)y; /* y is r->y */
    observe(ctx, t);
}

/* work holds 11 vectors of n doubles. */
static dm_status run_ode_rk45(run *r, double *work) {
    const dm_rk45_options o = {.rtol = r->opt->rtol,
                               .atol = r->opt->atol,
                               .max_evals = r->opt->max_evals,
                               .what = "sde sample ode-rk45",
                               .accepted = rk45_observe,
                               .accepted_ctx = r};
    dm_rk45_stats rs;
    const dm_status st =
        dm_rk45_solve(rk45_velocity, r, r->y, r->n, 1.0, r->sde->eps, &o, work, &rs, r->err);
    r->st.steps += rs.steps;
    r->st.rejected += rs.rejected;
    return st;
}

/* ---- validation and dispatch */

static dm_status check_options(const dm_sde *sde, dm_score_fn score, const float *x, int64_t B,
                               int64_t dim, const dm_sde_sample_options *opt, dm_error *err) {
    dm_status st = dm_sde_check(sde, err);
    if (st != DM_OK) return st;
    if (!score || !x || !opt)
        return dm_error_set(err, DM_ERR_ARG, "sde sample: %s is NULL",
                            !score ? "score" : !x ? "x" : "options");
    if (B < 1 || dim < 1)
        return dm_error_set(err, DM_ERR_ARG, "sde sample: B = %lld, dim = %lld; both must be >= 1",
                            (long long)B, (long long)dim);
    if ((uint64_t)B > SIZE_MAX / (16 * sizeof(double)) / (uint64_t)dim)
        return dm_error_set(err, DM_ERR_ARG, "sde sample: B * dim = %lld * %lld is too large",
                            (long long)B, (long long)dim);
    if ((int)opt->sampler < 0 || (int)opt->sampler >= SAMPLER_COUNT)
        return dm_error_set(err, DM_ERR_ARG,
                            "sde sample: unknown sampler %d (allowed: euler-maruyama, "
                            "reverse-diffusion, pc, ode-euler, ode-heun, ode-rk4, ode-rk45)",
                            (int)opt->sampler);
    if (opt->steps < 0)
        return dm_error_set(err, DM_ERR_ARG, "sde sample: steps = %d; must be >= 1 (0: default)",
                            (int)opt->steps);
    if (opt->sampler == DM_SDE_PC) {
        if (opt->predictor != DM_SDE_REVERSE_DIFFUSION && opt->predictor != DM_SDE_EULER_MARUYAMA)
            return dm_error_set(err, DM_ERR_ARG,
                                "sde sample pc: predictor '%s' (allowed: reverse-diffusion, "
                                "euler-maruyama)",
                                dm_sde_sampler_name(opt->predictor));
        if (opt->corrector_steps < 0)
            return dm_error_set(err, DM_ERR_ARG,
                                "sde sample pc: corrector_steps = %d; must be >= 1 (0: 1)",
                                (int)opt->corrector_steps);
        if (!(opt->snr > 0 && isfinite(opt->snr)))
            return dm_error_set(err, DM_ERR_ARG,
                                "sde sample pc: snr = %g; must be > 0 and finite (score_sde: "
                                "0.16)",
                                opt->snr);
    }
    if (opt->sampler == DM_SDE_ODE_RK45) {
        if (!(opt->rtol > 0 && isfinite(opt->rtol)) || !(opt->atol > 0 && isfinite(opt->atol)))
            return dm_error_set(err, DM_ERR_ARG,
                                "sde sample ode-rk45: rtol = %g, atol = %g; both tolerances "
                                "must be > 0 and finite",
                                opt->rtol, opt->atol);
        if (opt->max_evals < 0)
            return dm_error_set(err, DM_ERR_ARG,
                                "sde sample ode-rk45: max_evals = %lld; must be >= 0 (0: no "
                                "limit)",
                                (long long)opt->max_evals);
    }
    if (opt->noise && is_ode(opt->sampler))
        return dm_error_set(err, DM_ERR_ARG,
                            "sde sample %s: noise given, but the ODE samplers draw none (noise "
                            "is for euler-maruyama, reverse-diffusion and pc)",
                            dm_sde_sampler_name(opt->sampler));
    return DM_OK;
}

dm_status dm_sde_sample(const dm_sde *sde, dm_score_fn score, void *ctx, float *x, int64_t B,
                        int64_t dim, const dm_sde_sample_options *opt,
                        dm_sde_sample_stats *stats, dm_error *err) {
    if (stats) memset(stats, 0, sizeof *stats);
    dm_status st = check_options(sde, score, x, B, dim, opt, err);
    if (st != DM_OK) return st;
    run r;
    memset(&r, 0, sizeof r);
    r.sde = sde;
    r.score = score;
    r.ctx = ctx;
    r.x = x;
    r.B = B;
    r.dim = dim;
    r.n = (size_t)B * (size_t)dim;
    r.opt = opt;
    r.err = err;
    dm_rng_init(&r.rng, opt->seed, opt->stream);
    const int32_t N = steps_of(opt);
    const size_t nwork = opt->sampler == DM_SDE_ODE_RK45 ? 11 : is_ode(opt->sampler) ? 5 : 0;
    r.y = dm_alloc(r.n * sizeof(double));
    r.s = dm_alloc(r.n * sizeof(float));
    r.z = dm_alloc(r.n * sizeof(float));
    r.nrm = dm_alloc(2 * (size_t)B * sizeof(double));
    double *work = nwork ? dm_alloc(nwork * r.n * sizeof(double)) : NULL;
    if (!r.y || !r.s || !r.z || !r.nrm || (nwork && !work)) {
        st = dm_error_set(err, DM_ERR_NOMEM, "sde sample: cannot allocate buffers for B = %lld",
                          (long long)B);
        goto done;
    }
    /* x_T: given, or the prior's B*dim normals first */
    if (opt->x_T) {
        for (size_t j = 0; j < r.n; j++) r.y[j] = opt->x_T[j];
    } else {
        dm_rng_normal(&r.rng, r.z, r.n);
        const double s0 = dm_sde_prior_std(sde);
        for (size_t j = 0; j < r.n; j++) r.y[j] = s0 * (double)r.z[j];
    }
    observe(&r, 1.0);
    if (opt->sampler == DM_SDE_ODE_RK45)
        st = run_ode_rk45(&r, work);
    else if (is_ode(opt->sampler))
        st = run_ode_fixed(&r, N, work);
    else
        st = run_sde(&r, N);
    if (st == DM_OK && opt->denoise) {
        /* Tweedie: E[x_0 | x_eps] = (x + std^2 score) / mean */
        double m, s;
        dm_sde_marginal(sde, sde->eps, &m, &s);
        st = eval_score(&r, r.y, sde->eps);
        if (st == DM_OK) axpbz(&r, 1.0 / m, s * s / m, 0.0);
    }
    if (st == DM_OK) {
        to_float(x, r.y, r.n);
        if (opt->denoise && opt->observe) opt->observe(opt->observe_ctx, 0.0, x, B, dim);
    }
done:
    if (stats) *stats = r.st;
    dm_free(r.y);
    dm_free(r.s);
    dm_free(r.z);
    dm_free(r.nrm);
    dm_free(work);
    return st;
}
