/* The forward process q(x_t | x_0): exact per-row values, sample moments against the closed form,
 * thread independence; L_simple against a hand computation and its gradient against finite
 * differences. */
#include "diffusion/diffusion_impl.h"
#include "test_util.h"

#include <omp.h>
#include <string.h>

static float *alloc_floats(size_t n) {
    float *p = dm_alloc(n * sizeof(float));
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    return p;
}

/* L_simple through the trainer's objective: epsilon prediction, simple loss, n examples of one
 * value each (mean over n of (eps_hat - eps)^2); grad NULL discards the gradient. */
static double loss_simple(const float *eh, const float *e, float *grad, int64_t n) {
    dm_schedule_config sc;
    dm_schedule_config_default(&sc);
    sc.T = 1;
    dm_schedule s;
    dm_error err = {0};
    if (dm_schedule_init(&s, &sc, &err)) exit(1);
    double w = 0;
    dm_loss_weights(&s, DM_PRED_EPS, DM_LOSS_SIMPLE, DM_VAR_BETA, &w, &err);
    float *xt = alloc_floats(n), *g = grad ? grad : alloc_floats(n);
    int32_t *idx = calloc(n, sizeof *idx);
    double *ex = malloc(n * sizeof *ex);
    memset(xt, 0, n * sizeof *xt);
    const dm_objective o = {.s = &s, .pred = DM_PRED_EPS, .loss = DM_LOSS_SIMPLE,
                            .var = DM_VAR_BETA, .w = &w};
    const double L = dm_objective_batch(&o, eh, xt, e, idx, NULL, g, ex, n, 1);
    dm_free(xt);
    if (!grad) dm_free(g);
    free(idx);
    free(ex);
    dm_schedule_free(&s);
    return L;
}

