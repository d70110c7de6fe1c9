/* Opening a file for reading: only regular files. A FIFO would block the open (or the first
 * read) forever, a character device may never end, a folder fails only at its first read. */
#pragma once

#include "core/core.h"

#include <stdio.h>
#include <sys/stat.h>

/* Opens path read-only into *fd (close-on-exec, blocking reads) and fills *sb (may be NULL).
 * The open itself never blocks (O_NONBLOCK, cleared once fstat says the file is regular).
 * Errors name the file: DM_ERR_IO for "cannot open" and "not a regular file". */
dm_status dm_open_regular(const char *path, int *fd, struct stat *sb, dm_error *err);
/* The same as a stdio stream ("rb"); the caller fcloses *f. */
dm_status dm_fopen_regular(const char *path, FILE **f, struct stat *sb, dm_error *err);
