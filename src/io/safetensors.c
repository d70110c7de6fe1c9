/* safetensors reader and writer. The reader loads the whole file, then checks every size, dtype
 * and offset in the JSON header against the bytes actually present before any tensor is used. */
#include "io/safetensors.h"

#include "io/atomic_file.h"
#include "io/json_file.h"
#include "io/open_file.h"

#include <cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Tensor bytes are written and read as they lie in memory; the format is little-endian. */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               "safetensors I/O assumes a little-endian host");

/* A larger JSON header is not a checkpoint of ours and would only cost memory. */
#define DM_ST_MAX_HEADER ((uint64_t)100 << 20)

static const char *const dtype_names[] = {"F32", "F64", "I64", "I32", "U8", "F16", "BF16"};
static const size_t dtype_sizes[] = {4, 8, 8, 4, 1, 2, 2};
#define N_DTYPES (int)(sizeof dtype_names / sizeof dtype_names[0])

size_t dm_dtype_size(dm_dtype dtype) {
    assert((int)dtype >= 0 && (int)dtype < N_DTYPES);
    return dtype_sizes[dtype];
}

const char *dm_dtype_name(dm_dtype dtype) {
    assert((int)dtype >= 0 && (int)dtype < N_DTYPES);
    return dtype_names[dtype];
}

/* numel * elem_size of a shape; false on a negative dimension or overflow of uint64. */
static bool shape_bytes(const int64_t *shape, int ndim, size_t elem_size, uint64_t *bytes) {
    uint64_t b = elem_size;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 0 || __builtin_mul_overflow(b, (uint64_t)shape[d], &b)) return false;
    }
    *bytes = b;
    return true;
}

/* ---------------------------------------------------------------------------------------- */
/* Writer                                                                                    */

static dm_status check_tensor_arg(const dm_st_tensor *t, int i, const dm_st_tensor *all,
                                  uint64_t *bytes, dm_error *err) {
    if (!t->name || !t->name[0])
        return dm_error_set(err, DM_ERR_ARG, "tensor %d has no name", i);
    if (strcmp(t->name, "__metadata__") == 0)
        return dm_error_set(err, DM_ERR_ARG, "tensor name '__metadata__' is reserved");
    for (int j = 0; j < i; j++)
        if (strcmp(all[j].name, t->name) == 0)
            return dm_error_set(err, DM_ERR_ARG, "tensor '%s' given twice", t->name);
    if ((int)t->dtype < 0 || (int)t->dtype >= N_DTYPES)
        return dm_error_set(err, DM_ERR_ARG, "tensor '%s': unknown dtype %d", t->name,
                            (int)t->dtype);
    if (t->ndim < 0 || t->ndim > DM_ST_MAX_DIMS)
        return dm_error_set(err, DM_ERR_ARG, "tensor '%s': %d dimensions (at most %d)", t->name,
                            t->ndim, DM_ST_MAX_DIMS);
    if (!shape_bytes(t->shape, t->ndim, dm_dtype_size(t->dtype), bytes))
        return dm_error_set(err, DM_ERR_ARG, "tensor '%s': negative or overflowing shape",
                            t->name);
    if (*bytes > 0 && !t->data)
        return dm_error_set(err, DM_ERR_ARG, "tensor '%s': no data", t->name);
    return DM_OK;
}

