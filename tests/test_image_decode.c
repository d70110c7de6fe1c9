/* Image decoding in dm_image_folder_load (src/data/image_folder.c: libpng and libjpeg-turbo).
 * Every image here is written by the test itself with libpng or libjpeg from pixel values it
 * chose, and each decoded pixel is compared with the value written: exactly for PNG (lossless),
 * within a stated bound for JPEG (lossy). Then the refusals: a PNG whose zlib stream is cut
 * (half of it, or only its Adler-32), a JPEG cut inside its scan, corrupt entropy-coded data,
 * headers over the size limits refused before anything is allocated (in a child whose address
 * space is capped), and a self-looping symlink in the folder reported by name. */
#include "core/core.h"

#include "test_util.h"

#include <errno.h>
#include <jpeglib.h>
#include <png.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <zlib.h>

/* (float)v / 127.5f - 1 against the same in double: one float division and one subtraction */
#define EXACT_TOL 1e-6

/* ---------------------------------------------------------------------------------------- */
/* Writers                                                                                   */

typedef struct {
    uint8_t *p;
    size_t n, cap;
} bytes;

static void bytes_put(bytes *b, const void *data, size_t len) {
    if (b->n + len > b->cap) {
        b->cap = (b->n + len) * 2;
        b->p = realloc(b->p, b->cap);
        if (!b->p) abort();
    }
    memcpy(b->p + b->n, data, len);
    b->n += len;
}

static void png_to_bytes(png_structp png, png_bytep data, size_t len) {
    bytes_put(png_get_io_ptr(png), data, len);
}

static void png_flush_none(png_structp png) { (void)png; }

/* A PNG of w x h with the given colour type, depth and interlace; samples are the raw values
 * of each row (row_bytes each, packed as PNG packs them: big-endian 16-bit, 1-bit MSB first). */
static bytes png_encode(int w, int h, int type, int depth, int interlace, const uint8_t *samples,
                        size_t row_bytes, const png_color *palette, int npal,
                        const png_byte *trans, int ntrans) {
    bytes b = {0};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info || setjmp(png_jmpbuf(png))) {
        fprintf(stderr, "png_encode: libpng failed\n");
        exit(1);
    }
    png_set_write_fn(png, &b, png_to_bytes, png_flush_none);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, depth, type, interlace,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (palette) png_set_PLTE(png, info, palette, npal);
    if (trans) png_set_tRNS(png, info, trans, ntrans, NULL);
    png_write_info(png, info);
    png_bytep *rows = malloc((size_t)h * sizeof *rows);
    for (int y = 0; y < h; y++) rows[y] = (png_bytep)(samples + (size_t)y * row_bytes);
    png_write_image(png, rows);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    free(rows);
    return b;
}

typedef struct {
    int comps;        /* 1 grey, 3 RGB (stored as YCbCr), 4 CMYK */
    int quality;      /* 1..100 */
    int subsample;    /* 1: 4:4:4; 2: 4:2:0 (colour only) */
    int progressive;  /* jpeg_simple_progression */
    int restarts;     /* restart interval in MCUs (0: none) */
} jpeg_opts;

/* A JPEG of w x h from px (h rows of w * comps bytes), written by libjpeg into memory. */
static bytes jpeg_encode(int w, int h, const uint8_t *px, jpeg_opts o) {
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr e;
    c.err = jpeg_std_error(&e); /* errors exit: a broken writer is a broken test */
    jpeg_create_compress(&c);
    unsigned char *out = NULL;
    unsigned long out_len = 0;
    jpeg_mem_dest(&c, &out, &out_len);
    c.image_width = (JDIMENSION)w, c.image_height = (JDIMENSION)h;
    c.input_components = o.comps;
    c.in_color_space = o.comps == 1 ? JCS_GRAYSCALE : o.comps == 3 ? JCS_RGB : JCS_CMYK;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, o.quality, TRUE);
    if (o.comps == 3) {
        c.comp_info[0].h_samp_factor = c.comp_info[0].v_samp_factor = o.subsample;
        c.comp_info[1].h_samp_factor = c.comp_info[1].v_samp_factor = 1;
        c.comp_info[2].h_samp_factor = c.comp_info[2].v_samp_factor = 1;
    }
    if (o.progressive) jpeg_simple_progression(&c);
    c.restart_interval = (unsigned)o.restarts;
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = (JSAMPROW)(px + (size_t)c.next_scanline * (size_t)w * (size_t)o.comps);
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    bytes b = {0};
    bytes_put(&b, out, out_len);
    free(out);
    return b;
}

