/* Multi-head attention core: P = softmax(Q K^T * scale), O = P V, per (example, head).
 *
 * Two implementations of each pass, chosen by the head size d:
 * - d <= SMALL_D_MAX: hand-written kernels. With d = 8 (the 28x28 UNet) every product has an
 *   inner dimension of 8, where OpenBLAS spends its time packing; here ROWS query rows at a time
 *   are scored against all keys with the accumulators in registers, each row's softmax runs
 *   while the row is in L1, and O (or dQ) comes from the same rows.
 * - larger d: dm_sgemm on blocks of query rows, the head's column slice addressed through the
 *   leading dimension C, the softmax between the two products.
 * Measured on the project's 2-core EPYC at B = 128, N = 196, 8 heads, d = 8, two threads
 * (training forward / backward / inference forward): hand-written 19.0 / 24.2 / 15.0 ms,
 * GEMM path 21-23 / 24.6-25.2 / 19-21 ms. Per head in L1/L2 the scores cost 0.105 ns per entry by
 * hand against 0.21 through OpenBLAS; what is left is the softmax's exp (0.2 ns) and the traffic
 * of P itself (157 MB written, then read, at these sizes). */
#include "attention.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#define SMALL_D_MAX 16 /* largest head size of the hand-written kernels */
#define VEC 16         /* floats per vector step of those kernels; their rows are padded to it */
#define ROWS 8         /* query rows per register block: 8 independent FMA chains */
/* The small-d backward keeps dK^T, dV^T, V^T and two blocks of rows in L1; beyond this working
 * set (long sequences) the GEMM path's backward is faster (measured at N = 1024). */
#define SMALL_BWD_MAX_BYTES 49152
#define GEMM_BLOCK_FLOATS 32768 /* a block of scores (rows x N) of the GEMM path, about L2 */
/* The OpenMP team pays off from about this many multiply-adds (a few tens of microseconds). */
#define ATTN_PARALLEL_MIN 200000

/* a * b + c as one fused instruction where the target has FMA: -std=c11 turns off GCC's own
 * contraction, and the kernels below are multiply-add bound */
#ifdef __FMA__
#define MADD(a, b, c) fmaf(a, b, c)
#else
#define MADD(a, b, c) ((a) * (b) + (c))
#endif

static inline int64_t round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

static inline bool forward_is_small(int64_t d) { return d <= SMALL_D_MAX; }

static inline bool backward_is_small(int64_t N, int64_t d) {
    return d <= SMALL_D_MAX &&
           (3 * d + 2 * ROWS) * round_up(N, VEC) * (int64_t)sizeof(float) <= SMALL_BWD_MAX_BYTES;
}

bool dm_attention_backward_remakes(int64_t N, int64_t d) { return backward_is_small(N, d); }

/* Query rows per block of the GEMM path. */
static inline int64_t gemm_rows(int64_t N) {
    const int64_t rows = GEMM_BLOCK_FLOATS / N;
    return rows < 1 ? 1 : rows > N ? N : rows;
}

/* Scratch of one thread, floats, for whichever paths forward and backward take. */
static size_t per_thread_floats(int64_t N, int64_t d) {
    const int64_t Np = round_up(N, VEC), gemm = gemm_rows(N) * N;
    const int64_t fwd = forward_is_small(d) ? (d + ROWS) * Np : gemm;
    /* the small backward: V^T, dK^T, dV^T, two blocks of rows, and K^T to remake P */
    const int64_t bwd = backward_is_small(N, d) ? (4 * d + 2 * ROWS) * Np : gemm;
    /* whole cache lines, so threads never share one */
    return (size_t)round_up(fwd > bwd ? fwd : bwd, 16);
}

size_t dm_attention_work_floats(int64_t B, int64_t N, int64_t heads, int64_t d) {
    return (size_t)omp_get_max_threads() * per_thread_floats(N, d);
}

/* exp(x) for x <= 0 (softmax arguments), vectorisable: 2^k e^r with k = round(x / ln 2),
 * |r| <= ln(2) / 2, e^r from Cephes' degree-7 polynomial (about 1 ulp); ln 2 split in two
 * (Cody-Waite). Below -87 the result is clamped near 1e-38, which is 0 next to the row's
 * largest term, 1. glibc's expf does not vectorise without -ffast-math. */
