/* 2-D convolution, NCHW: naive references and the fast path (im2col + sgemm, threads over the
 * batch). dm_conv2d_forward and dm_conv2d_backward offer each call to the oneDNN backend first
 * (conv2d_dnnl.c); what it declines runs here.
 *
 * Fast path, per group of G images handled by one thread (K = cin k k, N = G Ho Wo):
 *   forward   y (cout, N)     = W (cout, K) col (K, N) + b
 *   backward  dW^T (K, cout) += col dy^T          (transposed: the faster shape for OpenBLAS)
 *             dcol (K, N)     = W^T dy, scattered back into dx by col2im (adding), or, for a
 *             size-keeping 3x3 with cin > cout, dx += W_flipped (cin, 9 cout) im2col(dy)
 * col holds the G images side by side (image g in columns [g Ho Wo, (g + 1) Ho Wo)), so small
 * images (7x7, 14x14) make one GEMM wide enough for the BLAS kernels; G > 1 costs a copy of the
 * output (forward) or a gather of dy (backward) through a (cout, N) buffer. A 1x1 stride-1
 * convolution needs no col at all: each image already is the (cin, HW) matrix. A size-keeping
 * 3x3 with at most FEW_OUT_MAX outputs (a UNet's conv_out) skips the GEMM: shifted
 * multiply-adds over the planes.
 * Weight and bias gradients go to per-thread partial sums in the scratch buffer, added up in
 * thread order at the end: no atomics, and the same result on every run at a given thread count.
 * sgemm called inside the parallel region runs single-threaded (OpenBLAS' OpenMP build checks
 * omp_in_parallel); when the batch gives a single group, the loop runs serially and OpenBLAS
 * threads each GEMM instead. Scratch layout: [flipped weights | thread 0 | thread 1 | ...], each
 * thread's block [col | buf | dW^T partial | db partial]. */
#include "conv2d.h"
#include "conv2d_dnnl.h"

#include <omp.h>
#include <stdio.h>
#include <string.h>

/* Columns per GEMM that small images are batched up to (G Ho Wo >= this, G a power of two). */
#ifndef CONV_TARGET_COLS
#define CONV_TARGET_COLS 784
#endif
/* Output channels up to which a size-keeping 3x3 convolution skips im2col and the GEMM (a
 * GEMM with M = cout this small runs at GEMV speed, bound by the pass over col). */
#define FEW_OUT_MAX 4
/* Multiply-adds below which the team is not worth waking. */
#define CONV_PARALLEL_MIN_MACS (1 << 20)
/* Scratch pieces are rounded up to whole 64-byte lines so threads never share one. */
#define FLOATS_PER_LINE 16

static inline size_t round_line(size_t n) {
    return (n + FLOATS_PER_LINE - 1) / FLOATS_PER_LINE * FLOATS_PER_LINE;
}

/* ---------------------------------------------------------------------------------------- */
/* Naive references                                                                         */

void dm_conv2d_forward_ref(float *y, const float *x, const float *w, const float *b,
                           const dm_conv2d_shape *s, int64_t B) {
    const int64_t Ho = dm_conv2d_out_h(s), Wo = dm_conv2d_out_w(s), k = s->k;
    for (int64_t n = 0; n < B; n++)
        for (int64_t co = 0; co < s->cout; co++)
            for (int64_t oy = 0; oy < Ho; oy++)
                for (int64_t ox = 0; ox < Wo; ox++) {
                    double acc = b ? b[co] : 0.0;
                    for (int64_t ci = 0; ci < s->cin; ci++)
                        for (int64_t ky = 0; ky < k; ky++) {
                            const int64_t iy = oy * s->stride - s->pad + ky;
                            if (iy < 0 || iy >= s->H) continue;
                            for (int64_t kx = 0; kx < k; kx++) {
                                const int64_t ix = ox * s->stride - s->pad + kx;
                                if (ix < 0 || ix >= s->W) continue;
                                acc += (double)w[((co * s->cin + ci) * k + ky) * k + kx] *
                                       x[((n * s->cin + ci) * s->H + iy) * s->W + ix];
                            }
                        }
                    y[((n * s->cout + co) * Ho + oy) * Wo + ox] = (float)acc;
                }
}

void dm_conv2d_backward_ref(float *dx, float *dw, float *db, const float *dy, const float *x,
                            const float *w, const dm_conv2d_shape *s, int64_t B) {
    const int64_t Ho = dm_conv2d_out_h(s), Wo = dm_conv2d_out_w(s), k = s->k;
    const int64_t cin = s->cin, cout = s->cout, H = s->H, W = s->W, st = s->stride;
    if (db)
        for (int64_t co = 0; co < cout; co++) {
            double acc = 0.0;
            for (int64_t n = 0; n < B; n++)
                for (int64_t p = 0; p < Ho * Wo; p++) acc += dy[(n * cout + co) * Ho * Wo + p];
            db[co] += (float)acc;
        }
    /* dw[co, ci, ky, kx] = sum over images and outputs of dy * the input it multiplied */
    for (int64_t co = 0; co < cout; co++)
        for (int64_t ci = 0; ci < cin; ci++)
            for (int64_t ky = 0; ky < k; ky++)
                for (int64_t kx = 0; kx < k; kx++) {
                    double acc = 0.0;
                    for (int64_t n = 0; n < B; n++)
                        for (int64_t oy = 0; oy < Ho; oy++) {
                            const int64_t iy = oy * st - s->pad + ky;
                            if (iy < 0 || iy >= H) continue;
                            for (int64_t ox = 0; ox < Wo; ox++) {
                                const int64_t ix = ox * st - s->pad + kx;
                                if (ix < 0 || ix >= W) continue;
                                acc += (double)dy[((n * cout + co) * Ho + oy) * Wo + ox] *
                                       x[((n * cin + ci) * H + iy) * W + ix];
                            }
                        }
                    dw[((co * cin + ci) * k + ky) * k + kx] += (float)acc;
                }
    if (!dx) return;
    /* dx[n, ci, iy, ix] = sum over the outputs (oy, ox) whose window covers (iy, ix):
     * oy stride = iy + pad - ky */
    for (int64_t n = 0; n < B; n++)
        for (int64_t ci = 0; ci < cin; ci++)
            for (int64_t iy = 0; iy < H; iy++)
                for (int64_t ix = 0; ix < W; ix++) {
                    double acc = 0.0;
                    for (int64_t co = 0; co < cout; co++)
                        for (int64_t ky = 0; ky < k; ky++) {
                            const int64_t ty = iy + s->pad - ky;
                            if (ty < 0 || ty % st || ty / st >= Ho) continue;
                            for (int64_t kx = 0; kx < k; kx++) {
                                const int64_t tx = ix + s->pad - kx;
                                if (tx < 0 || tx % st || tx / st >= Wo) continue;
                                acc += (double)dy[((n * cout + co) * Ho + ty / st) * Wo + tx / st] *
                                       w[((co * cin + ci) * k + ky) * k + kx];
                            }
                        }
                    dx[((n * cin + ci) * H + iy) * W + ix] += (float)acc;
                }
}