/* ---------------------------------------------------------------------------------------- */
/* Loading                                                                                   */

static void write_file(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f || (len && fwrite(data, 1, len, f) != len) || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

/* Loads a folder holding only `name` with these bytes, as stored or converted to channels. */
static dm_status load_one(const char *name, const bytes *b, int64_t channels, dm_image_set *s,
                          dm_error *err) {
    const char *dir = tu_tmp_path("one");
    mkdir(dir, 0755);
    char path[600];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    write_file(path, b->p, b->n);
    dm_image_folder_options o;
    dm_image_folder_options_default(&o);
    o.channels = channels;
    memset(err, 0, sizeof *err);
    memset(s, 0, sizeof *s);
    dm_status st = dm_image_folder_load(s, dir, &o, err);
    remove(path);
    rmdir(dir);
    CHECK(st || (s->data.n == 1), "%s: one image loaded", name);
    CHECK(!st || s->data.x == NULL, "%s: nothing left allocated after a refusal", name);
    return st;
}

/* Decodes name and compares with want (c, h, w as uint8 values, CHW) within tol pixel levels. */
static void expect_pixels(const char *name, const bytes *b, int64_t channels, int64_t c,
                          int64_t h, int64_t w, const uint8_t *want_chw, double tol_levels) {
    dm_image_set s;
    dm_error err;
    if (load_one(name, b, channels, &s, &err)) {
        CHECK(0, "%s: refused: %s", name, err.msg);
        return;
    }
    CHECK(s.c == c && s.h == h && s.w == w, "%s: %lld x %lld x %lld, want %lld x %lld x %lld",
          name, (long long)s.c, (long long)s.h, (long long)s.w, (long long)c, (long long)h,
          (long long)w);
    if (s.c == c && s.h == h && s.w == w) {
        size_t n = (size_t)(c * h * w);
        double *want = malloc(n * sizeof *want);
        for (size_t i = 0; i < n; i++) want[i] = want_chw[i] / 127.5 - 1;
        tu_check_array(name, s.data.x, want, n, tol_levels / 127.5 + EXACT_TOL, 0);
        free(want);
    }
    dm_image_set_free(&s);
}

/* A refusal with DM_ERR_FORMAT (or want) and a message naming the file and saying needle. */
static void expect_refused(const char *name, const bytes *b, dm_status want, const char *needle) {
    dm_image_set s;
    dm_error err;
    dm_status st = load_one(name, b, 0, &s, &err);
    if (!st) dm_image_set_free(&s);
    CHECK(st == want, "%s: status %d, want %d (%s)", name, (int)st, (int)want, err.msg);
    CHECK(strstr(err.msg, name) != NULL, "%s: the message names the file: '%s'", name, err.msg);
    CHECK(!needle || strstr(err.msg, needle) != NULL, "%s: the message should say '%s': '%s'",
          name, needle ? needle : "", err.msg);
}

/* ---------------------------------------------------------------------------------------- */
/* PNG variants                                                                              */

/* HWC values of `stored` channels -> CHW of c channels, with stb_image's (and the loader's)
 * conversions written out: grey -> RGB repeats it, RGB -> grey is (77 R + 150 G + 29 B) >> 8,
 * alpha is dropped. */
static void to_chw(uint8_t *out, int c, const uint8_t *hwc, int stored, int h, int w) {
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            const uint8_t *p = hwc + ((size_t)y * w + x) * stored;
            for (int k = 0; k < c && k < 3; k++) { /* c: 1 or 3 */
                uint8_t v;
                if (stored <= 2) v = p[0];
                else if (c == 1) v = (uint8_t)((77 * p[0] + 150 * p[1] + 29 * p[2]) >> 8);
                else v = p[k];
                out[((size_t)k * h + y) * w + x] = v;
            }
        }
}

static uint8_t val(int i, int k) { return (uint8_t)(i * 37 + k * 91 + 11); }