/* The JSON header, unpadded; NULL (with err set) on failure. Free with cJSON_free. */
static char *build_header(const dm_st_tensor *tensors, int n_tensors, const char *const *meta_kv,
                          int n_meta, dm_error *err) {
    cJSON *root = cJSON_CreateObject();
    if (!root) goto nomem;
    if (n_meta > 0) {
        cJSON *meta = cJSON_AddObjectToObject(root, "__metadata__");
        if (!meta) goto nomem;
        for (int i = 0; i < n_meta; i++)
            if (!cJSON_AddStringToObject(meta, meta_kv[2 * i], meta_kv[2 * i + 1])) goto nomem;
    }
    uint64_t offset = 0;
    for (int i = 0; i < n_tensors; i++) {
        const dm_st_tensor *t = &tensors[i];
        uint64_t bytes = 0;
        shape_bytes(t->shape, t->ndim, dm_dtype_size(t->dtype), &bytes); /* checked already */
        cJSON *entry = cJSON_AddObjectToObject(root, t->name);
        cJSON *shape = cJSON_CreateArray(), *offs = cJSON_CreateArray();
        if (!entry || !shape || !offs) {
            cJSON_Delete(shape);
            cJSON_Delete(offs);
            goto nomem;
        }
        cJSON_AddItemToObject(entry, "dtype", cJSON_CreateString(dm_dtype_name(t->dtype)));
        cJSON_AddItemToObject(entry, "shape", shape);
        cJSON_AddItemToObject(entry, "data_offsets", offs);
        /* cJSON numbers are doubles: exact for every size below 2^53 bytes */
        for (int d = 0; d < t->ndim; d++)
            cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->shape[d]));
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)offset));
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)(offset + bytes)));
        offset += bytes;
    }
    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!text) dm_error_set(err, DM_ERR_NOMEM, "cannot build the safetensors header");
    return text;
nomem:
    cJSON_Delete(root);
    dm_error_set(err, DM_ERR_NOMEM, "cannot build the safetensors header");
    return NULL;
}

dm_status dm_safetensors_write(const char *path, const dm_st_tensor *tensors, int n_tensors,
                               const char *const *meta_kv, int n_meta, dm_error *err) {
    if (n_tensors < 0 || n_meta < 0 || (n_tensors > 0 && !tensors) || (n_meta > 0 && !meta_kv))
        return dm_error_set(err, DM_ERR_ARG, "%s: bad tensor or metadata list", path);
    uint64_t total = 0;
    for (int i = 0; i < n_tensors; i++) {
        uint64_t bytes = 0;
        dm_status st = check_tensor_arg(&tensors[i], i, tensors, &bytes, err);
        if (st) {
            dm_error_prefix(err, "%s", path);
            return st;
        }
        if (__builtin_add_overflow(total, bytes, &total))
            return dm_error_set(err, DM_ERR_ARG, "%s: tensors too large", path);
    }
    for (int i = 0; i < n_meta; i++)
        if (!meta_kv[2 * i] || !meta_kv[2 * i + 1])
            return dm_error_set(err, DM_ERR_ARG, "%s: metadata pair %d has a NULL string", path, i);

    char *header = build_header(tensors, n_tensors, meta_kv, n_meta, err);
    if (!header) {
        dm_error_prefix(err, "%s", path);
        return DM_ERR_NOMEM;
    }
    size_t len = strlen(header);
    /* spaces pad the header so the data section starts 8-byte aligned */
    size_t padded = (len + 7) / 8 * 8;
    uint8_t len_le[8];
    for (int b = 0; b < 8; b++) len_le[b] = (uint8_t)((uint64_t)padded >> (8 * b));

    dm_atomic_file af;
    dm_status st = dm_atomic_open(&af, path, err);
    if (st) {
        cJSON_free(header);
        return st;
    }
    bool ok = fwrite(len_le, 1, 8, af.f) == 8 && fwrite(header, 1, len, af.f) == len;
    for (size_t i = len; ok && i < padded; i++) ok = fputc(' ', af.f) != EOF;
    cJSON_free(header);
    for (int i = 0; ok && i < n_tensors; i++) {
        uint64_t bytes = 0;
        shape_bytes(tensors[i].shape, tensors[i].ndim, dm_dtype_size(tensors[i].dtype), &bytes);
        ok = bytes == 0 || fwrite(tensors[i].data, 1, (size_t)bytes, af.f) == bytes;
    }
    if (!ok) {
        int saved = errno;
        dm_atomic_abort(&af);
        return dm_error_set(err, DM_ERR_IO, "%s: write failed: %s", path, strerror(saved));
    }
    return dm_atomic_commit(&af, err);
}

/* ---------------------------------------------------------------------------------------- */
/* Reader                                                                                    */

struct dm_safetensors {
    char *path;
    uint8_t *buf;      /* the whole file */
    cJSON *root;       /* parsed header; tensor names and metadata strings live here */
    const cJSON *meta; /* "__metadata__" object or NULL */
    int n;
    dm_st_tensor *tensors; /* (n), in header order */
};