/* ---------------------------------------------------------------------------------------- */
/* Fast path                                                                                */

/* 1x1 pad 0 or 3x3 pad 1 at stride 1: the output has the input's size (the shortcuts taken for
 * this case assume taps at most one pixel off centre). */
static inline bool keeps_size(const dm_conv2d_shape *s) {
    return s->stride == 1 && 2 * s->pad + 1 == s->k && s->k <= 3;
}

/* How a call splits its work; a pure function of the shape, B and the thread count, so
 * dm_conv2d_work_floats and the passes agree. */
typedef struct {
    int64_t Ho, Wo, HWo; /* output size */
    int64_t K;           /* rows of col: cin k k */
    int64_t G;           /* images per GEMM */
    int64_t img_cols;    /* columns of col per image: HWo, or Ho Wh when phased */
    int64_t N;           /* columns of col: G img_cols */
    int64_t groups;      /* ceil(B / G) */
    bool direct;         /* 1x1 stride 1 pad 0, G = 1: x is col, no copy */
    bool few_out;        /* size-keeping 3x3 with few outputs: shifted axpys, no GEMM */
    bool dx_flipped;     /* size-keeping 3x3, cin > cout: dx as a convolution of dy */
    bool phased;         /* stride 2: col rows copied whole from the input's four phases */
    int64_t Hh, Wh, plane; /* phased: size of a phase plane, floats per plane (one of slack) */
    bool threaded;       /* groups spread over the team, each thread single-threaded sgemm */
    int threads;         /* omp_get_max_threads() */
    size_t shared_floats; /* scratch shared by the threads: the flipped weights */
    size_t col_floats, buf_floats, planes_floats, dw_floats, db_floats; /* per thread */
    size_t per_thread;
} conv_plan;

static conv_plan make_plan(const dm_conv2d_shape *s, int64_t B) {
    conv_plan p;
    p.Ho = dm_conv2d_out_h(s);
    p.Wo = dm_conv2d_out_w(s);
    p.HWo = p.Ho * p.Wo;
    p.K = s->cin * s->k * s->k;
    p.threads = omp_get_max_threads();
    /* batch small images up to the target width, but leave every thread a group */
    const int64_t per_thread = (B + p.threads - 1) / p.threads;
    p.few_out = s->k == 3 && keeps_size(s) && s->cout <= FEW_OUT_MAX;
    /* 1x1 stride-1 convolutions multiply the images in place: gathering them into a wider
     * GEMM costs more than it gains at depth K = cin (measured 15-30% slower at 7x7 and
     * 14x14) */
    p.direct = s->k == 1 && s->stride == 1 && s->pad == 0;
    p.G = 1;
    while (!p.few_out && !p.direct && p.G * p.HWo < CONV_TARGET_COLS && 2 * p.G <= per_thread)
        p.G *= 2;
    p.phased = s->stride == 2 && (s->k == 1 || s->k == 3) && s->pad <= 1;
    p.Hh = (s->H + 2 * s->pad + 1) / 2;
    p.Wh = (s->W + 2 * s->pad + 1) / 2;
    p.plane = p.Hh * p.Wh + 1;
    p.img_cols = p.phased ? p.Ho * p.Wh : p.HWo;
    p.N = p.G * p.img_cols;
    p.groups = B > 0 ? (B + p.G - 1) / p.G : 0;
    const double macs = (double)B * (double)p.HWo * (double)p.K * (double)s->cout;
    p.threaded = p.threads > 1 && p.groups > 1 && macs >= CONV_PARALLEL_MIN_MACS;
    p.dx_flipped = s->k == 3 && keeps_size(s) && s->cin > s->cout && !p.few_out;
    p.shared_floats = p.dx_flipped ? round_line((size_t)(s->cin * s->cout * 9)) : 0;
    p.col_floats = p.direct ? 0 : round_line((size_t)(p.K * p.N));
    if (p.few_out) /* masked copies of x (forward) or dy (backward) */
        p.col_floats = round_line((size_t)(2 * (s->cin > s->cout ? s->cin : s->cout) * p.HWo));
    /* the gathered dy; for dx_flipped also the group's dx before it is added to each image */
    const int64_t buf_rows = p.dx_flipped ? s->cin : s->cout;
    p.buf_floats = p.G > 1 || p.phased ? round_line((size_t)(buf_rows * p.N)) : 0;
    p.planes_floats = p.phased ? round_line((size_t)(4 * s->cin * p.plane)) : 0;
    p.dw_floats = round_line((size_t)(s->cout * p.K));
    p.db_floats = round_line((size_t)s->cout);
    p.per_thread = p.col_floats + p.buf_floats + p.planes_floats + p.dw_floats + p.db_floats;
    return p;
}

size_t dm_conv2d_work_floats(const dm_conv2d_shape *s, int64_t B) {
    const conv_plan p = make_plan(s, B);
    return p.shared_floats + p.per_thread * (size_t)(p.threaded ? p.threads : 1);
}

