/* Ancestral sampling (Ho et al. 2020, Algorithm 2). The sampler sees only a denoise callback and a
 * schedule, never the network. */
#include "diffusion/diffusion_impl.h"

#include <math.h>
#include <stdint.h>

void dm_sample_options_default(dm_sample_options *opt) {
    opt->var = DM_VAR_BETA;
    opt->seed = 0;
    opt->stream = 0;
    opt->clip_x0 = 0;
    opt->observe = NULL;
    opt->observe_ctx = NULL;
}

/* x <- the mean of q(x_{t-1} | x_t = x, x0_hat), x0_hat = (x - sqrt(1 - ab) eps) / sqrt(ab)
 * clipped to [-1, 1]. */
static void clipped_mean(const dm_schedule *s, int32_t i, float *x, const float *eps, int64_t n) {
    const dm_posterior q = dm_q_posterior(s, i);
    const double ab = s->alpha_bar[i];
    const float r_ab = (float)(1.0 / sqrt(ab)), r_ab1 = (float)sqrt(1.0 / ab - 1.0);
    const float c0 = (float)q.c_x0, ct = (float)q.c_xt;
#pragma omp parallel for simd schedule(static) if (parallel: n >= DM_PARALLEL_MIN)
    for (int64_t j = 0; j < n; j++) {
        float x0 = r_ab * x[j] - r_ab1 * eps[j];
        x0 = x0 < -1.0f ? -1.0f : x0 > 1.0f ? 1.0f : x0;
        x[j] = c0 * x0 + ct * x[j];
    }
}

dm_status dm_sample_ancestral(const dm_schedule *s, dm_denoise_fn denoise, void *ctx, float *x,
                              int64_t B, int64_t dim, const dm_sample_options *opt, dm_error *err) {
    if (!s || !s->beta || s->T < 1)
        return dm_error_set(err, DM_ERR_ARG, "sample: no schedule (initialise it first)");
    if (!denoise || !x || !opt)
        return dm_error_set(err, DM_ERR_ARG, "sample: %s is NULL",
                            !denoise ? "denoise" : !x ? "x" : "options");
    if (B < 1 || dim < 1)
        return dm_error_set(err, DM_ERR_ARG, "sample: B = %lld, dim = %lld; both must be >= 1",
                            (long long)B, (long long)dim);
    if ((uint64_t)B > SIZE_MAX / sizeof(float) / (uint64_t)dim)
        return dm_error_set(err, DM_ERR_ARG, "sample: B * dim = %lld * %lld is too large",
                            (long long)B, (long long)dim);
    if (opt->var != DM_VAR_BETA && opt->var != DM_VAR_BETA_TILDE)
        return dm_error_set(err, DM_ERR_ARG, "sample: unknown reverse variance %d (allowed: beta, "
                            "beta_tilde)", (int)opt->var);

    const size_t n = (size_t)B * (size_t)dim;
    float *eps = dm_alloc(n * sizeof(float));         /* (B, dim) */
    float *z = dm_alloc(n * sizeof(float));           /* (B, dim) */
    float *t = dm_alloc((size_t)B * sizeof(float));   /* (B) */
    dm_status st = DM_OK;
    if (!eps || !z || !t) {
        st = dm_error_set(err, DM_ERR_NOMEM, "sample: cannot allocate buffers for B = %lld",
                          (long long)B);
        goto done;
    }

    /* One stream: x_T first, then B*dim normals per step i = T-1 .. 1, so a run is fixed by the
     * seed alone. */
    dm_rng rng;
    dm_rng_init(&rng, opt->seed, opt->stream);
    dm_rng_normal(&rng, x, n);
    if (opt->observe) opt->observe(opt->observe_ctx, s->T, x, B, dim);

    for (int32_t i = s->T - 1; i >= 0; i--) {
        for (int64_t b = 0; b < B; b++) t[b] = (float)i;
        st = denoise(ctx, eps, NULL, x, t, B, err);
        if (st != DM_OK) {
            /* keep the denoiser's own message; supply one only if it left none */
            if (err && err->status != st)
                dm_error_set(err, st, "sample: denoiser failed at step %d (%s)", (int)i,
                             dm_status_name(st));
            goto done;
        }
        if (opt->clip_x0)
            clipped_mean(s, i, x, eps, (int64_t)n);
        else
            dm_p_mean_from_eps(s, i, x, x, eps, (int64_t)n);
        if (i > 0) {
            /* z = 0 at the last step: x_0 is the mean itself */
            const float sigma = (float)sqrt(dm_reverse_variance(s, i, opt->var));
            dm_rng_normal(&rng, z, n);
#pragma omp parallel for schedule(static) if (n >= DM_PARALLEL_MIN)
            for (size_t j = 0; j < n; j++) x[j] += sigma * z[j];
        }
        if (opt->observe) opt->observe(opt->observe_ctx, i, x, B, dim);
    }

done:
    dm_free(eps);
    dm_free(z);
    dm_free(t);
    return st;
}
