/* Owning N x D point sets, and loading/saving them as CSV or NPY chosen by file extension. */
#include "core/core.h"
#include "data/csv.h"
#include "io/image_util.h"
#include "io/npy.h"

#include <math.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>

dm_status dm_dataset_init(dm_dataset *ds, int64_t n, int64_t dim, dm_error *err) {
    memset(ds, 0, sizeof *ds);
    /* rows may be images (c * h * w); the low-dimensional readers check DM_MAX_DIM themselves */
    if (n < 1 || dim < 1)
        return dm_error_set(err, DM_ERR_ARG,
                            "data set of %lld points of dimension %lld: need at least 1 point "
                            "and 1 dimension",
                            (long long)n, (long long)dim);
    if ((uint64_t)n > SIZE_MAX / sizeof(float) / (uint64_t)dim)
        return dm_error_set(err, DM_ERR_ARG, "data set of %lld x %lld points is too large",
                            (long long)n, (long long)dim);
    size_t bytes = (size_t)n * (size_t)dim * sizeof(float);
    ds->x = dm_alloc(bytes);
    if (!ds->x)
        return dm_error_set(err, DM_ERR_NOMEM, "cannot allocate %.1f MiB for %lld points",
                            (double)bytes / (1 << 20), (long long)n);
    ds->n = n;
    ds->dim = dim;
    return DM_OK;
}

dm_status dm_dataset_add_labels(dm_dataset *ds, int32_t num_classes, dm_error *err) {
    if (num_classes < 1)
        return dm_error_set(err, DM_ERR_ARG, "labels need at least 1 class (got %d)",
                            (int)num_classes);
    dm_free(ds->labels);
    ds->labels = dm_alloc((size_t)ds->n * sizeof *ds->labels);
    if (!ds->labels)
        return dm_error_set(err, DM_ERR_NOMEM, "cannot allocate labels for %lld rows",
                            (long long)ds->n);
    memset(ds->labels, 0, (size_t)ds->n * sizeof *ds->labels);
    ds->num_classes = num_classes;
    return DM_OK;
}

void dm_dataset_free(dm_dataset *ds) {
    dm_free(ds->x);
    dm_free(ds->labels);
    if (ds->u8_base && ds->u8_map_bytes)
        munmap(ds->u8_base, ds->u8_map_bytes);
    else
        dm_free(ds->u8_base);
    memset(ds, 0, sizeof *ds);
}

dm_status dm_dataset_init_u8(dm_dataset *ds, int64_t n, int64_t dim, uint8_t **pixels,
                             dm_error *err) {
    memset(ds, 0, sizeof *ds);
    *pixels = NULL;
    if (n < 1 || dim < 1)
        return dm_error_set(err, DM_ERR_ARG,
                            "data set of %lld rows of dimension %lld: need at least 1 row and "
                            "1 dimension",
                            (long long)n, (long long)dim);
    if ((uint64_t)n > SIZE_MAX / sizeof(float) / (uint64_t)dim) /* its float form must fit too */
        return dm_error_set(err, DM_ERR_ARG, "data set of %lld x %lld pixels is too large",
                            (long long)n, (long long)dim);
    size_t bytes = (size_t)n * (size_t)dim;
    uint8_t *p = dm_alloc(bytes);
    if (!p)
        return dm_error_set(err, DM_ERR_NOMEM, "cannot allocate %.1f MiB for %lld rows",
                            (double)bytes / (1 << 20), (long long)n);
    ds->u8 = p;
    ds->u8_base = p;
    ds->n = n;
    ds->dim = dim;
    *pixels = p;
    return DM_OK;
}

/* Releases the pixels of a uint8 set, keeping everything else. */
static void drop_u8(dm_dataset *ds) {
    if (ds->u8_base && ds->u8_map_bytes)
        munmap(ds->u8_base, ds->u8_map_bytes);
    else
        dm_free(ds->u8_base);
    ds->u8 = NULL;
    ds->u8_base = NULL;
    ds->u8_map_bytes = 0;
    ds->u8_hash = 0;
}

dm_status dm_dataset_to_float(dm_dataset *ds, dm_error *err) {
    if (ds->x || !ds->u8) return DM_OK;
    size_t count = (size_t)ds->n * (size_t)ds->dim;
    float *x = dm_alloc(count * sizeof *x);
    if (!x)
        return dm_error_set(err, DM_ERR_NOMEM, "cannot allocate %.1f MiB for %lld rows as floats",
                            (double)(count * sizeof *x) / (1 << 20), (long long)ds->n);
    dm_pixels_from_u8(x, ds->u8, count);
    drop_u8(ds);
    ds->x = x;
    return DM_OK;
}