static void test_png_variants(void) {
    enum { W = 9, H = 7 };
    uint8_t raw[H * W * 8], hwc[H * W * 4], chw[3 * H * W];

    /* 8-bit grey, RGB, grey + alpha, RGBA: the rows are the values */
    static const struct {
        const char *name;
        int type, stored;
    } plain[] = {{"grey.png", PNG_COLOR_TYPE_GRAY, 1},
                 {"rgb.png", PNG_COLOR_TYPE_RGB, 3},
                 {"grey_alpha.png", PNG_COLOR_TYPE_GRAY_ALPHA, 2},
                 {"rgba.png", PNG_COLOR_TYPE_RGB_ALPHA, 4}};
    for (size_t v = 0; v < sizeof plain / sizeof plain[0]; v++) {
        int st = plain[v].stored, c = st <= 2 ? 1 : 3;
        for (int i = 0; i < H * W; i++)
            for (int k = 0; k < st; k++) hwc[i * st + k] = val(i, k);
        for (int interlace = 0; interlace < 2; interlace++) {
            bytes b = png_encode(W, H, plain[v].type, 8, interlace ? PNG_INTERLACE_ADAM7 : 0, hwc,
                                 (size_t)W * st, NULL, 0, NULL, 0);
            char name[64];
            snprintf(name, sizeof name, "%s%s", interlace ? "adam7_" : "", plain[v].name);
            to_chw(chw, c, hwc, st, H, W);
            expect_pixels(name, &b, 0, c, H, W, chw, 0);
            /* and converted to the other channel count */
            int other = c == 1 ? 3 : 1;
            to_chw(chw, other, hwc, st, H, W);
            snprintf(name, sizeof name, "as%d_%s%s", other, interlace ? "adam7_" : "",
                     plain[v].name);
            expect_pixels(name, &b, other, other, H, W, chw, 0);
            free(b.p);
        }
    }

    /* 16-bit RGB: the high byte of each big-endian sample */
    for (int i = 0; i < H * W; i++)
        for (int k = 0; k < 3; k++) {
            raw[(i * 3 + k) * 2] = val(i, k);
            raw[(i * 3 + k) * 2 + 1] = (uint8_t)(255 - val(i, k)); /* low byte: must not matter */
            hwc[i * 3 + k] = val(i, k);
        }
    bytes b = png_encode(W, H, PNG_COLOR_TYPE_RGB, 16, 0, raw, (size_t)W * 6, NULL, 0, NULL, 0);
    to_chw(chw, 3, hwc, 3, H, W);
    expect_pixels("rgb16.png", &b, 0, 3, H, W, chw, 0);
    free(b.p);

    /* 16-bit grey + alpha */
    for (int i = 0; i < H * W; i++) {
        raw[i * 4] = val(i, 0), raw[i * 4 + 1] = 7, raw[i * 4 + 2] = 3, raw[i * 4 + 3] = 9;
        hwc[i] = val(i, 0);
    }
    b = png_encode(W, H, PNG_COLOR_TYPE_GRAY_ALPHA, 16, 0, raw, (size_t)W * 4, NULL, 0, NULL, 0);
    to_chw(chw, 1, hwc, 1, H, W);
    expect_pixels("grey_alpha16.png", &b, 0, 1, H, W, chw, 0);
    free(b.p);

    /* 2-bit palette with tRNS (alpha dropped), interlaced too: index i -> palette colour */
    png_color pal[4] = {{0, 0, 0}, {255, 0, 0}, {0, 255, 0}, {20, 40, 250}};
    png_byte trans[2] = {0, 128};
    size_t row2 = (W * 2 + 7) / 8;
    memset(raw, 0, sizeof raw);
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            int idx = (x + 2 * y) % 4;
            raw[y * row2 + x / 4] |= (uint8_t)(idx << (6 - 2 * (x % 4)));
            uint8_t *p = hwc + (y * W + x) * 3;
            p[0] = pal[idx].red, p[1] = pal[idx].green, p[2] = pal[idx].blue;
        }
    to_chw(chw, 3, hwc, 3, H, W);
    for (int interlace = 0; interlace < 2; interlace++) {
        b = png_encode(W, H, PNG_COLOR_TYPE_PALETTE, 2, interlace ? PNG_INTERLACE_ADAM7 : 0, raw,
                       row2, pal, 4, trans, 2);
        expect_pixels(interlace ? "adam7_palette.png" : "palette.png", &b, 0, 3, H, W, chw, 0);
        free(b.p);
    }

    /* 1-bit grey: 0 -> 0, 1 -> 255 */
    size_t row1 = (W + 7) / 8;
    memset(raw, 0, sizeof raw);
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            int bit = (x * 3 + y) % 5 < 2;
            raw[y * row1 + x / 8] |= (uint8_t)(bit << (7 - x % 8));
            chw[y * W + x] = bit ? 255 : 0;
        }
    b = png_encode(W, H, PNG_COLOR_TYPE_GRAY, 1, 0, raw, row1, NULL, 0, NULL, 0);
    expect_pixels("bit1.png", &b, 0, 1, H, W, chw, 0);

    /* by magic, not by name: a PNG named .jpg decodes as the PNG it is */
    expect_pixels("png_named.jpg", &b, 0, 1, H, W, chw, 0);
    free(b.p);
    /* and only PNG and JPEG: a GIF named .png is refused */
    static const uint8_t gif[] = "GIF89a\x01\x00\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01"
                                 "\x00\x00\x02\x02D\x01\x00;";
    bytes g = {(uint8_t *)gif, sizeof gif - 1, sizeof gif};
    expect_refused("gif.png", &g, DM_ERR_FORMAT, "not a PNG or JPEG");
}

