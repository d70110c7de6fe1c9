/* PNG pictures drawn with cairo: sample scatter plots, a strip of reverse-process frames and the
 * training loss. Each picture is rendered into an ARGB32 image surface and written through
 * dm_atomic_file, so an existing picture is replaced only by a complete new one. Sizes in pixels:
 * scatter 800 x 800; strip (240 * frames) x 270; loss 900 x 500. */
#include "io/atomic_file.h"

#include <cairo.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- colours and sizes ---------------------------------------------------------------------- */

typedef struct {
    double r, g, b;
} rgb;

static const rgb INK = {0.13, 0.13, 0.13};        /* text, frame */
static const rgb GRID = {0.92, 0.92, 0.92};       /* grid lines */
static const rgb DATA_GREY = {0.72, 0.72, 0.72};  /* data points */
static const rgb STEEL_BLUE = {0.27, 0.51, 0.71}; /* samples (CSS steelblue) */
static const rgb RAW_BLUE = {0.65, 0.77, 0.89};   /* raw loss */
static const rgb AVG_ORANGE = {0.85, 0.37, 0.01}; /* loss moving average */

#define SCATTER_SIZE 800
#define STRIP_CELL 240  /* width of one strip panel's cell; the panel square fills it less PAD */
#define STRIP_PAD 10
#define STRIP_LABEL 30  /* band under the panels for the labels */
#define LOSS_W 900
#define LOSS_H 500
#define MAX_SURFACE 32767 /* cairo's largest image surface side */

/* Fraction of points left out at each end when fitting the axes: a few stray samples far out
 * should not shrink the picture of everything else. */
#define ROBUST_TAIL 0.005
/* Margin added on each side of the fitted range, as a fraction of its span. */
#define RANGE_PAD 0.10

static void set_rgb(cairo_t *cr, rgb c) { cairo_set_source_rgb(cr, c.r, c.g, c.b); }

/* ---- axes: a pixel box and the data range it shows ------------------------------------------ */

typedef struct {
    double x, y, w, h;           /* pixel box, y down */
    double xmin, xmax, ymin, ymax; /* data range; for log axes, log10 of the values */
} axes;

static double to_px(const axes *a, double v) {
    return a->x + (v - a->xmin) / (a->xmax - a->xmin) * a->w;
}
static double to_py(const axes *a, double v) { /* pixel y grows downwards */
    return a->y + (a->ymax - v) / (a->ymax - a->ymin) * a->h;
}

/* A round tick step (1, 2 or 5 times a power of ten) giving about `target` intervals. */
static double nice_step(double span, int target) {
    double raw = span / target, mag = pow(10.0, floor(log10(raw))), f = raw / mag;
    return (f < 1.5 ? 1.0 : f < 3.5 ? 2.0 : f < 7.5 ? 5.0 : 10.0) * mag;
}

/* Ticks at whole multiples of step inside [lo, hi]: the first multiple and how many. Index
 * arithmetic, not v += step, so rounding cannot stall or skip; 0 ticks for absurd ranges. */
static int64_t tick_count(double lo, double hi, double step, int64_t *first) {
    double f = ceil(lo / step), l = floor(hi / step + 1e-9);
    if (!isfinite(f) || !isfinite(l) || l < f || l - f > 100) return 0;
    *first = (int64_t)f;
    return (int64_t)(l - f) + 1;
}

/* How the ticks of one axis are written: fixed decimals as the step needs, or, for large
 * magnitudes and tiny steps, a short scientific form ("2.5e6"). */
typedef struct {
    double step;
    int sci;    /* scientific notation */
    int digits; /* decimals (fixed) or mantissa decimals (scientific) */
} tick_format;

static tick_format tick_format_for(double lo, double hi, double step, int integers) {
    double m = fmax(fabs(lo), fabs(hi));
    tick_format f = {step, 0, step >= 1.0 ? 0 : (int)ceil(-log10(step) - 1e-9)};
    if (!integers && (m >= 1e5 || f.digits > 4)) {
        int d = (int)floor(log10(m)) - (int)floor(log10(step) + 1e-9);
        f.sci = 1;
        f.digits = d < 1 ? 1 : d > 8 ? 8 : d;
    }
    return f;
}

/* Writes tick value v with a typographic minus sign (U+2212). */
static void format_tick(char *buf, size_t size, double v, const tick_format *f) {
    if (fabs(v) < f->step * 1e-6) v = 0.0; /* no "-0.0" from rounding */
    char tmp[48];
    if (f->sci && v != 0.0) {
        snprintf(tmp, sizeof tmp, "%.*e", f->digits, v);
        char *e = strchr(tmp, 'e');
        if (e) snprintf(e, sizeof tmp - (size_t)(e - tmp), "e%d", atoi(e + 1)); /* e+06 -> e6 */
    } else {
        snprintf(tmp, sizeof tmp, "%.*f", f->sci ? 0 : f->digits, v);
    }
    if (tmp[0] == '-') snprintf(buf, size, "\xe2\x88\x92%s", tmp + 1);
    else snprintf(buf, size, "%s", tmp);
}

typedef enum { ALIGN_START, ALIGN_CENTER, ALIGN_END } align;

/* Draws text with its box aligned at (x, y): horizontally by its advance, vertically by the
 * font's ascent and descent (so labels of different letters share a baseline). */