static inline float exp_nonpositive(float x) {
    x = x < -87.0f ? -87.0f : x;
    const float shifter = 0x1.8p23f; /* adding it rounds to an integer kept in the low bits */
    float kf = MADD(x, 1.44269504088896341f, shifter);
    uint32_t kbits;
    memcpy(&kbits, &kf, sizeof kbits);
    kf -= shifter;
    float r = MADD(kf, -0.693359375f, x);
    r = MADD(kf, 2.12194440e-4f, r);
    float p = 1.9875691500e-4f;
    p = MADD(p, r, 1.3981999507e-3f);
    p = MADD(p, r, 8.3334519073e-3f);
    p = MADD(p, r, 4.1665795894e-2f);
    p = MADD(p, r, 1.6666665459e-1f);
    p = MADD(p, r, 5.0000001201e-1f);
    p = MADD(p * r, r, r) + 1.0f;
    uint32_t sbits = (kbits - 0x4B400000u + 127u) << 23;
    float scale;
    memcpy(&scale, &sbits, sizeof scale);
    return p * scale;
}

static inline float row_max(const float *restrict s, int64_t n) {
    float m = -INFINITY;
#pragma omp simd reduction(max : m)
    for (int64_t j = 0; j < n; j++) m = s[j] > m ? s[j] : m;
    return m;
}

/* s = exp(s - m) in place; returns the sum */
static inline float exp_row(float *restrict s, int64_t n, float m) {
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < n; j++) {
        s[j] = exp_nonpositive(s[j] - m);
        sum += s[j];
    }
    return sum;
}

/* Row-wise softmax of s (n), in place: subtracting the max keeps every exp <= 1. */
static inline void softmax_row(float *restrict s, int64_t n) {
    const float inv = 1.0f / exp_row(s, n, row_max(s, n));
#pragma omp simd
    for (int64_t j = 0; j < n; j++) s[j] *= inv;
}

/* ---- small head size: hand-written kernels; rows of keys padded to Np = N rounded up to VEC */

/* xt (d, Np) = the (N, d) column slice at x (row stride C), transposed, zero beyond N */
/* The softmax backward of one row, in place: ds <- p * (ds - sum(p * ds)), ds = dL/dP on entry. */
static inline void softmax_row_backward(float *restrict ds, const float *restrict p, int64_t n) {
    float t = 0.0f;
#pragma omp simd reduction(+ : t)
    for (int64_t j = 0; j < n; j++) t += p[j] * ds[j];
#pragma omp simd
    for (int64_t j = 0; j < n; j++) ds[j] = p[j] * (ds[j] - t);
}

DM_VECTOR_KERNEL
static void transpose_slice(float *restrict xt, const float *restrict x, int64_t N, int64_t Np,
                            int64_t C, int64_t d) {
    for (int64_t j = 0; j < N; j++)
        for (int64_t k = 0; k < d; k++) xt[k * Np + j] = x[j * C + k];
    for (int64_t k = 0; k < d; k++)
        for (int64_t j = N; j < Np; j++) xt[k * Np + j] = 0.0f;
}

/* s[r][j] = alpha * sum_k a[r][k] bt[k][j] for ROWS rows a[r] (d each) and j < Np: VEC columns
 * at a time, the ROWS x VEC accumulators in registers. */
static inline __attribute__((always_inline)) void rows_times_bt(float *restrict s,
                                                                const float *const a[ROWS],
                                                                float alpha,
                                                                const float *restrict bt,
                                                                int64_t Np, int64_t d) {
    for (int64_t j0 = 0; j0 < Np; j0 += VEC) {
        float acc[ROWS][VEC] = {{0}};
        for (int64_t k = 0; k < d; k++) {
            const float *bk = bt + k * Np + j0;
            for (int r = 0; r < ROWS; r++) {
                const float ark = a[r][k];
#pragma omp simd
                for (int jj = 0; jj < VEC; jj++) acc[r][jj] = MADD(ark, bk[jj], acc[r][jj]);
            }
        }
        for (int r = 0; r < ROWS; r++)
#pragma omp simd
            for (int jj = 0; jj < VEC; jj++) s[r * Np + j0 + jj] = alpha * acc[r][jj];
    }
}

/* out[r][k] (+)= alpha[r] * sum_{j < N} p[r][j] x[j][k] for ROWS rows of p (row stride Np) and
 * the (N, d) column slice x (row stride C); `add` selects += (gradients) or = (forward). */
