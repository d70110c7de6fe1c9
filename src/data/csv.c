/* CSV reader and writer for N x D float tables. The reader loads the whole file, then checks
 * every line: same column count, every field a finite number in float range. */
#include "data/csv.h"

#include "io/atomic_file.h"
#include "io/open_file.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Whole file, NUL-terminated, read in growing chunks. Only a regular file: a FIFO would block
 * forever when nothing writes to it. */
static dm_status read_all(const char *path, char **out, size_t *len, dm_error *err) {
    *out = NULL;
    FILE *f;
    dm_status opened = dm_fopen_regular(path, &f, NULL, err);
    if (opened) return opened;
    size_t cap = 1 << 16, used = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (!buf) {
            fclose(f);
            return dm_error_set(err, DM_ERR_NOMEM, "%s: out of memory reading the file", path);
        }
        used += fread(buf + used, 1, cap - 1 - used, f);
        if (used < cap - 1) break;
        if (cap > SIZE_MAX / 2) {
            free(buf);
            buf = NULL;
            continue;
        }
        char *bigger = realloc(buf, cap *= 2);
        if (!bigger) free(buf);
        buf = bigger;
    }
    if (ferror(f)) {
        int saved = errno;
        fclose(f);
        free(buf);
        return dm_error_set(err, DM_ERR_IO, "%s: read failed: %s", path, strerror(saved));
    }
    fclose(f);
    buf[used] = '\0';
    *out = buf;
    *len = used;
    return DM_OK;
}

typedef struct {
    const char *begin, *end;
} field;