static void draw_text(cairo_t *cr, const char *s, double size, double x, double y, align ha,
                      align va) {
    cairo_set_font_size(cr, size);
    cairo_text_extents_t te;
    cairo_font_extents_t fe;
    cairo_text_extents(cr, s, &te);
    cairo_font_extents(cr, &fe);
    double dx = ha == ALIGN_START ? 0 : ha == ALIGN_CENTER ? -te.x_advance / 2 : -te.x_advance;
    double dy = va == ALIGN_START ? fe.ascent
                : va == ALIGN_CENTER ? (fe.ascent - fe.descent) / 2
                                     : -fe.descent;
    cairo_move_to(cr, x + dx, y + dy);
    cairo_show_text(cr, s);
}

static double text_width(cairo_t *cr, const char *s, double size) {
    cairo_set_font_size(cr, size);
    cairo_text_extents_t te;
    cairo_text_extents(cr, s, &te);
    return te.x_advance;
}

static void fill_white(cairo_t *cr) {
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_paint(cr);
    cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
}

static void frame_box(cairo_t *cr, const axes *a, rgb c, double width) {
    set_rgb(cr, c);
    cairo_set_line_width(cr, width);
    /* half-pixel offsets put 1-pixel lines on pixel centres: crisp, not smeared over two */
    cairo_rectangle(cr, round(a->x) + 0.5, round(a->y) + 0.5, round(a->w), round(a->h));
    cairo_stroke(cr);
}

#define TICK_LEN 5
#define TICK_FONT 13

/* Grid lines, ticks and labels of a linear x axis with tick step sx. Labels too wide for their
 * spacing are thinned to every second (fifth, ...) tick. */
static void draw_x_ticks(cairo_t *cr, const axes *a, double sx, const tick_format *f) {
    char buf[64];
    int64_t first, count = tick_count(a->xmin, a->xmax, sx, &first), every = 1;
    double widest = 0, spacing = sx / (a->xmax - a->xmin) * a->w;
    double canvas_w = cairo_image_surface_get_width(cairo_get_target(cr));
    for (int64_t i = 0; i < count; i++) {
        format_tick(buf, sizeof buf, (double)(first + i) * sx, f);
        widest = fmax(widest, text_width(cr, buf, TICK_FONT));
    }
    while (every < count && every * spacing < widest + 10) every = every == 1 ? 2 : every * 5 / 2;
    cairo_set_line_width(cr, 1);
    for (int64_t i = 0; i < count; i++) {
        double v = (double)(first + i) * sx, p = round(to_px(a, v)) + 0.5;
        set_rgb(cr, GRID);
        cairo_move_to(cr, p, a->y);
        cairo_line_to(cr, p, a->y + a->h);
        cairo_stroke(cr);
        set_rgb(cr, INK);
        cairo_move_to(cr, p, a->y + a->h);
        cairo_line_to(cr, p, a->y + a->h + TICK_LEN);
        cairo_stroke(cr);
        if ((first + i) % every) continue;
        format_tick(buf, sizeof buf, v, f);
        /* a label under the last tick may not run off the picture's right edge */
        double half = text_width(cr, buf, TICK_FONT) / 2, cx = fmin(p, canvas_w - 2 - half);
        draw_text(cr, buf, TICK_FONT, cx, a->y + a->h + TICK_LEN + 3, ALIGN_CENTER, ALIGN_START);
    }
}

/* The same for a linear y axis; labels shrink (down to 8 px) to fit in `room` pixels left of
 * the ticks. */
static void draw_y_ticks(cairo_t *cr, const axes *a, double sy, const tick_format *f,
                         double room) {
    char buf[64];
    int64_t first, count = tick_count(a->ymin, a->ymax, sy, &first);
    double widest = 0, fs = TICK_FONT;
    for (int64_t i = 0; i < count; i++) {
        format_tick(buf, sizeof buf, (double)(first + i) * sy, f);
        widest = fmax(widest, text_width(cr, buf, TICK_FONT));
    }
    if (widest > room) fs = fmax(8.0, TICK_FONT * room / widest);
    cairo_set_line_width(cr, 1);
    for (int64_t i = 0; i < count; i++) {
        double v = (double)(first + i) * sy, p = round(to_py(a, v)) + 0.5;
        set_rgb(cr, GRID);
        cairo_move_to(cr, a->x, p);
        cairo_line_to(cr, a->x + a->w, p);
        cairo_stroke(cr);
        set_rgb(cr, INK);
        cairo_move_to(cr, a->x - TICK_LEN, p);
        cairo_line_to(cr, a->x, p);
        cairo_stroke(cr);
        format_tick(buf, sizeof buf, v, f);
        draw_text(cr, buf, fs, a->x - TICK_LEN - 4, p, ALIGN_END, ALIGN_CENTER);
    }
}

/* Both linear axes with about 7 round ticks each; drawn before the data, framed after. */
static void draw_linear_axes(cairo_t *cr, const axes *a, double ylabel_room) {
    double sx = nice_step(a->xmax - a->xmin, 7), sy = nice_step(a->ymax - a->ymin, 7);
    tick_format fx = tick_format_for(a->xmin, a->xmax, sx, 0);
    tick_format fy = tick_format_for(a->ymin, a->ymax, sy, 0);
    draw_x_ticks(cr, a, sx, &fx);
    draw_y_ticks(cr, a, sy, &fy, ylabel_room);
}

