/* The ODE likelihood (dm_sde_ode_nll, dm_pipeline_ode_nll) against closed forms.
 * Gaussian data x0 ~ N(mu, S) in 2-D have Gaussian marginals p_t = N(mean(t) mu, C_t),
 * C_t = mean(t)^2 S + std(t)^2 I, whose score -C_t^{-1} (x - mean(t) mu) and log-density are
 * exact; the probability-flow ODE with that score carries p_eps to p_1 exactly, so
 * delta(1) + log p_1(x(1)) must equal log p_eps(x) for every x up to the solver's error. */
#include "diffusion/sde.h"
#include "gaussian_oracle.h"
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static int verbose;

typedef struct {
    const dm_sde *sde;
    double mu[2], S[2][2];
    int64_t calls;
} gauss;

static gauss gauss_make(const dm_sde *sde) {
    gauss g = {.sde = sde, .mu = {1.0, -0.5}, .S = {{1.0, 0.6}, {0.6, 0.8}}};
    return g;
}

/* C_t^{-1} and log det C_t. */
static void prec(const gauss *g, double t, double P[2][2], double *logdet, double *m) {
    double s;
    dm_sde_marginal(g->sde, t, m, &s);
    const double a = *m * *m * g->S[0][0] + s * s, b = *m * *m * g->S[0][1],
                 d = *m * *m * g->S[1][1] + s * s;
    const double det = a * d - b * b;
    P[0][0] = d / det, P[0][1] = P[1][0] = -b / det, P[1][1] = a / det;
    if (logdet) *logdet = log(det);
}

static double log_pt(const gauss *g, double t, const double *x) {
    double P[2][2], ld, m;
    prec(g, t, P, &ld, &m);
    const double r0 = x[0] - m * g->mu[0], r1 = x[1] - m * g->mu[1];
    const double q = r0 * (P[0][0] * r0 + P[0][1] * r1) + r1 * (P[1][0] * r0 + P[1][1] * r1);
    return -log(2 * M_PI) - 0.5 * ld - 0.5 * q;
}

static dm_status g_score(void *ctx, float *score, const float *x, double t, int64_t B,
                         int64_t dim, dm_error *err) {
    (void)err, (void)dim;
    gauss *g = ctx;
    g->calls++;
    double P[2][2], m;
    prec(g, t, P, NULL, &m);
    for (int64_t b = 0; b < B; b++) {
        const double r0 = x[2 * b] - m * g->mu[0], r1 = x[2 * b + 1] - m * g->mu[1];
        score[2 * b] = (float)-(P[0][0] * r0 + P[0][1] * r1);
        score[2 * b + 1] = (float)-(P[1][0] * r0 + P[1][1] * r1);
    }
    return DM_OK;
}

/* J = -C_t^{-1} (symmetric): v^T J = -(C_t^{-1} v)^T. */
static dm_status g_vjp(void *ctx, float *score, float *vjp, const float *x, const float *v,
                       double t, int64_t B, int64_t dim, dm_error *err) {
    gauss *g = ctx;
    g_score(ctx, score, x, t, B, dim, err);
    double P[2][2], m;
    prec(g, t, P, NULL, &m);
    for (int64_t b = 0; b < B; b++) {
        vjp[2 * b] = (float)-(P[0][0] * v[2 * b] + P[0][1] * v[2 * b + 1]);
        vjp[2 * b + 1] = (float)-(P[1][0] * v[2 * b] + P[1][1] * v[2 * b + 1]);
    }
    return DM_OK;
}

static dm_sde make_sde(dm_sde_kind k) {
    dm_sde s;
    dm_sde_default(&s, k);
    if (k == DM_SDE_VE) s.sigma_max = 10; /* as tests/test_sde.c */
    return s;
}

enum { N = 64 };

/* Max over N points of |delta + log p_1(x(1)) - log p_eps(x)| (nats), with the report's
 * consistency checked on the way. */
