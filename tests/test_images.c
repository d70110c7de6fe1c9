/* Image sets: IDX files (raw and gzipped, hostile headers, and the real Fashion-MNIST, which the
 * test requires: Debian package dataset-fashion-mnist), PNG output read back with stb_image,
 * image folders (crop, resize, channels, hflip, classes, errors) and NPY image arrays. */
#include "diffusion.h"
#include "io/npy.h"

#include "test_util.h"

#include <stb_image.h>
#include <stb_image_write.h>
#include <sys/stat.h>
#include <zlib.h>

#define PIXEL_TOL (1.0 / 127.5)

/* ---------------------------------------------------------------------------------------- */
/* Helpers                                                                                   */

static float from_u8(int v) { return (float)v / 127.5f - 1.0f; }

/* The documented writing convention, computed independently of the library. */
static int to_u8(double x) {
    x = x < -1 ? -1 : x > 1 ? 1 : x;
    return (int)floor((x + 1) * 127.5 + 0.5);
}

static void put_be32(uint8_t *b, uint32_t v) {
    b[0] = (uint8_t)(v >> 24), b[1] = (uint8_t)(v >> 16), b[2] = (uint8_t)(v >> 8);
    b[3] = (uint8_t)v;
}

/* An IDX file: magic, dims (big-endian), then len data bytes; gzipped when gz. */
static void write_idx(const char *path, int gz, uint32_t magic, const uint32_t *dims, int ndim,
                      const uint8_t *data, size_t len) {
    uint8_t head[16];
    put_be32(head, magic);
    for (int d = 0; d < ndim; d++) put_be32(head + 4 + 4 * d, dims[d]);
    size_t hlen = 4 + 4 * (size_t)ndim;
    if (gz) {
        gzFile f = gzopen(path, "wb");
        if (!f || gzwrite(f, head, (unsigned)hlen) != (int)hlen ||
            (len && gzwrite(f, data, (unsigned)len) != (int)len) || gzclose(f) != Z_OK) {
            fprintf(stderr, "cannot write %s\n", path);
            exit(1);
        }
    } else {
        FILE *f = fopen(path, "wb");
        if (!f || fwrite(head, 1, hlen, f) != hlen || (len && fwrite(data, 1, len, f) != len)) {
            perror(path);
            exit(1);
        }
        fclose(f);
    }
}

static void write_bytes(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f || (len && fwrite(data, 1, len, f) != len)) {
        perror(path);
        exit(1);
    }
    fclose(f);
}

static long file_size(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 ? (long)sb.st_size : -1;
}

/* A failed load whose message names `needle` (the file) and left nothing allocated. */
static void expect_error(const char *what, dm_status got, const dm_error *err, dm_status want,
                         const char *needle, const dm_image_set *s) {
    CHECK(got != DM_OK, "%s: should fail", what);
    if (want != DM_OK)
        CHECK(got == want, "%s: status %s, expected %s (%s)", what, dm_status_name(got),
              dm_status_name(want), err->msg);
    CHECK(strstr(err->msg, needle) != NULL, "%s: message should name %s: %s", what, needle,
          err->msg);
    if (s) CHECK(s->data.x == NULL && s->data.labels == NULL, "%s: nothing left allocated", what);
}

static void make_dir(const char *path) {
    if (mkdir(path, 0755) != 0) {
        perror(path);
        exit(1);
    }
}

/* Removes a folder and everything in it (the scratch folder holds subfolders here). */
static void remove_tree(const char *path) {
    DIR *d = opendir(path);
    if (!d) {
        remove(path);
        return;
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char child[1024];
        snprintf(child, sizeof child, "%s/%s", path, e->d_name);
        remove_tree(child);
    }
    closedir(d);
    rmdir(path);
}

/* ---------------------------------------------------------------------------------------- */
/* IDX                                                                                       */

#define IDX_N 5
#define IDX_H 3
#define IDX_W 4

static uint8_t idx_pixels[IDX_N * IDX_H * IDX_W];
static const uint8_t idx_labels[IDX_N] = {0, 3, 1, 2, 3};

static void write_small_idx(const char *images, const char *labels, int gz) {
    const uint32_t dims[3] = {IDX_N, IDX_H, IDX_W}, ldims[1] = {IDX_N};
    write_idx(images, gz, 0x803, dims, 3, idx_pixels, sizeof idx_pixels);
    if (labels) write_idx(labels, gz, 0x801, ldims, 1, idx_labels, sizeof idx_labels);
}

