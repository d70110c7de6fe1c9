/* NumPy .npy reader (format versions 1.0, 2.0, 3.0) and writer (version 1.0).
 * Layout: "\x93NUMPY", major, minor, header length (2 bytes LE in 1.0, 4 in 2.0/3.0), a Python
 * dict literal {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), } padded with spaces
 * and a newline, then the raw C-order data. */
#include "io/npy.h"

#include "io/atomic_file.h"
#include "io/open_file.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "npy I/O assumes a little-endian host");

static const uint8_t npy_magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};

/* numpy itself refuses headers over 10000 bytes by default; 64 KiB leaves room and bounds
 * what a hostile length field can make us allocate. */
#define NPY_MAX_HEADER 65536

int64_t dm_npy_numel(const dm_npy *arr) {
    int64_t n = 1;
    for (int d = 0; d < arr->ndim; d++) n *= arr->shape[d];
    return n;
}

void dm_npy_free(dm_npy *arr) {
    dm_free(arr->data);
    arr->data = NULL;
    arr->ndim = 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Header dict parser: a tiny subset of Python literals, tolerant of spacing.                */

typedef struct {
    const char *s, *end;
    const char *path;
    dm_error *err;
} cursor;

static void skip_space(cursor *c) {
    while (c->s < c->end && isspace((unsigned char)*c->s)) c->s++;
}

static bool accept(cursor *c, char ch) {
    skip_space(c);
    if (c->s < c->end && *c->s == ch) {
        c->s++;
        return true;
    }
    return false;
}

static dm_status bad_header(cursor *c, const char *what) {
    return dm_error_set(c->err, DM_ERR_FORMAT, "%s: malformed header: %s", c->path, what);
}

/* A quoted string ('...' or "...", no escapes) into out. */
static dm_status parse_string(cursor *c, char *out, size_t size) {
    skip_space(c);
    if (c->s >= c->end || (*c->s != '\'' && *c->s != '"'))
        return bad_header(c, "expected a string");
    char quote = *c->s++;
    size_t len = 0;
    while (c->s < c->end && *c->s != quote) {
        if (*c->s == '\\' || len + 1 >= size) return bad_header(c, "unexpected string");
        out[len++] = *c->s++;
    }
    if (c->s >= c->end) return bad_header(c, "unterminated string");
    c->s++;
    out[len] = '\0';
    return DM_OK;
}

static dm_status parse_bool(cursor *c, bool *out) {
    skip_space(c);
    size_t left = (size_t)(c->end - c->s);
    if (left >= 4 && memcmp(c->s, "True", 4) == 0) {
        c->s += 4;
        *out = true;
    } else if (left >= 5 && memcmp(c->s, "False", 5) == 0) {
        c->s += 5;
        *out = false;
    } else {
        return bad_header(c, "fortran_order must be True or False");
    }
    return DM_OK;
}

/* (d0, d1, ...) with an optional trailing comma; () is a scalar. */
static dm_status parse_shape(cursor *c, int64_t *shape, int *ndim) {
    if (!accept(c, '(')) return bad_header(c, "shape must be a tuple");
    *ndim = 0;
    for (;;) {
        if (accept(c, ')')) return DM_OK;
        skip_space(c);
        if (c->s >= c->end || !isdigit((unsigned char)*c->s))
            return bad_header(c, "shape entries must be non-negative integers");
        int64_t v = 0;
        while (c->s < c->end && isdigit((unsigned char)*c->s)) {
            if (v > (INT64_MAX - 9) / 10)
                return dm_error_set(c->err, DM_ERR_FORMAT, "%s: shape dimension too large",
                                    c->path);
            v = v * 10 + (*c->s++ - '0');
        }
        if (c->s < c->end && *c->s == 'L') c->s++; /* Python 2 long literals in old files */
        if (*ndim == DM_ST_MAX_DIMS)
            return dm_error_set(c->err, DM_ERR_FORMAT, "%s: more than %d dimensions", c->path,
                                DM_ST_MAX_DIMS);
        shape[(*ndim)++] = v;
        if (accept(c, ')')) return DM_OK;
        if (!accept(c, ',')) return bad_header(c, "expected ',' or ')' in shape");
    }
}

static dm_status parse_descr(cursor *c, const char *descr, dm_dtype *dtype) {
    static const struct {
        const char *descr;
        dm_dtype dtype;
    } known[] = {{"<f4", DM_DTYPE_F32}, {"<f8", DM_DTYPE_F64}, {"<i8", DM_DTYPE_I64},
                 {"<i4", DM_DTYPE_I32}, {"|u1", DM_DTYPE_U8},  {"<u1", DM_DTYPE_U8}};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        if (strcmp(descr, known[i].descr) == 0) {
            *dtype = known[i].dtype;
            return DM_OK;
        }
    }
    if (descr[0] == '>')
        return dm_error_set(c->err, DM_ERR_FORMAT,
                            "%s: big-endian dtype '%s' is not supported (convert with "
                            "arr.astype(arr.dtype.newbyteorder('<')))",
                            c->path, descr);
    return dm_error_set(c->err, DM_ERR_FORMAT,
                        "%s: unsupported dtype '%s' (<f4, <f8, <i8, <i4, |u1)", c->path, descr);
}

