/* The variational bound against exact answers:
 *  - the discretised decoder is a probability over the 256 levels (sums to 1);
 *  - with the optimal denoiser for Gaussian data, the bound equals its closed-form expectation,
 *    is never below the data's exact negative log-likelihood and approaches it as T grows;
 *  - the unbiased estimate agrees with the exact sum within its standard error;
 *  - a worse denoiser gets a worse bound; a learned-variance output of +1 / -1 gives the same
 *    bound as beta / beta_tilde; for these data beta is the better fixed variance (paired). */
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

/* E[-log N(x0; mu, S)] over the data: (D + log det S + D log 2 pi) / 2. */
static double expected_nll(const gauss_oracle *g) {
    const double det = g->S[0][0] * g->S[1][1] - g->S[0][1] * g->S[1][0];
    return 0.5 * (2 + log(det) + 2 * log(2 * M_PI));
}

/* The bound's expectation over the data and the forward-process noise, in closed form (exact
 * sum over t, continuous decoder, a fixed variance), written from the formulas of Ho et al.
 * rather than from likelihood.c. With the optimal denoiser, eps - eps_hat at step t has
 * covariance I - (1 - ab) Sigma_t^{-1} (gaussian_oracle.h), so E ||mu_tilde - mu_theta||^2 per
 * dimension is c_t^2 (I - (1 - ab) Sigma_t^{-1})_dd with c_t = beta_t / (sqrt(alpha_t)
 * sqrt(1 - ab_t)); each term is then a function of that mean square:
 *   prior   KL(N(sqrt(ab_T) x0, 1 - ab_T) || N(0, 1)) with E x0_d^2 = mu_d^2 + S_dd,
 *   t >= 2  KL(N(mu_tilde, bt) || N(mu_theta, s2)) = (log(s2 / bt) + (bt + gap^2) / s2 - 1) / 2,
 *   t = 1   -log N(x0; mu_theta, s2) = (log(2 pi s2) + gap^2 / s2) / 2,
 * with bt = (1 - ab_{t-1}) / (1 - ab_t) beta_t and s2 = beta_t, or bt (that of t = 2 at t = 1). */