/* Columns [ox_lo, ox_hi) of an output row whose tap kx lands inside the input row. */
static inline void valid_cols(int64_t kx, int64_t W, int64_t Wo, int pad, int stride,
                              int64_t *ox_lo, int64_t *ox_hi) {
    const int64_t first = pad - kx;      /* ox * stride >= first */
    const int64_t last = W - 1 + pad - kx; /* ox * stride <= last */
    int64_t lo = first > 0 ? (first + stride - 1) / stride : 0;
    int64_t hi = last >= 0 ? last / stride + 1 : 0;
    if (hi > Wo) hi = Wo;
    if (lo > hi) lo = hi;
    *ox_lo = lo;
    *ox_hi = hi;
}

/* A stride-1 convolution that keeps the size (k = 2 pad + 1): tap (ky, kx) reads the input
 * plane shifted by (ky - pad) W + (kx - pad), so a col row is one contiguous copy of the plane,
 * except for the rows that fall into the padding and, for kx != pad, one edge column whose copied
 * values belong to the neighbouring image row. Rows [oy_lo, oy_hi) read inside the image; within
 * them the copy covers [q_lo, q_hi), clipped so it never reads outside the plane (the clipped
 * ends lie in the edge column). */
typedef struct {
    int64_t shift, oy_lo, oy_hi, q_lo, q_hi;
    int64_t edge; /* column that reads the padding, or -1 */
} same_tap;

static inline same_tap same_tap_at(const dm_conv2d_shape *s, int64_t ky, int64_t kx) {
    const int64_t H = s->H, W = s->W, dy = ky - s->pad, dx = kx - s->pad;
    same_tap t;
    t.shift = dy * W + dx;
    t.oy_lo = dy < 0 ? -dy : 0;
    t.oy_hi = dy > 0 ? H - dy : H;
    t.q_lo = t.oy_lo * W;
    t.q_hi = t.oy_hi * W;
    if (t.q_lo + t.shift < 0) t.q_lo = -t.shift;
    if (t.q_hi + t.shift > H * W) t.q_hi = H * W - t.shift;
    if (t.q_lo > H * W) t.q_lo = H * W; /* images a row or column thin */
    if (t.q_hi < t.q_lo) t.q_hi = t.q_lo;
    t.edge = dx < 0 ? 0 : dx > 0 ? W - 1 : -1;
    return t;
}

DM_VECTOR_KERNEL
static void im2col_same(float *col, int64_t ldc, const float *x, const dm_conv2d_shape *s) {
    const int64_t H = s->H, W = s->W, k = s->k;
    for (int64_t ci = 0; ci < s->cin; ci++) {
        const float *xc = x + ci * H * W;
        for (int64_t ky = 0; ky < k; ky++)
            for (int64_t kx = 0; kx < k; kx++) {
                float *row = col + ((ci * k + ky) * k + kx) * ldc;
                const same_tap t = same_tap_at(s, ky, kx);
                memset(row, 0, (size_t)(t.q_lo > 0 ? t.q_lo : 0) * sizeof *row);
                memcpy(row + t.q_lo, xc + t.q_lo + t.shift,
                       (size_t)(t.q_hi - t.q_lo) * sizeof *row);
                memset(row + t.q_hi, 0, (size_t)(H * W - t.q_hi) * sizeof *row);
                if (t.edge >= 0)
                    for (int64_t oy = t.oy_lo; oy < t.oy_hi; oy++) row[oy * W + t.edge] = 0.0f;
            }
    }
}

/* dxc[p] += rows[t][p - shift[t]] for p in [p0, p1), tap by tap, where the row holds it. */
DM_VECTOR_KERNEL
static void add_taps_clipped(float *dxc, const float *rows, int64_t ldc, const int64_t *shift,
                             int64_t HW, int64_t p0, int64_t p1) {
    for (int64_t t = 0; t < 9; t++) {
        const int64_t lo = p0 > shift[t] ? p0 : shift[t];
        const int64_t hi = p1 < HW + shift[t] ? p1 : HW + shift[t];
        const float *row = rows + t * ldc;
        for (int64_t p = lo; p < hi; p++) dxc[p] += row[p - shift[t]];
    }
}

/* dx (cin, H, W) += col2im(col) for the size-keeping stride-1 case. The entries of col that
 * belong to outputs reading the padding are zeroed first (col is scratch); then every tap's row
 * may be added whole, and the nine taps of a 3x3 kernel are summed in one pass over the plane
 * (nine shifted adds in turn would load and store dx nine times, and stall on each other's
 * misaligned stores: measured 2x slower). */
DM_VECTOR_KERNEL
static void col2im_same_add(float *dx, float *col, int64_t ldc, const dm_conv2d_shape *s) {
    const int64_t H = s->H, W = s->W, HW = H * W;
    if (s->k == 1) {
        for (int64_t ci = 0; ci < s->cin; ci++) {
            float *dxc = dx + ci * HW;
            const float *row = col + ci * ldc;
#pragma omp simd
            for (int64_t q = 0; q < HW; q++) dxc[q] += row[q];
        }
        return;
    }
    assert(s->k == 3);
    int64_t shift[9], p_lo = 0, p_hi = HW; /* [p_lo, p_hi): every tap reads inside its row */
    for (int64_t t = 0; t < 9; t++) {
        shift[t] = (t / 3 - 1) * W + (t % 3 - 1);
        if (shift[t] > p_lo) p_lo = shift[t];
        if (HW + shift[t] < p_hi) p_hi = HW + shift[t];
    }
    if (p_hi < p_lo) p_hi = p_lo;
    if (p_lo > HW) p_lo = p_hi = HW;
    for (int64_t ci = 0; ci < s->cin; ci++) {
        float *dxc = dx + ci * HW;
        float *rows = col + ci * 9 * ldc;
        for (int64_t t = 0; t < 9; t++) {
            float *row = rows + t * ldc;
            const same_tap tap = same_tap_at(s, t / 3, t % 3);
            for (int64_t q = 0; q < tap.oy_lo * W; q++) row[q] = 0.0f;
            for (int64_t q = tap.oy_hi * W; q < HW; q++) row[q] = 0.0f;
            if (tap.edge >= 0)
                for (int64_t oy = tap.oy_lo; oy < tap.oy_hi; oy++) row[oy * W + tap.edge] = 0.0f;
        }
        /* input p receives row t at q = p - shift[t], when that lies inside the row */
        add_taps_clipped(dxc, rows, ldc, shift, HW, 0, p_lo);
        const float *r0 = rows - shift[0], *r1 = rows + ldc - shift[1];
        const float *r2 = rows + 2 * ldc - shift[2], *r3 = rows + 3 * ldc - shift[3];
        const float *r4 = rows + 4 * ldc - shift[4], *r5 = rows + 5 * ldc - shift[5];
        const float *r6 = rows + 6 * ldc - shift[6], *r7 = rows + 7 * ldc - shift[7];
        const float *r8 = rows + 8 * ldc - shift[8];
#pragma omp simd
        for (int64_t p = p_lo; p < p_hi; p++)
            dxc[p] += ((r0[p] + r1[p]) + (r2[p] + r3[p])) + ((r4[p] + r5[p]) + (r6[p] + r7[p])) +
                      r8[p];
        add_taps_clipped(dxc, rows, ldc, shift, HW, p_hi, HW);
    }
}

