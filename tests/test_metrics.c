/* Sample-quality metrics against naive double-precision twins and hand-computed values. */
#include "diffusion.h"
#include "test_util.h"

#include <omp.h>
#include <stdint.h>
#include <string.h>

static float *normals(int64_t n, int64_t dim, uint64_t seed, float mean, float scale) {
    float *x = malloc((size_t)(n * dim) * sizeof *x);
    dm_rng r;
    dm_rng_init(&r, seed, 0);
    dm_rng_normal(&r, x, (size_t)(n * dim));
    for (int64_t i = 0; i < n * dim; i++) x[i] = mean + scale * x[i];
    return x;
}

/* ---- naive twins ---- */

static double sqdist(const float *a, const float *b, int64_t dim) {
    double s = 0;
    for (int64_t k = 0; k < dim; k++) s += ((double)a[k] - b[k]) * ((double)a[k] - b[k]);
    return s;
}

static double naive_kernel_mean(const float *a, int64_t na, const float *b, int64_t nb,
                                int64_t dim, double h) {
    double s = 0;
    for (int64_t i = 0; i < na; i++)
        for (int64_t j = 0; j < nb; j++)
            s += exp(-sqdist(a + i * dim, b + j * dim, dim) / (2 * h * h));
    return s / ((double)na * nb);
}

static double naive_mmd(const float *x, int64_t n, const float *y, int64_t m, int64_t dim,
                        double h) {
    double v = naive_kernel_mean(x, n, x, n, dim, h) + naive_kernel_mean(y, m, y, m, dim, h) -
               2 * naive_kernel_mean(x, n, y, m, dim, h);
    return sqrt(v > 0 ? v : 0);
}

static int cmp_d(const void *a, const void *b) {
    double u = *(const double *)a, v = *(const double *)b;
    return (u > v) - (u < v);
}

static double naive_median_distance(const float *x, int64_t n, int64_t dim) {
    int64_t pairs = n * (n - 1) / 2, c = 0;
    double *d = malloc((size_t)pairs * sizeof *d);
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = i + 1; j < n; j++) d[c++] = sqrt(sqdist(x + i * dim, x + j * dim, dim));
    qsort(d, (size_t)pairs, sizeof *d, cmp_d);
    double med = pairs % 2 ? d[pairs / 2] : 0.5 * (d[pairs / 2 - 1] + d[pairs / 2]);
    free(d);
    return med;
}

/* The directions as the library documents them: projections x dim normals from (seed, stream 7)
 * in one fill, row p normalised. */
static double *directions(int projections, int64_t dim, uint64_t seed) {
    float *z = malloc((size_t)projections * dim * sizeof *z);
    double *theta = malloc((size_t)projections * dim * sizeof *theta);
    dm_rng r;
    dm_rng_init(&r, seed, 7);
    dm_rng_normal(&r, z, (size_t)projections * dim);
    for (int p = 0; p < projections; p++) {
        double n2 = 0;
        for (int64_t k = 0; k < dim; k++) n2 += (double)z[p * dim + k] * z[p * dim + k];
        for (int64_t k = 0; k < dim; k++) theta[p * dim + k] = z[p * dim + k] / sqrt(n2);
    }
    free(z);
    return theta;
}

static double naive_sw(const float *x, const float *y, int64_t n, int64_t dim, int projections,
                       uint64_t seed) {
    double *theta = directions(projections, dim, seed);
    double *px = malloc((size_t)n * sizeof *px), *py = malloc((size_t)n * sizeof *py), total = 0;
    for (int p = 0; p < projections; p++) {
        for (int64_t i = 0; i < n; i++) {
            px[i] = py[i] = 0;
            for (int64_t k = 0; k < dim; k++) {
                px[i] += x[i * dim + k] * theta[p * dim + k];
                py[i] += y[i * dim + k] * theta[p * dim + k];
            }
        }
        qsort(px, (size_t)n, sizeof *px, cmp_d);
        qsort(py, (size_t)n, sizeof *py, cmp_d);
        double s = 0;
        for (int64_t i = 0; i < n; i++) s += (px[i] - py[i]) * (px[i] - py[i]);
        total += s / n;
    }
    free(theta);
    free(px);
    free(py);
    return sqrt(total / projections);
}

