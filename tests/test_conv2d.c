/* 2-D convolution: the naive forward against hand-computed values, the naive backward against
 * finite differences of the naive forward, and both fast paths (oneDNN where built with it, and
 * im2col + sgemm, threads over the batch) against the naive one at 1 and 2 threads. */
#include "nn/conv2d.h"
#include "test_util.h"

#include <omp.h>

/* the oneDNN primitives of every fast call here, as a model keeps its own */
static dm_conv_cache *cache;

static void fill_normal(float *v, size_t n, uint64_t seed, float scale) {
    dm_rng rng;
    dm_rng_init(&rng, seed, 5);
    dm_rng_normal(&rng, v, n);
    for (size_t i = 0; i < n; i++) v[i] *= scale;
}

static void fill_const(float *v, size_t n, float value) {
    for (size_t i = 0; i < n; i++) v[i] = value;
}

static double *to_double(const float *v, size_t n) {
    double *d = malloc(n * sizeof *d);
    for (size_t i = 0; i < n; i++) d[i] = v[i];
    return d;
}

static void shape_name(char *buf, size_t size, const char *what, const dm_conv2d_shape *s,
                       int64_t B) {
    snprintf(buf, size, "%s cin=%lld cout=%lld H=%lld W=%lld k=%d stride=%d pad=%d B=%lld", what,
             (long long)s->cin, (long long)s->cout, (long long)s->H, (long long)s->W, s->k,
             s->stride, s->pad, (long long)B);
}

/* ---- naive forward on hand-computed cases */

static void test_forward_by_hand(void) {
    const float x[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9}; /* one 3x3 image */
    const float laplace[9] = {0, 1, 0, 1, -4, 1, 0, 1, 0};
    const float bias = 0.5f;
    float y[9];
    dm_conv2d_shape s = {.cin = 1, .cout = 1, .H = 3, .W = 3, .k = 3, .stride = 1, .pad = 1};
    dm_conv2d_forward_ref(y, x, laplace, &bias, &s, 1);
    /* e.g. corner (0,0): 2 + 4 - 4 * 1; centre: 2 + 4 + 6 + 8 - 4 * 5 */
    const double want_laplace[9] = {2.5, 1.5, -3.5, -2.5, 0.5, -6.5, -15.5, -10.5, -21.5};
    tu_check_array("forward by hand: laplacian, pad 1", y, want_laplace, 9, 0, 0);

    /* stride 2 keeps the corners of the same output */
    s.stride = 2;
    CHECK(dm_conv2d_out_h(&s) == 2 && dm_conv2d_out_w(&s) == 2, "stride-2 output size");
    dm_conv2d_forward_ref(y, x, laplace, &bias, &s, 1);
    const double want_stride2[4] = {2.5, -3.5, -15.5, -21.5};
    tu_check_array("forward by hand: laplacian, stride 2", y, want_stride2, 4, 0, 0);

    /* an asymmetric kernel catches a flipped one: the top-left tap reads x[oy - 1][ox - 1]
     * (cross-correlation, as in PyTorch) */
    const float top_left[9] = {1, 0, 0, 0, 0, 0, 0, 0, 0};
    s.stride = 1;
    dm_conv2d_forward_ref(y, x, top_left, NULL, &s, 1);
    const double want_shift[9] = {0, 0, 0, 0, 1, 2, 0, 4, 5};
    tu_check_array("forward by hand: top-left tap", y, want_shift, 9, 0, 0);

    /* 1x1, two channels in, two out, two images: y[o] = sum_c w[o][c] x[c] + b[o] */
    const float x2[2 * 2 * 2] = {1, 2, 3, 4, /* image 0 */ -1, 0, 0.5f, 2 /* image 1 */};
    const float w2[4] = {1, 10, -2, 0.5f}, b2[2] = {0, 100};
    float y2[8];
    dm_conv2d_shape s1 = {.cin = 2, .cout = 2, .H = 1, .W = 2, .k = 1, .stride = 1, .pad = 0};
    dm_conv2d_forward_ref(y2, x2, w2, b2, &s1, 2);
    const double want_1x1[8] = {31, 42, 99.5, 98, 4, 20, 102.25, 101};
    tu_check_array("forward by hand: 1x1", y2, want_1x1, 8, 0, 0);
}

