/* Gaussian fits of feature sets and the Frechet distance between two fits (FID-style). All in
 * double; the eigendecompositions are LAPACK's dsyevd from OpenBLAS. */
#include "core/core.h"

#include <math.h>
#include <string.h>

/* LAPACK's symmetric eigensolver (divide and conquer), Fortran calling convention: every argument
 * by reference, then the hidden lengths of the two character arguments. Column-major, which does
 * not matter for the symmetric matrices given to it; its eigenvectors come back as columns, i.e.
 * as the rows of the same array read row-major. */
extern void dsyevd_(const char *jobz, const char *uplo, const int *n, double *a, const int *lda,
                    double *w, double *work, const int *lwork, int *iwork, const int *liwork,
                    int *info, size_t jobz_len, size_t uplo_len);

/* dsyevd's workspace, 1 + 6 dim + 2 dim^2 doubles, must fit its 32-bit int size argument. */
#define FRECHET_MAX_DIM 16384

/* An eigenvalue below -PSD_TOL times the largest |eigenvalue| is not rounding: the matrix is not
 * a covariance. Rounding in a double covariance is ~1e-16 relative, so this is far from it. */
#define PSD_TOL 1e-6

/* Rows per chunk of centred data in dm_feature_stats: a chunk of 256 rows x 256 dims of double is
 * 512 KiB, so each row of the covariance re-reads it from L2 rather than memory. */
#define STATS_CHUNK 256

/* ---- mean and covariance ------------------------------------------------------------------- */

dm_status dm_feature_stats(const float *x, int64_t n, int64_t dim, double *mean, double *cov,
                           dm_error *err) {
    if (!x || !mean || !cov)
        return dm_error_set(err, DM_ERR_ARG, "feature stats: NULL data, mean or covariance");
    if (dim < 1)
        return dm_error_set(err, DM_ERR_ARG, "feature stats: dimension %lld, need at least 1",
                            (long long)dim);
    if (n < 2)
        return dm_error_set(err, DM_ERR_ARG,
                            "feature stats: %lld rows, need at least 2 for a covariance",
                            (long long)n);
    if (!dm_all_finite(x, (size_t)n * (size_t)dim))
        return dm_error_set(err, DM_ERR_NUMERIC, "feature stats: the features contain NaN or Inf");
    double *xc = dm_alloc((size_t)STATS_CHUNK * (size_t)dim * sizeof *xc);
    if (!xc)
        return dm_error_set(err, DM_ERR_NOMEM, "feature stats: out of memory for %lld dimensions",
                            (long long)dim);

    memset(mean, 0, (size_t)dim * sizeof *mean);
    for (int64_t r = 0; r < n; r++)
        for (int64_t j = 0; j < dim; j++) mean[j] += x[r * dim + j];
    for (int64_t j = 0; j < dim; j++) mean[j] /= (double)n;

    /* Sum of outer products of centred rows (two passes: centring first keeps the rounding of a
     * large mean out of the covariance), upper triangle only; each thread owns whole rows of cov,
     * and rows are summed in order, so the result does not depend on the thread count. */
    memset(cov, 0, (size_t)dim * (size_t)dim * sizeof *cov);
    for (int64_t r0 = 0; r0 < n; r0 += STATS_CHUNK) {
        const int64_t rows = n - r0 < STATS_CHUNK ? n - r0 : STATS_CHUNK;
        for (int64_t r = 0; r < rows; r++)
            for (int64_t j = 0; j < dim; j++) xc[r * dim + j] = x[(r0 + r) * dim + j] - mean[j];
        /* rows of the triangle shrink with i: dynamic scheduling balances them */
#pragma omp parallel for schedule(dynamic, 4) if (dim >= 32)
        for (int64_t i = 0; i < dim; i++) {
            double *ci = cov + i * dim;
            for (int64_t r = 0; r < rows; r++) {
                const double a = xc[r * dim + i], *xr = xc + r * dim;
#pragma omp simd
                for (int64_t j = i; j < dim; j++) ci[j] += a * xr[j];
            }
        }
    }
    const double inv = 1.0 / (double)(n - 1);
    for (int64_t i = 0; i < dim; i++) {
        for (int64_t j = i; j < dim; j++) cov[i * dim + j] *= inv;
        for (int64_t j = 0; j < i; j++) cov[i * dim + j] = cov[j * dim + i];
    }
    dm_free(xc);
    return DM_OK;
}

