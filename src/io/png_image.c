/* PNG output of images in [-1, 1] (one image, or a grid of them) through libpng, written to a
 * temporary name and renamed into place. */
#include "io/image_util.h"
#include "io/atomic_file.h"

#include <png.h>
#include <stdlib.h>
#include <string.h>

/* Grid background between and around the cells: mid-grey, so padding stays visible against
 * both black-background images (Fashion-MNIST) and white-background ones. */
#define GRID_BACKGROUND 128

/* libpng refuses rows or columns beyond its default user limit of 1,000,000 pixels even when
 * writing; checking first gives a clearer message. */
#define PNG_MAX_SIDE 1000000

typedef struct {
    const float *x; /* (n, c, h, w) */
    int64_t n, c, h, w;
    int64_t cols, pad, scale;
    int64_t cell_w, cell_h;     /* w * scale, h * scale */
    int64_t width, height;      /* of the whole picture */
} grid_layout;

/* Output row y: background, then the pixels of every cell that row crosses. */
static void fill_row(uint8_t *row, int64_t y, const grid_layout *g) {
    memset(row, GRID_BACKGROUND, (size_t)(g->width * g->c));
    int64_t yy = y - g->pad;
    if (yy < 0) return;
    int64_t grid_row = yy / (g->cell_h + g->pad), within = yy % (g->cell_h + g->pad);
    if (within >= g->cell_h) return;
    int64_t iy = within / g->scale;
    for (int64_t q = 0; q < g->cols; q++) {
        int64_t k = grid_row * g->cols + q;
        if (k >= g->n) break;
        uint8_t *dst = row + (g->pad + q * (g->cell_w + g->pad)) * g->c;
        for (int64_t ch = 0; ch < g->c; ch++) {
            const float *src = g->x + ((k * g->c + ch) * g->h + iy) * g->w;
            for (int64_t xc = 0; xc < g->cell_w; xc++)
                dst[xc * g->c + ch] = dm_pixel_to_u8(src[xc / g->scale]);
        }
    }
}

static void on_png_error(png_structp png, png_const_charp msg) {
    char *dst = png_get_error_ptr(png);
    snprintf(dst, 256, "%s", msg);
    png_longjmp(png, 1);
}

static void on_png_warning(png_structp png, png_const_charp msg) {
    (void)png; /* the library never prints; warnings (none expected when writing) are dropped */
    (void)msg;
}

/* Encodes the grid to f; returns 0, or -1 with libpng's message in msg (256 bytes). Kept apart
 * so that no local of the caller lives across setjmp. */
static int encode(FILE *f, const grid_layout *g, uint8_t *row, char *msg) {
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, msg, on_png_error,
                                              on_png_warning);
    if (!png) {
        snprintf(msg, 256, "out of memory");
        return -1;
    }
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_write_struct(&png, NULL);
        snprintf(msg, 256, "out of memory");
        return -1;
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        return -1;
    }
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)g->width, (png_uint_32)g->height, 8,
                 g->c == 1 ? PNG_COLOR_TYPE_GRAY : PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int64_t y = 0; y < g->height; y++) {
        fill_row(row, y, g);
        png_write_row(png, row);
    }
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    return 0;
}

/* side = pad + count * (cell + pad), checked against overflow and PNG_MAX_SIDE */
static bool side_ok(int64_t count, int64_t cell, int64_t pad, int64_t *side) {
    int64_t step;
    return !__builtin_add_overflow(cell, pad, &step) &&
           !__builtin_mul_overflow(count, step, side) &&
           !__builtin_add_overflow(*side, pad, side) && *side <= PNG_MAX_SIDE;
}

dm_status dm_image_write_grid(const char *path, const float *x, int64_t n, int64_t c, int64_t h,
                              int64_t w, int cols, int pad, int scale, dm_error *err) {
    if (!path) return dm_error_set(err, DM_ERR_ARG, "dm_image_write_grid: no path given");
    if (!x || n < 1 || h < 1 || w < 1)
        return dm_error_set(err, DM_ERR_ARG, "%s: no images to write (n %lld, %lld x %lld)", path,
                            (long long)n, (long long)h, (long long)w);
    if (c != 1 && c != 3)
        return dm_error_set(err, DM_ERR_ARG, "%s: %lld channels; PNG images need 1 or 3", path,
                            (long long)c);
    if (cols < 1 || pad < 0 || scale < 1)
        return dm_error_set(err, DM_ERR_ARG,
                            "%s: grid of %d columns, padding %d, scale %d: need columns >= 1, "
                            "padding >= 0, scale >= 1",
                            path, cols, pad, scale);
    grid_layout g = {.x = x, .n = n, .c = c, .h = h, .w = w, .pad = pad, .scale = scale};
    g.cols = cols < n ? cols : n; /* no empty columns when there are few images */
    int64_t rows = (n + g.cols - 1) / g.cols;
    if (__builtin_mul_overflow(w, g.scale, &g.cell_w) ||
        __builtin_mul_overflow(h, g.scale, &g.cell_h) ||
        !side_ok(g.cols, g.cell_w, g.pad, &g.width) || !side_ok(rows, g.cell_h, g.pad, &g.height))
        return dm_error_set(err, DM_ERR_ARG,
                            "%s: %lld images of %lld x %lld in %lld columns at scale %d would be "
                            "larger than %d pixels a side",
                            path, (long long)n, (long long)h, (long long)w, (long long)g.cols,
                            scale, PNG_MAX_SIDE);

    uint8_t *row = malloc((size_t)(g.width * c));
    if (!row) return dm_error_set(err, DM_ERR_NOMEM, "%s: cannot allocate a row", path);
    dm_atomic_file af;
    dm_status st = dm_atomic_open(&af, path, err);
    if (st) {
        free(row);
        return st;
    }
    char msg[256] = "";
    int failed = encode(af.f, &g, row, msg);
    free(row);
    if (failed) {
        dm_atomic_abort(&af);
        return dm_error_set(err, DM_ERR_IO, "%s: PNG encoding failed: %s", path, msg);
    }
    return dm_atomic_commit(&af, err);
}

dm_status dm_image_write_png(const char *path, const float *x, int64_t c, int64_t h, int64_t w,
                             int scale, dm_error *err) {
    return dm_image_write_grid(path, x, 1, c, h, w, 1, 0, scale, err);
}
