/* Folders of PNG and JPEG images (decoded by stb_image), optionally one subfolder per class.
 * Each image is centre-cropped to a square and resized (stb_image_resize) when a size is
 * given; with hflip the mirrored copies follow all the originals (image i's mirror is at
 * index n + i), so original indices keep the sorted file order. */
#include "data/image_util.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <stb_image.h>
#include <stb_image_resize.h>

/* Beyond this a "size" is a typo, not a training resolution. */
#define MAX_SIZE 16384
/* Images larger than this (a side, or in all) are refused from their header, before anything is
 * allocated for them: a few bytes of PNG or JPEG header can claim gigapixels. */
#define MAX_SIDE 16384
#define MAX_PIXELS ((int64_t)1 << 28)
/* A larger file is not a training image; stb_image also takes its length as an int. */
#define MAX_FILE_BYTES ((size_t)1 << 30)

void dm_image_folder_options_default(dm_image_folder_options *o) {
    o->size = 0;
    o->channels = 0;
    o->hflip = 0;
}

typedef struct {
    char **items;
    size_t n, cap;
} name_list;

static void names_free(name_list *l) {
    for (size_t i = 0; i < l->n; i++) free(l->items[i]);
    free(l->items);
    memset(l, 0, sizeof *l);
}

/* Takes ownership of s (freed here if the list cannot grow). */
static bool names_push(name_list *l, char *s) {
    if (!s) return false;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        char **grown = realloc(l->items, cap * sizeof *grown);
        if (!grown) {
            free(s);
            return false;
        }
        l->items = grown;
        l->cap = cap;
    }
    l->items[l->n++] = s;
    return true;
}

static int compare_names(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static char *join_path(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *out = malloc(a + 1 + b + 1);
    if (!out) return NULL;
    memcpy(out, dir, a);
    out[a] = '/';
    memcpy(out + a + 1, name, b + 1);
    return out;
}

static bool is_image_name(const char *name) {
    const char *dot = strrchr(name, '.');
    return dot && (strcasecmp(dot, ".png") == 0 || strcasecmp(dot, ".jpg") == 0 ||
                   strcasecmp(dot, ".jpeg") == 0);
}

/* The images (full paths) and subfolders (full paths) of dir, each sorted by name; hidden
 * entries and other files are left out. */
static dm_status scan_dir(const char *dir, name_list *images, name_list *subdirs,
                          dm_error *err) {
    DIR *d = opendir(dir);
    if (!d) return dm_error_set(err, DM_ERR_IO, "%s: cannot open folder: %s", dir, strerror(errno));
    dm_status st = DM_OK;
    struct dirent *e;
    errno = 0;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue; /* also . and .. */
        char *path = join_path(dir, e->d_name);
        struct stat sb;
        if (!path) {
            st = dm_error_set(err, DM_ERR_NOMEM, "%s: out of memory listing the folder", dir);
            break;
        }
        if (stat(path, &sb) != 0) { /* a dangling link, or a file removed meanwhile */
            free(path);
            continue;
        }
        name_list *to = S_ISDIR(sb.st_mode)                         ? subdirs
                        : S_ISREG(sb.st_mode) && is_image_name(path) ? images
                                                                     : NULL;
        if (!to) {
            free(path);
        } else if (!names_push(to, path)) {
            st = dm_error_set(err, DM_ERR_NOMEM, "%s: out of memory listing the folder", dir);
            break;
        }
        errno = 0;
    }
    if (!st && errno)
        st = dm_error_set(err, DM_ERR_IO, "%s: cannot list the folder: %s", dir, strerror(errno));
    closedir(d);
    if (st) return st;
    /* full paths share the dir prefix, so sorting them sorts by name */
    if (images->n) qsort(images->items, images->n, sizeof *images->items, compare_names);
    if (subdirs->n) qsort(subdirs->items, subdirs->n, sizeof *subdirs->items, compare_names);
    return DM_OK;
}

/* ---- checks before stb_image sees a file (found by fuzzing, fuzz/README.md) */

/* JPEG: Debian's stb_image 2.27 trusts the Huffman tables of a file (newer stb_image releases
 * check the first case below), so they are checked here, on the bytes stb will read, before it
 * decodes anything:
 * - a DHT table whose 16 code counts add up to more than 256 makes stb write past its 257- and
 *   256-entry arrays (a heap overflow; found by fuzzing);
 * - a scan that names a table no DHT has defined makes stb decode with the uninitialised table
 *   of a malloc'd struct (out-of-bounds reads, or its assert aborts the process; found by
 *   fuzzing). */