/* col rows (ci, ky, kx), each HWo long at stride ldc, from one image x (cin, H, W). */
DM_VECTOR_KERNEL
static void im2col(float *col, int64_t ldc, const float *x, const dm_conv2d_shape *s,
                   int64_t Ho, int64_t Wo) {
    const int64_t H = s->H, W = s->W, k = s->k;
    const int st = s->stride, pad = s->pad;
    if (keeps_size(s)) {
        im2col_same(col, ldc, x, s);
        return;
    }
    for (int64_t ci = 0; ci < s->cin; ci++) {
        const float *xc = x + ci * H * W;
        for (int64_t ky = 0; ky < k; ky++)
            for (int64_t kx = 0; kx < k; kx++) {
                float *row = col + ((ci * k + ky) * k + kx) * ldc;
                int64_t lo, hi;
                valid_cols(kx, W, Wo, pad, st, &lo, &hi);
                const int64_t shift = kx - pad; /* ix = ox stride + shift */
                for (int64_t oy = 0; oy < Ho; oy++) {
                    float *dst = row + oy * Wo;
                    const int64_t iy = oy * st - pad + ky;
                    if (iy < 0 || iy >= H) {
                        memset(dst, 0, (size_t)Wo * sizeof *dst);
                        continue;
                    }
                    const float *src = xc + iy * W + shift;
                    for (int64_t ox = 0; ox < lo; ox++) dst[ox] = 0.0f;
                    /* a constant stride lets the compiler vectorise the gather */
                    if (st == 1) {
#pragma omp simd
                        for (int64_t ox = lo; ox < hi; ox++) dst[ox] = src[ox];
                    } else if (st == 2) {
#pragma omp simd
                        for (int64_t ox = lo; ox < hi; ox++) dst[ox] = src[2 * ox];
                    } else {
                        for (int64_t ox = lo; ox < hi; ox++) dst[ox] = src[ox * st];
                    }
                    for (int64_t ox = hi; ox < Wo; ox++) dst[ox] = 0.0f;
                }
            }
    }
}

/* dx (cin, H, W) += the col rows scattered back to the inputs they were copied from. col is
 * scratch and may be overwritten. */
DM_VECTOR_KERNEL
static void col2im_add(float *dx, float *col, int64_t ldc, const dm_conv2d_shape *s, int64_t Ho,
                       int64_t Wo) {
    const int64_t H = s->H, W = s->W, k = s->k;
    const int st = s->stride, pad = s->pad;
    if (keeps_size(s)) {
        col2im_same_add(dx, col, ldc, s);
        return;
    }
    for (int64_t ci = 0; ci < s->cin; ci++) {
        float *dxc = dx + ci * H * W;
        for (int64_t ky = 0; ky < k; ky++)
            for (int64_t kx = 0; kx < k; kx++) {
                const float *row = col + ((ci * k + ky) * k + kx) * ldc;
                int64_t lo, hi;
                valid_cols(kx, W, Wo, pad, st, &lo, &hi);
                const int64_t shift = kx - pad;
                for (int64_t oy = 0; oy < Ho; oy++) {
                    const int64_t iy = oy * st - pad + ky;
                    if (iy < 0 || iy >= H) continue;
                    const float *src = row + oy * Wo;
                    float *dst = dxc + iy * W + shift;
                    if (st == 1) {
#pragma omp simd
                        for (int64_t ox = lo; ox < hi; ox++) dst[ox] += src[ox];
                    } else if (st == 2) {
                        for (int64_t ox = lo; ox < hi; ox++) dst[2 * ox] += src[ox];
                    } else {
                        for (int64_t ox = lo; ox < hi; ox++) dst[ox * st] += src[ox];
                    }
                }
            }
    }
}

/* ---- few output channels, size-keeping 3x3: every tap is one contiguous multiply-add over
 * the plane, shifted (same_tap). The output column a horizontal tap pushes past the image edge
 * is handled by a masked copy with that column zeroed, of x (forward, where the edge output
 * must read zero) or of dy (backward, where the edge output must contribute nothing). */

/* first_zero: src with column 0 zeroed; last_zero: with column W - 1 zeroed. */
DM_VECTOR_KERNEL
static void masked_copies(float *first_zero, float *last_zero, const float *src, int64_t planes,
                          int64_t H, int64_t W) {
    memcpy(first_zero, src, (size_t)(planes * H * W) * sizeof *src);
    memcpy(last_zero, src, (size_t)(planes * H * W) * sizeof *src);
    for (int64_t r = 0; r < planes * H; r++) {
        first_zero[r * W] = 0.0f;
        last_zero[r * W + W - 1] = 0.0f;
    }
}

