/* IDX files (the MNIST format), gzipped or not, and the Fashion-MNIST splits.
 * Layout: a big-endian magic 0x0000TTDD (TT = 0x08 for uint8, DD = number of dimensions), DD
 * big-endian uint32 sizes, then the uint8 data in C order. zlib's gzread passes files that are
 * not gzip through unchanged, so one reader serves both. */
#include "io/image_util.h"
#include "io/open_file.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define IDX_TYPE_U8 0x08
#define IDX_MAGIC_IMAGES 0x00000803u
#define IDX_MAGIC_LABELS 0x00000801u

/* The payload buffer grows as data actually arrives, so a hostile header claiming gigabytes
 * in a tiny file costs at most this much before the truncation is found. */
#define IDX_FIRST_CHUNK ((size_t)1 << 24)

/* Deflate's largest expansion: a 258-byte match coded in at least 2 bits, so at most 1032
 * output bytes per input byte (zlib's zlib.h and RFC 1951); 18 bytes of gzip header and trailer
 * carry no data. A header claiming more than this from the compressed size is refused before
 * anything is inflated. */
#define GZ_MAX_RATIO 1032u

/* A failed or short gzread as a status: zlib tells truncation, corruption and I/O apart.
 * `where` says what a truncation cut short. */
static dm_status gz_failure(gzFile f, const char *path, const char *where, dm_error *err) {
    int errnum = Z_OK;
    const char *msg = gzerror(f, &errnum);
    switch (errnum) {
    case Z_OK:
    case Z_BUF_ERROR: /* zlib's "unexpected end of file" */
        return dm_error_set(err, DM_ERR_FORMAT, "%s: truncated inside %s", path, where);
    case Z_ERRNO: return dm_error_set(err, DM_ERR_IO, "%s: read failed: %s", path, strerror(errno));
    case Z_MEM_ERROR: return dm_error_set(err, DM_ERR_NOMEM, "%s: out of memory in zlib", path);
    default: {
        /* gzerror's message starts with the name gzdopen gave the stream, "<fd:N>" */
        const char *colon = strncmp(msg, "<fd:", 4) == 0 ? strstr(msg, ">: ") : NULL;
        if (colon) msg = colon + 3;
        return dm_error_set(err, DM_ERR_FORMAT, "%s: corrupt gzip data: %s", path, msg);
    }
    }
}

/* Exactly n bytes (n < 2^31, as gzread counts in int), or a truncation error. */
static dm_status gz_read_exact(gzFile f, void *buf, size_t n, const char *path, dm_error *err) {
    size_t got = 0;
    while (got < n) {
        int r = gzread(f, (char *)buf + got, (unsigned)(n - got));
        if (r <= 0) return gz_failure(f, path, "the IDX header", err);
        got += (size_t)r;
    }
    return DM_OK;
}

/* A gzip stream (or the plain bytes) of a duplicate of fd, from fd's current offset, reading
 * buffer bytes of the file at a time; fd stays open for the caller. */
static dm_status gz_open_dup(int fd, unsigned buffer, const char *path, gzFile *out,
                             dm_error *err) {
    const int dfd = dup(fd);
    errno = 0;
    *out = dfd >= 0 ? gzdopen(dfd, "rb") : NULL;
    if (!*out) {
        const int saved = errno;
        if (dfd >= 0) close(dfd);
        return dm_error_set(err, saved ? DM_ERR_IO : DM_ERR_NOMEM, "%s: cannot open: %s", path,
                            saved ? strerror(saved) : "out of memory");
    }
    gzbuffer(*out, buffer);
    return DM_OK;
}

static uint32_t be32(const uint8_t *b) {
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | (uint32_t)b[3];
}

/* Reads a whole uint8 IDX file with `ndim` dimensions: sizes into dims, the data (numel bytes,
 * malloc'd) into *data. The data must be exactly what the header describes: no less, no more. */
