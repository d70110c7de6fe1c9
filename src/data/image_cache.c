/* Image folders through a cache file: decoded once to uint8 pixels in a file, memory-mapped
 * read-only on later runs, so a set larger than memory trains from the page cache.
 *
 * The file (little-endian): a 4096-byte header, the pixels (n, c, h, w) at offset 4096 (page
 * aligned for the mapping), then n int32 labels when labelled. The header holds
 *   0 magic "DMIMGC\0\1", 8 fingerprint, 16 n, 24 c, 32 h, 40 w, 48 num_classes,
 *   56 float hash (the trainer's data hash of the pixels' float form),
 *   64 content check (FNV-1a of pixels and labels as stored), 72 header check (FNV-1a of 0..71).
 * The fingerprint covers the options and every image's name, size, mtime and label: a changed
 * folder rebuilds the cache. A header, size or content check that fails rebuilds it too (the
 * content is read through once with pread on every open, which does not count against the
 * process's memory the way touching the mapping would). */
#include "data/image_cache.h"
#include "data/image_folder.h"
#include "io/atomic_file.h"
#include "io/image_util.h"
#include "io/open_file.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define HEADER_BYTES 4096
#define HEADER_USED 80
#define CACHE_DIR_NAME ".diffusion-cache"
/* images decoded (in parallel) and written per chunk: the build holds only this many */
#define CHUNK_IMAGES 512
static const uint8_t MAGIC[8] = {'D', 'M', 'I', 'M', 'G', 'C', 0, 1};

static void put_u64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_u64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

typedef struct {
    uint64_t fingerprint, n, c, h, w, num_classes, float_hash, content;
} cache_header;

static void header_encode(uint8_t *b, const cache_header *h) {
    memset(b, 0, HEADER_BYTES);
    memcpy(b, MAGIC, 8);
    put_u64(b + 8, h->fingerprint);
    put_u64(b + 16, h->n);
    put_u64(b + 24, h->c);
    put_u64(b + 32, h->h);
    put_u64(b + 40, h->w);
    put_u64(b + 48, h->num_classes);
    put_u64(b + 56, h->float_hash);
    put_u64(b + 64, h->content);
    put_u64(b + 72, dm_fnv1a(b, 72));
}

/* The fingerprint of what the cache would hold: the options, and each image's path relative
 * to dir, size, mtime and label, in load order. */
static dm_status folder_fingerprint(const char *dir, const dm_name_list *paths,
                                    const int32_t *labels, int32_t num_classes,
                                    const dm_image_folder_options *opt, uint64_t *out,
                                    dm_error *err) {
    int64_t o[4] = {opt->size, opt->channels, opt->hflip, num_classes};
    uint64_t h = dm_fnv1a(o, sizeof o);
    size_t skip = strlen(dir) + 1; /* the paths are dir/name or dir/class/name */
    for (size_t i = 0; i < paths->n; i++) {
        struct stat sb;
        if (stat(paths->items[i], &sb) != 0)
            return dm_error_set(err, DM_ERR_IO, "%s: cannot read: %s", paths->items[i],
                                strerror(errno));
        const char *rel = paths->items[i] + skip;
        h = dm_fnv1a_add(h, rel, strlen(rel) + 1);
        int64_t f[4] = {(int64_t)sb.st_size, (int64_t)sb.st_mtim.tv_sec,
                        (int64_t)sb.st_mtim.tv_nsec, labels ? labels[i] : -1};
        h = dm_fnv1a_add(h, f, sizeof f);
    }
    *out = h;
    return DM_OK;
}

/* Checks the open cache fd (size bytes) against the fingerprint and its own checks; on
 * success fills *h. Otherwise a reason why it cannot be used. */