dm_status dm_dataset_to_u8(dm_dataset *ds, dm_error *err) {
    if (!ds->x) return DM_OK;
    size_t count = (size_t)ds->n * (size_t)ds->dim;
    uint8_t *p = dm_alloc(count ? count : 1);
    if (!p)
        return dm_error_set(err, DM_ERR_NOMEM, "cannot allocate %.1f MiB for %lld rows as bytes",
                            (double)count / (1 << 20), (long long)ds->n);
    for (size_t i = 0; i < count; i++) {
        uint8_t v = dm_pixel_to_u8(ds->x[i]);
        /* exact: the float form must come back bit for bit */
        if (dm_pixel_from_u8(v) != ds->x[i]) {
            dm_free(p);
            return dm_error_set(err, DM_ERR_ARG,
                                "value %g of row %lld is not a pixel level v / 127.5 - 1",
                                (double)ds->x[i], (long long)(i / (size_t)ds->dim));
        }
        p[i] = v;
    }
    dm_free(ds->x);
    ds->x = NULL;
    ds->u8 = p;
    ds->u8_base = p;
    return DM_OK;
}

/* The extension after the last '.' of the file name (not of a folder), or "". */
static const char *extension(const char *path) {
    const char *slash = strrchr(path, '/'), *dot = strrchr(path, '.');
    return dot && (!slash || dot > slash) ? dot + 1 : "";
}

/* The first row holding NaN or Inf, or -1. */
static int64_t first_nonfinite_row(const dm_dataset *ds) {
    if (dm_all_finite(ds->x, (size_t)(ds->n * ds->dim))) return -1;
    for (int64_t i = 0; i < ds->n * ds->dim; i++)
        if (!isfinite(ds->x[i])) return i / ds->dim;
    return -1;
}

static dm_status load_npy(dm_dataset *ds, const char *path, dm_error *err) {
    dm_npy arr;
    dm_status st = dm_npy_read(&arr, path, err);
    if (st) return st;
    if (arr.dtype != DM_DTYPE_F32 && arr.dtype != DM_DTYPE_F64)
        st = dm_error_set(err, DM_ERR_FORMAT, "%s: dtype %s; points must be float32 or float64",
                          path, dm_dtype_name(arr.dtype));
    else if (arr.ndim == 1)
        st = dm_error_set(err, DM_ERR_FORMAT,
                          "%s: a 1-D array of %lld values; points must be a 2-D (N, D) array "
                          "(for 1-D data, reshape to (N, 1))",
                          path, (long long)arr.shape[0]);
    else if (arr.ndim != 2)
        st = dm_error_set(err, DM_ERR_FORMAT, "%s: a %d-D array; points must be a 2-D (N, D) array",
                          path, arr.ndim);
    else if (arr.shape[0] < 1 || arr.shape[1] < 1 || arr.shape[1] > DM_MAX_DIM)
        st = dm_error_set(err, DM_ERR_FORMAT,
                          "%s: shape (%lld, %lld); need at least one row and 1 to %d columns",
                          path, (long long)arr.shape[0], (long long)arr.shape[1], DM_MAX_DIM);
    if (st) {
        dm_npy_free(&arr);
        return st;
    }
    if (arr.dtype == DM_DTYPE_F32) {
        /* both buffers come from dm_alloc: take the array's instead of copying it */
        ds->x = arr.data;
        ds->n = arr.shape[0];
        ds->dim = arr.shape[1];
        return DM_OK;
    }
    st = dm_dataset_init(ds, arr.shape[0], arr.shape[1], err);
    if (!st) {
        const double *src = arr.data;
        for (int64_t i = 0; i < ds->n * ds->dim; i++) ds->x[i] = (float)src[i];
    }
    dm_npy_free(&arr);
    return st;
}

dm_status dm_dataset_load(dm_dataset *ds, const char *path, dm_error *err) {
    memset(ds, 0, sizeof *ds);
    const char *ext = extension(path);
    dm_status st;
    if (strcasecmp(ext, "csv") == 0 || strcasecmp(ext, "txt") == 0)
        st = dm_csv_read(ds, path, err); /* checks finiteness line by line */
    else if (strcasecmp(ext, "npy") == 0)
        st = load_npy(ds, path, err);
    else
        return dm_error_set(err, DM_ERR_ARG,
                            "%s: unknown data file type '.%s' (use .csv, .txt or .npy)", path, ext);
    if (st) return st;
    int64_t bad = first_nonfinite_row(ds);
    if (bad >= 0) {
        dm_dataset_free(ds);
        /* float64 values beyond float32 range become Inf here too */
        return dm_error_set(err, DM_ERR_NUMERIC,
                            "%s: row %lld holds NaN or Inf (or a value beyond float32 range)",
                            path, (long long)bad);
    }
    return DM_OK;
}

dm_status dm_dataset_save(const dm_dataset *ds, const char *path, dm_error *err) {
    if (!ds->x) return dm_error_set(err, DM_ERR_ARG, "%s: the data are uint8 pixels; convert them with dm_dataset_to_float", path);
    const char *ext = extension(path);
    if (strcasecmp(ext, "csv") == 0) return dm_csv_write(ds, path, err);
    if (strcasecmp(ext, "npy") == 0) {
        int64_t shape[2] = {ds->n, ds->dim};
        return dm_npy_write_f32(path, ds->x, shape, 2, err);
    }
    return dm_error_set(err, DM_ERR_ARG, "%s: unknown data file type '.%s' (use .csv or .npy)",
                        path, ext);
}