/* ---------------------------------------------------------------------------------------- */
/* JPEG variants                                                                             */

/* Smooth content (JPEG's best case): R ramps along x, G along y, B is their mix. */
static void smooth_rgb(uint8_t *px, int w, int h) {
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *p = px + ((size_t)y * w + x) * 3;
            p[0] = (uint8_t)(30 + 190 * x / (w - 1));
            p[1] = (uint8_t)(220 - 180 * y / (h - 1));
            p[2] = (uint8_t)((p[0] + p[1]) / 2);
        }
}

static void test_jpeg_variants(void) {
    enum { W = 24, H = 16 };
    uint8_t rgb[H * W * 3], grey[H * W], cmyk[H * W * 4], chw[3 * H * W];
    smooth_rgb(rgb, W, H);
    for (int i = 0; i < H * W; i++) grey[i] = rgb[i * 3];
    /* Tolerances, in pixel levels, at quality 100 (quantisers of 1). Grey: only the DCT's
     * rounding, measured 0 here: 1. Colour 4:4:4: the RGB <-> YCbCr conversions round too,
     * measured at most 2: 3. 4:2:0 halves the chroma resolution: on these ramps (chroma changing
     * by up to 4 levels a pixel) the upsampled chroma is off by more, measured at most 7: 8.
     * (Measured by setting them to 0: the failures print the max difference.) */
    const double tol_grey = 1, tol = 3, tol_420 = 8;

    static const struct {
        const char *name;
        jpeg_opts o;
    } cases[] = {
        {"grey.jpg", {1, 100, 1, 0, 0}},
        {"grey_progressive.jpg", {1, 100, 1, 1, 0}},
        {"grey_restarts.jpg", {1, 100, 1, 0, 1}},
        {"rgb444.jpg", {3, 100, 1, 0, 0}},
        {"rgb420.jpg", {3, 100, 2, 0, 0}},
        {"rgb444_progressive.jpg", {3, 100, 1, 1, 0}},
        {"rgb420_progressive.jpg", {3, 100, 2, 1, 0}},
        {"rgb420_restarts.jpg", {3, 100, 2, 0, 2}},
        {"rgb444_restarts_progressive.jpg", {3, 100, 1, 1, 1}},
    };
    for (size_t v = 0; v < sizeof cases / sizeof cases[0]; v++) {
        jpeg_opts o = cases[v].o;
        bytes b = jpeg_encode(W, H, o.comps == 1 ? grey : rgb, o);
        double t = o.comps == 1 ? tol_grey : o.subsample == 2 ? tol_420 : tol;
        to_chw(chw, o.comps, o.comps == 1 ? grey : rgb, o.comps, H, W);
        expect_pixels(cases[v].name, &b, 0, o.comps, H, W, chw, t);
        /* converted: grey -> RGB repeats it; RGB -> grey is libjpeg's Y (0.299 R + 0.587 G +
         * 0.114 B), within a level of the loader's PNG formula written in to_chw (measured: 2
         * levels in all against the RGB written) */
        int other = o.comps == 1 ? 3 : 1;
        to_chw(chw, other, o.comps == 1 ? grey : rgb, o.comps, H, W);
        char name[80];
        snprintf(name, sizeof name, "as%d_%s", other, cases[v].name);
        expect_pixels(name, &b, other, other, H, W, chw, t + 1);
        free(b.p);
    }

    /* CMYK (Adobe): R = C K / 255 and so on, as stb_image decoded it */
    for (int i = 0; i < H * W; i++) {
        uint8_t k = (uint8_t)(200 + i % 56);
        cmyk[i * 4] = rgb[i * 3], cmyk[i * 4 + 1] = rgb[i * 3 + 1], cmyk[i * 4 + 2] = rgb[i * 3 + 2];
        cmyk[i * 4 + 3] = k;
    }
    uint8_t want_rgb[H * W * 3];
    for (int i = 0; i < H * W * 3; i++)
        want_rgb[i] = (uint8_t)lround(cmyk[(i / 3) * 4 + i % 3] * cmyk[(i / 3) * 4 + 3] / 255.0);
    bytes b = jpeg_encode(W, H, cmyk, (jpeg_opts){4, 100, 1, 0, 0});
    to_chw(chw, 3, want_rgb, 3, H, W);
    /* no colour conversion in the file (four channels stored as given): the DCT's rounding
     * and the product's, measured 0: 1 */
    expect_pixels("cmyk.jpg", &b, 0, 3, H, W, chw, 1);
    free(b.p);

    /* the control for the bounds above: a different image fails them (the checks can fail) */
    uint8_t shifted[H * W * 3];
    for (int i = 0; i < H * W * 3; i++) shifted[i] = (uint8_t)(rgb[i] + 12);
    b = jpeg_encode(W, H, shifted, (jpeg_opts){3, 100, 1, 0, 0});
    dm_image_set s;
    dm_error err;
    if (!load_one("shifted.jpg", &b, 0, &s, &err)) {
        to_chw(chw, 3, rgb, 3, H, W);
        double maxdiff = 0;
        for (int i = 0; i < 3 * H * W; i++)
            maxdiff = fmax(maxdiff, fabs(s.data.x[i] - (chw[i] / 127.5 - 1)) * 127.5);
        CHECK(maxdiff > tol, "an image shifted by 12 levels is told apart (max diff %.2f levels)",
              maxdiff);
        dm_image_set_free(&s);
    } else {
        CHECK(0, "shifted.jpg: %s", err.msg);
    }
    free(b.p);
}

