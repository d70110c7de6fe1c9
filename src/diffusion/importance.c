/* Importance sampling of the timestep (Nichol & Dhariwal, improved DDPM): the bound's terms
 * differ by orders of magnitude across t, so drawing t with p_t proportional to
 * sqrt(E[L_t^2]) and weighting each example by 1 / (T p_t) keeps the estimate unbiased with a
 * much smaller variance. */
#include "diffusion/diffusion_impl.h"

#include <math.h>
#include <string.h>

/* improved DDPM mixes this much of the uniform distribution in, so no p_t is ever 0 */
#define UNIFORM_MIX 0.001

dm_status dm_importance_init(dm_importance *imp, int32_t T, dm_error *err) {
    memset(imp, 0, sizeof *imp);
    imp->T = T;
    imp->history = dm_alloc((size_t)T * DM_IMPORTANCE_HISTORY * sizeof(float));
    imp->count = dm_alloc((size_t)T * sizeof(int32_t));
    imp->cdf = dm_alloc((size_t)T * sizeof(double));
    if (!imp->history || !imp->count || !imp->cdf) {
        dm_importance_free(imp);
        return dm_error_set(err, DM_ERR_NOMEM, "out of memory for the timestep history");
    }
    memset(imp->history, 0, (size_t)T * DM_IMPORTANCE_HISTORY * sizeof(float));
    memset(imp->count, 0, (size_t)T * sizeof(int32_t));
    return DM_OK;
}

void dm_importance_free(dm_importance *imp) {
    dm_free(imp->history);
    dm_free(imp->count);
    dm_free(imp->cdf);
    memset(imp, 0, sizeof *imp);
}

int dm_importance_ready(const dm_importance *imp) {
    for (int32_t t = 0; t < imp->T; t++)
        if (imp->count[t] < DM_IMPORTANCE_HISTORY) return 0;
    return 1;
}

void dm_importance_draw(dm_importance *imp, dm_rng *rng, int32_t *idx, double *scale, float *u,
                        int64_t B) {
    const int32_t T = imp->T;
    if (!dm_importance_ready(imp)) {
        dm_rng_int(rng, idx, (size_t)B, 0, T);
        for (int64_t b = 0; b < B; b++) scale[b] = 1.0;
        return;
    }
    double total = 0.0;
    for (int32_t t = 0; t < T; t++) {
        const float *h = imp->history + (size_t)t * DM_IMPORTANCE_HISTORY;
        double m2 = 0.0;
        for (int k = 0; k < DM_IMPORTANCE_HISTORY; k++) m2 += (double)h[k] * h[k];
        imp->cdf[t] = sqrt(m2 / DM_IMPORTANCE_HISTORY);
        total += imp->cdf[t];
    }
    /* p_t = (1 - mix) w_t / sum w + mix / T, accumulated into the CDF */
    double acc = 0.0;
    for (int32_t t = 0; t < T; t++) {
        const double p = total > 0 ? (1.0 - UNIFORM_MIX) * imp->cdf[t] / total + UNIFORM_MIX / T
                                   : 1.0 / T;
        acc += p;
        imp->cdf[t] = acc;
    }
    dm_rng_uniform(rng, u, (size_t)B);
    for (int64_t b = 0; b < B; b++) {
        const double r = (double)u[b] * acc;
        int32_t lo = 0, hi = T - 1; /* first t with cdf[t] > r */
        while (lo < hi) {
            const int32_t mid = lo + (hi - lo) / 2;
            if (imp->cdf[mid] > r) hi = mid; else lo = mid + 1;
        }
        const double p = (imp->cdf[lo] - (lo > 0 ? imp->cdf[lo - 1] : 0.0)) / acc;
        idx[b] = lo;
        scale[b] = 1.0 / ((double)T * p);
    }
}

void dm_importance_update(dm_importance *imp, const int32_t *idx, const double *loss,
                          int64_t B) {
    for (int64_t b = 0; b < B; b++) {
        const int32_t t = idx[b];
        float *h = imp->history + (size_t)t * DM_IMPORTANCE_HISTORY;
        if (imp->count[t] < DM_IMPORTANCE_HISTORY) {
            h[imp->count[t]++] = (float)loss[b];
        } else {
            memmove(h, h + 1, (DM_IMPORTANCE_HISTORY - 1) * sizeof *h);
            h[DM_IMPORTANCE_HISTORY - 1] = (float)loss[b];
        }
    }
}
