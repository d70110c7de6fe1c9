/* Forward process q(x_t | x_0), its posterior and the reverse-step mean.
 * Formulas: shared/MATH.md; index i = t - 1. */
#include "diffusion/diffusion_impl.h"

#include <math.h>

void dm_q_sample(const dm_schedule *s, float *xt, const float *x0, const float *eps,
                 const int32_t *idx, int64_t B, int64_t dim) {
#pragma omp parallel for schedule(static) if (B * dim >= DM_PARALLEL_MIN)
    for (int64_t b = 0; b < B; b++) {
        const int32_t i = idx[b];
        assert(i >= 0 && i < s->T);
        /* coefficients from the double schedule, rounded once */
        const float a = (float)sqrt(s->alpha_bar[i]);
        const float c = (float)sqrt(1.0 - s->alpha_bar[i]);
        const float *x0b = x0 + b * dim, *eb = eps + b * dim;
        float *xb = xt + b * dim;
        for (int64_t d = 0; d < dim; d++) xb[d] = a * x0b[d] + c * eb[d];
    }
}

dm_posterior dm_q_posterior(const dm_schedule *s, int32_t i) {
    assert(i >= 0 && i < s->T);
    const double ab = s->alpha_bar[i], ab_prev = s->alpha_bar_prev[i];
    dm_posterior p;
    p.c_x0 = sqrt(ab_prev) * s->beta[i] / (1.0 - ab);
    p.c_xt = sqrt(s->alpha[i]) * (1.0 - ab_prev) / (1.0 - ab);
    p.var = s->beta_tilde[i];
    return p;
}

void dm_p_mean_from_eps(const dm_schedule *s, int32_t i, float *mean, const float *xt,
                        const float *eps_hat, int64_t n) {
    assert(i >= 0 && i < s->T);
    const double inv_sqrt_alpha = 1.0 / sqrt(s->alpha[i]);
    const float k_x = (float)inv_sqrt_alpha;
    const float k_eps = (float)(s->beta[i] / sqrt(1.0 - s->alpha_bar[i]) * inv_sqrt_alpha);
#pragma omp parallel for schedule(static) if (n >= DM_PARALLEL_MIN)
    for (int64_t j = 0; j < n; j++) mean[j] = k_x * xt[j] - k_eps * eps_hat[j];
}

double dm_reverse_variance(const dm_schedule *s, int32_t i, dm_reverse_var var) {
    assert(i >= 0 && i < s->T);
    assert(var == DM_VAR_BETA || var == DM_VAR_BETA_TILDE);
    return var == DM_VAR_BETA_TILDE ? s->beta_tilde[i] : s->beta[i];
}
