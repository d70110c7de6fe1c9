/* Reading the diffusers fixtures (tests/fixtures, NPY files) in tests: a missing or unexpected
 * file ends the test with a failure, never a skip. */
#pragma once

#include "io/npy.h"
#include "test_util.h"

/* n values of an NPY file (float32, float64 or int64) as doubles; a missing or unexpected file
 * ends the test with a failure */
static inline double *read_npy(const char *path, int64_t n) {
    dm_npy a;
    dm_error err = {0};
    if (dm_npy_read(&a, path, &err)) {
        fprintf(stderr, "FAIL reference fixture missing or unreadable: %s (tests/fixtures/ is "
                "part of the repository; restore it with git checkout -- tests/fixtures)\n",
                err.msg);
        exit(1);
    }
    if (dm_npy_numel(&a) != n) {
        fprintf(stderr, "FAIL %s: %lld values, expected %lld\n", path,
                (long long)dm_npy_numel(&a), (long long)n);
        exit(1);
    }
    double *out = malloc((size_t)n * sizeof *out);
    for (int64_t i = 0; i < n; i++) {
        switch (a.dtype) {
        case DM_DTYPE_F64: out[i] = ((const double *)a.data)[i]; break;
        case DM_DTYPE_F32: out[i] = ((const float *)a.data)[i]; break;
        case DM_DTYPE_I64: out[i] = (double)((const int64_t *)a.data)[i]; break;
        default: fprintf(stderr, "FAIL %s: unexpected dtype\n", path); exit(1);
        }
    }
    dm_npy_free(&a);
    return out;
}

static inline float *to_float(const double *x, int64_t n) {
    float *out = malloc((size_t)n * sizeof *out);
    for (int64_t i = 0; i < n; i++) out[i] = (float)x[i];
    return out;
}

static inline double max_abs(const double *x, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) m = fmax(m, fabs(x[i]));
    return m;
}

/* largest |got - want| */
static inline double max_diff(const float *got, const double *want, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) {
        const double d = fabs((double)got[i] - want[i]);
        m = isnan(d) ? INFINITY : fmax(m, d);
    }
    return m;
}

