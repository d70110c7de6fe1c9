/* Nearest 2x upsampling and channel concatenation (UNet up path and skips), NCHW. */
#include "resample.h"

#include <string.h>

DM_VECTOR_KERNEL
static void dm_upsample2x_forward_impl(float *y, const float *x, int64_t B, int64_t C, int64_t H, int64_t W) {
    const int64_t W2 = 2 * W;
#pragma omp parallel for schedule(static) if (B * C * H * W >= DM_PARALLEL_MIN)
    for (int64_t plane = 0; plane < B * C; plane++) {
        const float *xp = x + plane * H * W; /* (H, W) */
        float *yp = y + plane * 4 * H * W;   /* (2H, 2W) */
        for (int64_t i = 0; i < H; i++) {
            const float *xr = xp + i * W;
            float *yr = yp + 2 * i * W2;
            for (int64_t j = 0; j < W; j++) yr[2 * j] = yr[2 * j + 1] = xr[j];
            memcpy(yr + W2, yr, (size_t)W2 * sizeof *yr); /* the odd output row repeats it */
        }
    }
}

DM_VECTOR_KERNEL
static void dm_upsample2x_backward_impl(float *dx, const float *dy, int64_t B, int64_t C, int64_t H,
                            int64_t W) {
    const int64_t W2 = 2 * W;
#pragma omp parallel for schedule(static) if (B * C * H * W >= DM_PARALLEL_MIN)
    for (int64_t plane = 0; plane < B * C; plane++) {
        const float *dyp = dy + plane * 4 * H * W; /* (2H, 2W) */
        float *dxp = dx + plane * H * W;           /* (H, W) */
        for (int64_t i = 0; i < H; i++) {
            const float *top = dyp + 2 * i * W2, *bottom = top + W2;
            float *dxr = dxp + i * W;
            for (int64_t j = 0; j < W; j++)
                dxr[j] += (top[2 * j] + top[2 * j + 1]) + (bottom[2 * j] + bottom[2 * j + 1]);
        }
    }
}

DM_VECTOR_KERNEL
static void dm_concat_channels_impl(float *y, const float *a, int64_t Ca, const float *b, int64_t Cb,
                        int64_t B, int64_t HW) {
    const size_t na = (size_t)(Ca * HW), nb = (size_t)(Cb * HW);
#pragma omp parallel for schedule(static) if (B * (Ca + Cb) * HW >= DM_PARALLEL_MIN)
    for (int64_t e = 0; e < B; e++) {
        float *ye = y + (size_t)e * (na + nb);
        memcpy(ye, a + (size_t)e * na, na * sizeof *y);
        memcpy(ye + na, b + (size_t)e * nb, nb * sizeof *y);
    }
}

/* dst (n) += src (n) */
static inline void add_into(float *restrict dst, const float *restrict src, size_t n) {
#pragma omp simd
    for (size_t i = 0; i < n; i++) dst[i] += src[i];
}

DM_VECTOR_KERNEL
static void dm_concat_channels_backward_impl(float *da, float *db, const float *dy, int64_t Ca, int64_t Cb,
                                 int64_t B, int64_t HW) {
    const size_t na = (size_t)(Ca * HW), nb = (size_t)(Cb * HW);
#pragma omp parallel for schedule(static) if (B * (Ca + Cb) * HW >= DM_PARALLEL_MIN)
    for (int64_t e = 0; e < B; e++) {
        const float *dye = dy + (size_t)e * (na + nb);
        if (da) add_into(da + (size_t)e * na, dye, na);
        if (db) add_into(db + (size_t)e * nb, dye + na, nb);
    }
}

void dm_upsample2x_forward(float *y, const float *x, int64_t B, int64_t C, int64_t H, int64_t W) {
    const double t0 = dm_profile_begin();
    dm_upsample2x_forward_impl(y, x, B, C, H, W);
    dm_profile_end(DM_PROFILE_ELEMENTWISE, t0);
}

void dm_upsample2x_backward(float *dx, const float *dy, int64_t B, int64_t C, int64_t H,
                            int64_t W) {
    const double t0 = dm_profile_begin();
    dm_upsample2x_backward_impl(dx, dy, B, C, H, W);
    dm_profile_end(DM_PROFILE_ELEMENTWISE, t0);
}

void dm_concat_channels(float *y, const float *a, int64_t Ca, const float *b, int64_t Cb,
                        int64_t B, int64_t HW) {
    const double t0 = dm_profile_begin();
    dm_concat_channels_impl(y, a, Ca, b, Cb, B, HW);
    dm_profile_end(DM_PROFILE_ELEMENTWISE, t0);
}

void dm_concat_channels_backward(float *da, float *db, const float *dy, int64_t Ca, int64_t Cb,
                                 int64_t B, int64_t HW) {
    const double t0 = dm_profile_begin();
    dm_concat_channels_backward_impl(da, db, dy, Ca, Cb, B, HW);
    dm_profile_end(DM_PROFILE_ELEMENTWISE, t0);
}