/* ---------------------------------------------------------------------------------------- */
/* Refusals                                                                                  */

static uint32_t get_be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put_be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* png with its IDAT chunks' zlib stream cut to keep bytes and `junk` bytes (0x5A) appended in
 * one IDAT chunk: the chunk structure stays valid (length and CRC recomputed, IEND after), so
 * only the stream itself is truncated or followed by junk. */
static bytes png_cut_zlib(const bytes *png, size_t keep, size_t junk) {
    bytes zs = {0}, out = {0};
    size_t i = 8, iend = 0;
    while (i + 12 <= png->n) {
        uint32_t len = get_be32(png->p + i);
        if (memcmp(png->p + i + 4, "IDAT", 4) == 0) bytes_put(&zs, png->p + i + 8, len);
        if (memcmp(png->p + i + 4, "IEND", 4) == 0) iend = i;
        i += 12 + len;
    }
    if (!iend || keep > zs.n) abort();
    size_t first = 8;
    while (memcmp(png->p + first + 4, "IDAT", 4) != 0) first += 12 + get_be32(png->p + first);
    bytes_put(&out, png->p, first); /* signature and the chunks before IDAT */
    zs.n = keep;
    for (size_t k = 0; k < junk; k++) bytes_put(&zs, "\x5a", 1);
    uint8_t head[8];
    put_be32(head, (uint32_t)zs.n);
    memcpy(head + 4, "IDAT", 4);
    bytes_put(&out, head, 8);
    bytes_put(&out, zs.p, zs.n);
    uLong crc = crc32(crc32(0, (const Bytef *)"IDAT", 4), zs.p, (uInt)zs.n);
    uint8_t tail[4];
    put_be32(tail, (uint32_t)crc);
    bytes_put(&out, tail, 4);
    bytes_put(&out, png->p + iend, 12);
    free(zs.p);
    return out;
}