/* ---- naive backward against central differences of the naive forward */

/* L = sum(y * G) in double */
static double conv_loss(const float *x, const float *w, const float *b, const float *G,
                        const dm_conv2d_shape *s, int64_t B, float *ybuf) {
    dm_conv2d_forward_ref(ybuf, x, w, b, s, B);
    const size_t ny = (size_t)(B * s->cout * dm_conv2d_out_h(s) * dm_conv2d_out_w(s));
    double L = 0;
    for (size_t i = 0; i < ny; i++) L += (double)ybuf[i] * G[i];
    return L;
}

/* L is linear in every single entry, so a large step has no truncation error; dividing by the
 * step actually taken (after float rounding) leaves only the rounding of the few outputs the
 * entry touches (the rest are bitwise the same in both evaluations). */
static double central_difference(float *v, const float *x, const float *w, const float *b,
                                 const float *G, const dm_conv2d_shape *s, int64_t B,
                                 float *ybuf) {
    const float h = 0.25f, keep = *v;
    const float up = keep + h, down = keep - h;
    *v = up;
    const double lp = conv_loss(x, w, b, G, s, B, ybuf);
    *v = down;
    const double lm = conv_loss(x, w, b, G, s, B, ybuf);
    *v = keep;
    return (lp - lm) / ((double)up - (double)down);
}

static void test_backward_ref_fd(int64_t cin, int64_t cout, int64_t H, int64_t W, int k,
                                 int stride, int pad) {
    const int64_t B = 2;
    const dm_conv2d_shape s = {cin, cout, H, W, k, stride, pad};
    const size_t nx = (size_t)(B * cin * H * W), nw = (size_t)(cout * cin * k * k);
    const size_t ny = (size_t)(B * cout * dm_conv2d_out_h(&s) * dm_conv2d_out_w(&s));
    float *x = malloc(nx * sizeof *x), *w = malloc(nw * sizeof *w);
    float *b = malloc((size_t)cout * sizeof *b), *G = malloc(ny * sizeof *G);
    float *ybuf = malloc(ny * sizeof *ybuf);
    fill_normal(x, nx, 1, 1.0f);
    fill_normal(w, nw, 2, 1.0f);
    fill_normal(b, (size_t)cout, 3, 1.0f);
    fill_normal(G, ny, 4, 1.0f);
    double *gx = malloc(nx * sizeof *gx), *gw = malloc(nw * sizeof *gw);
    double *gb = malloc((size_t)cout * sizeof *gb);
    for (size_t i = 0; i < nx; i++) gx[i] = central_difference(&x[i], x, w, b, G, &s, B, ybuf);
    for (size_t i = 0; i < nw; i++) gw[i] = central_difference(&w[i], x, w, b, G, &s, B, ybuf);
    for (int64_t i = 0; i < cout; i++)
        gb[i] = central_difference(&b[i], x, w, b, G, &s, B, ybuf);

    /* pre-filled gradients: the backward must add, twice giving start + 2 gradient */
    const float start = 0.5f;
    float *dx = malloc(nx * sizeof *dx), *dw = malloc(nw * sizeof *dw);
    float *db = malloc((size_t)cout * sizeof *db);
    fill_const(dx, nx, start);
    fill_const(dw, nw, start);
    fill_const(db, (size_t)cout, start);
    dm_conv2d_backward_ref(dx, dw, db, G, x, w, &s, B);
    dm_conv2d_backward_ref(dx, dw, db, G, x, w, &s, B);
    for (size_t i = 0; i < nx; i++) gx[i] = start + 2 * gx[i];
    for (size_t i = 0; i < nw; i++) gw[i] = start + 2 * gw[i];
    for (int64_t i = 0; i < cout; i++) gb[i] = start + 2 * gb[i];
    /* the differences carry the rounding of about k^2 cout (dx) or B HoWo (dw, db) float outputs
     * of size ~5, relative 6e-8, over a step of 0.5: a few 1e-6 at most */
    char what[160];
    shape_name(what, sizeof what, "naive backward vs finite differences, dx:", &s, B);
    tu_check_array(what, dx, gx, nx, 2e-5, 2e-5);
    shape_name(what, sizeof what, "naive backward vs finite differences, dw:", &s, B);
    tu_check_array(what, dw, gw, nw, 2e-5, 2e-5);
    shape_name(what, sizeof what, "naive backward vs finite differences, db:", &s, B);
    tu_check_array(what, db, gb, (size_t)cout, 2e-5, 2e-5);

    /* NULL dx and db are skipped */
    fill_const(dw, nw, 0.0f);
    dm_conv2d_backward_ref(NULL, dw, NULL, G, x, w, &s, B);
    for (size_t i = 0; i < nw; i++) gw[i] = (gw[i] - start) / 2;
    shape_name(what, sizeof what, "naive backward, dx and db NULL, dw:", &s, B);
    tu_check_array(what, dw, gw, nw, 2e-5, 2e-5);

    free(x); free(w); free(b); free(G); free(ybuf); free(gx); free(gw); free(gb);
    free(dx); free(dw); free(db);
}

