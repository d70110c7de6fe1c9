/* The variational bound against exact answers:
 *  - the discretised decoder is a probability over the 256 levels (sums to 1), each bin's
 *    probability equals numerical integration of the Gaussian, and the bound's decoder term
 *    equals Ho et al.'s decoder written out;
 *  - with the optimal denoiser for Gaussian data, the bound equals its closed-form expectation,
 *    is never below the data's exact negative log-likelihood and approaches it as T grows;
 *  - the unbiased estimate agrees with the exact sum within its standard error;
 *  - a worse denoiser gets a worse bound; a learned-variance output of +1 / -1 gives the same
 *    bound as beta / beta_tilde; for these data beta is the better fixed variance (paired);
 *  - dm_pipeline_nll: the bound of s x is the bound of x plus D log s (the standardiser's
 *    log-determinant), and image models take the discretised decoder on the data as given. */
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

/* Each bin's probability against numerical integration of the Gaussian density over the bin
 * (composite Simpson on the bin clipped to mu +- 40 sigma, where the density is below e^-800
 * and underflows, with steps fine enough for the tails, below): bins k / 127.5 - 1 +- 1/255,
 * the outer two open to -inf and +inf. The library's erfc differences are good to ~1e-13
 * relative and Simpson's to ~1e-11, so 1e-9 relative (plus 1e-300, the library's floor for an
 * empty bin) leaves room, and a bin edge off by a fraction of a level (1/256 for 1/255) fails by
 * 1e-3 or more. */
static double gauss_pdf(double x, double mu, double sigma) {
    const double z = (x - mu) / sigma;
    return exp(-0.5 * z * z) / (sigma * sqrt(2 * M_PI));
}

static double simpson_bin(double lo, double hi, double mu, double sigma) {
    lo = fmax(lo, mu - 40 * sigma), hi = fmin(hi, mu + 40 * sigma);
    if (hi <= lo) return 0;
    /* the log density changes at rate up to lam = max(|z|, 1) / sigma over the bin: h lam <=
     * 1/200 keeps Simpson's relative error ~ (h lam)^4 / 180 below 1e-11 even in the tails */
    const double zmax = fmax(fabs(lo - mu), fabs(hi - mu)) / sigma;
    const double lam = fmax(zmax, 1.0) / sigma;
    const int64_t M = 2 * (int64_t)fmax(1000, ceil(100 * lam * (hi - lo)));
    const double h = (hi - lo) / M;
    double sum = gauss_pdf(lo, mu, sigma) + gauss_pdf(hi, mu, sigma);
    for (int64_t j = 1; j < M; j++) sum += (j % 2 ? 4 : 2) * gauss_pdf(lo + j * h, mu, sigma);
    return sum * h / 3;
}