static double expected_bound(const dm_schedule *s, const gauss_oracle *g, dm_reverse_var var) {
    const int32_t T = s->T;
    const double abT = s->alpha_bar[T - 1];
    double e = 0;
    for (int d = 0; d < 2; d++)
        e += 0.5 * (abT * (g->mu[d] * g->mu[d] + g->S[d][d]) + (1 - abT) - 1 - log(1 - abT));
    for (int32_t i = 0; i < T; i++) {
        const double ab = s->alpha_bar[i], ab_prev = i > 0 ? s->alpha_bar[i - 1] : 1.0;
        const double beta = 1 - ab / ab_prev, alpha = 1 - beta;
        const double c = beta / (sqrt(alpha) * sqrt(1 - ab));
        const double bt = i > 0 ? (1 - ab_prev) / (1 - ab) * beta : 0.0;
        double s2 = beta;
        if (var == DM_VAR_BETA_TILDE) {
            const double ab1 = s->alpha_bar[1], beta1 = 1 - ab1 / s->alpha_bar[0];
            s2 = i > 0 ? bt : (1 - s->alpha_bar[0]) / (1 - ab1) * beta1;
        }
        double P[2][2];
        gauss_oracle_prec(g, ab, P);
        for (int d = 0; d < 2; d++) {
            const double gap2 = c * c * (1 - (1 - ab) * P[d][d]);
            e += i > 0 ? 0.5 * (log(s2 / bt) + (bt + gap2) / s2 - 1)
                       : 0.5 * (log(2 * M_PI * s2) + gap2 / s2);
        }
    }
    return e;
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
 * density as T grows, so the gap G = E[bound] - E[-log p_data(x0)] is >= 0 and shrinks like
 * 1/T (cosine schedule, so that small T still ends near N(0, I)). G is known in closed form
 * (expected_bound), and the test measures it by pairs: d_b = bound_b - nll_b on the same
 * examples, mean gap and standard error se = sd(d) / sqrt(n) (the pairs remove the spread of
 * nll_b itself, which is ~50x the gap's). Checks:
 *  - the closed form: G >= 0 at every T (the bound's theorem, for the formula we compare to);
 *  - the library against it from both sides, |gap - G| <= 4 se: a bound that is too low (a
 *    missing term) or too high (a wrong variance, a doubled term) fails; 4 se for a two-sided
 *    check made 4 times;
 *  - never below the exact NLL: gap > -3 se (one-sided, 3 se). At T = 1000 se is 0.004 nats, so
 *    the bias this allows is 0.013 nats (formerly 4 x 0.0097 = 0.04).
 * T = 1000 runs on 100000 examples like the others: T network calls per chunk, ~10 s. */
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
        const int64_t n = N;
        dm_nll_report r = bound(&s, &g, x0, n, 1, DM_VAR_BETA, NULL, NULL, per);
        double m = 0, m2 = 0, nm = 0;
        for (int64_t b = 0; b < n; b++) {
            const double d = per[b] - nll[b];
            m += d, m2 += d * d, nm += nll[b];
        }
        gap[k] = m / n;
        se[k] = sqrt((m2 / n - gap[k] * gap[k]) / (n - 1));
        const double G = expected_bound(&s, &g, DM_VAR_BETA) - expected_nll(&g);
        printf("T = %4d: bound %.5f nats, exact NLL %.5f, gap %.5f +- %.5f, closed form %.5f "
               "(prior %.2e, diffusion %.4f, decoder %.4f); %.5f bits/dim\n",
               Ts[k], r.total, nm / n, gap[k], se[k], G, r.prior, r.diffusion, r.decoder, r.bpd);
        CHECK(G >= 0, "T = %d: the closed-form gap %.6f is negative", Ts[k], G);
        CHECK(fabs(gap[k] - G) <= 4 * se[k],
              "T = %d: measured gap %.5f vs closed form %.5f: %.2f se apart (se %.5f), want <= 4",
              Ts[k], gap[k], G, fabs(gap[k] - G) / se[k], se[k]);
        CHECK(gap[k] > -3 * se[k], "T = %d: the bound is below the exact NLL by %.5f (se %.5f)",
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
    /* Which fixed variance gives the lower bound. beta_tilde is the reverse variance when x0 is
     * known (a point mass); beta is the optimal isotropic one for x0 ~ N(0, I) (Ho et al. 2020,
     * section 3.2). These data have variances 1.3 and 0.6, so the denoiser's remaining
     * uncertainty about x0 is large and beta_tilde, too small at small t, pays for it in the
     * mean term c^2 E(eps_hat - eps)^2 / s2: beta is the better one here, by about 2 nats. The
     * difference is measured by pairs (same examples, same draws: per-example bounds
     * subtracted), asserted > 4 se, and compared with the closed-form difference (4 se). */
    double *pb = malloc(N * sizeof *pb), *pt = malloc(N * sizeof *pt);
    dm_nll_report rb = bound(&s, &g, x0, N, 1, DM_VAR_BETA, NULL, NULL, pb);
    dm_nll_report rt = bound(&s, &g, x0, N, 1, DM_VAR_BETA_TILDE, NULL, NULL, pt);
    double m = 0, m2 = 0;
    for (int b = 0; b < N; b++) m += pt[b] - pb[b], m2 += (pt[b] - pb[b]) * (pt[b] - pb[b]);
    m /= N;
    const double se = sqrt((m2 / N - m * m) / (N - 1));
    const double want = expected_bound(&s, &g, DM_VAR_BETA_TILDE) -
                        expected_bound(&s, &g, DM_VAR_BETA);
    printf("T = 200 linear: bound with beta %.4f, with beta_tilde %.4f: beta_tilde - beta = "
           "%.4f +- %.4f (closed form %.4f)\n", rb.total, rt.total, m, se, want);
    CHECK(m > 4 * se, "beta_tilde - beta = %.4f +- %.4f: beta is not the better variance", m, se);
    CHECK(fabs(m - want) <= 4 * se, "beta_tilde - beta = %.4f +- %.4f, closed form %.4f", m, se,
          want);
    free(pb), free(pt);
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
