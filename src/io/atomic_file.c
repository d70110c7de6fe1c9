/* Temporary file + fsync + rename: the final name holds either the old or the new contents. */
#include "io/atomic_file.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Removes "<path>.tmp.<pid>" files left by writers that were killed (their process is gone),
 * so a run killed mid-write does not leave them beside its outputs for good. */
static void remove_stale_temporaries(const char *path) {
    char dir[4096];
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    if (slash) snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    else snprintf(dir, sizeof dir, ".");
    if (!dir[0]) snprintf(dir, sizeof dir, "/");
    const size_t len = strlen(base);
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char victim[8300];
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, base, len) != 0 || strncmp(e->d_name + len, ".tmp.", 5) != 0)
            continue;
        char *end;
        const long pid = strtol(e->d_name + len + 5, &end, 10);
        if (*end || pid <= 0 || pid == (long)getpid()) continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue; /* its writer may be alive */
        snprintf(victim, sizeof victim, "%s/%s", dir, e->d_name);
        remove(victim);
    }
    closedir(d);
}

dm_status dm_atomic_open(dm_atomic_file *af, const char *path, dm_error *err) {
    af->f = NULL;
    remove_stale_temporaries(path);
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
