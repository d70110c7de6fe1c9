/* GroupNorm: hand-computed values, the naive backward against central finite differences in
 * double, the fast path against the naive one, the += rule and thread-count independence. */
#include "nn/groupnorm.h"
#include "test_util.h"

#include <omp.h>

static void fill_normal(float *v, size_t n, uint64_t seed, float mean, float std) {
    dm_rng rng;
    dm_rng_init(&rng, seed, 3);
    dm_rng_normal(&rng, v, n);
    for (size_t i = 0; i < n; i++) v[i] = mean + std * v[i];
}

static double *to_double(const float *v, size_t n) {
    double *d = malloc(n * sizeof *d);
    for (size_t i = 0; i < n; i++) d[i] = v[i];
    return d;
}

/* G = 1 and G = C on a 2-channel, 2-pixel input with eps = 0: every statistic is exact. */
static void test_hand(void) {
    const float x[4] = {1, 2, 3, 4}; /* (1, 2, 2) */
    const float gamma[2] = {2, 1}, beta[2] = {0.5f, -1};
    float y[4], mean[2], rstd[2];

    /* one group: mean 2.5, biased variance (2.25 + 0.25 + 0.25 + 2.25) / 4 = 1.25 */
    dm_groupnorm_forward(y, mean, rstd, x, gamma, beta, 1, 2, 2, 1, 0.0f);
    CHECK_CLOSE(mean[0], 2.5, 0, 0, "G=1 mean");
    CHECK_CLOSE(rstd[0], 1 / sqrt(1.25), 1e-7, 0, "G=1 rstd");
    const double s = 1 / sqrt(1.25);
    const double want1[4] = {-1.5 * s * 2 + 0.5, -0.5 * s * 2 + 0.5, 0.5 * s - 1, 1.5 * s - 1};
    tu_check_array("G=1 y", y, want1, 4, 1e-6, 0);

    /* a group per channel: means 1.5 and 3.5, variance 0.25, rstd 2, xhat = -1, +1 */
    dm_groupnorm_forward(y, mean, rstd, x, gamma, beta, 1, 2, 2, 2, 0.0f);
    CHECK_CLOSE(mean[0], 1.5, 0, 0, "G=C mean[0]");
    CHECK_CLOSE(mean[1], 3.5, 0, 0, "G=C mean[1]");
    CHECK_CLOSE(rstd[0], 2, 0, 0, "G=C rstd[0]");
    const double want2[4] = {-2 + 0.5, 2 + 0.5, -1 - 1, 1 - 1};
    tu_check_array("G=C y", y, want2, 4, 1e-6, 0);

    /* eps enters under the square root: var 0.25 + eps 0.75 gives rstd 1 */
    dm_groupnorm_forward(y, mean, rstd, x, gamma, beta, 1, 2, 2, 2, 0.75f);
    CHECK_CLOSE(rstd[1], 1, 1e-7, 0, "eps rstd");
    CHECK_CLOSE(y[2], -0.5 * 1 - 1, 1e-6, 0, "eps y");
}

/* L = sum(y * Gw) with y from GroupNorm in double */
static double gn_loss(const double *x, const double *gamma, const double *beta, const double *Gw,
                      int64_t B, int64_t C, int64_t HW, int64_t G, double eps) {
    const int64_t cpg = C / G, n = cpg * HW;
    double L = 0;
    for (int64_t b = 0; b < B; b++)
        for (int64_t g = 0; g < G; g++) {
            const double *xg = x + (b * C + g * cpg) * HW;
            double mu = 0, var = 0;
            for (int64_t i = 0; i < n; i++) mu += xg[i];
            mu /= (double)n;
            for (int64_t i = 0; i < n; i++) var += (xg[i] - mu) * (xg[i] - mu);
            const double rs = 1 / sqrt(var / (double)n + eps);
            for (int64_t i = 0; i < n; i++) {
                const int64_t c = g * cpg + i / HW, at = (b * C + g * cpg) * HW + i;
                L += ((xg[i] - mu) * rs * gamma[c] + beta[c]) * Gw[at];
            }
        }
    return L;
}

/* Central difference of gn_loss along v[i]; h = 1e-4 leaves a truncation error near 1e-9 for
 * these O(1) inputs and a rounding error near 1e-12. */
