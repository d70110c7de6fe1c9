/* Adam / AdamW against a double-precision transcription of torch.optim.Adam, warm-up, gradient
 * clipping and EMA. */
#include "nn/nn.h"
#include "test_util.h"

#include <omp.h>
#include <string.h>

/* One step of torch.optim.Adam (AdamW when wd > 0) in double, as its single-tensor path does it:
 * p *= 1 - lr wd; m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
 * p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps). */
static void ref_adam_step(double *p, double *m, double *v, const float *g, size_t n, int64_t t,
                          double lr, const dm_optim_config *c) {
    const double bc1 = 1 - pow(c->beta1, (double)t), bc2 = 1 - pow(c->beta2, (double)t);
    for (size_t i = 0; i < n; i++) {
        p[i] *= 1 - lr * c->weight_decay;
        m[i] = c->beta1 * m[i] + (1 - c->beta1) * g[i];
        v[i] = c->beta2 * v[i] + (1 - c->beta2) * (double)g[i] * g[i];
        p[i] -= lr / bc1 * m[i] / (sqrt(v[i]) / sqrt(bc2) + c->eps);
    }
}

/* Runs `steps` steps of dm_adam_step and of the reference on n parameters and compares. */
static void check_adam(const char *name, const dm_optim_config *cfg, size_t n, int steps) {
    dm_adam opt;
    dm_error err = {0};
    CHECK(dm_adam_init(&opt, cfg, n, &err) == DM_OK, "adam init: %s", err.msg);
    float *p = malloc(n * sizeof *p), *g = malloc(n * sizeof *g);
    double *pr = malloc(n * sizeof *pr), *mr = calloc(n, sizeof *mr), *vr = calloc(n, sizeof *vr);
    dm_rng rng;
    dm_rng_init(&rng, 5, 0);
    dm_rng_normal(&rng, p, n);
    for (size_t i = 0; i < n; i++) pr[i] = p[i];
    for (int s = 0; s < steps; s++) {
        dm_rng_normal(&rng, g, n);
        g[0] = 0.0f;  /* no gradient: only decay moves it */
        g[1] = 1e-8f; /* sqrt(v_hat) of the order of eps: eps placement matters */
        g[2] = 1e3f;  /* large: the update saturates at lr */
        const double lr = dm_adam_lr(&opt);
        dm_adam_step(&opt, p, g);
        ref_adam_step(pr, mr, vr, g, n, s + 1, lr, cfg);
    }
    CHECK(opt.step == steps, "%s: step count %lld, want %d", name, (long long)opt.step, steps);
    char what[96];
    /* float state: every step rounds p (order 1) and the update (order lr) once or twice, so
     * three steps stay within a few 1e-7. m sums terms of size up to 0.5 that can cancel, so its
     * rounding is absolute (a few 1e-8); v sums positive terms, so relative 1e-6 */
    snprintf(what, sizeof what, "%s: params after %d steps", name, steps);
    tu_check_array(what, p, pr, n, 1e-6, 1e-6);
    snprintf(what, sizeof what, "%s: first moment", name);
    tu_check_array(what, opt.m, mr, n, 2e-7, 1e-6);
    snprintf(what, sizeof what, "%s: second moment", name);
    tu_check_array(what, opt.v, vr, n, 1e-20, 1e-6);
    dm_adam_free(&opt);
    free(p); free(g); free(pr); free(mr); free(vr);
}

static void test_adam(void) {
    dm_optim_config c;
    dm_optim_config_default(&c);
    c.lr = 1e-2;
    c.warmup = 0;
    check_adam("adam", &c, 10, 3);
    check_adam("adam, parallel size", &c, 100003, 3);
    c.beta1 = 0.8;
    c.beta2 = 0.95;
    c.eps = 1e-6;
    check_adam("adam, other betas and eps", &c, 10, 3);

    dm_optim_config_default(&c);
    c.lr = 1e-2;
    c.warmup = 2;
    check_adam("adam with warm-up", &c, 10, 3);

    dm_optim_config_default(&c);
    c.lr = 1e-2;
    c.warmup = 0;
    c.weight_decay = 0.1;
    check_adam("adamw", &c, 10, 3);
    check_adam("adamw, parallel size", &c, 100003, 3);

    /* AdamW with no gradient at all: each step multiplies by exactly 1 - lr wd */
    dm_adam opt;
    CHECK(dm_adam_init(&opt, &c, 4, NULL) == DM_OK, "adam init");
    float p[4] = {1, -2, 0.5f, 3}, g[4] = {0};
    for (int s = 0; s < 3; s++) dm_adam_step(&opt, p, g);
    const double f = pow(1 - 1e-2 * 0.1, 3);
    const double want[4] = {f, -2 * f, 0.5 * f, 3 * f};
    /* three float multiplications of order-1 values: 1e-6 relative */
    tu_check_array("adamw decay alone", p, want, 4, 0, 1e-6);
    dm_adam_free(&opt);
}