/* ---- fast path against the naive one */

/* Sizes of one case's tensors. */
typedef struct {
    size_t nx, nw, ny;
} sizes;

static sizes case_sizes(const dm_conv2d_shape *s, int64_t B) {
    sizes z;
    z.nx = (size_t)(B * s->cin * s->H * s->W);
    z.nw = (size_t)(s->cout * s->cin * s->k * s->k);
    z.ny = (size_t)(B * s->cout * dm_conv2d_out_h(s) * dm_conv2d_out_w(s));
    return z;
}

/* Scratch sized for the current thread count, filled with NaN so that reading a piece before
 * writing it shows up in the results. */
static float *make_work(const dm_conv2d_shape *s, int64_t B) {
    size_t n = dm_conv2d_work_floats(s, B);
    float *work = malloc((n ? n : 1) * sizeof *work);
    fill_const(work, n, NAN);
    return work;
}

static void test_fast(int64_t cin, int64_t cout, int64_t H, int64_t W, int k, int stride,
                      int pad, int64_t B) {
    const dm_conv2d_shape s = {cin, cout, H, W, k, stride, pad};
    const sizes z = case_sizes(&s, B);
    const int64_t K = cin * k * k, HWo = dm_conv2d_out_h(&s) * dm_conv2d_out_w(&s);
    float *x = malloc(z.nx * sizeof *x), *w = malloc(z.nw * sizeof *w);
    float *b = malloc((size_t)cout * sizeof *b), *dy = malloc(z.ny * sizeof *dy);
    fill_normal(x, z.nx, 11, 1.0f);
    fill_normal(w, z.nw, 12, 1.0f / sqrtf((float)K)); /* outputs of order 1 */
    fill_normal(b, (size_t)cout, 13, 1.0f);
    fill_normal(dy, z.ny, 14, 1.0f);

    /* references: y, and the gradients added onto start values */
    const float start_x = 0.5f, start_w = -0.25f, start_b = 2.0f;
    float *y = malloc(z.ny * sizeof *y), *dx = malloc(z.nx * sizeof *dx);
    float *dw = malloc(z.nw * sizeof *dw), *db = malloc((size_t)cout * sizeof *db);
    dm_conv2d_forward_ref(y, x, w, b, &s, B);
    double *want_y = to_double(y, z.ny);
    dm_conv2d_forward_ref(y, x, w, NULL, &s, B);
    double *want_y_nobias = to_double(y, z.ny);
    fill_const(dx, z.nx, start_x);
    fill_const(dw, z.nw, start_w);
    fill_const(db, (size_t)cout, start_b);
    dm_conv2d_backward_ref(dx, dw, db, dy, x, w, &s, B);
    double *want_dx = to_double(dx, z.nx), *want_dw = to_double(dw, z.nw);
    double *want_db = to_double(db, (size_t)cout);

    /* Float sums of products of order-1 values: the forward sums K of them (scaled to order 1),
     * dx sums cout k^2, dw and db sum B HoWo, whose partial sums grow like sqrt(terms);
     * rounding stays below terms * 6e-8 with a wide margin. */
    const double tol_y = 1e-5, tol_dx = 1e-7 * (double)(cout * k * k) + 1e-5;
    const double tol_dw = 1e-7 * (double)(B * HWo) + 1e-5;
    char what[192];
    for (int run = 0; run < 4; run++) {
        const int threads = 1 + run % 2;
        dm_set_conv_backend(run < 2 ? DM_CONV_AUTO : DM_CONV_IM2COL);
        omp_set_num_threads(threads);
        float *work = make_work(&s, B);
        char ctx[96];
        snprintf(ctx, sizeof ctx, "%s, %d thread%s,", dm_conv2d_impl(&s, B), threads,
                 threads > 1 ? "s" : "");

        fill_const(y, z.ny, 1e30f); /* the forward overwrites */
        dm_conv2d_forward(y, x, w, b, &s, B, work, cache);
        snprintf(ctx + strlen(ctx), sizeof ctx - strlen(ctx), " y:");
        shape_name(what, sizeof what, ctx, &s, B);
        tu_check_array(what, y, want_y, z.ny, tol_y, tol_y);
        fill_const(y, z.ny, 1e30f);
        dm_conv2d_forward(y, x, w, NULL, &s, B, work, cache);
        shape_name(what, sizeof what, "  ... without bias, y:", &s, B);
        tu_check_array(what, y, want_y_nobias, z.ny, tol_y, tol_y);

        fill_const(dx, z.nx, start_x);
        fill_const(dw, z.nw, start_w);
        fill_const(db, (size_t)cout, start_b);
        dm_conv2d_backward(dx, dw, db, dy, x, w, &s, B, work, cache);
        shape_name(what, sizeof what, "  ... added dx:", &s, B);
        tu_check_array(what, dx, want_dx, z.nx, tol_dx, 1e-5);
        shape_name(what, sizeof what, "  ... added dw:", &s, B);
        tu_check_array(what, dw, want_dw, z.nw, tol_dw, 1e-5);
        shape_name(what, sizeof what, "  ... added db:", &s, B);
        tu_check_array(what, db, want_db, (size_t)cout, tol_dw, 1e-5);

        /* without dx (and then without db): the weight gradients alone, dx untouched */
        fill_const(dw, z.nw, start_w);
        fill_const(db, (size_t)cout, start_b);
        dm_conv2d_backward(NULL, dw, db, dy, x, w, &s, B, work, cache);
        shape_name(what, sizeof what, "  ... dx NULL, dw:", &s, B);
        tu_check_array(what, dw, want_dw, z.nw, tol_dw, 1e-5);
        shape_name(what, sizeof what, "  ... dx NULL, db:", &s, B);
        tu_check_array(what, db, want_db, (size_t)cout, tol_dw, 1e-5);
        fill_const(dw, z.nw, start_w);
        dm_conv2d_backward(NULL, dw, NULL, dy, x, w, &s, B, work, cache);
        shape_name(what, sizeof what, "  ... dx and db NULL, dw:", &s, B);
        tu_check_array(what, dw, want_dw, z.nw, tol_dw, 1e-5);
        free(work);
    }
    dm_set_conv_backend(DM_CONV_AUTO);
    free(x); free(w); free(b); free(dy); free(y); free(dx); free(dw); free(db);
    free(want_y); free(want_y_nobias); free(want_dx); free(want_dw); free(want_db);
}