static double gn_fd(double *v, size_t i, const double *x, const double *gamma, const double *beta,
                    const double *Gw, int64_t B, int64_t C, int64_t HW, int64_t G, double eps) {
    const double h = 1e-4, keep = v[i];
    v[i] = keep + h;
    const double lp = gn_loss(x, gamma, beta, Gw, B, C, HW, G, eps);
    v[i] = keep - h;
    const double lm = gn_loss(x, gamma, beta, Gw, B, C, HW, G, eps);
    v[i] = keep;
    return (lp - lm) / (2 * h);
}

static void test_ref_backward_fd(int64_t B, int64_t C, int64_t HW, int64_t G) {
    const size_t n = (size_t)(B * C * HW);
    const float eps = 1e-5f;
    float *x = malloc(n * sizeof *x), *Gw = malloc(n * sizeof *Gw), *y = malloc(n * sizeof *y);
    float *gamma = malloc((size_t)C * sizeof *gamma), *beta = malloc((size_t)C * sizeof *beta);
    float *mean = malloc((size_t)(B * G) * sizeof *mean), *rstd = malloc((size_t)(B * G) * 4);
    float *dx = calloc(n, sizeof *dx), *dgamma = calloc((size_t)C, 4);
    float *dbeta = calloc((size_t)C, 4);
    fill_normal(x, n, 21, 0.5f, 1.0f);
    fill_normal(Gw, n, 22, 0.0f, 1.0f);
    fill_normal(gamma, (size_t)C, 23, 1.0f, 0.5f);
    fill_normal(beta, (size_t)C, 24, 0.0f, 0.5f);
    dm_groupnorm_forward_ref(y, mean, rstd, x, gamma, beta, B, C, HW, G, eps);
    dm_groupnorm_backward_ref(dx, dgamma, dbeta, Gw, x, mean, rstd, gamma, B, C, HW, G);

    double *xd = to_double(x, n), *Gd = to_double(Gw, n);
    double *gd = to_double(gamma, (size_t)C), *bd = to_double(beta, (size_t)C);
    double *want_dx = malloc(n * sizeof *want_dx), *want_dg = malloc((size_t)C * 8);
    double *want_db = malloc((size_t)C * 8);
    for (size_t i = 0; i < n; i++) want_dx[i] = gn_fd(xd, i, xd, gd, bd, Gd, B, C, HW, G, eps);
    for (int64_t c = 0; c < C; c++) {
        want_dg[c] = gn_fd(gd, (size_t)c, xd, gd, bd, Gd, B, C, HW, G, eps);
        want_db[c] = gn_fd(bd, (size_t)c, xd, gd, bd, Gd, B, C, HW, G, eps);
    }
    char what[96];
    /* the reference works from float mean and rstd (relative rounding 6e-8), so it matches the
     * double-precision derivative to about 1e-6 */
    snprintf(what, sizeof what, "ref dx vs FD B=%lld C=%lld HW=%lld G=%lld", (long long)B,
             (long long)C, (long long)HW, (long long)G);
    tu_check_array(what, dx, want_dx, n, 1e-5, 1e-5);
    snprintf(what, sizeof what, "ref dgamma vs FD C=%lld G=%lld", (long long)C, (long long)G);
    tu_check_array(what, dgamma, want_dg, (size_t)C, 1e-5, 1e-5);
    snprintf(what, sizeof what, "ref dbeta vs FD C=%lld G=%lld", (long long)C, (long long)G);
    tu_check_array(what, dbeta, want_db, (size_t)C, 1e-5, 1e-5);
    free(x); free(Gw); free(y); free(gamma); free(beta); free(mean); free(rstd); free(dx);
    free(dgamma); free(dbeta); free(xd); free(Gd); free(gd); free(bd); free(want_dx);
    free(want_dg); free(want_db);
}

typedef struct {
    float *x, *dy, *gamma, *beta, *y, *mean, *rstd, *dx, *dgamma, *dbeta;
} gn_bufs;

static gn_bufs gn_alloc(int64_t B, int64_t C, int64_t HW, int64_t G) {
    const size_t n = (size_t)(B * C * HW);
    gn_bufs t = {
        malloc(n * 4), malloc(n * 4), malloc((size_t)C * 4), malloc((size_t)C * 4),
        malloc(n * 4), malloc((size_t)(B * G) * 4), malloc((size_t)(B * G) * 4),
        calloc(n, 4), calloc((size_t)C, 4), calloc((size_t)C, 4),
    };
    return t;
}