int main(void) {
    dm_schedule_config cfg;
    dm_schedule_config_default(&cfg);
    dm_schedule s;
    dm_error err = {0};
    if (dm_schedule_init(&s, &cfg, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }

    /* ---- each row uses its own index: compare with the formula in double */
    {
        enum { B = 1000, D = 3 };
        float *x0 = alloc_floats(B * D), *eps = alloc_floats(B * D), *xt = alloc_floats(B * D);
        int32_t idx[B];
        dm_rng rng;
        dm_rng_init(&rng, 11, 0);
        dm_rng_normal(&rng, x0, B * D);
        dm_rng_normal(&rng, eps, B * D);
        dm_rng_int(&rng, idx, B, 0, s.T);
        dm_q_sample(&s, xt, x0, eps, idx, B, D);
        double *want = malloc(B * D * sizeof *want);
        for (int b = 0; b < B; b++)
            for (int d = 0; d < D; d++) {
                double ab = s.alpha_bar[idx[b]];
                want[b * D + d] = sqrt(ab) * x0[b * D + d] + sqrt(1 - ab) * eps[b * D + d];
            }
        /* two float products and a sum of O(1) normals with coefficients rounded to float:
         * a few float ulps of values up to ~5 */
        tu_check_array("q_sample vs formula (per-row index)", xt, want, B * D, 4e-6, 4e-7);
        free(want);
        dm_free(x0);
        dm_free(eps);
        dm_free(xt);
    }

    /* ---- moments at fixed x0 over n draws of eps */
    {
        const int64_t n = 200000;
        enum { D = 2 };
        const float x0v[D] = {1.5f, -0.8f};
        float *x0 = alloc_floats(n * D), *eps = alloc_floats(n * D), *xt = alloc_floats(n * D),
              *xt1 = alloc_floats(n * D);
        int32_t *idx = malloc(n * sizeof *idx);
        for (int64_t b = 0; b < n; b++)
            for (int d = 0; d < D; d++) x0[b * D + d] = x0v[d];
        dm_rng rng;
        dm_rng_init(&rng, 2024, 0);
        const int32_t steps[] = {0, 10, 100, 499, 999};
        for (int k = 0; k < 5; k++) {
            const int32_t i = steps[k];
            for (int64_t b = 0; b < n; b++) idx[b] = i;
            dm_rng_normal(&rng, eps, n * D);
            dm_q_sample(&s, xt, x0, eps, idx, n, D);
            /* n * D is above DM_PARALLEL_MIN: one thread must give the same bits */
            omp_set_num_threads(1);
            dm_q_sample(&s, xt1, x0, eps, idx, n, D);
            omp_set_num_threads(2);
            CHECK(memcmp(xt, xt1, n * D * sizeof(float)) == 0, "i=%d: 1 vs 2 threads differ",
                  (int)i);
            const double ab = s.alpha_bar[i];
            for (int d = 0; d < D; d++) {
                double m = 0, m2 = 0;
                for (int64_t b = 0; b < n; b++) m += xt[b * D + d];
                m /= n;
                for (int64_t b = 0; b < n; b++) m2 += (xt[b * D + d] - m) * (xt[b * D + d] - m);
                const double var = m2 / (n - 1), want_m = sqrt(ab) * x0v[d], want_v = 1 - ab;
                char what[96];
                /* statistical: 5 standard errors (sd / sqrt(n) for the mean, var sqrt(2/(n-1))
                 * for the variance of a normal sample); a false alarm has odds ~1e-6 */
                snprintf(what, sizeof what, "i=%d dim %d: sample mean", (int)i, d);
                CHECK_CLOSE(m, want_m, 5 * sqrt(want_v / n), 0, what);
                snprintf(what, sizeof what, "i=%d dim %d: sample variance", (int)i, d);
                CHECK_CLOSE(var, want_v, 5 * want_v * sqrt(2.0 / (n - 1)), 0, what);
            }
        }
        free(idx);
        dm_free(x0);
        dm_free(eps);
        dm_free(xt);
        dm_free(xt1);
    }

    /* ---- L_simple by hand: differences 0.5, 0, 2, -1 */
    {
        const float eh[4] = {1, 2, 3, 4}, e[4] = {0.5f, 2, 1, 5};
        float g[4];
        double L = loss_simple(eh, e, g, 4);
        CHECK(L == (0.25 + 0 + 4 + 1) / 4, "loss %.17g, want 1.3125", L); /* exact in binary */
        const double gw[4] = {0.25, 0, 1, -0.5};
        tu_check_array("loss grad by hand", g, gw, 4, 0, 0); /* 2 d / 4: exact in binary */
        CHECK(loss_simple(eh, e, NULL, 4) == L, "grad = NULL gives the same loss");
    }

    /* ---- L_simple on large inputs: a plain double sum, thread independence, finite differences */
    {
        const int64_t ns[] = {1000, 100003, 3000001};
        for (int k = 0; k < 3; k++) {
            const int64_t n = ns[k];
            float *eh = alloc_floats(n), *e = alloc_floats(n), *g = alloc_floats(n),
                  *g1 = alloc_floats(n);
            dm_rng rng;
            dm_rng_init(&rng, 5, (uint64_t)k);
            dm_rng_normal(&rng, eh, n);
            dm_rng_normal(&rng, e, n);
            double plain = 0;
            for (int64_t j = 0; j < n; j++)
                plain += ((double)eh[j] - e[j]) * ((double)eh[j] - e[j]);
            plain /= n;
            double L = loss_simple(eh, e, g, n);
            /* the same terms summed in a different order: n * 1e-16 relative at most */
            CHECK_CLOSE(L, plain, 0, 1e-16 * n + 1e-15, "loss vs plain double sum");
            omp_set_num_threads(1);
            double L1 = loss_simple(eh, e, g1, n);
            omp_set_num_threads(2);
            CHECK(L1 == L && memcmp(g, g1, n * sizeof(float)) == 0,
                  "n=%lld: 1 and 2 threads differ: %.17g vs %.17g", (long long)n, L1, L);
            /* central differences of a quadratic are exact but for rounding; the step is a
             * power of two so eps_hat +- h is exact in float for |eps_hat| < 4 */
            const float h = 1.0f / 256;
            const int64_t probe[] = {0, n / 3, n - 1};
            for (int q = 0; q < 3; q++) {
                const int64_t j = probe[q];
                if (fabsf(eh[j]) >= 4) continue;
                const float keep = eh[j];
                eh[j] = keep + h;
                double Lp = loss_simple(eh, e, NULL, n);
                eh[j] = keep - h;
                double Lm = loss_simple(eh, e, NULL, n);
                eh[j] = keep;
                double fd = (Lp - Lm) / (2.0 * h);
                char what[96];
                snprintf(what, sizeof what, "n=%lld grad[%lld] vs central difference",
                         (long long)n, (long long)j);
                /* rounding of Lp, Lm (~2 * 2e-16 each) divided by 2h, plus the float grad
                 * (6e-8 relative) */
                CHECK_CLOSE(g[j], fd, 1e-15 * 2 / (2.0 * h) * 4, 1e-6, what);
            }
            dm_free(eh);
            dm_free(e);
            dm_free(g);
            dm_free(g1);
        }
    }
    dm_schedule_free(&s);
    return tu_finish("test_forward_stats");
}