DM_VECTOR_KERNEL
static void forward_few_out(float *yn, const float *xn, const float *w, const float *b,
                            const dm_conv2d_shape *s, float *scratch) {
    const int64_t cin = s->cin, HW = s->H * s->W;
    float *x_first_zero = scratch, *x_last_zero = scratch + cin * HW;
    masked_copies(x_first_zero, x_last_zero, xn, cin, s->H, s->W);
    for (int64_t co = 0; co < s->cout; co++) {
        float *acc = yn + co * HW;
        const float bias = b ? b[co] : 0.0f;
        for (int64_t q = 0; q < HW; q++) acc[q] = bias;
        for (int64_t ci = 0; ci < cin; ci++)
            for (int64_t ky = 0; ky < 3; ky++)
                for (int64_t kx = 0; kx < 3; kx++) {
                    const same_tap t = same_tap_at(s, ky, kx);
                    /* a tap reading to the left lands on the previous row's last column */
                    const float *plane = kx < 1 ? x_last_zero : kx > 1 ? x_first_zero : xn;
                    const float *src = plane + ci * HW;
                    const float v = w[((co * cin + ci) * 3 + ky) * 3 + kx];
#pragma omp simd
                    for (int64_t q = t.q_lo; q < t.q_hi; q++) acc[q] += v * src[q + t.shift];
                }
    }
}

/* dwT (K, cout) += taps' dot products, db += sums, dx += shifted multiply-adds of dy. */
DM_VECTOR_KERNEL
static void backward_few_out(float *dxn, float *dwT, float *db, const float *dyn,
                             const float *xn, const float *w, const dm_conv2d_shape *s,
                             float *scratch) {
    const int64_t cin = s->cin, cout = s->cout, HW = s->H * s->W;
    float *dy_first_zero = scratch, *dy_last_zero = scratch + cout * HW;
    masked_copies(dy_first_zero, dy_last_zero, dyn, cout, s->H, s->W);
    for (int64_t co = 0; co < cout; co++) {
        if (db) {
            float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
            for (int64_t q = 0; q < HW; q++) sum += dyn[co * HW + q];
            db[co] += sum;
        }
        for (int64_t ci = 0; ci < cin; ci++)
            for (int64_t ky = 0; ky < 3; ky++)
                for (int64_t kx = 0; kx < 3; kx++) {
                    const same_tap t = same_tap_at(s, ky, kx);
                    /* output column 0 of a left-reading tap sits on the padding */
                    const float *g = (kx < 1 ? dy_first_zero : kx > 1 ? dy_last_zero : dyn) +
                                     co * HW;
                    const float *xs = xn + ci * HW;
                    const int64_t r = (ci * 3 + ky) * 3 + kx;
                    float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
                    for (int64_t q = t.q_lo; q < t.q_hi; q++) dot += g[q] * xs[q + t.shift];
                    dwT[r * cout + co] += dot;
                    if (dxn) {
                        float *dst = dxn + ci * HW;
                        const float v = w[co * cin * 9 + r];
#pragma omp simd
                        for (int64_t q = t.q_lo; q < t.q_hi; q++) dst[q + t.shift] += v * g[q];
                    }
                }
    }
}

/* Group g's first image and image count. */
static inline void group_range(const conv_plan *p, int64_t g, int64_t B, int64_t *first,
                               int64_t *count) {
    *first = g * p->G;
    *count = B - *first < p->G ? B - *first : p->G;
}

DM_VECTOR_KERNEL
static void forward_group(float *y, const float *x, const float *w, const float *b,
                          const dm_conv2d_shape *s, const conv_plan *p, int64_t n0, int64_t cnt,
                          float *col, float *buf) {
    const int64_t cin = s->cin, cout = s->cout, HW = s->H * s->W, HWo = p->HWo;
    if (p->few_out) {
        forward_few_out(y + n0 * cout * HWo, x + n0 * cin * HW, w, b, s, col);
        return;
    }
    if (p->G == 1) {
        /* one image: GEMM straight into y, seeded with the bias (OpenBLAS clears C itself
         * for beta = 0, so the seed costs no extra pass) */
        float *yn = y + n0 * cout * HWo;
        const float *xn = x + n0 * cin * HW;
        if (b)
            for (int64_t co = 0; co < cout; co++)
                for (int64_t q = 0; q < HWo; q++) yn[co * HWo + q] = b[co];
        const float *colp = xn;
        if (!p->direct) {
            im2col(col, HWo, xn, s, p->Ho, p->Wo);
            colp = col;
        }
        dm_sgemm(false, false, cout, HWo, p->K, 1.0f, w, p->K, colp, HWo, b ? 1.0f : 0.0f, yn,
                 HWo);
        return;
    }
    /* several images side by side; a short last group uses the first cnt HWo columns */
    const int64_t N = cnt * HWo;
    for (int64_t i = 0; i < cnt; i++)
        im2col(col + i * HWo, p->N, x + (n0 + i) * cin * HW, s, p->Ho, p->Wo);
    dm_sgemm(false, false, cout, N, p->K, 1.0f, w, p->K, col, p->N, 0.0f, buf, p->N);
    for (int64_t i = 0; i < cnt; i++)
        for (int64_t co = 0; co < cout; co++) {
            const float bias = b ? b[co] : 0.0f;
            const float *src = buf + co * p->N + i * HWo;
            float *dst = y + ((n0 + i) * cout + co) * HWo;
#pragma omp simd
            for (int64_t q = 0; q < HWo; q++) dst[q] = src[q] + bias;
        }
}

/* ---- stride 2. Output (oy, ox) of tap (ky, kx) reads the zero-padded input at
 * (2 oy + ky, 2 ox + kx), which is element (oy + ky / 2, ox + kx / 2) of the phase plane
 * P[ky % 2][kx % 2][i][j] = x_pad[2 i + ky % 2][2 j + kx % 2] (Hh x Wh). Computing each output row
 * Wh wide instead of Wo (one or no junk column) makes every col row one contiguous slice of a
 * plane: a memcpy instead of Ho strided gathers with edge cases. The forward drops the junk
 * columns; the backward gives them dy = 0, so they add nothing to dW and their dcol is 0. */