/* The byte at i, or 0 past the end (as stb's reader returns). */
static int jpeg_byte(const uint8_t *p, size_t n, size_t i) { return i < n ? p[i] : 0; }

/* The DHT segment whose length field is at i: tables while the length lasts, as stb reads them
 * (a class/id byte, 16 code counts, the symbols). Marks the tables defined in dc and ac (bit t
 * for table t); false for a table of more than 256 codes. */
static bool jpeg_dht_ok(const uint8_t *p, size_t n, size_t i, unsigned *dc, unsigned *ac) {
    long left = (long)(jpeg_byte(p, n, i) << 8 | jpeg_byte(p, n, i + 1)) - 2;
    i += 2;
    while (left > 0) {
        int q = jpeg_byte(p, n, i), tc = q >> 4, th = q & 15;
        if (tc > 1 || th > 3) return true; /* stb refuses the file here */
        long count = 0;
        for (int k = 1; k <= 16; k++) count += jpeg_byte(p, n, i + (size_t)k);
        if (count > 256) return false;
        *(tc ? ac : dc) |= 1u << th;
        i += 17 + (size_t)count;
        left -= 17 + count;
    }
    return true;
}

/* The SOS header whose length field is at i: false when a component's scan decodes with a
 * table that is not defined yet (a baseline scan uses both of its tables; a progressive one
 * its DC table in a first DC scan, its AC table in an AC scan). */
static bool jpeg_sos_ok(const uint8_t *p, size_t n, size_t i, unsigned dc, unsigned ac,
                        bool progressive) {
    int ns = jpeg_byte(p, n, i + 2);
    if (ns < 1 || ns > 4) return true; /* stb refuses the file here */
    size_t after = i + 3 + 2 * (size_t)ns;
    int ss = jpeg_byte(p, n, after), ah = jpeg_byte(p, n, after + 2) >> 4;
    bool need_dc = !progressive || (ss == 0 && ah == 0), need_ac = !progressive || ss > 0;
    for (int k = 0; k < ns; k++) {
        int q = jpeg_byte(p, n, i + 4 + 2 * (size_t)k), td = q >> 4, ta = q & 15;
        if (td > 3 || ta > 3) return true; /* stb refuses the file here */
        if ((need_dc && !(dc >> td & 1)) || (need_ac && !(ac >> ta & 1))) return false;
    }
    return true;
}

/* Walks the JPEG p (n bytes, starting FF D8) as stb_image does: segments by their lengths; after
 * each SOS header the entropy-coded data up to the first marker that is neither a stuffed 0xFF
 * (FF 00) nor a restart (FF D0..D7), where stb's decoder stops too. Checks every DHT and SOS on
 * the way; stops where stb stops (EOI, or a marker it refuses), since nothing after is read. */
static bool jpeg_tables_ok(const uint8_t *p, size_t n) {
    unsigned dc = 0, ac = 0;
    bool progressive = false;
    size_t i = 2;
    for (;;) {
        while (i < n && p[i] != 0xFF) i++; /* stb skips such bytes before the frame header */
        while (i < n && p[i] == 0xFF) i++; /* fill bytes */
        if (i >= n) return true;
        int m = p[i++];
        size_t len = (size_t)(jpeg_byte(p, n, i) << 8 | jpeg_byte(p, n, i + 1));
        if (m == 0xC4) {
            if (!jpeg_dht_ok(p, n, i, &dc, &ac)) return false;
        } else if (m == 0xC0 || m == 0xC1 || m == 0xC2) {
            progressive = m == 0xC2;
        } else if (m == 0xDA) {
            if (!jpeg_sos_ok(p, n, i, dc, ac, progressive)) return false;
            for (i += len; i < n; i++) {
                if (p[i] != 0xFF) continue;
                size_t j = i + 1;
                while (j < n && p[j] == 0xFF) j++;
                if (j < n && p[j] != 0x00 && !(p[j] >= 0xD0 && p[j] <= 0xD7)) break;
                i = j;
            }
            continue; /* at the marker's first 0xFF */
        } else if (!(m == 0xDB || m == 0xDD || m == 0xDC || (m >= 0xE0 && m <= 0xEF) ||
                     m == 0xFE)) {
            return true; /* EOI, or a marker stb refuses: it reads no further */
        }
        i += len;
    }
}