static inline __attribute__((always_inline)) void rows_times_x(float *const out[ROWS], bool add,
                                                               const float alpha[ROWS],
                                                               const float *restrict p, int64_t Np,
                                                               const float *restrict x, int64_t C,
                                                               int64_t N, int64_t d, int nrows) {
    float acc[ROWS][SMALL_D_MAX] = {{0}};
    for (int64_t j = 0; j < N; j++) {
        const float *xj = x + j * C;
        for (int r = 0; r < ROWS; r++) {
            const float prj = p[r * Np + j];
#pragma omp simd
            for (int64_t k = 0; k < d; k++) acc[r][k] = MADD(prj, xj[k], acc[r][k]);
        }
    }
    for (int r = 0; r < nrows; r++)
        for (int64_t k = 0; k < d; k++)
            out[r][k] = (add ? out[r][k] : 0.0f) + alpha[r] * acc[r][k];
}

/* exp(s - max) of a row of scores in place, the padding [N, Np) included (set to -inf first:
 * exp gives about 1e-38 there); returns 1 / their sum. */
static inline float softmax_numerators(float *s, int64_t N, int64_t Np) {
    for (int64_t j = N; j < Np; j++) s[j] = -INFINITY;
    return 1.0f / exp_row(s, Np, row_max(s, Np));
}

/* P for ROWS query rows (row stride Np) from the keys transposed, with the same operations as
 * the forward, so the same bits. */
static inline __attribute__((always_inline)) void remake_rows(float *p, const float *const q[ROWS],
                                                              float scale, const float *kt,
                                                              int64_t N, int64_t Np, int64_t d) {
    rows_times_bt(p, q, scale, kt, Np, d);
    for (int r = 0; r < ROWS; r++) {
        float *s = p + r * Np;
        const float a = softmax_numerators(s, N, Np);
#pragma omp simd
        for (int64_t j = 0; j < N; j++) s[j] *= a;
    }
}

/* One (example, head) forward; q, k, v, o point at the head's first column, row stride C. */
static inline __attribute__((always_inline)) void forward_head_small(
    float *o, float *probs, const float *q, const float *k, const float *v, int64_t N, int64_t C,
    int64_t d, float scale, float *scratch) {
    const int64_t Np = round_up(N, VEC);
    float *kt = scratch;         /* (d, Np) */
    float *rows = kt + d * Np;   /* (ROWS, Np) */
    transpose_slice(kt, k, N, Np, C, d);
    for (int64_t i0 = 0; i0 < N; i0 += ROWS) {
        const int nrows = N - i0 < ROWS ? (int)(N - i0) : ROWS;
        const float *qrow[ROWS];
        float *orow[ROWS];
        for (int r = 0; r < ROWS; r++) {
            const int64_t i = i0 + (r < nrows ? r : nrows - 1); /* spare rows repeat the last */
            qrow[r] = q + i * C;
            orow[r] = o + i * C;
        }
        if (probs && i0 + ROWS < N) { /* write-prefetch the next block's rows of P */
            char *next = (char *)(probs + (i0 + ROWS) * N);
            const int64_t bytes = (N - i0 - ROWS < ROWS ? N - i0 - ROWS : ROWS) * N * 4;
            for (int64_t at = 0; at < bytes; at += 64) __builtin_prefetch(next + at, 1, 0);
        }
        rows_times_bt(rows, qrow, scale, kt, Np, d);
        /* softmax without its final division: O is scaled once per row instead */
        float inv_sum[ROWS];
        for (int r = 0; r < ROWS; r++) {
            float *s = rows + r * Np;
            inv_sum[r] = softmax_numerators(s, N, Np);
            if (probs && r < nrows) {
                float *pr = probs + (i0 + r) * N;
                const float a = inv_sum[r];
#pragma omp simd
                for (int64_t j = 0; j < N; j++) pr[j] = s[j] * a;
            }
        }
        rows_times_x(orow, false, inv_sum, rows, Np, v, C, N, d, nrows);
    }
}

