#include "io/open_file.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

static const char *kind_of(mode_t mode) {
    if (S_ISDIR(mode)) return "a folder";
    if (S_ISFIFO(mode)) return "a FIFO";
    if (S_ISCHR(mode)) return "a character device";
    if (S_ISBLK(mode)) return "a block device";
    if (S_ISSOCK(mode)) return "a socket";
    return "another kind of file";
}

dm_status dm_open_regular(const char *path, int *fd, struct stat *sb, dm_error *err) {
    struct stat local;
    if (!sb) sb = &local;
    *fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (*fd < 0) return dm_error_set(err, DM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    int flags;
    if (fstat(*fd, sb) != 0) {
        const int saved = errno;
        close(*fd);
        *fd = -1;
        return dm_error_set(err, DM_ERR_IO, "%s: cannot stat: %s", path, strerror(saved));
    }
    if (!S_ISREG(sb->st_mode)) {
        close(*fd);
        *fd = -1;
        return dm_error_set(err, DM_ERR_IO, "%s: not a regular file (%s)", path,
                            kind_of(sb->st_mode));
    }
    if ((flags = fcntl(*fd, F_GETFL)) == -1 || fcntl(*fd, F_SETFL, flags & ~O_NONBLOCK) == -1) {
        const int saved = errno;
        close(*fd);
        *fd = -1;
        return dm_error_set(err, DM_ERR_IO, "%s: cannot open: %s", path, strerror(saved));
    }
    return DM_OK;
}

dm_status dm_fopen_regular(const char *path, FILE **f, struct stat *sb, dm_error *err) {
    *f = NULL;
    int fd;
    dm_status st = dm_open_regular(path, &fd, sb, err);
    if (st) return st;
    if (!(*f = fdopen(fd, "rb"))) {
        const int saved = errno;
        close(fd);
        return dm_error_set(err, saved == ENOMEM ? DM_ERR_NOMEM : DM_ERR_IO, "%s: cannot open: %s",
                            path, strerror(saved));
    }
    return DM_OK;
}