static double exact_error(dm_sde_kind k, double tol, int use_vjp, int64_t *evals) {
    dm_sde sde = make_sde(k);
    gauss g = gauss_make(&sde);
    float x[2 * N], z[2 * N];
    double nll[N], delta[N];
    gauss_draw(g.mu, g.S, x, N, 11, 7);
    dm_ode_nll_options o;
    dm_ode_nll_options_default(&o);
    o.rtol = o.atol = tol;
    o.per_example = nll, o.delta = delta, o.z = z;
    dm_ode_nll_report r;
    dm_error err = {0};
    dm_status st = dm_sde_ode_nll(&sde, g_score, use_vjp ? g_vjp : NULL, &g, x, N, 2, &o, &r, &err);
    CHECK(st == DM_OK, "%s", err.msg);
    if (st) return INFINITY;
    double worst = 0, mean_nll = 0;
    for (int b = 0; b < N; b++) {
        const double xd[2] = {x[2 * b], x[2 * b + 1]}, zd[2] = {z[2 * b], z[2 * b + 1]};
        const double e = fabs(delta[b] + log_pt(&g, 1.0, zd) - log_pt(&g, sde.eps, xd));
        worst = e > worst ? e : worst;
        mean_nll += nll[b] / N;
        /* per_example = -(log prior(z) + delta); z is rounded to float, the prior in double */
        const double s1 = dm_sde_prior_std(&sde);
        const double pr = -log(2 * M_PI * s1 * s1) - 0.5 * (zd[0] * zd[0] + zd[1] * zd[1]) / (s1 * s1);
        CHECK_CLOSE(nll[b], -(pr + delta[b]), 1e-5, 0, "per-example nll = -(prior + delta)");
    }
    CHECK_CLOSE(r.nll, mean_nll, 1e-9, 1e-12, "report's mean");
    CHECK_CLOSE(r.bpd, r.nll / (2 * log(2.0)), 0, 1e-12, "bits per dimension");
    CHECK(r.vjp == use_vjp && r.probes == 0 && r.trace == DM_TRACE_EXACT, "report's method");
    CHECK(r.score_evals == 2 + 6 * ((int64_t)r.steps + r.rejected),
          "evaluations %lld = 2 + 6 (steps %d + rejected %d)", (long long)r.score_evals,
          (int)r.steps, (int)r.rejected);
    if (evals) *evals = r.score_evals;
    return worst;
}

/* The exact trace: the ODE likelihood equals the exact log-density for VP, sub-VP and VE, and
 * tightening the tolerance reduces the error. */