/* Same inputs, same thread count: bitwise the same weight gradients on every call. */
static void test_fast_repeatable(void) {
    const dm_conv2d_shape s = {24, 40, 13, 11, 3, 2, 1};
    const int64_t B = 5;
    const sizes z = case_sizes(&s, B);
    float *x = malloc(z.nx * sizeof *x), *w = malloc(z.nw * sizeof *w);
    float *dy = malloc(z.ny * sizeof *dy);
    float *dw1 = calloc(z.nw, sizeof *dw1), *dw2 = calloc(z.nw, sizeof *dw2);
    fill_normal(x, z.nx, 21, 1.0f);
    fill_normal(w, z.nw, 22, 0.1f);
    fill_normal(dy, z.ny, 23, 1.0f);
    omp_set_num_threads(2);
    float *work = make_work(&s, B);
    for (int backend = DM_CONV_AUTO; backend <= DM_CONV_IM2COL; backend++) {
        dm_set_conv_backend((dm_conv_backend)backend);
        memset(dw1, 0, z.nw * sizeof *dw1);
        memset(dw2, 0, z.nw * sizeof *dw2);
        dm_conv2d_backward(NULL, dw1, NULL, dy, x, w, &s, B, work, cache);
        dm_conv2d_backward(NULL, dw2, NULL, dy, x, w, &s, B, work, cache);
        CHECK(memcmp(dw1, dw2, z.nw * sizeof *dw1) == 0, "%s: two identical backward calls differ",
              dm_conv2d_impl(&s, B));
    }
    dm_set_conv_backend(DM_CONV_AUTO);
    free(x); free(w); free(dy); free(dw1); free(dw2); free(work);
}