/* One (example, head) backward, adding into dq, dk, dv (head columns, row stride C). */
static inline __attribute__((always_inline)) void backward_head_small(
    float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
    const float *v, const float *probs, int64_t N, int64_t C, int64_t d, float scale,
    float *scratch) {
    const int64_t Np = round_up(N, VEC);
    float *vt = scratch;         /* (d, Np) values, transposed */
    float *dkt = vt + d * Np;    /* (d, Np) dK^T accumulated over query rows */
    float *dvt = dkt + d * Np;   /* (d, Np) dV^T */
    float *prow = dvt + d * Np;  /* (ROWS, Np) P rows, zero-padded */
    float *dprow = prow + ROWS * Np; /* (ROWS, Np) dP, then dS */
    float *kt = dprow + ROWS * Np;   /* (d, Np) keys, transposed, to remake P */
    transpose_slice(vt, v, N, Np, C, d);
    if (!probs) transpose_slice(kt, k, N, Np, C, d);
    memset(dkt, 0, (size_t)(2 * d * Np) * sizeof *dkt);
    for (int64_t i0 = 0; i0 < N; i0 += ROWS) {
        const int nrows = N - i0 < ROWS ? (int)(N - i0) : ROWS;
        const float *dorow[ROWS];
        const float *qrow[ROWS];
        float *dqrow[ROWS];
        for (int r = 0; r < ROWS; r++) {
            const int64_t i = i0 + (r < nrows ? r : nrows - 1);
            dorow[r] = dout + i * C;
            qrow[r] = q + i * C;
            dqrow[r] = dq + i * C;
            if (probs && r < nrows) memcpy(prow + r * Np, probs + i * N, (size_t)N * sizeof *prow);
        }
        if (!probs) /* P of these rows, as the forward computes it, bit for bit */
            remake_rows(prow, qrow, scale, kt, N, Np, d);
        /* spare rows get P = 0, so they add nothing below */
        for (int r = 0; r < ROWS; r++)
            for (int64_t j = (r < nrows ? N : 0); j < Np; j++) prow[r * Np + j] = 0.0f;
        /* the next block's P rows stream in from memory while this block computes */
        if (probs && i0 + ROWS < N) {
            const char *next = (const char *)(probs + (i0 + ROWS) * N);
            const int64_t bytes = (N - i0 - ROWS < ROWS ? N - i0 - ROWS : ROWS) * N * 4;
            for (int64_t at = 0; at < bytes; at += 64) __builtin_prefetch(next + at, 0, 0);
        }
        /* dP = dO V^T */
        rows_times_bt(dprow, dorow, 1.0f, vt, Np, d);
        /* dS = P (dP - rowsum(P dP)) */
        for (int r = 0; r < ROWS; r++) softmax_row_backward(dprow + r * Np, prow + r * Np, Np);
        /* dV^T += dO^T P, dK^T += scale Q^T dS over these rows */
        for (int64_t c = 0; c < d; c++) {
            float dof[ROWS], qf[ROWS];
            for (int r = 0; r < ROWS; r++) {
                dof[r] = dorow[r][c];
                qf[r] = scale * qrow[r][c];
            }
            float *dvc = dvt + c * Np, *dkc = dkt + c * Np;
#pragma omp simd
            for (int64_t j = 0; j < Np; j++) {
                float sv = dvc[j], sk = dkc[j];
                for (int r = 0; r < ROWS; r++) {
                    sv = MADD(dof[r], prow[r * Np + j], sv);
                    sk = MADD(qf[r], dprow[r * Np + j], sk);
                }
                dvc[j] = sv;
                dkc[j] = sk;
            }
        }
        /* dQ += scale dS K */
        float scales[ROWS];
        for (int r = 0; r < ROWS; r++) scales[r] = scale;
        rows_times_x(dqrow, true, scales, dprow, Np, k, C, N, d, nrows);
    }
    for (int64_t j = 0; j < N; j++)
        for (int64_t c = 0; c < d; c++) {
            dk[j * C + c] += dkt[c * Np + j];
            dv[j * C + c] += dvt[c * Np + j];
        }
}

/* ---- larger head size: dm_sgemm on blocks of query rows */

DM_VECTOR_KERNEL
static void forward_head_gemm(float *o, float *probs, const float *q, const float *k,
                              const float *v, int64_t N, int64_t C, int64_t d, float scale,
                              float *scratch) {
    const int64_t block = gemm_rows(N);
    for (int64_t i0 = 0; i0 < N; i0 += block) {
        const int64_t nb = N - i0 < block ? N - i0 : block;
        float *s = probs ? probs + i0 * N : scratch; /* (nb, N) */
        dm_sgemm(false, true, nb, N, d, scale, q + i0 * C, C, k, C, 0.0f, s, N);
        for (int64_t r = 0; r < nb; r++) softmax_row(s + r * N, N);
        dm_sgemm(false, false, nb, d, N, 1.0f, s, N, v, C, 0.0f, o + i0 * C, C);
    }
}

