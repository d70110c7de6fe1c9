/* Plots: each PNG is read back and checked for size, content and the placement of the points;
 * bad arguments and unwritable paths fail cleanly without leaving files behind. */
#include "diffusion.h"
#include "test_util.h"

#include <cairo.h>
#include <dirent.h>
#include <stdint.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

/* Fontconfig keeps a few hundred bytes from parsing its configuration until exit, beyond the
 * reach of cairo_debug_reset_static_data; LeakSanitizer (in sanitizer builds) reads this hook. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libfontconfig.so\n"; }

/* ---- reading pictures back ---- */

typedef struct {
    cairo_surface_t *s;
    int w, h, stride;
    const unsigned char *px;
} picture;

static int load(picture *p, const char *path, int want_w, int want_h) {
    p->s = cairo_image_surface_create_from_png(path);
    cairo_status_t st = cairo_surface_status(p->s);
    CHECK(st == CAIRO_STATUS_SUCCESS, "%s: %s", path, cairo_status_to_string(st));
    if (st != CAIRO_STATUS_SUCCESS) {
        cairo_surface_destroy(p->s);
        return 0;
    }
    p->w = cairo_image_surface_get_width(p->s);
    p->h = cairo_image_surface_get_height(p->s);
    p->stride = cairo_image_surface_get_stride(p->s);
    p->px = cairo_image_surface_get_data(p->s);
    CHECK(p->w == want_w && p->h == want_h, "%s: %dx%d, expected %dx%d", path, p->w, p->h, want_w,
          want_h);
    return 1;
}

/* 8-bit r, g, b of a pixel (the pictures are opaque, so premultiplication changes nothing) */
static void rgb_at(const picture *p, int x, int y, int *r, int *g, int *b) {
    uint32_t v;
    memcpy(&v, p->px + (size_t)y * p->stride + (size_t)x * 4, 4);
    *r = (v >> 16) & 255;
    *g = (v >> 8) & 255;
    *b = v & 255;
}

/* steel blue dots, alone or blended over white or grey: clearly more blue than red */
static int is_blue(int r, int g, int b) { return b - r > 40 && b > 120; }

static int64_t count_non_white(const picture *p) {
    int64_t c = 0;
    for (int y = 0; y < p->h; y++)
        for (int x = 0; x < p->w; x++) {
            int r, g, b;
            rgb_at(p, x, y, &r, &g, &b);
            c += r < 230 || g < 230 || b < 230;
        }
    return c;
}

/* Centroid of the blue pixels in [x0, x1) x [y0, y1); returns their count. */
static int64_t blue_centroid(const picture *p, int x0, int x1, int y0, int y1, double *cx,
                             double *cy) {
    int64_t c = 0;
    double sx = 0, sy = 0;
    for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++) {
            int r, g, b;
            rgb_at(p, x, y, &r, &g, &b);
            if (is_blue(r, g, b)) {
                c++;
                sx += x;
                sy += y;
            }
        }
    *cx = c ? sx / c : NAN;
    *cy = c ? sy / c : NAN;
    return c;
}

/* no file in the test folder has a temporary name left by an atomic write */
static void check_no_temporaries(const char *when) {
    DIR *d = opendir(tu_tmpdir());
    struct dirent *e;
    while (d && (e = readdir(d)))
        CHECK(!strstr(e->d_name, ".tmp."), "%s: temporary %s left behind", when, e->d_name);
    if (d) closedir(d);
}

/* ---- scatter ---- */

