/* Fully connected layer, y = x W^T + b, with PyTorch's (out, in) weight layout. */
#include "nn.h"

#include <string.h>

/* Below this many outputs, plain loops beat OpenBLAS, whose blocking and threading do not fit
 * so skinny a shape (measured at B = 1024, out = 2, two threads: forward 60-90 us by sgemm,
 * the backward pieces 100-400 us each). */
#define SKINNY_OUT 16
/* Column block of the accumulating kernels: each thread owns whole columns, so no reduction. */
#define COL_BLOCK 64

/* y (B, out) = x W^T + b for a small out: one dot product per output. */
DM_VECTOR_KERNEL
static void forward_skinny(float *y, const float *x, const float *w, const float *b, int64_t B,
                           int64_t in, int64_t out) {
#pragma omp parallel for schedule(static) if (B * in >= DM_PARALLEL_MIN)
    for (int64_t r = 0; r < B; r++) {
        const float *xr = x + r * in; /* (in) */
        for (int64_t o = 0; o < out; o++) {
            const float *wo = w + o * in; /* (in) */
            float s = 0.0f;
#pragma omp simd reduction(+ : s)
            for (int64_t i = 0; i < in; i++) s += xr[i] * wo[i];
            y[r * out + o] = (b ? b[o] : 0.0f) + s;
        }
    }
}

DM_VECTOR_KERNEL
static void dm_linear_forward_impl(float *y, const float *x, const float *w, const float *b, int64_t B,
                       int64_t in, int64_t out) {
    if (out <= SKINNY_OUT) {
        forward_skinny(y, x, w, b, B, in, out);
        return;
    }
    if (b) {
        /* Seed every row with the bias and let the GEMM accumulate onto it (beta = 1): OpenBLAS
         * clears C itself when beta = 0, so this costs no extra pass over y. */
#pragma omp parallel for schedule(static) if (B * out >= DM_PARALLEL_MIN)
        for (int64_t r = 0; r < B; r++) memcpy(y + r * out, b, (size_t)out * sizeof *y);
    }
    dm_sgemm(false, true, B, out, in, 1.0f, x, in, w, in, b ? 1.0f : 0.0f, y, out);
}

DM_VECTOR_KERNEL
static void dm_gemm_tn_skinny_kernel(float *C, int64_t csp, int64_t csq, const float *A,
                                     int64_t lda, const float *Bm, int64_t ldb, int64_t R,
                                     int64_t P, int64_t Q) {
    assert(P <= DM_SKINNY_MAX);
    const int64_t blocks = (Q + COL_BLOCK - 1) / COL_BLOCK;
#pragma omp parallel for schedule(static) if (R * Q >= DM_PARALLEL_MIN)
    for (int64_t blk = 0; blk < blocks; blk++) {
        const int64_t q0 = blk * COL_BLOCK, nq = Q - q0 < COL_BLOCK ? Q - q0 : COL_BLOCK;
        float acc[DM_SKINNY_MAX][COL_BLOCK]; /* (P, nq) */
        for (int64_t p = 0; p < P; p++)
            for (int64_t q = 0; q < nq; q++) acc[p][q] = 0.0f;
        for (int64_t r = 0; r < R; r++) {
            const float *br = Bm + r * ldb + q0; /* (nq) */
            for (int64_t p = 0; p < P; p++) {
                const float a = A[r * lda + p];
                for (int64_t q = 0; q < nq; q++) acc[p][q] += a * br[q];
            }
        }
        for (int64_t p = 0; p < P; p++)
            for (int64_t q = 0; q < nq; q++) C[p * csp + (q0 + q) * csq] += acc[p][q];
    }
}

/* not multiversioned itself: GCC 12 makes the resolver of a non-static clone public */
void dm_gemm_tn_skinny(float *C, int64_t csp, int64_t csq, const float *A, int64_t lda,
                       const float *Bm, int64_t ldb, int64_t R, int64_t P, int64_t Q) {
    dm_gemm_tn_skinny_kernel(C, csp, csq, A, lda, Bm, ldb, R, P, Q);
}

DM_VECTOR_KERNEL
static void dm_bias_backward_kernel(float *db, const float *dy, int64_t B, int64_t out) {
    const int64_t blocks = (out + COL_BLOCK - 1) / COL_BLOCK;
#pragma omp parallel for schedule(static) if (B * out >= DM_PARALLEL_MIN)
    for (int64_t blk = 0; blk < blocks; blk++) {
        const int64_t j0 = blk * COL_BLOCK, nj = out - j0 < COL_BLOCK ? out - j0 : COL_BLOCK;
        float acc[COL_BLOCK] = {0};
        for (int64_t r = 0; r < B; r++) {
            const float *row = dy + r * out + j0; /* (nj) */
            for (int64_t j = 0; j < nj; j++) acc[j] += row[j];
        }
        for (int64_t j = 0; j < nj; j++) db[j0 + j] += acc[j];
    }
}

/* not multiversioned itself: GCC 12 makes the resolver of a non-static clone public */
void dm_bias_backward(float *db, const float *dy, int64_t B, int64_t out) {
    dm_bias_backward_kernel(db, dy, B, out);
}

/* dx (B, in) += dy W for a small out: out row updates of each dx row. */
DM_VECTOR_KERNEL
static void backward_dx_skinny(float *dx, const float *dy, const float *w, int64_t B, int64_t in,
                               int64_t out) {
#pragma omp parallel for schedule(static) if (B * in >= DM_PARALLEL_MIN)
    for (int64_t r = 0; r < B; r++) {
        float *dxr = dx + r * in; /* (in) */
        for (int64_t o = 0; o < out; o++) {
            const float g = dy[r * out + o];
            const float *wo = w + o * in; /* (in) */
            for (int64_t i = 0; i < in; i++) dxr[i] += g * wo[i];
        }
    }
}

DM_VECTOR_KERNEL
static void dm_linear_backward_impl(float *dx, float *dw, float *db, const float *dy, const float *x,
                        const float *w, int64_t B, int64_t in, int64_t out) {
    if (out <= SKINNY_OUT) {
        if (dx) backward_dx_skinny(dx, dy, w, B, in, out);
        dm_gemm_tn_skinny(dw, in, 1, dy, out, x, in, B, out, in);
    } else {
        if (dx) dm_sgemm(false, false, B, in, out, 1.0f, dy, out, w, in, 1.0f, dx, in);
        dm_sgemm(true, false, out, in, B, 1.0f, dy, out, x, in, 1.0f, dw, in);
    }
    if (db) dm_bias_backward(db, dy, B, out);
}

void dm_linear_forward(float *y, const float *x, const float *w, const float *b, int64_t B,
                       int64_t in, int64_t out) {
    const double t0 = dm_profile_begin();
    dm_linear_forward_impl(y, x, w, b, B, in, out);
    dm_profile_end(DM_PROFILE_LINEAR, t0);
}

void dm_linear_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                        const float *w, int64_t B, int64_t in, int64_t out) {
    const double t0 = dm_profile_begin();
    dm_linear_backward_impl(dx, dw, db, dy, x, w, B, in, out);
    dm_profile_end(DM_PROFILE_LINEAR, t0);
}
