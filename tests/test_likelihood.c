/* The variational bound against exact answers:
 *  - the discretised decoder is a probability over the 256 levels (sums to 1);
 *  - with the optimal denoiser for Gaussian data, the bound is never below the data's exact
 *    negative log-likelihood and approaches it as T grows;
 *  - the unbiased estimate agrees with the exact sum within its standard error;
 *  - a worse denoiser gets a worse bound; a learned-variance output of +1 / -1 gives the same
 *    bound as beta / beta_tilde. */
#include "gaussian_oracle.h"
#include "test_util.h"

#include <omp.h>

static void test_decoder_normalised(void) {
    const double mus[] = {-1.3, -0.5, 0.0, 0.2, 0.99, 1.7};
    const double sigmas[] = {1e-4, 1e-2, 0.3, 5.0};
    for (int a = 0; a < 6; a++)
        for (int b = 0; b < 4; b++) {
            double total = 0;
            for (int k = 0; k < 256; k++)
                total += exp(dm_log_discretized_gaussian(k / 127.5 - 1.0, mus[a], sigmas[b]));
            CHECK_CLOSE(total, 1.0, 1e-9, 0, "sum of the 256 bin probabilities");
        }
    /* a narrow Gaussian on a level puts (almost) all its mass in that level's bin */
    CHECK(dm_log_discretized_gaussian(3 / 127.5 - 1.0, 3 / 127.5 - 1.0, 1e-4) > -1e-9,
          "the centre bin holds the mass");
}

/* -log N(x0_b; mu, S) for each example: the exact NLL of the data the bound sees. */
static void exact_nll(const gauss_oracle *g, const float *x0, double *nll, int64_t n) {
    const double det = g->S[0][0] * g->S[1][1] - g->S[0][1] * g->S[1][0];
    for (int64_t b = 0; b < n; b++) {
        const double r0 = x0[2 * b] - g->mu[0], r1 = x0[2 * b + 1] - g->mu[1];
        const double q = (g->S[1][1] * r0 * r0 - 2 * g->S[0][1] * r0 * r1 + g->S[0][0] * r1 * r1) /
                         det;
        nll[b] = 0.5 * (q + log(det) + 2 * log(2 * M_PI));
    }
}

static dm_nll_report bound(const dm_schedule *s, gauss_oracle *g, const float *x0, int64_t n,
                           int exact, dm_reverse_var var, dm_denoise_fn fn, void *ctx,
                           double *per_example) {
    dm_nll_options o;
    dm_nll_options_default(&o);
    o.exact = exact;
    o.var = var;
    o.batch = 20000;
    o.seed = 3;
    o.per_example = per_example;
    dm_nll_report r;
    dm_error err = {0};
    CHECK(dm_nll_bound(s, fn ? fn : gauss_oracle_denoise, fn ? ctx : g, x0, n, 2, &o, &r, &err) ==
              DM_OK,
          "%s", err.msg);
    return r;
}

/* The bound per example is >= -log p_model(x0), and the oracle's p_model tends to the data's
 * density as T grows, so the mean paired gap bound_b - nll_b is >= 0 up to the Monte Carlo noise
 * of the forward-process draws (its standard error is measured from the pairs) and shrinks
 * like 1/T. Cosine schedule, so that small T still ends near N(0, I). */
static void test_gaussian_bound(void) {
    enum { N = 100000 };
    float *x0 = malloc(2 * N * sizeof *x0);
    double *nll = malloc(N * sizeof *nll), *per = malloc(N * sizeof *per);
    const int32_t Ts[] = {2, 8, 32, 1000};
    double gap[4], se[4];
    for (int k = 0; k < 4; k++) {
        dm_schedule s = gauss_oracle_schedule(DM_SCHEDULE_COSINE, Ts[k]);
        gauss_oracle g = gauss_oracle_make(&s);
        gauss_oracle_data(&g, x0, N, 1);
        exact_nll(&g, x0, nll, N);
        /* the last (largest T) case on fewer examples: T network calls per chunk */
        const int64_t n = Ts[k] > 100 ? 20000 : N;
        dm_nll_report r = bound(&s, &g, x0, n, 1, DM_VAR_BETA, NULL, NULL, per);
        double m = 0, m2 = 0, nm = 0;
        for (int64_t b = 0; b < n; b++) {
            const double d = per[b] - nll[b];
            m += d, m2 += d * d, nm += nll[b];
        }
        gap[k] = m / n;
        se[k] = sqrt((m2 / n - gap[k] * gap[k]) / n);
        printf("T = %4d: bound %.5f nats, exact NLL %.5f, gap %.5f +- %.5f (prior %.2e, "
               "diffusion %.4f, decoder %.4f); %.5f bits/dim\n",
               Ts[k], r.total, nm / n, gap[k], se[k], r.prior, r.diffusion, r.decoder, r.bpd);
        CHECK(gap[k] > -4 * se[k], "T = %d: the bound is below the exact NLL by %.5f (se %.5f)",
              Ts[k], -gap[k], se[k]);
        CHECK_CLOSE(r.total, m / n + nm / n, 1e-9, 1e-9, "per-example values average to the total");
        CHECK_CLOSE(r.prior + r.diffusion + r.decoder, r.total, 1e-9, 1e-12, "breakdown sums");
        CHECK_CLOSE(r.bpd, r.total / (2 * log(2.0)), 1e-12, 1e-12, "bits per dimension");
        if (k == 2) {
            /* the estimate (one t per example) agrees with the exact sum */
            dm_nll_report e = bound(&s, &g, x0, n, 0, DM_VAR_BETA, NULL, NULL, NULL);
            CHECK(fabs(e.total - r.total) < 4 * e.total_se,
                  "estimate %.4f +- %.4f vs exact %.4f", e.total, e.total_se, r.total);
            CHECK(e.total_se > r.total_se, "the estimate is noisier than the exact sum");
        }
        dm_schedule_free(&s);
    }
    for (int k = 0; k + 2 < 4; k++)
        CHECK(gap[k] - gap[k + 1] > 3 * sqrt(se[k] * se[k] + se[k + 1] * se[k + 1]),
              "the gap shrinks with T: %.5f (T = %d) then %.5f (T = %d)", gap[k], (int)Ts[k],
              gap[k + 1], (int)Ts[k + 1]);
    CHECK(fabs(gap[3]) < 4 * se[3] + 0.005, "T = 1000: gap %.5f +- %.5f, want ~0", gap[3], se[3]);
    free(x0), free(nll), free(per);
}

