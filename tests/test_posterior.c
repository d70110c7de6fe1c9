/* The posterior q(x_{t-1} | x_t, x_0) against brute-force Bayes on a grid in 1-D, and the reverse
 * mean from the true eps against the posterior mean. */
#include "diffusion/diffusion_impl.h"
#include "test_util.h"

#include <float.h>
#include <string.h>

/* Mean and variance of p(y) ~ q(y | x0) q(xt | y), y = x_{t-1}, by numerical integration:
 * q(y | x0) = N(sqrt(ab_prev) x0, 1 - ab_prev), q(xt | y) = N(sqrt(alpha) y, beta). Only the
 * forward-process definitions are used, not the posterior formula. */
static void brute_force(const dm_schedule *s, int32_t i, double x0, double xt, double *mean,
                        double *var) {
    const double ab_prev = s->alpha_bar_prev[i], alpha = s->alpha[i], beta = s->beta[i];
    const double m1 = sqrt(ab_prev) * x0, v1 = 1.0 - ab_prev; /* prior on y */
    const double m2 = xt / sqrt(alpha), v2 = beta / alpha;     /* likelihood, as a density in y */
    /* The product lies between the two factors; cover both with 12 of the wider sd either side.
     * Spacing: a fortieth of the narrower sd, which also bounds the product's sd from above. */
    const double sd_wide = sqrt(fmax(v1, v2)), sd_narrow = sqrt(fmin(v1, v2));
    const double lo = fmin(m1, m2) - 12 * sd_wide, hi = fmax(m1, m2) + 12 * sd_wide;
    const double h = sd_narrow / 40;
    const int64_t n = (int64_t)ceil((hi - lo) / h) + 1;
    /* log densities, shifted by their maximum so nothing underflows where the mass is */
    double lmax = -INFINITY;
    for (int64_t k = 0; k < n; k++) {
        double y = lo + k * h;
        double l = -0.5 * (y - m1) * (y - m1) / v1 - 0.5 * (xt - sqrt(alpha) * y) *
                                                         (xt - sqrt(alpha) * y) / beta;
        if (l > lmax) lmax = l;
    }
    double z = 0, s1 = 0;
    for (int64_t k = 0; k < n; k++) {
        double y = lo + k * h;
        double w = exp(-0.5 * (y - m1) * (y - m1) / v1 -
                       0.5 * (xt - sqrt(alpha) * y) * (xt - sqrt(alpha) * y) / beta - lmax);
        z += w;
        s1 += w * y;
    }
    *mean = s1 / z;
    double s2 = 0;
    for (int64_t k = 0; k < n; k++) {
        double y = lo + k * h;
        double w = exp(-0.5 * (y - m1) * (y - m1) / v1 -
                       0.5 * (xt - sqrt(alpha) * y) * (xt - sqrt(alpha) * y) / beta - lmax);
        s2 += w * (y - *mean) * (y - *mean);
    }
    *var = s2 / z;
}