static void draw_axis_labels(cairo_t *cr, const axes *a, const char *xlabel, const char *ylabel,
                             double ylabel_x) {
    set_rgb(cr, INK);
    draw_text(cr, xlabel, 14, a->x + a->w / 2, a->y + a->h + 30, ALIGN_CENTER, ALIGN_START);
    cairo_save(cr);
    cairo_translate(cr, ylabel_x, a->y + a->h / 2);
    cairo_rotate(cr, -M_PI / 2);
    draw_text(cr, ylabel, 14, 0, 0, ALIGN_CENTER, ALIGN_CENTER);
    cairo_restore(cr);
}

/* ---- data ranges ---------------------------------------------------------------------------- */

static int cmp_float(const void *pa, const void *pb) {
    float a = *(const float *)pa, b = *(const float *)pb;
    return (a > b) - (a < b);
}

/* The ROBUST_TAIL and 1 - ROBUST_TAIL quantiles of coordinate `axis` over the finite points of
 * up to two sets (pts[s] is (n[s], dim)). Leaves lo > hi when there is no finite point. */
static dm_status robust_range(const float *const pts[2], const int64_t n[2], int64_t dim,
                              int axis, double *lo, double *hi, dm_error *err) {
    *lo = INFINITY;
    *hi = -INFINITY;
    int64_t total = n[0] + n[1], count = 0;
    if (total == 0) return DM_OK;
    float *v = malloc((size_t)total * sizeof *v);
    if (!v) return dm_error_set(err, DM_ERR_NOMEM, "plot: out of memory for %lld points",
                                (long long)total);
    for (int s = 0; s < 2; s++)
        for (int64_t i = 0; i < n[s]; i++) {
            float c = pts[s][i * dim + axis];
            if (isfinite(c)) v[count++] = c;
        }
    if (count > 0) {
        qsort(v, (size_t)count, sizeof *v, cmp_float);
        *lo = v[(int64_t)floor(ROBUST_TAIL * (double)(count - 1))];
        *hi = v[(int64_t)ceil((1.0 - ROBUST_TAIL) * (double)(count - 1))];
    }
    free(v);
    return DM_OK;
}

/* Pads [lo, hi] by RANGE_PAD of its span on each side. An empty range becomes [-1, 1]; one too
 * narrow to resolve in float data (below 1e-6 relative) becomes one of width max(1, 10% of its
 * centre's magnitude) around its centre. */
static void pad_range(double *lo, double *hi) {
    if (!(*hi >= *lo)) {
        *lo = -1.0;
        *hi = 1.0;
    }
    double span = *hi - *lo;
    if (span <= 1e-6 * fmax(1.0, fmax(fabs(*lo), fabs(*hi)))) {
        double c = 0.5 * (*lo + *hi), half = 0.5 * fmax(1.0, 0.1 * fabs(c));
        *lo = c - half;
        *hi = c + half;
        return;
    }
    *lo -= RANGE_PAD * span;
    *hi += RANGE_PAD * span;
}

/* Widens the narrower of the x and y ranges about its centre so both spans are equal: the
 * boxes are square, so a circle in the data stays a circle in the picture. */
static void equal_aspect(axes *a) {
    double sx = a->xmax - a->xmin, sy = a->ymax - a->ymin, s = fmax(sx, sy);
    double cx = 0.5 * (a->xmin + a->xmax), cy = 0.5 * (a->ymin + a->ymax);
    a->xmin = cx - s / 2;
    a->xmax = cx + s / 2;
    a->ymin = cy - s / 2;
    a->ymax = cy + s / 2;
}

/* Fits an equal-aspect range to dims 0 and 1 of up to two point sets. */
static dm_status fit_range(axes *a, const float *const pts[2], const int64_t n[2], int64_t dim,
                           dm_error *err) {
    dm_status st = robust_range(pts, n, dim, 0, &a->xmin, &a->xmax, err);
    if (!st) st = robust_range(pts, n, dim, 1, &a->ymin, &a->ymax, err);
    if (st) return st;
    pad_range(&a->xmin, &a->xmax);
    pad_range(&a->ymin, &a->ymax);
    equal_aspect(a);
    return DM_OK;
}

/* ---- points --------------------------------------------------------------------------------- */

/* Dots of radius r (pixels) at dims 0 and 1 of pts (n, dim), clipped to the box. One fill per
 * dot, so translucent dots add up where points are dense. */
static void draw_points(cairo_t *cr, const axes *a, const float *pts, int64_t n, int64_t dim,
                        double r, rgb c, double alpha) {
    cairo_save(cr);
    cairo_rectangle(cr, a->x, a->y, a->w, a->h);
    cairo_clip(cr);
    cairo_set_source_rgba(cr, c.r, c.g, c.b, alpha);
    for (int64_t i = 0; i < n; i++) {
        double x = to_px(a, pts[i * dim]), y = to_py(a, pts[i * dim + 1]);
        if (!(x > a->x - r && x < a->x + a->w + r && y > a->y - r && y < a->y + a->h + r))
            continue; /* outside (or NaN): nothing to draw */
        cairo_new_sub_path(cr);
        cairo_arc(cr, x, y, r, 0, 2 * M_PI);
        cairo_fill(cr);
    }
    cairo_restore(cr);
}