DM_VECTOR_KERNEL
static void backward_head_gemm(float *dq, float *dk, float *dv, const float *dout, const float *q,
                               const float *k, const float *v, const float *probs, int64_t N,
                               int64_t C, int64_t d, float scale, float *scratch) {
    const int64_t block = gemm_rows(N);
    for (int64_t i0 = 0; i0 < N; i0 += block) {
        const int64_t nb = N - i0 < block ? N - i0 : block;
        const float *p = probs + i0 * N; /* (nb, N) */
        float *ds = scratch;             /* (nb, N): dP, then dS */
        dm_sgemm(false, true, nb, N, d, 1.0f, dout + i0 * C, C, v, C, 0.0f, ds, N);
        for (int64_t r = 0; r < nb; r++) softmax_row_backward(ds + r * N, p + r * N, N);
        dm_sgemm(false, false, nb, d, N, scale, ds, N, k, C, 1.0f, dq + i0 * C, C);
        dm_sgemm(true, false, N, d, nb, scale, ds, N, q + i0 * C, C, 1.0f, dk, C);
        dm_sgemm(true, false, N, d, nb, 1.0f, p, N, dout + i0 * C, C, 1.0f, dv, C);
    }
}

/* The small-d kernels with d fixed at compile time for the common head sizes, so the inner loops
 * over d unroll; other sizes take the generic instance. */
DM_VECTOR_KERNEL
static void forward_small(float *o, float *probs, const float *q, const float *k, const float *v,
                          int64_t N, int64_t C, int64_t d, float scale, float *scratch) {
    switch (d) {
    case 4: forward_head_small(o, probs, q, k, v, N, C, 4, scale, scratch); break;
    case 8: forward_head_small(o, probs, q, k, v, N, C, 8, scale, scratch); break;
    case 16: forward_head_small(o, probs, q, k, v, N, C, 16, scale, scratch); break;
    default: forward_head_small(o, probs, q, k, v, N, C, d, scale, scratch); break;
    }
}

DM_VECTOR_KERNEL
static void backward_small(float *dq, float *dk, float *dv, const float *dout, const float *q,
                           const float *k, const float *v, const float *probs, int64_t N,
                           int64_t C, int64_t d, float scale, float *scratch) {
    switch (d) {
    case 4: backward_head_small(dq, dk, dv, dout, q, k, v, probs, N, C, 4, scale, scratch); break;
    case 8: backward_head_small(dq, dk, dv, dout, q, k, v, probs, N, C, 8, scale, scratch); break;
    case 16:
        backward_head_small(dq, dk, dv, dout, q, k, v, probs, N, C, 16, scale, scratch);
        break;
    default: backward_head_small(dq, dk, dv, dout, q, k, v, probs, N, C, d, scale, scratch); break;
    }
}

DM_VECTOR_KERNEL
static void dm_attention_forward_impl(float *o, float *probs, const float *q, const float *k, const float *v,
                          int64_t B, int64_t N, int64_t heads, int64_t d, float scale,
                          float *work) {
    const int64_t C = heads * d;
    const size_t per_thread = per_thread_floats(N, d);
    const bool small = forward_is_small(d);
#pragma omp parallel if (B * heads * N * N * d >= ATTN_PARALLEL_MIN)
    {
        float *scratch = work + (size_t)omp_get_thread_num() * per_thread;
#pragma omp for schedule(static)
        for (int64_t bh = 0; bh < B * heads; bh++) {
            const int64_t b = bh / heads, h = bh % heads;
            const int64_t at = b * N * C + h * d; /* the head's first column of example b */
            float *p = probs ? probs + bh * N * N : NULL;
            if (small)
                forward_small(o + at, p, q + at, k + at, v + at, N, C, d, scale, scratch);
            else
                forward_head_gemm(o + at, p, q + at, k + at, v + at, N, C, d, scale, scratch);
        }
    }
}

DM_VECTOR_KERNEL
static void dm_attention_backward_impl(float *dq, float *dk, float *dv, const float *do_, const float *q,
                           const float *k, const float *v, const float *probs, int64_t B, int64_t N,
                           int64_t heads, int64_t d, float scale, float *work) {
    const int64_t C = heads * d;
    const size_t per_thread = per_thread_floats(N, d);
    const bool small = backward_is_small(N, d);
    assert(probs || small);
#pragma omp parallel if (B * heads * N * N * d >= ATTN_PARALLEL_MIN)
    {
        float *scratch = work + (size_t)omp_get_thread_num() * per_thread;
#pragma omp for schedule(static)
        for (int64_t bh = 0; bh < B * heads; bh++) {
            const int64_t b = bh / heads, h = bh % heads;
            const int64_t at = b * N * C + h * d;
            const float *p = probs ? probs + bh * N * N : NULL;
            if (small)
                backward_small(dq + at, dk + at, dv + at, do_ + at, q + at, k + at, v + at, p, N,
                               C, d, scale, scratch);
            else
                backward_head_gemm(dq + at, dk + at, dv + at, do_ + at, q + at, k + at, v + at, p,
                                   N, C, d, scale, scratch);
        }
    }
}

