/* The uint8 <-> [-1, 1] pixel conversions and the image size check (io/image_util.h). */
#include "io/image_util.h"

void dm_pixels_from_u8(float *dst, const uint8_t *src, size_t n) {
#pragma omp parallel for if (n >= DM_PARALLEL_MIN)
    for (size_t i = 0; i < n; i++) dst[i] = dm_pixel_from_u8(src[i]);
}

void dm_pixels_to_u8(uint8_t *dst, const float *src, size_t n) {
#pragma omp parallel for if (n >= DM_PARALLEL_MIN)
    for (size_t i = 0; i < n; i++) dst[i] = dm_pixel_to_u8(src[i]);
}

uint64_t dm_pixels_hash_as_float(uint64_t h, const uint8_t *src, size_t n) {
    float chunk[4096];
    for (size_t i = 0; i < n; i += 4096) {
        size_t k = n - i < 4096 ? n - i : 4096;
        for (size_t j = 0; j < k; j++) chunk[j] = dm_pixel_from_u8(src[i + j]);
        h = dm_fnv1a_add(h, chunk, k * sizeof *chunk);
    }
    return h;
}

dm_status dm_image_dims_check(int64_t n, int64_t c, int64_t h, int64_t w, const char *what,
                              size_t *numel, dm_error *err) {
    if (n < 1 || c < 1 || h < 1 || w < 1)
        return dm_error_set(err, DM_ERR_ARG,
                            "%s: %lld images of %lld x %lld x %lld: every size must be at least 1",
                            what, (long long)n, (long long)c, (long long)h, (long long)w);
    uint64_t count = (uint64_t)n;
    /* bytes of the float copy must fit too, hence the final multiply by sizeof(float) */
    uint64_t bytes;
    if (__builtin_mul_overflow(count, (uint64_t)c, &count) ||
        __builtin_mul_overflow(count, (uint64_t)h, &count) ||
        __builtin_mul_overflow(count, (uint64_t)w, &count) ||
        __builtin_mul_overflow(count, (uint64_t)sizeof(float), &bytes) || bytes > SIZE_MAX ||
        bytes > (uint64_t)INT64_MAX)
        return dm_error_set(err, DM_ERR_ARG, "%s: %lld images of %lld x %lld x %lld is too large",
                            what, (long long)n, (long long)c, (long long)h, (long long)w);
    *numel = (size_t)count;
    return DM_OK;
}
