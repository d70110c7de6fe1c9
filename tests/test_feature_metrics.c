/* Feature-space metrics (Gaussian fits, Frechet distance, precision and recall) against naive
 * double-precision twins, closed forms and an independent matrix square root. */
#include "diffusion.h"
#include "test_util.h"

#include <omp.h>
#include <stdint.h>
#include <string.h>

static float *normals(int64_t n, int64_t dim, uint64_t seed, float mean, float scale) {
    float *x = malloc((size_t)(n * dim) * sizeof *x);
    dm_rng r;
    dm_rng_init(&r, seed, 0);
    dm_rng_normal(&r, x, (size_t)(n * dim));
    for (int64_t i = 0; i < n * dim; i++) x[i] = mean + scale * x[i];
    return x;
}

/* ---- naive twins ---- */

static void naive_stats(const float *x, int64_t n, int64_t dim, double *mean, double *cov) {
    for (int64_t j = 0; j < dim; j++) {
        mean[j] = 0;
        for (int64_t r = 0; r < n; r++) mean[j] += x[r * dim + j];
        mean[j] /= n;
    }
    for (int64_t i = 0; i < dim; i++)
        for (int64_t j = 0; j < dim; j++) {
            double s = 0;
            for (int64_t r = 0; r < n; r++)
                s += (x[r * dim + i] - mean[i]) * (x[r * dim + j] - mean[j]);
            cov[i * dim + j] = s / (n - 1);
        }
}

/* c = a b, n x n */
static void mm(double *c, const double *a, const double *b, int n) {
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            double s = 0;
            for (int p = 0; p < n; p++) s += a[i * n + p] * b[p * n + j];
            c[i * n + j] = s;
        }
}

/* Gauss-Jordan inverse with partial pivoting. */
static void inverse(double *inv, const double *a, int n) {
    double *m = malloc((size_t)n * n * sizeof *m);
    memcpy(m, a, (size_t)n * n * sizeof *m);
    for (int i = 0; i < n * n; i++) inv[i] = i / n == i % n;
    for (int c = 0; c < n; c++) {
        int piv = c;
        for (int r = c + 1; r < n; r++)
            if (fabs(m[r * n + c]) > fabs(m[piv * n + c])) piv = r;
        for (int j = 0; j < n; j++) {
            double t = m[c * n + j];
            m[c * n + j] = m[piv * n + j];
            m[piv * n + j] = t;
            t = inv[c * n + j];
            inv[c * n + j] = inv[piv * n + j];
            inv[piv * n + j] = t;
        }
        double d = m[c * n + c];
        for (int j = 0; j < n; j++) {
            m[c * n + j] /= d;
            inv[c * n + j] /= d;
        }
        for (int r = 0; r < n; r++) {
            if (r == c) continue;
            double f = m[r * n + c];
            for (int j = 0; j < n; j++) {
                m[r * n + j] -= f * m[c * n + j];
                inv[r * n + j] -= f * inv[c * n + j];
            }
        }
    }
    free(m);
}

/* tr (S1 S2)^{1/2} by the Denman-Beavers iteration Y <- (Y + Z^-1) / 2, Z <- (Z + Y^-1) / 2 from
 * Y = S1 S2, Z = I: Y converges to the principal square root of S1 S2 (whose eigenvalues are
 * real and positive for SPD S1, S2), with no eigendecomposition anywhere. */
static double naive_trace_sqrt(const double *s1, const double *s2, int n) {
    size_t b = (size_t)n * n * sizeof(double);
    double *y = malloc(b), *z = malloc(b), *yi = malloc(b), *zi = malloc(b);
    mm(y, s1, s2, n);
    for (int i = 0; i < n * n; i++) z[i] = i / n == i % n;
    for (int it = 0; it < 100; it++) {
        inverse(yi, y, n);
        inverse(zi, z, n);
        double change = 0, size = 0;
        for (int i = 0; i < n * n; i++) {
            double yn = 0.5 * (y[i] + zi[i]);
            change = fmax(change, fabs(yn - y[i]));
            size = fmax(size, fabs(yn));
            y[i] = yn;
            z[i] = 0.5 * (z[i] + yi[i]);
        }
        if (change <= 1e-15 * size) break;
    }
    double tr = 0;
    for (int i = 0; i < n; i++) tr += y[i * n + i];
    free(y);
    free(z);
    free(yi);
    free(zi);
    return tr;
}