static dm_status idx_read(const char *path, uint32_t magic, int ndim, int64_t *dims,
                          uint8_t **data, dm_error *err) {
    *data = NULL;
    struct stat sb;
    int fd;
    dm_status st = dm_open_regular(path, &fd, &sb, err);
    if (st) return st;
    /* a gzip file's last four bytes are its uncompressed size mod 2^32 (RFC 1952's ISIZE),
     * readable before inflating anything */
    uint8_t magic2[2] = {0, 0}, isize_le[4] = {0, 0, 0, 0};
    const int gzipped = pread(fd, magic2, 2, 0) == 2 && magic2[0] == 0x1f && magic2[1] == 0x8b;
    if (gzipped && (sb.st_size < 18 || pread(fd, isize_le, 4, sb.st_size - 4) != 4)) {
        close(fd);
        return dm_error_set(err, DM_ERR_FORMAT, "%s: truncated gzip file (%lld bytes)", path,
                            (long long)sb.st_size);
    }
    /* the header through a stream reading 64 bytes at a time: zlib inflates (into a buffer
     * twice that) only a few hundred bytes before the sizes below are checked */
    gzFile f = NULL;
    uint8_t head[4 + 4 * 3];
    st = gz_open_dup(fd, 64, path, &f, err);
    if (!st) st = gz_read_exact(f, head, 4, path, err);
    if (!st && be32(head) != magic)
        st = dm_error_set(err, DM_ERR_FORMAT,
                          "%s: not an IDX %s file (magic number 0x%08x, expected 0x%08x)", path,
                          magic == IDX_MAGIC_IMAGES ? "uint8 image" : "uint8 label", be32(head),
                          magic);
    if (!st) st = gz_read_exact(f, head + 4, 4 * (size_t)ndim, path, err);
    if (f) gzclose_r(f);
    f = NULL;
    uint64_t numel = 1;
    for (int d = 0; d < ndim && !st; d++) {
        dims[d] = be32(head + 4 + 4 * d);
        if (dims[d] == 0)
            st = dm_error_set(err, DM_ERR_FORMAT, "%s: dimension %d of the header is 0", path, d);
        /* three uint32 sizes can overflow 64 bits; the float copy (4 bytes an element) must
         * stay addressable too */
        else if (__builtin_mul_overflow(numel, (uint64_t)dims[d], &numel) ||
                 numel > SIZE_MAX / sizeof(float) || numel > (uint64_t)INT64_MAX / sizeof(float))
            st = dm_error_set(err, DM_ERR_FORMAT, "%s: header sizes are too large", path);
    }

    /* an uncompressed file has a known size: a header claiming more (or less) than it holds is
     * refused before anything is allocated for the data */
    uint64_t head_bytes = 4 + 4 * (uint64_t)ndim;
    if (!st && !gzipped && (uint64_t)sb.st_size - head_bytes != numel)
        st = dm_error_set(err, DM_ERR_FORMAT,
                          "%s: %s: the header describes %llu data bytes, the file holds %llu", path,
                          (uint64_t)sb.st_size - head_bytes < numel ? "truncated" : "trailing bytes",
                          (unsigned long long)numel,
                          (unsigned long long)((uint64_t)sb.st_size - head_bytes));
    /* a gzip file: the size the header implies must match the trailer's, and fit what deflate
     * can expand the file to; then memory for it (the bytes and their float copy) must exist.
     * All before the first byte of data is inflated. */
    const uint64_t total = head_bytes + numel;
    const uint32_t isize = (uint32_t)isize_le[0] | (uint32_t)isize_le[1] << 8 |
                           (uint32_t)isize_le[2] << 16 | (uint32_t)isize_le[3] << 24;
    if (!st && gzipped && (uint32_t)total != isize)
        st = dm_error_set(err, DM_ERR_FORMAT,
                          "%s: the IDX header describes %llu bytes but the gzip trailer says "
                          "%u (mod 2^32): refused before decompressing",
                          path, (unsigned long long)total, isize);
    if (!st && gzipped && total / GZ_MAX_RATIO > (uint64_t)sb.st_size)
        st = dm_error_set(err, DM_ERR_FORMAT,
                          "%s: the IDX header describes %llu bytes, more than a gzip file of %lld "
                          "bytes can hold (deflate expands at most %ux)",
                          path, (unsigned long long)total, (long long)sb.st_size, GZ_MAX_RATIO);
    if (!st && (st = dm_memory_check(numel * (1 + sizeof(float)), err)))
        dm_error_prefix(err, "%s: %llu bytes of images and their float copy", path,
                        (unsigned long long)numel);
    /* the data: a stream with a large buffer, from the start, past the header again */
    if (!st && lseek(fd, 0, SEEK_SET) != 0)
        st = dm_error_set(err, DM_ERR_IO, "%s: cannot seek: %s", path, strerror(errno));
    if (!st) st = gz_open_dup(fd, 1 << 17, path, &f, err);
    if (!st) st = gz_read_exact(f, head, (size_t)head_bytes, path, err);

    /* the payload, in chunks that grow only as data arrives */
    uint8_t *buf = NULL;
    size_t cap = 0, got = 0;
    while (!st && got < numel) {
        if (got == cap) {
            size_t next = cap ? cap * 2 : IDX_FIRST_CHUNK;
            if (next > numel) next = (size_t)numel;
            uint8_t *grown = realloc(buf, next);
            if (!grown) {
                st = dm_error_set(err, DM_ERR_NOMEM, "%s: cannot allocate %.1f MiB", path,
                                  (double)next / (1 << 20));
                break;
            }
            buf = grown;
            cap = next;
        }
        size_t want = cap - got;
        if (want > INT_MAX / 2) want = INT_MAX / 2;
        int r = gzread(f, buf + got, (unsigned)want);
        if (r <= 0) {
            int errnum = Z_OK;
            gzerror(f, &errnum);
            if (errnum == Z_OK || errnum == Z_BUF_ERROR)
                st = dm_error_set(err, DM_ERR_FORMAT,
                                  "%s: truncated: the header describes %llu data bytes, the file "
                                  "holds %llu",
                                  path, (unsigned long long)numel, (unsigned long long)got);
            else
                st = gz_failure(f, path, "the data", err);
            break;
        }
        got += (size_t)r;
    }
    if (!st) {
        /* one byte more than the header allows: any is refused, and reaching the end makes
         * zlib check the gzip trailer (CRC and length) */
        uint8_t extra[1];
        int r = gzread(f, extra, sizeof extra), errnum = Z_OK;
        gzerror(f, &errnum);
        if (r > 0)
            st = dm_error_set(err, DM_ERR_FORMAT,
                              "%s: trailing bytes after the %llu data bytes the header describes",
                              path, (unsigned long long)numel);
        else if (r < 0 || errnum != Z_OK)
            st = gz_failure(f, path, "the gzip trailer", err);
    }
    if (f) gzclose_r(f);
    close(fd);
    if (st) {
        free(buf);
        return st;
    }
    *data = buf;
    return DM_OK;
}