static void check_small_idx(const char *what, const dm_image_set *s, int labelled) {
    CHECK(s->data.n == IDX_N && s->c == 1 && s->h == IDX_H && s->w == IDX_W &&
              s->data.dim == IDX_H * IDX_W,
          "%s: shape %lld x %lld x %lld x %lld", what, (long long)s->data.n, (long long)s->c,
          (long long)s->h, (long long)s->w);
    if (s->data.n != IDX_N || s->data.dim != IDX_H * IDX_W) return;
    int exact = 1;
    for (int i = 0; i < IDX_N * IDX_H * IDX_W; i++) exact &= s->data.x[i] == from_u8(idx_pixels[i]);
    CHECK(exact, "%s: pixels are v / 127.5 - 1 exactly", what);
    if (labelled) {
        CHECK(s->data.labels != NULL && s->data.num_classes == 4, "%s: labels, %d classes", what,
              s->data.num_classes);
        for (int i = 0; s->data.labels && i < IDX_N; i++)
            CHECK(s->data.labels[i] == idx_labels[i], "%s: label %d = %d", what, i, s->data.labels[i]);
    } else {
        CHECK(s->data.labels == NULL && s->data.num_classes == 0, "%s: unlabelled", what);
    }
}

static void test_idx(void) {
    for (int i = 0; i < IDX_N * IDX_H * IDX_W; i++) idx_pixels[i] = (uint8_t)(i * 37 + 11);
    idx_pixels[0] = 0;
    idx_pixels[1] = 255;

    for (int gz = 0; gz < 2; gz++) {
        const char *images = tu_tmp_path(gz ? "img.idx3.gz" : "img.idx3");
        const char *labels = tu_tmp_path(gz ? "lab.idx1.gz" : "lab.idx1");
        write_small_idx(images, labels, gz);
        dm_image_set s;
        dm_error err = {0};
        CHECK(dm_idx_load(&s, images, labels, &err) == DM_OK, "idx load: %s", err.msg);
        check_small_idx(gz ? "gzipped idx" : "raw idx", &s, 1);
        dm_image_set_free(&s);
        CHECK(dm_idx_load(&s, images, NULL, &err) == DM_OK, "idx load: %s", err.msg);
        check_small_idx("idx without labels", &s, 0);
        dm_image_set_free(&s);
    }

    dm_image_set s;
    dm_error err = {0};
    char images[600], labels[600], bad[600]; /* tu_tmp_path's buffers rotate: keep copies */
    snprintf(images, sizeof images, "%s", tu_tmp_path("img.idx3"));
    snprintf(labels, sizeof labels, "%s", tu_tmp_path("lab.idx1"));
    snprintf(bad, sizeof bad, "%s", tu_tmp_path("bad.idx"));
    const uint32_t dims[3] = {IDX_N, IDX_H, IDX_W};

    /* a label file where images are expected, and the reverse */
    expect_error("labels as images", dm_idx_load(&s, labels, NULL, &err), &err, DM_ERR_FORMAT,
                 labels, &s);
    CHECK(strstr(err.msg, "magic") != NULL, "mentions the magic number: %s", err.msg);
    expect_error("images as labels", dm_idx_load(&s, images, images, &err), &err, DM_ERR_FORMAT,
                 images, &s);

    write_idx(bad, 0, 0x803, dims, 3, idx_pixels, sizeof idx_pixels - 7);
    expect_error("truncated data", dm_idx_load(&s, bad, NULL, &err), &err, DM_ERR_FORMAT, bad, &s);
    write_bytes(bad, "\0\0\x08\x03\0\0", 6);
    expect_error("truncated header", dm_idx_load(&s, bad, NULL, &err), &err, DM_ERR_FORMAT, bad,
                 &s);
    write_bytes(bad, "", 0);
    expect_error("empty file", dm_idx_load(&s, bad, NULL, &err), &err, DM_ERR_FORMAT, bad, &s);

    /* headers claiming far more than the file holds: refused without reading out of bounds */
    const uint32_t huge[3] = {1000000, 28, 28}, overflow[3] = {0xffffffffu, 0xffffffffu, 0xffffu};
    const uint32_t zero[3] = {IDX_N, 0, IDX_W};
    write_idx(bad, 0, 0x803, huge, 3, idx_pixels, sizeof idx_pixels);
    expect_error("header claims 784 MB", dm_idx_load(&s, bad, NULL, &err), &err, DM_ERR_FORMAT, bad,
                 &s);
    CHECK(strstr(err.msg, "truncated") != NULL, "says truncated: %s", err.msg);
    write_idx(bad, 1, 0x803, huge, 3, idx_pixels, sizeof idx_pixels);
    expect_error("gz header claims 784 MB", dm_idx_load(&s, bad, NULL, &err), &err, DM_ERR_FORMAT,
                 bad, &s);
    write_idx(bad, 0, 0x803, overflow, 3, idx_pixels, sizeof idx_pixels);
    expect_error("overflowing sizes", dm_idx_load(&s, bad, NULL, &err), &err, DM_ERR_FORMAT, bad,
                 &s);
    write_idx(bad, 0, 0x803, zero, 3, NULL, 0);
    expect_error("zero size", dm_idx_load(&s, bad, NULL, &err), &err, DM_ERR_FORMAT, bad, &s);

    /* more data than the header says */
    uint8_t longer[sizeof idx_pixels + 3] = {0};
    write_idx(bad, 0, 0x803, dims, 3, longer, sizeof longer);
    expect_error("trailing bytes", dm_idx_load(&s, bad, NULL, &err), &err, DM_ERR_FORMAT, bad, &s);

    /* a gzip stream cut short, and one with corrupt deflate data */
    const char *gz = tu_tmp_path("img.idx3.gz");
    long gz_size = file_size(gz);
    uint8_t gz_bytes[4096];
    FILE *f = fopen(gz, "rb");
    size_t got = f ? fread(gz_bytes, 1, sizeof gz_bytes, f) : 0;
    if (f) fclose(f);
    CHECK(gz_size > 20 && (long)got == gz_size, "read back the gzip file (%ld bytes)", gz_size);
    write_bytes(bad, gz_bytes, got - 12);
    expect_error("cut gzip", dm_idx_load(&s, bad, NULL, &err), &err, DM_ERR_FORMAT, bad, &s);
    write_bytes(bad, gz_bytes, got - 4);
    expect_error("gzip trailer cut", dm_idx_load(&s, bad, NULL, &err), &err, DM_ERR_FORMAT, bad,
                 &s);
    gz_bytes[got - 8] ^= 1;
    write_bytes(bad, gz_bytes, got);
    expect_error("gzip CRC wrong", dm_idx_load(&s, bad, NULL, &err), &err, DM_ERR_FORMAT, bad, &s);
    gz_bytes[got - 8] ^= 1;
    for (size_t i = 12; i < got - 8; i++) gz_bytes[i] ^= 0x5a;
    write_bytes(bad, gz_bytes, got);
    expect_error("corrupt gzip", dm_idx_load(&s, bad, NULL, &err), &err, DM_ERR_FORMAT, bad, &s);

    /* label count disagrees with the images */
    const uint32_t four[1] = {IDX_N - 1};
    write_idx(bad, 1, 0x801, four, 1, idx_labels, IDX_N - 1);
    expect_error("label count", dm_idx_load(&s, images, bad, &err), &err, DM_ERR_MISMATCH, bad,
                 &s);

    const char *missing = tu_tmp_path("missing.idx");
    expect_error("missing file", dm_idx_load(&s, missing, NULL, &err), &err, DM_ERR_IO, missing,
                 &s);
    expect_error("a folder", dm_idx_load(&s, tu_tmpdir(), NULL, &err), &err, DM_ERR_IO,
                 tu_tmpdir(), &s);
}