static inline float *phase_plane(float *planes, const conv_plan *p, int64_t ci, int64_t a,
                                 int64_t b) {
    return planes + ((ci * 2 + a) * 2 + b) * p->plane;
}

/* The four phases of every channel of one image x (cin, H, W). Input row r lands in row
 * (r + pad) / 2 of the planes with a = (r + pad) % 2: its even columns 2j in column j of phase
 * b = pad, its odd columns 2j + 1 in column j + pad of phase 1 - pad. Everything else (the
 * padding) is zero. */
DM_VECTOR_KERNEL
static void split_phases(float *planes, const float *x, const dm_conv2d_shape *s,
                         const conv_plan *p) {
    const int64_t H = s->H, W = s->W, Wh = p->Wh, pad = s->pad, half = W / 2;
    memset(planes, 0, (size_t)(4 * s->cin * p->plane) * sizeof *planes);
    for (int64_t ci = 0; ci < s->cin; ci++)
        for (int64_t r = 0; r < H; r++) {
            const int64_t a = (r + pad) % 2, i = (r + pad) / 2;
            const float *src = x + (ci * H + r) * W;
            float *even = phase_plane(planes, p, ci, a, pad) + i * Wh;
            float *odd = phase_plane(planes, p, ci, a, 1 - pad) + i * Wh + pad;
#pragma omp simd
            for (int64_t j = 0; j < half; j++) {
                even[j] = src[2 * j];
                odd[j] = src[2 * j + 1];
            }
            if (W % 2) even[half] = src[W - 1];
        }
}

/* col rows (ci, ky, kx), Ho Wh long at stride ldc, from the phases of one image. */
DM_VECTOR_KERNEL
static void im2col_phased(float *col, int64_t ldc, float *planes, const dm_conv2d_shape *s,
                          const conv_plan *p) {
    const int64_t k = s->k, len = p->Ho * p->Wh;
    for (int64_t ci = 0; ci < s->cin; ci++)
        for (int64_t ky = 0; ky < k; ky++)
            for (int64_t kx = 0; kx < k; kx++) {
                const float *src =
                    phase_plane(planes, p, ci, ky % 2, kx % 2) + (ky / 2) * p->Wh + kx / 2;
                memcpy(col + ((ci * k + ky) * k + kx) * ldc, src, (size_t)len * sizeof *col);
            }
}

/* dx (cin, H, W) of one image += col2im of dcol: each row added whole to its phase plane, the
 * planes then interleaved back into dx (their padding dropped). */
DM_VECTOR_KERNEL
static void col2im_phased_add(float *dx, const float *col, int64_t ldc, float *planes,
                              const dm_conv2d_shape *s, const conv_plan *p) {
    const int64_t k = s->k, len = p->Ho * p->Wh, H = s->H, W = s->W, Wh = p->Wh, pad = s->pad;
    memset(planes, 0, (size_t)(4 * s->cin * p->plane) * sizeof *planes);
    for (int64_t ci = 0; ci < s->cin; ci++)
        for (int64_t ky = 0; ky < k; ky++)
            for (int64_t kx = 0; kx < k; kx++) {
                float *dst =
                    phase_plane(planes, p, ci, ky % 2, kx % 2) + (ky / 2) * p->Wh + kx / 2;
                const float *src = col + ((ci * k + ky) * k + kx) * ldc;
#pragma omp simd
                for (int64_t q = 0; q < len; q++) dst[q] += src[q];
            }
    /* the inverse of split_phases */
    const int64_t half = W / 2;
    for (int64_t ci = 0; ci < s->cin; ci++)
        for (int64_t r = 0; r < H; r++) {
            const int64_t a = (r + pad) % 2, i = (r + pad) / 2;
            float *dst = dx + (ci * H + r) * W;
            const float *even = phase_plane(planes, p, ci, a, pad) + i * Wh;
            const float *odd = phase_plane(planes, p, ci, a, 1 - pad) + i * Wh + pad;
#pragma omp simd
            for (int64_t j = 0; j < half; j++) {
                dst[2 * j] += even[j];
                dst[2 * j + 1] += odd[j];
            }
            if (W % 2) dst[W - 1] += even[half];
        }
}

DM_VECTOR_KERNEL
static void forward_group_phased(float *y, const float *x, const float *w, const float *b,
                                 const dm_conv2d_shape *s, const conv_plan *p, int64_t n0,
                                 int64_t cnt, float *col, float *buf, float *planes) {
    const int64_t cin = s->cin, cout = s->cout, HW = s->H * s->W, C = p->img_cols;
    for (int64_t i = 0; i < cnt; i++) {
        split_phases(planes, x + (n0 + i) * cin * HW, s, p);
        im2col_phased(col + i * C, p->N, planes, s, p);
    }
    dm_sgemm(false, false, cout, cnt * C, p->K, 1.0f, w, p->K, col, p->N, 0.0f, buf, p->N);
    for (int64_t i = 0; i < cnt; i++)
        for (int64_t co = 0; co < cout; co++) {
            const float bias = b ? b[co] : 0.0f;
            for (int64_t oy = 0; oy < p->Ho; oy++) {
                const float *src = buf + co * p->N + i * C + oy * p->Wh;
                float *dst = y + (((n0 + i) * cout + co) * p->Ho + oy) * p->Wo;
#pragma omp simd
                for (int64_t ox = 0; ox < p->Wo; ox++) dst[ox] = src[ox] + bias;
            }
        }
}