#ifdef DM_HAVE_DNNL
/* ||a - b|| / ||b||. */
static double rel_error(const float *a, const double *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        num += (a[i] - b[i]) * (a[i] - b[i]);
        den += b[i] * b[i];
    }
    return sqrt(num / (den > 0 ? den : 1));
}
#endif

/* float -> bfloat16 -> float, rounding to nearest even (x finite): the top 16 bits kept */
static float bf16_round(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    u = (u + 0x7FFFu + ((u >> 16) & 1u)) & 0xFFFF0000u;
    memcpy(&x, &u, sizeof u);
    return x;
}

/* (v_i)^2 and (bf16(v_i) - v_i)^2 */
static void squares(const float *v, size_t n, float *sq, float *dsq) {
    for (size_t i = 0; i < n; i++) {
        const float d = bf16_round(v[i]) - v[i];
        sq[i] = v[i] * v[i];
        dsq[i] = d * d;
    }
}

static double sum_of(const float *v, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += v[i];
    return s;
}

static double norm_of(const double *v, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += v[i] * v[i];
    return sqrt(s);
}

/* bfloat16 products (oneDNN): x, w and dy rounded to bfloat16 (8 significant bits) on their way
 * into each product, sums in float32, results float32. The error of each result is then, to
 * first order, the sum over its terms of (rounding error of one factor) x (the other factor):
 * y: conv(dx0, w) + conv(x, dw0), dx: convT(ddy, w) + convT(dy, dw0), dw: corr(ddy, x) +
 * corr(dy, dx0), db: sum of ddy, with d. = bf16(.) - . the roundings of the inputs. Roundings are
 * unbiased and independent from term to term, so the expected squared norm of each error is the
 * same sums over the squares: the references run on squared inputs (conv(dx0^2, w^2) + ...)
 * give it exactly for these inputs. That prediction depends on the data: about 0.23% of the
 * norm for dx and dw (two rounded factors of 8 bits: sqrt(2) x 2^-8 / sqrt(3) x 0.74 for
 * Gaussian mantissas), less for db (one rounded factor) and y (its float32 bias is not rounded
 * and adds to the norm). Checked from both sides: the measured relative error lies within 6% of
 * the prediction for y, dx and dw, whose norms sum thousands of independent squared errors
 * (relative spread 1 / sqrt(2 n): 1.4% for the smallest, y of the strided case with n = 2400;
 * 6% is 4 of those), and within 40% for db, only cout channels (spread 1 / sqrt(2 cout) =
 * 11-13%, 3 standard deviations). A kernel that did not round (the
 * float32 path, 1000x closer) fails the lower side, one that lost more bits (float16's range,
 * a truncation instead of rounding) the upper. */