/* ---- legend --------------------------------------------------------------------------------- */

typedef struct {
    const char *text;
    rgb colour;
    int line; /* a short line sample instead of a dot */
    double width;
} legend_entry;

/* A boxed legend with its top-right corner at (right, top). */
static void draw_legend(cairo_t *cr, const legend_entry *e, int count, double right, double top) {
    const double fs = 13, row = 20, pad = 9, mark = 22;
    double w = 0;
    for (int i = 0; i < count; i++) w = fmax(w, text_width(cr, e[i].text, fs));
    double bw = pad + mark + 6 + w + pad, bh = pad + row * count + pad - 4;
    double bx = round(right - bw) + 0.5, by = round(top) + 0.5;
    cairo_rectangle(cr, bx, by, round(bw), round(bh));
    cairo_set_source_rgba(cr, 1, 1, 1, 0.88);
    cairo_fill_preserve(cr);
    set_rgb(cr, (rgb){0.8, 0.8, 0.8});
    cairo_set_line_width(cr, 1);
    cairo_stroke(cr);
    for (int i = 0; i < count; i++) {
        double cy = by + pad + row * i + row / 2 - 2, mx = bx + pad + mark / 2;
        set_rgb(cr, e[i].colour);
        if (e[i].line) {
            cairo_set_line_width(cr, e[i].width);
            cairo_move_to(cr, mx - mark / 2, cy);
            cairo_line_to(cr, mx + mark / 2, cy);
            cairo_stroke(cr);
        } else {
            cairo_arc(cr, mx, cy, 4, 0, 2 * M_PI);
            cairo_fill(cr);
        }
        set_rgb(cr, INK);
        draw_text(cr, e[i].text, fs, bx + pad + mark + 6, cy, ALIGN_START, ALIGN_CENTER);
    }
}

/* ---- output --------------------------------------------------------------------------------- */

static cairo_status_t write_to_file(void *closure, const unsigned char *data, unsigned int length) {
    return fwrite(data, 1, length, closure) == length ? CAIRO_STATUS_SUCCESS
                                                      : CAIRO_STATUS_WRITE_ERROR;
}

/* Checks the drawing, destroys cr, writes the surface as a PNG to path atomically and destroys
 * the surface: every plot ends here, on every path. */
static dm_status finish_png(cairo_surface_t *surface, cairo_t *cr, const char *path,
                            dm_error *err) {
    cairo_status_t cs = cairo_status(cr);
    cairo_destroy(cr);
    if (cs == CAIRO_STATUS_SUCCESS) cs = cairo_surface_status(surface);
    dm_status st = DM_OK;
    if (cs != CAIRO_STATUS_SUCCESS) {
        st = dm_error_set(err, cs == CAIRO_STATUS_NO_MEMORY ? DM_ERR_NOMEM : DM_ERR_IO,
                          "%s: drawing failed: %s", path, cairo_status_to_string(cs));
    } else {
        dm_atomic_file af;
        st = dm_atomic_open(&af, path, err);
        if (!st) {
            cairo_surface_flush(surface);
            cs = cairo_surface_write_to_png_stream(surface, write_to_file, af.f);
            if (cs != CAIRO_STATUS_SUCCESS) {
                dm_atomic_abort(&af);
                st = dm_error_set(err, DM_ERR_IO, "%s: cannot write PNG: %s", path,
                                  cairo_status_to_string(cs));
            } else {
                st = dm_atomic_commit(&af, err);
            }
        }
    }
    cairo_surface_destroy(surface);
    return st;
}

static cairo_t *new_canvas(cairo_surface_t **surface, int w, int h) {
    *surface = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, w, h);
    cairo_t *cr = cairo_create(*surface); /* on a failed surface, an inert cr in error state */
    fill_white(cr);
    return cr;
}

/* ---- scatter -------------------------------------------------------------------------------- */