/* ---- MMD ---- */

static void test_mmd_against_naive(void) {
    /* sizes that are not multiples of the row block (16) or the column tile (256) */
    const int64_t n = 531, m = 389, dim = 3;
    float *x = normals(n, dim, 1, 0.0f, 1.0f), *y = normals(m, dim, 2, 0.3f, 1.2f);
    const double hs[] = {0.2, 1.0, 3.0};
    for (int i = 0; i < 3; i++) {
        double got = dm_mmd_rbf(x, n, y, m, dim, hs[i]), want = naive_mmd(x, n, y, m, dim, hs[i]);
        /* the vectorised exp is accurate to ~2e-16 relative and only the summation order
         * differs, so even after the cancellation in MMD^2 (terms ~0.1-1, result ~0.01) the
         * error stays far below 1e-9 relative */
        CHECK_CLOSE(got, want, 0, 1e-9, "mmd vs naive");
        /* swapping the sets gives the same value up to summation order */
        CHECK_CLOSE(dm_mmd_rbf(y, m, x, n, dim, hs[i]), want, 0, 1e-9, "mmd symmetric");
    }
    free(x);
    free(y);
}

static void test_mmd_hand_values(void) {
    /* one point each, distance d: MMD^2 = 2 - 2 exp(-d^2 / (2 h^2)) */
    const float a[2] = {0.0f, 0.0f}, b[2] = {3.0f, 4.0f}; /* d = 5 */
    const double hs[] = {1.0, 2.5, 5.0, 20.0};
    for (int i = 0; i < 4; i++) {
        double want = sqrt(2 - 2 * exp(-25.0 / (2 * hs[i] * hs[i])));
        /* a single kernel value: the exp approximation's 2e-16 relative error, amplified at most
         * ~100x by the cancellation at h = 20 (kernel 0.97) */
        CHECK_CLOSE(dm_mmd_rbf(a, 1, b, 1, 2, hs[i]), want, 0, 1e-12, "mmd one pair");
    }
    /* far apart points: the kernel underflows to (nearly) 0, MMD^2 = 2 */
    const float far[2] = {1e4f, 0.0f};
    CHECK_CLOSE(dm_mmd_rbf(a, 1, far, 1, 2, 1.0), sqrt(2.0), 0, 1e-15, "mmd far pair");
}

static void test_mmd_self_and_shift(void) {
    const int64_t n = 2000, dim = 2;
    float *x = normals(n, dim, 3, 0.0f, 1.0f);
    /* MMD^2 of a set with itself is a difference of equal sums computed in different orders:
     * relative rounding ~1e-13 on O(1) terms, so MMD <= sqrt(1e-13) ~ 3e-7 */
    double self = dm_mmd_rbf(x, n, x, n, dim, 1.0);
    CHECK(self >= 0 && self < 1e-6, "mmd(x, x) = %.3g", self);
    /* a mean shift along axis 0 of an independent draw: MMD increases with the shift */
    double prev = -1;
    const float shifts[] = {0.0f, 0.25f, 0.5f, 1.0f, 2.0f};
    for (int s = 0; s < 5; s++) {
        float *y = normals(n, dim, 4, 0.0f, 1.0f);
        for (int64_t i = 0; i < n; i++) y[i * dim] += shifts[s];
        double v = dm_mmd_rbf(x, n, y, n, dim, 1.0);
        CHECK(v > prev, "mmd at shift %.2f is %.4g, not above %.4g", shifts[s], v, prev);
        prev = v;
        free(y);
    }
    free(x);
}

