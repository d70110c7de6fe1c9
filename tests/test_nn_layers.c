/* Layers against naive double-precision references and finite differences: linear, SiLU,
 * sinusoidal timestep embedding. */
#include "nn/nn.h"
#include "test_util.h"

#include <string.h>

static void fill_normal(float *v, size_t n, uint64_t seed) {
    dm_rng rng;
    dm_rng_init(&rng, seed, 7);
    dm_rng_normal(&rng, v, n);
}

/* y (B, out) = x W^T + b in double, the twin of dm_linear_forward */
static void naive_linear(double *y, const double *x, const double *w, const double *b, int64_t B,
                         int64_t in, int64_t out) {
    for (int64_t r = 0; r < B; r++)
        for (int64_t o = 0; o < out; o++) {
            double s = b ? b[o] : 0.0;
            for (int64_t i = 0; i < in; i++) s += x[r * in + i] * w[o * in + i];
            y[r * out + o] = s;
        }
}

static double *to_double(const float *v, size_t n) {
    double *d = malloc(n * sizeof *d);
    for (size_t i = 0; i < n; i++) d[i] = v[i];
    return d;
}

static void test_linear_forward(int64_t B, int64_t in, int64_t out, bool bias) {
    float *x = malloc((size_t)(B * in) * sizeof *x), *w = malloc((size_t)(out * in) * sizeof *w);
    float *b = malloc((size_t)out * sizeof *b), *y = malloc((size_t)(B * out) * sizeof *y);
    fill_normal(x, (size_t)(B * in), 1);
    fill_normal(w, (size_t)(out * in), 2);
    fill_normal(b, (size_t)out, 3);
    for (int64_t i = 0; i < B * out; i++) y[i] = 1e30f; /* forward must overwrite, not add */
    dm_linear_forward(y, x, w, bias ? b : NULL, B, in, out);
    double *xd = to_double(x, (size_t)(B * in)), *wd = to_double(w, (size_t)(out * in));
    double *bd = to_double(b, (size_t)out), *yd = malloc((size_t)(B * out) * sizeof *yd);
    naive_linear(yd, xd, wd, bias ? bd : NULL, B, in, out);
    char what[96];
    snprintf(what, sizeof what, "linear forward B=%lld in=%lld out=%lld bias=%d", (long long)B,
             (long long)in, (long long)out, bias);
    /* float sums of `in` products of N(0,1) values: rounding grows like sqrt(in) * 6e-8 * |terms|,
     * below 1e-5 for in <= 100 */
    tu_check_array(what, y, yd, (size_t)(B * out), 1e-5, 1e-5);
    free(x); free(w); free(b); free(y); free(xd); free(wd); free(bd); free(yd);
}

/* L = sum(y * G) with y from the double forward */
static double linear_loss(const double *x, const double *w, const double *b, const double *G,
                          int64_t B, int64_t in, int64_t out, double *ybuf) {
    naive_linear(ybuf, x, w, b, B, in, out);
    double L = 0;
    for (int64_t i = 0; i < B * out; i++) L += ybuf[i] * G[i];
    return L;
}

/* Central difference of linear_loss along v[i]. L is linear in every entry, so the difference
 * is exact up to rounding (about 1e-12 here), a sharp reference for the float gradients. */
static double fd(double *v, size_t i, const double *x, const double *w, const double *b,
                 const double *G, int64_t B, int64_t in, int64_t out, double *ybuf) {
    const double h = 1e-3, keep = v[i];
    v[i] = keep + h;
    double lp = linear_loss(x, w, b, G, B, in, out, ybuf);
    v[i] = keep - h;
    double lm = linear_loss(x, w, b, G, B, in, out, ybuf);
    v[i] = keep;
    return (lp - lm) / (2 * h);
}

