/* Image-quality metrics in a feature space (e.g. a classifier's penultimate layer): the Frechet
 * distance between Gaussian fits of two feature sets (FID when the features are Inception's), and
 * improved precision and recall (Kynkaanniemi et al. 2019). Features are float rows, row-major
 * (n, dim); statistics are double. Sizes in mind: dim 64..256, n up to ~10^4 per set.
 * Results do not depend on the thread count. */
#pragma once

#include "core/core.h"

/* Mean (dim) and covariance (dim x dim, row-major, unbiased: divisor n - 1) of n feature rows,
 * accumulated in double from the centred rows. n >= 2, dim >= 1, every value finite
 * (DM_ERR_NUMERIC otherwise). */
dm_status dm_feature_stats(const float *x, int64_t n, int64_t dim, double *mean, double *cov,
                           dm_error *err);

/* Frechet distance between N(mu1, S1) and N(mu2, S2):
 *     |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^{1/2}).
 * tr (S1 S2)^{1/2} is sum sqrt(eig(A S2 A)) with A = S1^{1/2}: A S2 A is similar to S1 S2 (when S1
 * is invertible; by continuity otherwise) and symmetric, so two symmetric eigendecompositions
 * (LAPACK dsyevd) do the work. Only the symmetric parts (S + S^T) / 2 of the covariances are used.
 * Each covariance must be positive semidefinite: an eigenvalue below -1e-6 times its largest is
 * DM_ERR_ARG; smaller negative eigenvalues are rounding and count as 0. The result is the squared
 * distance (as FID is reported), clamped at 0 since rounding can take identical inputs just below.
 * dim in 1..16384. */
dm_status dm_frechet_distance(const double *mu1, const double *cov1, const double *mu2,
                              const double *cov2, int64_t dim, double *out, dm_error *err);

/* Improved precision and recall with k-nearest-neighbour balls. A real row's ball is centred on it
 * with radius its distance to its k-th nearest other real row (a duplicate row counts, at distance
 * 0); likewise for generated rows within the generated set. precision = fraction of generated rows
 * inside (distance <= radius) at least one real ball; recall = fraction of real rows inside at
 * least one generated ball. Squared Euclidean distances come from |a|^2 + |b|^2 - 2 a.b in float
 * (the products by dm_sgemm on 1024 x 1024 tiles, so memory stays a few MiB whatever n), clamped
 * at 0, and are compared squared. Float rounding at a ball's boundary can move a row in or out
 * relative to an exact computation, so results match a double-precision twin to about 1/n.
 * k >= 1; both sets need more than k rows; every value finite (DM_ERR_NUMERIC otherwise). */
dm_status dm_precision_recall(const float *real, int64_t n_real, const float *gen, int64_t n_gen,
                              int64_t dim, int k, double *precision, double *recall,
                              dm_error *err);