static double naive_frechet(const double *mu1, const double *s1, const double *mu2,
                            const double *s2, int n) {
    double fd = 0;
    for (int i = 0; i < n; i++)
        fd += (mu1[i] - mu2[i]) * (mu1[i] - mu2[i]) + s1[i * n + i] + s2[i * n + i];
    return fd - 2 * naive_trace_sqrt(s1, s2, n);
}

/* A random SPD matrix M M^T / n + floor I (M standard normal) and a random mean. */
static void random_gaussian(double *mu, double *s, int n, uint64_t seed, double floor) {
    float *m = normals(n + 1, n, seed, 0.0f, 1.0f); /* last row: the mean */
    for (int i = 0; i < n; i++) {
        mu[i] = m[n * n + i];
        for (int j = 0; j < n; j++) {
            double v = 0;
            for (int p = 0; p < n; p++) v += (double)m[i * n + p] * m[j * n + p];
            s[i * n + j] = v / n + (i == j ? floor : 0.0);
        }
    }
    free(m);
}

static double sqdist(const float *a, const float *b, int64_t dim) {
    double s = 0;
    for (int64_t k = 0; k < dim; k++) s += ((double)a[k] - b[k]) * ((double)a[k] - b[k]);
    return s;
}

static int cmp_d(const void *pa, const void *pb) {
    double a = *(const double *)pa, b = *(const double *)pb;
    return (a > b) - (a < b);
}

/* squared distance to the k-th nearest other row, by sorting all of them */
static void naive_radii(double *r2, const float *x, int64_t n, int64_t dim, int k) {
    double *d = malloc((size_t)n * sizeof *d);
    for (int64_t i = 0; i < n; i++) {
        int64_t m = 0;
        for (int64_t j = 0; j < n; j++)
            if (j != i) d[m++] = sqdist(x + i * dim, x + j * dim, dim);
        qsort(d, (size_t)m, sizeof *d, cmp_d);
        r2[i] = d[k - 1];
    }
    free(d);
}

static double naive_covered(const float *q, int64_t nq, const float *t, const double *t_r2,
                            int64_t nt, int64_t dim) {
    int64_t c = 0;
    for (int64_t i = 0; i < nq; i++)
        for (int64_t j = 0; j < nt; j++)
            if (sqdist(q + i * dim, t + j * dim, dim) <= t_r2[j]) {
                c++;
                break;
            }
    return (double)c / nq;
}

static void naive_pr(const float *real, int64_t nr, const float *gen, int64_t ng, int64_t dim,
                     int k, double *p, double *r) {
    double *rr = malloc((size_t)nr * sizeof *rr), *gr = malloc((size_t)ng * sizeof *gr);
    naive_radii(rr, real, nr, dim, k);
    naive_radii(gr, gen, ng, dim, k);
    *p = naive_covered(gen, ng, real, rr, nr, dim);
    *r = naive_covered(real, nr, gen, gr, ng, dim);
    free(rr);
    free(gr);
}

/* ---- feature stats ---- */

