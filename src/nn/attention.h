/* The core of multi-head self-attention (diffusers Attention / AttnProcessor): for each example
 * b and head h, with Q, K, V the (N, d) slices of columns h*d .. h*d+d-1 of q, k, v:
 *   P = softmax(Q K^T * scale) (row-wise), O = P V.
 * q, k, v, o are token-major (B, N, C) with C = heads * d: exactly the outputs of the to_q/to_k/
 * to_v linear layers applied to (B*N, C) tokens, so no permutes are needed.
 * Rule of nn.h: the backward ADDS into dq, dk, dv. */
#pragma once

#include "core/core.h"

/* Floats of scratch forward and backward need for B examples at the current OpenMP thread count. */
size_t dm_attention_work_floats(int64_t B, int64_t N, int64_t heads, int64_t d);

/* o (B, N, C) = attention; probs (B, heads, N, N) receives P for the backward (training), or is
 * NULL (inference: P lives only in work). */
void dm_attention_forward(float *o, float *probs, const float *q, const float *k, const float *v,
                          int64_t B, int64_t N, int64_t heads, int64_t d, float scale, float *work);
/* From do_ (B, N, C) and the forward's q, k, v and probs. probs may be NULL where
 * dm_attention_backward_remakes(N, d): the backward then remakes P, bit for bit as the forward
 * made it, one block of rows at a time, so training needs no (B, heads, N, N) buffer and no
 * second forward. */
bool dm_attention_backward_remakes(int64_t N, int64_t d);
void dm_attention_backward(float *dq, float *dk, float *dv, const float *do_, const float *q,
                           const float *k, const float *v, const float *probs, int64_t B, int64_t N,
                           int64_t heads, int64_t d, float scale, float *work);

/* Naive references (double accumulation), for tests; probs as above, never NULL. */
void dm_attention_forward_ref(float *o, float *probs, const float *q, const float *k,
                              const float *v, int64_t B, int64_t N, int64_t heads, int64_t d,
                              float scale);
void dm_attention_backward_ref(float *dq, float *dk, float *dv, const float *do_, const float *q,
                               const float *k, const float *v, const float *probs, int64_t B,
                               int64_t N, int64_t heads, int64_t d, float scale);
