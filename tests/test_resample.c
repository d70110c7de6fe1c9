/* Nearest 2x upsampling and channel concatenation: hand cases, every output against its
 * defining index formula, backward as the exact adjoint, the += rule. */
#include "nn/resample.h"
#include "test_util.h"

static void fill_normal(float *v, size_t n, uint64_t seed) {
    dm_rng rng;
    dm_rng_init(&rng, seed, 11);
    dm_rng_normal(&rng, v, n);
}

static void test_upsample_hand(void) {
    const float x[4] = {1, 2, 3, 4}; /* (1, 1, 2, 2) */
    float y[16];
    dm_upsample2x_forward(y, x, 1, 1, 2, 2);
    const double want[16] = {1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4};
    tu_check_array("upsample 2x2", y, want, 16, 0, 0);
    float dx[4] = {10, 20, 30, 40};
    float dy[16];
    for (int i = 0; i < 16; i++) dy[i] = (float)i;
    dm_upsample2x_backward(dx, dy, 1, 1, 2, 2);
    /* dx[0] += 0 + 1 + 4 + 5, dx[1] += 2 + 3 + 6 + 7, ... on top of the values there */
    const double want_dx[4] = {10 + 10, 20 + 18, 30 + 42, 40 + 50};
    tu_check_array("upsample backward 2x2 (+=)", dx, want_dx, 4, 0, 0);
}

/* y[b, c, i, j] = x[b, c, i / 2, j / 2]; <up(x), dy> = <x, up^T(dy)> */
static void test_upsample(int64_t B, int64_t C, int64_t H, int64_t W) {
    const size_t nx = (size_t)(B * C * H * W), ny = 4 * nx;
    float *x = malloc(nx * 4), *y = malloc(ny * 4), *dy = malloc(ny * 4), *dx = calloc(nx, 4);
    fill_normal(x, nx, 1);
    fill_normal(dy, ny, 2);
    dm_upsample2x_forward(y, x, B, C, H, W);
    size_t bad = 0;
    for (int64_t p = 0; p < B * C; p++)
        for (int64_t i = 0; i < 2 * H; i++)
            for (int64_t j = 0; j < 2 * W; j++)
                bad += y[(p * 2 * H + i) * 2 * W + j] != x[(p * H + i / 2) * W + j / 2];
    CHECK(bad == 0, "upsample B=%lld C=%lld H=%lld W=%lld: %zu values differ", (long long)B,
          (long long)C, (long long)H, (long long)W, bad);
    dm_upsample2x_backward(dx, dy, B, C, H, W);
    double lhs = 0, rhs = 0, mag = 0;
    for (size_t i = 0; i < ny; i++) lhs += (double)y[i] * dy[i], mag += fabs((double)y[i] * dy[i]);
    for (size_t i = 0; i < nx; i++) rhs += (double)x[i] * dx[i];
    /* dx holds float sums of four values: relative rounding 2e-7 on each term */
    CHECK_CLOSE(rhs, lhs, 1e-6 * mag, 0, "upsample adjoint <x, dx> = <y, dy>");
    /* each dx is exactly the sum of its four dy, in the kernel's order */
    bad = 0;
    for (int64_t p = 0; p < B * C; p++)
        for (int64_t i = 0; i < H; i++)
            for (int64_t j = 0; j < W; j++) {
                const float *t = dy + (p * 2 * H + 2 * i) * 2 * W + 2 * j, *u = t + 2 * W;
                const double want = ((double)t[0] + t[1]) + ((double)u[0] + u[1]);
                bad += fabs(dx[(p * H + i) * W + j] - want) > 1e-6 * (fabs(want) + 1);
            }
    CHECK(bad == 0, "upsample backward: %zu values are not the sum of their four dy", bad);
    free(x); free(y); free(dy); free(dx);
}