/* The oracle with its eps_hat shifted, or with a constant variance output. */
typedef struct {
    gauss_oracle *g;
    float shift, raw;
} wrapped;

static dm_status wrapped_denoise(void *ctx, float *eps_hat, float *var_out, const float *x,
                                 const float *t, int64_t B, dm_error *err) {
    wrapped *w = ctx;
    dm_status st = gauss_oracle_denoise(w->g, eps_hat, NULL, x, t, B, err);
    for (int64_t j = 0; j < 2 * B; j++) {
        eps_hat[j] += w->shift;
        if (var_out) var_out[j] = w->raw;
    }
    return st;
}

static void test_variants(void) {
    enum { N = 2000 };
    float *x0 = malloc(2 * N * sizeof *x0);
    dm_schedule s = gauss_oracle_schedule(DM_SCHEDULE_LINEAR, 200);
    gauss_oracle g = gauss_oracle_make(&s);
    gauss_oracle_data(&g, x0, N, 2);
    dm_nll_report good = bound(&s, &g, x0, N, 1, DM_VAR_BETA, NULL, NULL, NULL);
    wrapped w = {.g = &g, .shift = 0.1f};
    dm_nll_report bad = bound(&s, &g, x0, N, 1, DM_VAR_BETA, wrapped_denoise, &w, NULL);
    CHECK(bad.total > good.total + 0.1, "a shifted denoiser: %.4f vs %.4f", bad.total,
          good.total);
    w.shift = 0;
    for (int k = 0; k < 2; k++) {
        w.raw = k ? -1.0f : 1.0f;
        const dm_reverse_var fixed = k ? DM_VAR_BETA_TILDE : DM_VAR_BETA;
        dm_nll_report a = bound(&s, &g, x0, N, 1, fixed, NULL, NULL, NULL);
        dm_nll_report b = bound(&s, &g, x0, N, 1, DM_VAR_LEARNED, wrapped_denoise, &w, NULL);
        CHECK_CLOSE(b.total, a.total, 0, 1e-9, "learned +-1 = beta / beta_tilde");
    }
    /* beta_tilde is the better fixed variance for these data (both bound the same NLL) */
    dm_nll_report tilde = bound(&s, &g, x0, N, 1, DM_VAR_BETA_TILDE, NULL, NULL, NULL);
    printf("T = 200 linear: bound with beta %.4f, with beta_tilde %.4f\n", good.total,
           tilde.total);
    /* bad options */
    dm_nll_options o;
    dm_nll_options_default(&o);
    dm_nll_report r;
    dm_error err = {0};
    o.t_draws = 0;
    CHECK(dm_nll_bound(&s, gauss_oracle_denoise, &g, x0, N, 2, &o, &r, &err) == DM_ERR_ARG,
          "t_draws 0 refused");
    o.t_draws = 1;
    o.var = DM_VAR_LEARNED;
    CHECK(dm_nll_bound(&s, gauss_oracle_denoise, &g, x0, N, 2, &o, &r, &err) == DM_ERR_ARG &&
              strstr(err.msg, "no variance output"),
          "a learned variance from a denoiser without one: %s", err.msg);
    dm_schedule_free(&s);
    free(x0);
}

int main(void) {
    omp_set_num_threads(2);
    test_decoder_normalised();
    test_gaussian_bound();
    test_variants();
    return tu_finish("test_likelihood");
}
