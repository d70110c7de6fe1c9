/* Internal helpers shared by the image loaders and writers: the uint8 <-> [-1, 1] pixel
 * convention (MATH.md "Data conventions") and size checks that cannot overflow. */
#pragma once

#include "core/core.h"

/* uint8 v -> v / 127.5 - 1 */
static inline float dm_pixel_from_u8(uint8_t v) { return (float)v / 127.5f - 1.0f; }

/* Clip to [-1, 1], then round((x + 1) * 127.5); NaN becomes 0 so a bad sample cannot make the
 * conversion undefined. */
static inline uint8_t dm_pixel_to_u8(float x) {
    if (!(x >= -1.0f)) return 0; /* also NaN */
    if (x > 1.0f) return 255;
    return (uint8_t)((x + 1.0f) * 127.5f + 0.5f);
}

/* dst[i] = dm_pixel_from_u8(src[i]) for n values. */
void dm_pixels_from_u8(float *dst, const uint8_t *src, size_t n);
/* dst[i] = dm_pixel_to_u8(src[i]) for n values. */
void dm_pixels_to_u8(uint8_t *dst, const float *src, size_t n);

/* dm_fnv1a_add(h, ...) over the float values dm_pixel_from_u8 gives for n pixels, without
 * holding them all: a uint8 set hashes as its float form. */
uint64_t dm_pixels_hash_as_float(uint64_t h, const uint8_t *src, size_t n);

/* Checks that n, c, h, w are all >= 1 and that n * c * h * w floats fit in memory's address
 * range; stores the element count in *numel. Errors name `what` (a file, or the function). */
dm_status dm_image_dims_check(int64_t n, int64_t c, int64_t h, int64_t w, const char *what,
                              size_t *numel, dm_error *err);