static void test_linear_backward(int64_t B, int64_t in, int64_t out) {
    const size_t nx = (size_t)(B * in), nw = (size_t)(out * in), ny = (size_t)(B * out);
    float *x = malloc(nx * sizeof *x), *w = malloc(nw * sizeof *w), *b = malloc(out * sizeof *b);
    float *G = malloc(ny * sizeof *G);
    fill_normal(x, nx, 11);
    fill_normal(w, nw, 12);
    fill_normal(b, (size_t)out, 13);
    fill_normal(G, ny, 14);
    double *xd = to_double(x, nx), *wd = to_double(w, nw), *bd = to_double(b, (size_t)out);
    double *Gd = to_double(G, ny), *ybuf = malloc(ny * sizeof *ybuf);
    double *gx = malloc(nx * sizeof *gx), *gw = malloc(nw * sizeof *gw);
    double *gb = malloc((size_t)out * sizeof *gb);
    for (size_t i = 0; i < nx; i++) gx[i] = fd(xd, i, xd, wd, bd, Gd, B, in, out, ybuf);
    for (size_t i = 0; i < nw; i++) gw[i] = fd(wd, i, xd, wd, bd, Gd, B, in, out, ybuf);
    for (int64_t i = 0; i < out; i++) gb[i] = fd(bd, (size_t)i, xd, wd, bd, Gd, B, in, out, ybuf);

    /* start from a non-zero value to see that backward adds: want = start + k * gradient */
    const float start = 0.5f;
    float *dx = malloc(nx * sizeof *dx), *dw = malloc(nw * sizeof *dw);
    float *db = malloc((size_t)out * sizeof *db);
    for (size_t i = 0; i < nx; i++) dx[i] = start;
    for (size_t i = 0; i < nw; i++) dw[i] = start;
    for (int64_t i = 0; i < out; i++) db[i] = start;
    double *want = malloc((nx > nw ? nx : nw) * sizeof *want);
    char what[96];
    for (int k = 1; k <= 2; k++) {
        dm_linear_backward(dx, dw, db, G, x, w, B, in, out);
        /* each gradient is a float sum of B (dw, db) or out (dx) products of N(0,1) values:
         * rounding well below 1e-5 for these sizes */
        snprintf(what, sizeof what, "linear dx (B=%lld in=%lld out=%lld), call %d", (long long)B,
                 (long long)in, (long long)out, k);
        for (size_t i = 0; i < nx; i++) want[i] = start + k * gx[i];
        tu_check_array(what, dx, want, nx, 1e-5, 1e-5);
        snprintf(what, sizeof what, "linear dw (B=%lld in=%lld out=%lld), call %d", (long long)B,
                 (long long)in, (long long)out, k);
        for (size_t i = 0; i < nw; i++) want[i] = start + k * gw[i];
        tu_check_array(what, dw, want, nw, 1e-5, 1e-5);
        snprintf(what, sizeof what, "linear db (B=%lld in=%lld out=%lld), call %d", (long long)B,
                 (long long)in, (long long)out, k);
        for (int64_t i = 0; i < out; i++) want[i] = start + k * gb[i];
        tu_check_array(what, db, want, (size_t)out, 1e-5, 1e-5);
    }
    /* NULL dx and db are skipped; dw still accumulates */
    dm_linear_backward(NULL, dw, NULL, G, x, w, B, in, out);
    for (size_t i = 0; i < nw; i++) want[i] = start + 3 * gw[i];
    tu_check_array("linear dw with NULL dx, db", dw, want, nw, 1e-5, 1e-5);
    /* the bias part alone */
    for (int64_t i = 0; i < out; i++) db[i] = 0.0f;
    dm_bias_backward(db, G, B, out);
    tu_check_array("bias backward", db, gb, (size_t)out, 1e-5, 1e-5);

    free(x); free(w); free(b); free(G); free(xd); free(wd); free(bd); free(Gd); free(ybuf);
    free(gx); free(gw); free(gb); free(dx); free(dw); free(db); free(want);
}

/* Larger shapes, parallel paths included, against the closed forms in double: dx = G W,
 * dw = G^T x, db = colsum G (the finite-difference cases above pin these formulas down). */
static void test_linear_backward_large(int64_t B, int64_t in, int64_t out) {
    const size_t nx = (size_t)(B * in), nw = (size_t)(out * in), ny = (size_t)(B * out);
    float *x = malloc(nx * sizeof *x), *w = malloc(nw * sizeof *w), *G = malloc(ny * sizeof *G);
    fill_normal(x, nx, 31);
    fill_normal(w, nw, 32);
    fill_normal(G, ny, 33);
    float *dx = calloc(nx, sizeof *dx), *dw = calloc(nw, sizeof *dw);
    float *db = calloc((size_t)out, sizeof *db);
    double *gx = calloc(nx, sizeof *gx), *gw = calloc(nw, sizeof *gw);
    double *gb = calloc((size_t)out, sizeof *gb);
    for (int64_t r = 0; r < B; r++)
        for (int64_t o = 0; o < out; o++) {
            const double g = G[r * out + o];
            gb[o] += g;
            for (int64_t i = 0; i < in; i++) {
                gx[r * in + i] += g * w[o * in + i];
                gw[o * in + i] += g * x[r * in + i];
            }
        }
    dm_linear_backward(dx, dw, db, G, x, w, B, in, out);
    char what[96];
    /* float sums of up to B = 600 products of N(0,1) values: partial sums reach ~25, so
     * rounding of order sqrt(600) * 25 * 6e-8 = 4e-5 is expected, whatever the result's size */
    snprintf(what, sizeof what, "linear dx (B=%lld in=%lld out=%lld)", (long long)B,
             (long long)in, (long long)out);
    tu_check_array(what, dx, gx, nx, 1e-4, 1e-5);
    snprintf(what, sizeof what, "linear dw (B=%lld in=%lld out=%lld)", (long long)B,
             (long long)in, (long long)out);
    tu_check_array(what, dw, gw, nw, 1e-4, 1e-5);
    snprintf(what, sizeof what, "linear db (B=%lld in=%lld out=%lld)", (long long)B,
             (long long)in, (long long)out);
    tu_check_array(what, db, gb, (size_t)out, 1e-4, 1e-5);
    free(x); free(w); free(G); free(dx); free(dw); free(db); free(gx); free(gw); free(gb);
}