static void test_mmd_invalid(void) {
    const float a[2] = {0, 0};
    CHECK(isnan(dm_mmd_rbf(a, 0, a, 1, 2, 1.0)), "n = 0 gives NaN");
    CHECK(isnan(dm_mmd_rbf(a, 1, a, 1, 2, 0.0)), "h = 0 gives NaN");
    CHECK(isnan(dm_mmd_rbf(a, 1, a, 1, 2, NAN)), "h = NaN gives NaN");
    CHECK(isnan(dm_mmd_rbf(NULL, 1, a, 1, 2, 1.0)), "NULL gives NaN");
}

/* ---- median bandwidth ---- */

static void test_bandwidth(void) {
    /* on a line at 0, 1, 3, 7: distances 1 2 3 4 6 7, an even count: median (3 + 4) / 2 */
    const float line[8] = {0, 0, 1, 0, 3, 0, 7, 0};
    CHECK_CLOSE(dm_median_bandwidth(line, 4, 2), 3.5, 0, 1e-15, "median of 6 distances");
    /* a 3-4-5 triangle: distances 3, 4, 5, an odd count */
    const float tri[6] = {0, 0, 0, 4, 3, 4};
    CHECK_CLOSE(dm_median_bandwidth(tri, 3, 2), 4.0, 0, 1e-15, "median of 3 distances");
    CHECK(isnan(dm_median_bandwidth(tri, 1, 2)), "one point has no distances");

    /* random points, and integer grid points with many tied distances, against sort + middle */
    float *x = normals(700, 3, 5, 0.0f, 1.0f);
    /* same float inputs and double arithmetic: identical up to the order of 3 additions */
    CHECK_CLOSE(dm_median_bandwidth(x, 700, 3), naive_median_distance(x, 700, 3), 0, 1e-15,
                "median of random distances");
    for (int64_t i = 0; i < 700 * 3; i++) x[i] = floorf(x[i] * 2.0f);
    CHECK_CLOSE(dm_median_bandwidth(x, 301, 3), naive_median_distance(x, 301, 3), 0, 1e-15,
                "median of tied distances");
    free(x);

    /* only the first 2000 rows count: rows after them are far away and change nothing */
    float *y = normals(2500, 2, 6, 0.0f, 1.0f);
    for (int64_t i = 2000 * 2; i < 2500 * 2; i++) y[i] = 1e6f;
    double first = naive_median_distance(y, 2000, 2);
    CHECK_CLOSE(dm_median_bandwidth(y, 2500, 2), first, 0, 1e-15, "median over first 2000 rows");
    free(y);
}

/* ---- sliced Wasserstein ---- */

static void test_sw_shift(void) {
    const int64_t n = 3000, dim = 2;
    const int P = 2000;
    const double v[2] = {1.5, -2.0}; /* |v| = 2.5 */
    float *x = normals(n, dim, 7, 0.0f, 1.0f), *y = malloc((size_t)(n * dim) * sizeof *y);
    for (int64_t i = 0; i < n; i++)
        for (int k = 0; k < 2; k++) y[i * dim + k] = x[i * dim + k] + (float)v[k];
    double sw = dm_sliced_wasserstein(x, y, n, dim, P, 11);

    /* Every sorted projection difference is v.theta, so SW^2 = |v|^2 mean(cos^2 phi) over the
     * directions. cos^2 of a uniform angle has mean 1/2 and sd sqrt(1/8) = 0.354, so the mean
     * over P = 2000 directions is 1/2 +- 0.0079; at 4 sd SW / (|v| / sqrt 2) = sqrt(1 +- 0.063),
     * within 3.5%. */
    CHECK_CLOSE(sw, 2.5 / sqrt(2.0), 0, 0.035, "sw of a shift vs |v| / sqrt 2");

    /* exactly, with the same directions: y - x is v up to float rounding of y (~2.4e-7 of
     * |y| <= ~6), i.e. ~1e-6 absolute per difference of size ~2.5: 1e-5 relative */
    double *theta = directions(P, dim, 11), s2 = 0;
    for (int p = 0; p < P; p++) {
        double d = v[0] * theta[p * 2] + v[1] * theta[p * 2 + 1];
        s2 += d * d;
    }
    CHECK_CLOSE(sw, sqrt(s2 / P), 0, 1e-5, "sw of a shift vs the same directions");
    free(theta);

    /* a set against itself: identical projections, sorted identically */
    CHECK(dm_sliced_wasserstein(x, x, n, dim, 64, 11) == 0.0, "sw(x, x) is exactly 0");
    free(x);
    free(y);
}