static void check_schedule(dm_schedule_kind kind, int32_t T) {
    dm_schedule_config cfg;
    dm_schedule_config_default(&cfg);
    cfg.kind = kind;
    cfg.T = T;
    dm_schedule s;
    dm_error err = {0};
    CHECK(dm_schedule_init(&s, &cfg, &err) == DM_OK, "%s", err.msg);
    if (err.status) return;
    const char *name = dm_schedule_kind_name(kind);
    const int32_t idx[] = {1, 2, 5, 50, T / 2, T - 50, T - 2, T - 1};
    const double x0s[] = {0.7, -1.9}, xts[] = {-0.4, 1.3};
    char what[160];
    for (int k = 0; k < (int)(sizeof idx / sizeof idx[0]); k++) {
        const int32_t i = idx[k];
        if (i < 1 || i >= T) continue; /* the grid needs a proper prior: t >= 2 */
        for (int c = 0; c < 2; c++) {
            const double x0 = x0s[c], xt = xts[c];
            double bm, bv;
            brute_force(&s, i, x0, xt, &bm, &bv);
            dm_posterior p = dm_q_posterior(&s, i);
            const double mean = p.c_x0 * x0 + p.c_xt * xt;
            /* Riemann sums of a Gaussian with spacing sd/40 or finer are exact to far below
             * double rounding (the aliasing error is ~exp(-2 pi^2 40^2)), and +-12 sd misses
             * exp(-72) of the mass; what remains is rounding in the ~1e4-term sums and in y,
             * ~1e-12 relative to the scale of the grid. Tolerances: 1e-8 of the posterior sd
             * for the mean, 1e-8 relative for the variance. */
            snprintf(what, sizeof what, "%s T=%d i=%d x0=%g xt=%g: posterior mean", name, (int)T,
                     (int)i, x0, xt);
            CHECK_CLOSE(mean, bm, 1e-8 * sqrt(bv), 0, what);
            snprintf(what, sizeof what, "%s T=%d i=%d: posterior variance", name, (int)T, (int)i);
            CHECK_CLOSE(p.var, bv, 0, 1e-8, what);
        }
    }
    /* t = 1: the posterior is the point x0 */
    dm_posterior p0 = dm_q_posterior(&s, 0);
    /* beta / (1 - (1 - beta)): the rounding of 1 - beta, relative to beta */
    CHECK_CLOSE(p0.c_x0, 1.0, 4 * DBL_EPSILON / s.beta[0], 0, "i = 0: c_x0");
    CHECK(p0.c_xt == 0 && p0.var == 0, "%s i = 0: c_xt %g var %g", name, p0.c_xt, p0.var);

    /* reverse variances */
    CHECK(dm_reverse_variance(&s, T / 2, DM_VAR_BETA) == s.beta[T / 2] &&
              dm_reverse_variance(&s, T / 2, DM_VAR_BETA_TILDE) == s.beta_tilde[T / 2],
          "%s reverse variance", name);

    /* The reverse mean from the true eps is the posterior mean at x0 = (xt - sqrt(1-ab) eps) /
     * sqrt(ab). Rows: one per index, dim 3. */
    enum { D = 3 };
    float xt[D], eps[D], mean[D], mean_inplace[D];
    double want[D];
    const double x0v[D] = {0.3, -1.2, 2.0}, epsv[D] = {1.1, 0.4, -0.8};
    double maxdiff = 0;
    int inplace_bad = 0;
    for (int32_t i = 0; i < T; i++) {
        const double ab = s.alpha_bar[i];
        dm_posterior p = dm_q_posterior(&s, i);
        for (int d = 0; d < D; d++) {
            eps[d] = (float)epsv[d];
            xt[d] = (float)(sqrt(ab) * x0v[d] + sqrt(1 - ab) * epsv[d]);
            /* x0 exactly consistent with the rounded x_t */
            double x0 = ((double)xt[d] - sqrt(1 - ab) * eps[d]) / sqrt(ab);
            want[d] = p.c_x0 * x0 + p.c_xt * xt[d];
        }
        dm_p_mean_from_eps(&s, i, mean, xt, eps, D);
        memcpy(mean_inplace, xt, sizeof xt);
        dm_p_mean_from_eps(&s, i, mean_inplace, mean_inplace, eps, D);
        for (int d = 0; d < D; d++) {
            /* scale: the terms added, which the float arithmetic rounds */
            double scale = fabs(xt[d]) / sqrt(s.alpha[i]) + 1;
            maxdiff = fmax(maxdiff, fabs(mean[d] - want[d]) / scale);
            inplace_bad += mean[d] != mean_inplace[d];
        }
    }
    /* a few float roundings (coefficients, product, difference) of O(1) terms: ~1e-7 each;
     * a wrong coefficient shows up at the size of beta (>= 1e-4) or more */
    CHECK(maxdiff < 1e-6, "%s T=%d: p_mean_from_eps vs posterior mean, max scaled diff %.3g",
          name, (int)T, maxdiff);
    CHECK(inplace_bad == 0, "%s: mean == xt (in place) differs at %d values", name, inplace_bad);
    dm_schedule_free(&s);
}

int main(void) {
    check_schedule(DM_SCHEDULE_LINEAR, 1000);
    check_schedule(DM_SCHEDULE_COSINE, 1000);
    check_schedule(DM_SCHEDULE_LOGSNR, 1000);
    check_schedule(DM_SCHEDULE_LINEAR, 10);
    check_schedule(DM_SCHEDULE_COSINE, 10);
    return tu_finish("test_posterior");
}