static void test_png_refusals(void) {
    enum { W = 32, H = 32 };
    uint8_t px[H * W * 3];
    for (int i = 0; i < H * W * 3; i++) px[i] = (uint8_t)(i * 2654435761u >> 24); /* noisy */
    bytes png = png_encode(W, H, PNG_COLOR_TYPE_RGB, 8, 0, px, W * 3, NULL, 0, NULL, 0);
    size_t zlen = 0;
    for (size_t i = 8; i + 12 <= png.n; i += 12 + get_be32(png.p + i))
        if (memcmp(png.p + i + 4, "IDAT", 4) == 0) zlen += get_be32(png.p + i);

    /* the control: the whole stream rewritten by png_cut_zlib decodes to what was written */
    bytes whole = png_cut_zlib(&png, zlen, 0);
    uint8_t chw[3 * H * W];
    to_chw(chw, 3, px, 3, H, W);
    expect_pixels("whole_stream.png", &whole, 0, 3, H, W, chw, 0);
    free(whole.p);

    /* half the stream: rows missing (stb_image decoded the rest as garbage and accepted it) */
    bytes half = png_cut_zlib(&png, zlen / 2, 0);
    expect_refused("half_stream.png", &half, DM_ERR_FORMAT, "corrupt PNG");
    free(half.p);
    /* every row there, only the stream's end (its Adler-32 checksum) missing */
    bytes no_check = png_cut_zlib(&png, zlen - 4, 0);
    expect_refused("no_adler.png", &no_check, DM_ERR_FORMAT, "corrupt PNG");
    free(no_check.p);
    /* the checksum there but wrong (one pixel changed inside the deflate data would change the
     * image; here the Adler-32's last byte) */
    bytes bad_check = png_cut_zlib(&png, zlen, 0);
    size_t at = 8 + 25; /* after IHDR */
    while (memcmp(bad_check.p + at + 4, "IDAT", 4) != 0) at += 12 + get_be32(bad_check.p + at);
    bad_check.p[at + 8 + zlen - 1] ^= 0x55;
    uLong crc = crc32(0, bad_check.p + at + 4, (uInt)(4 + zlen)); /* chunk CRC still right */
    put_be32(bad_check.p + at + 8 + zlen, (uint32_t)crc);
    expect_refused("bad_adler.png", &bad_check, DM_ERR_FORMAT, "corrupt PNG");
    free(bad_check.p);
    /* junk after the stream's end inside IDAT: every pixel decodes, and libpng calls it a
     * "benign" error ("extra compressed data"), a warning unless the loader makes it fatal */
    bytes junk = png_cut_zlib(&png, zlen, 8);
    expect_refused("trailing_junk.png", &junk, DM_ERR_FORMAT, "corrupt PNG");
    free(junk.p);
    /* the file cut inside IDAT (no IEND) */
    bytes cut = {png.p, png.n / 2, png.n};
    expect_refused("cut_file.png", &cut, DM_ERR_FORMAT, "corrupt PNG");
    free(png.p);
}