static void gn_release(gn_bufs *t) {
    free(t->x); free(t->dy); free(t->gamma); free(t->beta); free(t->y); free(t->mean);
    free(t->rstd); free(t->dx); free(t->dgamma); free(t->dbeta);
}

static void test_fast_vs_ref(int64_t B, int64_t C, int64_t HW, int64_t G, float offset,
                             uint64_t seed) {
    const size_t n = (size_t)(B * C * HW);
    const float eps = 1e-5f;
    gn_bufs f = gn_alloc(B, C, HW, G), r = gn_alloc(B, C, HW, G);
    fill_normal(f.x, n, seed, offset, 2.0f);
    fill_normal(f.dy, n, seed + 1, 0.0f, 1.0f);
    fill_normal(f.gamma, (size_t)C, seed + 2, 1.0f, 0.5f);
    fill_normal(f.beta, (size_t)C, seed + 3, 0.0f, 0.5f);
    dm_groupnorm_forward(f.y, f.mean, f.rstd, f.x, f.gamma, f.beta, B, C, HW, G, eps);
    dm_groupnorm_backward(f.dx, f.dgamma, f.dbeta, f.dy, f.x, f.mean, f.rstd, f.gamma, B, C, HW,
                          G);
    dm_groupnorm_forward_ref(r.y, r.mean, r.rstd, f.x, f.gamma, f.beta, B, C, HW, G, eps);
    dm_groupnorm_backward_ref(r.dx, r.dgamma, r.dbeta, f.dy, f.x, r.mean, r.rstd, f.gamma, B, C,
                              HW, G);
    double *ry = to_double(r.y, n), *rmean = to_double(r.mean, (size_t)(B * G));
    double *rrstd = to_double(r.rstd, (size_t)(B * G)), *rdx = to_double(r.dx, n);
    double *rdg = to_double(r.dgamma, (size_t)C), *rdb = to_double(r.dbeta, (size_t)C);
    char what[128];
#define GN_WHAT(name)                                                                           \
    snprintf(what, sizeof what, "fast " name " B=%lld C=%lld HW=%lld G=%lld offset=%g",         \
             (long long)B, (long long)C, (long long)HW, (long long)G, (double)offset)
    /* statistics: both in double, rounded once */
    GN_WHAT("mean");
    tu_check_array(what, f.mean, rmean, (size_t)(B * G), 1e-6, 1e-6);
    GN_WHAT("rstd");
    tu_check_array(what, f.rstd, rrstd, (size_t)(B * G), 0, 1e-6);
    /* y: (x - float mean) is off by half an ulp of the mean; a few float ops besides */
    const double ulp_mean = fabs((double)offset) * 1.2e-7 + 1e-7;
    GN_WHAT("y");
    tu_check_array(what, f.y, ry, n, 4 * ulp_mean + 2e-6, 1e-5);
    /* dx: float sums over a group of up to a few thousand values */
    GN_WHAT("dx");
    tu_check_array(what, f.dx, rdx, n, 2e-5, 1e-4);
    /* dgamma, dbeta: sums over B * HW terms of size ~1 */
    const double sum_tol = 2e-6 * sqrt((double)(B * HW)) + 1e-5;
    GN_WHAT("dgamma");
    tu_check_array(what, f.dgamma, rdg, (size_t)C, sum_tol, 1e-5);
    GN_WHAT("dbeta");
    tu_check_array(what, f.dbeta, rdb, (size_t)C, sum_tol, 1e-5);
#undef GN_WHAT

    /* the += rule: gradients land on top of what is there; dx NULL skips dx only */
    float *pre_dx = malloc(n * 4), *pre_dg = malloc((size_t)C * 4), *pre_db = malloc((size_t)C * 4);
    fill_normal(pre_dx, n, seed + 7, 0.0f, 1.0f);
    fill_normal(pre_dg, (size_t)C, seed + 8, 0.0f, 1.0f);
    fill_normal(pre_db, (size_t)C, seed + 9, 0.0f, 1.0f);
    memcpy(r.dx, pre_dx, n * 4);
    memcpy(r.dgamma, pre_dg, (size_t)C * 4);
    memcpy(r.dbeta, pre_db, (size_t)C * 4);
    dm_groupnorm_backward(r.dx, r.dgamma, r.dbeta, f.dy, f.x, f.mean, f.rstd, f.gamma, B, C, HW,
                          G);
    for (size_t i = 0; i < n; i++) rdx[i] = (double)pre_dx[i] + f.dx[i];
    for (int64_t c = 0; c < C; c++) {
        rdg[c] = (double)pre_dg[c] + f.dgamma[c];
        rdb[c] = (double)pre_db[c] + f.dbeta[c];
    }
    tu_check_array("+= dx", r.dx, rdx, n, 1e-6, 1e-6);
    tu_check_array("+= dgamma", r.dgamma, rdg, (size_t)C, 1e-5, 1e-6);
    tu_check_array("+= dbeta", r.dbeta, rdb, (size_t)C, 1e-5, 1e-6);
    memcpy(r.dgamma, pre_dg, (size_t)C * 4);
    memcpy(r.dbeta, pre_db, (size_t)C * 4);
    dm_groupnorm_backward(NULL, r.dgamma, r.dbeta, f.dy, f.x, f.mean, f.rstd, f.gamma, B, C, HW,
                          G);
    tu_check_array("dx NULL: dgamma", r.dgamma, rdg, (size_t)C, 1e-5, 1e-6);

    free(pre_dx); free(pre_dg); free(pre_db);
    free(ry); free(rmean); free(rrstd); free(rdx); free(rdg); free(rdb);
    gn_release(&f);
    gn_release(&r);
}

