/* Improved precision and recall (Kynkaanniemi et al. 2019) with k-nearest-neighbour balls.
 * Distances come tile by tile from one sgemm each (|a|^2 + |b|^2 - 2 a.b), so no n x m matrix is
 * ever held; each query row is handled by one thread from start to end, so the result does not
 * depend on the thread count. */
#include "core/core.h"

#include <float.h>
#include <limits.h>
#include <math.h>
#include <string.h>

/* Query rows and target rows per tile: a 1024 x 1024 float tile is 4 MiB, and an sgemm of that
 * size runs near peak. */
#define PR_TILE 1024

/* |row|^2 of each row, summed in double, stored in float for the float distance formula;
 * returns 0 if one is FLT_MAX / 4 or more (values near 1e19): the sum of two norms and 2 a.b
 * could then overflow to Inf - Inf = NaN. */
static int row_norms(float *norm, const float *x, int64_t n, int64_t dim) {
    int bad = 0;
#pragma omp parallel for schedule(static) reduction(| : bad) if (n * dim >= DM_PARALLEL_MIN)
    for (int64_t i = 0; i < n; i++) {
        double s = 0.0;
        for (int64_t j = 0; j < dim; j++) s += (double)x[i * dim + j] * x[i * dim + j];
        norm[i] = (float)s;
        bad |= !(s < FLT_MAX / 4.0);
    }
    return !bad;
}

/* tile (nq, nt) = -2 Q T^T for the nq rows of q against the nt rows of t. */
static void tile_products(float *tile, const float *q, int64_t nq, const float *t, int64_t nt,
                          int64_t dim) {
    dm_sgemm(false, true, nq, nt, dim, -2.0f, q, dim, t, dim, 0.0f, tile, nt);
}

/* r2[i] = squared distance from row i of x (n, dim) to its k-th nearest other row. best
 * (PR_TILE * k) holds each query row's k smallest so far, ascending (insertion: k is small). */
static void knn_radii(float *r2, const float *x, const float *norm, int64_t n, int64_t dim, int k,
                      float *tile, float *best) {
    for (int64_t q0 = 0; q0 < n; q0 += PR_TILE) {
        const int64_t nq = n - q0 < PR_TILE ? n - q0 : PR_TILE;
        for (int64_t i = 0; i < nq * k; i++) best[i] = INFINITY;
        for (int64_t t0 = 0; t0 < n; t0 += PR_TILE) {
            const int64_t nt = n - t0 < PR_TILE ? n - t0 : PR_TILE;
            tile_products(tile, x + q0 * dim, nq, x + t0 * dim, nt, dim);
#pragma omp parallel for schedule(static)
            for (int64_t i = 0; i < nq; i++) {
                float *c = tile + i * nt, *b = best + (int64_t)i * k;
                const float ni = norm[q0 + i];
#pragma omp simd
                for (int64_t j = 0; j < nt; j++) {
                    float d = ni + norm[t0 + j] + c[j];
                    c[j] = d > 0.0f ? d : 0.0f; /* cancellation can leave a tiny negative */
                }
                /* a row is not its own neighbour (a duplicate of it is) */
                if (q0 + i >= t0 && q0 + i < t0 + nt) c[q0 + i - t0] = INFINITY;
                float worst = b[k - 1];
                for (int64_t j = 0; j < nt; j++) {
                    const float d = c[j];
                    if (d < worst) {
                        int p = k - 1;
                        for (; p > 0 && b[p - 1] > d; p--) b[p] = b[p - 1];
                        b[p] = d;
                        worst = b[k - 1];
                    }
                }
            }
        }
        for (int64_t i = 0; i < nq; i++) r2[q0 + i] = best[(int64_t)i * k + k - 1];
    }
}

/* Number of rows of q (nq, dim) within at least one ball of t (nt, dim): centre t_j, squared
 * radius t_r2[j]. in (PR_TILE) marks the covered rows of the current query tile; a query tile
 * stops early once every row in it is covered. */