static void test_jpeg_refusals(void) {
    enum { W = 64, H = 64 };
    uint8_t rgb[H * W * 3];
    for (int i = 0; i < H * W * 3; i++) rgb[i] = (uint8_t)(i * 2654435761u >> 24);
    bytes j = jpeg_encode(W, H, rgb, (jpeg_opts){3, 90, 2, 0, 0});
    size_t sos = 2;
    while (sos + 1 < j.n && !(j.p[sos] == 0xFF && j.p[sos + 1] == 0xDA)) sos++;
    size_t data = sos + 2 + ((size_t)j.p[sos + 2] << 8 | j.p[sos + 3]); /* scan data starts */
    CHECK(data + 64 < j.n, "the test JPEG has a scan (%zu of %zu bytes)", data, j.n);

    dm_image_set s;
    dm_error err;
    CHECK(load_one("control.jpg", &j, 0, &s, &err) == DM_OK, "control JPEG: %s", err.msg);
    dm_image_set_free(&s);

    /* cut in the middle of the scan: libjpeg fills the rest with grey and warns */
    bytes cut = {j.p, data + (j.n - data) / 2, j.n};
    expect_refused("cut_scan.jpg", &cut, DM_ERR_FORMAT, "corrupt JPEG");
    /* also a progressive one, cut after its first scans */
    bytes prog = jpeg_encode(W, H, rgb, (jpeg_opts){3, 90, 2, 1, 0});
    bytes cutp = {prog.p, prog.n * 2 / 3, prog.n};
    expect_refused("cut_progressive.jpg", &cutp, DM_ERR_FORMAT, "corrupt JPEG");
    free(prog.p);

    /* corrupt entropy-coded data: 16 bytes of stuffed 0xFF (FF 00) are 128 one bits, and no
     * Huffman code is all ones (a bad Huffman code, which libjpeg decodes past with a warning) */
    bytes bad = {0};
    bytes_put(&bad, j.p, j.n);
    for (size_t k = 0; k < 16; k += 2) bad.p[data + 20 + k] = 0xFF, bad.p[data + 21 + k] = 0x00;
    expect_refused("bad_huffman.jpg", &bad, DM_ERR_FORMAT, "corrupt JPEG");
    /* a restart marker in a file without restart intervals */
    memcpy(bad.p, j.p, j.n);
    bad.p[data + 30] = 0xFF, bad.p[data + 31] = 0xD3;
    expect_refused("stray_marker.jpg", &bad, DM_ERR_FORMAT, "corrupt JPEG");
    free(bad.p);
    free(j.p);
}

/* A PNG header (signature, IHDR, an empty IDAT, IEND) of w x h 8-bit RGB. */
static bytes png_header_only(uint32_t w, uint32_t h) {
    bytes b = {0};
    bytes_put(&b, "\x89PNG\r\n\x1a\n", 8);
    uint8_t ihdr[25] = {0, 0, 0, 13, 'I', 'H', 'D', 'R'};
    put_be32(ihdr + 8, w);
    put_be32(ihdr + 12, h);
    ihdr[16] = 8, ihdr[17] = 2;
    put_be32(ihdr + 21, (uint32_t)crc32(0, ihdr + 4, 17));
    bytes_put(&b, ihdr, 25);
    bytes_put(&b, "\0\0\0\0IDAT\x35\xaf\x06\x1e", 12);
    bytes_put(&b, "\0\0\0\0IEND\xae\x42\x60\x82", 12);
    return b;
}

/* A grey baseline JPEG header (SOF0) of w x h, with tables and a scan of one block. */
static bytes jpeg_header_only(int w, int h, int comps) {
    uint8_t one[8 * 8 * 3] = {0};
    bytes small = jpeg_encode(8, 8, one, (jpeg_opts){comps, 90, 1, 0, 0});
    for (size_t i = 2; i + 8 < small.n; i++)
        if (small.p[i] == 0xFF && small.p[i + 1] == 0xC0) {
            small.p[i + 5] = (uint8_t)(h >> 8), small.p[i + 6] = (uint8_t)h;
            small.p[i + 7] = (uint8_t)(w >> 8), small.p[i + 8] = (uint8_t)w;
            return small;
        }
    abort();
}

/* Headers over the limits (16384 a side; the 2^28-pixel limit is 16384 squared, so the side
 * limit implies it), loaded in a child whose address space is capped at 256 MiB above what it
 * uses: a loader that allocated the image first (16384 x 16385 RGB is 805 MB of bytes, 3.2 GB
 * of floats) fails by "cannot allocate" or dies, and the message must be the size refusal. */
