/* Nearest-neighbour 2x upsampling (F.interpolate(scale_factor=2, mode="nearest")), NCHW, and
 * channel concatenation for UNet skips. Backward passes ADD into their gradients (nn.h rule). */
#pragma once

#include "core/core.h"

/* y (B, C, 2H, 2W) from x (B, C, H, W). */
void dm_upsample2x_forward(float *y, const float *x, int64_t B, int64_t C, int64_t H, int64_t W);
/* dx (B, C, H, W) += sum of the four dy values each x feeds. */
void dm_upsample2x_backward(float *dx, const float *dy, int64_t B, int64_t C, int64_t H, int64_t W);

/* y (B, Ca + Cb, HW) = cat([a (B, Ca, HW), b (B, Cb, HW)], dim=1). */
void dm_concat_channels(float *y, const float *a, int64_t Ca, const float *b, int64_t Cb,
                        int64_t B, int64_t HW);
/* da += dy[:, :Ca], db += dy[:, Ca:] (either skipped if NULL). */
void dm_concat_channels_backward(float *da, float *db, const float *dy, int64_t Ca, int64_t Cb,
                                 int64_t B, int64_t HW);