/* The fast path gives the same bits at 1 and 2 threads (dgamma, dbeta are summed in fixed
 * chunks of examples, not per thread). */
static void test_thread_independence(void) {
    const int64_t B = 24, C = 64, HW = 196, G = 8;
    const size_t n = (size_t)(B * C * HW);
    gn_bufs a = gn_alloc(B, C, HW, G), b = gn_alloc(B, C, HW, G);
    fill_normal(a.x, n, 41, 1.0f, 1.0f);
    fill_normal(a.dy, n, 42, 0.0f, 1.0f);
    fill_normal(a.gamma, (size_t)C, 43, 1.0f, 0.3f);
    fill_normal(a.beta, (size_t)C, 44, 0.0f, 0.3f);
    const int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    dm_groupnorm_forward(a.y, a.mean, a.rstd, a.x, a.gamma, a.beta, B, C, HW, G, 1e-5f);
    dm_groupnorm_backward(a.dx, a.dgamma, a.dbeta, a.dy, a.x, a.mean, a.rstd, a.gamma, B, C, HW,
                          G);
    omp_set_num_threads(2);
    dm_groupnorm_forward(b.y, b.mean, b.rstd, a.x, a.gamma, a.beta, B, C, HW, G, 1e-5f);
    dm_groupnorm_backward(b.dx, b.dgamma, b.dbeta, a.dy, a.x, b.mean, b.rstd, a.gamma, B, C, HW,
                          G);
    omp_set_num_threads(threads);
    CHECK(memcmp(a.y, b.y, n * 4) == 0, "forward differs between 1 and 2 threads");
    CHECK(memcmp(a.dx, b.dx, n * 4) == 0, "dx differs between 1 and 2 threads");
    CHECK(memcmp(a.dgamma, b.dgamma, (size_t)C * 4) == 0, "dgamma differs between thread counts");
    CHECK(memcmp(a.dbeta, b.dbeta, (size_t)C * 4) == 0, "dbeta differs between thread counts");
    gn_release(&a);
    gn_release(&b);
}

int main(void) {
    test_hand();

    /* G = 1, G = C and in between; odd HW; one pixel */
    test_ref_backward_fd(2, 4, 3, 1);
    test_ref_backward_fd(2, 4, 5, 4);
    test_ref_backward_fd(1, 6, 7, 3);
    test_ref_backward_fd(3, 4, 1, 2);

    test_fast_vs_ref(3, 6, 7, 3, 0.0f, 100);
    test_fast_vs_ref(2, 64, 196, 8, 0.5f, 200);  /* the 28x28 UNet's attention level */
    test_fast_vs_ref(5, 32, 49, 32, -1.0f, 300); /* G = C */
    test_fast_vs_ref(4, 12, 33, 1, 3.0f, 400);   /* G = 1 */
    test_fast_vs_ref(1, 8, 1, 8, 0.0f, 500);     /* one value per group: xhat = 0 */
    test_fast_vs_ref(13, 16, 9, 4, 0.0f, 600);   /* more examples than chunks, uneven split */
    test_fast_vs_ref(2, 4, 25, 2, 1000.0f, 700); /* mean far from zero: stable statistics */

    test_thread_independence();
    return tu_finish("test_groupnorm");
}
