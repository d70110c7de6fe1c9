/* DDIM sampling (Song, Meng & Ermon 2021) on the levels of dm_timesteps: deterministic at
 * eta = 0, ancestral-like noise at eta = 1. Formulas: shared/MATH.md, "Reverse process and
 * sampling". The reverse variance option does not apply: eta sets the noise. */
#include "diffusion/sampler_impl.h"

#include <math.h>

/* x <- sqrt(ab_prev) x0_hat + c_dir eps_hat + sigma z, x0_hat = (x - sqrt(1 - ab) eps) / sqrt(ab).
 * With clip, x0_hat is clipped to [-1, 1] and the direction term keeps the network's eps_hat,
 * as diffusers' DDIMScheduler does by default (use_clipped_model_output False); with
 * clipped_eps it uses the eps_hat of the clipped x0_hat, (x - sqrt(ab) x0_hat) / sqrt(1 - ab)
 * (GLIDE's form, diffusers' use_clipped_model_output True). z is read only when sigma > 0. */
static void ddim_update(float *x, const float *eps, const float *z, size_t n, double ab,
                        double ab_prev, double sigma, double c_dir, int clip, int clipped_eps) {
    const float r_ab = (float)(1.0 / sqrt(ab)), r_ab1 = (float)sqrt(1.0 / ab - 1.0);
    const float s_ab = (float)sqrt(ab), r_1ab = (float)(1.0 / sqrt(1.0 - ab));
    const float c_x0 = (float)sqrt(ab_prev), c_e = (float)c_dir, c_z = (float)sigma;
    const int noise = sigma > 0;
#pragma omp parallel for schedule(static) if (n >= DM_PARALLEL_MIN)
    for (size_t j = 0; j < n; j++) {
        float x0 = r_ab * x[j] - r_ab1 * eps[j], e = eps[j];
        if (clip) {
            x0 = x0 < -1.0f ? -1.0f : x0 > 1.0f ? 1.0f : x0;
            if (clipped_eps) e = (x[j] - s_ab * x0) * r_1ab;
        }
        float v = c_x0 * x0 + c_e * e;
        if (noise) v += c_z * z[j];
        x[j] = v;
    }
}

/* Levels k = 0 .. S-1 at model indices levels[k] (decreasing); the step from level k goes to
 * level k + 1's alpha_bar, and the last one to alpha_bar = 1, where the update is x0_hat
 * itself. One stream: x_T, then B*dim normals per step that adds noise (eta > 0, not the last). */
dm_status dm_sample_ddim_on(dm_sample_run *r, const int32_t *levels, int32_t S) {
    const dm_schedule *s = r->s;
    const double eta = r->opt->eta;
    dm_sample_start(r);
    dm_sample_observe(r, s->T);
    for (int32_t k = 0; k < S; k++) {
        const int32_t i = levels[k];
        const double ab = s->alpha_bar[i];
        const double ab_prev = k + 1 < S ? s->alpha_bar[levels[k + 1]] : 1.0;
        dm_status st = dm_sample_denoise(r, i, 0);
        if (st != DM_OK) return st;
        /* sigma^2 <= eta^2 (1 - ab_prev) since ab / ab_prev >= ab, so the direction's variance
         * 1 - ab_prev - sigma^2 is >= 0 up to rounding; it is 0 exactly at ab_prev = 1 */
        const double sigma = eta * sqrt((1.0 - ab_prev) / (1.0 - ab)) * sqrt(1.0 - ab / ab_prev);
        const double c_dir = sqrt(fmax(0.0, 1.0 - ab_prev - sigma * sigma));
        if (sigma > 0) dm_sample_step_noise(r, k);
        ddim_update(r->x, r->eps, r->z, r->n, ab, ab_prev, sigma, c_dir, r->opt->clip_x0,
                    r->opt->ddim_clipped_eps);
        dm_sample_observe(r, i);
    }
    return DM_OK;
}
