/* Helpers shared by the harnesses: the fuzz input handed to a parser through a file.
 *
 * - fz_memfd_path(): the bytes in an anonymous memory file (memfd_create), reachable by the
 *   path "/proc/self/fd/N"; one memfd per slot, reused (truncated and rewritten) on every input.
 * - fz_dir_file(): the bytes in a named file of a private folder made once per process with
 *   mkdtemp under $TMPDIR (for parsers that look at a file's name or its folder); the folder and
 *   everything the harness wrote into it are removed at exit. scripts/fuzz.sh also points
 *   TMPDIR at a folder of its own that it removes, so a crash leaves nothing behind either.
 *
 * Both abort on a system error: that is a broken harness, not a finding to minimise. */
#pragma once

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define FZ_SLOTS 4

static inline void fz_die(const char *what) {
    fprintf(stderr, "fuzz harness: %s: %s\n", what, strerror(errno));
    abort();
}

/* Writes all of data at offset 0 of fd and cuts the file there. */
static inline void fz_fill(int fd, const uint8_t *data, size_t size) {
    if (ftruncate(fd, 0) != 0) fz_die("ftruncate");
    size_t done = 0;
    while (done < size) {
        ssize_t w = pwrite(fd, data + done, size - done, (off_t)done);
        if (w <= 0) fz_die("pwrite");
        done += (size_t)w;
    }
}

/* "/proc/self/fd/N" of memfd number `slot`, holding exactly data. */
static inline const char *fz_memfd_path(int slot, const uint8_t *data, size_t size) {
    static int fds[FZ_SLOTS] = {-1, -1, -1, -1};
    static char paths[FZ_SLOTS][32];
    if (slot < 0 || slot >= FZ_SLOTS) abort();
    if (fds[slot] < 0) {
        fds[slot] = memfd_create("dm_fuzz", MFD_CLOEXEC);
        if (fds[slot] < 0) fz_die("memfd_create");
        snprintf(paths[slot], sizeof paths[slot], "/proc/self/fd/%d", fds[slot]);
    }
    fz_fill(fds[slot], data, size);
    return paths[slot];
}

/* ---- a private folder, removed at exit */

#define FZ_MAX_FILES 16
static char fz_dir[512];
static char fz_files[FZ_MAX_FILES][600]; /* written files and made folders, in creation order */
static int fz_nfiles;

static inline void fz_cleanup(void) {
    for (int i = fz_nfiles - 1; i >= 0; i--) remove(fz_files[i]); /* files before folders */
    if (fz_dir[0]) rmdir(fz_dir);
}

static inline const char *fz_tmpdir(void) {
    if (!fz_dir[0]) {
        const char *base = getenv("TMPDIR");
        snprintf(fz_dir, sizeof fz_dir, "%s/dm_fuzz_XXXXXX", base && *base ? base : "/tmp");
        if (!mkdtemp(fz_dir)) fz_die("mkdtemp");
        atexit(fz_cleanup);
    }
    return fz_dir;
}

static inline void fz_remember(const char *path) {
    for (int i = 0; i < fz_nfiles; i++)
        if (strcmp(fz_files[i], path) == 0) return;
    if (fz_nfiles == FZ_MAX_FILES) abort();
    snprintf(fz_files[fz_nfiles++], sizeof fz_files[0], "%s", path);
}

/* DIR/name (name may hold one level of folder, "unet/config.json"); made on first use. */
static inline const char *fz_dir_path(const char *name) {
    static char buf[4][600];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", fz_tmpdir(), name);
    const char *slash = strchr(name, '/');
    if (slash) {
        char sub[600];
        snprintf(sub, sizeof sub, "%s/%.*s", fz_tmpdir(), (int)(slash - name), name);
        if (mkdir(sub, 0700) != 0 && errno != EEXIST) fz_die("mkdir");
        fz_remember(sub);
    }
    return buf[k];
}

/* DIR/name holding exactly data; returns its path. */
static inline const char *fz_dir_file(const char *name, const uint8_t *data, size_t size) {
    const char *path = fz_dir_path(name);
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) fz_die(path);
    fz_remember(path);
    fz_fill(fd, data, size);
    close(fd);
    return path;
}

/* Removes DIR/name again (a file some inputs need and others must not see). */
static inline void fz_dir_unlink(const char *name) { unlink(fz_dir_path(name)); }
