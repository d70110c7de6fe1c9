/* The oneDNN backend of dm_conv2d_forward / dm_conv2d_backward (conv2d.c dispatches here first).
 * oneDNN's JIT convolutions run in its blocked channel layouts (nChw16c) with AVX-512 where the
 * CPU has it; the tensors stay NCHW outside: each call reorders its inputs into the blocked
 * layout and its results back (gradients added, as nn.h's rule asks). The primitives are made
 * on the first call of each (shape, batch, thread count) and kept in the caller's
 * dm_conv_cache (conv2d.h) with their blocked buffers and scratchpads in one workspace, grown
 * only when a new shape needs more, so a training step allocates nothing. */
#pragma once

#include "nn/conv2d.h"

/* Each returns false when the call is not for oneDNN, or when a oneDNN call failed (its entry
 * is then retired and later calls of its shape take the im2col path): built without it,
 * a shape it leaves to the im2col path (fewer than 8 channels in or out), or no JIT
 * implementation for it on this CPU (only oneDNN's slow reference one). bf16: the products'
 * inputs (x, w, dy) rounded to bfloat16, accumulation and results in float32. */
bool dm_conv2d_dnnl_forward(dm_conv_cache *c, float *y, const float *x, const float *w,
                            const float *b, const dm_conv2d_shape *s, int64_t B, bool bf16);
/* *dx_done: dx has its gradient added even though the call failed later (the caller's
 * im2col fallback must then leave dx alone). */
bool dm_conv2d_dnnl_backward(dm_conv_cache *c, float *dx, float *dw, float *db, const float *dy,
                             const float *x, const float *w, const dm_conv2d_shape *s, int64_t B,
                             bool bf16, bool *dx_done);

/* oneDNN's name for the forward implementation of this shape ("jit:avx512_core", ...), or NULL
 * when the shape runs on the im2col path. */
const char *dm_conv2d_dnnl_impl(dm_conv_cache *c, const dm_conv2d_shape *s, int64_t B,
                                bool bf16);