/* C += A^T Bm through a transposed, strided view; entries outside the view stay untouched. */
static void test_gemm_tn_skinny(void) {
    const int64_t R = 300, P = 5, Q = 130, ldc = P + 3; /* C^T stored as (Q, ldc) */
    float *A = malloc(R * P * sizeof *A), *Bm = malloc(R * Q * sizeof *Bm);
    float *C = malloc(Q * ldc * sizeof *C);
    double *want = malloc(Q * ldc * sizeof *want);
    fill_normal(A, (size_t)(R * P), 41);
    fill_normal(Bm, (size_t)(R * Q), 42);
    for (int64_t i = 0; i < Q * ldc; i++) C[i] = want[i] = 0.25;
    for (int64_t p = 0; p < P; p++)
        for (int64_t q = 0; q < Q; q++) {
            double s = 0;
            for (int64_t r = 0; r < R; r++) s += (double)A[r * P + p] * Bm[r * Q + q];
            want[q * ldc + p] += s;
        }
    dm_gemm_tn_skinny(C, 1, ldc, A, P, Bm, Q, R, P, Q);
    /* float sums of 300 products of N(0,1) values: partial sums ~17, rounding ~2e-5 */
    tu_check_array("gemm_tn_skinny transposed view", C, want, (size_t)(Q * ldc), 1e-4, 1e-5);
    free(A); free(Bm); free(C); free(want);
}

static double silu_d(double x) { return x / (1.0 + exp(-x)); }

static void test_silu(void) {
    /* expected values from python3: x / (1 + math.exp(-x)) */
    const float xs[] = {0, 1, -1, 5, -20, 20, 0.5f, -3};
    const double want[] = {0, 0.7310585786300049, -0.2689414213699951, 4.9665357453785761,
                           -4.1223072363804073e-08, 19.999999958776925, 0.3112296656009273,
                           -0.14227761953270035};
    float y[8];
    dm_silu_forward(y, xs, 8);
    /* the vectorised exp is within about 3 float ulps (2e-7 relative, measured): 1e-6 relative
     * leaves margin yet catches any formula slip */
    tu_check_array("silu values", y, want, 8, 0, 1e-6);

    /* a dense sweep, in place (y == x), against the double formula, with the sizes that run in
     * parallel */
    const size_t n = 100003;
    float *x = malloc(n * sizeof *x), *v = malloc(n * sizeof *v);
    double *ref = malloc(n * sizeof *ref);
    for (size_t i = 0; i < n; i++) {
        x[i] = -40.0f + 80.0f * (float)i / (float)(n - 1);
        v[i] = x[i];
        ref[i] = silu_d(x[i]);
    }
    dm_silu_forward(v, v, n);
    /* as above; the atol covers values that underflow near x = -40 */
    tu_check_array("silu sweep in place", v, ref, n, 1e-30, 1e-6);
    float nanin = NAN, nanout;
    dm_silu_forward(&nanout, &nanin, 1);
    CHECK(isnan(nanout), "silu(NaN) = %g, want NaN", nanout);

    /* backward: dx += dy * silu'(x), silu' by central differences of the double formula
     * (h = 1e-5: truncation ~1e-11, rounding ~1e-11) */
    float *dy = malloc(n * sizeof *dy), *dx = malloc(n * sizeof *dx);
    fill_normal(dy, n, 21);
    const double h = 1e-5;
    for (size_t i = 0; i < n; i++) {
        dx[i] = 0.25f;
        ref[i] = 0.25 + dy[i] * (silu_d(x[i] + h) - silu_d(x[i] - h)) / (2 * h);
    }
    dm_silu_backward(dx, dy, x, n);
    /* a few float operations on values of order 1: 1e-6 absolute, 1e-5 relative */
    tu_check_array("silu backward (+= onto 0.25)", dx, ref, n, 1e-6, 1e-5);
    for (size_t i = 0; i < n; i++) ref[i] -= 0.25;
    dm_silu_backward_inplace(dy, x, n);
    tu_check_array("silu backward in place", dy, ref, n, 1e-6, 1e-5);
    free(x); free(v); free(ref); free(dy); free(dx);
}