static void test_scatter(void) {
    /* data uniform on [-2, 2] x [-1, 1] (wider than high, so equal aspect is visible); samples
     * in three tight clusters (the top-right quadrant, where the legend sits, is left empty),
     * plus far outliers and a NaN that must not move the axes */
    const int64_t nd = 5000, per = 1500, ns = 3 * per + 11;
    const double cx[3] = {-0.6, 0.6, -0.6}, cy[3] = {-0.6, -0.6, 0.6};
    float *data = malloc(nd * 2 * sizeof *data), *s = malloc(ns * 2 * sizeof *s);
    dm_rng r;
    dm_rng_init(&r, 3, 0);
    dm_rng_uniform(&r, data, nd * 2);
    for (int64_t i = 0; i < nd * 2; i++) data[i] = (i % 2 ? 2 : 4) * data[i] - (i % 2 ? 1 : 2);
    dm_rng_normal(&r, s, ns * 2);
    for (int64_t i = 0; i < 3 * per; i++) {
        s[2 * i] = (float)cx[i / per] + 0.02f * s[2 * i];
        s[2 * i + 1] = (float)cy[i / per] + 0.02f * s[2 * i + 1];
    }
    for (int64_t i = 3 * per; i < ns - 1; i++) s[2 * i] = s[2 * i + 1] = 1000.0f; /* 0.1% */
    s[2 * (ns - 1)] = NAN;

    dm_error err = {0};
    dm_status st =
        dm_plot_scatter(tu_tmp_path("scatter.png"), data, nd, s, ns, 2, "three clusters", &err);
    CHECK(st == DM_OK, "scatter: %s", err.msg);
    picture p;
    if (st == DM_OK && load(&p, tu_tmp_path("scatter.png"), 800, 800)) {
        CHECK(count_non_white(&p) > 20000, "scatter is nearly blank");
        /* quadrants about the image centre: the plot box is roughly centred and the clusters
         * sit about 90 px from its centre on each axis, so each quadrant holds one cluster */
        double ll[2], lr[2], ul[2];
        int64_t nll = blue_centroid(&p, 0, 400, 400, 800, &ll[0], &ll[1]);
        int64_t nlr = blue_centroid(&p, 400, 800, 400, 800, &lr[0], &lr[1]);
        int64_t nul = blue_centroid(&p, 0, 400, 0, 400, &ul[0], &ul[1]);
        CHECK(nll > 300 && nlr > 300 && nul > 300, "cluster pixels: %lld %lld %lld",
              (long long)nll, (long long)nlr, (long long)nul);
        /* clusters at equal data y (or x) land on the same pixel row (column): the centroid of
         * 1500 points with a 5 px spread moves by ~0.1 px, allow 2 px */
        CHECK(fabs(ll[1] - lr[1]) <= 2, "same y, rows %.1f and %.1f", ll[1], lr[1]);
        CHECK(fabs(ll[0] - ul[0]) <= 2, "same x, columns %.1f and %.1f", ll[0], ul[0]);
        /* x grows to the right, y upwards; the outliers did not shrink 1.2 data units (about
         * 175 px for a range of ~4.8 units over 700 px) */
        CHECK(lr[0] - ll[0] > 130, "x separation %.1f px", lr[0] - ll[0]);
        CHECK(ll[1] - ul[1] > 130, "y separation %.1f px (y must point up)", ll[1] - ul[1]);
        /* equal aspect: a data unit is as long across as up, to a pixel or two of rounding */
        CHECK(fabs((lr[0] - ll[0]) - (ll[1] - ul[1])) <= 3, "aspect %.1f vs %.1f",
              lr[0] - ll[0], ll[1] - ul[1]);
        /* the pixel where (0.6, -0.6) projects, predicted from the other two clusters, is blue;
         * the one where the origin projects (no cluster there) is not */
        double scale = (ll[1] - ul[1]) / 1.2;
        int rr, gg, bb;
        rgb_at(&p, (int)lround(ll[0] + 1.2 * scale), (int)lround(ll[1]), &rr, &gg, &bb);
        CHECK(is_blue(rr, gg, bb), "cluster at (0.6, -0.6) pixel is %d,%d,%d", rr, gg, bb);
        rgb_at(&p, (int)lround(ll[0] + 0.6 * scale), (int)lround(ll[1] - 0.6 * scale), &rr, &gg,
               &bb);
        CHECK(!is_blue(rr, gg, bb), "origin pixel is blue (%d,%d,%d)", rr, gg, bb);
        /* the data appear as grey dots */
        int64_t grey = 0;
        for (int y = 0; y < p.h; y++)
            for (int x = 0; x < p.w; x++) {
                rgb_at(&p, x, y, &rr, &gg, &bb);
                grey += rr == gg && gg == bb && rr > 150 && rr < 215;
            }
        CHECK(grey > 2000, "only %lld grey data pixels", (long long)grey);
        cairo_surface_destroy(p.s);
    }

    /* no data, and no title: samples alone */
    st = dm_plot_scatter(tu_tmp_path("samples_only.png"), NULL, 0, s, 3 * per, 2, NULL, &err);
    CHECK(st == DM_OK, "scatter without data: %s", err.msg);
    if (st == DM_OK && load(&p, tu_tmp_path("samples_only.png"), 800, 800)) {
        double x, y;
        CHECK(blue_centroid(&p, 0, 800, 0, 800, &x, &y) > 900, "samples drawn without data");
        cairo_surface_destroy(p.s);
    }
    /* nothing at all: still a valid, empty set of axes */
    st = dm_plot_scatter(tu_tmp_path("empty.png"), NULL, 0, NULL, 0, 3, "empty", &err);
    CHECK(st == DM_OK, "empty scatter: %s", err.msg);
    if (st == DM_OK && load(&p, tu_tmp_path("empty.png"), 800, 800)) cairo_surface_destroy(p.s);
    /* degenerate ranges: every point in one place far from 0, and values near FLT_MAX; the
     * plot must still come out (and not loop on ticks that rounding cannot separate) */
    const float same[6] = {1e6f, 1e6f, 1e6f, 1e6f, 1e6f, 1e6f};
    const float huge[4] = {-3e38f, 3e38f, 3e38f, -3e38f};
    st = dm_plot_scatter(tu_tmp_path("same.png"), same, 3, same, 3, 2, "one point", &err);
    CHECK(st == DM_OK, "scatter of one repeated point: %s", err.msg);
    st = dm_plot_scatter(tu_tmp_path("huge.png"), huge, 2, huge, 2, 2, "huge", &err);
    CHECK(st == DM_OK, "scatter of huge values: %s", err.msg);
    free(data);
    free(s);
}