static bool cache_valid(int fd, uint64_t size, uint64_t fingerprint, bool check_content,
                        cache_header *h, char *reason, size_t cap) {
    uint8_t b[HEADER_USED];
    if (size < HEADER_BYTES || pread(fd, b, sizeof b, 0) != (ssize_t)sizeof b) {
        snprintf(reason, cap, "corrupt cache (shorter than its header)");
        return false;
    }
    if (memcmp(b, MAGIC, 8) != 0 || get_u64(b + 72) != dm_fnv1a(b, 72)) {
        snprintf(reason, cap, "corrupt cache (bad header)");
        return false;
    }
    *h = (cache_header){get_u64(b + 8),  get_u64(b + 16), get_u64(b + 24), get_u64(b + 32),
                        get_u64(b + 40), get_u64(b + 48), get_u64(b + 56), get_u64(b + 64)};
    if (h->fingerprint != fingerprint) {
        snprintf(reason, cap, "the folder or the options changed since the cache was built");
        return false;
    }
    size_t numel;
    uint64_t expect;
    if (h->n > INT32_MAX || h->num_classes > INT32_MAX ||
        dm_image_dims_check((int64_t)h->n, (int64_t)h->c, (int64_t)h->h, (int64_t)h->w, "cache",
                            &numel, NULL) ||
        __builtin_add_overflow((uint64_t)numel, HEADER_BYTES + (h->num_classes ? 4 * h->n : 0),
                               &expect) ||
        expect != size) {
        snprintf(reason, cap, "corrupt cache (truncated, or its size disagrees with its header)");
        return false;
    }
    if (!check_content) return true; /* just written and read back by the build */
    /* the content, read through once */
    enum { BUF = 1 << 20 };
    uint8_t *buf = malloc(BUF);
    if (!buf) {
        snprintf(reason, cap, "out of memory checking the cache");
        return false;
    }
    uint64_t c = DM_FNV1A_START;
    bool ok = true;
    for (uint64_t at = HEADER_BYTES; at < size && ok;) {
        size_t want = size - at < BUF ? (size_t)(size - at) : BUF;
        ssize_t got = pread(fd, buf, want, (off_t)at);
        if (got <= 0) ok = false;
        else c = dm_fnv1a_add(c, buf, (size_t)got), at += (uint64_t)got;
    }
    free(buf);
    if (!ok || c != h->content) {
        snprintf(reason, cap, "corrupt cache (its content check fails)");
        return false;
    }
    return true;
}

