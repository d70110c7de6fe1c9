/* Internal pieces of the forward process, posterior and objective. Formulas: ../shared/MATH.md.
 * Index i = t - 1 is 0-based throughout. */
#pragma once

#include "core/core.h"

#include <math.h>

/* The order in which epoch `epoch` visits n examples: a Fisher-Yates shuffle whose swap i uses
 * block epoch * n + i of (seed, stream), so any epoch can be rebuilt from its number alone (as a
 * resumed run does). perm (n) receives a permutation of 0..n-1. */
void dm_epoch_order(int32_t *perm, int64_t n, uint64_t seed, uint64_t stream, int64_t epoch);

/* x_t = sqrt(ab_i) x0 + sqrt(1 - ab_i) eps, row b at index idx[b]; all (B, dim). */
void dm_q_sample(const dm_schedule *s, float *xt, const float *x0, const float *eps,
                 const int32_t *idx, int64_t B, int64_t dim);

/* q(x_{t-1} | x_t, x_0) = N(c_x0 x0 + c_xt xt, var) at index i. */
typedef struct {
    double c_x0; /* sqrt(ab_{t-1}) beta_t / (1 - ab_t) */
    double c_xt; /* sqrt(alpha_t) (1 - ab_{t-1}) / (1 - ab_t) */
    double var;  /* beta_tilde_t */
} dm_posterior;

dm_posterior dm_q_posterior(const dm_schedule *s, int32_t i);

/* p(x_{t-1} | x_t) mean from eps_hat: (x_t - beta_t / sqrt(1 - ab_t) eps_hat) / sqrt(alpha_t);
 * mean, xt, eps_hat (n). mean may equal xt. */
void dm_p_mean_from_eps(const dm_schedule *s, int32_t i, float *mean, const float *xt,
                        const float *eps_hat, int64_t n);

/* sigma_t^2 of the reverse step at index i. */
double dm_reverse_variance(const dm_schedule *s, int32_t i, dm_reverse_var var);

/* L_simple on one batch: mean over n values of (eps_hat - eps)^2, accumulated in double.
 * If grad is not NULL it receives d loss / d eps_hat = 2 (eps_hat - eps) / n (overwritten). */
double dm_loss_simple(const float *eps_hat, const float *eps, float *grad, int64_t n);

/* log sigma^2 of a learned reverse variance (improved DDPM): f = (raw + 1) / 2 interpolates
 * between log beta (f = 1) and log beta_tilde (f = 0), beta_tilde clipped at t = 1
 * (dm_schedule_beta_tilde_clipped). The one place this mapping lives. */
static inline double dm_learned_log_var(double raw, double log_beta, double log_beta_tilde) {
    const double f = 0.5 * (raw + 1.0);
    return f * log_beta + (1.0 - f) * log_beta_tilde;
}
