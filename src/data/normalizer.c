/* Per-dimension standardisation: x_std = (x - mean) / std, statistics accumulated in double. */
#include "core/core.h"

#include <math.h>
#include <string.h>

/* Below this a dimension is treated as constant. */
#define DM_MIN_STD 1e-12

dm_status dm_normalizer_fit(dm_normalizer *nz, const dm_dataset *ds, dm_error *err) {
    memset(nz, 0, sizeof *nz);
    if (!ds->x) return dm_error_set(err, DM_ERR_ARG, "%s: the data are uint8 pixels; convert them with dm_dataset_to_float", "normaliser");
    if (ds->n < 1 || ds->dim < 1 || ds->dim > DM_MAX_DIM)
        return dm_error_set(err, DM_ERR_ARG,
                            "cannot fit a normaliser to %lld points of dimension %lld",
                            (long long)ds->n, (long long)ds->dim);
    const int64_t n = ds->n, dim = ds->dim;
    nz->dim = dim;
    /* two passes (mean, then squared deviations): accurate even when |mean| >> std */
    for (int64_t i = 0; i < n; i++)
        for (int64_t d = 0; d < dim; d++) nz->mean[d] += ds->x[i * dim + d];
    for (int64_t d = 0; d < dim; d++) nz->mean[d] /= (double)n;
    for (int64_t i = 0; i < n; i++) {
        for (int64_t d = 0; d < dim; d++) {
            double dev = ds->x[i * dim + d] - nz->mean[d];
            nz->std[d] += dev * dev;
        }
    }
    for (int64_t d = 0; d < dim; d++) {
        nz->std[d] = sqrt(nz->std[d] / (double)n); /* population std, as numpy's default */
        if (!isfinite(nz->mean[d]) || !isfinite(nz->std[d]))
            return dm_error_set(err, DM_ERR_NUMERIC, "dimension %lld of the data is not finite",
                                (long long)d);
        /* a constant column keeps std 1: it is only centred, never divided by zero */
        if (nz->std[d] < DM_MIN_STD) nz->std[d] = 1.0;
    }
    return DM_OK;
}

void dm_normalizer_apply(const dm_normalizer *nz, float *x, int64_t n) {
    const int64_t dim = nz->dim;
    for (int64_t i = 0; i < n; i++)
        for (int64_t d = 0; d < dim; d++)
            x[i * dim + d] = (float)((x[i * dim + d] - nz->mean[d]) / nz->std[d]);
}

void dm_normalizer_invert(const dm_normalizer *nz, float *x, int64_t n) {
    const int64_t dim = nz->dim;
    for (int64_t i = 0; i < n; i++)
        for (int64_t d = 0; d < dim; d++)
            x[i * dim + d] = (float)(x[i * dim + d] * nz->std[d] + nz->mean[d]);
}