/* ---- strip ---- */

static void test_strip(void) {
    const int F = 4;
    const int64_t n = 800, dim = 3;
    float *frames = malloc(F * n * dim * sizeof *frames);
    dm_rng r;
    dm_rng_init(&r, 4, 0);
    dm_rng_normal(&r, frames, F * n * dim);
    for (int64_t i = 0; i < n * dim; i++) frames[(F - 1) * n * dim + i] *= 0.1f; /* "data" */
    const char *labels[4] = {"t = 1000", "t = 500", "t = 100", "t = 0"};
    dm_error err = {0};
    dm_status st = dm_plot_strip(tu_tmp_path("strip.png"), frames, F, n, dim, labels, &err);
    CHECK(st == DM_OK, "strip: %s", err.msg);
    picture p;
    /* 240 px per panel, 270 px high (plot.c's layout) */
    if (st == DM_OK && load(&p, tu_tmp_path("strip.png"), 240 * F, 270)) {
        for (int f = 0; f < F; f++) {
            double x, y;
            int64_t c = blue_centroid(&p, f * 240, (f + 1) * 240, 0, 240, &x, &y);
            CHECK(c > 200, "panel %d has %lld blue pixels", f, (long long)c);
            /* each panel's cloud is centred in it (the data are centred at 0): within 15 px */
            CHECK(fabs(x - (f * 240 + 120)) < 15 && fabs(y - 120) < 15,
                  "panel %d cloud centred at %.1f, %.1f", f, x, y);
            /* the label: dark text in the band under the panel */
            int64_t dark = 0;
            for (int yy = 240; yy < 270; yy++)
                for (int xx = f * 240; xx < (f + 1) * 240; xx++) {
                    int rr, gg, bb;
                    rgb_at(&p, xx, yy, &rr, &gg, &bb);
                    dark += rr < 100 && gg < 100 && bb < 100;
                }
            CHECK(dark > 30, "panel %d label: %lld dark pixels", f, (long long)dark);
        }
        /* the noise frame spreads wider than the data frame: [-3, 3] is always shown */
        double x, y;
        int64_t wide = blue_centroid(&p, 0, 240, 0, 240, &x, &y);
        int64_t narrow = blue_centroid(&p, 720, 960, 0, 240, &x, &y);
        CHECK(wide > 2 * narrow, "noise frame %lld px, data frame %lld px", (long long)wide,
              (long long)narrow);
        cairo_surface_destroy(p.s);
    }
    st = dm_plot_strip(tu_tmp_path("strip_empty.png"), NULL, 2, 0, 2, labels, &err);
    CHECK(st == DM_OK, "strip of empty frames: %s", err.msg);
    st = dm_plot_strip(tu_tmp_path("strip_nolabels.png"), frames, 1, n, dim, NULL, &err);
    CHECK(st == DM_OK, "strip without labels: %s", err.msg);
    if (st == DM_OK && load(&p, tu_tmp_path("strip_nolabels.png"), 240, 270)) cairo_surface_destroy(p.s);
    free(frames);
}