/* Fashion-MNIST's loader on a folder laid out like Debian's, then the real thing if installed */
static void test_fashion_mnist(void) {
    char dir[600];
    snprintf(dir, sizeof dir, "%s", tu_tmp_path("fmnist"));
    make_dir(dir);
    char images[700], labels[700];
    snprintf(images, sizeof images, "%s/t10k-images-idx3-ubyte", dir);
    snprintf(labels, sizeof labels, "%s/t10k-labels-idx1-ubyte.gz", dir);
    write_small_idx(images, NULL, 0);
    const uint32_t ldims[1] = {IDX_N};
    write_idx(labels, 1, 0x801, ldims, 1, idx_labels, IDX_N);
    dm_image_set s;
    dm_error err = {0};
    CHECK(dm_fashion_mnist_load(&s, dir, "test", &err) == DM_OK, "small test split: %s", err.msg);
    CHECK(s.data.num_classes == 10, "Fashion-MNIST has 10 classes even if a split misses some: %d",
          s.data.num_classes);
    s.data.num_classes = 4;
    check_small_idx("fashion-mnist layout", &s, 1);
    dm_image_set_free(&s);
    expect_error("missing split files", dm_fashion_mnist_load(&s, dir, "train", &err), &err,
                 DM_ERR_IO, dir, &s);
    expect_error("unknown split", dm_fashion_mnist_load(&s, dir, "valid", &err), &err, DM_ERR_ARG,
                 "valid", &s);
    const uint8_t label_twelve[IDX_N] = {0, 1, 12, 2, 3};
    write_idx(labels, 1, 0x801, ldims, 1, label_twelve, IDX_N);
    expect_error("label 12", dm_fashion_mnist_load(&s, dir, "test", &err), &err, DM_ERR_FORMAT,
                 labels, &s);
    remove_tree(dir);

    struct stat sb;
    /* the real data set is this test's reference: missing, it fails (never skips) */
    const int installed = stat(DM_FASHION_MNIST_DIR, &sb) == 0;
    CHECK(installed, "%s is missing: install the Debian package dataset-fashion-mnist "
                     "(scripts/install-deps.sh does)",
          DM_FASHION_MNIST_DIR);
    if (!installed) return;
    const char *splits[2] = {"train", "test"};
    const int64_t sizes[2] = {60000, 10000};
    for (int k = 0; k < 2; k++) {
        CHECK(dm_fashion_mnist_load(&s, NULL, splits[k], &err) == DM_OK, "%s: %s", splits[k],
              err.msg);
        if (!s.data.x) continue;
        CHECK(s.data.n == sizes[k] && s.c == 1 && s.h == 28 && s.w == 28 && s.data.dim == 784,
              "%s: %lld x %lld x %lld x %lld", splits[k], (long long)s.data.n, (long long)s.c,
              (long long)s.h, (long long)s.w);
        CHECK(s.data.labels && s.data.num_classes == 10, "%s: 10 classes", splits[k]);
        int64_t per_class[10] = {0}, bad_labels = 0;
        for (int64_t i = 0; s.data.labels && i < s.data.n; i++) {
            if (s.data.labels[i] < 0 || s.data.labels[i] > 9) bad_labels++;
            else per_class[s.data.labels[i]]++;
        }
        CHECK(bad_labels == 0, "%s: %lld labels outside 0..9", splits[k], (long long)bad_labels);
        for (int c = 0; c < 10; c++)
            CHECK(per_class[c] == sizes[k] / 10, "%s: class %d has %lld images", splits[k], c,
                  (long long)per_class[c]);
        float lo = 1, hi = -1;
        for (int64_t i = 0; i < s.data.n * s.data.dim; i++) {
            lo = fminf(lo, s.data.x[i]);
            hi = fmaxf(hi, s.data.x[i]);
        }
        CHECK(lo == -1.0f && hi == 1.0f, "%s: pixels span [%g, %g]", splits[k], lo, hi);
        dm_image_set_free(&s);
    }
}