typedef struct {
    uint64_t begin, end;
    int index;
} span;

static int span_cmp(const void *a, const void *b) {
    const span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

/* A JSON number that is a whole number in [0, 2^53] (where doubles hold every integer). */
static bool json_uint(const cJSON *item, uint64_t *out) {
    if (!cJSON_IsNumber(item)) return false;
    double v = item->valuedouble;
    if (!(v >= 0 && v <= 9007199254740992.0) || v != floor(v)) return false;
    *out = (uint64_t)v;
    return true;
}

static dm_status read_whole_file(const char *path, uint8_t **buf, size_t *size, dm_error *err) {
    *buf = NULL;
    FILE *f;
    struct stat sb;
    dm_status opened = dm_fopen_regular(path, &f, &sb, err);
    if (opened) return opened;
    uint64_t fsize = (uint64_t)sb.st_size;
    uint8_t len_le[8];
    if (fsize < 8 || fread(len_le, 1, 8, f) != 8) {
        fclose(f);
        return dm_error_set(err, DM_ERR_FORMAT, "%s: %llu bytes, too short for a safetensors file",
                            path, (unsigned long long)fsize);
    }
    uint64_t hlen = 0;
    for (int b = 0; b < 8; b++) hlen |= (uint64_t)len_le[b] << (8 * b);
    /* sizes the header claims are checked against the file before anything is allocated */
    if (hlen < 2 || hlen > DM_ST_MAX_HEADER || hlen > fsize - 8) {
        fclose(f);
        return dm_error_set(err, DM_ERR_FORMAT,
                            "%s: header length %llu does not fit a file of %llu bytes "
                            "(must be 2 to 100 MiB and within the file)",
                            path, (unsigned long long)hlen, (unsigned long long)fsize);
    }
    if (fsize > SIZE_MAX) {
        fclose(f);
        return dm_error_set(err, DM_ERR_NOMEM, "%s: too large to load", path);
    }
    *buf = dm_alloc((size_t)fsize);
    if (!*buf) {
        fclose(f);
        return dm_error_set(err, DM_ERR_NOMEM, "%s: cannot allocate %llu bytes", path,
                            (unsigned long long)fsize);
    }
    memcpy(*buf, len_le, 8);
    size_t rest = (size_t)fsize - 8;
    if (fread(*buf + 8, 1, rest, f) != rest) {
        int saved = errno;
        bool short_read = feof(f);
        fclose(f);
        dm_free(*buf);
        *buf = NULL;
        if (short_read) return dm_error_set(err, DM_ERR_IO, "%s: file shrank while reading", path);
        return dm_error_set(err, DM_ERR_IO, "%s: read failed: %s", path, strerror(saved));
    }
    fclose(f);
    *size = (size_t)fsize;
    return DM_OK;
}

/* Parses the header (bytes 8 .. 8 + hlen) into st->root; refuses trailing non-space bytes. */
static dm_status parse_header(dm_safetensors *st, size_t hlen, dm_error *err) {
    char *text = malloc(hlen + 1); /* cJSON wants a NUL-terminated string */
    if (!text) return dm_error_set(err, DM_ERR_NOMEM, "%s: cannot allocate the header", st->path);
    memcpy(text, st->buf + 8, hlen);
    text[hlen] = '\0';
    const char *end = NULL;
    st->root = cJSON_ParseWithOpts(text, &end, 0);
    size_t stop = end ? (size_t)(end - text) : 0; /* where parsing ended or failed */
    bool trailing_ok = st->root != NULL;
    for (size_t pos = stop; trailing_ok && pos < hlen; pos++) trailing_ok = text[pos] == ' ';
    free(text);
    if (!st->root)
        return dm_error_set(err, DM_ERR_FORMAT, "%s: header is not valid JSON (near byte %zu)",
                            st->path, 8 + stop);
    if (!trailing_ok)
        return dm_error_set(err, DM_ERR_FORMAT, "%s: unexpected bytes after the JSON header",
                            st->path);
    if (!cJSON_IsObject(st->root))
        return dm_error_set(err, DM_ERR_FORMAT, "%s: header is not a JSON object", st->path);
    return dm_json_check_unique_keys(st->root, st->path, err);
}

static dm_status check_metadata(dm_safetensors *st, const cJSON *meta, dm_error *err) {
    if (!cJSON_IsObject(meta))
        return dm_error_set(err, DM_ERR_FORMAT, "%s: __metadata__ is not an object", st->path);
    const cJSON *kv;
    cJSON_ArrayForEach(kv, meta) {
        if (!cJSON_IsString(kv))
            return dm_error_set(err, DM_ERR_FORMAT, "%s: __metadata__ value '%s' is not a string",
                                st->path, kv->string);
    }
    st->meta = meta;
    return DM_OK;
}

/* Validates one header entry and fills t and its byte span (relative to the data section). */
static dm_status parse_entry(const dm_safetensors *st, const cJSON *entry, uint64_t data_size,
                             dm_st_tensor *t, span *sp, dm_error *err) {
    const char *path = st->path, *name = entry->string;
    if (!cJSON_IsObject(entry))
        return dm_error_set(err, DM_ERR_FORMAT, "%s: tensor '%s': entry is not an object", path,
                            name);
    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(entry, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(entry, "shape");
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(entry, "data_offsets");
    if (!cJSON_IsString(dtype) || !cJSON_IsArray(shape) || !cJSON_IsArray(offs))
        return dm_error_set(err, DM_ERR_FORMAT,
                            "%s: tensor '%s': needs string 'dtype' and arrays 'shape' and "
                            "'data_offsets'",
                            path, name);
    int k = 0;
    while (k < N_DTYPES && strcmp(dtype->valuestring, dtype_names[k]) != 0) k++;
    if (k == N_DTYPES)
        return dm_error_set(err, DM_ERR_FORMAT,
                            "%s: tensor '%s': unsupported dtype '%s' (F32, F64, F16, BF16, I64, "
                            "I32, U8)",
                            path, name, dtype->valuestring);
    t->name = name;
    t->dtype = (dm_dtype)k;

    int ndim = cJSON_GetArraySize(shape);
    if (ndim > DM_ST_MAX_DIMS)
        return dm_error_set(err, DM_ERR_FORMAT, "%s: tensor '%s': %d dimensions (at most %d)",
                            path, name, ndim, DM_ST_MAX_DIMS);
    t->ndim = ndim;
    const cJSON *dim;
    int d = 0;
    cJSON_ArrayForEach(dim, shape) {
        uint64_t v;
        if (!json_uint(dim, &v))
            return dm_error_set(err, DM_ERR_FORMAT,
                                "%s: tensor '%s': shape[%d] is not a non-negative integer", path,
                                name, d);
        t->shape[d++] = (int64_t)v;
    }
    uint64_t bytes, begin, end;
    if (!shape_bytes(t->shape, ndim, dtype_sizes[k], &bytes))
        return dm_error_set(err, DM_ERR_FORMAT, "%s: tensor '%s': shape too large (overflow)",
                            path, name);
    if (cJSON_GetArraySize(offs) != 2 || !json_uint(cJSON_GetArrayItem(offs, 0), &begin) ||
        !json_uint(cJSON_GetArrayItem(offs, 1), &end))
        return dm_error_set(err, DM_ERR_FORMAT,
                            "%s: tensor '%s': data_offsets must be two non-negative integers",
                            path, name);
    if (end < begin)
        return dm_error_set(err, DM_ERR_FORMAT,
                            "%s: tensor '%s': data_offsets [%llu, %llu] end before they begin",
                            path, name, (unsigned long long)begin, (unsigned long long)end);
    if (end > data_size)
        return dm_error_set(err, DM_ERR_FORMAT,
                            "%s: tensor '%s': data_offsets [%llu, %llu] outside the data section "
                            "of %llu bytes",
                            path, name, (unsigned long long)begin, (unsigned long long)end,
                            (unsigned long long)data_size);
    if (end - begin != bytes)
        return dm_error_set(err, DM_ERR_FORMAT,
                            "%s: tensor '%s': %llu bytes in the file, but its shape and dtype "
                            "need %llu",
                            path, name, (unsigned long long)(end - begin),
                            (unsigned long long)bytes);
    sp->begin = begin;
    sp->end = end;
    return DM_OK;
}

static dm_status parse_tensors(dm_safetensors *st, size_t data_off, size_t data_size,
                               dm_error *err) {
    int n_entries = cJSON_GetArraySize(st->root);
    st->tensors = calloc(n_entries ? (size_t)n_entries : 1, sizeof *st->tensors);
    span *spans = calloc(n_entries ? (size_t)n_entries : 1, sizeof *spans);
    if (!st->tensors || !spans) {
        free(spans);
        return dm_error_set(err, DM_ERR_NOMEM, "%s: cannot allocate the tensor table", st->path);
    }
    dm_status status = DM_OK;
    const cJSON *entry;
    cJSON_ArrayForEach(entry, st->root) {
        if (strcmp(entry->string, "__metadata__") == 0) {
            if (st->meta) {
                status = dm_error_set(err, DM_ERR_FORMAT, "%s: __metadata__ given twice", st->path);
                break;
            }
            if ((status = check_metadata(st, entry, err))) break;
            continue;
        }
        /* cJSON keeps duplicate keys; a second tensor of the same name would be unreachable */
        if (dm_safetensors_get(st, entry->string)) {
            status = dm_error_set(err, DM_ERR_FORMAT, "%s: tensor '%s' appears twice", st->path,
                                  entry->string);
            break;
        }
        dm_st_tensor *t = &st->tensors[st->n];
        if ((status = parse_entry(st, entry, data_size, t, &spans[st->n], err))) break;
        t->data = st->buf + data_off + spans[st->n].begin;
        spans[st->n].index = st->n;
        st->n++;
    }
    if (!status) {
        /* the tensors must tile the data section exactly, as the format requires: no overlap,
         * no hole between two tensors or before the first, nothing after the last */
        qsort(spans, (size_t)st->n, sizeof *spans, span_cmp);
        uint64_t covered = 0; /* the data section is indexed up to here */
        for (int i = 0; i < st->n && !status; i++) {
            const char *name = st->tensors[spans[i].index].name;
            if (i > 0 && spans[i].begin < spans[i - 1].end)
                status = dm_error_set(err, DM_ERR_FORMAT, "%s: tensors '%s' and '%s' overlap",
                                      st->path, st->tensors[spans[i - 1].index].name, name);
            else if (spans[i].begin > covered)
                status = dm_error_set(err, DM_ERR_FORMAT,
                                      "%s: a hole of %llu bytes in the data section before "
                                      "tensor '%s' (offset %llu)",
                                      st->path, (unsigned long long)(spans[i].begin - covered),
                                      name, (unsigned long long)spans[i].begin);
            if (spans[i].end > covered) covered = spans[i].end;
        }
        if (!status && covered != data_size)
            status = dm_error_set(err, DM_ERR_FORMAT,
                                  "%s: %llu bytes after the last tensor's data (the data section "
                                  "holds %llu, the tensors index %llu)",
                                  st->path, (unsigned long long)(data_size - covered),
                                  (unsigned long long)data_size, (unsigned long long)covered);
    }
    free(spans);
    return status;
}

dm_status dm_safetensors_open(dm_safetensors **out, const char *path, dm_error *err) {
    *out = NULL;
    dm_safetensors *st = calloc(1, sizeof *st);
    if (!st || !(st->path = strdup(path))) {
        free(st);
        return dm_error_set(err, DM_ERR_NOMEM, "%s: out of memory", path);
    }
    size_t size = 0;
    dm_status status = read_whole_file(path, &st->buf, &size, err);
    if (!status) {
        size_t hlen = 0;
        for (int b = 0; b < 8; b++) hlen |= (size_t)st->buf[b] << (8 * b);
        status = parse_header(st, hlen, err);
        if (!status) status = parse_tensors(st, 8 + hlen, size - 8 - hlen, err);
    }
    if (status) {
        dm_safetensors_close(st);
        return status;
    }
    *out = st;
    return DM_OK;
}

int dm_safetensors_count(const dm_safetensors *st) { return st->n; }

const dm_st_tensor *dm_safetensors_at(const dm_safetensors *st, int i) {
    assert(i >= 0 && i < st->n);
    return &st->tensors[i];
}

const dm_st_tensor *dm_safetensors_get(const dm_safetensors *st, const char *name) {
    for (int i = 0; i < st->n; i++)
        if (strcmp(st->tensors[i].name, name) == 0) return &st->tensors[i];
    return NULL;
}

const char *dm_safetensors_meta(const dm_safetensors *st, const char *key) {
    if (!st->meta) return NULL;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(st->meta, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

const char *dm_safetensors_path(const dm_safetensors *st) { return st->path; }

float dm_f16_to_f32(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
    uint32_t bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13); /* infinity, or NaN with its payload */
    } else if (exp != 0) {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13); /* normal: rebias the exponent */
    } else {
        /* zero or subnormal: man * 2^-24, exact in float32 (man < 2^10, a power-of-two scale) */
        float v = (float)man * 0x1p-24f;
        memcpy(&bits, &v, 4);
        bits |= sign;
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

float dm_bf16_to_f32(uint16_t h) {
    const uint32_t bits = (uint32_t)h << 16; /* bfloat16 is the upper half of a float32 */
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static void format_shape(char *buf, size_t size, const int64_t *shape, int ndim) {
    size_t used = (size_t)snprintf(buf, size, "[");
    for (int d = 0; d < ndim && used < size; d++)
        used += (size_t)snprintf(buf + used, size - used, d ? ", %lld" : "%lld",
                                 (long long)shape[d]);
    if (used < size) snprintf(buf + used, size - used, "]");
}

dm_status dm_safetensors_read_f32(const dm_safetensors *st, const char *name, float *dst,
                                  const int64_t *shape, int ndim, dm_error *err) {
    const dm_st_tensor *t = dm_safetensors_get(st, name);
    if (!t)
        return dm_error_set(err, DM_ERR_MISMATCH, "%s: no tensor '%s'", st->path, name);
    bool same = t->ndim == ndim;
    for (int d = 0; same && d < ndim; d++) same = t->shape[d] == shape[d];
    if (!same) {
        char got[160], want[160];
        format_shape(got, sizeof got, t->shape, t->ndim);
        format_shape(want, sizeof want, shape, ndim);
        return dm_error_set(err, DM_ERR_MISMATCH, "%s: tensor '%s' has shape %s, expected %s",
                            st->path, name, got, want);
    }
    uint64_t numel = 1;
    for (int d = 0; d < ndim; d++) numel *= (uint64_t)shape[d]; /* bounded by the file size */
    if (t->dtype == DM_DTYPE_F32) {
        memcpy(dst, t->data, (size_t)numel * sizeof(float));
    } else if (t->dtype == DM_DTYPE_F64) {
        const uint8_t *src = t->data;
        for (uint64_t i = 0; i < numel; i++) {
            double v;
            memcpy(&v, src + 8 * i, 8); /* the data may be unaligned */
            dst[i] = (float)v;
        }
    } else if (t->dtype == DM_DTYPE_F16 || t->dtype == DM_DTYPE_BF16) {
        const uint8_t *src = t->data;
        const bool half = t->dtype == DM_DTYPE_F16;
        for (uint64_t i = 0; i < numel; i++) {
            const uint16_t h = (uint16_t)(src[2 * i] | (src[2 * i + 1] << 8)); /* little-endian */
            dst[i] = half ? dm_f16_to_f32(h) : dm_bf16_to_f32(h);
        }
    } else {
        return dm_error_set(err, DM_ERR_MISMATCH,
                            "%s: tensor '%s' is %s, expected F32, F64, F16 or BF16",
                            st->path, name, dm_dtype_name(t->dtype));
    }
    return DM_OK;
}

void dm_safetensors_close(dm_safetensors *st) {
    if (!st) return;
    cJSON_Delete(st->root);
    dm_free(st->buf);
    free(st->tensors);
    free(st->path);
    free(st);
}
