#include "io/json_file.h"

#include "io/atomic_file.h"
#include "io/open_file.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

dm_status dm_json_read(cJSON **root, const char *path, size_t max_bytes, dm_error *err) {
    *root = NULL;
    FILE *f;
    dm_status opened = dm_fopen_regular(path, &f, NULL, err);
    if (opened) return opened;
    char *text = malloc(max_bytes + 1);
    if (!text) {
        fclose(f);
        return dm_error_set(err, DM_ERR_NOMEM, "%s: out of memory", path);
    }
    size_t len = fread(text, 1, max_bytes + 1, f);
    int read_error = ferror(f);
    fclose(f);
    dm_status st = DM_OK;
    if (read_error)
        st = dm_error_set(err, DM_ERR_IO, "%s: read error", path);
    else if (len > max_bytes)
        st = dm_error_set(err, DM_ERR_FORMAT, "%s: larger than %zu bytes", path, max_bytes);
    else if (!(*root = cJSON_ParseWithLength(text, len)))
        st = dm_error_set(err, DM_ERR_FORMAT, "%s: invalid JSON", path);
    else if (!cJSON_IsObject(*root))
        st = dm_error_set(err, DM_ERR_FORMAT, "%s: not a JSON object", path);
    free(text);
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
