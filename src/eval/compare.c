/* Samples against held-out data, each figure beside the data-to-data floor. */
#include "core/core.h"

#include <string.h>

/* A standardised copy of ds (n, dim) with nz. */
static float *standardised_copy(const dm_dataset *ds, const dm_normalizer *nz) {
    size_t count = (size_t)(ds->n * ds->dim);
    float *x = dm_alloc(count * sizeof(float));
    if (!x) return NULL;
    memcpy(x, ds->x, count * sizeof(float));
    dm_normalizer_apply(nz, x, ds->n);
    return x;
}

dm_status dm_eval_compare(dm_eval_report *r, const dm_dataset *samples, const dm_dataset *ref_a,
                          const dm_dataset *ref_b, uint64_t seed, dm_error *err) {
    memset(r, 0, sizeof *r);
    if (!samples->x || !ref_a->x || !ref_b->x) return dm_error_set(err, DM_ERR_ARG, "%s: the data are uint8 pixels; convert them with dm_dataset_to_float", "compare");
    const int64_t n = samples->n, D = samples->dim;
    if (ref_a->n != n || ref_b->n != n || ref_a->dim != D || ref_b->dim != D)
        return dm_error_set(err, DM_ERR_ARG,
                            "samples (%lld x %lld) and the two data draws (%lld x %lld, %lld x "
                            "%lld) must have the same size",
                            (long long)n, (long long)D, (long long)ref_a->n, (long long)ref_a->dim,
                            (long long)ref_b->n, (long long)ref_b->dim);
    if (n < 2) return dm_error_set(err, DM_ERR_ARG, "need at least 2 points to compare");
    if (!dm_all_finite(samples->x, (size_t)(n * D)))
        return dm_error_set(err, DM_ERR_NUMERIC, "the samples contain NaN or Inf");
    dm_normalizer nz;
    dm_status st = dm_normalizer_fit(&nz, ref_a, err);
    if (st) return st;
    float *s = standardised_copy(samples, &nz), *a = standardised_copy(ref_a, &nz),
          *b = standardised_copy(ref_b, &nz);
    if (!s || !a || !b) {
        st = dm_error_set(err, DM_ERR_NOMEM, "out of memory for %lld points", (long long)n);
    } else {
        r->n = n;
        r->bandwidth = dm_median_bandwidth(a, n, D);
        r->mmd = dm_mmd_rbf(s, n, a, n, D, r->bandwidth);
        r->mmd_floor = dm_mmd_rbf(b, n, a, n, D, r->bandwidth);
        r->swd = dm_sliced_wasserstein(s, a, n, D, 256, seed);
        r->swd_floor = dm_sliced_wasserstein(b, a, n, D, 256, seed);
    }
    dm_free(s);
    dm_free(a);
    dm_free(b);
    return st;
}