static void test_oversize(void) {
    static const struct {
        const char *name;
        uint32_t w, h;
        int jpeg;
    } cases[] = {
        {"wide.png", 16385, 1, 0},      {"tall.png", 16384, 16385, 0},
        {"taller.png", 1, 20000000, 0}, {"wide.jpg", 16385, 8, 1},
        {"tall.jpg", 16384, 16385, 1},  {"huge.jpg", 65500, 65500, 1},
    };
    for (size_t v = 0; v < sizeof cases / sizeof cases[0]; v++) {
        bytes b = cases[v].jpeg ? jpeg_header_only((int)cases[v].w, (int)cases[v].h, 3)
                                : png_header_only(cases[v].w, cases[v].h);
        fflush(NULL);
        int failures_before = tu_failures;
        pid_t pid = fork();
        if (pid == 0) {
            struct rlimit lim;
            getrlimit(RLIMIT_AS, &lim);
            FILE *f = fopen("/proc/self/statm", "r");
            unsigned long pages = 0;
            if (f && fscanf(f, "%lu", &pages) != 1) pages = 0;
            if (f) fclose(f);
            lim.rlim_cur = (rlim_t)pages * (rlim_t)sysconf(_SC_PAGESIZE) + ((rlim_t)256 << 20);
            setrlimit(RLIMIT_AS, &lim);
            char want[80];
            snprintf(want, sizeof want, "%u x %u pixels", cases[v].w, cases[v].h);
            expect_refused(cases[v].name, &b, DM_ERR_FORMAT, want);
            dm_image_set s;
            dm_error err;
            load_one(cases[v].name, &b, 0, &s, &err);
            CHECK(!strstr(err.msg, "allocate") && !strstr(err.msg, "memory"),
                  "%s: refused by a check, not a failed allocation: '%s'", cases[v].name, err.msg);
            _exit(tu_failures > failures_before ? 1 : 0);
        }
        int status = 0;
        waitpid(pid, &status, 0);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s: the capped child %s (%d)",
              cases[v].name, WIFEXITED(status) ? "failed" : "died",
              WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
        free(b.p);
    }
    /* just within the limits, a side of 16384: accepted by the header check (the file, cut after
     * its header, is then refused as corrupt, not by size) */
    bytes b = png_header_only(16384, 1);
    dm_image_set s;
    dm_error err;
    dm_status st = load_one("edge.png", &b, 0, &s, &err);
    if (!st) dm_image_set_free(&s);
    CHECK(st == DM_ERR_FORMAT && !strstr(err.msg, "pixels;"),
          "edge.png: 16384 x 1 passes the size check: '%s'", err.msg);
    free(b.p);
}

/* ---------------------------------------------------------------------------------------- */
/* The folder walk                                                                           */

static void test_symlinks(void) {
    const char *dir = tu_tmp_path("links");
    mkdir(dir, 0755);
    uint8_t g[4] = {0, 85, 170, 255};
    bytes png = png_encode(2, 2, PNG_COLOR_TYPE_GRAY, 8, 0, g, 2, NULL, 0, NULL, 0);
    char a[600], loop[600], dangling[600];
    snprintf(a, sizeof a, "%s/a.png", dir);
    snprintf(loop, sizeof loop, "%s/loop.png", dir);
    snprintf(dangling, sizeof dangling, "%s/gone.png", dir);
    write_file(a, png.p, png.n);
    free(png.p);

    /* a dangling link is not an image of the set (as before): the folder loads */
    CHECK(symlink("nowhere.png", dangling) == 0, "symlink: %s", strerror(errno));
    dm_image_set s;
    dm_error err = {0};
    dm_status st = dm_image_folder_load(&s, dir, NULL, &err);
    CHECK(st == DM_OK && s.data.n == 1, "a dangling link is skipped: %s", err.msg);
    if (!st) dm_image_set_free(&s);

    /* a link to itself: the entry is named with the system's reason, not "cannot list the
     * folder" (readdir's errno was stale: left over from the failed stat) */
    CHECK(symlink("loop.png", loop) == 0, "symlink: %s", strerror(errno));
    memset(&err, 0, sizeof err);
    st = dm_image_folder_load(&s, dir, NULL, &err);
    if (!st) dm_image_set_free(&s);
    CHECK(st == DM_ERR_IO, "self-looping link: status %d (%s)", (int)st, err.msg);
    CHECK(strstr(err.msg, "loop.png") && strstr(err.msg, strerror(ELOOP)) &&
              !strstr(err.msg, "cannot list"),
          "self-looping link: the message names it and says why: '%s'", err.msg);
    remove(loop);
    remove(dangling);
    remove(a);
    rmdir(dir);
}

int main(void) {
    if (tu_tmpdir_make("image_decode") != 0) return 1;
    test_png_variants();
    test_jpeg_variants();
    test_png_refusals();
    test_jpeg_refusals();
    test_oversize();
    test_symlinks();
    tu_tmpdir_remove();
    return tu_finish("test_image_decode");
}
