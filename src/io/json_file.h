/* JSON files through cJSON: read whole and parsed, written pretty-printed and atomically. */
#pragma once

#include "core/core.h"

#include <cJSON.h>

/* Parses path (at most max_bytes long) into *root, which the caller frees with cJSON_Delete.
 * Errors name the file: cannot open, too large, not valid JSON, not an object. */
dm_status dm_json_read(cJSON **root, const char *path, size_t max_bytes, dm_error *err);
/* Writes root with a final newline, through a temporary file renamed into place. */
dm_status dm_json_write(const char *path, const cJSON *root, dm_error *err);
