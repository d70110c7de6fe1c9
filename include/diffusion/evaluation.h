/* diffusion/evaluation.h: metrics of samples against data.
 * Part of the public API of libdiffusion; <diffusion.h> includes every part. */
#pragma once

#include "core.h"
#include "data.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------------------------ */
/* Evaluation of samples against data                                                         */

/* Biased (V-statistic) squared MMD with the Gaussian kernel exp(-|x - y|^2 / (2 h^2)), returned
 * as its square root. */
DM_API double dm_mmd_rbf(const float *x, int64_t n, const float *y, int64_t m, int64_t dim,
                         double h);
/* Median-heuristic bandwidth: the median pairwise distance among (up to) the first 2000 rows. */
DM_API double dm_median_bandwidth(const float *x, int64_t n, int64_t dim);
/* Sliced 2-Wasserstein distance over `projections` random unit directions (from seed), between
 * two sets of equal size n. */
DM_API double dm_sliced_wasserstein(const float *x, const float *y, int64_t n, int64_t dim,
                                    int projections, uint64_t seed);

/* Samples against held-out data, each figure beside its floor: the same figure between two
 * independent draws of the data (ref_a, ref_b). All three sets have the same n and dim; they are
 * standardised with ref_a's mean and std first, and the MMD bandwidth is the median heuristic
 * on ref_a. Sliced Wasserstein uses 256 directions from `seed`. */
typedef struct {
    int64_t n;
    double bandwidth;
    double mmd, mmd_floor;
    double swd, swd_floor;
} dm_eval_report;

DM_API dm_status dm_eval_compare(dm_eval_report *r, const dm_dataset *samples,
                                 const dm_dataset *ref_a, const dm_dataset *ref_b, uint64_t seed,
                                 dm_error *err);

/* Image-quality metrics in a feature space (e.g. a classifier's penultimate layer, as
 * `diffusion eval --metric fid` uses): the Frechet distance between Gaussian fits of two feature
 * sets (FID when the features are Inception's), and improved precision and recall (Kynkaanniemi
 * et al. 2019). Features are float rows, row-major (n, dim); statistics are double. Sizes in
 * mind: dim 64..256, n up to ~10^4 per set. Results do not depend on the thread count. */
/* Mean (dim) and covariance (dim x dim, row-major, unbiased: divisor n - 1) of n feature rows,
 * accumulated in double from the centred rows. n >= 2, dim >= 1, every value finite
 * (DM_ERR_NUMERIC otherwise). */
DM_API dm_status dm_feature_stats(const float *x, int64_t n, int64_t dim, double *mean,
                                  double *cov, dm_error *err);

/* Frechet distance between N(mu1, S1) and N(mu2, S2):
 *     |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^{1/2}).
 * tr (S1 S2)^{1/2} is sum sqrt(eig(A S2 A)) with A = S1^{1/2}: A S2 A is similar to S1 S2 (when S1
 * is invertible; by continuity otherwise) and symmetric, so two symmetric eigendecompositions
 * (LAPACK dsyevd) do the work. Only the symmetric parts (S + S^T) / 2 of the covariances are used.
 * Each covariance must be positive semidefinite: an eigenvalue below -1e-6 times its largest is
 * DM_ERR_ARG; smaller negative eigenvalues are rounding and count as 0. The result is the squared
 * distance (as FID is reported), clamped at 0 since rounding can take identical inputs just below.
 * dim in 1..16384. */
DM_API dm_status dm_frechet_distance(const double *mu1, const double *cov1, const double *mu2,
                                     const double *cov2, int64_t dim, double *out, dm_error *err);

/* Improved precision and recall with k-nearest-neighbour balls. A real row's ball is centred on it
 * with radius its distance to its k-th nearest other real row (a duplicate row counts, at distance
 * 0); likewise for generated rows within the generated set. precision = fraction of generated rows
 * inside (distance <= radius) at least one real ball; recall = fraction of real rows inside at
 * least one generated ball. Squared Euclidean distances come from |a|^2 + |b|^2 - 2 a.b in float
 * (the products by the library's sgemm on 1024 x 1024 tiles, so memory stays a few MiB whatever
 * n), clamped at 0, and are compared squared. Float rounding at a ball's boundary can move a row
 * in or out relative to an exact computation, so results match a double-precision twin to about
 * 1/n.
 * k >= 1; both sets need more than k rows; every value finite (DM_ERR_NUMERIC otherwise). */
DM_API dm_status dm_precision_recall(const float *real, int64_t n_real, const float *gen,
                                     int64_t n_gen, int64_t dim, int k, double *precision,
                                     double *recall, dm_error *err);

#ifdef __cplusplus
}
#endif