dm_status dm_plot_scatter(const char *path, const float *data, int64_t n_data, const float *samples,
                          int64_t n_samples, int64_t dim, const char *title, dm_error *err) {
    if (!path) return dm_error_set(err, DM_ERR_ARG, "plot: no output path");
    if (dim < 2)
        return dm_error_set(err, DM_ERR_ARG, "%s: a scatter plot needs dim >= 2, got %lld", path,
                            (long long)dim);
    if (n_data < 0 || n_samples < 0 || (n_data > 0 && !data) || (n_samples > 0 && !samples))
        return dm_error_set(err, DM_ERR_ARG, "%s: invalid point sets (%lld data, %lld samples)",
                            path, (long long)n_data, (long long)n_samples);
    /* a square box; the margins hold the title (top) and the tick and axis labels */
    axes a = {.x = 82, .y = 44, .w = 700, .h = 700};
    const float *sets[2] = {data, samples};
    const int64_t counts[2] = {n_data, n_samples};
    dm_status st = fit_range(&a, sets, counts, dim, err);
    if (st) return st;

    cairo_surface_t *surface;
    cairo_t *cr = new_canvas(&surface, SCATTER_SIZE, SCATTER_SIZE);
    draw_linear_axes(cr, &a, a.x - TICK_LEN - 4 - 34); /* 34 px for the y axis label */
    /* dots shrink and fade as their number grows, so dense regions stay readable */
    double r = n_samples > 20000 ? 1.1 : 1.6, alpha = n_samples > 20000 ? 0.35 : 0.55;
    draw_points(cr, &a, data, n_data, dim, n_data > 20000 ? 1.0 : 1.4, DATA_GREY, 1.0);
    draw_points(cr, &a, samples, n_samples, dim, r, STEEL_BLUE, alpha);
    frame_box(cr, &a, INK, 1);
    draw_axis_labels(cr, &a, "x[0]", "x[1]", 22);
    if (title) {
        set_rgb(cr, INK);
        cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_BOLD);
        draw_text(cr, title, 17, a.x + a.w / 2, 22, ALIGN_CENTER, ALIGN_CENTER);
        cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL,
                               CAIRO_FONT_WEIGHT_NORMAL);
    }
    char data_label[64], sample_label[64];
    snprintf(data_label, sizeof data_label, "data (%lld)", (long long)n_data);
    snprintf(sample_label, sizeof sample_label, "samples (%lld)", (long long)n_samples);
    legend_entry legend[2];
    int entries = 0;
    if (n_data > 0) legend[entries++] = (legend_entry){data_label, DATA_GREY, 0, 0};
    if (n_samples > 0) legend[entries++] = (legend_entry){sample_label, STEEL_BLUE, 0, 0};
    if (entries) draw_legend(cr, legend, entries, a.x + a.w - 10, a.y + 10);
    return finish_png(surface, cr, path, err);
}

/* ---- strip of frames ------------------------------------------------------------------------ */

dm_status dm_plot_strip(const char *path, const float *frames, int frames_count, int64_t n,
                        int64_t dim, const char *const *labels, dm_error *err) {
    if (!path) return dm_error_set(err, DM_ERR_ARG, "plot: no output path");
    if (frames_count < 1 || (int64_t)frames_count * STRIP_CELL > MAX_SURFACE)
        return dm_error_set(err, DM_ERR_ARG, "%s: frame count %d outside 1..%d", path,
                            frames_count, MAX_SURFACE / STRIP_CELL);
    if (dim < 2 || n < 0 || (n > 0 && !frames))
        return dm_error_set(err, DM_ERR_ARG, "%s: invalid frames (%lld points of dim %lld)", path,
                            (long long)n, (long long)dim);
    /* one range for all panels: the final frame's, widened to show x_T ~ N(0, I) too */
    axes range = {0};
    /* with n = 0, frames may be NULL: no offsets from it */
#define FRAME(f) (n > 0 ? frames + (size_t)(f) * (size_t)(n * dim) : NULL)
    const float *last[2] = {FRAME(frames_count - 1), NULL};
    const int64_t counts[2] = {n, 0};
    dm_status st = fit_range(&range, last, counts, dim, err);
    if (st) return st;
    range.xmin = fmin(range.xmin, -3.0);
    range.xmax = fmax(range.xmax, 3.0);
    range.ymin = fmin(range.ymin, -3.0);
    range.ymax = fmax(range.ymax, 3.0);
    equal_aspect(&range);

    cairo_surface_t *surface;
    cairo_t *cr = new_canvas(&surface, frames_count * STRIP_CELL, STRIP_CELL + STRIP_LABEL);
    const double side = STRIP_CELL - 2 * STRIP_PAD;
    for (int f = 0; f < frames_count; f++) {
        axes a = range;
        a.x = f * STRIP_CELL + STRIP_PAD;
        a.y = STRIP_PAD;
        a.w = a.h = side;
        /* faint axes through the origin: a common reference across the panels */
        set_rgb(cr, GRID);
        cairo_set_line_width(cr, 1);
        cairo_move_to(cr, round(to_px(&a, 0)) + 0.5, a.y);
        cairo_line_to(cr, round(to_px(&a, 0)) + 0.5, a.y + a.h);
        cairo_move_to(cr, a.x, round(to_py(&a, 0)) + 0.5);
        cairo_line_to(cr, a.x + a.w, round(to_py(&a, 0)) + 0.5);
        cairo_stroke(cr);
        draw_points(cr, &a, FRAME(f), n, dim, 1.1, STEEL_BLUE, n > 5000 ? 0.3 : 0.5);
        frame_box(cr, &a, (rgb){0.6, 0.6, 0.6}, 1);
        if (labels && labels[f]) {
            set_rgb(cr, INK);
            draw_text(cr, labels[f], 15, a.x + a.w / 2, STRIP_CELL + STRIP_LABEL / 2.0 - 6,
                      ALIGN_CENTER, ALIGN_CENTER);
        }
    }
#undef FRAME
    return finish_png(surface, cr, path, err);
}

/* ---- loss curve ----------------------------------------------------------------------------- */

static int loss_ok(float v) { return isfinite(v) && v > 0.0f; }

/* "10" with a raised exponent, its right edge at x and its middle at y. */
static void draw_pow10(cairo_t *cr, int k, double x, double y) {
    char exp_txt[32];
    if (k < 0) snprintf(exp_txt, sizeof exp_txt, "\xe2\x88\x92%d", -k); /* U+2212 minus */
    else snprintf(exp_txt, sizeof exp_txt, "%d", k);
    double we = text_width(cr, exp_txt, 10);
    draw_text(cr, exp_txt, 10, x - we, y - 6, ALIGN_START, ALIGN_CENTER);
    draw_text(cr, "10", 13, x - we - 1, y, ALIGN_END, ALIGN_CENTER);
}

