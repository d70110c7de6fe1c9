/* Score-based samplers on the VP marginals q(x_t) = N(sqrt(ab_t) x_0, (1 - ab_t) I), with the
 * score s_hat = -eps_hat / sqrt(1 - ab) (Tweedie; MATH.md "Three equivalent predictions"):
 * annealed Langevin dynamics (Song & Ermon 2019) and predictor-corrector sampling (Song et al.
 * 2021: Langevin corrector steps, then an ancestral predictor step, at every level). Annealed
 * Langevin sets its own noise, so the reverse variance option applies only to PC's predictor. */
#include "diffusion/langevin.h"
#include "diffusion/sampler_impl.h"

#include <math.h>

/* x <- x - c_eps eps + c_z z: a Langevin step x + (a/2) s_hat + sqrt(a) z with
 * c_eps = (a/2) / sqrt(1 - ab) and c_z = sqrt(a). */
static void langevin_update(float *x, const float *eps, const float *z, size_t n, float c_eps,
                            float c_z) {
#pragma omp parallel for schedule(static) if (n >= DM_PARALLEL_MIN)
    for (size_t j = 0; j < n; j++) x[j] = x[j] - c_eps * eps[j] + c_z * z[j];
}

/* Tweedie's denoising: x <- E[x_0 | x_t = x] = (x - sqrt(1 - ab) eps_hat) / sqrt(ab), clipped to
 * [-1, 1] when asked. */
static void tweedie(float *x, const float *eps, size_t n, double ab, int clip) {
    const float r_ab = (float)(1.0 / sqrt(ab)), r_ab1 = (float)sqrt(1.0 / ab - 1.0);
#pragma omp parallel for schedule(static) if (n >= DM_PARALLEL_MIN)
    for (size_t j = 0; j < n; j++) {
        float x0 = r_ab * x[j] - r_ab1 * eps[j];
        if (clip) x0 = x0 < -1.0f ? -1.0f : x0 > 1.0f ? 1.0f : x0;
        x[j] = x0;
    }
}

/* Song & Ermon's schedule a_i = delta sigma_i^2 / sigma_min^2 with sigma_i^2 = 1 - ab of level i
 * and sigma_min the lowest level used (levels[S-1]). x starts at N(0, I), the VP prior. One
 * stream: x, then B*dim normals per Langevin step, level by level. The observer sees each level
 * once its K steps are done; the last level's report comes after the final denoising, so the
 * last x observed (i = levels[S-1]) is the output. */
dm_status dm_sample_langevin_on(dm_sample_run *r, const int32_t *levels, int32_t S, int32_t K) {
    const dm_schedule *s = r->s;
    const double delta = r->opt->langevin_delta;
    const double var_min = 1.0 - s->alpha_bar[levels[S - 1]];
    dm_sample_start(r);
    dm_sample_observe(r, s->T);
    for (int32_t k = 0; k < S; k++) {
        const int32_t i = levels[k];
        const double ab = s->alpha_bar[i];
        const double a = delta * (1.0 - ab) / var_min;
        const float c_eps = (float)(0.5 * a / sqrt(1.0 - ab)), c_z = (float)sqrt(a);
        for (int32_t step = 0; step < K; step++) {
            dm_status st = dm_sample_denoise(r, i, 0);
            if (st != DM_OK) return st;
            dm_rng_normal(&r->rng, r->z, r->n);
            langevin_update(r->x, r->eps, r->z, r->n, c_eps, c_z);
        }
        if (k == S - 1) {
            /* the chain ends near q(x_t) at the lowest level; one denoising call removes its
             * remaining noise */
            dm_status st = dm_sample_denoise(r, i, 0);
            if (st != DM_OK) return st;
            tweedie(r->x, r->eps, r->n, ab, r->opt->clip_x0);
        }
        dm_sample_observe(r, i);
    }
    return DM_OK;
}

void dm_langevin_norm_sums(const float *s, const float *z, int64_t B, int64_t dim, double *nrm,
                           double *s_sum, double *z_sum) {
#pragma omp parallel for schedule(static) if (B * dim >= DM_PARALLEL_MIN)
    for (int64_t b = 0; b < B; b++) {
        const float *sb = s + b * dim, *zb = z + b * dim;
        double ss = 0, zz = 0;
        for (int64_t d = 0; d < dim; d++) {
            ss += (double)sb[d] * sb[d];
            zz += (double)zb[d] * zb[d];
        }
        nrm[2 * b] = sqrt(ss);
        nrm[2 * b + 1] = sqrt(zz);
    }
    *s_sum = 0;
    *z_sum = 0;
    for (int64_t b = 0; b < B; b++) {
        *s_sum += nrm[2 * b];
        *z_sum += nrm[2 * b + 1];
    }
}

/* Song et al.'s Langevin corrector at index k of sched (model index t): step size
 * e = 2 alpha_k (snr ||z|| / ||s_hat||)^2, then x += (e / 2) s_hat + sqrt(e) z.
 * The norms are over each sample's dim values, averaged over the batch as in Song et al.'s code
 * (score_sde, LangevinCorrector). A step size from each sample's own norms would be unbounded
 * in low dimension: a sample near the mode has ||s_hat|| near 0 and is thrown a distance
 * proportional to 1 / ||s_hat|| (on 2-D Gaussian data it inflates the covariance fourfold);
 * in image dimensions the two agree, as the norms concentrate. A sample thus depends on its
 * batch (as the noise layout, B*dim normals per step, already makes it depend on B). The batch
 * sums run in a fixed order, so the result does not depend on the thread count. If every score
 * is exactly 0 the step is undefined and skipped. */
static dm_status corrector_step(dm_sample_run *r, const dm_schedule *sched, int32_t k,
                                int32_t t) {
    dm_status st = dm_sample_denoise(r, t, 0);
    if (st != DM_OK) return st;
    dm_rng_normal(&r->rng, r->z, r->n);
    double eps_norm, z_norm;
    dm_langevin_norm_sums(r->eps, r->z, r->B, r->dim, r->norm, &eps_norm, &z_norm);
    if (!(eps_norm > 0)) return DM_OK;
    /* with ||s_hat|| = ||eps|| / sqrt(1 - ab) (the batch means' 1/B cancels in the ratio) */
    const double ab = sched->alpha_bar[k];
    const double ratio = r->opt->pc_snr * z_norm / eps_norm;
    const double e = 2.0 * sched->alpha[k] * ratio * ratio * (1.0 - ab);
    langevin_update(r->x, r->eps, r->z, r->n, (float)(0.5 * e / sqrt(1.0 - ab)), (float)sqrt(e));
    return DM_OK;
}

/* Levels k = S-1 .. 0 of sched (the model's schedule or a respaced one; tmap gives model
 * indices): K corrector steps, then the ancestral predictor step (opt->var, clip_x0). One
 * stream: x_T, then per level B*dim normals per corrector step and B*dim for the predictor
 * (k > 0). */
dm_status dm_sample_pc_on(dm_sample_run *r, const dm_schedule *sched, const int32_t *tmap,
                          int32_t K) {
    dm_sample_start(r);
    dm_sample_observe(r, r->s->T);
    for (int32_t k = sched->T - 1; k >= 0; k--) {
        const int32_t t = tmap ? tmap[k] : k;
        for (int32_t step = 0; step < K; step++) {
            dm_status st = corrector_step(r, sched, k, t);
            if (st != DM_OK) return st;
        }
        dm_status st = dm_ancestral_step(r, sched, k, t);
        if (st != DM_OK) return st;
        dm_sample_observe(r, t);
    }
    return DM_OK;
}
