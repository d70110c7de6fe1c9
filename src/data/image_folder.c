/* Folders of PNG and JPEG images (decoded by libpng and libjpeg-turbo), optionally one
 * subfolder per class. Each image is centre-cropped to a square and resized (stb_image_resize)
 * when a size is given; with hflip the mirrored copies follow all the originals (image i's
 * mirror is at index n + i), so original indices keep the sorted file order. */
#include "data/image_folder.h"
#include "io/image_util.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <jpeglib.h>
#include <png.h>
#include <setjmp.h>
#include <stb_image_resize.h>

/* Beyond this a "size" is a typo, not a training resolution. */
#define MAX_SIZE 16384
/* Images larger than this (a side, or in all) are refused from their header, before anything is
 * allocated for them: a few bytes of PNG or JPEG header can claim gigapixels. */
#define MAX_SIDE 16384
#define MAX_PIXELS ((int64_t)1 << 28)
/* A larger file is not a training image (and libjpeg's memory source takes an unsigned long). */
#define MAX_FILE_BYTES ((size_t)1 << 30)

void dm_image_folder_options_default(dm_image_folder_options *o) {
    o->size = 0;
    o->channels = 0;
    o->hflip = 0;
}

void dm_names_free(dm_name_list *l) {
    for (size_t i = 0; i < l->n; i++) free(l->items[i]);
    free(l->items);
    memset(l, 0, sizeof *l);
}