/* Every chunk of the PNG p (n bytes) lies inside the file, and IEND ends them. stb_image 2.27
 * reallocates its IDAT buffer to a chunk's claimed length before reading the chunk (found by
 * fuzzing: 100 bytes claiming a 1.6 GB chunk); after this check that is bounded by the file. */
static bool png_chunks_ok(const uint8_t *p, size_t n) {
    size_t i = 8;
    while (n - i >= 12) {
        uint32_t len = (uint32_t)p[i] << 24 | (uint32_t)p[i + 1] << 16 | (uint32_t)p[i + 2] << 8 |
                       p[i + 3];
        if (len > n - i - 12) return false;
        bool iend = memcmp(p + i + 4, "IEND", 4) == 0;
        i += 12 + (size_t)len;
        if (iend) return true;
    }
    return false;
}

/* Reads path whole into *buf (free() it) and checks it before it is decoded: a PNG or a JPEG by
 * its first bytes (stbi_load would also decode GIF, BMP, PSD, TGA, HDR, PIC and PNM, whatever
 * the name says, through decoders with known memory-safety bugs in Debian's stb_image 2.27),
 * PNG chunks inside the file, JPEG Huffman tables stb can hold, and a header size within
 * MAX_SIDE and MAX_PIXELS. */
static dm_status read_image_file(const char *path, uint8_t **buf, size_t *len, int *w, int *h,
                                 int *comp, dm_error *err) {
    *buf = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return dm_error_set(err, DM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        fclose(f);
        return dm_error_set(err, DM_ERR_IO, "%s: not a regular file", path);
    }
    if ((uint64_t)sb.st_size > MAX_FILE_BYTES) {
        fclose(f);
        return dm_error_set(err, DM_ERR_FORMAT, "%s: %lld bytes; image files over %zu MiB are "
                            "not supported", path, (long long)sb.st_size, MAX_FILE_BYTES >> 20);
    }
    *len = (size_t)sb.st_size;
    *buf = malloc(*len ? *len : 1);
    if (!*buf) {
        fclose(f);
        return dm_error_set(err, DM_ERR_NOMEM, "%s: cannot allocate %zu bytes", path, *len);
    }
    bool ok = fread(*buf, 1, *len, f) == *len;
    fclose(f);
    dm_status st = DM_OK;
    const uint8_t *p = *buf;
    bool png = *len >= 8 && memcmp(p, "\x89PNG\r\n\x1a\n", 8) == 0;
    bool jpeg = *len >= 3 && p[0] == 0xFF && p[1] == 0xD8 && p[2] == 0xFF;
    if (!ok)
        st = dm_error_set(err, DM_ERR_IO, "%s: read failed (or the file changed)", path);
    else if (!png && !jpeg)
        st = dm_error_set(err, DM_ERR_FORMAT, "%s: not a PNG or JPEG file", path);
    else if (png && !png_chunks_ok(p, *len))
        st = dm_error_set(err, DM_ERR_FORMAT, "%s: truncated or corrupt PNG (a chunk runs past "
                          "the end of the file, or no IEND)", path);
    else if (jpeg && !jpeg_tables_ok(p, *len))
        st = dm_error_set(err, DM_ERR_FORMAT, "%s: corrupt JPEG (a Huffman table with more "
                          "than 256 codes, or a scan using a table never defined)", path);
    else if (!stbi_info_from_memory(p, (int)*len, w, h, comp))
        st = dm_error_set(err, DM_ERR_FORMAT, "%s: cannot decode the image: %s", path,
                          stbi_failure_reason() ? stbi_failure_reason() : "unknown error");
    else if (*w < 1 || *h < 1 || *w > MAX_SIDE || *h > MAX_SIDE ||
             (int64_t)*w * *h > MAX_PIXELS)
        st = dm_error_set(err, DM_ERR_FORMAT,
                          "%s: %d x %d pixels; images up to %d a side and %lld pixels are "
                          "supported", path, *w, *h, MAX_SIDE, (long long)MAX_PIXELS);
    if (st) {
        free(*buf);
        *buf = NULL;
    }
    return st;
}

/* grey (1), grey+alpha (2) -> 1 channel; RGB (3), RGBA (4) -> 3 */
static int64_t colour_channels(int comp) { return comp <= 2 ? 1 : 3; }

typedef struct {
    int64_t size, channels;  /* requested (0 = from the first image) */
    int64_t h, w, c;         /* of the output */
    const char *first_path;  /* for messages about mismatches */
    int first_h, first_w;
} load_plan;

