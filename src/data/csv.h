/* CSV tables of float points (internal; dm_dataset_load/save choose the format by extension). */
#pragma once

#include "core/core.h"

/* Reads an N x D table: comma- or whitespace-separated, an optional header line (a first line
 * with no numeric field), blank lines and '#' comments skipped. Errors name "path:line". */
dm_status dm_csv_read(dm_dataset *ds, const char *path, dm_error *err);
/* Writes one row per point with "%.9g" (round-trips float32), no header, atomically. */
dm_status dm_csv_write(const dm_dataset *ds, const char *path, dm_error *err);