/* ---------------------------------------------------------------------------------------- */
/* PNG output                                                                                */

static void test_png(void) {
    /* one RGB image at scale 2, with values beyond [-1, 1] to be clipped */
    enum { C = 3, H = 5, W = 7, S = 2 };
    float img[C * H * W];
    for (int i = 0; i < C * H * W; i++) img[i] = -1.2f + 2.4f * (float)((i * 29) % 83) / 82.0f;
    img[3] = NAN;
    const char *path = tu_tmp_path("one.png");
    dm_error err = {0};
    CHECK(dm_image_write_png(path, img, C, H, W, S, &err) == DM_OK, "write png: %s", err.msg);
    int w, h, comp;
    uint8_t *px = stbi_load(path, &w, &h, &comp, 0);
    CHECK(px && w == W * S && h == H * S && comp == C, "read back %d x %d x %d", w, h, comp);
    if (px && w == W * S && h == H * S && comp == C) {
        int exact = 1, close = 1;
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
                for (int c = 0; c < C; c++) {
                    float v = img[(c * H + y / S) * W + x / S];
                    int got = px[(y * w + x) * C + c];
                    if (isnan(v)) {
                        exact &= got == 0;
                        continue;
                    }
                    exact &= got == to_u8(v);
                    close &= fabs(from_u8(got) - fmax(-1, fmin(1, v))) <= PIXEL_TOL;
                }
        CHECK(exact, "pixels are round((clip(x) + 1) * 127.5), NaN as 0");
        CHECK(close, "pixels round-trip within 1/127.5");
    }
    stbi_image_free(px);

    /* a grid: 5 grey images in 3 columns, 2 pixels of padding */
    enum { N = 5, GH = 3, GW = 4, COLS = 3, PAD = 2 };
    float grid[N * GH * GW];
    for (int k = 0; k < N; k++)
        for (int i = 0; i < GH * GW; i++) grid[k * GH * GW + i] = -0.9f + 0.3f * k + 0.01f * i;
    const char *gpath = tu_tmp_path("grid.png");
    CHECK(dm_image_write_grid(gpath, grid, N, 1, GH, GW, COLS, PAD, 1, &err) == DM_OK,
          "write grid: %s", err.msg);
    px = stbi_load(gpath, &w, &h, &comp, 0);
    const int want_w = PAD + COLS * (GW + PAD), want_h = PAD + 2 * (GH + PAD);
    CHECK(px && w == want_w && h == want_h && comp == 1, "grid %d x %d x %d, expected %d x %d",
          w, h, comp, want_w, want_h);
    if (px && w == want_w && h == want_h && comp == 1) {
        int cells_ok = 1, background = 0, background_ok = 1;
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                int r = (y - PAD) / (GH + PAD), q = (x - PAD) / (GW + PAD);
                int iy = (y - PAD) % (GH + PAD), ix = (x - PAD) % (GW + PAD);
                int k = r * COLS + q, got = px[y * w + x];
                if (y >= PAD && x >= PAD && iy < GH && ix < GW && k < N) {
                    cells_ok &= got == to_u8(grid[(k * GH + iy) * GW + ix]);
                } else {
                    background++;
                    background_ok &= got == 128;
                }
            }
        CHECK(cells_ok, "image k is drawn in row k / cols, column k %% cols");
        CHECK(background_ok && background == w * h - N * GH * GW,
              "padding and the empty cell are mid-grey (%d background pixels)", background);
    }
    stbi_image_free(px);

    /* more columns than images: the grid shrinks to the images */
    CHECK(dm_image_write_grid(gpath, grid, 2, 1, GH, GW, 8, 1, 3, &err) == DM_OK, "%s", err.msg);
    CHECK(stbi_info(gpath, &w, &h, &comp) && w == 1 + 2 * (3 * GW + 1) && h == 1 + 3 * GH + 1,
          "2 images in 8 columns: %d x %d", w, h);

    /* bad arguments leave the existing file alone */
    long before = file_size(gpath);
    expect_error("2 channels", dm_image_write_grid(gpath, grid, 1, 2, GH, GW, 1, 0, 1, &err), &err,
                 DM_ERR_ARG, gpath, NULL);
    expect_error("scale 0", dm_image_write_png(gpath, grid, 1, GH, GW, 0, &err), &err, DM_ERR_ARG,
                 gpath, NULL);
    expect_error("too wide", dm_image_write_grid(gpath, grid, 1, 1, GH, 600000, 1, 0, 2, &err),
                 &err, DM_ERR_ARG, gpath, NULL);
    CHECK(file_size(gpath) == before, "existing file untouched");
    const char *nowhere = "/nonexistent-dir-for-dm-tests/x.png";
    expect_error("unwritable folder", dm_image_write_png(nowhere, img, C, H, W, 1, &err), &err,
                 DM_ERR_IO, "/nonexistent-dir-for-dm-tests/x.png", NULL);

    /* nothing but finished files in the folder: temporaries were renamed or removed */
    DIR *d = opendir(tu_tmpdir());
    int temporaries = 0;
    for (struct dirent *e; d && (e = readdir(d));) temporaries += strstr(e->d_name, ".tmp") != 0;
    if (d) closedir(d);
    CHECK(temporaries == 0, "%d temporary files left behind", temporaries);
}