/* ---- Frechet distance ---------------------------------------------------------------------- */

/* Eigenvalues (ascending) of the symmetric a (n x n) into w; with `vectors`, a is overwritten by
 * the eigenvectors, row i (row-major) being eigenvector i; without, a is destroyed. `what` names
 * the matrix in messages. */
static dm_status sym_eig(double *a, int n, double *w, int vectors, const char *what,
                         dm_error *err) {
    const char jobz = vectors ? 'V' : 'N', uplo = 'U';
    int lwork = -1, liwork = -1, info = 0, iwork_size = 0;
    double work_size = 0.0;
    dsyevd_(&jobz, &uplo, &n, a, &n, w, &work_size, &lwork, &iwork_size, &liwork, &info, 1, 1);
    if (info != 0)
        return dm_error_set(err, DM_ERR_ARG,
                            "Frechet distance: LAPACK dsyevd workspace query for %s failed "
                            "(info %d)",
                            what, info);
    lwork = (int)work_size;
    liwork = iwork_size;
    double *work = dm_alloc((size_t)lwork * sizeof *work);
    int *iwork = dm_alloc((size_t)liwork * sizeof *iwork);
    dm_status st = DM_OK;
    if (!work || !iwork) {
        st = dm_error_set(err, DM_ERR_NOMEM,
                          "Frechet distance: out of memory for the eigensolver's workspace "
                          "(%d doubles)",
                          lwork);
    } else {
        dsyevd_(&jobz, &uplo, &n, a, &n, w, work, &lwork, iwork, &liwork, &info, 1, 1);
        if (info < 0)
            st = dm_error_set(err, DM_ERR_ARG,
                              "Frechet distance: LAPACK dsyevd rejected argument %d for %s", -info,
                              what);
        else if (info > 0)
            st = dm_error_set(err, DM_ERR_NUMERIC,
                              "Frechet distance: LAPACK dsyevd did not converge for %s (info %d)",
                              what, info);
    }
    dm_free(work);
    dm_free(iwork);
    return st;
}

/* w holds the ascending eigenvalues of a covariance; DM_ERR_ARG if one is clearly negative. */
static dm_status check_psd(const double *w, int n, const char *what, dm_error *err) {
    const double scale = fmax(fabs(w[0]), fabs(w[n - 1]));
    if (w[0] < -PSD_TOL * scale)
        return dm_error_set(err, DM_ERR_ARG,
                            "Frechet distance: %s is not positive semidefinite (eigenvalue %.6g, "
                            "largest %.6g)",
                            what, w[0], w[n - 1]);
    return DM_OK;
}

/* c = a b for n x n row-major matrices (c distinct from both); rows of c in parallel. */
static void matmul(double *c, const double *a, const double *b, int64_t n) {
#pragma omp parallel for schedule(static) if (n >= 64)
    for (int64_t i = 0; i < n; i++) {
        double *ci = c + i * n;
        for (int64_t j = 0; j < n; j++) ci[j] = 0.0;
        for (int64_t p = 0; p < n; p++) {
            const double aip = a[i * n + p], *bp = b + p * n;
#pragma omp simd
            for (int64_t j = 0; j < n; j++) ci[j] += aip * bp[j];
        }
    }
}

static int all_finite_d(const double *v, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i])) return 0;
    return 1;
}