/* Maps a checked cache into s. */
static dm_status cache_map(dm_image_set *s, int fd, uint64_t size, const cache_header *h,
                           const char *path, dm_error *err) {
    void *base = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (base == MAP_FAILED)
        return dm_error_set(err, DM_ERR_IO, "%s: cannot map: %s", path, strerror(errno));
    memset(s, 0, sizeof *s);
    s->c = (int64_t)h->c, s->h = (int64_t)h->h, s->w = (int64_t)h->w;
    s->data.n = (int64_t)h->n;
    s->data.dim = s->c * s->h * s->w;
    s->data.u8 = (const uint8_t *)base + HEADER_BYTES;
    s->data.u8_base = base;
    s->data.u8_map_bytes = (size_t)size;
    s->data.u8_hash = h->float_hash;
    if (h->num_classes) {
        dm_status st = dm_dataset_add_labels(&s->data, (int32_t)h->num_classes, err);
        if (st) {
            dm_image_set_free(s);
            return st;
        }
        const uint8_t *l = s->data.u8 + (size_t)(s->data.n * s->data.dim);
        for (int64_t i = 0; i < s->data.n; i++) {
            const uint8_t *p = l + 4 * i;
            const int32_t label = (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 |
                                            (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
            if (label < 0 || label >= (int32_t)h->num_classes) {
                dm_image_set_free(s);
                return dm_error_set(err, DM_ERR_FORMAT, "%s: corrupt cache (label %d of image "
                                    "%lld outside 0..%d)", path, (int)label, (long long)i,
                                    (int)h->num_classes - 1);
            }
            s->data.labels[i] = label;
        }
    }
    return DM_OK;
}

/* Writes the cache of paths to path atomically: pixels chunk by chunk, then the mirrors (read
 * back from the temporary), then the labels, then the header. */
static dm_status cache_build(const char *path, const dm_name_list *paths, const int32_t *labels,
                             int32_t num_classes, const dm_image_folder_options *opt,
                             uint64_t fingerprint, dm_error *err) {
    dm_image_plan plan;
    dm_status st = dm_image_folder_plan(&plan, paths->items[0], opt, err);
    if (st) return st;
    const int64_t count = (int64_t)paths->n, copies = opt->hflip ? 2 : 1, n = count * copies;
    const int64_t dim = plan.c * plan.h * plan.w;
    size_t numel;
    if ((st = dm_image_dims_check(n, plan.c, plan.h, plan.w, path, &numel, err))) return st;
    uint8_t *chunk = malloc((size_t)(CHUNK_IMAGES * dim)), *mirror = malloc((size_t)dim);
    uint8_t *header = calloc(1, HEADER_BYTES);
    dm_atomic_file af;
    if (!chunk || !mirror || !header) {
        free(chunk), free(mirror), free(header);
        return dm_error_set(err, DM_ERR_NOMEM, "%s: out of memory building the cache", path);
    }
    if ((st = dm_atomic_open(&af, path, err))) {
        free(chunk), free(mirror), free(header);
        return st;
    }
    uint64_t content = DM_FNV1A_START, fhash = DM_FNV1A_START;
    bool wrote = fwrite(header, 1, HEADER_BYTES, af.f) == HEADER_BYTES;
    for (int64_t at = 0; at < count && wrote && !st; at += CHUNK_IMAGES) {
        const int64_t k = count - at < CHUNK_IMAGES ? count - at : CHUNK_IMAGES;
        int64_t first_bad = k;
        dm_error first_err = {0};
        /* the failure of the first file in sorted order, whatever the threads */
#pragma omp parallel for schedule(dynamic, 4)
        for (int64_t i = 0; i < k; i++) {
            dm_error e = {0};
            if (dm_image_folder_decode(paths->items[at + i], &plan, chunk + i * dim, &e)) {
#pragma omp critical(dm_image_cache_error)
                if (i < first_bad) first_bad = i, first_err = e;
            }
        }
        if (first_bad < k) {
            st = first_err.status;
            if (err) *err = first_err;
            break;
        }
        const size_t bytes = (size_t)(k * dim);
        content = dm_fnv1a_add(content, chunk, bytes);
        fhash = dm_pixels_hash_as_float(fhash, chunk, bytes);
        wrote = fwrite(chunk, 1, bytes, af.f) == bytes;
    }
    if (!st && wrote && opt->hflip) {
        /* image count + i is image i mirrored, as dm_image_folder_load orders them */
        int rfd = fflush(af.f) == 0 ? open(af.tmp_path, O_RDONLY | O_CLOEXEC) : -1;
        wrote = rfd >= 0;
        for (int64_t i = 0; i < count && wrote; i++) {
            wrote = pread(rfd, chunk, (size_t)dim, (off_t)(HEADER_BYTES + i * dim)) == dim;
            if (!wrote) break;
            dm_mirror_rows_u8(mirror, chunk, plan.c * plan.h, plan.w);
            content = dm_fnv1a_add(content, mirror, (size_t)dim);
            fhash = dm_pixels_hash_as_float(fhash, mirror, (size_t)dim);
            wrote = fwrite(mirror, 1, (size_t)dim, af.f) == (size_t)dim;
        }
        if (rfd >= 0) close(rfd);
    }
    for (int64_t i = 0; !st && wrote && labels && i < n; i++) {
        uint8_t b[4];
        uint32_t v = (uint32_t)labels[i % count];
        for (int j = 0; j < 4; j++) b[j] = (uint8_t)(v >> (8 * j));
        content = dm_fnv1a_add(content, b, 4);
        wrote = fwrite(b, 1, 4, af.f) == 4;
    }
    if (!st && wrote) {
        cache_header h = {fingerprint, (uint64_t)n, (uint64_t)plan.c, (uint64_t)plan.h,
                          (uint64_t)plan.w, labels ? (uint64_t)num_classes : 0, fhash, content};
        header_encode(header, &h);
        wrote = fseek(af.f, 0, SEEK_SET) == 0 && fwrite(header, 1, HEADER_BYTES, af.f) == HEADER_BYTES;
    }
    if (!st && !wrote)
        st = dm_error_set(err, DM_ERR_IO, "%s: write failed: %s", af.tmp_path, strerror(errno));
    if (st)
        dm_atomic_abort(&af);
    else
        st = dm_atomic_commit(&af, err);
    free(chunk), free(mirror), free(header);
    return st;
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

dm_status dm_image_cache_try(dm_image_set *s, const char *path, uint64_t fingerprint,
                             bool check, bool *mapped, char *reason, size_t cap, dm_error *err) {
    *mapped = false;
    struct stat sb;
    if (stat(path, &sb) != 0) {
        snprintf(reason, cap, "no cache yet");
        return DM_OK;
    }
    int fd;
    dm_status st = dm_open_regular(path, &fd, &sb, err);
    if (st) return st;
    cache_header h;
    if (cache_valid(fd, (uint64_t)sb.st_size, fingerprint, check, &h, reason, cap)) {
        dm_error why = {0};
        st = cache_map(s, fd, (uint64_t)sb.st_size, &h, path, &why);
        *mapped = st == DM_OK;
        if (st == DM_ERR_FORMAT) { /* corrupt within its checks (a crafted file): rebuilt */
            snprintf(reason, cap, "%s", why.msg);
            st = DM_OK;
        } else if (st) {
            dm_error_set(err, st, "%s", why.msg);
        }
    }
    close(fd);
    return st;
}

void dm_image_cache_seal(uint8_t *file, size_t size) {
    if (size < HEADER_BYTES) return;
    memcpy(file, MAGIC, 8);
    put_u64(file + 64, dm_fnv1a_add(DM_FNV1A_START, file + HEADER_BYTES, size - HEADER_BYTES));
    put_u64(file + 72, dm_fnv1a(file, 72));
}

uint64_t dm_image_cache_fingerprint(const uint8_t *file) { return get_u64(file + 8); }

static uint64_t path_hash(const char *dir) {
    char *real = realpath(dir, NULL);
    uint64_t h = dm_fnv1a(real ? real : dir, strlen(real ? real : dir));
    free(real);
    return h;
}

dm_status dm_image_folder_open(dm_image_set *s, const char *dir,
                               const dm_image_folder_options *opt, const char *cache_dir,
                               dm_image_cache_info *info, dm_error *err) {
    memset(s, 0, sizeof *s);
    dm_image_cache_info scratch;
    if (!info) info = &scratch;
    memset(info, 0, sizeof *info);
    dm_image_folder_options defaults;
    if (!opt) {
        dm_image_folder_options_default(&defaults);
        opt = &defaults;
    }
    if (!dir) return dm_error_set(err, DM_ERR_ARG, "dm_image_folder_open: no folder given");
    dm_status st = dm_image_folder_options_check(opt, err);
    if (st) return st;

    dm_name_list paths = {0};
    int32_t *labels = NULL, num_classes = 0;
    uint64_t fingerprint = 0;
    char folder[4096];
    if ((st = dm_image_folder_collect(dir, &paths, &labels, &num_classes, err)) ||
        (st = folder_fingerprint(dir, &paths, labels, num_classes, opt, &fingerprint, err)))
        goto done;
    /* one folder of caches may serve many image folders: the name carries the folder's path
     * and the options (the fingerprint checks them again) */
    int len = cache_dir ? snprintf(folder, sizeof folder, "%s", cache_dir)
                        : snprintf(folder, sizeof folder, "%s/%s", dir, CACHE_DIR_NAME);
    if (len >= (int)sizeof folder ||
        snprintf(info->path, sizeof info->path, "%s/images-%016llx-s%lld-c%lld%s.u8", folder,
                 (unsigned long long)path_hash(dir), (long long)opt->size,
                 (long long)opt->channels, opt->hflip ? "-hflip" : "") >= (int)sizeof info->path) {
        st = dm_error_set(err, DM_ERR_ARG, "%s: cache path too long", dir);
        goto done;
    }
    bool mapped;
    if ((st = dm_image_cache_try(s, info->path, fingerprint, true, &mapped, info->reason,
                        sizeof info->reason, err)) ||
        mapped)
        goto done;
    if (mkdir(folder, 0777) != 0 && errno != EEXIST) {
        st = dm_error_set(err, DM_ERR_IO,
                          "%s: cannot create the image cache folder: %s (choose another cache "
                          "folder)",
                          folder, strerror(errno));
        goto done;
    }
    const double t0 = now_seconds();
    if ((st = cache_build(info->path, &paths, labels, num_classes, opt, fingerprint, err)))
        goto done;
    info->built = 1;
    info->build_seconds = now_seconds() - t0;
    char again[256];
    if ((st = dm_image_cache_try(s, info->path, fingerprint, false, &mapped, again, sizeof again, err)))
        goto done;
    if (!mapped)
        st = dm_error_set(err, DM_ERR_IO, "%s: the cache just built cannot be used: %s",
                          info->path, again);
done:
    free(labels);
    dm_names_free(&paths);
    return st;
}