/* Decodes one image into dst (c, h, w floats) and, if mirror is not NULL, its mirror image. */
static dm_status load_one(const char *path, const load_plan *p, float *dst, float *mirror,
                          dm_error *err) {
    int w, h, comp;
    uint8_t *file;
    size_t len;
    dm_status checked = read_image_file(path, &file, &len, &w, &h, &comp, err);
    if (checked) return checked;
    /* stb converts to the requested channel count itself: luminance for RGB -> grey, the
     * alpha channel dropped (as PIL's convert("RGB") does) */
    uint8_t *pixels = stbi_load_from_memory(file, (int)len, &w, &h, &comp, (int)p->c);
    free(file);
    if (!pixels)
        return dm_error_set(err, DM_ERR_FORMAT, "%s: cannot decode the image: %s", path,
                            stbi_failure_reason() ? stbi_failure_reason() : "unknown error");
    dm_status st = DM_OK;
    uint8_t *resized = NULL;
    const uint8_t *src = pixels;
    size_t stride = (size_t)w * (size_t)p->c; /* bytes between rows of src */
    if (p->channels == 0 && colour_channels(comp) != p->c) {
        st = dm_error_set(err, DM_ERR_MISMATCH,
                          "%s: a %s image, but the first one (%s) is %s; set the channel count "
                          "to convert them all",
                          path, p->c == 1 ? "colour" : "grey", p->first_path,
                          p->c == 1 ? "grey" : "colour");
    } else if (p->size == 0 && (w != p->first_w || h != p->first_h)) {
        st = dm_error_set(err, DM_ERR_MISMATCH,
                          "%s: %d x %d pixels, but the first image (%s) is %d x %d; set a size to "
                          "crop and resize them all",
                          path, w, h, p->first_path, p->first_w, p->first_h);
    } else if (p->size > 0) {
        /* centre square, then area-average down (box) or interpolate up (triangle) */
        int side = w < h ? w : h, x0 = (w - side) / 2, y0 = (h - side) / 2;
        src = pixels + ((size_t)y0 * (size_t)w + (size_t)x0) * (size_t)p->c;
        if (side != p->size) {
            resized = malloc((size_t)(p->size * p->size * p->c));
            int ok = resized && stbir_resize_uint8_generic(
                                    src, side, side, (int)stride, resized, (int)p->size,
                                    (int)p->size, (int)(p->size * p->c), (int)p->c,
                                    STBIR_ALPHA_CHANNEL_NONE, 0, STBIR_EDGE_CLAMP,
                                    side > p->size ? STBIR_FILTER_BOX : STBIR_FILTER_TRIANGLE,
                                    STBIR_COLORSPACE_LINEAR, NULL);
            if (!ok)
                st = dm_error_set(err, DM_ERR_NOMEM, "%s: out of memory resizing the image",
                                  path);
            src = resized;
            stride = (size_t)(p->size * p->c);
        }
    }
    if (!st) {
        /* HWC bytes -> CHW floats */
        for (int64_t ch = 0; ch < p->c; ch++) {
            for (int64_t y = 0; y < p->h; y++) {
                const uint8_t *in = src + (size_t)y * stride + (size_t)ch;
                float *out = dst + (ch * p->h + y) * p->w;
                for (int64_t x = 0; x < p->w; x++) out[x] = dm_pixel_from_u8(in[x * p->c]);
                if (mirror) {
                    float *m = mirror + (ch * p->h + y) * p->w;
                    for (int64_t x = 0; x < p->w; x++) m[x] = out[p->w - 1 - x];
                }
            }
        }
    }
    free(resized);
    stbi_image_free(pixels);
    return st;
}

/* The image paths to load with their labels (-1 when unlabelled), from dir's images or, when
 * it has none, from its class subfolders. */