static void test_exact_trace(void) {
    const dm_sde_kind kinds[] = {DM_SDE_VP, DM_SDE_SUBVP, DM_SDE_VE};
    const double tols[] = {1e-3, 1e-5, 1e-7};
    for (int ki = 0; ki < 3; ki++) {
        double e[3];
        int64_t ev[3];
        for (int j = 0; j < 3; j++) {
            e[j] = exact_error(kinds[ki], tols[j], 1, &ev[j]);
            if (verbose)
                printf("  %-5s exact trace (vjp) tol %.0e: max |error| %.2e nats, %lld "
                       "evaluations\n",
                       dm_sde_kind_name(kinds[ki]), tols[j], e[j], (long long)ev[j]);
        }
        char what[128];
        /* bound: RK45 controls each step's local error relative to tol, not the global one.
         * Measured (DM_TEST_VERBOSE=1): at 1e-5 and 1e-7 the largest error over the points is
         * 1.7 to 7 tol; at 1e-3 the solver crosses [eps, 1] in 3 or 4 steps and lands up to
         * 18 tol away (ve). Allowed: 10 tol, and 30 tol at 1e-3, plus 1e-6 nats for the float
         * rounding of the score. */
        for (int j = 0; j < 3; j++) {
            const double k = j == 0 ? 30 : 10;
            snprintf(what, sizeof what, "%s tol %g: error %.3g nats within %g tol + 1e-6",
                     dm_sde_kind_name(kinds[ki]), tols[j], e[j], k);
            CHECK(e[j] <= k * tols[j] + 1e-6, "%s", what);
        }
        CHECK(e[1] < e[0], "%s: tol 1e-5 error %.3g not below tol 1e-3's %.3g",
              dm_sde_kind_name(kinds[ki]), e[1], e[0]);
        CHECK(e[2] <= e[1] || e[2] < 2e-6, "%s: tol 1e-7 error %.3g not below tol 1e-5's %.3g",
              dm_sde_kind_name(kinds[ki]), e[2], e[1]);
        CHECK(ev[0] < ev[1] && ev[1] < ev[2], "%s: evaluations grow as the tolerance shrinks",
              dm_sde_kind_name(kinds[ki]));
        /* the same through finite differences of the score (no vjp) */
        const double efd = exact_error(kinds[ki], 1e-7, 0, NULL);
        if (verbose)
            printf("  %-5s exact trace (finite differences) tol 1e-7: max |error| %.2e nats\n",
                   dm_sde_kind_name(kinds[ki]), efd);
        /* the score is linear here, so the differences are exact but for float rounding of the
         * score, ~6e-8 |s| / (2 h) with h = 1e-2 std(t): about 1e-4 relative where std is
         * smallest, a short stretch of the integral */
        CHECK(efd <= 1e-3, "%s finite differences: error %.3g nats > 1e-3",
              dm_sde_kind_name(kinds[ki]), efd);
    }
}

/* Hutchinson: the mean over many examples of one probe each is within a few standard errors
 * of the exact trace's value, for Rademacher and Gaussian probes. The same point is repeated
 * so that the only spread is the probes'. */