/* Log-scale y ticks: a labelled grid line at each decade; minor ticks at 2..9 times a decade,
 * labelled as plain numbers when the range holds fewer than two decades. */
static void draw_log_y_axis(cairo_t *cr, const axes *a) {
    const int k0 = (int)floor(a->ymin), k1 = (int)ceil(a->ymax);
    int decades = 0;
    for (int k = k0; k <= k1; k++) decades += k >= a->ymin && k <= a->ymax;
    const int label_minor = decades < 2;
    /* pixel rows already labelled: decades are labelled first, then minor ticks with room */
    double used[128];
    int n_used = 0;
    cairo_set_line_width(cr, 1);
    for (int pass = 0; pass < 2; pass++)
        for (int k = k0; k <= k1; k++)
            for (int m = pass == 0 ? 1 : 2; m <= (pass == 0 ? 1 : 9); m++) {
                double lv = k + log10((double)m);
                if (lv < a->ymin || lv > a->ymax) continue;
                double p = round(to_py(a, lv)) + 0.5;
                set_rgb(cr, m == 1 ? (rgb){0.86, 0.86, 0.86} : (rgb){0.95, 0.95, 0.95});
                cairo_move_to(cr, a->x, p);
                cairo_line_to(cr, a->x + a->w, p);
                cairo_stroke(cr);
                set_rgb(cr, INK);
                cairo_move_to(cr, a->x - (m == 1 ? TICK_LEN : TICK_LEN * 0.6), p);
                cairo_line_to(cr, a->x, p);
                cairo_stroke(cr);
                if (!label_minor) {
                    if (m == 1) draw_pow10(cr, k, a->x - TICK_LEN - 4, p);
                    continue;
                }
                int room = n_used < 128;
                for (int u = 0; u < n_used; u++) room &= fabs(used[u] - p) >= 18;
                if (!room) continue;
                char buf[32];
                snprintf(buf, sizeof buf, "%g", m * pow(10.0, k));
                draw_text(cr, buf, TICK_FONT, a->x - TICK_LEN - 4, p, ALIGN_END, ALIGN_CENTER);
                used[n_used++] = p;
            }
}

/* x ticks at round whole steps, written as integers. */
static void draw_step_x_axis(cairo_t *cr, const axes *a) {
    double sx = fmax(1.0, nice_step(a->xmax - a->xmin, 8));
    tick_format f = tick_format_for(a->xmin, a->xmax, sx, 1);
    draw_x_ticks(cr, a, sx, &f);
}

/* Polyline through (i + 1, log10 y[i]), broken where y[i] is not a positive finite number.
 * With more than two points per pixel column, each column instead gets one segment from its
 * smallest to its largest value (what the dense line would paint): cairo's stroker slows to
 * minutes on a million-point zigzag. */
static void trace_log_curve(cairo_t *cr, const axes *a, const float *y, int64_t n) {
    const int64_t cols = (int64_t)a->w;
    int open = 0;
    if (n <= 2 * cols) {
        for (int64_t i = 0; i < n; i++) {
            if (!loss_ok(y[i])) {
                open = 0;
                continue;
            }
            double px = to_px(a, (double)(i + 1)), py = to_py(a, log10(y[i]));
            if (!open) cairo_move_to(cr, px, py); /* with round caps, a lone value is a dot */
            cairo_line_to(cr, px, py);
            open = 1;
        }
        return;
    }
    int64_t i = 0;
    for (int64_t c = 0; c < cols; c++) {
        double lo = INFINITY, hi = -INFINITY;
        for (; i < n && (c == cols - 1 || to_px(a, (double)(i + 1)) < a->x + (double)(c + 1)); i++)
            if (loss_ok(y[i])) {
                double v = log10(y[i]);
                lo = fmin(lo, v);
                hi = fmax(hi, v);
            }
        if (!(lo <= hi)) {
            open = 0;
            continue;
        }
        double px = a->x + (double)c + 0.5;
        if (!open) cairo_move_to(cr, px, to_py(a, lo));
        else cairo_line_to(cr, px, to_py(a, lo));
        cairo_line_to(cr, px, to_py(a, hi));
        open = 1;
    }
}