dm_status dm_idx_load(dm_image_set *s, const char *images_path, const char *labels_path,
                      dm_error *err) {
    memset(s, 0, sizeof *s);
    if (!images_path) return dm_error_set(err, DM_ERR_ARG, "dm_idx_load: no image file given");
    int64_t dims[3] = {0, 0, 0}, nlabels = 0;
    uint8_t *pixels = NULL, *labels = NULL;
    dm_status st = idx_read(images_path, IDX_MAGIC_IMAGES, 3, dims, &pixels, err);
    if (!st && labels_path) st = idx_read(labels_path, IDX_MAGIC_LABELS, 1, &nlabels, &labels, err);
    if (!st && labels_path && nlabels != dims[0])
        st = dm_error_set(err, DM_ERR_MISMATCH, "%s: %lld labels for the %lld images of %s",
                          labels_path, (long long)nlabels, (long long)dims[0], images_path);
    if (!st) st = dm_image_set_init(s, dims[0], 1, dims[1], dims[2], labels_path != NULL, err);
    if (!st) {
        dm_pixels_from_u8(s->data.x, pixels, (size_t)(dims[0] * dims[1] * dims[2]));
        if (labels) {
            int32_t max_label = 0;
            for (int64_t i = 0; i < nlabels; i++) {
                s->data.labels[i] = labels[i];
                if (labels[i] > max_label) max_label = labels[i];
            }
            s->data.num_classes = max_label + 1;
        }
    }
    free(pixels);
    free(labels);
    return st;
}

/* dir/prefix-kind into out, gzipped or not (the .gz first, as Debian ships it); false if
 * neither exists. */
static bool find_idx(char out[4096], const char *dir, const char *prefix, const char *kind) {
    static const char *const suffixes[2] = {".gz", ""};
    for (int i = 0; i < 2; i++) {
        struct stat sb;
        snprintf(out, 4096, "%s/%s-%s%s", dir, prefix, kind, suffixes[i]);
        if (stat(out, &sb) == 0) return true;
    }
    return false;
}

dm_status dm_fashion_mnist_load(dm_image_set *s, const char *dir, const char *split,
                                dm_error *err) {
    memset(s, 0, sizeof *s);
    if (!dir) dir = DM_FASHION_MNIST_DIR;
    const char *prefix;
    if (split && strcmp(split, "train") == 0)
        prefix = "train";
    else if (split && (strcmp(split, "test") == 0 || strcmp(split, "t10k") == 0))
        prefix = "t10k";
    else
        return dm_error_set(err, DM_ERR_ARG, "unknown Fashion-MNIST split '%s' (train or test)",
                            split ? split : "(null)");
    if (strlen(dir) > 3500) return dm_error_set(err, DM_ERR_ARG, "%.64s...: path too long", dir);
    char images[4096], labels[4096];
    bool have_images = find_idx(images, dir, prefix, "images-idx3-ubyte");
    bool have_labels = find_idx(labels, dir, prefix, "labels-idx1-ubyte");
    if (!have_images || !have_labels)
        return dm_error_set(err, DM_ERR_IO,
                            "%s: no %s-%s-idx%d-ubyte[.gz] (install Debian's dataset-fashion-mnist "
                            "package, or name the folder holding the IDX files)",
                            dir, prefix, have_images ? "labels" : "images", have_images ? 1 : 3);
    dm_status st = dm_idx_load(s, images, labels, err);
    if (st) return st;
    for (int64_t i = 0; i < s->data.n; i++) {
        if (s->data.labels[i] > 9) {
            int32_t bad = s->data.labels[i];
            dm_image_set_free(s);
            return dm_error_set(err, DM_ERR_FORMAT,
                                "%s: label %d at index %lld; Fashion-MNIST labels are 0..9", labels,
                                bad, (long long)i);
        }
    }
    s->data.num_classes = 10; /* even if a subset happens to miss the last class */
    return DM_OK;
}
