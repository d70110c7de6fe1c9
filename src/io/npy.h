/* NumPy .npy files (format versions 1-3): little-endian float32, float64, int64, int32, uint8,
 * C order. The reader validates the header and that the file holds exactly the data it claims. */
#pragma once

#include "io/safetensors.h" /* dm_dtype */

typedef struct {
    dm_dtype dtype;
    int ndim;
    int64_t shape[DM_ST_MAX_DIMS];
    void *data; /* numel * dtype size bytes, owned */
} dm_npy;

dm_status dm_npy_read(dm_npy *arr, const char *path, dm_error *err);
/* Only the header: dtype, ndim and shape (data stays NULL), to decide how to load a file. */
dm_status dm_npy_read_header(dm_npy *arr, const char *path, dm_error *err);
/* The header checked as dm_npy_read does, then the whole file mapped read-only: arr->data points
 * into the mapping (not owned; munmap(*base, *map_bytes) releases it). */
dm_status dm_npy_map(dm_npy *arr, const char *path, void **base, size_t *map_bytes,
                     dm_error *err);
void dm_npy_free(dm_npy *arr);
int64_t dm_npy_numel(const dm_npy *arr);
/* Writes a float32 array atomically. */
dm_status dm_npy_write_f32(const char *path, const float *data, const int64_t *shape, int ndim,
                           dm_error *err);
/* Writes an array of any dtype above (numel * dtype size bytes of data) atomically. */
dm_status dm_npy_write(const char *path, dm_dtype dtype, const void *data, const int64_t *shape,
                       int ndim, dm_error *err);