static void test_concat(int64_t B, int64_t Ca, int64_t Cb, int64_t HW) {
    const size_t na = (size_t)(B * Ca * HW), nb = (size_t)(B * Cb * HW), ny = na + nb;
    float *a = malloc(na * 4), *b = malloc(nb * 4), *y = malloc(ny * 4), *dy = malloc(ny * 4);
    float *da = malloc(na * 4), *db = malloc(nb * 4), *pa = malloc(na * 4), *pb = malloc(nb * 4);
    fill_normal(a, na, 3);
    fill_normal(b, nb, 4);
    fill_normal(dy, ny, 5);
    fill_normal(pa, na, 6);
    fill_normal(pb, nb, 7);
    dm_concat_channels(y, a, Ca, b, Cb, B, HW);
    size_t bad = 0;
    for (int64_t e = 0; e < B; e++)
        for (int64_t c = 0; c < Ca + Cb; c++)
            for (int64_t i = 0; i < HW; i++) {
                const float got = y[(e * (Ca + Cb) + c) * HW + i];
                bad += got != (c < Ca ? a[(e * Ca + c) * HW + i] : b[(e * Cb + c - Ca) * HW + i]);
            }
    CHECK(bad == 0, "concat B=%lld Ca=%lld Cb=%lld HW=%lld: %zu values differ", (long long)B,
          (long long)Ca, (long long)Cb, (long long)HW, bad);
    memcpy(da, pa, na * 4);
    memcpy(db, pb, nb * 4);
    dm_concat_channels_backward(da, db, dy, Ca, Cb, B, HW);
    bad = 0;
    for (int64_t e = 0; e < B; e++)
        for (int64_t c = 0; c < Ca + Cb; c++)
            for (int64_t i = 0; i < HW; i++) {
                const float g = dy[(e * (Ca + Cb) + c) * HW + i];
                if (c < Ca) {
                    const size_t at = (size_t)((e * Ca + c) * HW + i);
                    bad += da[at] != pa[at] + g;
                } else {
                    const size_t at = (size_t)((e * Cb + c - Ca) * HW + i);
                    bad += db[at] != pb[at] + g;
                }
            }
    CHECK(bad == 0, "concat backward (+=): %zu values differ", bad);
    /* either gradient may be skipped */
    memcpy(da, pa, na * 4);
    dm_concat_channels_backward(NULL, da, dy, Cb, Ca, B, HW); /* da plays the second part */
    memcpy(db, pb, nb * 4);
    dm_concat_channels_backward(db, NULL, dy, Cb, Ca, B, HW);
    bad = 0;
    for (int64_t e = 0; e < B; e++) {
        const float *dye = dy + e * (Ca + Cb) * HW; /* the example's (Cb + Ca, HW) gradient */
        for (int64_t i = 0; i < Ca * HW; i++)
            bad += da[e * Ca * HW + i] != pa[e * Ca * HW + i] + dye[Cb * HW + i];
        for (int64_t i = 0; i < Cb * HW; i++)
            bad += db[e * Cb * HW + i] != pb[e * Cb * HW + i] + dye[i];
    }
    CHECK(bad == 0, "concat backward with a NULL gradient: %zu values differ", bad);
    free(a); free(b); free(y); free(dy); free(da); free(db); free(pa); free(pb);
}

static void test_concat_hand(void) {
    const float a[4] = {1, 2, 3, 4}; /* (2, 1, 2) */
    const float b[4] = {5, 6, 7, 8}; /* (2, 1, 2) */
    float y[8];
    dm_concat_channels(y, a, 1, b, 1, 2, 2);
    const double want[8] = {1, 2, 5, 6, 3, 4, 7, 8};
    tu_check_array("concat hand", y, want, 8, 0, 0);
}

int main(void) {
    test_upsample_hand();
    test_upsample(1, 1, 1, 1);
    test_upsample(2, 3, 3, 5);   /* odd sizes */
    test_upsample(4, 32, 16, 16); /* large enough for the parallel loop */
    test_concat_hand();
    test_concat(1, 1, 1, 1);
    test_concat(3, 2, 5, 7);
    test_concat(8, 64, 32, 196); /* parallel */
    return tu_finish("test_resample");
}