static void test_embedding(void) {
    /* expected values from python3 with math.exp/sin/cos in double:
     *   half = dim // 2; f_j = exp(-log(10000) * j / (half - shift));
     *   [sin(t f), cos(t f)] (or [cos, sin] if flip), zero column for an odd dim */
    struct {
        float t;
        int64_t dim;
        bool flip;
        double shift;
        double want[8];
    } cases[] = {
        {3, 8, true, 0, {-0.98999249660044542, 0.95533648912560609, 0.99955003374898754,
                         0.999995500003375, 0.14112000805986721, 0.29552020666133949,
                         0.029995500202495647, 0.0029999955000020234}},
        {3, 8, false, 0, {0.14112000805986721, 0.29552020666133949, 0.029995500202495647,
                          0.0029999955000020234, -0.98999249660044542, 0.95533648912560609,
                          0.99955003374898754, 0.999995500003375}},
        {3, 8, true, 1, {-0.98999249660044542, 0.990320699135675, 0.99997911292296082,
                         0.99999995500000038, 0.14112000805986721, 0.13879810108005047,
                         0.0064632590701896395, 0.00029999999549999972}},
        {3, 8, false, 1, {0.14112000805986721, 0.13879810108005047, 0.0064632590701896395,
                          0.00029999999549999972, -0.98999249660044542, 0.990320699135675,
                          0.99997911292296082, 0.99999995500000038}},
        {3, 7, true, 0, {-0.98999249660044542, 0.990320699135675, 0.99997911292296082,
                         0.14112000805986721, 0.13879810108005047, 0.0064632590701896395, 0}},
        {250, 6, false, 1, {-0.97052801954180534, 0.59847214410395755, 0.024997395914712308,
                            0.24098830528525864, -0.80114361554693292, 0.99968751627570263}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        float out[8];
        for (int i = 0; i < 8; i++) out[i] = 1e30f; /* the pad column must be written */
        dm_timestep_embedding(out, &cases[c].t, 1, cases[c].dim, cases[c].flip, cases[c].shift,
                              10000.0);
        char what[96];
        snprintf(what, sizeof what, "embedding t=%g dim=%lld flip=%d shift=%g", cases[c].t,
                 (long long)cases[c].dim, cases[c].flip, cases[c].shift);
        /* computed in double and rounded once to float: half an ulp of values <= 1 */
        tu_check_array(what, out, cases[c].want, (size_t)cases[c].dim, 6e-8, 0);
    }
    /* many rows (the parallel path): row r must equal the single-row result for t[r] */
    const int64_t B = 300, dim = 33;
    float *t = malloc(B * sizeof *t), *all = malloc((size_t)(B * dim) * sizeof *all);
    for (int64_t r = 0; r < B; r++) t[r] = (float)((r * 37) % 1000);
    dm_timestep_embedding(all, t, B, dim, true, 0.0, 10000.0);
    int same = 1;
    for (int64_t r = 0; r < B && same; r++) {
        float one[33];
        dm_timestep_embedding(one, &t[r], 1, dim, true, 0.0, 10000.0);
        same = memcmp(one, all + r * dim, sizeof one) == 0 && all[r * dim + dim - 1] == 0.0f;
    }
    CHECK(same, "batched embedding rows differ from one-row results");
    free(t); free(all);
}

int main(void) {
    dm_set_num_threads(2);
    test_linear_forward(3, 5, 7, true);
    test_linear_forward(3, 5, 7, false);
    test_linear_forward(200, 70, 130, true); /* BLAS, above DM_PARALLEL_MIN: parallel bias fill */
    test_linear_forward(600, 64, 3, true); /* the skinny-output loop, in parallel */
    test_linear_backward(3, 5, 7);        /* skinny output: plain loops */
    test_linear_backward(37, 19, 70);     /* BLAS; several bias column blocks, one partial */
    test_linear_backward_large(600, 70, 2);   /* skinny loops in parallel */
    test_linear_backward_large(600, 70, 100); /* BLAS, parallel bias gradient */
    test_gemm_tn_skinny();
    test_silu();
    test_embedding();
    return tu_finish("test_nn_layers");
}