static dm_status parse_header(const char *text, size_t len, const char *path, dm_npy *arr,
                              dm_error *err) {
    cursor c = {text, text + len, path, err};
    bool have_descr = false, have_order = false, have_shape = false, fortran = false;
    dm_status st;
    if (!accept(&c, '{')) return bad_header(&c, "expected '{'");
    while (!accept(&c, '}')) {
        char key[32], descr[32];
        if ((st = parse_string(&c, key, sizeof key))) return st;
        if (!accept(&c, ':')) return bad_header(&c, "expected ':'");
        if (strcmp(key, "descr") == 0 && !have_descr) {
            if ((st = parse_string(&c, descr, sizeof descr))) return st;
            if ((st = parse_descr(&c, descr, &arr->dtype))) return st;
            have_descr = true;
        } else if (strcmp(key, "fortran_order") == 0 && !have_order) {
            if ((st = parse_bool(&c, &fortran))) return st;
            have_order = true;
        } else if (strcmp(key, "shape") == 0 && !have_shape) {
            if ((st = parse_shape(&c, arr->shape, &arr->ndim))) return st;
            have_shape = true;
        } else {
            return dm_error_set(err, DM_ERR_FORMAT, "%s: unexpected or repeated header key '%s'",
                                path, key);
        }
        if (!accept(&c, ',')) {
            if (!accept(&c, '}')) return bad_header(&c, "expected ',' or '}'");
            break;
        }
    }
    skip_space(&c);
    if (c.s != c.end) return bad_header(&c, "unexpected bytes after the dict");
    if (!have_descr || !have_order || !have_shape)
        return bad_header(&c, "needs 'descr', 'fortran_order' and 'shape'");
    if (fortran)
        return dm_error_set(err, DM_ERR_FORMAT,
                            "%s: fortran_order arrays are not supported (save a C-order array: "
                            "np.ascontiguousarray)",
                            path);
    return DM_OK;
}

/* ---------------------------------------------------------------------------------------- */

static dm_status read_exact(FILE *f, void *buf, size_t n, const char *path, dm_error *err) {
    if (fread(buf, 1, n, f) == n) return DM_OK;
    if (feof(f)) return dm_error_set(err, DM_ERR_FORMAT, "%s: truncated", path);
    return dm_error_set(err, DM_ERR_IO, "%s: read failed: %s", path, strerror(errno));
}

/* Everything up to the data: magic, version, header. Leaves f at the first data byte and
 * sets *data_bytes to what the file holds after the header. */