DM_VECTOR_KERNEL
static void backward_group_phased(float *dx, float *dwT, float *db, const float *dy,
                                  const float *x, const float *w, const dm_conv2d_shape *s,
                                  const conv_plan *p, int64_t n0, int64_t cnt, float *col,
                                  float *buf, float *planes) {
    const int64_t cin = s->cin, cout = s->cout, HW = s->H * s->W, HWo = p->HWo, K = p->K;
    const int64_t C = p->img_cols, N = cnt * C;
    /* dy in the Wh-wide layout, zero in the junk columns */
    for (int64_t i = 0; i < cnt; i++)
        for (int64_t co = 0; co < cout; co++) {
            const float *src = dy + ((n0 + i) * cout + co) * HWo;
            float sum = 0.0f;
            for (int64_t oy = 0; oy < p->Ho; oy++) {
                float *dst = buf + co * p->N + i * C + oy * p->Wh;
                for (int64_t ox = 0; ox < p->Wo; ox++) {
                    dst[ox] = src[oy * p->Wo + ox];
                    sum += src[oy * p->Wo + ox];
                }
                for (int64_t ox = p->Wo; ox < p->Wh; ox++) dst[ox] = 0.0f;
            }
            if (db) db[co] += sum;
        }
    for (int64_t i = 0; i < cnt; i++) {
        split_phases(planes, x + (n0 + i) * cin * HW, s, p);
        im2col_phased(col + i * C, p->N, planes, s, p);
    }
    dm_sgemm(false, true, K, cout, N, 1.0f, col, p->N, buf, p->N, 1.0f, dwT, cout);
    if (!dx) return;
    dm_sgemm(true, false, K, N, cout, 1.0f, w, K, buf, p->N, 0.0f, col, p->N);
    for (int64_t i = 0; i < cnt; i++)
        col2im_phased_add(dx + (n0 + i) * cin * HW, col + i * C, p->N, planes, s, p);
}

DM_VECTOR_KERNEL
static void dm_conv2d_forward_impl(float *y, const float *x, const float *w, const float *b,
                       const dm_conv2d_shape *s, int64_t B, float *work) {
    const conv_plan p = make_plan(s, B);
#pragma omp parallel if (p.threaded)
    {
        const int tid = omp_get_thread_num();
        float *col = work + p.shared_floats + (size_t)tid * p.per_thread;
        float *buf = col + p.col_floats, *planes = buf + p.buf_floats;
#pragma omp for schedule(static)
        for (int64_t g = 0; g < p.groups; g++) {
            int64_t n0, cnt;
            group_range(&p, g, B, &n0, &cnt);
            if (p.phased)
                forward_group_phased(y, x, w, b, s, &p, n0, cnt, col, buf, planes);
            else
                forward_group(y, x, w, b, s, &p, n0, cnt, col, buf);
        }
    }
}

/* dwT (K, cout) += col dy_g^T, db += row sums of dy, dx += col2im(W^T dy) for one group.
 * The weight gradient is accumulated transposed: with K >> cout, OpenBLAS runs col dy^T
 * 10-30% faster than dy col^T (measured at cout 32 and 64, K 288-1152, N 784). */
DM_VECTOR_KERNEL
static void backward_group(float *dx, float *dwT, float *db, const float *dy, const float *x,
                           const float *w, const float *w_flipped, const dm_conv2d_shape *s,
                           const conv_plan *p, int64_t n0, int64_t cnt, float *col, float *buf) {
    const int64_t cin = s->cin, cout = s->cout, HW = s->H * s->W, HWo = p->HWo, K = p->K;
    const int64_t N = cnt * HWo;
    if (p->few_out) {
        backward_few_out(dx ? dx + n0 * cin * HW : NULL, dwT, db, dy + n0 * cout * HWo,
                         x + n0 * cin * HW, w, s, col);
        return;
    }
    if (db)
        for (int64_t i = 0; i < cnt; i++)
            for (int64_t co = 0; co < cout; co++) {
                const float *row = dy + ((n0 + i) * cout + co) * HWo;
                float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
                for (int64_t q = 0; q < HWo; q++) sum += row[q];
                db[co] += sum;
            }
    /* dy of the group as a (cout, N) matrix: the image itself when G = 1, else gathered */
    const float *dyg = dy + n0 * cout * HWo;
    int64_t lddy = HWo;
    if (p->G > 1) {
        for (int64_t i = 0; i < cnt; i++)
            for (int64_t co = 0; co < cout; co++)
                memcpy(buf + co * p->N + i * HWo, dy + ((n0 + i) * cout + co) * HWo,
                       (size_t)HWo * sizeof *buf);
        dyg = buf;
        lddy = p->N;
    }
    if (p->direct) {
        const float *xn = x + n0 * cin * HW;
        dm_sgemm(false, true, cin, cout, HW, 1.0f, xn, HW, dyg, lddy, 1.0f, dwT, cout);
        if (dx)
            dm_sgemm(true, false, cin, HW, cout, 1.0f, w, cin, dyg, lddy, 1.0f,
                     dx + n0 * cin * HW, HW);
        return;
    }
    for (int64_t i = 0; i < cnt; i++)
        im2col(col + i * HWo, p->N, x + (n0 + i) * cin * HW, s, p->Ho, p->Wo);
    dm_sgemm(false, true, K, cout, N, 1.0f, col, p->N, dyg, lddy, 1.0f, dwT, cout);
    if (!dx) return;
    /* col (and the gathered dy) are spent: reuse them */
    if (p->dx_flipped) {
        /* dx = conv(dy, w_flipped), pad 1: one GEMM of depth 9 cout straight into dx, instead
         * of a (9 cin, N) dcol written, read back and scattered; pays when cin > cout */
        dm_conv2d_shape s_dy = *s;
        s_dy.cin = cout;
        for (int64_t i = 0; i < cnt; i++)
            im2col(col + i * HWo, p->N, dy + (n0 + i) * cout * HWo, &s_dy, p->Ho, p->Wo);
        if (p->G == 1) {
            dm_sgemm(false, false, cin, HW, 9 * cout, 1.0f, w_flipped, 9 * cout, col, p->N, 1.0f,
                     dx + n0 * cin * HW, HW);
            return;
        }
        dm_sgemm(false, false, cin, N, 9 * cout, 1.0f, w_flipped, 9 * cout, col, p->N, 0.0f, buf,
                 p->N);
        for (int64_t i = 0; i < cnt; i++)
            for (int64_t ci = 0; ci < cin; ci++) {
                float *dst = dx + ((n0 + i) * cin + ci) * HW;
                const float *src = buf + ci * p->N + i * HW;
#pragma omp simd
                for (int64_t q = 0; q < HW; q++) dst[q] += src[q];
            }
        return;
    }
    dm_sgemm(true, false, K, N, cout, 1.0f, w, K, dyg, lddy, 0.0f, col, p->N);
    for (int64_t i = 0; i < cnt; i++)
        col2im_add(dx + (n0 + i) * cin * HW, col + i * HWo, p->N, s, p->Ho, p->Wo);
}