static void test_hutchinson(void) {
    enum { M = 2000 };
    const dm_trace_kind kinds[] = {DM_TRACE_RADEMACHER, DM_TRACE_GAUSSIAN};
    const dm_sde_kind sdes[] = {DM_SDE_VP, DM_SDE_VE};
    static float x[2 * M];
    static double nll[M];
    for (int si = 0; si < 2; si++) {
        dm_sde sde = make_sde(sdes[si]);
        gauss g = gauss_make(&sde);
        for (int b = 0; b < M; b++) x[2 * b] = 0.4f, x[2 * b + 1] = -1.1f;
        dm_ode_nll_options o;
        dm_ode_nll_options_default(&o);
        dm_ode_nll_report ref, r;
        dm_error err = {0};
        CHECK(dm_sde_ode_nll(&sde, g_score, g_vjp, &g, x, 1, 2, &o, &ref, &err) == DM_OK, "%s",
              err.msg);
        double se_rad = 0;
        for (int ki = 0; ki < 2; ki++) {
            o.trace = kinds[ki];
            o.probes = 1;
            o.batch = 500;
            o.seed = 3;
            o.per_example = nll;
            CHECK(dm_sde_ode_nll(&sde, g_score, g_vjp, &g, x, M, 2, &o, &r, &err) == DM_OK, "%s",
                  err.msg);
            double lo = INFINITY, hi = -INFINITY;
            for (int b = 0; b < M; b++) lo = fmin(lo, nll[b]), hi = fmax(hi, nll[b]);
            const double z = (r.nll - ref.nll) / r.nll_se;
            if (verbose)
                printf("  %-5s hutchinson %-10s: mean %.5f +- %.5f (range %.3f .. %.3f), exact "
                       "%.5f, z = %.2f\n",
                       dm_sde_kind_name(sdes[si]), dm_trace_kind_name(kinds[ki]), r.nll, r.nll_se,
                       lo, hi, ref.nll, z);
            /* 4 standard errors: a false alarm about once in 16,000 runs */
            CHECK(fabs(z) < 4, "%s %s: mean %.5f is %.2f SE from the exact %.5f",
                  dm_sde_kind_name(sdes[si]), dm_trace_kind_name(kinds[ki]), r.nll, z, ref.nll);
            CHECK(hi - lo > 1e-3, "the probes vary the estimate (range %.3g)", hi - lo);
            CHECK(r.probes == 1 && r.trace == kinds[ki], "report's method");
            if (kinds[ki] == DM_TRACE_RADEMACHER) se_rad = r.nll_se;
        }
        /* more probes per example: a smaller spread around the same value */
        o.trace = DM_TRACE_RADEMACHER;
        o.probes = 16;
        CHECK(dm_sde_ode_nll(&sde, g_score, g_vjp, &g, x, 400, 2, &o, &r, &err) == DM_OK, "%s",
              err.msg);
        CHECK(fabs(r.nll - ref.nll) < 4 * r.nll_se + 1e-9, "16 probes: %.5f vs exact %.5f",
              r.nll, ref.nll);
        /* per example, 16 Rademacher probes spread less than one */
        CHECK(r.nll_se * sqrt(400.0 / M) < se_rad, "16 probes: SE %.3g on 400, one: %.3g on %d",
              r.nll_se, se_rad, M);
        /* the same probes (seed) through finite differences: the same estimates per example */
        {
            static double nll_fd[400];
            o.trace = DM_TRACE_RADEMACHER, o.probes = 2, o.per_example = nll;
            CHECK(dm_sde_ode_nll(&sde, g_score, g_vjp, &g, x, 400, 2, &o, &r, &err) == DM_OK, "%s",
                  err.msg);
            o.per_example = nll_fd;
            dm_ode_nll_report rf;
            CHECK(dm_sde_ode_nll(&sde, g_score, NULL, &g, x, 400, 2, &o, &rf, &err) == DM_OK,
                  "%s", err.msg);
            double worst = 0;
            for (int b = 0; b < 400; b++) worst = fmax(worst, fabs(nll[b] - nll_fd[b]));
            if (verbose)
                printf("  %-5s hutchinson: differences against vjp, same probes: %.2e nats\n",
                       dm_sde_kind_name(sdes[si]), worst);
            /* a linear score: the differences are exact but for float rounding (1e-3 as the
             * exact trace's) */
            CHECK(worst < 1e-3 && rf.vjp == 0, "%s hutchinson by differences: %.3g nats off",
                  dm_sde_kind_name(sdes[si]), worst);
            o.per_example = NULL;
        }
    }
}

static void test_refusals(void) {
    dm_sde sde = make_sde(DM_SDE_VP);
    gauss g = gauss_make(&sde);
    float x[4] = {0, 0, 1, 1};
    dm_ode_nll_options o;
    dm_ode_nll_report r;
    dm_error err = {0};
    dm_ode_nll_options_default(&o);
    o.rtol = 0;
    CHECK(dm_sde_ode_nll(&sde, g_score, NULL, &g, x, 2, 2, &o, &r, &err) == DM_ERR_ARG &&
              strstr(err.msg, "> 0"), "rtol 0: %s", err.msg);
    dm_ode_nll_options_default(&o);
    o.atol = -1;
    CHECK(dm_sde_ode_nll(&sde, g_score, NULL, &g, x, 2, 2, &o, &r, &err) == DM_ERR_ARG,
          "atol < 0");
    dm_ode_nll_options_default(&o);
    o.trace = DM_TRACE_RADEMACHER, o.probes = 0;
    CHECK(dm_sde_ode_nll(&sde, g_score, NULL, &g, x, 2, 2, &o, &r, &err) == DM_ERR_ARG &&
              strstr(err.msg, ">= 1"), "0 probes: %s", err.msg);
    dm_ode_nll_options_default(&o);
    o.eps = 1;
    CHECK(dm_sde_ode_nll(&sde, g_score, NULL, &g, x, 2, 2, &o, &r, &err) == DM_ERR_ARG, "eps 1");
    dm_ode_nll_options_default(&o);
    o.max_evals = 20;
    CHECK(dm_sde_ode_nll(&sde, g_score, NULL, &g, x, 2, 2, &o, &r, &err) == DM_ERR_NUMERIC &&
              strstr(err.msg, "max_evals"), "budget: %s", err.msg);
    dm_trace_kind tk;
    CHECK(dm_trace_kind_parse("hutch", &tk, &err) == DM_ERR_ARG && strstr(err.msg, "rademacher"),
          "unknown trace: %s", err.msg);
    CHECK(dm_trace_kind_parse("gaussian", &tk, &err) == DM_OK && tk == DM_TRACE_GAUSSIAN, "parse");
}