static void test_stats(void) {
    /* a large mean (5) beside unit spread, to catch one-pass (E[x^2] - E[x]^2) cancellation; n
     * not a multiple of the 256-row chunk; dim 40 takes the parallel path */
    const int64_t n = 700, dim = 40;
    float *x = normals(n, dim, 1, 5.0f, 1.0f);
    for (int64_t r = 0; r < n; r++) /* correlate some columns */
        for (int64_t j = 1; j < dim; j += 3) x[r * dim + j] += 0.5f * x[r * dim + j - 1];
    double *mean = malloc(dim * sizeof *mean), *cov = malloc(dim * dim * sizeof *cov);
    double *wm = malloc(dim * sizeof *wm), *wc = malloc(dim * dim * sizeof *wc);
    dm_error err = {0};
    CHECK(dm_feature_stats(x, n, dim, mean, cov, &err) == DM_OK, "stats: %s", err.msg);
    naive_stats(x, n, dim, wm, wc);
    /* same float inputs, double sums of 700 terms in a different order: ~1e-13 relative */
    double md = 0, cd = 0;
    for (int64_t i = 0; i < dim; i++) md = fmax(md, fabs(mean[i] - wm[i]));
    for (int64_t i = 0; i < dim * dim; i++) cd = fmax(cd, fabs(cov[i] - wc[i]));
    CHECK(md < 1e-12, "mean vs naive: max diff %.3g", md);
    CHECK(cd < 1e-12, "covariance vs naive: max diff %.3g", cd);
    int sym = 1;
    for (int64_t i = 0; i < dim; i++)
        for (int64_t j = 0; j < dim; j++) sym &= cov[i * dim + j] == cov[j * dim + i];
    CHECK(sym, "covariance exactly symmetric");

    /* the same with 1 and 2 threads: bitwise equal */
    double *c1 = malloc(dim * dim * sizeof *c1);
    int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    dm_feature_stats(x, n, dim, wm, c1, NULL);
    omp_set_num_threads(2);
    dm_feature_stats(x, n, dim, wm, wc, NULL);
    omp_set_num_threads(saved);
    CHECK(memcmp(c1, wc, dim * dim * sizeof *c1) == 0, "stats with 1 and 2 threads differ");

    /* two rows by hand: mean (1, 2), cov [[2, -2], [-2, 2]] (divisor n - 1 = 1) */
    const float two[4] = {0, 3, 2, 1};
    double m2[2], s2[4];
    CHECK(dm_feature_stats(two, 2, 2, m2, s2, NULL) == DM_OK, "two rows");
    CHECK(m2[0] == 1 && m2[1] == 2 && s2[0] == 2 && s2[1] == -2 && s2[2] == -2 && s2[3] == 2,
          "two rows: mean (%g, %g) cov [%g %g; %g %g]", m2[0], m2[1], s2[0], s2[1], s2[2], s2[3]);
    free(x);
    free(mean);
    free(cov);
    free(wm);
    free(wc);
    free(c1);
}

/* ---- Frechet distance ---- */

static void test_frechet_identical(void) {
    const int n = 64;
    double *mu = malloc(n * sizeof *mu), *s = malloc(n * n * sizeof *s), fd = -1;
    random_gaussian(mu, s, n, 2, 0.01);
    dm_error err = {0};
    CHECK(dm_frechet_distance(mu, s, mu, s, n, &fd, &err) == DM_OK, "identical: %s", err.msg);
    double tr = 0;
    for (int i = 0; i < n; i++) tr += s[i * n + i];
    /* 2 tr S - 2 sum sqrt(eig(S^2)): rounding ~1e-14 of the traces */
    CHECK(fd >= 0 && fd <= 1e-9 * tr, "FD of identical Gaussians is %.3g (tr %.3g)", fd, tr);
    /* the result is clamped at 0, which could hide a negative bias: a small mean shift
     * (|dmu|^2 = 1e-3) must come back as itself */
    double *mu2 = malloc(n * sizeof *mu2);
    for (int i = 0; i < n; i++) mu2[i] = mu[i] + (i < 10 ? 0.01 : 0.0);
    CHECK(dm_frechet_distance(mu, s, mu2, s, n, &fd, &err) == DM_OK, "shifted: %s", err.msg);
    CHECK_CLOSE(fd, 1e-3, 1e-9 * tr, 0, "FD of a small mean shift");
    free(mu2);
    free(mu);
    free(s);
}

static void test_frechet_diagonal(void) {
    /* commuting (diagonal) covariances: FD = |dmu|^2 + sum (sqrt a_i - sqrt b_i)^2; a_0 = 0 makes
     * S1 singular, which must still work */
    const int n = 10;
    double mu1[10], mu2[10], s1[100] = {0}, s2[100] = {0}, want = 0, fd = -1;
    float *u = normals(4, n, 3, 0.0f, 1.0f);
    for (int i = 0; i < n; i++) {
        mu1[i] = u[i];
        mu2[i] = u[n + i];
        double a = i == 0 ? 0.0 : 0.1 + u[2 * n + i] * u[2 * n + i];
        double b = 0.2 + 3 * u[3 * n + i] * u[3 * n + i];
        s1[i * n + i] = a;
        s2[i * n + i] = b;
        want += (mu1[i] - mu2[i]) * (mu1[i] - mu2[i]) + (sqrt(a) - sqrt(b)) * (sqrt(a) - sqrt(b));
    }
    dm_error err = {0};
    CHECK(dm_frechet_distance(mu1, s1, mu2, s2, n, &fd, &err) == DM_OK, "diagonal: %s", err.msg);
    CHECK_CLOSE(fd, want, 0, 1e-10, "FD of diagonal Gaussians vs closed form");
    free(u);
}