dm_status dm_plot_loss(const char *path, const float *loss, int64_t n, dm_error *err) {
    if (!path) return dm_error_set(err, DM_ERR_ARG, "plot: no output path");
    if (n < 0 || (n > 0 && !loss))
        return dm_error_set(err, DM_ERR_ARG, "%s: invalid loss series (%lld values)", path,
                            (long long)n);
    float *avg = malloc((size_t)(n > 0 ? n : 1) * sizeof *avg);
    double *csum = malloc((size_t)(n + 1) * sizeof *csum);
    int64_t *ccount = malloc((size_t)(n + 1) * sizeof *ccount);
    if (!avg || !csum || !ccount) {
        free(avg);
        free(csum);
        free(ccount);
        return dm_error_set(err, DM_ERR_NOMEM, "%s: out of memory", path);
    }
    /* centred moving average over the valid values of `window` steps (a trailing one would lag
     * behind a falling loss), from prefix sums */
    const int64_t window = n / 50 > 1 ? n / 50 : 1;
    double lo = INFINITY, hi = -INFINITY;
    csum[0] = 0;
    ccount[0] = 0;
    for (int64_t i = 0; i < n; i++) {
        int ok = loss_ok(loss[i]);
        csum[i + 1] = csum[i] + (ok ? loss[i] : 0.0);
        ccount[i + 1] = ccount[i] + ok;
        if (ok) {
            lo = fmin(lo, loss[i]);
            hi = fmax(hi, loss[i]);
        }
    }
    for (int64_t i = 0; i < n; i++) {
        int64_t a0 = i - window / 2, a1 = a0 + window; /* [a0, a1) */
        a0 = a0 < 0 ? 0 : a0;
        a1 = a1 > n ? n : a1;
        int64_t c = ccount[a1] - ccount[a0];
        avg[i] = c > 0 ? (float)((csum[a1] - csum[a0]) / (double)c) : NAN;
    }
    free(csum);
    free(ccount);
    axes a = {.x = 84, .y = 24, .w = 786, .h = 400, .xmin = 0, .xmax = n > 2 ? (double)n : 2.0};
    if (lo <= hi) {
        a.ymin = log10(lo);
        a.ymax = log10(hi);
    } else { /* nothing to show: an empty decade */
        a.ymin = -1;
        a.ymax = 0;
    }
    double pad = fmax(0.05, 0.04 * (a.ymax - a.ymin)); /* in decades */
    a.ymin -= pad;
    a.ymax += pad;

    cairo_surface_t *surface;
    cairo_t *cr = new_canvas(&surface, LOSS_W, LOSS_H);
    draw_step_x_axis(cr, &a);
    draw_log_y_axis(cr, &a);
    cairo_save(cr);
    cairo_rectangle(cr, a.x, a.y, a.w, a.h);
    cairo_clip(cr);
    cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
    cairo_set_line_cap(cr, CAIRO_LINE_CAP_ROUND);
    /* with a window of one step the average is the raw curve: draw that in the strong colour */
    const int smooth = window > 1;
    set_rgb(cr, smooth ? RAW_BLUE : AVG_ORANGE);
    cairo_set_line_width(cr, smooth ? 1 : 1.5);
    trace_log_curve(cr, &a, loss, n);
    cairo_stroke(cr);
    for (int64_t i = 0; i < n && n <= 50; i++) /* a short series also gets a dot per value */
        if (loss_ok(loss[i])) {
            cairo_new_sub_path(cr);
            cairo_arc(cr, to_px(&a, (double)(i + 1)), to_py(&a, log10(loss[i])), 2.5, 0, 2 * M_PI);
            cairo_fill(cr);
        }
    if (smooth) {
        set_rgb(cr, AVG_ORANGE);
        cairo_set_line_width(cr, 2);
        trace_log_curve(cr, &a, avg, n);
        cairo_stroke(cr);
    }
    cairo_restore(cr);
    frame_box(cr, &a, INK, 1);
    draw_axis_labels(cr, &a, "step", "loss (L_simple)", 24);
    char avg_label[64];
    snprintf(avg_label, sizeof avg_label, "moving average (%lld steps)", (long long)window);
    const legend_entry legend[2] = {{"loss per step", smooth ? RAW_BLUE : AVG_ORANGE, 1, 2},
                                    {avg_label, AVG_ORANGE, 1, 2}};
    draw_legend(cr, legend, smooth ? 2 : 1, a.x + a.w - 10, a.y + 10);
    free(avg);
    return finish_png(surface, cr, path, err);
}

/* ---- curves against a log x axis ------------------------------------------------------------ */

/* Distinct colours for up to eight series (Tableau 10). */
static const rgb SERIES[8] = {{0.12, 0.47, 0.71}, {1.00, 0.50, 0.05}, {0.17, 0.63, 0.17},
                              {0.84, 0.15, 0.16}, {0.58, 0.40, 0.74}, {0.55, 0.34, 0.29},
                              {0.89, 0.47, 0.76}, {0.50, 0.50, 0.50}};

static int curve_ok(double v) { return isfinite(v) && v > 0; }

/* x on a logarithmic axis (log_x) or a linear one; y always logarithmic. */
static double x_pos(double x, bool log_x) { return log_x ? log10(x) : x; }