static void test_bf16(int64_t cin, int64_t cout, int64_t H, int64_t W, int k, int stride,
                      int pad, int64_t B) {
#ifdef DM_HAVE_DNNL
    const dm_conv2d_shape s = {cin, cout, H, W, k, stride, pad};
    const sizes z = case_sizes(&s, B);
    float *x = malloc(z.nx * sizeof *x), *w = malloc(z.nw * sizeof *w);
    float *b = malloc((size_t)cout * sizeof *b), *dy = malloc(z.ny * sizeof *dy);
    float *y = malloc(z.ny * sizeof *y), *dx = calloc(z.nx, sizeof *dx);
    float *dw = calloc(z.nw, sizeof *dw), *db = calloc((size_t)cout, sizeof *db);
    fill_normal(x, z.nx, 31, 1.0f);
    fill_normal(w, z.nw, 32, 1.0f / sqrtf((float)(cin * k * k)));
    fill_normal(b, (size_t)cout, 33, 1.0f);
    fill_normal(dy, z.ny, 34, 1.0f);
    dm_conv2d_forward_ref(y, x, w, b, &s, B);
    double *want_y = to_double(y, z.ny);
    dm_conv2d_backward_ref(dx, dw, db, dy, x, w, &s, B);
    double *want_dx = to_double(dx, z.nx), *want_dw = to_double(dw, z.nw);
    double *want_db = to_double(db, (size_t)cout);

    /* the predicted squared error norms, from the references on squared inputs */
    float *x2 = malloc(z.nx * sizeof *x2), *dx02 = malloc(z.nx * sizeof *dx02);
    float *w2 = malloc(z.nw * sizeof *w2), *dw02 = malloc(z.nw * sizeof *dw02);
    float *dy2 = malloc(z.ny * sizeof *dy2), *ddy2 = malloc(z.ny * sizeof *ddy2);
    float *ey = malloc(z.ny * sizeof *ey), *ey2 = malloc(z.ny * sizeof *ey2);
    float *edx = calloc(z.nx, sizeof *edx), *edw = calloc(z.nw, sizeof *edw);
    float *edb = calloc((size_t)cout, sizeof *edb), *unused = calloc((size_t)cout, sizeof *unused);
    squares(x, z.nx, x2, dx02);
    squares(w, z.nw, w2, dw02);
    squares(dy, z.ny, dy2, ddy2);
    dm_conv2d_forward_ref(ey, dx02, w2, NULL, &s, B);
    dm_conv2d_forward_ref(ey2, x2, dw02, NULL, &s, B);
    dm_conv2d_backward_ref(edx, edw, edb, ddy2, x2, w2, &s, B);    /* ddy against w and x */
    dm_conv2d_backward_ref(edx, edw, unused, dy2, dx02, dw02, &s, B); /* dy against dw0, dx0 */
    const double pred[4] = {sqrt(sum_of(ey, z.ny) + sum_of(ey2, z.ny)) / norm_of(want_y, z.ny),
                            sqrt(sum_of(edx, z.nx)) / norm_of(want_dx, z.nx),
                            sqrt(sum_of(edw, z.nw)) / norm_of(want_dw, z.nw),
                            sqrt(sum_of(edb, (size_t)cout)) / norm_of(want_db, (size_t)cout)};

    omp_set_num_threads(2);
    dm_set_conv_precision(DM_PRECISION_BF16);
    const char *impl = dm_conv2d_impl(&s, B);
    float *work = make_work(&s, B);
    dm_conv2d_forward(y, x, w, b, &s, B, work, cache);
    memset(dx, 0, z.nx * sizeof *dx);
    memset(dw, 0, z.nw * sizeof *dw);
    memset(db, 0, (size_t)cout * sizeof *db);
    dm_conv2d_backward(dx, dw, db, dy, x, w, &s, B, work, cache);
    dm_set_conv_precision(DM_PRECISION_FP32);
    char what[256];
    const struct {
        const char *name;
        const float *got;
        const double *want;
        size_t n;
        double band; /* allowed relative distance from the prediction */
    } results[] = {{"y", y, want_y, z.ny, 0.06},
                   {"dx", dx, want_dx, z.nx, 0.06},
                   {"dw", dw, want_dw, z.nw, 0.06},
                   {"db", db, want_db, (size_t)cout, 0.40}};
    for (size_t i = 0; i < sizeof results / sizeof results[0]; i++) {
        const double e = rel_error(results[i].got, results[i].want, results[i].n);
        const double lo = (1 - results[i].band) * pred[i], hi = (1 + results[i].band) * pred[i];
        snprintf(what, sizeof what, "bf16 (%s) %s: relative error %.3g, predicted %.3g", impl,
                 results[i].name, e, pred[i]);
        shape_name(what + strlen(what), sizeof what - strlen(what), ",", &s, B);
        printf("%s\n", what);
        CHECK(e >= lo && e <= hi, "%s, want %.3g..%.3g", what, lo, hi);
    }
    free(work);
    free(x); free(w); free(b); free(dy); free(y); free(dx); free(dw); free(db);
    free(want_y); free(want_dx); free(want_dw); free(want_db);
    free(x2); free(dx02); free(w2); free(dw02); free(dy2); free(ddy2);
    free(ey); free(ey2); free(edx); free(edw); free(edb); free(unused);
#endif
}

