/* Inverted dropout: p = 0 is the identity, the kept fraction and scale, the mask's tie to the
 * counter-based generator (same at any thread count), the backward through the mask. */
#include "nn/dropout.h"
#include "test_util.h"

#include <omp.h>

static void test_p_zero(void) {
    const size_t n = 1001;
    float *x = malloc(n * 4), *y = malloc(n * 4), *mask = malloc(n * 4);
    dm_rng rng;
    dm_rng_init(&rng, 5, 1);
    dm_rng_normal(&rng, x, n);
    const uint64_t offset = rng.offset;
    dm_dropout_forward(y, mask, x, n, 0.0f, &rng);
    CHECK(memcmp(x, y, n * 4) == 0, "p = 0 must copy x");
    size_t ones = 0;
    for (size_t i = 0; i < n; i++) ones += mask[i] == 1.0f;
    CHECK(ones == n, "p = 0: %zu of %zu mask values are 1", ones, n);
    CHECK(rng.offset == offset, "p = 0 drew numbers: offset %llu -> %llu",
          (unsigned long long)offset, (unsigned long long)rng.offset);
    memcpy(y, x, n * 4);
    dm_dropout_forward(y, mask, y, n, 0.0f, &rng); /* in place */
    CHECK(memcmp(x, y, n * 4) == 0, "p = 0 in place must leave x");
    free(x); free(y); free(mask);
}

/* Kept fraction, scale, the mask as a function of the uniforms, offset bookkeeping. */
static void test_statistics(float p, size_t n) {
    float *x = malloc(n * 4), *y = malloc(n * 4), *mask = malloc(n * 4), *u = malloc(n * 4);
    dm_rng rng;
    dm_rng_init(&rng, 17, 2);
    dm_rng_normal(&rng, x, n);
    const dm_rng before = rng;
    dm_dropout_forward(y, mask, x, n, p, &rng);
    CHECK(rng.offset == before.offset + (n + 3) / 4, "offset advanced by %llu, want %zu",
          (unsigned long long)(rng.offset - before.offset), (n + 3) / 4);
    /* the same draws through the public generator: element i keeps iff u_i >= p */
    dm_rng again = before;
    dm_rng_uniform(&again, u, n);
    const float scale = 1.0f / (1.0f - p);
    size_t kept = 0, bad_mask = 0, bad_y = 0;
    for (size_t i = 0; i < n; i++) {
        const bool keep = u[i] >= p;
        kept += keep;
        bad_mask += mask[i] != (keep ? scale : 0.0f);
        bad_y += y[i] != (keep ? x[i] * scale : 0.0f);
    }
    CHECK(bad_mask == 0, "p=%g: %zu mask values differ from u >= p ? 1/(1-p) : 0", (double)p,
          bad_mask);
    CHECK(bad_y == 0, "p=%g: %zu outputs differ from x * mask", (double)p, bad_y);
    /* kept ~ Binomial(n, 1 - p): 5 standard deviations, a false alarm about once in 2e6 runs
     * (the seed is fixed, so in practice never) */
    const double frac = (double)kept / (double)n, sd = sqrt(p * (1.0 - p) / (double)n);
    CHECK(fabs(frac - (1.0 - p)) <= 5 * sd, "p=%g: kept fraction %.5f, want %.5f +- %.5f",
          (double)p, frac, 1.0 - p, 5 * sd);
    /* E[y] = x: the mean of y - x over the sample, 5 standard errors */
    double diff = 0, var = 0;
    for (size_t i = 0; i < n; i++) {
        diff += (double)y[i] - x[i];
        var += (double)x[i] * x[i] * p / (1.0 - p); /* Var(y_i) = x_i^2 p / (1 - p) */
    }
    CHECK(fabs(diff / (double)n) <= 5 * sqrt(var) / (double)n, "p=%g: mean(y - x) = %.3g",
          (double)p, diff / (double)n);
    free(x); free(y); free(mask); free(u);
}

/* Large enough for the generator and the mask loop to run in parallel. */
static void test_thread_independence(void) {
    const size_t n = 200003;
    float *x = malloc(n * 4), *y1 = malloc(n * 4), *m1 = malloc(n * 4);
    float *y2 = malloc(n * 4), *m2 = malloc(n * 4);
    dm_rng rng;
    dm_rng_init(&rng, 9, 4);
    dm_rng_normal(&rng, x, n);
    dm_rng r1 = rng, r2 = rng;
    const int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    dm_dropout_forward(y1, m1, x, n, 0.25f, &r1);
    omp_set_num_threads(2);
    dm_dropout_forward(y2, m2, x, n, 0.25f, &r2);
    omp_set_num_threads(threads);
    CHECK(memcmp(m1, m2, n * 4) == 0, "mask differs between 1 and 2 threads");
    CHECK(memcmp(y1, y2, n * 4) == 0, "output differs between 1 and 2 threads");
    CHECK(r1.offset == r2.offset, "offsets differ");
    /* the next call continues the stream: a new mask */
    dm_dropout_forward(y2, m2, x, n, 0.25f, &r2);
    CHECK(memcmp(m1, m2, n * 4) != 0, "a second call repeated the mask");
    free(x); free(y1); free(m1); free(y2); free(m2);
}

static void test_backward(void) {
    const size_t n = 4099;
    float *x = malloc(n * 4), *y = malloc(n * 4), *mask = malloc(n * 4), *dy = malloc(n * 4);
    float *dx = malloc(n * 4), *pre = malloc(n * 4);
    dm_rng rng;
    dm_rng_init(&rng, 33, 5);
    dm_rng_normal(&rng, x, n);
    dm_rng_normal(&rng, dy, n);
    dm_rng_normal(&rng, pre, n);
    memcpy(y, x, n * 4);
    dm_dropout_forward(y, mask, y, n, 0.5f, &rng); /* in place */
    memcpy(dx, pre, n * 4);
    dm_dropout_backward(dx, dy, mask, n);
    size_t bad = 0, dropped = 0;
    for (size_t i = 0; i < n; i++) {
        bad += dx[i] != pre[i] + dy[i] * mask[i];
        bad += y[i] != x[i] * mask[i];
        dropped += mask[i] == 0.0f;
        if (mask[i] == 0.0f) bad += dx[i] != pre[i]; /* no gradient through a dropped value */
    }
    CHECK(bad == 0, "%zu values break dx += dy * mask or y = x * mask", bad);
    CHECK(dropped > 0 && dropped < n, "p = 0.5 dropped %zu of %zu", dropped, n);
    free(x); free(y); free(mask); free(dy); free(dx); free(pre);
}

int main(void) {
    test_p_zero();
    test_statistics(0.1f, 100000);
    test_statistics(0.5f, 100001);
    test_statistics(0.9f, 7); /* a partial block at the end */
    test_thread_independence();
    test_backward();
    return tu_finish("test_dropout");
}