static dm_status read_preamble(FILE *f, uint64_t fsize, const char *path, dm_npy *arr,
                               uint64_t *data_bytes, dm_error *err) {
    uint8_t pre[12];
    if (fsize < 10)
        return dm_error_set(err, DM_ERR_FORMAT, "%s: %llu bytes, too short for a .npy file", path,
                            (unsigned long long)fsize);
    dm_status st = read_exact(f, pre, 10, path, err);
    if (st) return st;
    if (memcmp(pre, npy_magic, 6) != 0)
        return dm_error_set(err, DM_ERR_FORMAT, "%s: not a .npy file (bad magic)", path);
    int major = pre[6], minor = pre[7];
    if (!((major == 1 || major == 2 || major == 3) && minor == 0))
        return dm_error_set(err, DM_ERR_FORMAT, "%s: unsupported .npy version %d.%d", path, major,
                            minor);
    uint64_t hlen, pre_len;
    if (major == 1) {
        hlen = (uint64_t)pre[8] | (uint64_t)pre[9] << 8;
        pre_len = 10;
    } else {
        if (fsize < 12 || (st = read_exact(f, pre + 10, 2, path, err)))
            return dm_error_set(err, DM_ERR_FORMAT, "%s: truncated header", path);
        hlen = (uint64_t)pre[8] | (uint64_t)pre[9] << 8 | (uint64_t)pre[10] << 16 |
               (uint64_t)pre[11] << 24;
        pre_len = 12;
    }
    if (hlen > NPY_MAX_HEADER || hlen > fsize - pre_len)
        return dm_error_set(err, DM_ERR_FORMAT,
                            "%s: header length %llu runs past the end of the file (%llu bytes)",
                            path, (unsigned long long)hlen, (unsigned long long)fsize);
    char *header = malloc(hlen ? (size_t)hlen : 1);
    if (!header) return dm_error_set(err, DM_ERR_NOMEM, "%s: cannot allocate the header", path);
    st = read_exact(f, header, (size_t)hlen, path, err);
    if (!st) st = parse_header(header, (size_t)hlen, path, arr, err);
    free(header);
    if (st) return st;
    *data_bytes = fsize - pre_len - hlen;
    return DM_OK;
}

/* Opens path and reads its header into arr (no data); *f is left at the data. */
static dm_status open_npy(FILE **f, dm_npy *arr, const char *path, uint64_t *data_bytes,
                          dm_error *err) {
    memset(arr, 0, sizeof *arr);
    struct stat sb;
    dm_status st = dm_fopen_regular(path, f, &sb, err);
    if (st) return st;
    st = read_preamble(*f, (uint64_t)sb.st_size, path, arr, data_bytes, err);
    if (st) {
        fclose(*f);
        *f = NULL;
        arr->ndim = 0;
    }
    return st;
}

dm_status dm_npy_read_header(dm_npy *arr, const char *path, dm_error *err) {
    FILE *f;
    uint64_t data_bytes;
    dm_status st = open_npy(&f, arr, path, &data_bytes, err);
    if (!st) fclose(f);
    return st;
}

/* The header's claim checked against the bytes present (before anything is allocated or
 * mapped): *need the data bytes. Closes f on failure. */
static dm_status check_data_size(FILE *f, dm_npy *arr, uint64_t data_bytes, const char *path,
                                 uint64_t *need_out, dm_error *err) {
    uint64_t need = dm_dtype_size(arr->dtype);
    for (int d = 0; d < arr->ndim; d++) {
        if (__builtin_mul_overflow(need, (uint64_t)arr->shape[d], &need)) {
            fclose(f);
            arr->ndim = 0;
            return dm_error_set(err, DM_ERR_FORMAT, "%s: shape too large (overflow)", path);
        }
    }
    if (need != data_bytes || need > SIZE_MAX) {
        fclose(f);
        arr->ndim = 0;
        return dm_error_set(err, DM_ERR_FORMAT,
                            "%s: header describes %llu data bytes, the file holds %llu (%s)", path,
                            (unsigned long long)need, (unsigned long long)data_bytes,
                            need > data_bytes ? "truncated" : "trailing bytes");
    }
    *need_out = need;
    return DM_OK;
}

dm_status dm_npy_map(dm_npy *arr, const char *path, void **base, size_t *map_bytes,
                     dm_error *err) {
    *base = NULL;
    *map_bytes = 0;
    FILE *f;
    uint64_t data_bytes = 0, need = 0;
    dm_status st = open_npy(&f, arr, path, &data_bytes, err);
    if (st || (st = check_data_size(f, arr, data_bytes, path, &need, err))) return st;
    long offset = ftell(f);
    struct stat sb;
    if (offset < 0 || fstat(fileno(f), &sb) != 0 || (uint64_t)sb.st_size != (uint64_t)offset + need) {
        fclose(f);
        arr->ndim = 0;
        return dm_error_set(err, DM_ERR_IO, "%s: the file changed while being read", path);
    }
    void *p = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fileno(f), 0);
    fclose(f);
    if (p == MAP_FAILED) {
        arr->ndim = 0;
        return dm_error_set(err, DM_ERR_IO, "%s: cannot map: %s", path, strerror(errno));
    }
    *base = p;
    *map_bytes = (size_t)sb.st_size;
    arr->data = (uint8_t *)p + offset;
    return DM_OK;
}