/* Built with oneDNN, the UNet's convolutions must take its path (else the cases above tested
 * im2col twice). */
static void test_dnnl_taken(void) {
#ifdef DM_HAVE_DNNL
    const dm_conv2d_shape s = {32, 32, 28, 28, 3, 1, 1};
    omp_set_num_threads(2);
    const char *impl = dm_conv2d_impl(&s, 4);
    printf("oneDNN implementation of a 32 -> 32 3x3 convolution: %s\n", impl);
    CHECK(strcmp(impl, "im2col+sgemm") != 0, "built with oneDNN, yet a 32-channel 3x3 runs %s",
          impl);
#else
    printf("built without oneDNN: only the im2col path was tested\n");
#endif
}

int main(void) {
    CHECK(dm_conv_cache_create(&cache, NULL) == DM_OK, "a convolution cache");
    test_forward_by_hand();

    /* cin, cout, H, W, k, stride, pad: odd H != W, cin != cout, every k/stride/pad mix */
    test_backward_ref_fd(2, 3, 5, 4, 3, 1, 1);
    test_backward_ref_fd(2, 3, 7, 5, 3, 2, 1);
    test_backward_ref_fd(3, 2, 5, 6, 3, 1, 0);
    test_backward_ref_fd(2, 3, 7, 6, 3, 2, 0);
    test_backward_ref_fd(3, 2, 5, 4, 1, 1, 0);
    test_backward_ref_fd(2, 3, 5, 7, 1, 2, 0);
    test_backward_ref_fd(2, 2, 3, 4, 1, 2, 1);

    /* cin, cout, H, W, k, stride, pad, B. Small odd shapes (serial path). */
    test_fast(3, 5, 7, 5, 3, 1, 1, 3);
    test_fast(3, 5, 7, 5, 3, 2, 1, 3);
    test_fast(3, 5, 7, 5, 3, 1, 0, 3);
    test_fast(3, 5, 7, 5, 1, 1, 0, 3);
    test_fast(3, 5, 7, 5, 1, 2, 0, 3);
    test_fast(4, 6, 9, 11, 3, 2, 0, 2);
    test_fast(2, 3, 5, 4, 1, 1, 1, 2);
    test_fast(5, 6, 3, 3, 3, 1, 1, 9); /* tiny images, several per GEMM, a short last group */
    test_fast(6, 5, 4, 4, 1, 1, 0, 7); /* 1x1 straight from x, images one by one */
    test_fast(6, 5, 5, 4, 1, 2, 0, 7); /* 1x1 stride 2, images batched */
    test_fast(3, 4, 5, 6, 1, 2, 1, 3); /* 1x1 stride 2 with padding */
    test_fast(3, 4, 6, 7, 3, 2, 1, 3); /* stride 2: even H, odd W */
    test_fast(4, 6, 6, 5, 3, 1, 1, 1); /* one image */
    test_fast(3, 5, 1, 5, 3, 1, 1, 2); /* one row, one column, two rows: taps off the image */
    test_fast(3, 5, 6, 1, 3, 1, 1, 2);
    test_fast(3, 5, 2, 3, 3, 1, 1, 2);
    test_fast(2, 3, 1, 1, 3, 2, 1, 2); /* a single pixel, stride 2 */
    /* few output channels (no GEMM), the same corner cases */
    test_fast(5, 3, 7, 5, 3, 1, 1, 3);
    test_fast(4, 1, 6, 5, 3, 1, 1, 1);
    test_fast(3, 2, 1, 5, 3, 1, 1, 2);
    test_fast(3, 4, 6, 1, 3, 1, 1, 2);
    test_fast(3, 2, 2, 3, 3, 1, 1, 2);
    test_fast(16, 3, 15, 13, 3, 1, 1, 16); /* threaded */
    /* cin > cout, size-keeping 3x3: dx computed as a convolution of dy */
    test_fast(6, 5, 7, 5, 3, 1, 1, 3);
    test_fast(40, 24, 15, 13, 3, 1, 1, 5); /* threaded, a short last group */
    test_fast(64, 32, 28, 28, 3, 1, 1, 2); /* one image per GEMM */
    /* big enough for the threaded path: odd sizes, a short last group, 1x1 */
    test_fast(16, 24, 15, 13, 3, 1, 1, 5);
    test_fast(24, 40, 13, 11, 3, 2, 1, 5);
    test_fast(40, 48, 15, 13, 1, 1, 0, 5);
    /* UNet-like layers at a small batch */
    test_fast(1, 32, 28, 28, 3, 1, 1, 2);
    test_fast(32, 32, 28, 28, 3, 1, 1, 2);
    test_fast(32, 32, 28, 28, 3, 2, 1, 2);
    test_fast(32, 64, 14, 14, 3, 1, 1, 4);
    test_fast(64, 64, 14, 14, 3, 2, 1, 4);
    test_fast(128, 64, 7, 7, 3, 1, 1, 7);
    test_fast(64, 32, 28, 28, 1, 1, 0, 2); /* 1x1 straight from x */
    test_fast(128, 64, 7, 7, 1, 1, 0, 7);
    test_fast(32, 1, 28, 28, 3, 1, 1, 2);
    /* oneDNN's blocked layouts with channels that do not fill a block of 16, pad 0, 1x1
     * stride 2, one image */
    test_fast(12, 20, 9, 7, 3, 1, 1, 3);
    test_fast(24, 8, 9, 10, 3, 1, 0, 2);
    test_fast(8, 40, 9, 9, 1, 2, 0, 3);
    test_fast(48, 24, 6, 5, 3, 2, 1, 1);
    test_fast_repeatable();
    test_dnnl_taken();
    test_bf16(32, 32, 14, 14, 3, 1, 1, 4);
    test_bf16(24, 40, 9, 7, 3, 2, 1, 3);
    test_bf16(64, 32, 7, 7, 1, 1, 0, 5);

    dm_conv_cache_free(cache);
    return tu_finish("test_conv2d");
}