/* ---- a trained MLP on a 2-D set */

static dm_pipeline *train_mlp(const char *set, const dm_dataset *data, int64_t steps) {
    dm_error err = {0};
    dm_train_config cfg;
    dm_train_config_default(&cfg);
    cfg.mlp.hidden = 64;
    cfg.batch = 128;
    cfg.steps = steps;
    cfg.seed = 1;
    dm_trainer *tr = NULL;
    dm_pipeline *p = NULL;
    CHECK(dm_trainer_create(&tr, &cfg, data, &err) == DM_OK, "%s", err.msg);
    if (!tr) return NULL;
    while (dm_trainer_step_count(tr) < cfg.steps)
        if (dm_trainer_step(tr, NULL, &err)) {
            CHECK(0, "step: %s", err.msg);
            break;
        }
    const char *dir = tu_tmp_path(set);
    CHECK(dm_trainer_save(tr, dir, &err) == DM_OK, "%s", err.msg);
    dm_trainer_free(tr);
    CHECK(dm_pipeline_load(&p, dir, &err) == DM_OK, "%s", err.msg);
    return p;
}

/* The pipeline's scores as dm_sde_denoiser_score gives them (no vjp): the reference for the
 * network's backward-pass products. */
static void test_trained(const char *set) {
    enum { H = 100, HF = 25 };
    dm_error err = {0};
    dm_dataset data, held;
    CHECK(dm_toy2d_generate(&data, set, 5000, 5, &err) == DM_OK, "%s", err.msg);
    CHECK(dm_toy2d_generate(&held, set, H, 6, &err) == DM_OK, "%s", err.msg);
    double t0 = now();
    dm_pipeline *p = train_mlp(set, &data, 600);
    if (!p) return;
    if (verbose) printf("  trained in %.1f s\n", now() - t0);
    dm_ode_nll_options o;
    dm_ode_nll_options_default(&o);
    static double per[H], per_fd[H];
    o.per_example = per;
    dm_ode_nll_report ode, fd;
    CHECK(dm_pipeline_ode_nll(p, NULL, &held, &o, &ode, &err) == DM_OK, "%s", err.msg);
    CHECK(ode.vjp == 1, "an MLP's products come from its backward pass");
    /* the same through the public score adapter and finite differences, standardised by hand */
    dm_sde sde;
    dm_sde_default(&sde, DM_SDE_VP);
    dm_sde_denoiser a = {.sde = &sde, .s = dm_pipeline_schedule(p), .denoise = dm_pipeline_denoise,
                         .ctx = p};
    dm_dataset z = {0};
    CHECK(dm_dataset_init(&z, H, 2, &err) == DM_OK, "%s", err.msg);
    memcpy(z.x, held.x, sizeof(float) * 2 * H);
    const dm_normalizer *nz = dm_pipeline_normalizer(p);
    dm_normalizer_apply(nz, z.x, H);
    o.per_example = per_fd;
    if (verbose) printf("  ode nll in %.1f s\n", now() - t0);
    CHECK(dm_sde_ode_nll(&sde, dm_sde_denoiser_score, NULL, &a, z.x, HF, 2, &o, &fd, &err) == DM_OK,
          "%s", err.msg);
    if (verbose) printf("  finite differences in %.1f s\n", now() - t0);
    double worst = 0;
    const double ld = log(nz->std[0]) + log(nz->std[1]);
    for (int b = 0; b < HF; b++) worst = fmax(worst, fabs(per[b] - (per_fd[b] + ld)));
    CHECK_CLOSE(ode.log_det, ld, 1e-12, 0, "log-determinant of the standardiser");
    /* two solves of the same ODE whose divergences differ by the differences' truncation and
     * rounding (1e-4 relative or so) and whose RK45 paths differ accordingly */
    CHECK(worst < 2e-2, "%s: backward-pass and finite-difference products differ by %.3g nats",
          set, worst);
    /* the discrete bound of the same model on the same points, exact over all T terms */
    dm_nll_options bo;
    dm_nll_options_default(&bo);
    bo.exact = 1, bo.seed = 2, bo.batch = H;
    /* each of its T terms draws one x_t: the mean of 4 runs (seeds) per example halves that
     * noise */
    enum { R = 4 };
    dm_nll_report bound = {0}, br;
    static double per_bound[H], pb[H];
    memset(per_bound, 0, sizeof per_bound);
    bo.per_example = pb;
    for (int k = 0; k < R; k++) {
        bo.seed = 2 + (uint64_t)k;
        CHECK(dm_pipeline_nll(p, &held, &bo, &br, &err) == DM_OK, "%s", err.msg);
        for (int b = 0; b < H; b++) per_bound[b] += pb[b] / R;
        bound.total += br.total / R;
        bound.total_se += br.total_se / R; /* a mean of the runs' SEs: shown only */
        bound.log_det = br.log_det;
    }
    if (verbose) printf("  bound in %.1f s\n", now() - t0);
    printf("%-12s ODE nll %.4f +- %.4f nats (%lld evaluations, %.4f bits/dim), discrete bound "
           "%.4f +- %.4f, fd vs vjp %.2e\n",
           set, ode.nll, ode.nll_se, (long long)ode.score_evals, ode.bpd, bound.total,
           bound.total_se, worst);
    /* the claim: the exact likelihood is tighter than the bound of the same model. The
     * bound's per-example values are in the model's units (dm_nll_options), the ODE's in data
     * units. Measured (this seed, 600 steps): the ODE's mean is below the bound's, but the
     * paired difference is within about one standard error of 0 (printed below), its spread
     * mostly the bound's draws of x_t: at this size the test shows the two agree closely and
     * the ODE's is not above; bench/likelihood.sh measures the gap on 1,000 points a set. */
    double dm = 0, d2 = 0;
    for (int b = 0; b < H; b++) {
        const double dd = per[b] - (per_bound[b] + bound.log_det);
        dm += dd / H, d2 += dd * dd;
    }
    const double dse = sqrt(fmax(0, d2 / H - dm * dm) / (H - 1));
    printf("%-12s ODE - bound, paired: %.4f +- %.4f nats\n", set, dm, dse);
    CHECK_CLOSE(dm, ode.nll - bound.total, 1e-9, 0, "paired mean = difference of the means");
    CHECK(ode.nll < bound.total, "%s: ODE nll %.4f is not below the bound %.4f", set, ode.nll,
          bound.total);
    dm_pipeline_free(p);
    dm_dataset_free(&z);
    dm_dataset_free(&data);
    dm_dataset_free(&held);
}

