/* Internal pieces of the forward process, posterior and objective. Formulas: ../shared/MATH.md.
 * Index i = t - 1 is 0-based throughout. */
#pragma once

#include "core/core.h"

#include <math.h>

/* The order in which epoch `epoch` visits n examples: a Fisher-Yates shuffle whose swap i uses
 * block epoch * n + i of (seed, stream), so any epoch can be rebuilt from its number alone (as a
 * resumed run does). perm (n) receives a permutation of 0..n-1. */
void dm_epoch_order(int32_t *perm, int64_t n, uint64_t seed, uint64_t stream, int64_t epoch);

/* One training example into a batch: rows x W values, each row mirrored when flip is set (an
 * image's c * h rows of width w; points are 1 row and never flip). */
void dm_copy_example(float *dst, const float *src, int64_t rows, int64_t W, bool flip);

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


/* log sigma^2 of a learned reverse variance (improved DDPM): f = (raw + 1) / 2 interpolates
 * between log beta (f = 1) and log beta_tilde (f = 0), beta_tilde clipped at t = 1
 * (dm_schedule_beta_tilde_clipped). The one place this mapping lives. */
static inline double dm_learned_log_var(double raw, double log_beta, double log_beta_tilde) {
    const double f = 0.5 * (raw + 1.0);
    return f * log_beta + (1.0 - f) * log_beta_tilde;
}

/* One dimension's term of the bound at index i, in nats, for a reverse variance exp(lv) and
 * gap2 = (mu_tilde - mu_theta)^2: KL(N(mu_tilde, bt) || N(mu_theta, exp(lv))) for i > 0 (bt =
 * beta_tilde_i, log_bt its log), the Gaussian decoder's -log density at i = 0. Its derivative
 * in lv is 0.5 (1 - (bt + gap2) exp(-lv)) in both cases (bt = 0 at i = 0). The objective and the
 * likelihood share this one formula. */
static inline double dm_bound_term_dim(int32_t i, double lv, double bt, double log_bt,
                                       double gap2) {
    const double log_2pi = 1.83787706640934548356;
    if (i > 0) return 0.5 * (lv - log_bt + (bt + gap2) * exp(-lv) - 1.0);
    return 0.5 * (log_2pi + lv + gap2 * exp(-lv));
}

/* mu_tilde - mu_theta = c_t (eps_hat - eps): c_t = beta_t / (sqrt(alpha_t) sqrt(1 - ab_t)). */
double dm_mean_gap_coeff(const dm_schedule *s, int32_t i);

/* A training objective: prediction kind, loss kind and reverse variance over a schedule. */
typedef struct {
    const dm_schedule *s;
    dm_prediction pred;
    dm_loss_kind loss;
    dm_reverse_var var;
    double hybrid_lambda; /* weight of L_vlb in DM_LOSS_HYBRID: 0.001 */
    const double *w;      /* (T) the mean term's weights, dm_loss_weights (unused for a learned
                           * variance under DM_LOSS_VLB) */
} dm_objective;

/* Refuses combinations that cannot train (a learned variance without the bound, hybrid with a
 * fixed variance), saying what is allowed. */
dm_status dm_objective_check(const dm_objective *o, dm_error *err);

/* Rows are processed DM_OBJECTIVE_MAX_ROW values at a time (a stack buffer). */
#define DM_OBJECTIVE_MAX_ROW 1024

/* The mini-batch objective for the model's raw output `out` (B, D) or, with a learned variance,
 * (B, 2D) = [prediction, raw variance] per row; x_t, eps (B, D), step indices idx (B),
 * importance weights scale (B) (1 / (T p_t); NULL = 1). Overwrites grad (like out) with
 * d(loss)/d(out) and per_example (B) with each example's unweighted loss; returns
 * mean_b scale_b * per_example_b. */
double dm_objective_batch(const dm_objective *o, const float *out, const float *xt,
                          const float *eps, const int32_t *idx, const double *scale, float *grad,
                          double *per_example, int64_t B, int64_t D);

/* Improved DDPM's importance sampling of t: the last DM_IMPORTANCE_HISTORY losses of each t. */
#define DM_IMPORTANCE_HISTORY 10
typedef struct {
    int32_t T;
    float *history;  /* (T, DM_IMPORTANCE_HISTORY), oldest first */
    int32_t *count;  /* (T) losses recorded per t, up to DM_IMPORTANCE_HISTORY */
    double *cdf;     /* (T) scratch */
} dm_importance;

dm_status dm_importance_init(dm_importance *imp, int32_t T, dm_error *err);
void dm_importance_free(dm_importance *imp);
/* 1 once every t has a full history (until then draws are uniform). */
int dm_importance_ready(const dm_importance *imp);
/* Draws B indices from rng with p_t proportional to sqrt(mean of the squared history), mixed
 * with 0.1% uniform (improved DDPM); scale (B) receives 1 / (T p_t). Before the history is
 * full: uniform draws exactly as the uniform sampler makes them, scale 1. u (B) is scratch. */
void dm_importance_draw(dm_importance *imp, dm_rng *rng, int32_t *idx, double *scale, float *u,
                        int64_t B);
/* Records each example's loss under its t. */
void dm_importance_update(dm_importance *imp, const int32_t *idx, const double *loss, int64_t B);

/* log P(x's bin) under N(mu, sigma^2) for x on 256 levels in [-1, 1]: bins x +- 1/255, the
 * outer two open to -inf and +inf (Ho et al.'s decoder). */
double dm_log_discretized_gaussian(double x, double mu, double sigma);

/* The fingerprint of training data that resuming checks: the points' bytes and, for a
 * class-conditional run, the labels'. */
uint64_t dm_train_data_hash(const dm_dataset *data, const dm_train_config *cfg);


/* The pipeline's network as eps_hat (and its raw variance output when var_out is set) for
 * labels (B) of a class-conditional model; NULL labels: an unconditional model, or a
 * conditional one's null label (refused for a model trained without it). */
dm_status dm_pipeline_denoise_labels(dm_pipeline *p, float *eps_hat, float *var_out,
                                     const float *x, const float *t, const int32_t *labels,
                                     int64_t B, dm_error *err);
/* Fills labels (B) with a conditional model's null label; refuses a model trained without it. */
dm_status dm_pipeline_null_labels(dm_pipeline *p, int32_t *labels, int64_t B, dm_error *err);