static void test_warmup(void) {
    dm_optim_config c;
    dm_optim_config_default(&c);
    CHECK(c.lr == 1e-3 && c.beta1 == 0.9 && c.beta2 == 0.999 && c.eps == 1e-8 &&
              c.weight_decay == 0 && c.warmup == 100,
          "unexpected defaults");
    c.warmup = 4;
    dm_adam opt;
    CHECK(dm_adam_init(&opt, &c, 1, NULL) == DM_OK, "adam init");
    float p = 0, g = 1;
    /* lr (step + 1) / warmup, capped at lr; exact ratios of small integers, so 1e-15 */
    const double want[] = {0.25e-3, 0.5e-3, 0.75e-3, 1e-3, 1e-3, 1e-3};
    for (int s = 0; s < 6; s++) {
        CHECK_CLOSE(dm_adam_lr(&opt), want[s], 0, 1e-15, "warm-up lr");
        dm_adam_step(&opt, &p, &g);
    }
    dm_adam_free(&opt);
    for (int w = -1; w <= 0; w++) {
        c.warmup = w;
        CHECK(dm_adam_init(&opt, &c, 1, NULL) == DM_OK, "adam init");
        CHECK(dm_adam_lr(&opt) == c.lr, "warmup %d must mean none: lr %g", w, dm_adam_lr(&opt));
        dm_adam_free(&opt);
    }
}

static void test_clip(void) {
    float g[2] = {3, 4};
    /* norm 5 is exact in double */
    CHECK(dm_grad_norm(g, 2) == 5.0, "norm of (3, 4) = %.17g", dm_grad_norm(g, 2));
    double before = dm_grad_clip(g, 2, 10.0);
    CHECK(before == 5.0 && g[0] == 3 && g[1] == 4, "below the threshold nothing changes");
    before = dm_grad_clip(g, 2, 0.0);
    CHECK(before == 5.0 && g[0] == 3 && g[1] == 4, "max_norm 0 means off");
    before = dm_grad_clip(g, 2, 1.0);
    CHECK(before == 5.0, "clip returns the norm before: %g", before);
    /* one float multiplication each: 1e-7 */
    CHECK_CLOSE(g[0], 0.6, 1e-7, 0, "clipped g[0]");
    CHECK_CLOSE(g[1], 0.8, 1e-7, 0, "clipped g[1]");

    /* a large vector: squares of 0.5 sum exactly in double */
    const size_t n = 100001;
    float *v = malloc(n * sizeof *v);
    for (size_t i = 0; i < n; i++) v[i] = 0.5f;
    CHECK_CLOSE(dm_grad_norm(v, n), 0.5 * sqrt((double)n), 0, 1e-14, "norm of a large vector");
    before = dm_grad_clip(v, n, 2.0);
    CHECK_CLOSE(dm_grad_norm(v, n), 2.0, 0, 1e-6, "norm after clipping"); /* float scaling */

    /* the norm must not depend on the thread count (reproducible runs) */
    dm_rng rng;
    dm_rng_init(&rng, 3, 0);
    dm_rng_normal(&rng, v, n);
    dm_set_num_threads(1);
    double n1 = dm_grad_norm(v, n);
    dm_set_num_threads(2);
    double n2 = dm_grad_norm(v, n);
    CHECK(n1 == n2, "norm with 1 and 2 threads: %.17g vs %.17g", n1, n2);
    free(v);
}

static void test_ema(void) {
    float ema[3] = {1, 0, -2};
    const float p[3] = {3, 1, 2};
    dm_ema_update(ema, p, 3, 0.9);
    dm_ema_update(ema, p, 3, 0.9);
    /* by hand: e <- 0.9 e + 0.1 p twice = 0.81 e + 0.19 p */
    const double want[3] = {0.81 + 0.57, 0.19, -1.62 + 0.38};
    /* two float multiply-adds of order-1 values */
    tu_check_array("ema", ema, want, 3, 1e-6, 0);
    /* decay 0 copies, decay 1 keeps */
    dm_ema_update(ema, p, 3, 0.0);
    const double copy[3] = {3, 1, 2};
    tu_check_array("ema decay 0", ema, copy, 3, 0, 0);
    float e2[3] = {7, 8, 9};
    dm_ema_update(e2, p, 3, 1.0);
    const double keep[3] = {7, 8, 9};
    tu_check_array("ema decay 1", e2, keep, 3, 0, 0);
}

int main(void) {
    dm_set_num_threads(2);
    test_adam();
    test_warmup();
    test_clip();
    test_ema();
    return tu_finish("test_optim");
}