/* Through the discrete adapter: tests/gaussian_oracle.h's exact eps of Gaussian data on the
 * linear T = 1000 schedule, as the VP SDE's score by dm_sde_denoiser_score (no vjp: finite
 * differences). Its alpha_bar_i is within 0.1% of the SDE's mean(t_i)^2 and piecewise constant
 * in t, so the result is the exact Gaussian NLL only up to that discretisation. */
static void test_discrete_oracle(void) {
    enum { M = 32 };
    dm_schedule s = gauss_oracle_schedule(DM_SCHEDULE_LINEAR, 1000);
    gauss_oracle g = gauss_oracle_make(&s);
    dm_sde sde;
    dm_sde_default(&sde, DM_SDE_VP);
    dm_sde_denoiser a = {.sde = &sde, .s = &s, .denoise = gauss_oracle_denoise, .ctx = &g};
    float x[2 * M];
    gauss_oracle_data(&g, x, M, 17);
    dm_ode_nll_options o;
    dm_ode_nll_options_default(&o);
    dm_ode_nll_report r;
    dm_error err = {0};
    CHECK(dm_sde_ode_nll(&sde, dm_sde_denoiser_score, NULL, &a, x, M, 2, &o, &r, &err) == DM_OK,
          "%s", err.msg);
    /* the exact -log p_eps of the same points: N(m mu, m^2 S + std^2 I) at eps */
    gauss ge = gauss_make(&sde);
    memcpy(ge.mu, g.mu, sizeof g.mu);
    memcpy(ge.S, g.S, sizeof g.S);
    double want = 0;
    for (int b = 0; b < M; b++) {
        const double xd[2] = {x[2 * b], x[2 * b + 1]};
        want -= log_pt(&ge, sde.eps, xd) / M;
    }
    printf("discrete oracle through the VP adapter: ODE %.5f nats, exact %.5f (diff %.2e), %lld "
           "evaluations\n", r.nll, want, r.nll - want, (long long)r.score_evals);
    /* measured 8.8e-4 nats */
    CHECK_CLOSE(r.nll, want, 5e-3, 0, "the oracle's ODE likelihood against the exact NLL");
    dm_schedule_free(&s);
}

