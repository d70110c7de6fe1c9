/* safetensors: 8-byte little-endian header length, a JSON header
 * {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}},
 * then the data. The reader checks every size and offset against the file before use.
 * F16 (IEEE half) and BF16 (bfloat16) are read as well, as diffusers' fp16 variants and
 * bfloat16 saves store them, and converted to float32 exactly. */
#pragma once

#include "core/core.h"

typedef enum {
    DM_DTYPE_F32,
    DM_DTYPE_F64,
    DM_DTYPE_I64,
    DM_DTYPE_I32,
    DM_DTYPE_U8,
    DM_DTYPE_F16,  /* IEEE 754 binary16 */
    DM_DTYPE_BF16, /* bfloat16: the upper half of a float32 */
} dm_dtype;

size_t dm_dtype_size(dm_dtype dtype);
const char *dm_dtype_name(dm_dtype dtype); /* "F32", ... */

#define DM_ST_MAX_DIMS 8

typedef struct {
    const char *name;
    dm_dtype dtype;
    int ndim;
    int64_t shape[DM_ST_MAX_DIMS];
    const void *data; /* little-endian bytes, numel * dtype size of them */
} dm_st_tensor;

/* Writes tensors (in the given order) and string metadata (pairs key, value, count n_meta pairs)
 * atomically. */
dm_status dm_safetensors_write(const char *path, const dm_st_tensor *tensors, int n_tensors,
                               const char *const *meta_kv, int n_meta, dm_error *err);

typedef struct dm_safetensors dm_safetensors;

/* Reads and validates the whole file: header length within the file, valid JSON, known dtypes,
 * non-negative shapes whose byte count equals end - begin without overflow, offsets inside the
 * data section, no two tensors overlapping. */
dm_status dm_safetensors_open(dm_safetensors **st, const char *path, dm_error *err);
int dm_safetensors_count(const dm_safetensors *st);
const dm_st_tensor *dm_safetensors_at(const dm_safetensors *st, int i);
const dm_st_tensor *dm_safetensors_get(const dm_safetensors *st, const char *name); /* or NULL */
const char *dm_safetensors_meta(const dm_safetensors *st, const char *key);        /* or NULL */
/* Copies the named tensor into dst as float32 (from F32, F64, F16 or BF16; F16 and BF16 exactly,
 * subnormals, infinities and NaN included), after checking that it exists and its shape equals
 * (shape, ndim); errors name the file and tensor. */
dm_status dm_safetensors_read_f32(const dm_safetensors *st, const char *name, float *dst,
                                  const int64_t *shape, int ndim, dm_error *err);
/* The path the file was opened from. */
const char *dm_safetensors_path(const dm_safetensors *st);
void dm_safetensors_close(dm_safetensors *st);

/* The float32 value of an IEEE half / a bfloat16, given as its bits. */
float dm_f16_to_f32(uint16_t h);
float dm_bf16_to_f32(uint16_t h);