static void test_frechet_general(void) {
    /* non-commuting SPD covariances, eigenvalues ~0.05 to ~4: against Denman-Beavers. Rounding of
     * the two eigendecompositions is ~1e-15 relative, DB's about the same: 1e-9 leaves room. */
    const int n = 12;
    double mu1[12], mu2[12], s1[144], s2[144], fd = -1, back = -1;
    random_gaussian(mu1, s1, n, 4, 0.05);
    random_gaussian(mu2, s2, n, 5, 0.05);
    for (int i = 0; i < n * n; i++) s2[i] *= 2.0; /* different scales */
    dm_error err = {0};
    CHECK(dm_frechet_distance(mu1, s1, mu2, s2, n, &fd, &err) == DM_OK, "general: %s", err.msg);
    double want = naive_frechet(mu1, s1, mu2, s2, n);
    CHECK_CLOSE(fd, want, 0, 1e-9, "FD vs Denman-Beavers (dim 12)");
    CHECK(dm_frechet_distance(mu2, s2, mu1, s1, n, &back, &err) == DM_OK, "swapped: %s", err.msg);
    CHECK_CLOSE(back, fd, 0, 1e-10, "FD symmetric");
    /* equal means: only the covariance term is left */
    CHECK(dm_frechet_distance(mu1, s1, mu1, s2, n, &fd, &err) == DM_OK, "same mean: %s", err.msg);
    CHECK_CLOSE(fd, naive_frechet(mu1, s1, mu1, s2, n), 0, 1e-9, "FD vs DB, equal means");

    /* feature-sized: stats of two 64-dim feature sets, n = 400 (a near-singular estimate, smallest
     * eigenvalues ~0.05 of the largest), through the whole pipeline */
    const int64_t rows = 400, dim = 64;
    float *x = normals(rows, dim, 6, 0.0f, 1.0f), *y = normals(rows, dim, 7, 0.2f, 1.3f);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 1; j < dim; j++) y[r * dim + j] += 0.7f * y[r * dim + j - 1];
    double *m1 = malloc(dim * sizeof *m1), *m2 = malloc(dim * sizeof *m2);
    double *c1 = malloc(dim * dim * sizeof *c1), *c2 = malloc(dim * dim * sizeof *c2);
    dm_feature_stats(x, rows, dim, m1, c1, NULL);
    dm_feature_stats(y, rows, dim, m2, c2, NULL);
    CHECK(dm_frechet_distance(m1, c1, m2, c2, dim, &fd, &err) == DM_OK, "dim 64: %s", err.msg);
    CHECK_CLOSE(fd, naive_frechet(m1, c1, m2, c2, (int)dim), 0, 1e-9, "FD vs DB (dim 64)");
    CHECK(dm_frechet_distance(m2, c2, m1, c1, dim, &back, &err) == DM_OK, "dim 64 swapped");
    CHECK_CLOSE(back, fd, 0, 1e-10, "FD symmetric (dim 64)");
    free(x);
    free(y);
    free(m1);
    free(m2);
    free(c1);
    free(c2);
}

/* ---- precision and recall ---- */