/* ---- loss ---- */

/* Counts the moving average's orange and the raw curve's light blue pixels. */
static void count_loss_colours(const picture *p, int64_t *orange, int64_t *light) {
    *orange = *light = 0;
    for (int y = 0; y < p->h; y++)
        for (int x = 0; x < p->w; x++) {
            int rr, gg, bb;
            rgb_at(p, x, y, &rr, &gg, &bb);
            *orange += rr > 180 && gg < 140 && bb < 90;
            *light += bb > 200 && bb - rr > 25 && rr > 130;
        }
}

static void test_loss(void) {
    /* 3000 steps take the per-pixel-column path (more than 2 points per column), 400 steps the
     * exact polyline */
    const int64_t sizes[2] = {3000, 400};
    float *loss = malloc(sizes[0] * sizeof *loss), *e = malloc(sizes[0] * sizeof *e);
    dm_rng r;
    dm_rng_init(&r, 5, 0);
    dm_rng_normal(&r, e, sizes[0]);
    dm_error err = {0};
    picture p;
    dm_status st;
    for (int k = 0; k < 2; k++) {
        const int64_t n = sizes[k];
        for (int64_t i = 0; i < n; i++)
            loss[i] = (float)((0.3 + exp(-i * 10.0 / n)) * exp(0.2 * e[i]));
        loss[10] = NAN; /* ignored when scaling and drawing */
        loss[20] = -1.0f;
        loss[30] = 0.0f;
        loss[40] = INFINITY;
        st = dm_plot_loss(tu_tmp_path("loss.png"), loss, n, &err);
        CHECK(st == DM_OK, "loss: %s", err.msg);
        if (st == DM_OK && load(&p, tu_tmp_path("loss.png"), 900, 500)) {
            int64_t orange, light;
            count_loss_colours(&p, &orange, &light);
            /* the average is a 2 px line across ~780 px, the raw curve a band around it */
            CHECK(orange > 1000, "%lld steps: %lld orange pixels", (long long)n, (long long)orange);
            CHECK(light > 5000, "%lld steps: %lld light blue pixels", (long long)n,
                  (long long)light);
            cairo_surface_destroy(p.s);
        }
    }
    /* degenerate series still give a picture */
    st = dm_plot_loss(tu_tmp_path("loss0.png"), NULL, 0, &err);
    CHECK(st == DM_OK, "empty loss: %s", err.msg);
    float one = 0.5f, bad[3] = {NAN, -1.0f, 0.0f};
    st = dm_plot_loss(tu_tmp_path("loss1.png"), &one, 1, &err);
    CHECK(st == DM_OK, "one loss value: %s", err.msg);
    st = dm_plot_loss(tu_tmp_path("loss_bad.png"), bad, 3, &err);
    CHECK(st == DM_OK, "no valid loss value: %s", err.msg);
    if (st == DM_OK && load(&p, tu_tmp_path("loss_bad.png"), 900, 500)) cairo_surface_destroy(p.s);
    free(loss);
    free(e);
}

/* ---- errors ---- */