/* Images: score_sde's dequantisation, pixel values in [0, 256): log_det = D log 128, so the bits
 * per dimension are the model's plus 7; the UNet's products come from its backward pass; a
 * value outside [-1, 1], an SDE other than VP and a schedule other than linear are refused. */
static void test_images(void) {
    enum { N = 4, D = 64 };
    dm_error err = {0};
    dm_dataset img;
    CHECK(dm_dataset_init(&img, N, D, &err) == DM_OK, "%s", err.msg);
    for (int j = 0; j < N * D; j++) {
        const int r = (j % D) / 8, c = j % 8, k = (r >= 2 && r < 6 && c >= 2 && c < 6) ? 220 : 30;
        img.x[j] = (float)((k + j % 7) / 127.5 - 1.0);
    }
    dm_train_config cfg;
    dm_train_config_default(&cfg);
    cfg.arch = DM_ARCH_UNET;
    CHECK(dm_unet_preset(&cfg.unet, "tiny", &err) == DM_OK, "%s", err.msg);
    cfg.schedule.T = 30, cfg.batch = 4, cfg.steps = 2, cfg.seed = 4;
    dm_trainer *tr = NULL;
    CHECK(dm_trainer_create(&tr, &cfg, &img, &err) == DM_OK, "%s", err.msg);
    if (!tr) return;
    while (dm_trainer_step_count(tr) < cfg.steps)
        if (dm_trainer_step(tr, NULL, &err)) break;
    const char *dir = tu_tmp_path("unet");
    CHECK(dm_trainer_save(tr, dir, &err) == DM_OK, "%s", err.msg);
    dm_trainer_free(tr);
    dm_pipeline *p = NULL;
    CHECK(dm_pipeline_load(&p, dir, &err) == DM_OK, "%s", err.msg);
    if (!p) return;
    dm_ode_nll_options o;
    dm_ode_nll_options_default(&o);
    o.trace = DM_TRACE_RADEMACHER, o.probes = 1, o.rtol = o.atol = 1e-3;
    dm_ode_nll_report r, r2;
    CHECK(dm_pipeline_ode_nll(p, NULL, &img, &o, &r, &err) == DM_OK, "%s", err.msg);
    CHECK(r.vjp == 1, "the UNet (no dropout) uses its backward pass");
    CHECK_CLOSE(r.log_det, D * log(128.0), 1e-9, 0, "images: log_det = D log 128");
    CHECK_CLOSE(r.bpd, (r.nll - r.log_det) / (D * log(2.0)) + 7, 1e-9, 0,
                "bits/dim = the model's + 7");
    CHECK(isfinite(r.nll) && r.score_evals > 0, "finite: %g", r.nll);
    o.seed = 1; /* other dequantisation noise and probes: another value */
    CHECK(dm_pipeline_ode_nll(p, NULL, &img, &o, &r2, &err) == DM_OK, "%s", err.msg);
    CHECK(r2.nll != r.nll, "the seed draws the dequantisation noise");
    printf("images: ODE %.4f nats, %.4f bits/dim (seed 1: %.4f), %lld evaluations\n", r.nll,
           r.bpd, r2.bpd, (long long)r.score_evals);
    dm_sde ve;
    dm_sde_default(&ve, DM_SDE_VE);
    CHECK(dm_pipeline_ode_nll(p, &ve, &img, &o, &r, &err) == DM_ERR_ARG &&
              strstr(err.msg, "allowed: vp"), "VE: %s", err.msg);
    img.x[3] = 1.5f;
    CHECK(dm_pipeline_ode_nll(p, NULL, &img, &o, &r, &err) == DM_ERR_ARG &&
              strstr(err.msg, "[-1, 1]"), "1.5: %s", err.msg);
    dm_pipeline_free(p);
    dm_dataset_free(&img);
}

