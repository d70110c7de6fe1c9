/* JSON files through cJSON: read whole and parsed, written pretty-printed and atomically. */
#pragma once

#include "core/core.h"

#include <cJSON.h>

/* Parses path (at most max_bytes long) into *root, which the caller frees with cJSON_Delete.
 * Errors name the file: cannot open, too large, not valid JSON, not an object, a key repeated
 * in one object (cJSON would keep both and lookups would see only the first). */
dm_status dm_json_read(cJSON **root, const char *path, size_t max_bytes, dm_error *err);
/* The same for JSON written by Python's json module, which may hold Infinity, -Infinity and NaN
 * (diffusers' config files): infinities are read as such, NaN as the string "NaN". */
dm_status dm_json_read_python(cJSON **root, const char *path, size_t max_bytes, dm_error *err);
/* DM_ERR_FORMAT naming the key (and the object holding it) when one object anywhere in root
 * holds the same key twice. */
dm_status dm_json_check_unique_keys(const cJSON *root, const char *path, dm_error *err);
/* Writes root with a final newline, through a temporary file renamed into place. */
dm_status dm_json_write(const char *path, const cJSON *root, dm_error *err);
