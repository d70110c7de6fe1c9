/* Ancestral sampling driven by the exact denoiser of Gaussian data: the samples have the data's
 * moments; the noise layout, reproducibility, thread independence, the observer and error
 * propagation. */
#include "diffusion/diffusion_impl.h"
#include "test_util.h"

#include <omp.h>
#include <string.h>

enum { D = 2 };

/* x0 ~ N(mu, diag(sd^2)). Then x_t ~ N(sqrt(ab) mu, ab sd^2 + 1 - ab) per dimension and
 * E[eps | x_t] = sqrt(1 - ab) (x_t - sqrt(ab) mu) / (ab sd^2 + 1 - ab): the optimal eps_hat. */
typedef struct {
    const dm_schedule *s;
    double mu[D], sd[D];
    int calls;
    int bad_t;       /* timesteps that were not the expected step index */
    int expect_i;    /* the step index the next call should see */
    int fail_at;     /* return an error at this step index (-1: never) */
} gauss_ctx;

static dm_status gauss_denoise(void *vctx, float *eps_hat, float *var_out, const float *x,
                               const float *t, int64_t B, dm_error *err) {
    gauss_ctx *c = vctx;
    c->calls++;
    /* no variance output: the sampler must not ask for one with a fixed variance */
    if (var_out) return dm_error_set(err, DM_ERR_ARG, "gauss denoiser: no variance output");
    for (int64_t b = 0; b < B; b++) c->bad_t += t[b] != (float)c->expect_i;
    const int32_t i = c->expect_i--;
    if (i == c->fail_at)
        return dm_error_set(err, DM_ERR_NUMERIC, "gauss denoiser: injected failure at %d", (int)i);
    const double ab = c->s->alpha_bar[i];
    double k[D], m[D]; /* eps_hat = k (x - m), per dimension */
    for (int d = 0; d < D; d++) {
        k[d] = sqrt(1 - ab) / (ab * c->sd[d] * c->sd[d] + 1 - ab);
        m[d] = sqrt(ab) * c->mu[d];
    }
    for (int64_t b = 0; b < B; b++)
        for (int d = 0; d < D; d++) eps_hat[b * D + d] = (float)(k[d] * (x[b * D + d] - m[d]));
    return DM_OK;
}

static gauss_ctx make_ctx(const dm_schedule *s) {
    gauss_ctx c = {.s = s, .mu = {1.5, -0.5}, .sd = {0.5, 2.0}, .expect_i = s->T - 1,
                   .fail_at = -1};
    return c;
}

/* Exact mean and variance (per dimension) of the output of the discrete sampler: every step is
 * affine in x plus Gaussian noise, x <- a x + b + sigma z, so the moments follow a recursion. */
static void chain_moments(const dm_schedule *s, const gauss_ctx *c, dm_reverse_var var, int d,
                          double *mean, double *variance) {
    double m = 0, v = 1; /* x_T ~ N(0, 1) */
    for (int32_t i = s->T - 1; i >= 0; i--) {
        const double ab = s->alpha_bar[i], beta = s->beta[i];
        const double vt = ab * c->sd[d] * c->sd[d] + 1 - ab;
        /* mu_theta = (x - beta / sqrt(1 - ab) eps_hat) / sqrt(alpha), eps_hat affine in x */
        const double a = (1 - beta / vt) / sqrt(1 - beta);
        const double b = beta / vt * sqrt(ab) * c->mu[d] / sqrt(1 - beta);
        m = a * m + b;
        v = a * a * v + (i > 0 ? (var == DM_VAR_BETA ? beta : s->beta_tilde[i]) : 0);
    }
    *mean = m;
    *variance = v;
}

typedef struct {
    int calls;
    int bad_order;
    int32_t next;
    int64_t B, dim;
    int bad_shape;
    float *first; /* copy of x at i = T */
    float *at1;   /* copy of x at i = 1 */
} obs_ctx;

