/* Inverted dropout with a mask drawn from the counter-based generator. */
#include "dropout.h"

#include <string.h>

DM_VECTOR_KERNEL
static void dm_dropout_forward_kernel(float *y, float *mask, const float *x, size_t n, float p,
                                      dm_rng *rng) {
    assert(p >= 0.0f && p < 1.0f);
    if (p == 0.0f) {
        /* nothing is random, so no numbers are drawn: a model with dropout 0 consumes the same
         * stream as one without dropout layers */
        if (y != x) memcpy(y, x, n * sizeof *y);
#pragma omp parallel for simd schedule(static) if (parallel : n >= DM_PARALLEL_MIN)
        for (size_t i = 0; i < n; i++) mask[i] = 1.0f;
        return;
    }
    /* uniforms straight into mask: element i from block offset + i / 4 at any thread count */
    dm_rng_uniform(rng, mask, n);
    const float scale = 1.0f / (1.0f - p);
    /* u is uniform on (0, 1), so u >= p keeps with probability 1 - p */
#pragma omp parallel for simd schedule(static) if (parallel : n >= DM_PARALLEL_MIN)
    for (size_t i = 0; i < n; i++) {
        mask[i] = mask[i] >= p ? scale : 0.0f;
        y[i] = x[i] * mask[i];
    }
}

/* not multiversioned itself: GCC 12 makes the resolver of a non-static clone public */
void dm_dropout_forward(float *y, float *mask, const float *x, size_t n, float p, dm_rng *rng) {
    dm_dropout_forward_kernel(y, mask, x, n, p, rng);
}

DM_VECTOR_KERNEL
static void dm_dropout_backward_kernel(float *dx, const float *dy, const float *mask, size_t n) {
#pragma omp parallel for simd schedule(static) if (parallel : n >= DM_PARALLEL_MIN)
    for (size_t i = 0; i < n; i++) dx[i] += dy[i] * mask[i];
}

/* not multiversioned itself: GCC 12 makes the resolver of a non-static clone public */
void dm_dropout_backward(float *dx, const float *dy, const float *mask, size_t n) {
    dm_dropout_backward_kernel(dx, dy, mask, n);
}
