#include "io/json_file.h"

#include "io/atomic_file.h"
#include "io/open_file.h"

#include <errno.h>
#include <stdint.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int compare_keys(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The first repeated key among node's descendants (objects inside arrays included), or NULL;
 * *where receives the object holding it (NULL for the top level). Sorted, so a header of a
 * million keys costs n log n, not n^2. *nomem is set when the scratch array cannot be had. */
static const char *find_duplicate(const cJSON *node, const cJSON **where, int *nomem) {
    if (cJSON_IsObject(node)) {
        size_t n = 0;
        for (const cJSON *c = node->child; c; c = c->next) n++;
        if (n > 1) {
            const char **keys = malloc(n * sizeof *keys);
            if (!keys) {
                *nomem = 1;
                return NULL;
            }
            size_t k = 0;
            for (const cJSON *c = node->child; c; c = c->next) keys[k++] = c->string ? c->string : "";
            qsort(keys, n, sizeof *keys, compare_keys);
            const char *dup = NULL;
            for (size_t i = 1; i < n && !dup; i++)
                if (strcmp(keys[i - 1], keys[i]) == 0) dup = keys[i];
            free(keys);
            if (dup) {
                *where = node;
                return dup;
            }
        }
    }
    if (cJSON_IsObject(node) || cJSON_IsArray(node))
        for (const cJSON *c = node->child; c; c = c->next) {
            const char *dup = find_duplicate(c, where, nomem);
            if (dup || *nomem) return dup;
        }
    return NULL;
}

dm_status dm_json_check_unique_keys(const cJSON *root, const char *path, dm_error *err) {
    const cJSON *where = NULL;
    int nomem = 0;
    const char *dup = find_duplicate(root, &where, &nomem);
    if (nomem) return dm_error_set(err, DM_ERR_NOMEM, "%s: out of memory", path);
    if (!dup) return DM_OK;
    if (where == root || !where->string)
        return dm_error_set(err, DM_ERR_FORMAT, "%s: the key \"%.200s\" appears twice", path,
                            dup);
    return dm_error_set(err, DM_ERR_FORMAT, "%s: the key \"%.200s\" appears twice in \"%.200s\"",
                        path, dup, where->string);
}

/* Python's json module writes the non-standard tokens Infinity, -Infinity and NaN (diffusers'
 * lambda_min_clipped is -Infinity by default). Outside strings, Infinity becomes 1e999, which
 * strtod reads as infinity, and NaN becomes the string "NaN", which a reader asking for a number
 * refuses. out has room for 2 len bytes. Returns the new length. */
static size_t python_tokens_to_json(char *out, const char *text, size_t len) {
    size_t r = 0, w = 0;
    int in_string = 0;
    while (r < len) {
        const char c = text[r];
        if (in_string) {
            out[w++] = text[r++];
            if (c == '\\' && r < len) out[w++] = text[r++];
            else if (c == '"') in_string = 0;
        } else if (len - r >= 8 && memcmp(text + r, "Infinity", 8) == 0) {
            memcpy(out + w, "1e999", 5);
            w += 5;
            r += 8;
        } else if (len - r >= 3 && memcmp(text + r, "NaN", 3) == 0) {
            memcpy(out + w, "\"NaN\"", 5);
            w += 5;
            r += 3;
        } else {
            in_string = c == '"';
            out[w++] = text[r++];
        }
    }
    return w;
}

/* Whether only JSON whitespace lies in [p, end). */
static int only_space(const char *p, const char *end) {
    for (; p < end; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') return 0;
    return 1;
}

/* The whole file (at most max_bytes) into a buffer sized from the file, *len its length. */
static dm_status read_text(const char *path, size_t max_bytes, char **text, size_t *len,
                           dm_error *err) {
    *text = NULL;
    FILE *f;
    struct stat sb;
    dm_status st = dm_fopen_regular(path, &f, &sb, err);
    if (st) return st;
    if ((uint64_t)sb.st_size > max_bytes) {
        fclose(f);
        return dm_error_set(err, DM_ERR_FORMAT, "%s: larger than %zu bytes", path, max_bytes);
    }
    const size_t cap = (size_t)sb.st_size;
    if (!(*text = malloc(cap + 1))) {
        fclose(f);
        return dm_error_set(err, DM_ERR_NOMEM, "%s: out of memory", path);
    }
    *len = fread(*text, 1, cap + 1, f); /* one byte more: a file that grew is noticed */
    const int read_error = ferror(f);
    fclose(f);
    if (read_error) st = dm_error_set(err, DM_ERR_IO, "%s: read error", path);
    else if (*len > cap) st = dm_error_set(err, DM_ERR_IO, "%s: changed while being read", path);
    if (st) {
        free(*text);
        *text = NULL;
    }
    return st;
}

static dm_status json_read(cJSON **root, const char *path, size_t max_bytes, int python,
                           dm_error *err) {
    *root = NULL;
    char *text, *json = NULL; /* json: the text rewritten as JSON (python) */
    size_t len = 0;
    dm_status st = read_text(path, max_bytes, &text, &len, err);
    if (st) return st;
    if (python) {
        if (!(json = malloc(2 * len + 1))) {
            free(text);
            return dm_error_set(err, DM_ERR_NOMEM, "%s: out of memory", path);
        }
        len = python_tokens_to_json(json, text, len);
    }
    const char *src = json ? json : text, *end = NULL;
    if (!(*root = cJSON_ParseWithLengthOpts(src, len, &end, 0)))
        st = dm_error_set(err, DM_ERR_FORMAT, "%s: invalid JSON", path);
    else if (!only_space(end, src + len))
        st = dm_error_set(err, DM_ERR_FORMAT, "%s: data after the JSON object", path);
    else if (!cJSON_IsObject(*root))
        st = dm_error_set(err, DM_ERR_FORMAT, "%s: not a JSON object", path);
    else
        st = dm_json_check_unique_keys(*root, path, err);
    free(text);
    free(json);
    if (st) {
        cJSON_Delete(*root);
        *root = NULL;
    }
    return st;
}

dm_status dm_json_write(const char *path, const cJSON *root, dm_error *err) {
    char *text = cJSON_Print(root);
    if (!text) return dm_error_set(err, DM_ERR_NOMEM, "%s: cannot format JSON", path);
    size_t len = strlen(text);
    text[len] = '\n'; /* the terminator becomes the final newline; written as bytes */
    dm_status st = dm_atomic_write(path, text, len + 1, err);
    free(text);
    return st;
}

dm_status dm_json_read(cJSON **root, const char *path, size_t max_bytes, dm_error *err) {
    return json_read(root, path, max_bytes, 0, err);
}

dm_status dm_json_read_python(cJSON **root, const char *path, size_t max_bytes, dm_error *err) {
    return json_read(root, path, max_bytes, 1, err);
}