DM_VECTOR_KERNEL
static void dm_conv2d_backward_impl(float *dx, float *dw, float *db, const float *dy, const float *x,
                        const float *w, const dm_conv2d_shape *s, int64_t B, float *work) {
    const conv_plan p = make_plan(s, B);
    const int64_t K = p.K, cout = s->cout;
    const size_t dw_offset = p.col_floats + p.buf_floats + p.planes_floats;
    const size_t db_offset = dw_offset + p.dw_floats;
    float *w_flipped = work, *parts = work + p.shared_floats;
    const bool flip = p.dx_flipped && dx;
    int team = 1;
    /* each thread sums its groups' gradients into its own (zeroed) partials */
#pragma omp parallel if (p.threaded)
    {
        const int tid = omp_get_thread_num();
        float *col = parts + (size_t)tid * p.per_thread;
        float *buf = col + p.col_floats, *planes = buf + p.buf_floats;
        float *dwT_part = col + dw_offset, *db_part = col + db_offset;
        memset(dwT_part, 0, (size_t)(K * cout) * sizeof *dwT_part);
        memset(db_part, 0, (size_t)cout * sizeof *db_part);
#pragma omp single
        team = omp_get_num_threads();
        if (flip) {
            /* w_flipped (cin, cout, 3, 3)[ci][co][ky][kx] = w[co][ci][2 - ky][2 - kx] */
#pragma omp for schedule(static)
            for (int64_t ci = 0; ci < s->cin; ci++)
                for (int64_t co = 0; co < cout; co++)
                    for (int64_t t = 0; t < 9; t++)
                        w_flipped[(ci * cout + co) * 9 + t] = w[(co * s->cin + ci) * 9 + 8 - t];
        }
#pragma omp for schedule(static)
        for (int64_t g = 0; g < p.groups; g++) {
            int64_t n0, cnt;
            group_range(&p, g, B, &n0, &cnt);
            if (p.phased)
                backward_group_phased(dx, dwT_part, db ? db_part : NULL, dy, x, w, s, &p, n0, cnt,
                                      col, buf, planes);
            else
                backward_group(dx, dwT_part, db ? db_part : NULL, dy, x, w, w_flipped, s, &p, n0,
                               cnt, col, buf);
        }
        /* the barrier after the loop completes every partial: add them up in thread order,
         * transposing back to (cout, K) */
#pragma omp for schedule(static)
        for (int64_t co = 0; co < cout; co++) {
            for (int64_t r = 0; r < K; r++) {
                float sum = 0.0f;
                for (int t = 0; t < team; t++)
                    sum += parts[(size_t)t * p.per_thread + dw_offset + (size_t)(r * cout + co)];
                dw[co * K + r] += sum;
            }
            if (db) {
                float sum = 0.0f;
                for (int t = 0; t < team; t++)
                    sum += parts[(size_t)t * p.per_thread + db_offset + (size_t)co];
                db[co] += sum;
            }
        }
    }
}

static dm_conv_backend backend = DM_CONV_AUTO;
static dm_precision precision = DM_PRECISION_FP32;

void dm_set_conv_backend(dm_conv_backend which) { backend = which; }

dm_conv_backend dm_get_conv_backend(void) { return backend; }

void dm_set_conv_precision(dm_precision which) { precision = which; }

dm_precision dm_get_conv_precision(void) { return precision; }

const char *dm_conv2d_impl(const dm_conv2d_shape *s, int64_t B) {
    static char name[64]; /* oneDNN's names are constant; the copy outlives the cache */
    const bool bf16 = precision == DM_PRECISION_BF16;
    dm_conv_cache *cache = NULL;
    const char *impl = NULL;
    if (backend == DM_CONV_AUTO && !dm_conv_cache_create(&cache, NULL))
        impl = dm_conv2d_dnnl_impl(cache, s, B, bf16);
    snprintf(name, sizeof name, "%s", impl ? impl : "im2col+sgemm");
    dm_conv_cache_free(cache);
    return name;
}

const char *dm_conv_impl_name(int64_t C, int64_t H, int64_t W, int64_t B) {
    const dm_conv2d_shape s = {C, C, H, W, 3, 1, 1};
    return dm_conv2d_impl(&s, B);
}

void dm_conv2d_forward(float *y, const float *x, const float *w, const float *b,
                       const dm_conv2d_shape *s, int64_t B, float *work, dm_conv_cache *cache) {
    const double t0 = dm_profile_begin();
    const bool bf16 = precision == DM_PRECISION_BF16;
    if (backend != DM_CONV_AUTO || !dm_conv2d_dnnl_forward(cache, y, x, w, b, s, B, bf16))
        dm_conv2d_forward_impl(y, x, w, b, s, B, work);
    dm_profile_end(DM_PROFILE_CONV_FWD, t0);
}

void dm_conv2d_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                        const float *w, const dm_conv2d_shape *s, int64_t B, float *work,
                        dm_conv_cache *cache) {
    const double t0 = dm_profile_begin();
    const bool bf16 = precision == DM_PRECISION_BF16;
    bool dx_done = false;
    if (backend != DM_CONV_AUTO ||
        !dm_conv2d_dnnl_backward(cache, dx, dw, db, dy, x, w, s, B, bf16, &dx_done))
        dm_conv2d_backward_impl(dx_done ? NULL : dx, dw, db, dy, x, w, s, B, work);
    dm_profile_end(DM_PROFILE_CONV_BWD, t0);
}