dm_status dm_frechet_distance(const double *mu1, const double *cov1, const double *mu2,
                              const double *cov2, int64_t dim, double *out, dm_error *err) {
    if (!mu1 || !cov1 || !mu2 || !cov2 || !out)
        return dm_error_set(err, DM_ERR_ARG, "Frechet distance: NULL mean, covariance or output");
    if (dim < 1 || dim > FRECHET_MAX_DIM)
        return dm_error_set(err, DM_ERR_ARG, "Frechet distance: dimension %lld, need 1 to %d",
                            (long long)dim, FRECHET_MAX_DIM);
    const size_t dd = (size_t)dim * (size_t)dim;
    if (!all_finite_d(mu1, (size_t)dim) || !all_finite_d(mu2, (size_t)dim) ||
        !all_finite_d(cov1, dd) || !all_finite_d(cov2, dd))
        return dm_error_set(err, DM_ERR_NUMERIC,
                            "Frechet distance: a mean or covariance contains NaN or Inf");
    const int n = (int)dim;
    double *e = dm_alloc(dd * sizeof *e), *s2 = dm_alloc(dd * sizeof *s2),
           *t = dm_alloc(dd * sizeof *t), *g = dm_alloc(dd * sizeof *g);
    double *w1 = dm_alloc((size_t)dim * sizeof *w1), *w = dm_alloc((size_t)dim * sizeof *w);
    dm_status st = DM_OK;
    if (!e || !s2 || !t || !g || !w1 || !w) {
        st = dm_error_set(err, DM_ERR_NOMEM,
                          "Frechet distance: out of memory for %lld x %lld matrices",
                          (long long)dim, (long long)dim);
        goto done;
    }
    /* symmetric parts, so that which triangle LAPACK reads does not matter */
    for (int64_t i = 0; i < dim; i++)
        for (int64_t j = 0; j < dim; j++) {
            e[i * dim + j] = 0.5 * (cov1[i * dim + j] + cov1[j * dim + i]);
            s2[i * dim + j] = 0.5 * (cov2[i * dim + j] + cov2[j * dim + i]);
        }
    /* S2's eigenvalues only to check that it is a covariance (t is scratch) */
    memcpy(t, s2, dd * sizeof *t);
    if ((st = sym_eig(t, n, w, 0, "covariance 2", err)) ||
        (st = check_psd(w, n, "covariance 2", err)))
        goto done;
    /* S1 = E^T diag(l) E, rows of e the eigenvectors */
    if ((st = sym_eig(e, n, w1, 1, "covariance 1", err)) ||
        (st = check_psd(w1, n, "covariance 1", err)))
        goto done;
    for (int64_t i = 0; i < dim; i++) w1[i] = w1[i] > 0.0 ? sqrt(w1[i]) : 0.0;

    /* With A = S1^{1/2} = E^T D E (D = diag sqrt(l)), A S2 A = E^T (D E S2 E^T D) E: the inner
     * matrix has the same eigenvalues and costs two products instead of three. */
    matmul(t, e, s2, dim); /* E S2 */
    for (int64_t i = 0; i < dim; i++) /* transpose e in place: e becomes E^T */
        for (int64_t j = i + 1; j < dim; j++) {
            double v = e[i * dim + j];
            e[i * dim + j] = e[j * dim + i];
            e[j * dim + i] = v;
        }
    matmul(g, t, e, dim); /* E S2 E^T */
    for (int64_t i = 0; i < dim; i++)
        for (int64_t j = i; j < dim; j++) {
            /* symmetrise: the products round the two triangles differently */
            double v = 0.5 * (g[i * dim + j] + g[j * dim + i]) * w1[i] * w1[j];
            g[i * dim + j] = g[j * dim + i] = v;
        }
    if ((st = sym_eig(g, n, w, 0, "S1^(1/2) S2 S1^(1/2)", err))) goto done;

    /* the inner matrix is positive semidefinite: negative eigenvalues are rounding */
    double tr_sqrt = 0.0, tr1 = 0.0, tr2 = 0.0, diff2 = 0.0;
    for (int64_t i = 0; i < dim; i++) {
        tr_sqrt += w[i] > 0.0 ? sqrt(w[i]) : 0.0;
        tr1 += cov1[i * dim + i];
        tr2 += cov2[i * dim + i];
        diff2 += (mu1[i] - mu2[i]) * (mu1[i] - mu2[i]);
    }
    double fd = diff2 + tr1 + tr2 - 2.0 * tr_sqrt;
    *out = fd > 0.0 ? fd : 0.0; /* identical inputs can round to just below 0 */
done:
    dm_free(e);
    dm_free(s2);
    dm_free(t);
    dm_free(g);
    dm_free(w1);
    dm_free(w);
    return st;
}