static void test_decoder_bins(void) {
    const double mus[] = {-1.3, -0.99, -0.5, 0.0, 0.2, 0.99, 1.7};
    const double sigmas[] = {1e-4, 3e-3, 0.05, 0.7, 5.0};
    double worst = 0;
    int bad = 0;
    for (int a = 0; a < 7; a++)
        for (int b = 0; b < 5; b++)
            for (int k = 0; k < 256; k++) {
                const double x = k / 127.5 - 1.0;
                const double lo = k == 0 ? -INFINITY : x - 1.0 / 255.0;
                const double hi = k == 255 ? INFINITY : x + 1.0 / 255.0;
                const double want = simpson_bin(lo, hi, mus[a], sigmas[b]);
                const double got = exp(dm_log_discretized_gaussian(x, mus[a], sigmas[b]));
                const double d = fabs(got - want);
                if (want > 1e-290) worst = fmax(worst, d / want);
                if (!(d <= 1e-9 * want + 1.01e-300) && bad++ < 5)
                    fprintf(stderr, "  bin %d (x = %.6f) of N(%g, %g^2): P = %.12g, Simpson "
                            "%.12g\n", k, x, mus[a], sigmas[b], got, want);
            }
    CHECK(bad == 0, "%d bin probabilities differ from numerical integration (first above)", bad);
    printf("decoder: bin probabilities vs Simpson, worst relative difference %.3g\n", worst);
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

/* ---- the discretised decoder inside the bound ------------------------------------------- */

/* The oracle, remembering x_t and eps_hat of its call at t = 1 (index 0). */
typedef struct {
    gauss_oracle *g;
    float *xt1, *eh1; /* (n, 2) */
    int64_t n_done;
} recorder;

static dm_status recording_denoise(void *ctx, float *eps_hat, float *var_out, const float *x,
                                   const float *t, int64_t B, dm_error *err) {
    recorder *r = ctx;
    dm_status st = gauss_oracle_denoise(r->g, eps_hat, var_out, x, t, B, err);
    if (!st && t[0] == 0) {
        memcpy(r->xt1 + 2 * r->n_done, x, (size_t)(2 * B) * sizeof(float));
        memcpy(r->eh1 + 2 * r->n_done, eps_hat, (size_t)(2 * B) * sizeof(float));
        r->n_done += B;
    }
    return st;
}

/* Data on the 256 levels, the decoder term of the bound (discrete = 1) against Ho et al.'s
 * decoder written out: the mean of p(x0 | x1) is mu = (x1 - beta_1 / sqrt(1 - ab_1) eps_hat) /
 * sqrt(alpha_1) (their eq. 11, not likelihood.c's gap form), the variance beta_1 (or
 * beta_tilde of t = 2), and each level's probability Phi((x + 1/255 - mu) / s) - Phi((x - 1/255
 * - mu) / s), the outer levels open to -inf / +inf. The means over examples agree within what
 * x_1's float rounding explains (below). */
static void test_decoder_in_bound(void) {
    enum { N = 4000 };
    dm_schedule s = gauss_oracle_schedule(DM_SCHEDULE_LINEAR, 20);
    gauss_oracle g = gauss_oracle_make(&s);
    float *x0 = malloc(2 * N * sizeof *x0);
    gauss_oracle_data(&g, x0, N, 5);
    for (int j = 0; j < 2 * N; j++) /* to the nearest of the 256 levels, clipped to [-1, 1] */
        x0[j] = (float)(fmin(255, fmax(0, lrint((x0[j] * 0.5 + 1) * 127.5))) / 127.5 - 1.0);
    recorder rec = {.g = &g, .xt1 = malloc(2 * N * sizeof(float)),
                    .eh1 = malloc(2 * N * sizeof(float))};
    for (int v = 0; v < 2; v++) {
        const dm_reverse_var var = v ? DM_VAR_BETA_TILDE : DM_VAR_BETA;
        dm_nll_options o;
        dm_nll_options_default(&o);
        o.exact = 1, o.discrete = 1, o.var = var, o.batch = N, o.seed = 11;
        dm_nll_report r;
        dm_error err = {0};
        rec.n_done = 0;
        CHECK(dm_nll_bound(&s, recording_denoise, &rec, x0, N, 2, &o, &r, &err) == DM_OK, "%s",
              err.msg);
        CHECK(rec.n_done == N, "the t = 1 call saw %lld examples", (long long)rec.n_done);
        const double beta1 = 1 - s.alpha_bar[0], ab2 = s.alpha_bar[1];
        const double s2 = v ? (1 - s.alpha_bar[0]) / (1 - ab2) * (1 - ab2 / s.alpha_bar[0])
                            : beta1;
        const double sd = sqrt(s2);
        /* x_1 reaches the denoiser as a float: its rounding (2^-24 |x_1|) moves mu by that over
         * sqrt(alpha_1), which likelihood.c's form (from float eps) does not see. To first
         * order log P moves by |d log P / d mu| times that: the sum of those bounds the
         * difference of the means (plus 1e-12 for the sums' double rounding). */
        double want = 0, slack = 0;
        for (int64_t j = 0; j < 2 * N; j++) {
            const double mu = (rec.xt1[j] - beta1 / sqrt(1 - s.alpha_bar[0]) * rec.eh1[j]) /
                              sqrt(1 - beta1);
            const double x = x0[j];
            const double zh = (x + 1 / 255.0 - mu) / sd, zl = (x - 1 / 255.0 - mu) / sd;
            const double hi = x > 0.999 ? 1 : 0.5 * erfc(-zh / M_SQRT2);
            const double lo = x < -0.999 ? 0 : 0.5 * erfc(-zl / M_SQRT2);
            const double P = fmax(hi - lo, 1e-300);
            const double ph = x > 0.999 ? 0 : exp(-0.5 * zh * zh) / sqrt(2 * M_PI);
            const double pl = x < -0.999 ? 0 : exp(-0.5 * zl * zl) / sqrt(2 * M_PI);
            want -= log(P);
            slack += fabs(pl - ph) / (sd * P) * ldexp(fabs(rec.xt1[j]), -24) / sqrt(1 - beta1);
        }
        want /= N, slack /= N;
        printf("decoder in the bound (%s): %.9f nats, Ho et al.'s written out %.9f (float "
               "rounding of x_1 allows %.2g)\n", v ? "beta_tilde" : "beta", r.decoder, want,
               slack);
        CHECK_CLOSE(r.decoder, want, slack, 1e-12, "the discretised decoder term of the bound");
        CHECK(r.decoder > 0, "a probability's -log is positive: %g", r.decoder);
    }
    free(rec.xt1), free(rec.eh1), free(x0);
    dm_schedule_free(&s);
}

/* ---- dm_pipeline_nll: the standardiser's log-determinant and the image path --------------- */

static dm_pipeline *trained(const char *name, const dm_dataset *data, int unet) {
    dm_error err = {0};
    dm_train_config cfg;
    dm_train_config_default(&cfg);
    if (unet) {
        cfg.arch = DM_ARCH_UNET;
        CHECK(dm_unet_preset(&cfg.unet, "tiny", &err) == DM_OK, "%s", err.msg);
    } else {
        cfg.mlp.hidden = 32;
    }
    cfg.schedule.T = 30;
    cfg.batch = 16;
    cfg.steps = unet ? 2 : 30;
    cfg.seed = 4;
    dm_trainer *tr = NULL;
    dm_pipeline *p = NULL;
    CHECK(dm_trainer_create(&tr, &cfg, data, &err) == DM_OK, "%s", err.msg);
    if (!tr) return NULL;
    while (dm_trainer_step_count(tr) < cfg.steps)
        if (dm_trainer_step(tr, NULL, &err)) {
            CHECK(0, "step: %s", err.msg);
            break;
        }
    const char *dir = tu_tmp_path(name);
    CHECK(dm_trainer_save(tr, dir, &err) == DM_OK, "%s", err.msg);
    dm_trainer_free(tr);
    CHECK(dm_pipeline_load(&p, dir, &err) == DM_OK, "%s", err.msg);
    return p;
}

/* Points: a model of s x is the same network with its standardiser scaled by s (what training
 * on s x would fit), so its density is p(x / s) / s^D and the bound of s x is the bound of x
 * plus D log s. For s = 4, a power of 2, the standardised inputs (s x - s m) / (s sd) are
 * bit-identical to (x - m) / sd, the same seed draws the same noise, and the equality holds to
 * double rounding (1e-12); for s = 0.3 the scaled data are rounded to float (2^-24 relative), and
 * the bound moves by that times its sensitivity to the inputs (measured 3e-9 nats): 1e-6 nats
 * of room against D log s = -2.4 nats. A log-determinant of the wrong sign, a missing one, or
 * log s^2 instead of log s fails by > 1 nat. */
static void test_pipeline_points(void) {
    dm_error err = {0};
    dm_dataset data, scaled;
    CHECK(dm_toy2d_generate(&data, "8gaussians", 2000, 3, &err) == DM_OK, "%s", err.msg);
    dm_pipeline *p = trained("points", &data, 0);
    if (!p) {
        dm_dataset_free(&data);
        return;
    }
    dm_nll_options o;
    dm_nll_options_default(&o);
    o.exact = 1, o.seed = 9, o.batch = 500;
    dm_nll_report r1, r2;
    CHECK(dm_pipeline_nll(p, &data, &o, &r1, &err) == DM_OK, "%s", err.msg);
    /* the test rescales the loaded pipeline's own standardiser in place */
    dm_normalizer *nz = (dm_normalizer *)dm_pipeline_normalizer(p);
    const dm_normalizer keep = *nz;
    CHECK(nz->dim == 2, "the points model has no standardiser (dim %lld)", (long long)nz->dim);
    CHECK_CLOSE(r1.log_det, log(nz->std[0]) + log(nz->std[1]), 0, 1e-12,
                "log-determinant = sum of log std");
    const double scales[] = {4.0, 0.3}, tols[] = {1e-12, 1e-6};
    for (int k = 0; k < 2; k++) {
        const double sc = scales[k];
        CHECK(dm_dataset_init(&scaled, data.n, 2, &err) == DM_OK, "%s", err.msg);
        for (int64_t j = 0; j < 2 * data.n; j++) scaled.x[j] = (float)(sc * data.x[j]);
        for (int d = 0; d < 2; d++) nz->mean[d] = sc * keep.mean[d], nz->std[d] = sc * keep.std[d];
        CHECK(dm_pipeline_nll(p, &scaled, &o, &r2, &err) == DM_OK, "%s", err.msg);
        *nz = keep;
        const double want = r1.total + 2 * log(sc);
        printf("pipeline nll: points %.9f nats, x %.1f: %.9f, want %.9f (diff %.2g)\n", r1.total,
               sc, r2.total, want, r2.total - want);
        char what[96];
        snprintf(what, sizeof what, "bound of %g x = bound of x + D log %g", sc, sc);
        CHECK_CLOSE(r2.total, want, tols[k], 0, what);
        CHECK_CLOSE(r2.log_det - r1.log_det, 2 * log(sc), 1e-12, 0, "log-determinant of s");
        CHECK_CLOSE(r2.bpd, r2.total / (2 * log(2.0)), 1e-12, 1e-12, "bits per dimension");
        dm_dataset_free(&scaled);
    }
    dm_pipeline_free(p);
    dm_dataset_free(&data);
}

/* Images: the bound of an image model uses the discretised decoder whatever o->discrete says,
 * the data as they are (no standardiser, log_det 0), and refuses values outside [-1, 1]. The
 * reference is dm_nll_bound with discrete = 1 on the same data and seed (the same draws), per
 * example to 1e-12; its decoder term is a -log probability, > 0, where the continuous density's
 * would be very different. */
static void test_pipeline_images(void) {
    enum { N = 64, D = 64 };
    dm_error err = {0};
    dm_dataset img;
    CHECK(dm_dataset_init(&img, N, D, &err) == DM_OK, "%s", err.msg);
    dm_rng rng;
    dm_rng_init(&rng, 21, 0);
    dm_rng_normal(&rng, img.x, N * D);
    for (int j = 0; j < N * D; j++) { /* a bright square on 256 levels */
        const int r = (j % D) / 8, c = j % 8;
        const double v = (r >= 2 && r < 6 && c >= 2 && c < 6 ? 0.7 : -0.7) + 0.2 * img.x[j];
        img.x[j] = (float)(fmin(255, fmax(0, lrint((v + 1) * 127.5))) / 127.5 - 1.0);
    }
    dm_pipeline *p = trained("images", &img, 1);
    if (!p) {
        dm_dataset_free(&img);
        return;
    }
    dm_nll_options o;
    dm_nll_options_default(&o);
    o.exact = 1, o.seed = 13, o.batch = N, o.discrete = 0;
    double got[N], want[N];
    o.per_example = got;
    dm_nll_report r, ref, cont;
    CHECK(dm_pipeline_nll(p, &img, &o, &r, &err) == DM_OK, "%s", err.msg);
    o.per_example = want;
    o.discrete = 1;
    CHECK(dm_nll_bound(dm_pipeline_schedule(p), dm_pipeline_denoise, p, img.x, N, D, &o, &ref,
                       &err) == DM_OK,
          "%s", err.msg);
    o.discrete = 0;
    o.per_example = NULL;
    CHECK(dm_nll_bound(dm_pipeline_schedule(p), dm_pipeline_denoise, p, img.x, N, D, &o, &cont,
                       &err) == DM_OK,
          "%s", err.msg);
    double worst = 0;
    for (int b = 0; b < N; b++) worst = fmax(worst, fabs(got[b] - want[b]) / fabs(want[b]));
    printf("pipeline nll: images %.6f nats (decoder %.4f; continuous decoder %.4f), log_det %g, "
           "per-example max rel diff %.2g\n", r.total, r.decoder, cont.decoder, r.log_det, worst);
    CHECK(worst <= 1e-12, "image bound per example differs from the discrete bound by %.3g",
          worst);
    CHECK(r.log_det == 0, "images: log_det %g, want 0", r.log_det);
    CHECK(r.decoder > 0 && fabs(r.decoder - cont.decoder) > 1, "decoder %.4f vs continuous %.4f",
          r.decoder, cont.decoder);
    img.x[5] = 1.5f;
    CHECK(dm_pipeline_nll(p, &img, &o, &r, &err) == DM_ERR_ARG && strstr(err.msg, "[-1, 1]"),
          "an image value of 1.5: %s", err.msg);
    dm_pipeline_free(p);
    dm_dataset_free(&img);
}

int main(void) {
    omp_set_num_threads(2);
    test_decoder_normalised();
    test_decoder_bins();
    test_decoder_in_bound();
    test_gaussian_bound();
    test_variants();
    if (tu_tmpdir_make("test_likelihood")) return 1;
    test_pipeline_points();
    test_pipeline_images();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tu_tmpdir());
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tu_tmpdir());
    return tu_finish("test_likelihood");
}
