/* The machine's GEMM ceiling, measured through the same BLAS the library uses. */
#include "core.h"

#include <stdlib.h>
#include <time.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double dm_sgemm_gflops(int64_t n, int iters) {
    if (n < 1 || iters < 1) return -1;
    size_t count = (size_t)(n * n);
    float *A = dm_alloc(count * sizeof(float)), *B = dm_alloc(count * sizeof(float)),
          *C = dm_alloc(count * sizeof(float));
    double *times = malloc((size_t)iters * sizeof *times);
    double rate = -1;
    if (A && B && C && times) {
        dm_rng r;
        dm_rng_init(&r, 1, 0);
        dm_rng_normal(&r, A, count);
        dm_rng_normal(&r, B, count);
        dm_sgemm(false, false, n, n, n, 1.0f, A, n, B, n, 0.0f, C, n); /* warm-up */
        for (int i = 0; i < iters; i++) {
            double t0 = now_s();
            dm_sgemm(false, false, n, n, n, 1.0f, A, n, B, n, 0.0f, C, n);
            times[i] = now_s() - t0;
        }
        qsort(times, (size_t)iters, sizeof *times, cmp_double);
        rate = 2.0 * (double)n * (double)n * (double)n / times[iters / 2] * 1e-9;
    }
    dm_free(A);
    dm_free(B);
    dm_free(C);
    free(times);
    return rate;
}
