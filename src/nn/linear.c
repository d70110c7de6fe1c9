/* Fully connected layer, y = x W^T + b, with PyTorch's (out, in) weight layout. */
#include "nn.h"

#include <string.h>

void dm_linear_forward(float *y, const float *x, const float *w, const float *b, int64_t B,
                       int64_t in, int64_t out) {
    if (b) {
        /* Seed every row with the bias and let the GEMM accumulate onto it (beta = 1): OpenBLAS
         * clears C itself when beta = 0, so this costs no extra pass over y. */
#pragma omp parallel for schedule(static) if (B * out >= DM_PARALLEL_MIN)
        for (int64_t r = 0; r < B; r++) memcpy(y + r * out, b, (size_t)out * sizeof *y);
    }
    dm_sgemm(false, true, B, out, in, 1.0f, x, in, w, in, b ? 1.0f : 0.0f, y, out);
}

/* Column blocks for the bias gradient: each thread owns whole columns, so no reduction. */
#define DB_BLOCK 64

void dm_bias_backward(float *db, const float *dy, int64_t B, int64_t out) {
    const int64_t blocks = (out + DB_BLOCK - 1) / DB_BLOCK;
#pragma omp parallel for schedule(static) if (B * out >= DM_PARALLEL_MIN)
    for (int64_t blk = 0; blk < blocks; blk++) {
        const int64_t j0 = blk * DB_BLOCK;
        const int64_t nj = out - j0 < DB_BLOCK ? out - j0 : DB_BLOCK;
        float acc[DB_BLOCK] = {0};
        for (int64_t r = 0; r < B; r++) {
            const float *row = dy + r * out + j0; /* (nj) */
            for (int64_t j = 0; j < nj; j++) acc[j] += row[j];
        }
        for (int64_t j = 0; j < nj; j++) db[j0 + j] += acc[j];
    }
}

void dm_linear_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                        const float *w, int64_t B, int64_t in, int64_t out) {
    if (dx) dm_sgemm(false, false, B, in, out, 1.0f, dy, out, w, in, 1.0f, dx, in);
    dm_sgemm(true, false, out, in, B, 1.0f, dy, out, x, in, 1.0f, dw, in);
    if (db) dm_bias_backward(db, dy, B, out);
}
