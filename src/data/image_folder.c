/* Folders of PNG and JPEG images (decoded by stb_image), optionally one subfolder per class.
 * Each image is centre-cropped to a square and resized (stb_image_resize) when a size is
 * given; with hflip the mirrored copies follow all the originals (image i's mirror is at
 * index n + i), so original indices keep the sorted file order. */
#include "data/image_util.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <stb_image.h>
#include <stb_image_resize.h>

/* Beyond this a "size" is a typo, not a training resolution. */
#define MAX_SIZE 16384

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
    /* stb converts to the requested channel count itself: luminance for RGB -> grey, the
     * alpha channel dropped (as PIL's convert("RGB") does) */
    uint8_t *pixels = stbi_load(path, &w, &h, &comp, (int)p->c);
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
    if (!stbi_info(plan.first_path, &plan.first_w, &plan.first_h, &comp)) {
        st = dm_error_set(err, DM_ERR_FORMAT, "%s: cannot decode the image: %s", plan.first_path,
                          stbi_failure_reason() ? stbi_failure_reason() : "unknown error");
    } else {
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
        for (int64_t i = 0; i < s->data.n; i++) s->labels[i] = labels[i % count];
        s->num_classes = num_classes;
    }
    if (st) dm_image_set_free(s);
    free(labels);
    names_free(&paths);
    return st;
}
