/* Inverted dropout (torch.nn.Dropout in training): each value is kept with probability 1 - p and
 * scaled by 1 / (1 - p). The mask comes from the counter-based generator, element i from
 * block rng->offset + i / 4, so it is the same at any thread count; rng->offset advances by
 * ceil(n / 4) blocks (not at all when p = 0, which draws nothing). */
#pragma once

#include "core/core.h"

/* y = x * mask / (1 - p); mask (n) receives 0 or 1 / (1 - p) for the backward. y may equal x.
 * p = 0 copies x and fills mask with 1. 0 <= p < 1. */
void dm_dropout_forward(float *y, float *mask, const float *x, size_t n, float p, dm_rng *rng);
/* dx += dy * mask. */
void dm_dropout_backward(float *dx, const float *dy, const float *mask, size_t n);