dm_status dm_npy_read(dm_npy *arr, const char *path, dm_error *err) {
    FILE *f;
    uint64_t data_bytes = 0, need = 0;
    dm_status st = open_npy(&f, arr, path, &data_bytes, err);
    if (st || (st = check_data_size(f, arr, data_bytes, path, &need, err))) return st;
    arr->data = dm_alloc((size_t)need);
    if (!arr->data) {
        fclose(f);
        arr->ndim = 0;
        return dm_error_set(err, DM_ERR_NOMEM, "%s: cannot allocate %llu bytes", path,
                            (unsigned long long)need);
    }
    st = read_exact(f, arr->data, (size_t)need, path, err);
    fclose(f);
    if (st) dm_npy_free(arr);
    return st;
}

/* numpy's descr string for each dtype this file writes */
static const char *npy_descr(dm_dtype dtype) {
    switch (dtype) {
    case DM_DTYPE_F32: return "<f4";
    case DM_DTYPE_F64: return "<f8";
    case DM_DTYPE_I64: return "<i8";
    case DM_DTYPE_I32: return "<i4";
    case DM_DTYPE_U8: return "|u1";
    case DM_DTYPE_F16:
    case DM_DTYPE_BF16: return NULL; /* safetensors dtypes NPY files here never hold */
    }
    return NULL;
}

dm_status dm_npy_write_f32(const char *path, const float *data, const int64_t *shape, int ndim,
                           dm_error *err) {
    return dm_npy_write(path, DM_DTYPE_F32, data, shape, ndim, err);
}

dm_status dm_npy_write(const char *path, dm_dtype dtype, const void *data, const int64_t *shape,
                       int ndim, dm_error *err) {
    const char *descr = npy_descr(dtype);
    if (!descr) return dm_error_set(err, DM_ERR_ARG, "%s: unknown dtype %d", path, (int)dtype);
    if (ndim < 0 || ndim > DM_ST_MAX_DIMS)
        return dm_error_set(err, DM_ERR_ARG, "%s: %d dimensions (at most %d)", path, ndim,
                            DM_ST_MAX_DIMS);
    uint64_t bytes = dm_dtype_size(dtype);
    for (int d = 0; d < ndim; d++)
        if (shape[d] < 0 || __builtin_mul_overflow(bytes, (uint64_t)shape[d], &bytes))
            return dm_error_set(err, DM_ERR_ARG, "%s: negative or overflowing shape", path);

    /* numpy's own spelling: "()" for a scalar, "(n,)" for 1-D, "(a, b)" otherwise */
    char header[512];
    int len = snprintf(header, sizeof header,
                       "{'descr': '%s', 'fortran_order': False, 'shape': (", descr);
    for (int d = 0; d < ndim; d++)
        len += snprintf(header + len, sizeof header - (size_t)len, "%s%lld", d ? ", " : "",
                        (long long)shape[d]);
    len += snprintf(header + len, sizeof header - (size_t)len, "%s), }", ndim == 1 ? "," : "");
    /* pad with spaces and a final newline so the data starts at a multiple of 64 bytes */
    size_t total = (10 + (size_t)len + 1 + 63) / 64 * 64;
    size_t hlen = total - 10;
    memset(header + len, ' ', hlen - (size_t)len - 1);
    header[hlen - 1] = '\n';

    uint8_t pre[10];
    memcpy(pre, npy_magic, 6);
    pre[6] = 1;
    pre[7] = 0;
    pre[8] = (uint8_t)(hlen & 0xff);
    pre[9] = (uint8_t)(hlen >> 8);

    dm_atomic_file af;
    dm_status st = dm_atomic_open(&af, path, err);
    if (st) return st;
    bool ok = fwrite(pre, 1, 10, af.f) == 10 && fwrite(header, 1, hlen, af.f) == hlen &&
              (bytes == 0 || fwrite(data, 1, (size_t)bytes, af.f) == bytes);
    if (!ok) {
        int saved = errno;
        dm_atomic_abort(&af);
        return dm_error_set(err, DM_ERR_IO, "%s: write failed: %s", path, strerror(saved));
    }
    return dm_atomic_commit(&af, err);
}

dm_status dm_npy_shape(const char *path, int *ndim, int64_t shape[8], dm_error *err) {
    dm_npy arr;
    dm_status st = dm_npy_read_header(&arr, path, err);
    if (st) return st;
    *ndim = arr.ndim;
    for (int d = 0; d < arr.ndim && d < 8; d++) shape[d] = arr.shape[d];
    return DM_OK;
}