static void test_pr_against_naive(void) {
    /* overlapping clouds, shifted by 0.4 per axis, so neither figure is 0 or 1; then sizes above
     * the 1024-row tile on both sides. Float vs double rounding at a ball's boundary can flip a
     * row: one row's worth (1/n) is allowed. */
    const struct {
        int64_t nr, ng, dim;
        int k;
    } cases[] = {{300, 250, 16, 3}, {1100, 1050, 8, 5}, {200, 180, 3, 1}};
    for (int c = 0; c < 3; c++) {
        const int64_t nr = cases[c].nr, ng = cases[c].ng, dim = cases[c].dim;
        const int k = cases[c].k;
        float *real = normals(nr, dim, 10 + c, 0.0f, 1.0f);
        float *gen = normals(ng, dim, 20 + c, 0.4f, 1.0f);
        double p = -1, r = -1, wp, wr;
        dm_error err = {0};
        CHECK(dm_precision_recall(real, nr, gen, ng, dim, k, &p, &r, &err) == DM_OK, "pr: %s",
              err.msg);
        naive_pr(real, nr, gen, ng, dim, k, &wp, &wr);
        CHECK(fabs(p - wp) <= 1.0 / ng + 1e-12, "precision %lld x %lld: %.6f vs naive %.6f",
              (long long)nr, (long long)ng, p, wp);
        CHECK(fabs(r - wr) <= 1.0 / nr + 1e-12, "recall %lld x %lld: %.6f vs naive %.6f",
              (long long)nr, (long long)ng, r, wr);
        CHECK(wp > 0.05 && wp < 0.98 && wr > 0.05 && wr < 0.98,
              "case %d is not trivial: naive precision %.3f recall %.3f", c, wp, wr);

        /* 1 and 2 threads: each row's answer is computed by one thread either way */
        double p1, r1, p2, r2;
        int saved = omp_get_max_threads();
        omp_set_num_threads(1);
        dm_precision_recall(real, nr, gen, ng, dim, k, &p1, &r1, NULL);
        omp_set_num_threads(2);
        dm_precision_recall(real, nr, gen, ng, dim, k, &p2, &r2, NULL);
        omp_set_num_threads(saved);
        CHECK(p1 == p2 && r1 == r2, "threads: (%.6f, %.6f) vs (%.6f, %.6f)", p1, r1, p2, r2);
        free(real);
        free(gen);
    }
}

static void test_pr_cases(void) {
    const int64_t n = 500, dim = 16;
    float *x = normals(n, dim, 30, 0.0f, 1.0f);
    double p = -1, r = -1;
    dm_error err = {0};
    /* identical sets: every row lies at distance ~0 from its own copy's centre */
    CHECK(dm_precision_recall(x, n, x, n, dim, 3, &p, &r, &err) == DM_OK, "same: %s", err.msg);
    CHECK(p == 1.0 && r == 1.0, "identical sets: precision %.4f recall %.4f", p, r);

    /* far apart: ~400 apart (100 per axis) against balls of radius ~5 */
    float *far = normals(400, dim, 31, 100.0f, 1.0f);
    CHECK(dm_precision_recall(x, n, far, 400, dim, 3, &p, &r, &err) == DM_OK, "far: %s", err.msg);
    CHECK(p == 0.0 && r == 0.0, "far clouds: precision %.4f recall %.4f", p, r);
    free(far);
    free(x);

    /* four real modes 20 apart along two axes (dim 4, unit spread); the generated set draws from
     * the first two only. With k = 5, the union of a mode's 200 real balls holds ~97% of fresh
     * draws from that mode (~92% with k = 3), so precision is near 1; the real rows of the missing
     * modes are out of reach of every generated ball, so recall is at most 1/2, short of it only
     * by the few real outliers outside the generated balls. */
    const int64_t per = 200, d4 = 4;
    float *real = normals(4 * per, d4, 32, 0.0f, 1.0f), *gen = normals(2 * per, d4, 33, 0.0f, 1.0f);
    const float centre[4][2] = {{10, 0}, {-10, 0}, {0, 10}, {0, -10}};
    for (int64_t i = 0; i < 4 * per; i++) {
        real[i * d4] += centre[i / per][0];
        real[i * d4 + 1] += centre[i / per][1];
    }
    for (int64_t i = 0; i < 2 * per; i++) {
        gen[i * d4] += centre[i / per][0];
        gen[i * d4 + 1] += centre[i / per][1];
    }
    CHECK(dm_precision_recall(real, 4 * per, gen, 2 * per, d4, 5, &p, &r, &err) == DM_OK,
          "modes: %s", err.msg);
    CHECK(p >= 0.93, "half the modes: precision %.4f, expected ~1", p);
    CHECK(r <= 0.5 && r >= 0.45, "half the modes: recall %.4f, expected ~0.5", r);
    free(real);
    free(gen);
}

/* ---- bad input ---- */

static void expect(dm_status got, dm_status want, const dm_error *err, const char *what) {
    CHECK(got == want && err->status == want && err->msg[0], "%s: status %d (%s), expected %d",
          what, (int)got, err->msg, (int)want);
}