/* A cosine schedule discretises no VP SDE of linear beta: refused. */
static void test_cosine_refused(void) {
    dm_error err = {0};
    dm_dataset data;
    CHECK(dm_toy2d_generate(&data, "moons", 500, 5, &err) == DM_OK, "%s", err.msg);
    dm_train_config cfg;
    dm_train_config_default(&cfg);
    cfg.mlp.hidden = 16, cfg.steps = 2, cfg.batch = 16, cfg.schedule.kind = DM_SCHEDULE_COSINE;
    dm_trainer *tr = NULL;
    CHECK(dm_trainer_create(&tr, &cfg, &data, &err) == DM_OK, "%s", err.msg);
    if (!tr) return;
    while (dm_trainer_step_count(tr) < cfg.steps)
        if (dm_trainer_step(tr, NULL, &err)) break;
    const char *dir = tu_tmp_path("cosine");
    CHECK(dm_trainer_save(tr, dir, &err) == DM_OK, "%s", err.msg);
    dm_trainer_free(tr);
    dm_pipeline *p = NULL;
    CHECK(dm_pipeline_load(&p, dir, &err) == DM_OK, "%s", err.msg);
    dm_ode_nll_options o;
    dm_ode_nll_options_default(&o);
    dm_ode_nll_report r;
    data.n = 4;
    CHECK(p && dm_pipeline_ode_nll(p, NULL, &data, &o, &r, &err) == DM_ERR_ARG &&
              strstr(err.msg, "linear"), "cosine: %s", err.msg);
    dm_pipeline_free(p);
    data.n = 500;
    dm_dataset_free(&data);
}

int main(void) {
    verbose = getenv("DM_TEST_VERBOSE") != NULL;
    if (tu_tmpdir_make("sde_likelihood")) return 1;
    double t0 = now();
    test_refusals();
    test_exact_trace();
    if (verbose) printf("exact: %.1f s\n", now() - t0);
    test_hutchinson();
    if (verbose) printf("hutchinson: %.1f s\n", now() - t0);
    test_discrete_oracle();
    test_images();
    test_cosine_refused();
    if (verbose) printf("images: %.1f s\n", now() - t0);
    test_trained("swissroll");
    if (verbose) printf("swissroll: %.1f s\n", now() - t0);

    tu_tmpdir_remove();
    return tu_finish("test_sde_likelihood");
}
