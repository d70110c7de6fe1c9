/* Owning sets of NCHW images in [-1, 1], and the pixel conversions the loaders share. */
#include "data/image_util.h"

#include <string.h>

void dm_pixels_from_u8(float *dst, const uint8_t *src, size_t n) {
#pragma omp parallel for if (n >= DM_PARALLEL_MIN)
    for (size_t i = 0; i < n; i++) dst[i] = dm_pixel_from_u8(src[i]);
}

void dm_pixels_to_u8(uint8_t *dst, const float *src, size_t n) {
#pragma omp parallel for if (n >= DM_PARALLEL_MIN)
    for (size_t i = 0; i < n; i++) dst[i] = dm_pixel_to_u8(src[i]);
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

dm_status dm_image_set_init(dm_image_set *s, int64_t n, int64_t c, int64_t h, int64_t w,
                            int with_labels, dm_error *err) {
    memset(s, 0, sizeof *s);
    size_t numel;
    dm_status st = dm_image_dims_check(n, c, h, w, "image set", &numel, err);
    if (st) return st;
    (void)numel; /* sizes checked (with a message about images) above */
    if ((st = dm_dataset_init(&s->data, n, c * h * w, err))) return st;
    if (with_labels && (st = dm_dataset_add_labels(&s->data, 1, err))) {
        dm_dataset_free(&s->data);
        return st;
    }
    s->c = c;
    s->h = h;
    s->w = w;
    return DM_OK;
}

void dm_image_set_free(dm_image_set *s) {
    dm_dataset_free(&s->data);
    memset(s, 0, sizeof *s);
}