/* ---- naive references in double */

void dm_attention_forward_ref(float *o, float *probs, const float *q, const float *k,
                              const float *v, int64_t B, int64_t N, int64_t heads, int64_t d,
                              float scale) {
    const int64_t C = heads * d;
    double *p = malloc((size_t)N * sizeof *p);
    assert(p);
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < heads; h++) {
            const int64_t at = b * N * C + h * d;
            for (int64_t i = 0; i < N; i++) {
                double m = -INFINITY, sum = 0.0;
                for (int64_t j = 0; j < N; j++) {
                    double s = 0.0;
                    for (int64_t c = 0; c < d; c++)
                        s += (double)q[at + i * C + c] * k[at + j * C + c];
                    p[j] = s * scale;
                    m = p[j] > m ? p[j] : m;
                }
                for (int64_t j = 0; j < N; j++) sum += p[j] = exp(p[j] - m);
                for (int64_t j = 0; j < N; j++) {
                    p[j] /= sum;
                    probs[((b * heads + h) * N + i) * N + j] = (float)p[j];
                }
                for (int64_t c = 0; c < d; c++) {
                    double acc = 0.0;
                    for (int64_t j = 0; j < N; j++) acc += p[j] * v[at + j * C + c];
                    o[at + i * C + c] = (float)acc;
                }
            }
        }
    free(p);
}

void dm_attention_backward_ref(float *dq, float *dk, float *dv, const float *do_, const float *q,
                               const float *k, const float *v, const float *probs, int64_t B,
                               int64_t N, int64_t heads, int64_t d, float scale) {
    const int64_t C = heads * d;
    double *ds = malloc((size_t)(N * N) * sizeof *ds); /* (N, N) dS of one head */
    assert(ds);
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < heads; h++) {
            const int64_t at = b * N * C + h * d;
            const float *p = probs + (b * heads + h) * N * N;
            for (int64_t i = 0; i < N; i++) {
                double t = 0.0;
                for (int64_t j = 0; j < N; j++) {
                    double dp = 0.0;
                    for (int64_t c = 0; c < d; c++)
                        dp += (double)do_[at + i * C + c] * v[at + j * C + c];
                    ds[i * N + j] = dp;
                    t += p[i * N + j] * dp;
                }
                for (int64_t j = 0; j < N; j++) ds[i * N + j] = p[i * N + j] * (ds[i * N + j] - t);
            }
            for (int64_t c = 0; c < d; c++) {
                for (int64_t i = 0; i < N; i++) {
                    double acc = 0.0;
                    for (int64_t j = 0; j < N; j++) acc += ds[i * N + j] * k[at + j * C + c];
                    dq[at + i * C + c] += (float)(scale * acc);
                }
                for (int64_t j = 0; j < N; j++) {
                    double acc_k = 0.0, acc_v = 0.0;
                    for (int64_t i = 0; i < N; i++) {
                        acc_k += ds[i * N + j] * q[at + i * C + c];
                        acc_v += (double)p[i * N + j] * do_[at + i * C + c];
                    }
                    dk[at + j * C + c] += (float)(scale * acc_k);
                    dv[at + j * C + c] += (float)acc_v;
                }
            }
        }
    free(ds);
}

void dm_attention_forward(float *o, float *probs, const float *q, const float *k, const float *v,
                          int64_t B, int64_t N, int64_t heads, int64_t d, float scale,
                          float *work) {
    const double t0 = dm_profile_begin();
    dm_attention_forward_impl(o, probs, q, k, v, B, N, heads, d, scale, work);
    dm_profile_end(DM_PROFILE_ATTENTION, t0);
}

void dm_attention_backward(float *dq, float *dk, float *dv, const float *do_, const float *q,
                           const float *k, const float *v, const float *probs, int64_t B, int64_t N,
                           int64_t heads, int64_t d, float scale, float *work) {
    const double t0 = dm_profile_begin();
    dm_attention_backward_impl(dq, dk, dv, do_, q, k, v, probs, B, N, heads, d, scale, work);
    dm_profile_end(DM_PROFILE_ATTENTION, t0);
}