static void test_sw_against_naive(void) {
    /* different sets, 5-D, with exact ties (rounded coordinates) and a constant set (every key
     * the same: the radix sort skips all its passes) */
    const int64_t n = 1001, dim = 5;
    float *x = normals(n, dim, 8, 0.5f, 1.0f), *y = normals(n, dim, 9, -0.2f, 2.0f);
    for (int64_t i = 0; i < n * dim; i += 3) x[i] = roundf(x[i]);
    /* same directions, same double projections; only the sort differs (radix vs qsort), which
     * gives identical sorted arrays: agreement to rounding of the final sums */
    CHECK_CLOSE(dm_sliced_wasserstein(x, y, n, dim, 37, 5), naive_sw(x, y, n, dim, 37, 5), 0,
                1e-13, "sw vs naive");
    float *c = malloc((size_t)(n * dim) * sizeof *c);
    for (int64_t i = 0; i < n * dim; i++) c[i] = 0.75f;
    CHECK_CLOSE(dm_sliced_wasserstein(c, y, n, dim, 9, 3), naive_sw(c, y, n, dim, 9, 3), 0, 1e-13,
                "sw vs naive, constant set");
    free(c);
    free(x);
    free(y);
}

static void test_determinism_and_threads(void) {
    const int64_t n = 4000, dim = 2;
    float *x = normals(n, dim, 12, 0.0f, 1.0f), *y = normals(n, dim, 13, 0.4f, 0.8f);
    int saved = omp_get_max_threads();
    double sw[2], mmd[2], bw[2];
    for (int t = 0; t < 2; t++) {
        omp_set_num_threads(t + 1);
        sw[t] = dm_sliced_wasserstein(x, y, n, dim, 200, 21);
        mmd[t] = dm_mmd_rbf(x, n, y, n, dim, 0.7);
        bw[t] = dm_median_bandwidth(x, n, dim);
    }
    omp_set_num_threads(saved);
    /* partial results are stored per row / direction and summed in order: bitwise equal */
    CHECK(sw[0] == sw[1], "sw with 1 and 2 threads: %.17g vs %.17g", sw[0], sw[1]);
    CHECK(mmd[0] == mmd[1], "mmd with 1 and 2 threads: %.17g vs %.17g", mmd[0], mmd[1]);
    CHECK(bw[0] == bw[1], "bandwidth with 1 and 2 threads: %.17g vs %.17g", bw[0], bw[1]);
    CHECK(dm_sliced_wasserstein(x, y, n, dim, 200, 21) == sw[1], "sw repeats for a seed");
    double other = dm_sliced_wasserstein(x, y, n, dim, 200, 22);
    CHECK(other != sw[1], "another seed gives other directions (%.17g)", other);
    CHECK(isnan(dm_sliced_wasserstein(x, y, 0, dim, 10, 1)), "n = 0 gives NaN");
    CHECK(isnan(dm_sliced_wasserstein(x, y, n, dim, 0, 1)), "no projections gives NaN");
    free(x);
    free(y);
}

int main(void) {
    test_mmd_against_naive();
    test_mmd_hand_values();
    test_mmd_self_and_shift();
    test_mmd_invalid();
    test_bandwidth();
    test_sw_shift();
    test_sw_against_naive();
    test_determinism_and_threads();
    return tu_finish("test_metrics");
}