static void test_errors(void) {
    const float pts[4] = {0, 0, 1, 1};
    dm_error err = {0};
    CHECK(dm_plot_scatter(NULL, pts, 2, pts, 2, 2, "t", &err) == DM_ERR_ARG, "NULL path");
    CHECK(dm_plot_scatter(tu_tmp_path("a.png"), pts, 2, pts, 2, 1, "t", &err) == DM_ERR_ARG, "dim 1");
    CHECK(dm_plot_scatter(tu_tmp_path("a.png"), pts, -1, pts, 2, 2, "t", &err) == DM_ERR_ARG, "n < 0");
    CHECK(dm_plot_scatter(tu_tmp_path("a.png"), NULL, 2, pts, 2, 2, "t", &err) == DM_ERR_ARG,
          "NULL data with n > 0");
    CHECK(dm_plot_strip(tu_tmp_path("a.png"), pts, 0, 2, 2, NULL, &err) == DM_ERR_ARG, "no frames");
    CHECK(dm_plot_strip(tu_tmp_path("a.png"), pts, 1, -2, 2, NULL, &err) == DM_ERR_ARG, "strip n < 0");
    CHECK(dm_plot_strip(tu_tmp_path("a.png"), pts, 1000, 2, 2, NULL, &err) == DM_ERR_ARG,
          "strip wider than cairo allows");
    CHECK(dm_plot_loss(tu_tmp_path("a.png"), NULL, 5, &err) == DM_ERR_ARG, "NULL loss");
    CHECK(dm_plot_loss(tu_tmp_path("a.png"), pts, -1, &err) == DM_ERR_ARG, "loss n < 0");
    CHECK(access(tu_tmp_path("a.png"), F_OK) != 0, "a rejected call wrote a file");

    /* a folder that does not exist */
    dm_status st = dm_plot_loss("/nonexistent-dir/x.png", pts, 4, &err);
    CHECK(st == DM_ERR_IO, "unwritable folder gave %s", dm_status_name(st));
    CHECK(strstr(err.msg, "/nonexistent-dir/x.png") != NULL, "message names the path: %s",
          err.msg);
    /* the final name is a folder: the temporary is written, the rename fails, and the
     * temporary must be removed again */
    mkdir(tu_tmp_path("taken"), 0700);
    st = dm_plot_scatter(tu_tmp_path("taken"), pts, 2, pts, 2, 2, "t", &err);
    CHECK(st == DM_ERR_IO, "rename onto a folder gave %s", dm_status_name(st));
    CHECK(strstr(err.msg, "taken") != NULL, "message names the path: %s", err.msg);
    rmdir(tu_tmp_path("taken"));
    /* a write that fails part-way (file size limit, as on a full disk): no picture, no
     * temporary */
    struct rlimit old, small = {.rlim_cur = 2000, .rlim_max = RLIM_INFINITY};
    getrlimit(RLIMIT_FSIZE, &old);
    small.rlim_max = old.rlim_max;
    signal(SIGXFSZ, SIG_IGN); /* make the failed write return EFBIG instead of a signal */
    setrlimit(RLIMIT_FSIZE, &small);
    st = dm_plot_loss(tu_tmp_path("too_big.png"), pts, 4, &err);
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, SIG_DFL);
    CHECK(st == DM_ERR_IO, "write beyond the size limit gave %s", dm_status_name(st));
    CHECK(access(tu_tmp_path("too_big.png"), F_OK) != 0, "a failed write left a picture");
    check_no_temporaries("after failed writes");
}

/* Overwriting keeps the folder clean and replaces the picture. */
static void test_replace(void) {
    const float pts[4] = {0, 0, 1, 1};
    dm_error err = {0};
    CHECK(dm_plot_loss(tu_tmp_path("replace.png"), pts, 4, &err) == DM_OK, "first write: %s", err.msg);
    CHECK(dm_plot_scatter(tu_tmp_path("replace.png"), pts, 2, pts, 2, 2, "t", &err) == DM_OK,
          "second write: %s", err.msg);
    picture p;
    if (load(&p, tu_tmp_path("replace.png"), 800, 800)) cairo_surface_destroy(p.s);
    check_no_temporaries("after replacing");
}

int main(void) {
    if (tu_tmpdir_make("test_plot")) return 1;
    test_scatter();
    test_strip();
    test_loss();
    test_errors();
    test_replace();
    /* DM_KEEP_PLOTS=1 keeps the pictures for a look */
    if (getenv("DM_KEEP_PLOTS")) printf("pictures in %s\n", tu_tmpdir());
    else CHECK(tu_tmpdir_remove() == 0, "cannot remove %s", tu_tmpdir());
    /* frees cairo's font caches, so a leak checker sees only real leaks */
    cairo_debug_reset_static_data();
    return tu_finish("test_plot");
}
