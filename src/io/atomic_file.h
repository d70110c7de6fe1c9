/* Files written to a temporary name beside the target and renamed into place on success, so
 * a crash or a full disk never leaves a half-written file under the final name. */
#pragma once

#include "core/core.h"

#include <stdio.h>

typedef struct {
    FILE *f;
    char path[4096];     /* final name */
    char tmp_path[4096]; /* path + ".tmp.<pid>" */
} dm_atomic_file;

dm_status dm_atomic_open(dm_atomic_file *af, const char *path, dm_error *err);
/* Flushes, fsyncs, closes and renames; on any failure removes the temporary and reports. */
dm_status dm_atomic_commit(dm_atomic_file *af, dm_error *err);
/* Closes and removes the temporary (after an error while writing). */
void dm_atomic_abort(dm_atomic_file *af);
/* Whole buffer to path, atomically. */
dm_status dm_atomic_write(const char *path, const void *data, size_t bytes, dm_error *err);
