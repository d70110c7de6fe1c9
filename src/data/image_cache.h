/* The image folder cache file (image_cache.c has its layout), the pieces a harness needs to
 * read hostile cache files through the same code the folder loader uses. */
#pragma once

#include "core/core.h"

#include <stdbool.h>

/* Opens path (if there) and maps it into s when it is a sound cache of `fingerprint` (magic,
 * header check, sizes against the header, content check when check_content, labels in range);
 * DM_OK with *mapped false and a reason (cap bytes) when it is absent or unusable. */
dm_status dm_image_cache_try(dm_image_set *s, const char *path, uint64_t fingerprint,
                             bool check_content, bool *mapped, char *reason, size_t cap,
                             dm_error *err);
/* Writes the magic, the content check and the header check into a whole cache file held in
 * memory (size bytes, at least the header's): what a build writes last. For tests and fuzzing,
 * to get past the checks to the fields behind them. */
void dm_image_cache_seal(uint8_t *file, size_t size);
/* The fingerprint field of a cache file held in memory (at least 16 bytes). */
uint64_t dm_image_cache_fingerprint(const uint8_t *file);