static bool is_blank(char c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

/* Splits [s, end) on commas (if the line has any) or else on runs of blanks. Returns the number
 * of fields; stores the first `max` of them. */
static int split_fields(const char *s, const char *end, field *f, int max) {
    int n = 0;
    if (memchr(s, ',', (size_t)(end - s))) {
        for (const char *p = s;; p++) {
            const char *q = p;
            while (q < end && *q != ',') q++;
            const char *b = p, *e = q;
            while (b < e && is_blank(*b)) b++;
            while (e > b && is_blank(e[-1])) e--;
            if (n < max) f[n] = (field){b, e};
            n++;
            if (q == end) break;
            p = q;
        }
    } else {
        const char *p = s;
        for (;;) {
            while (p < end && is_blank(*p)) p++;
            if (p == end) break;
            const char *b = p;
            while (p < end && !is_blank(*p)) p++;
            if (n < max) f[n] = (field){b, p};
            n++;
        }
    }
    return n;
}

/* strtod over exactly the field; false unless the whole field is one number. The field's first
 * byte is not blank, so strtod cannot skip into the next line. */
static bool parse_number(field f, double *v) {
    if (f.begin == f.end) return false;
    char *stop;
    *v = strtod(f.begin, &stop);
    return stop == f.end;
}

/* Upper bound on the width of a field quoted in an error message. */
#define SHOW 40

dm_status dm_csv_read(dm_dataset *ds, const char *path, dm_error *err) {
    memset(ds, 0, sizeof *ds);
    char *text;
    size_t len = 0;
    dm_status st = read_all(path, &text, &len, err);
    if (st) return st;

    float *vals = NULL; /* (rows, dim), grown by doubling */
    size_t cap = 0, rows = 0;
    int dim = 0, header_cols = 0;
    int64_t header_line = 0, line = 0;
    bool seen_content = false;
    field f[DM_MAX_DIM + 1];
    const char *p = text, *end = text + len;
    if (len >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0) p += 3; /* UTF-8 byte order mark */

    while (p < end && !st) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol) eol = end;
        const char *s = p;
        p = eol + (eol < end);
        line++;
        while (s < eol && is_blank(*s)) s++;
        if (s == eol || *s == '#') continue;

        int nf = split_fields(s, eol, f, DM_MAX_DIM + 1);
        int stored = nf < DM_MAX_DIM + 1 ? nf : DM_MAX_DIM + 1;
        if (!seen_content) {
            seen_content = true;
            /* a first line with no numeric field is a header, e.g. "x,y" */
            bool any_number = false;
            double v;
            for (int i = 0; i < stored && !any_number; i++) any_number = parse_number(f[i], &v);
            if (!any_number) {
                header_cols = nf;
                header_line = line;
                continue;
            }
        }
        if (nf > DM_MAX_DIM) {
            st = dm_error_set(err, DM_ERR_FORMAT, "%s:%lld: %d columns; at most %d are supported",
                              path, (long long)line, nf, DM_MAX_DIM);
            break;
        }
        if (dim == 0) {
            if (header_cols && nf != header_cols) {
                st = dm_error_set(err, DM_ERR_FORMAT,
                                  "%s:%lld: expected %d columns (as in the header on line %lld), "
                                  "found %d",
                                  path, (long long)line, header_cols, (long long)header_line, nf);
                break;
            }
            dim = nf;
        } else if (nf != dim) {
            st = dm_error_set(err, DM_ERR_FORMAT, "%s:%lld: expected %d columns, found %d", path,
                              (long long)line, dim, nf);
            break;
        }
        if (rows * (size_t)dim + (size_t)dim > cap) {
            size_t new_cap = cap ? cap * 2 : (size_t)dim * 1024;
            float *bigger = new_cap < SIZE_MAX / sizeof *vals
                                ? realloc(vals, new_cap * sizeof *vals)
                                : NULL;
            if (!bigger) {
                st = dm_error_set(err, DM_ERR_NOMEM, "%s: out of memory at line %lld", path,
                                  (long long)line);
                break;
            }
            vals = bigger;
            cap = new_cap;
        }
        for (int i = 0; i < nf && !st; i++) {
            double v;
            int w = (int)(f[i].end - f[i].begin) < SHOW ? (int)(f[i].end - f[i].begin) : SHOW;
            if (f[i].begin == f[i].end)
                st = dm_error_set(err, DM_ERR_FORMAT, "%s:%lld: column %d is empty", path,
                                  (long long)line, i + 1);
            else if (!parse_number(f[i], &v))
                st = dm_error_set(err, DM_ERR_FORMAT, "%s:%lld: '%.*s' is not a number", path,
                                  (long long)line, w, f[i].begin);
            else if (!isfinite(v))
                st = dm_error_set(err, DM_ERR_NUMERIC,
                                  "%s:%lld: column %d is '%.*s'; NaN and Inf are not allowed",
                                  path, (long long)line, i + 1, w, f[i].begin);
            else if (isinf((float)v)) /* 3.40282347e+38 still rounds to FLT_MAX */
                st = dm_error_set(err, DM_ERR_NUMERIC, "%s:%lld: '%.*s' is out of float32 range",
                                  path, (long long)line, w, f[i].begin);
            else
                vals[rows * (size_t)dim + (size_t)i] = (float)v;
        }
        rows++;
    }
    free(text);
    if (!st && rows == 0)
        st = dm_error_set(err, DM_ERR_FORMAT, "%s: no data rows", path);
    if (!st && !(st = dm_dataset_init(ds, (int64_t)rows, dim, err)))
        memcpy(ds->x, vals, rows * (size_t)dim * sizeof *vals);
    free(vals);
    return st;
}

dm_status dm_csv_write(const dm_dataset *ds, const char *path, dm_error *err) {
    dm_atomic_file af;
    dm_status st = dm_atomic_open(&af, path, err);
    if (st) return st;
    for (int64_t i = 0; i < ds->n; i++) {
        const float *row = ds->x + i * ds->dim;
        for (int64_t d = 0; d < ds->dim; d++)
            fprintf(af.f, d ? ",%.9g" : "%.9g", (double)row[d]); /* 9 digits: exact float32 */
        fputc('\n', af.f);
    }
    if (ferror(af.f)) {
        int saved = errno;
        dm_atomic_abort(&af);
        return dm_error_set(err, DM_ERR_IO, "%s: write failed: %s", path, strerror(saved));
    }
    return dm_atomic_commit(&af, err);
}
