/* Temporary file + fsync + rename: the final name holds either the old or the new contents. */
#include "io/atomic_file.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

dm_status dm_atomic_open(dm_atomic_file *af, const char *path, dm_error *err) {
    af->f = NULL;
    if (snprintf(af->path, sizeof af->path, "%s", path) >= (int)sizeof af->path ||
        snprintf(af->tmp_path, sizeof af->tmp_path, "%s.tmp.%ld", path, (long)getpid()) >=
            (int)sizeof af->tmp_path)
        return dm_error_set(err, DM_ERR_ARG, "%s: path too long", path);
    af->f = fopen(af->tmp_path, "wb");
    if (!af->f)
        return dm_error_set(err, DM_ERR_IO, "%s: cannot create: %s", af->tmp_path, strerror(errno));
    return DM_OK;
}

dm_status dm_atomic_commit(dm_atomic_file *af, dm_error *err) {
    int failed = ferror(af->f) || fflush(af->f) != 0 || fsync(fileno(af->f)) != 0;
    int saved = errno;
    if (fclose(af->f) != 0 && !failed) {
        failed = 1;
        saved = errno;
    }
    af->f = NULL;
    if (failed) {
        remove(af->tmp_path);
        return dm_error_set(err, DM_ERR_IO, "%s: write failed: %s", af->path, strerror(saved));
    }
    if (rename(af->tmp_path, af->path) != 0) {
        saved = errno;
        remove(af->tmp_path);
        return dm_error_set(err, DM_ERR_IO, "%s: cannot rename into place: %s", af->path,
                            strerror(saved));
    }
    return DM_OK;
}

void dm_atomic_abort(dm_atomic_file *af) {
    if (af->f) fclose(af->f);
    af->f = NULL;
    remove(af->tmp_path);
}

dm_status dm_atomic_write(const char *path, const void *data, size_t bytes, dm_error *err) {
    dm_atomic_file af;
    dm_status st = dm_atomic_open(&af, path, err);
    if (st) return st;
    if (bytes && fwrite(data, 1, bytes, af.f) != bytes) {
        int saved = errno;
        dm_atomic_abort(&af);
        return dm_error_set(err, DM_ERR_IO, "%s: write failed: %s", path, strerror(saved));
    }
    return dm_atomic_commit(&af, err);
}