static dm_status collect(const char *dir, name_list *paths, int32_t **labels,
                         int32_t *num_classes, dm_error *err) {
    name_list subdirs = {0};
    *labels = NULL;
    *num_classes = 0;
    dm_status st = scan_dir(dir, paths, &subdirs, err);
    if (st || paths->n) {
        names_free(&subdirs);
        return st;
    }
    if (subdirs.n == 0)
        return dm_error_set(err, DM_ERR_FORMAT,
                            "%s: no PNG or JPEG images and no class subfolders", dir);
    if (subdirs.n > INT32_MAX) {
        names_free(&subdirs);
        return dm_error_set(err, DM_ERR_FORMAT, "%s: too many class subfolders", dir);
    }
    size_t labels_cap = 0;
    for (size_t k = 0; k < subdirs.n && !st; k++) {
        name_list images = {0}, nested = {0};
        st = scan_dir(subdirs.items[k], &images, &nested, err);
        names_free(&nested); /* a class folder's own subfolders are not looked into */
        if (!st && images.n == 0)
            st = dm_error_set(err, DM_ERR_FORMAT,
                              "%s: class folder with no PNG or JPEG images (class %zu of %s)",
                              subdirs.items[k], k, dir);
        if (!st && paths->n + images.n > labels_cap) {
            size_t cap = (paths->n + images.n) * 2;
            int32_t *grown = realloc(*labels, cap * sizeof *grown);
            if (!grown)
                st = dm_error_set(err, DM_ERR_NOMEM, "%s: out of memory listing images", dir);
            else
                *labels = grown, labels_cap = cap;
        }
        for (size_t i = 0; i < images.n && !st; i++) {
            (*labels)[paths->n] = (int32_t)k;
            if (!names_push(paths, images.items[i]))
                st = dm_error_set(err, DM_ERR_NOMEM, "%s: out of memory listing images", dir);
            images.items[i] = NULL; /* owned by paths now (or freed by names_push) */
        }
        names_free(&images);
    }
    *num_classes = (int32_t)subdirs.n;
    names_free(&subdirs);
    if (st) {
        free(*labels);
        *labels = NULL;
    }
    return st;
}

dm_status dm_image_folder_load(dm_image_set *s, const char *dir,
                               const dm_image_folder_options *opt, dm_error *err) {
    memset(s, 0, sizeof *s);
    dm_image_folder_options defaults;
    if (!opt) {
        dm_image_folder_options_default(&defaults);
        opt = &defaults;
    }
    if (!dir) return dm_error_set(err, DM_ERR_ARG, "dm_image_folder_load: no folder given");
    if (opt->size < 0 || opt->size > MAX_SIZE)
        return dm_error_set(err, DM_ERR_ARG, "image size %lld: must be 0 (as stored) to %d",
                            (long long)opt->size, MAX_SIZE);
    if (opt->channels != 0 && opt->channels != 1 && opt->channels != 3)
        return dm_error_set(err, DM_ERR_ARG,
                            "image channels %lld: must be 0 (as stored), 1 (grey) or 3 (RGB)",
                            (long long)opt->channels);

    name_list paths = {0};
    int32_t *labels = NULL, num_classes = 0;
    dm_status st = collect(dir, &paths, &labels, &num_classes, err);
    if (st) {
        names_free(&paths);
        return st;
    }

    load_plan plan = {.size = opt->size, .channels = opt->channels, .first_path = paths.items[0]};
    int comp;
    uint8_t *first;
    size_t first_len;
    st = read_image_file(plan.first_path, &first, &first_len, &plan.first_w, &plan.first_h, &comp,
                         err);
    free(first);
    if (!st) {
        plan.c = opt->channels ? opt->channels : colour_channels(comp);
        plan.h = opt->size ? opt->size : plan.first_h;
        plan.w = opt->size ? opt->size : plan.first_w;
        int64_t copies = opt->hflip ? 2 : 1;
        st = dm_image_set_init(s, (int64_t)paths.n * copies, plan.c, plan.h, plan.w,
                               labels != NULL, err);
    }

    /* decoding dominates and each image has its own slot: decode in parallel, and report the
     * failure of the first file in sorted order so the message does not depend on threads */
    int64_t count = (int64_t)paths.n, first_bad = count;
    dm_error first_err = {0};
    if (!st) {
#pragma omp parallel for schedule(dynamic, 4)
        for (int64_t i = 0; i < count; i++) {
            dm_error e = {0};
            float *dst = s->data.x + i * s->data.dim;
            float *mirror = opt->hflip ? s->data.x + (count + i) * s->data.dim : NULL;
            if (load_one(paths.items[i], &plan, dst, mirror, &e)) {
#pragma omp critical(dm_image_folder_error)
                if (i < first_bad) {
                    first_bad = i;
                    first_err = e;
                }
            }
        }
    }
    if (!st && first_bad < count) {
        st = first_err.status;
        if (err) *err = first_err;
    }
    if (!st && labels) {
        for (int64_t i = 0; i < s->data.n; i++) s->data.labels[i] = labels[i % count];
        s->data.num_classes = num_classes;
    }
    if (st) dm_image_set_free(s);
    free(labels);
    names_free(&paths);
    return st;
}