static int64_t count_covered(const float *q, const float *q_norm, int64_t nq_all, const float *t,
                             const float *t_norm, const float *t_r2, int64_t nt_all, int64_t dim,
                             float *tile, unsigned char *in) {
    int64_t covered = 0;
    for (int64_t q0 = 0; q0 < nq_all; q0 += PR_TILE) {
        const int64_t nq = nq_all - q0 < PR_TILE ? nq_all - q0 : PR_TILE;
        memset(in, 0, (size_t)nq);
        int64_t open = nq;
        for (int64_t t0 = 0; t0 < nt_all && open > 0; t0 += PR_TILE) {
            const int64_t nt = nt_all - t0 < PR_TILE ? nt_all - t0 : PR_TILE;
            tile_products(tile, q + q0 * dim, nq, t + t0 * dim, nt, dim);
            int64_t found = 0;
#pragma omp parallel for schedule(static) reduction(+ : found)
            for (int64_t i = 0; i < nq; i++) {
                if (in[i]) continue;
                const float *c = tile + i * nt, *tn = t_norm + t0, *tr = t_r2 + t0;
                const float ni = q_norm[q0 + i];
                for (int64_t j = 0; j < nt; j++) {
                    float d = ni + tn[j] + c[j];
                    d = d > 0.0f ? d : 0.0f;
                    if (d <= tr[j]) {
                        in[i] = 1;
                        found++;
                        break;
                    }
                }
            }
            open -= found;
        }
        covered += nq - open;
    }
    return covered;
}

dm_status dm_precision_recall(const float *real, int64_t n_real, const float *gen, int64_t n_gen,
                              int64_t dim, int k, double *precision, double *recall,
                              dm_error *err) {
    if (!real || !gen || !precision || !recall)
        return dm_error_set(err, DM_ERR_ARG,
                            "precision/recall: NULL real or generated features or output");
    if (dim < 1 || dim > INT_MAX)
        return dm_error_set(err, DM_ERR_ARG, "precision/recall: dimension %lld, need 1 to %d",
                            (long long)dim, INT_MAX);
    if (k < 1)
        return dm_error_set(err, DM_ERR_ARG, "precision/recall: k = %d, need at least 1", k);
    if (n_real <= k || n_gen <= k)
        return dm_error_set(err, DM_ERR_ARG,
                            "precision/recall: %lld real and %lld generated rows, need more than "
                            "k = %d in each set",
                            (long long)n_real, (long long)n_gen, k);
    if (!dm_all_finite(real, (size_t)n_real * (size_t)dim))
        return dm_error_set(err, DM_ERR_NUMERIC,
                            "precision/recall: the real features contain NaN or Inf");
    if (!dm_all_finite(gen, (size_t)n_gen * (size_t)dim))
        return dm_error_set(err, DM_ERR_NUMERIC,
                            "precision/recall: the generated features contain NaN or Inf");

    /* norms and radii: real then generated, in one allocation each */
    float *norm = dm_alloc((size_t)(n_real + n_gen) * sizeof *norm);
    float *r2 = dm_alloc((size_t)(n_real + n_gen) * sizeof *r2);
    float *tile = dm_alloc((size_t)PR_TILE * PR_TILE * sizeof *tile);
    float *best = dm_alloc((size_t)PR_TILE * (size_t)k * sizeof *best);
    unsigned char *in = dm_alloc(PR_TILE);
    dm_status st = DM_OK;
    if (!norm || !r2 || !tile || !best || !in) {
        st = dm_error_set(err, DM_ERR_NOMEM,
                          "precision/recall: out of memory for %lld + %lld rows (k = %d)",
                          (long long)n_real, (long long)n_gen, k);
    } else if (!row_norms(norm, real, n_real, dim) || !row_norms(norm + n_real, gen, n_gen, dim)) {
        st = dm_error_set(err, DM_ERR_NUMERIC,
                          "precision/recall: feature values too large for float distances "
                          "(a squared norm overflows)");
    } else {
        const float *real_norm = norm, *gen_norm = norm + n_real;
        float *real_r2 = r2, *gen_r2 = r2 + n_real;
        knn_radii(real_r2, real, real_norm, n_real, dim, k, tile, best);
        knn_radii(gen_r2, gen, gen_norm, n_gen, dim, k, tile, best);
        int64_t p = count_covered(gen, gen_norm, n_gen, real, real_norm, real_r2, n_real, dim,
                                  tile, in);
        int64_t r = count_covered(real, real_norm, n_real, gen, gen_norm, gen_r2, n_gen, dim,
                                  tile, in);
        *precision = (double)p / (double)n_gen;
        *recall = (double)r / (double)n_real;
    }
    dm_free(norm);
    dm_free(r2);
    dm_free(tile);
    dm_free(best);
    dm_free(in);
    return st;
}