static void test_bad_input(void) {
    dm_error err;
    float x[12] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
    double mean[3], cov[9], out;
#define E(call, want, what)                                                                     \
    do {                                                                                        \
        memset(&err, 0, sizeof err);                                                            \
        expect(call, want, &err, what);                                                         \
    } while (0)
    /* stats */
    E(dm_feature_stats(x, 4, 0, mean, cov, &err), DM_ERR_ARG, "stats dim 0");
    E(dm_feature_stats(x, 1, 3, mean, cov, &err), DM_ERR_ARG, "stats one row");
    E(dm_feature_stats(NULL, 4, 3, mean, cov, &err), DM_ERR_ARG, "stats NULL");
    x[5] = NAN;
    E(dm_feature_stats(x, 4, 3, mean, cov, &err), DM_ERR_NUMERIC, "stats NaN");
    x[5] = 5;

    /* Frechet */
    double mu[2] = {0, 0}, id[4] = {1, 0, 0, 1}, neg[4] = {1, 0, 0, -0.5};
    double bad[4] = {1, 0, 0, INFINITY};
    E(dm_frechet_distance(mu, id, mu, id, 0, &out, &err), DM_ERR_ARG, "FD dim 0");
    E(dm_frechet_distance(mu, id, mu, NULL, 2, &out, &err), DM_ERR_ARG, "FD NULL");
    E(dm_frechet_distance(mu, bad, mu, id, 2, &out, &err), DM_ERR_NUMERIC, "FD Inf");
    E(dm_frechet_distance(mu, neg, mu, id, 2, &out, &err), DM_ERR_ARG, "FD indefinite S1");
    E(dm_frechet_distance(mu, id, mu, neg, 2, &out, &err), DM_ERR_ARG, "FD indefinite S2");
    CHECK(strstr(err.msg, "covariance 2"), "message names the covariance: %s", err.msg);
    /* a zero covariance is a (degenerate) covariance: FD = |dmu|^2 + tr S2 */
    double zero[4] = {0}, mu2[2] = {3, 4};
    CHECK(dm_frechet_distance(mu, zero, mu2, id, 2, &out, NULL) == DM_OK && fabs(out - 27) < 1e-12,
          "zero covariance: %g", out);

    /* precision / recall: 4 rows of dim 3 */
    double p, r;
    E(dm_precision_recall(x, 4, x, 4, 0, 1, &p, &r, &err), DM_ERR_ARG, "pr dim 0");
    E(dm_precision_recall(x, 4, x, 4, 3, 0, &p, &r, &err), DM_ERR_ARG, "pr k 0");
    E(dm_precision_recall(x, 4, x, 3, 3, 3, &p, &r, &err), DM_ERR_ARG, "pr gen rows = k");
    E(dm_precision_recall(x, 3, x, 4, 3, 3, &p, &r, &err), DM_ERR_ARG, "pr real rows = k");
    E(dm_precision_recall(x, 4, NULL, 4, 3, 1, &p, &r, &err), DM_ERR_ARG, "pr NULL");
    x[7] = NAN;
    float y[12];
    for (int i = 0; i < 12; i++) y[i] = (float)(i % 5);
    E(dm_precision_recall(x, 4, y, 4, 3, 1, &p, &r, &err), DM_ERR_NUMERIC, "pr NaN in real");
    CHECK(strstr(err.msg, "real"), "message names the real set: %s", err.msg);
    E(dm_precision_recall(y, 4, x, 4, 3, 1, &p, &r, &err), DM_ERR_NUMERIC, "pr NaN in gen");
    CHECK(strstr(err.msg, "generated"), "message names the generated set: %s", err.msg);
    x[7] = 7;
    x[0] = 3e19f; /* finite, but its squared norm overflows float */
    E(dm_precision_recall(x, 4, x, 4, 3, 1, &p, &r, &err), DM_ERR_NUMERIC, "pr huge value");
    x[0] = 0;
    CHECK(dm_precision_recall(x, 4, x, 4, 3, 3, &p, &r, NULL) == DM_OK && p == 1 && r == 1,
          "k = n - 1 works: %g %g", p, r);
#undef E
}

int main(void) {
    test_stats();
    test_frechet_identical();
    test_frechet_diagonal();
    test_frechet_general();
    test_pr_against_naive();
    test_pr_cases();
    test_bad_input();
    return tu_finish("test_feature_metrics");
}
