/* GroupNorm over NCHW (PyTorch nn.GroupNorm, affine): channels split into G groups of C/G;
 * each (example, group) is normalised over its C/G * HW values with the biased variance:
 *   y = (x - mean) / sqrt(var + eps) * gamma[c] + beta[c].
 * Rule of nn.h: backward ADDS into dx, dgamma, dbeta. */
#pragma once

#include "core/core.h"

/* y, x (B, C, HW); gamma, beta (C); mean and rstd (B, G) receive the statistics (1/sqrt(var+eps))
 * that the backward needs. y may not alias x. */
void dm_groupnorm_forward(float *y, float *mean, float *rstd, const float *x, const float *gamma,
                          const float *beta, int64_t B, int64_t C, int64_t HW, int64_t G,
                          float eps);
/* dx += d/dx (skipped if NULL), dgamma += d/dgamma, dbeta += d/dbeta, from dy and the forward's
 * x, mean, rstd. */
void dm_groupnorm_backward(float *dx, float *dgamma, float *dbeta, const float *dy, const float *x,
                           const float *mean, const float *rstd, const float *gamma, int64_t B,
                           int64_t C, int64_t HW, int64_t G);

/* Naive references (double accumulation, two passes), for tests. */
void dm_groupnorm_forward_ref(float *y, float *mean, float *rstd, const float *x,
                              const float *gamma, const float *beta, int64_t B, int64_t C,
                              int64_t HW, int64_t G, float eps);
void dm_groupnorm_backward_ref(float *dx, float *dgamma, float *dbeta, const float *dy,
                               const float *x, const float *mean, const float *rstd,
                               const float *gamma, int64_t B, int64_t C, int64_t HW, int64_t G);