static void observer(void *vctx, int32_t i, const float *x, int64_t B, int64_t dim) {
    obs_ctx *o = vctx;
    o->calls++;
    o->bad_order += i != o->next;
    o->next = i - 1;
    o->bad_shape += B != o->B || dim != o->dim;
    if (o->first && o->calls == 1) memcpy(o->first, x, (size_t)(B * dim) * sizeof(float));
    if (o->at1 && i == 1) memcpy(o->at1, x, (size_t)(B * dim) * sizeof(float));
}

static dm_schedule make_schedule(int32_t T) {
    dm_schedule_config cfg;
    dm_schedule_config_default(&cfg);
    cfg.T = T;
    dm_schedule s;
    dm_error err = {0};
    if (dm_schedule_init(&s, &cfg, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
    return s;
}

static float *alloc_floats(size_t n) {
    float *p = dm_alloc(n * sizeof(float));
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    return p;
}

static dm_status run(const dm_schedule *s, gauss_ctx *c, float *x, int64_t B, dm_reverse_var var,
                     uint64_t seed, obs_ctx *o, dm_error *err) {
    dm_sample_options opt;
    dm_sample_options_default(&opt);
    opt.var = var;
    opt.seed = seed;
    if (o) {
        opt.observe = observer;
        opt.observe_ctx = o;
    }
    *c = make_ctx(s);
    return dm_sample_ancestral(s, gauss_denoise, c, x, B, D, &opt, err);
}

/* ---- the samples have the data's moments */
static void test_moments(void) {
    const int64_t n = 20000;
    dm_schedule s = make_schedule(1000);
    float *x = alloc_floats(n * D);
    const dm_reverse_var vars[] = {DM_VAR_BETA, DM_VAR_BETA_TILDE};
    for (int k = 0; k < 2; k++) {
        gauss_ctx c;
        dm_error err = {0};
        CHECK(run(&s, &c, x, n, vars[k], 7, NULL, &err) == DM_OK, "%s", err.msg);
        CHECK(c.calls == 1000 && c.bad_t == 0, "denoiser calls %d, wrong timesteps %d", c.calls,
              c.bad_t);
        for (int d = 0; d < D; d++) {
            double m = 0, m2 = 0;
            for (int64_t b = 0; b < n; b++) m += x[b * D + d];
            m /= n;
            for (int64_t b = 0; b < n; b++) m2 += (x[b * D + d] - m) * (x[b * D + d] - m);
            const double var = m2 / (n - 1);
            double cm, cv;
            chain_moments(&s, &c, vars[k], d, &cm, &cv);
            const double mu = c.mu[d], s2 = c.sd[d] * c.sd[d];
            /* statistical bounds: 5 standard errors, sd / sqrt(n) for the mean and
             * var sqrt(2 / (n - 1)) for the variance of a normal sample */
            const double se_m = sqrt(cv / n), se_v = cv * sqrt(2.0 / (n - 1));
            /* Discretisation allowance: the T = 1000 chain with these variances does not end
             * exactly at N(mu, sd^2); its exact moments (chain_moments) are off by < 1e-4 in
             * the mean and < 1.6% in the variance (beta_tilde, sd = 0.5). Allow 1e-3 and 2%. */
            const double allow_m = 1e-3, allow_v = 0.02 * s2;
            char what[128];
            const char *vn = vars[k] == DM_VAR_BETA ? "beta" : "beta_tilde";
            snprintf(what, sizeof what, "%s dim %d: sample mean vs data mean", vn, d);
            CHECK_CLOSE(m, mu, 5 * se_m + allow_m, 0, what);
            snprintf(what, sizeof what, "%s dim %d: sample variance vs data variance", vn, d);
            CHECK_CLOSE(var, s2, 5 * se_v + allow_v, 0, what);
            /* tighter: against the chain's exact moments, sampling error alone (float rounding
             * over 1000 steps, ~1e-5, is far below the standard error) */
            snprintf(what, sizeof what, "%s dim %d: sample mean vs exact chain mean", vn, d);
            CHECK_CLOSE(m, cm, 5 * se_m, 0, what);
            snprintf(what, sizeof what, "%s dim %d: sample variance vs exact chain variance", vn,
                     d);
            CHECK_CLOSE(var, cv, 5 * se_v, 0, what);
            snprintf(what, sizeof what, "%s dim %d: exact chain mean vs data", vn, d);
            CHECK_CLOSE(cm, mu, allow_m, 0, what);
            snprintf(what, sizeof what, "%s dim %d: exact chain variance vs data", vn, d);
            CHECK_CLOSE(cv, s2, allow_v, 0, what);
        }
    }
    /* the two variance choices lead to measurably different chains, so both runs count */
    double cm, cv_beta, cv_tilde;
    gauss_ctx c0 = make_ctx(&s);
    chain_moments(&s, &c0, DM_VAR_BETA, 0, &cm, &cv_beta);
    chain_moments(&s, &c0, DM_VAR_BETA_TILDE, 0, &cm, &cv_tilde);
    CHECK(fabs(cv_beta - cv_tilde) > 1e-3, "beta and beta_tilde chains should differ");

    dm_free(x);
    dm_schedule_free(&s);
}

/* ---- 1 and 2 threads give the same bits (B * dim above every parallel threshold); seeds */
static void test_threads(void) {
    const int64_t n = 40000;
    dm_schedule s = make_schedule(100);
    float *x1 = alloc_floats(n * D), *x2 = alloc_floats(n * D);
    gauss_ctx c;
    dm_error err = {0};
    for (int k = 0; k < 2; k++) {
        dm_reverse_var var = k ? DM_VAR_BETA_TILDE : DM_VAR_BETA;
        omp_set_num_threads(1);
        CHECK(run(&s, &c, x1, n, var, 3, NULL, &err) == DM_OK, "%s", err.msg);
        omp_set_num_threads(2);
        CHECK(run(&s, &c, x2, n, var, 3, NULL, &err) == DM_OK, "%s", err.msg);
        CHECK(memcmp(x1, x2, n * D * sizeof(float)) == 0, "var %d: 1 and 2 threads differ", k);
    }
    /* same seed: the same bits; another seed: other samples */
    CHECK(run(&s, &c, x2, n, DM_VAR_BETA_TILDE, 3, NULL, &err) == DM_OK, "%s", err.msg);
    CHECK(memcmp(x1, x2, n * D * sizeof(float)) == 0, "same seed gives different samples");
    CHECK(run(&s, &c, x2, n, DM_VAR_BETA_TILDE, 4, NULL, &err) == DM_OK, "%s", err.msg);
    int64_t same = 0;
    for (int64_t j = 0; j < n * D; j++) same += x1[j] == x2[j];
    CHECK(same < n * D / 100, "seeds 3 and 4 agree at %lld of %lld values", (long long)same,
          (long long)(n * D));
    dm_free(x1);
    dm_free(x2);
    dm_schedule_free(&s);
}

/* ---- observer, noise layout and the last step, against a reference computed in double */
static void test_trajectory(dm_reverse_var var) {
    enum { B = 5, T = 50 };
    const uint64_t seed = 99;
    dm_schedule s = make_schedule(T);
    float x[B * D], first[B * D], at1[B * D];
    obs_ctx o = {.next = T, .B = B, .dim = D, .first = first, .at1 = at1};
    gauss_ctx c;
    dm_error err = {0};
    CHECK(run(&s, &c, x, B, var, seed, &o, &err) == DM_OK, "%s", err.msg);
    CHECK(o.calls == T + 1, "observer called %d times, want T + 1 = %d", o.calls, T + 1);
    CHECK(o.bad_order == 0 && o.next == -1, "observer indices not T, T-1, ..., 0 (%d wrong)",
          o.bad_order);
    CHECK(o.bad_shape == 0, "observer saw the wrong B or dim");

    /* x_T is the first B*dim normals of (seed, stream 0); step i > 0 draws the next B*dim */
    dm_rng rng;
    dm_rng_init(&rng, seed, 0);
    float z[B * D];
    double ref[B * D];
    dm_rng_normal(&rng, z, B * D);
    CHECK(memcmp(z, first, sizeof z) == 0, "x_T is not the first normals of (seed, 0)");
    for (int j = 0; j < B * D; j++) ref[j] = z[j];
    const gauss_ctx g = make_ctx(&s);
    for (int32_t i = T - 1; i >= 0; i--) {
        const double ab = s.alpha_bar[i], beta = s.beta[i];
        if (i > 0) dm_rng_normal(&rng, z, B * D);
        for (int b = 0; b < B; b++)
            for (int d = 0; d < D; d++) {
                double *r = &ref[b * D + d];
                const double v = ab * g.sd[d] * g.sd[d] + 1 - ab;
                const double eps = sqrt(1 - ab) * (*r - sqrt(ab) * g.mu[d]) / v;
                *r = (*r - beta / sqrt(1 - ab) * eps) / sqrt(1 - beta);
                if (i > 0)
                    *r += sqrt(var == DM_VAR_BETA ? beta : s.beta_tilde[i]) * z[b * D + d];
            }
    }
    /* float against double over 50 steps: ~1e-7 rounding per step, amplified at most by the
     * data sd (2) */
    tu_check_array("trajectory vs double reference", x, ref, B * D, 1e-4, 0);

    /* the last step adds no noise: x_0 is exactly the reverse mean at x_1 */
    float eps[B * D], t[B], mean[B * D];
    for (int b = 0; b < B; b++) t[b] = 0;
    gauss_ctx c1 = make_ctx(&s);
    c1.expect_i = 0;
    gauss_denoise(&c1, eps, NULL, at1, t, B, &err);
    dm_p_mean_from_eps(&s, 0, mean, at1, eps, B * D);
    CHECK(memcmp(mean, x, sizeof mean) == 0, "x_0 is not the mean at x_1 (noise at i = 0?)");
    dm_schedule_free(&s);
}

/* ---- a denoiser error stops the sampler and keeps its message */
static void test_errors(void) {
    dm_schedule s = make_schedule(20);
    float x[4 * D];
    gauss_ctx c = make_ctx(&s);
    c.fail_at = 17;
    obs_ctx o = {.next = 20, .B = 4, .dim = D};
    dm_sample_options opt;
    dm_sample_options_default(&opt);
    CHECK(opt.var == DM_VAR_BETA && opt.seed == 0 && !opt.observe && !opt.observe_ctx,
          "sample option defaults");
    opt.observe = observer;
    opt.observe_ctx = &o;
    dm_error err = {0};
    dm_status st = dm_sample_ancestral(&s, gauss_denoise, &c, x, 4, D, &opt, &err);
    CHECK(st == DM_ERR_NUMERIC && err.status == DM_ERR_NUMERIC, "status %s",
          dm_status_name(st));
    CHECK(strstr(err.msg, "injected failure at 17") != NULL, "message: %s", err.msg);
    /* i = 20 (x_T), 19, 18, then step 17 fails */
    CHECK(o.calls == 3 && c.calls == 3, "observer %d, denoiser %d calls; want 3 and 3", o.calls,
          c.calls);

    /* a denoiser error with err = NULL still returns the status */
    c = make_ctx(&s);
    c.fail_at = 19;
    CHECK(dm_sample_ancestral(&s, gauss_denoise, &c, x, 4, D, &opt, NULL) == DM_ERR_NUMERIC,
          "status without err");

    /* bad arguments */
    struct {
        const char *what;
        int64_t B, dim;
        int null_fn, null_x, null_opt;
        const char *needle;
    } bad[] = {
        {"B = 0", 0, D, 0, 0, 0, "B = 0"},
        {"dim = 0", 4, 0, 0, 0, 0, "dim = 0"},
        {"B < 0", -3, D, 0, 0, 0, ">= 1"},
        {"NULL denoise", 4, D, 1, 0, 0, "denoise"},
        {"NULL x", 4, D, 0, 1, 0, "x is NULL"},
        {"NULL options", 4, D, 0, 0, 1, "options"},
    };
    opt.observe = NULL;
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        err = (dm_error){0};
        st = dm_sample_ancestral(&s, bad[k].null_fn ? NULL : gauss_denoise, &c,
                                 bad[k].null_x ? NULL : x, bad[k].B, bad[k].dim,
                                 bad[k].null_opt ? NULL : &opt, &err);
        CHECK(st == DM_ERR_ARG && strstr(err.msg, bad[k].needle), "%s: %s '%s'", bad[k].what,
              dm_status_name(st), err.msg);
    }
    err = (dm_error){0};
    opt.var = (dm_reverse_var)5;
    st = dm_sample_ancestral(&s, gauss_denoise, &c, x, 4, D, &opt, &err);
    CHECK(st == DM_ERR_ARG && strstr(err.msg, "variance"), "bad variance: '%s'", err.msg);
    opt.var = DM_VAR_BETA;
    dm_schedule empty = {0};
    st = dm_sample_ancestral(&empty, gauss_denoise, &c, x, 4, D, &opt, &err);
    CHECK(st == DM_ERR_ARG && strstr(err.msg, "schedule"), "empty schedule: '%s'", err.msg);
    dm_schedule_free(&s);
}

/* ---- clip_x0: the posterior-mean form equals the eps form while x0_hat stays in [-1, 1], and
 * bounds the output to [-1, 1] when it does not */
static void test_clip_x0(void) {
    const int64_t B = 500;
    dm_schedule s = make_schedule(200);
    float *plain = alloc_floats(B * D), *clipped = alloc_floats(B * D);
    dm_sample_options opt;
    dm_sample_options_default(&opt);
    opt.seed = 9;
    dm_error err = {0};
    /* data N(0, 0.05^2): the optimal x0_hat is the data mean shrunk, far inside [-1, 1] */
    gauss_ctx c = {.s = &s, .sd = {0.05, 0.05}, .expect_i = s.T - 1, .fail_at = -1};
    CHECK(dm_sample_ancestral(&s, gauss_denoise, &c, plain, B, D, &opt, &err) == DM_OK, "%s",
          err.msg);
    c.expect_i = s.T - 1;
    opt.clip_x0 = 1;
    CHECK(dm_sample_ancestral(&s, gauss_denoise, &c, clipped, B, D, &opt, &err) == DM_OK, "%s",
          err.msg);
    double maxdiff = 0;
    for (int64_t i = 0; i < B * D; i++) maxdiff = fmax(maxdiff, fabs(plain[i] - clipped[i]));
    CHECK(maxdiff < 1e-4, "clip_x0 changed samples whose x0_hat never left [-1, 1]: %g", maxdiff);
    /* data centred at 1.5: x0_hat leaves [-1, 1]; the last step returns the clipped x0_hat */
    c = make_ctx(&s);
    CHECK(dm_sample_ancestral(&s, gauss_denoise, &c, clipped, B, D, &opt, &err) == DM_OK, "%s",
          err.msg);
    int inside = 1, at_edge = 0;
    for (int64_t i = 0; i < B * D; i++) {
        inside &= fabsf(clipped[i]) <= 1.0f;
        at_edge += clipped[i] == 1.0f;
    }
    CHECK(inside, "clip_x0 samples outside [-1, 1]");
    CHECK(at_edge > 0, "no sample at the clip edge although the data sit at 1.5");
    dm_free(plain);
    dm_free(clipped);
    dm_schedule_free(&s);
}

int main(void) {
    omp_set_num_threads(2);
    test_errors();
    test_trajectory(DM_VAR_BETA);
    test_trajectory(DM_VAR_BETA_TILDE);
    test_threads();
    test_moments();
    test_clip_x0();
    return tu_finish("test_sampler");
}