/* ---------------------------------------------------------------------------------------- */
/* Image folders                                                                             */

static const char *folder_path(const char *dir, const char *name) {
    static char buf[4][1024];
    static int k = 0;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

/* a.png: 16 x 16 RGB ramp; b.PNG: 24 x 12 white centre square with black sides; c.jpg: 10 x 20
 * solid colour; plus a hidden file and a text file that must be ignored. */
static uint8_t ramp[16 * 16 * 3];
static const uint8_t jpg_colour[3] = {200, 100, 50};

static void write_flat_folder(const char *dir) {
    make_dir(dir);
    for (int y = 0; y < 16; y++)
        for (int x = 0; x < 16; x++)
            for (int c = 0; c < 3; c++)
                ramp[(y * 16 + x) * 3 + c] = (uint8_t)(x * 15 + y * 3 + c * 20);
    CHECK(stbi_write_png(folder_path(dir, "a.png"), 16, 16, 3, ramp, 16 * 3), "write a.png");
    uint8_t wide[12 * 24 * 3];
    for (int y = 0; y < 12; y++)
        for (int x = 0; x < 24; x++)
            for (int c = 0; c < 3; c++) wide[(y * 24 + x) * 3 + c] = x >= 6 && x < 18 ? 255 : 0;
    CHECK(stbi_write_png(folder_path(dir, "b.PNG"), 24, 12, 3, wide, 24 * 3), "write b.PNG");
    uint8_t tall[20 * 10 * 3];
    for (int i = 0; i < 20 * 10; i++) memcpy(tall + 3 * i, jpg_colour, 3);
    CHECK(stbi_write_jpg(folder_path(dir, "c.jpg"), 10, 20, 3, tall, 95), "write c.jpg");
    write_bytes(folder_path(dir, ".hidden.png"), "not an image", 12);
    write_bytes(folder_path(dir, "notes.txt"), "hello", 5);
}

static void write_grey_png(const char *path, int w, int h, uint8_t base) {
    uint8_t px[64 * 64];
    for (int i = 0; i < w * h; i++) px[i] = (uint8_t)(base + i);
    CHECK(stbi_write_png(path, w, h, 1, px, w), "write %s", path);
}

static void test_folder(void) {
    char flat[600];
    snprintf(flat, sizeof flat, "%s", tu_tmp_path("flat"));
    write_flat_folder(flat);
    dm_image_folder_options opt;
    dm_image_folder_options_default(&opt);
    CHECK(opt.size == 0 && opt.channels == 0 && opt.hflip == 0, "defaults");
    dm_image_set s, m;
    dm_error err = {0};

    opt.size = 8;
    CHECK(dm_image_folder_load(&s, flat, &opt, &err) == DM_OK, "flat folder: %s", err.msg);
    CHECK(s.data.n == 3 && s.c == 3 && s.h == 8 && s.w == 8 && s.data.dim == 192 && !s.data.labels &&
              s.data.num_classes == 0,
          "flat: %lld x %lld x %lld x %lld", (long long)s.data.n, (long long)s.c, (long long)s.h,
          (long long)s.w);
    if (s.data.n == 3 && s.data.dim == 192) {
        /* a.png: 16 -> 8 averages 2 x 2 blocks; orientation and channel order preserved */
        int ramp_ok = 1, white = 1, colour_ok = 1;
        for (int c = 0; c < 3; c++)
            for (int y = 0; y < 8; y++)
                for (int x = 0; x < 8; x++) {
                    double sum = 0;
                    for (int dy = 0; dy < 2; dy++)
                        for (int dx = 0; dx < 2; dx++)
                            sum += ramp[((2 * y + dy) * 16 + 2 * x + dx) * 3 + c];
                    ramp_ok &= fabs(s.data.x[(c * 8 + y) * 8 + x] - from_u8(0) -
                                    sum / 4 / 127.5) <= PIXEL_TOL;
                    white &= s.data.x[192 + (c * 8 + y) * 8 + x] == 1.0f;
                    colour_ok &= fabs(s.data.x[384 + (c * 8 + y) * 8 + x] -
                                      from_u8(jpg_colour[c])) <= 3 * PIXEL_TOL;
                }
        CHECK(ramp_ok, "16 x 16 -> 8 x 8 is the 2 x 2 average");
        CHECK(white, "wide image: the centre square (white) is kept, the black sides cropped");
        CHECK(colour_ok, "JPEG colour survives within 3/127.5");
    }

    opt.hflip = 1;
    CHECK(dm_image_folder_load(&m, flat, &opt, &err) == DM_OK, "hflip: %s", err.msg);
    CHECK(m.data.n == 6 && m.data.dim == 192, "hflip doubles n: %lld", (long long)m.data.n);
    if (m.data.n == 6 && s.data.n == 3) {
        int same = !memcmp(m.data.x, s.data.x, 3 * 192 * sizeof(float)), mirrored = 1;
        for (int k = 0; k < 3; k++)
            for (int row = 0; row < 3 * 8; row++)
                for (int x = 0; x < 8; x++)
                    mirrored &= m.data.x[(3 + k) * 192 + row * 8 + x] ==
                                s.data.x[k * 192 + row * 8 + 7 - x];
        CHECK(same, "originals first, unchanged");
        CHECK(mirrored, "image 3 + k is image k mirrored left to right");
    }
    dm_image_set_free(&m);

    /* RGB -> grey: stb's luminance (77 R + 150 G + 29 B) / 256 */
    opt.hflip = 0;
    opt.channels = 1;
    CHECK(dm_image_folder_load(&m, flat, &opt, &err) == DM_OK, "grey: %s", err.msg);
    CHECK(m.data.n == 3 && m.c == 1 && m.data.dim == 64, "grey: c = %lld", (long long)m.c);
    if (m.data.dim == 64) {
        double luma = (77 * jpg_colour[0] + 150 * jpg_colour[1] + 29 * jpg_colour[2]) / 256.0;
        CHECK_CLOSE(m.data.x[64 + 27], 1.0, 0, 0, "white stays white in grey");
        CHECK_CLOSE(m.data.x[128 + 27], luma / 127.5 - 1, 3 * PIXEL_TOL, 0, "JPEG luminance");
    }
    dm_image_set_free(&m);
    dm_image_set_free(&s);

    /* mixed sizes need a size */
    opt.size = 0;
    opt.channels = 0;
    expect_error("mixed sizes", dm_image_folder_load(&s, flat, &opt, &err), &err, DM_ERR_MISMATCH,
                 "b.PNG", &s);

    /* grey images: kept as stored with size 0 (no crop), grey -> RGB copies the value */
    char grey[600];
    snprintf(grey, sizeof grey, "%s", tu_tmp_path("grey"));
    make_dir(grey);
    write_grey_png(folder_path(grey, "g1.png"), 5, 6, 10);
    write_grey_png(folder_path(grey, "g2.png"), 5, 6, 90);
    CHECK(dm_image_folder_load(&s, grey, &opt, &err) == DM_OK, "grey folder: %s", err.msg);
    CHECK(s.data.n == 2 && s.c == 1 && s.h == 6 && s.w == 5, "grey: %lld x %lld x %lld",
          (long long)s.c, (long long)s.h, (long long)s.w);
    if (s.data.n == 2 && s.data.dim == 30)
        CHECK(s.data.x[30 + 7] == from_u8(97), "pixel (1, 2) of g2 exactly: %g", s.data.x[37]);
    opt.channels = 3;
    CHECK(dm_image_folder_load(&m, grey, &opt, &err) == DM_OK, "grey -> RGB: %s", err.msg);
    CHECK(m.data.n == 2 && m.c == 3 && m.data.dim == 90, "grey -> RGB: c = %lld", (long long)m.c);
    if (m.data.dim == 90 && s.data.dim == 30) {
        int copies = 1;
        for (int k = 0; k < 2; k++)
            for (int c = 0; c < 3; c++)
                copies &= !memcmp(m.data.x + k * 90 + c * 30, s.data.x + k * 30,
                                  30 * sizeof(float));
        CHECK(copies, "grey -> RGB: each channel is the grey image");
    }
    dm_image_set_free(&m);
    dm_image_set_free(&s);

    /* a colour image among grey ones, with channels from the first image */
    opt.channels = 0;
    uint8_t rgb[5 * 6 * 3] = {0};
    CHECK(stbi_write_png(folder_path(grey, "g3.png"), 5, 6, 3, rgb, 15), "write g3.png");
    expect_error("grey and colour", dm_image_folder_load(&s, grey, &opt, &err), &err,
                 DM_ERR_MISMATCH, "g3.png", &s);
    opt.channels = 1;
    CHECK(dm_image_folder_load(&s, grey, &opt, &err) == DM_OK, "converted: %s", err.msg);
    CHECK(s.data.n == 3 && s.c == 1, "three grey images");
    dm_image_set_free(&s);

    /* an undecodable .png, last and first in sorted order */
    write_bytes(folder_path(grey, "z.png"), "\x89PNG garbage garbage", 20);
    expect_error("garbage png", dm_image_folder_load(&s, grey, &opt, &err), &err, DM_ERR_FORMAT,
                 "z.png", &s);
    write_bytes(folder_path(grey, "0.png"), "garbage", 7);
    expect_error("garbage png first", dm_image_folder_load(&s, grey, &opt, &err), &err,
                 DM_ERR_FORMAT, "0.png", &s);

    /* empty, image-less and missing folders */
    char empty[600];
    snprintf(empty, sizeof empty, "%s", tu_tmp_path("empty"));
    make_dir(empty);
    expect_error("empty folder", dm_image_folder_load(&s, empty, NULL, &err), &err, DM_ERR_FORMAT,
                 empty, &s);
    write_bytes(folder_path(empty, "readme.txt"), "x", 1);
    write_bytes(folder_path(empty, ".x.png"), "x", 1);
    expect_error("no images", dm_image_folder_load(&s, empty, NULL, &err), &err, DM_ERR_FORMAT,
                 empty, &s);
    const char *missing = tu_tmp_path("no-such-folder");
    expect_error("missing folder", dm_image_folder_load(&s, missing, NULL, &err), &err, DM_ERR_IO,
                 missing, &s);

    /* class subfolders: sorted names give labels; hidden folders are skipped */
    char classes[600];
    snprintf(classes, sizeof classes, "%s", tu_tmp_path("classes"));
    make_dir(classes);
    make_dir(folder_path(classes, "cat"));
    make_dir(folder_path(classes, "dog"));
    make_dir(folder_path(classes, ".git"));
    write_grey_png(folder_path(classes, "dog/d1.png"), 4, 4, 200);
    write_grey_png(folder_path(classes, "cat/c2.png"), 4, 4, 100);
    write_grey_png(folder_path(classes, "cat/c1.png"), 4, 4, 0);
    write_grey_png(folder_path(classes, ".git/x.png"), 4, 4, 0);
    opt.channels = 0;
    opt.hflip = 1;
    CHECK(dm_image_folder_load(&s, classes, &opt, &err) == DM_OK, "classes: %s", err.msg);
    CHECK(s.data.n == 6 && s.data.num_classes == 2 && s.data.labels, "classes: n %lld, %d classes",
          (long long)s.data.n, s.data.num_classes);
    const int32_t want_labels[6] = {0, 0, 1, 0, 0, 1};
    for (int i = 0; s.data.labels && i < 6 && s.data.n == 6; i++)
        CHECK(s.data.labels[i] == want_labels[i], "label %d = %d", i, s.data.labels[i]);
    if (s.data.n == 6)
        CHECK(s.data.x[0] == from_u8(0) && s.data.x[16] == from_u8(100) &&
                  s.data.x[32] == from_u8(200),
              "cat/c1, cat/c2, dog/d1 in that order");
    dm_image_set_free(&s);
    make_dir(folder_path(classes, "eel"));
    expect_error("empty class folder", dm_image_folder_load(&s, classes, &opt, &err), &err,
                 DM_ERR_FORMAT, "eel", &s);

    opt.size = -1;
    expect_error("size -1", dm_image_folder_load(&s, flat, &opt, &err), &err, DM_ERR_ARG, "size",
                 &s);
    opt.size = 0;
    opt.channels = 2;
    expect_error("2 channels", dm_image_folder_load(&s, flat, &opt, &err), &err, DM_ERR_ARG,
                 "channels", &s);

    remove_tree(flat);
    remove_tree(grey);
    remove_tree(empty);
    remove_tree(classes);
}

/* ---------------------------------------------------------------------------------------- */
/* NPY                                                                                       */

static void test_npy(void) {
    dm_image_set s;
    dm_error err = {0};
    const char *path = tu_tmp_path("img.npy");

    /* uint8 (n, h, w) -> grey images */
    uint8_t u8[2 * 3 * 4];
    for (int i = 0; i < 24; i++) u8[i] = (uint8_t)(i * 11);
    const int64_t shape3[3] = {2, 3, 4};
    CHECK(dm_npy_write(path, DM_DTYPE_U8, u8, shape3, 3, &err) == DM_OK, "%s", err.msg);
    CHECK(dm_image_npy_load(&s, path, &err) == DM_OK, "uint8 npy: %s", err.msg);
    CHECK(s.data.n == 2 && s.c == 1 && s.h == 3 && s.w == 4 && s.data.dim == 12 && !s.data.labels,
          "uint8 (2, 3, 4)");
    int exact = s.data.n == 2;
    for (int i = 0; exact && i < 24; i++) exact &= s.data.x[i] == from_u8(u8[i]);
    CHECK(exact, "uint8 values scaled exactly");
    dm_image_set_free(&s);

    /* float32 (n, c, h, w) taken as it is */
    float f32[2 * 3 * 2 * 2];
    for (int i = 0; i < 24; i++) f32[i] = -1.0f + (float)i / 11.5f;
    const int64_t shape4[4] = {2, 3, 2, 2};
    CHECK(dm_npy_write_f32(path, f32, shape4, 4, &err) == DM_OK, "%s", err.msg);
    CHECK(dm_image_npy_load(&s, path, &err) == DM_OK, "float32 npy: %s", err.msg);
    CHECK(s.data.n == 2 && s.c == 3 && s.h == 2 && s.w == 2 && s.data.dim == 12,
          "float32 (2, 3, 2, 2)");
    CHECK(s.data.n == 2 && !memcmp(s.data.x, f32, sizeof f32), "float32 values unchanged");
    dm_image_set_free(&s);

    double f64[24];
    for (int i = 0; i < 24; i++) f64[i] = f32[i];
    CHECK(dm_npy_write(path, DM_DTYPE_F64, f64, shape4, 4, &err) == DM_OK, "%s", err.msg);
    CHECK(dm_image_npy_load(&s, path, &err) == DM_OK, "float64 npy: %s", err.msg);
    CHECK(s.data.n == 2 && !memcmp(s.data.x, f32, sizeof f32), "float64 values to float32");
    dm_image_set_free(&s);

    /* save as uint8, load back within 1/127.5 (after clipping) */
    float img[2 * 3 * 4 * 5];
    for (int i = 0; i < 120; i++) img[i] = -1.1f + 2.2f * (float)((i * 7) % 120) / 119.0f;
    const char *saved = tu_tmp_path("saved.npy");
    CHECK(dm_image_npy_save(saved, img, 2, 3, 4, 5, &err) == DM_OK, "save: %s", err.msg);
    dm_npy arr;
    CHECK(dm_npy_read(&arr, saved, &err) == DM_OK, "raw read: %s", err.msg);
    CHECK(arr.dtype == DM_DTYPE_U8 && arr.ndim == 4 && arr.shape[0] == 2 && arr.shape[1] == 3 &&
              arr.shape[2] == 4 && arr.shape[3] == 5,
          "saved as uint8 (2, 3, 4, 5)");
    dm_npy_free(&arr);
    CHECK(dm_image_npy_load(&s, saved, &err) == DM_OK, "load saved: %s", err.msg);
    CHECK(s.data.n == 2 && s.c == 3 && s.h == 4 && s.w == 5, "saved shape");
    int close = s.data.n == 2;
    for (int i = 0; close && i < 120; i++)
        close &= fabs(s.data.x[i] - fmax(-1, fmin(1, img[i]))) <= PIXEL_TOL &&
                 s.data.x[i] == from_u8(to_u8(img[i]));
    CHECK(close, "save/load round trip within 1/127.5");
    dm_image_set_free(&s);

    /* refused arrays, each named */
    float wide_range[24];
    for (int i = 0; i < 24; i++) wide_range[i] = (float)(i * 10);
    CHECK(dm_npy_write_f32(path, wide_range, shape4, 4, &err) == DM_OK, "%s", err.msg);
    expect_error("floats in 0..230", dm_image_npy_load(&s, path, &err), &err, DM_ERR_FORMAT, path,
                 &s);
    f32[5] = NAN;
    CHECK(dm_npy_write_f32(path, f32, shape4, 4, &err) == DM_OK, "%s", err.msg);
    expect_error("NaN", dm_image_npy_load(&s, path, &err), &err, DM_ERR_NUMERIC, path, &s);
    const int64_t two_channels[4] = {2, 2, 3, 2};
    CHECK(dm_npy_write(path, DM_DTYPE_U8, u8, two_channels, 4, &err) == DM_OK, "%s", err.msg);
    expect_error("2 channels", dm_image_npy_load(&s, path, &err), &err, DM_ERR_FORMAT, path, &s);
    const int64_t flat2[2] = {4, 6};
    CHECK(dm_npy_write(path, DM_DTYPE_U8, u8, flat2, 2, &err) == DM_OK, "%s", err.msg);
    expect_error("2-D", dm_image_npy_load(&s, path, &err), &err, DM_ERR_FORMAT, path, &s);
    const int64_t empty[3] = {0, 3, 4};
    CHECK(dm_npy_write(path, DM_DTYPE_U8, u8, empty, 3, &err) == DM_OK, "%s", err.msg);
    expect_error("no images", dm_image_npy_load(&s, path, &err), &err, DM_ERR_FORMAT, path, &s);
    const int64_t six[3] = {1, 2, 3}; /* 6 int32 = the 24 bytes of u8 */
    CHECK(dm_npy_write(path, DM_DTYPE_I32, u8, six, 3, &err) == DM_OK, "%s", err.msg);
    expect_error("int32", dm_image_npy_load(&s, path, &err), &err, DM_ERR_FORMAT, path, &s);
    expect_error("save 2 channels", dm_image_npy_save(saved, img, 2, 2, 3, 5, &err), &err,
                 DM_ERR_ARG, saved, NULL);
}

int main(void) {
    if (tu_tmpdir_make("images")) return 1;
    test_idx();
    test_fashion_mnist();
    test_png();
    test_folder();
    test_npy();
    tu_tmpdir_remove();
    return tu_finish("test_images");
}
