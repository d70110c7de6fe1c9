/* Image sets as NPY arrays: uint8 (scaled to [-1, 1]) or float (taken as it is) on reading,
 * uint8 (n, c, h, w) on writing. */
#include "io/image_util.h"
#include "io/npy.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* Float images far outside [-1, 1] are almost surely 0..255 or standardised data; the slack
 * lets arrays that went through float arithmetic pass. */
#define FLOAT_RANGE_SLACK 1e-3

/* The image shape of an array: dtype and dimensions checked, one message naming the file. */
static dm_status image_shape(const dm_npy *a, const char *path, int64_t *n_out, int64_t *c_out,
                             int64_t *h_out, int64_t *w_out, size_t *numel_out, dm_error *err) {
    dm_npy arr = *a;
    dm_status st = DM_OK;
    int64_t n = 0, c = 1, h = 0, w = 0;
    if (arr.dtype != DM_DTYPE_U8 && arr.dtype != DM_DTYPE_F32 && arr.dtype != DM_DTYPE_F64) {
        st = dm_error_set(err, DM_ERR_FORMAT,
                          "%s: dtype %s; images must be uint8, float32 or float64", path,
                          dm_dtype_name(arr.dtype));
    } else if (arr.ndim == 3) {
        n = arr.shape[0], h = arr.shape[1], w = arr.shape[2];
    } else if (arr.ndim == 4) {
        n = arr.shape[0], c = arr.shape[1], h = arr.shape[2], w = arr.shape[3];
        if (c != 1 && c != 3)
            st = dm_error_set(err, DM_ERR_FORMAT,
                              "%s: shape (%lld, %lld, %lld, %lld): images must be (n, c, h, w) "
                              "with c = 1 or 3 (channels last? transpose to NCHW)",
                              path, (long long)n, (long long)c, (long long)h, (long long)w);
    } else {
        st = dm_error_set(err, DM_ERR_FORMAT,
                          "%s: a %d-D array; images must be (n, h, w) or (n, c, h, w)", path,
                          arr.ndim);
    }
    size_t numel = 0;
    if (!st && dm_image_dims_check(n, c, h, w, path, &numel, err)) {
        st = DM_ERR_FORMAT; /* the sizes come from the file, not from the caller */
        if (err) err->status = st;
    }
    *n_out = n, *c_out = c, *h_out = h, *w_out = w, *numel_out = numel;
    return st;
}

dm_status dm_image_npy_open(dm_image_set *s, const char *path, dm_error *err) {
    memset(s, 0, sizeof *s);
    dm_npy arr;
    dm_status st = dm_npy_read_header(&arr, path, err);
    if (st) return st;
    if (arr.dtype != DM_DTYPE_U8) return dm_image_npy_load(s, path, err);
    void *base;
    size_t bytes, numel;
    int64_t n, c, h, w;
    if ((st = dm_npy_map(&arr, path, &base, &bytes, err))) return st;
    if ((st = image_shape(&arr, path, &n, &c, &h, &w, &numel, err))) {
        munmap(base, bytes);
        return st;
    }
    s->c = c, s->h = h, s->w = w;
    s->data.n = n;
    s->data.dim = c * h * w;
    s->data.u8 = arr.data;
    s->data.u8_base = base;
    s->data.u8_map_bytes = bytes;
    return DM_OK;
}

dm_status dm_image_npy_load(dm_image_set *s, const char *path, dm_error *err) {
    memset(s, 0, sizeof *s);
    dm_npy arr;
    dm_status st = dm_npy_read(&arr, path, err);
    if (st) return st;
    int64_t n = 0, c = 1, h = 0, w = 0;
    size_t numel = 0;
    st = image_shape(&arr, path, &n, &c, &h, &w, &numel, err);

    if (!st && arr.dtype != DM_DTYPE_U8) {
        /* refuse NaN/Inf and values plainly outside [-1, 1] before taking the data */
        double lo = INFINITY, hi = -INFINITY;
        int finite = 1;
        for (size_t i = 0; i < numel; i++) {
            double v = arr.dtype == DM_DTYPE_F32 ? ((const float *)arr.data)[i]
                                                 : ((const double *)arr.data)[i];
            if (!isfinite(v)) {
                finite = 0;
                break;
            }
            lo = v < lo ? v : lo;
            hi = v > hi ? v : hi;
        }
        if (!finite)
            st = dm_error_set(err, DM_ERR_NUMERIC, "%s: holds NaN or Inf", path);
        else if (lo < -1 - FLOAT_RANGE_SLACK || hi > 1 + FLOAT_RANGE_SLACK)
            st = dm_error_set(err, DM_ERR_FORMAT,
                              "%s: float values span [%g, %g]; float images must be in [-1, 1] "
                              "(save uint8 0..255 arrays as uint8, they are scaled on loading)",
                              path, lo, hi);
    }
    if (st) {
        dm_npy_free(&arr);
        return st;
    }

    if (arr.dtype == DM_DTYPE_F32) {
        /* both buffers come from dm_alloc: take the array instead of copying it */
        s->data.x = arr.data;
        s->data.n = n;
        s->data.dim = c * h * w;
        s->c = c, s->h = h, s->w = w;
        return DM_OK;
    }
    st = dm_image_set_init(s, n, c, h, w, 0, err);
    if (!st) {
        if (arr.dtype == DM_DTYPE_U8) {
            dm_pixels_from_u8(s->data.x, arr.data, numel);
        } else {
            const double *src = arr.data;
            for (size_t i = 0; i < numel; i++) s->data.x[i] = (float)src[i];
        }
    }
    dm_npy_free(&arr);
    return st;
}

dm_status dm_image_npy_save(const char *path, const float *x, int64_t n, int64_t c, int64_t h,
                            int64_t w, dm_error *err) {
    size_t numel;
    dm_status st = dm_image_dims_check(n, c, h, w, path, &numel, err);
    if (st) return st;
    if (c != 1 && c != 3) /* what dm_image_npy_load takes back */
        return dm_error_set(err, DM_ERR_ARG, "%s: %lld channels; images have 1 or 3", path,
                            (long long)c);
    uint8_t *pixels = malloc(numel);
    if (!pixels)
        return dm_error_set(err, DM_ERR_NOMEM, "%s: cannot allocate %.1f MiB", path,
                            (double)numel / (1 << 20));
    dm_pixels_to_u8(pixels, x, numel);
    const int64_t shape[4] = {n, c, h, w};
    st = dm_npy_write(path, DM_DTYPE_U8, pixels, shape, 4, err);
    free(pixels);
    return st;
}