static dm_status plot_curves(const char *path, const double *x, int64_t n_points, const double *y,
                             const char *const *names, int n_series, const char *xlabel,
                             const char *ylabel, double ref, bool log_x, dm_error *err) {
    if (!path) return dm_error_set(err, DM_ERR_ARG, "plot: no output path");
    if (n_points < 1 || n_series < 1 || n_series > 8 || !x || !y || !names)
        return dm_error_set(err, DM_ERR_ARG, "%s: %lld points of %d series (1..8 series)", path,
                            (long long)n_points, n_series);
    double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
    for (int64_t i = 0; i < n_points; i++) {
        if (log_x ? !curve_ok(x[i]) : !isfinite(x[i]))
            return dm_error_set(err, DM_ERR_ARG, "%s: x must be %s", path,
                                log_x ? "> 0" : "finite");
        xlo = fmin(xlo, x[i]);
        xhi = fmax(xhi, x[i]);
        for (int s = 0; s < n_series; s++)
            if (curve_ok(y[s * n_points + i])) {
                ylo = fmin(ylo, y[s * n_points + i]);
                yhi = fmax(yhi, y[s * n_points + i]);
            }
    }
    if (curve_ok(ref)) ylo = fmin(ylo, ref), yhi = fmax(yhi, ref);
    if (!(ylo <= yhi)) ylo = 0.1, yhi = 1; /* nothing to show */
    axes a = {.x = 84, .y = 24, .w = 786, .h = 400};
    a.xmin = x_pos(xlo, log_x), a.xmax = x_pos(xhi, log_x);
    if (a.xmax - a.xmin < 1e-9) a.xmin -= 0.5, a.xmax += 0.5;
    const double xpad = 0.04 * (a.xmax - a.xmin);
    a.xmin -= xpad, a.xmax += xpad;
    a.ymin = log10(ylo), a.ymax = log10(yhi);
    const double ypad = fmax(0.05, 0.06 * (a.ymax - a.ymin)); /* in decades */
    a.ymin -= ypad, a.ymax += ypad;

    cairo_surface_t *surface;
    cairo_t *cr = new_canvas(&surface, LOSS_W, LOSS_H);
    draw_log_y_axis(cr, &a);
    /* x ticks at the x values themselves: a sweep's settings are its natural labels */
    char buf[32];
    double last_right = -INFINITY;
    cairo_set_line_width(cr, 1);
    for (int64_t i = 0; i < n_points; i++) {
        double p = round(to_px(&a, x_pos(x[i], log_x))) + 0.5;
        set_rgb(cr, GRID);
        cairo_move_to(cr, p, a.y);
        cairo_line_to(cr, p, a.y + a.h);
        cairo_stroke(cr);
        set_rgb(cr, INK);
        cairo_move_to(cr, p, a.y + a.h);
        cairo_line_to(cr, p, a.y + a.h + TICK_LEN);
        cairo_stroke(cr);
        snprintf(buf, sizeof buf, "%g", x[i]);
        double half = text_width(cr, buf, TICK_FONT) / 2;
        if (p - half < last_right + 6) continue; /* no room: the grid line stays, unlabelled */
        draw_text(cr, buf, TICK_FONT, p, a.y + a.h + TICK_LEN + 3, ALIGN_CENTER, ALIGN_START);
        last_right = p + half;
    }
    cairo_save(cr);
    cairo_rectangle(cr, a.x, a.y, a.w, a.h);
    cairo_clip(cr);
    if (curve_ok(ref)) {
        const double dash[2] = {6, 4};
        set_rgb(cr, INK);
        cairo_set_line_width(cr, 1);
        cairo_set_dash(cr, dash, 2, 0);
        double p = round(to_py(&a, log10(ref))) + 0.5;
        cairo_move_to(cr, a.x, p);
        cairo_line_to(cr, a.x + a.w, p);
        cairo_stroke(cr);
        cairo_set_dash(cr, NULL, 0, 0);
    }
    cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
    cairo_set_line_cap(cr, CAIRO_LINE_CAP_ROUND);
    legend_entry legend[8];
    for (int s = 0; s < n_series; s++) {
        const double *ys = y + s * n_points;
        set_rgb(cr, SERIES[s]);
        cairo_set_line_width(cr, 2);
        int open = 0;
        for (int64_t i = 0; i < n_points; i++) {
            if (!curve_ok(ys[i])) {
                open = 0;
                continue;
            }
            double px = to_px(&a, x_pos(x[i], log_x)), py = to_py(&a, log10(ys[i]));
            if (!open) cairo_move_to(cr, px, py);
            cairo_line_to(cr, px, py);
            open = 1;
        }
        cairo_stroke(cr);
        for (int64_t i = 0; i < n_points; i++)
            if (curve_ok(ys[i])) {
                cairo_new_sub_path(cr);
                cairo_arc(cr, to_px(&a, x_pos(x[i], log_x)), to_py(&a, log10(ys[i])), 3.5, 0, 2 * M_PI);
                cairo_fill(cr);
            }
        legend[s] = (legend_entry){names[s], SERIES[s], 1, 2};
    }
    cairo_restore(cr);
    frame_box(cr, &a, INK, 1);
    draw_axis_labels(cr, &a, xlabel ? xlabel : "", ylabel ? ylabel : "", 24);
    draw_legend(cr, legend, n_series, a.x + a.w - 10, a.y + 10);
    return finish_png(surface, cr, path, err);
}

dm_status dm_plot_curves(const char *path, const double *x, int64_t n_points, const double *y,
                         const char *const *names, int n_series, const char *xlabel,
                         const char *ylabel, double ref, dm_error *err) {
    return plot_curves(path, x, n_points, y, names, n_series, xlabel, ylabel, ref, true, err);
}

dm_status dm_plot_curves_linear_x(const char *path, const double *x, int64_t n_points,
                                  const double *y, const char *const *names, int n_series,
                                  const char *xlabel, const char *ylabel, double ref,
                                  dm_error *err) {
    return plot_curves(path, x, n_points, y, names, n_series, xlabel, ylabel, ref, false, err);
}