/* Takes ownership of s (freed here if the list cannot grow). */
static bool names_push(dm_name_list *l, char *s) {
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
static dm_status scan_dir(const char *dir, dm_name_list *images, dm_name_list *subdirs,
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
        if (stat(path, &sb) != 0) {
            if (errno != ENOENT) { /* a link that loops, an entry we may not look at */
                st = dm_error_set(err, DM_ERR_IO, "%s: cannot read: %s", path, strerror(errno));
                free(path);
                break;
            }
            free(path); /* a dangling link, or a file removed meanwhile: not in the set */
            errno = 0;
            continue;
        }
        dm_name_list *to = S_ISDIR(sb.st_mode)                         ? subdirs
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

/* ---- decoding: libpng and libjpeg-turbo, each with its own limits and errors made fatal */

/* Bytes a PNG's ancillary chunk may allocate (libpng's png_set_chunk_malloc_max); the loader
 * keeps no ancillary chunk anyway (see decode_png), so this bounds only what libpng reads. */
#define PNG_CHUNK_MAX ((png_alloc_size_t)8 << 20)
/* libjpeg's own memory cap (max_memory_to_use): a progressive 4-component image at MAX_PIXELS
 * keeps 2 bytes a coefficient, 8 bytes a pixel, in its coefficient buffers. */
#define JPEG_MEM_MAX ((long)MAX_PIXELS * 8)
/* A progressive JPEG may have any number of scans, each a pass over the whole coefficient
 * buffer: tiny files of thousands of empty scans take minutes (libjpeg-turbo's own tools cap
 * them the same way, djpeg -maxscans). */
#define JPEG_MAX_SCANS 500

/* An image decoded to `c` bytes a pixel (rows of w * c), with the channels it was stored with
 * (1: grey, grey + alpha; 3: colour, colour + alpha, palette, CMYK). */
typedef struct {
    int w, h;
    int stored_c;
    uint8_t *pixels; /* NULL when only the header was read */
} decoded_image;

static dm_status size_error(const char *path, uint32_t w, uint32_t h, dm_error *err) {
    return dm_error_set(err, DM_ERR_FORMAT,
                        "%s: %u x %u pixels; images up to %d a side and %lld pixels are "
                        "supported", path, w, h, MAX_SIDE, (long long)MAX_PIXELS);
}

static bool size_ok(uint32_t w, uint32_t h) {
    return w >= 1 && h >= 1 && w <= MAX_SIDE && h <= MAX_SIDE && (int64_t)w * h <= MAX_PIXELS;
}

/* stb_image's luminance, which the loader has always used for colour -> grey:
 * (77 R + 150 G + 29 B) / 256 */
static uint8_t luma(const uint8_t *rgb) {
    return (uint8_t)((rgb[0] * 77 + rgb[1] * 150 + rgb[2] * 29) >> 8);
}

/* n pixels of in_c channels (1 grey, 2 grey + alpha, 3 RGB, 4 RGBA) to out_c (1 or 3); alpha is
 * dropped, as PIL's convert("RGB") does. out may be in (out_c <= in_c). */
static void convert_pixels(uint8_t *out, int out_c, const uint8_t *in, int in_c, size_t n) {
    for (size_t i = 0; i < n; i++) {
        const uint8_t *s = in + i * (size_t)in_c;
        uint8_t *d = out + i * (size_t)out_c;
        if (in_c <= 2) {
            uint8_t g = s[0];
            for (int k = 0; k < out_c; k++) d[k] = g;
        } else if (out_c == 1) {
            d[0] = luma(s);
        } else {
            uint8_t r = s[0], g = s[1], b = s[2];
            d[0] = r, d[1] = g, d[2] = b;
        }
    }
}

/* -- PNG */

typedef struct {
    const uint8_t *p;
    size_t n, at;
    uint8_t *stored;   /* the decoded rows as libpng gives them, before conversion */
    png_bytep *rows;
    jmp_buf jmp;
    char msg[256];
} png_reader;

static void png_on_error(png_structp png, png_const_charp msg) {
    png_reader *r = png_get_error_ptr(png);
    snprintf(r->msg, sizeof r->msg, "%s", msg);
    longjmp(r->jmp, 1);
}

static void png_on_warning(png_structp png, png_const_charp msg) {
    (void)png, (void)msg; /* the library never prints; what matters is an error */
}

static void png_read_bytes(png_structp png, png_bytep dst, size_t len) {
    png_reader *r = png_get_io_ptr(png);
    if (len > r->n - r->at)
        png_error(png, "truncated: a chunk runs past the end of the file");
    memcpy(dst, r->p + r->at, len);
    r->at += len;
}

/* Decodes the PNG p (n bytes) to c channels (1 or 3), or only its header when c is 0.
 * libpng's limits: at most MAX_SIDE a side (png_set_user_limits), PNG_CHUNK_MAX bytes for a
 * chunk; only the critical chunks are read (every ancillary one is skipped unread, since none
 * changes the pixels the loader keeps: alpha and tRNS are dropped, gamma is not applied); a
 * CRC error, a truncated or corrupt zlib stream, too little or too much image data are errors
 * (benign errors made fatal; png_read_end reads the stream to its end and checks its Adler-32). */
static dm_status decode_png(const char *path, const uint8_t *p, size_t n, int c,
                            decoded_image *out, dm_error *err) {
    png_reader r = {.p = p, .n = n};
    out->pixels = NULL;
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &r, png_on_error,
                                             png_on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        return dm_error_set(err, DM_ERR_NOMEM, "%s: out of memory starting libpng", path);
    }
    if (setjmp(r.jmp)) {
        /* IHDR is read into png's fields before libpng checks it against the user limits */
        uint32_t w = png_get_image_width(png, info), h = png_get_image_height(png, info);
        png_destroy_read_struct(&png, &info, NULL);
        free(r.rows);
        free(r.stored);
        free(out->pixels);
        out->pixels = NULL;
        if (w && h && !size_ok(w, h)) return size_error(path, w, h, err);
        return dm_error_set(err, DM_ERR_FORMAT, "%s: corrupt PNG: %s", path, r.msg);
    }
    png_set_read_fn(png, &r, png_read_bytes);
    png_set_user_limits(png, MAX_SIDE, MAX_SIDE);
    png_set_chunk_malloc_max(png, PNG_CHUNK_MAX);
    png_set_benign_errors(png, 0);
    png_set_keep_unknown_chunks(png, PNG_HANDLE_CHUNK_NEVER, NULL, -1); /* known ones too */
    png_read_info(png, info);
    png_uint_32 w, h;
    int depth, type, interlace;
    png_get_IHDR(png, info, &w, &h, &depth, &type, &interlace, NULL, NULL);
    if (!size_ok(w, h)) {
        png_destroy_read_struct(&png, &info, NULL);
        return size_error(path, w, h, err);
    }
    out->w = (int)w, out->h = (int)h;
    out->stored_c = type & PNG_COLOR_MASK_COLOR ? 3 : 1;
    if (c == 0) {
        png_destroy_read_struct(&png, &info, NULL);
        return DM_OK;
    }
    png_set_expand(png);   /* palette -> RGB, grey of 1, 2, 4 bits -> 8 */
    png_set_strip_16(png); /* the high byte, as stb_image kept */
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    int in_c = png_get_channels(png, info);
    size_t row = (size_t)w * (size_t)in_c;
    if (in_c < 1 || in_c > 4 || png_get_rowbytes(png, info) != row)
        png_error(png, "unexpected row layout after the transforms");
    r.stored = malloc(row * h);
    r.rows = malloc(h * sizeof *r.rows);
    out->pixels = malloc((size_t)w * h * (size_t)c);
    if (!r.stored || !r.rows || !out->pixels) {
        snprintf(r.msg, sizeof r.msg, "cannot allocate %zu bytes", row * h);
        longjmp(r.jmp, 1);
    }
    for (png_uint_32 y = 0; y < h; y++) r.rows[y] = r.stored + y * row;
    png_read_image(png, r.rows);
    png_read_end(png, NULL);
    png_destroy_read_struct(&png, &info, NULL);
    convert_pixels(out->pixels, c, r.stored, in_c, (size_t)w * h);
    free(r.rows);
    free(r.stored);
    return DM_OK;
}

/* -- JPEG */

typedef struct {
    struct jpeg_error_mgr mgr; /* first: libjpeg's err pointer is a pointer to this */
    jmp_buf jmp;
    char msg[JMSG_LENGTH_MAX + 64];
} jpeg_failure;

static void jpeg_on_error(j_common_ptr cinfo) {
    jpeg_failure *f = (jpeg_failure *)cinfo->err;
    cinfo->err->format_message(cinfo, f->msg);
    longjmp(f->jmp, 1);
}

/* Level -1 is a warning, which libjpeg gives for corrupt data it decodes anyway (a bad
 * Huffman code, a file cut short: "Premature end of JPEG file", filled with grey): an error
 * here. Other levels are trace messages: ignored. */
static void jpeg_on_message(j_common_ptr cinfo, int level) {
    if (level < 0) jpeg_on_error(cinfo);
}

static void jpeg_on_progress(j_common_ptr cinfo) {
    j_decompress_ptr d = (j_decompress_ptr)cinfo;
    if (cinfo->is_decompressor && d->input_scan_number > JPEG_MAX_SCANS) {
        jpeg_failure *f = (jpeg_failure *)cinfo->err;
        snprintf(f->msg, sizeof f->msg, "more than %d scans", JPEG_MAX_SCANS);
        longjmp(f->jmp, 1);
    }
}

/* stb_image's rounding of x * y / 255 (for CMYK) */
static uint8_t mul_255(uint8_t x, uint8_t y) {
    unsigned t = (unsigned)x * y + 128;
    return (uint8_t)((t + (t >> 8)) >> 8);
}

/* Decodes the JPEG p (n bytes) to c channels (1 or 3), or only its header when c is 0.
 * libjpeg's errors longjmp back here, its warnings (corrupt data) are errors too, the size from
 * the header is checked before jpeg_start_decompress allocates anything for the image, and
 * libjpeg's memory (max_memory_to_use) and scan count are capped. Grey, YCbCr (any sampling),
 * RGB, CMYK and YCCK files; colour -> grey is the Y channel (as stb_image gave), CMYK -> RGB
 * as stb_image did (each of C, M, Y times K, Adobe's inverted storage). */
static dm_status decode_jpeg(const char *path, const uint8_t *p, size_t n, int c,
                             decoded_image *out, dm_error *err) {
    struct jpeg_decompress_struct cinfo;
    jpeg_failure f;
    struct jpeg_progress_mgr progress = {.progress_monitor = jpeg_on_progress};
    out->pixels = NULL;
    cinfo.err = jpeg_std_error(&f.mgr);
    f.mgr.error_exit = jpeg_on_error;
    f.mgr.emit_message = jpeg_on_message;
    f.msg[0] = 0;
    uint8_t *volatile cmyk = NULL;
    if (setjmp(f.jmp)) {
        jpeg_destroy_decompress(&cinfo);
        free(cmyk);
        free(out->pixels);
        out->pixels = NULL;
        return dm_error_set(err, DM_ERR_FORMAT, "%s: corrupt JPEG: %s", path, f.msg);
    }
    jpeg_create_decompress(&cinfo);
    cinfo.mem->max_memory_to_use = JPEG_MEM_MAX;
    cinfo.progress = &progress;
    jpeg_mem_src(&cinfo, p, (unsigned long)n);
    jpeg_read_header(&cinfo, TRUE);
    uint32_t w = cinfo.image_width, h = cinfo.image_height;
    int comps = cinfo.num_components;
    if (!size_ok(w, h)) {
        jpeg_destroy_decompress(&cinfo);
        return size_error(path, w, h, err);
    }
    if (comps != 1 && comps != 3 && comps != 4) {
        jpeg_destroy_decompress(&cinfo);
        return dm_error_set(err, DM_ERR_FORMAT, "%s: a JPEG of %d components; 1 (grey), 3 "
                            "(colour) or 4 (CMYK) are supported", path, comps);
    }
    out->w = (int)w, out->h = (int)h;
    out->stored_c = comps == 1 ? 1 : 3;
    if (c == 0) {
        jpeg_destroy_decompress(&cinfo);
        return DM_OK;
    }
    cinfo.out_color_space = comps == 4 ? JCS_CMYK : c == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_start_decompress(&cinfo);
    if (cinfo.output_width != w || cinfo.output_height != h ||
        cinfo.output_components != (comps == 4 ? 4 : c)) {
        snprintf(f.msg, sizeof f.msg, "unexpected output layout");
        longjmp(f.jmp, 1);
    }
    out->pixels = malloc((size_t)w * h * (size_t)c);
    if (comps == 4) cmyk = malloc((size_t)w * 4);
    if (!out->pixels || (comps == 4 && !cmyk)) {
        snprintf(f.msg, sizeof f.msg, "cannot allocate %zu bytes", (size_t)w * h * (size_t)c);
        longjmp(f.jmp, 1);
    }
    while (cinfo.output_scanline < h) {
        uint8_t *dst = out->pixels + (size_t)cinfo.output_scanline * w * (size_t)c;
        JSAMPROW row = comps == 4 ? cmyk : dst;
        if (jpeg_read_scanlines(&cinfo, &row, 1) != 1) {
            snprintf(f.msg, sizeof f.msg, "no data for row %u", cinfo.output_scanline);
            longjmp(f.jmp, 1);
        }
        for (uint32_t x = 0; comps == 4 && x < w; x++) {
            const uint8_t *s = cmyk + 4 * (size_t)x;
            uint8_t rgb[3] = {mul_255(s[0], s[3]), mul_255(s[1], s[3]), mul_255(s[2], s[3])};
            if (c == 1)
                dst[x] = luma(rgb);
            else
                memcpy(dst + 3 * (size_t)x, rgb, 3);
        }
    }
    jpeg_finish_decompress(&cinfo); /* reads on to EOI: corrupt data after the image fails too */
    jpeg_destroy_decompress(&cinfo);
    free(cmyk);
    return DM_OK;
}

/* Reads path whole into *buf (free() it): a regular file of at most MAX_FILE_BYTES, a PNG or a
 * JPEG by its first bytes (whatever its name says). The file is read once and decoded from
 * memory, so every check and the decoder see the same bytes. */
static dm_status read_image_file(const char *path, uint8_t **buf, size_t *len, bool *png,
                                 dm_error *err) {
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
    *png = *len >= 8 && memcmp(p, "\x89PNG\r\n\x1a\n", 8) == 0;
    bool jpeg = *len >= 3 && p[0] == 0xFF && p[1] == 0xD8 && p[2] == 0xFF;
    if (!ok)
        st = dm_error_set(err, DM_ERR_IO, "%s: read failed (or the file changed)", path);
    else if (!*png && !jpeg)
        st = dm_error_set(err, DM_ERR_FORMAT, "%s: not a PNG or JPEG file", path);
    if (st) {
        free(*buf);
        *buf = NULL;
    }
    return st;
}

/* Reads and decodes path to c channels (1 or 3; 0: the header only, checked). */
static dm_status decode_file(const char *path, int c, decoded_image *out, dm_error *err) {
    uint8_t *file;
    size_t len = 0;
    bool png = false;
    dm_status st = read_image_file(path, &file, &len, &png, err);
    if (st) return st;
    st = png ? decode_png(path, file, len, c, out, err) : decode_jpeg(path, file, len, c, out, err);
    free(file);
    return st;
}

dm_status dm_image_folder_decode(const char *path, const dm_image_plan *p, uint8_t *dst,
                                 dm_error *err) {
    /* decoded to the requested channel count: luminance for colour -> grey, the alpha channel
     * dropped (as PIL's convert("RGB") does) */
    decoded_image img;
    dm_status st = decode_file(path, (int)p->c, &img, err);
    if (st) return st;
    uint8_t *pixels = img.pixels;
    int w = img.w, h = img.h;
    uint8_t *resized = NULL;
    const uint8_t *src = pixels;
    size_t stride = (size_t)w * (size_t)p->c; /* bytes between rows of src */
    if (p->channels == 0 && img.stored_c != p->c) {
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
        /* HWC -> CHW */
        for (int64_t ch = 0; ch < p->c; ch++) {
            for (int64_t y = 0; y < p->h; y++) {
                const uint8_t *in = src + (size_t)y * stride + (size_t)ch;
                uint8_t *out = dst + (ch * p->h + y) * p->w;
                for (int64_t x = 0; x < p->w; x++) out[x] = in[x * p->c];
            }
        }
    }
    free(resized);
    free(pixels);
    return st;
}

/* Decodes one image into dst (c, h, w floats) and, if mirror is not NULL, its mirror image. */
static dm_status load_one(const char *path, const dm_image_plan *p, float *dst, float *mirror,
                          dm_error *err) {
    const int64_t dim = p->c * p->h * p->w;
    uint8_t *px = malloc((size_t)dim);
    if (!px) return dm_error_set(err, DM_ERR_NOMEM, "%s: out of memory", path);
    dm_status st = dm_image_folder_decode(path, p, px, err);
    if (!st) {
        dm_pixels_from_u8(dst, px, (size_t)dim);
        if (mirror) dm_mirror_rows_f32(mirror, dst, p->c * p->h, p->w);
    }
    free(px);
    return st;
}

/* The image paths to load with their labels (-1 when unlabelled), from dir's images or, when
 * it has none, from its class subfolders. */
dm_status dm_image_folder_collect(const char *dir, dm_name_list *paths, int32_t **labels,
                         int32_t *num_classes, dm_error *err) {
    dm_name_list subdirs = {0};
    *labels = NULL;
    *num_classes = 0;
    dm_status st = scan_dir(dir, paths, &subdirs, err);
    if (st || paths->n) {
        dm_names_free(&subdirs);
        return st;
    }
    if (subdirs.n == 0)
        return dm_error_set(err, DM_ERR_FORMAT,
                            "%s: no PNG or JPEG images and no class subfolders", dir);
    if (subdirs.n > INT32_MAX) {
        dm_names_free(&subdirs);
        return dm_error_set(err, DM_ERR_FORMAT, "%s: too many class subfolders", dir);
    }
    size_t labels_cap = 0;
    for (size_t k = 0; k < subdirs.n && !st; k++) {
        dm_name_list images = {0}, nested = {0};
        st = scan_dir(subdirs.items[k], &images, &nested, err);
        dm_names_free(&nested); /* a class folder's own subfolders are not looked into */
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
        dm_names_free(&images);
    }
    *num_classes = (int32_t)subdirs.n;
    dm_names_free(&subdirs);
    if (st) {
        free(*labels);
        *labels = NULL;
    }
    return st;
}

dm_status dm_image_folder_options_check(const dm_image_folder_options *opt, dm_error *err) {
    if (opt->size < 0 || opt->size > MAX_SIZE)
        return dm_error_set(err, DM_ERR_ARG, "image size %lld: must be 0 (as stored) to %d",
                            (long long)opt->size, MAX_SIZE);
    if (opt->channels != 0 && opt->channels != 1 && opt->channels != 3)
        return dm_error_set(err, DM_ERR_ARG,
                            "image channels %lld: must be 0 (as stored), 1 (grey) or 3 (RGB)",
                            (long long)opt->channels);
    return DM_OK;
}

dm_status dm_image_folder_plan(dm_image_plan *plan, const char *first_path,
                               const dm_image_folder_options *opt, dm_error *err) {
    *plan = (dm_image_plan){.size = opt->size, .channels = opt->channels,
                            .first_path = first_path};
    decoded_image first;
    dm_status st = decode_file(first_path, 0, &first, err); /* the header */
    if (st) return st;
    plan->first_w = first.w, plan->first_h = first.h;
    plan->c = opt->channels ? opt->channels : first.stored_c;
    plan->h = opt->size ? opt->size : plan->first_h;
    plan->w = opt->size ? opt->size : plan->first_w;
    return DM_OK;
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
    dm_status st0 = dm_image_folder_options_check(opt, err);
    if (st0) return st0;

    dm_name_list paths = {0};
    int32_t *labels = NULL, num_classes = 0;
    dm_status st = dm_image_folder_collect(dir, &paths, &labels, &num_classes, err);
    if (st) {
        dm_names_free(&paths);
        return st;
    }

    dm_image_plan plan;
    st = dm_image_folder_plan(&plan, paths.items[0], opt, err);
    if (!st) {
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
    dm_names_free(&paths);
    return st;
}
