/* 2-D convolution, NCHW, PyTorch layout: weight (cout, cin, k, k), bias (cout).
 * Square kernels k in {1, 3}, stride 1 or 2, symmetric zero padding pad (0 or 1).
 * Output size: Ho = (H + 2 pad - k) / stride + 1, the same for W.
 * Rule of nn.h: the backward ADDS into every gradient it writes (dx, dw, db); the caller zeroes.
 * Two fast paths, both tested against the naive one: oneDNN's JIT convolutions (conv2d_dnnl.c)
 * where the build has oneDNN and the shape suits it, else im2col + sgemm, parallel over the
 * batch. */
#pragma once

#include "core/core.h"

typedef struct {
    int64_t cin, cout;
    int64_t H, W;   /* input height and width */
    int k;          /* kernel size: 1 or 3 */
    int stride;     /* 1 or 2 */
    int pad;        /* 0 or 1 */
} dm_conv2d_shape;

static inline int64_t dm_conv2d_out_h(const dm_conv2d_shape *s) {
    return (s->H + 2 * s->pad - s->k) / s->stride + 1;
}
static inline int64_t dm_conv2d_out_w(const dm_conv2d_shape *s) {
    return (s->W + 2 * s->pad - s->k) / s->stride + 1;
}

/* The oneDNN primitives of one owner (a model), with their blocked buffers and scratchpads:
 * calls with different caches may run at the same time in different threads, calls with one
 * cache may not. A NULL cache runs every call on the im2col path, as does a build without
 * oneDNN (where create gives NULL). */
typedef struct dm_conv_cache dm_conv_cache;
dm_status dm_conv_cache_create(dm_conv_cache **out, dm_error *err);
void dm_conv_cache_free(dm_conv_cache *c);

/* Which fast path the calls take: dm_set_conv_backend (diffusion.h). This is oneDNN's name for
 * the implementation a call of this shape and batch runs ("jit:avx512_core", ...), or
 * "im2col+sgemm". */
const char *dm_conv2d_impl(const dm_conv2d_shape *s, int64_t B);

/* Floats of scratch the fast forward and backward need for a batch of B at the current
 * OpenMP thread count (im2col buffers, per-thread weight-gradient partials); the im2col path's
 * need whatever the backend, so switching it never outgrows a buffer. The oneDNN path keeps
 * its blocked copies in a workspace of its own. */
size_t dm_conv2d_work_floats(const dm_conv2d_shape *s, int64_t B);

/* y (B, cout, Ho, Wo) = conv(x (B, cin, H, W), w) + b; b may be NULL. work: see above;
 * cache: the caller's oneDNN primitives (NULL: im2col). */
void dm_conv2d_forward(float *y, const float *x, const float *w, const float *b,
                       const dm_conv2d_shape *s, int64_t B, float *work, dm_conv_cache *cache);
/* dx (B, cin, H, W) += d/dx, skipped if dx is NULL; dw += d/dw; db += d/db (skipped if NULL).
 * x is the forward input. */
void dm_conv2d_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                        const float *w, const dm_conv2d_shape *s, int64_t B, float *work,
                        dm_conv_cache *cache);

/* Naive references: direct loops in double accumulation, for tests. */
void dm_conv2d_forward_ref(float *y, const float *x, const float *w, const float *b,
                           const dm_conv2d_shape *s, int64_t B);
void dm_conv2d_backward_ref(float *dx, float *dw, float *db, const float *dy, const float *x,
                            const float *w, const dm_conv2d_shape *s, int64_t B);
