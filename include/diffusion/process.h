/* diffusion/process.h: the forward process: schedules, predictions, objectives.
 * Part of the public API of libdiffusion; <diffusion.h> includes every part. */
#pragma once

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------------------------ */
/* Noise schedules                                                                            */

typedef enum {
    DM_SCHEDULE_LINEAR = 0, /* beta = linspace(beta_start, beta_end, T) (Ho et al.) */
    DM_SCHEDULE_COSINE,     /* Nichol & Dhariwal, offset s, beta clipped at 0.999 */
    DM_SCHEDULE_LOGSNR,     /* gamma = -log SNR linear in t from gamma_min to gamma_max (VDM) */
    DM_SCHEDULE_LEARNED,    /* VDM's learned monotone gamma_eta(t) (loss vdm-continuous); starts
                             * as logsnr, the trained one is saved with the checkpoint */
} dm_schedule_kind;

typedef struct {
    dm_schedule_kind kind;
    int32_t T;
    double beta_start, beta_end;  /* linear: 1e-4, 0.02 */
    double cosine_s;              /* cosine: 0.008 */
    double gamma_min, gamma_max;  /* log-SNR: -10, 10 */
} dm_schedule_config;

DM_API void dm_schedule_config_default(dm_schedule_config *cfg);
DM_API const char *dm_schedule_kind_name(dm_schedule_kind kind);
DM_API dm_status dm_schedule_kind_parse(const char *name, dm_schedule_kind *kind, dm_error *err);

/* Constants of a schedule, index i = t - 1 (0-based, as in diffusers), all (T) doubles. */
typedef struct {
    int32_t T;
    double *beta;           /* beta_t */
    double *alpha;          /* 1 - beta_t */
    double *alpha_bar;      /* prod_{s<=t} alpha_s */
    double *alpha_bar_prev; /* alpha_bar_{t-1}; 1 at i = 0 */
    double *beta_tilde;     /* (1 - ab_{t-1}) / (1 - ab_t) * beta_t; 0 at i = 0 */
} dm_schedule;

DM_API dm_status dm_schedule_init(dm_schedule *s, const dm_schedule_config *cfg, dm_error *err);
DM_API void dm_schedule_free(dm_schedule *s);
/* A schedule from its alpha_bar values (T, strictly decreasing in (0, 1)); betas follow as
 * 1 - ab_t / ab_{t-1} with ab_0 = 1. Used for respaced and learned schedules. */
DM_API dm_status dm_schedule_from_alpha_bar(dm_schedule *s, const double *alpha_bar, int32_t T,
                                            dm_error *err);
/* The reverse-process variance used where beta_tilde is 0 (t = 1): beta_tilde of t = 2, as in
 * improved DDPM's clipped log-variance (beta_1 when T = 1). */
DM_API double dm_schedule_beta_tilde_clipped(const dm_schedule *s, int32_t i);
/* S evenly spaced step indices from T - 1 down to 0 (S <= T), rounded: the levels of a strided
 * sampler. out (S), decreasing. */
DM_API dm_status dm_timesteps(int32_t T, int32_t S, int32_t *out, dm_error *err);
/* The schedule seen on the subset idx (S increasing indices of s): alpha_bar'_k = alpha_bar of
 * idx[k], beta'_k = 1 - alpha_bar'_k / alpha_bar'_{k-1} (improved DDPM's respacing). */
DM_API dm_status dm_schedule_respace(dm_schedule *out, const dm_schedule *s, const int32_t *idx,
                                     int32_t S, dm_error *err);

/* ------------------------------------------------------------------------------------------ */
/* Parameterisations: what the network predicts                                               */

/* At a noise level with alpha_bar = ab, x_t = sqrt(ab) x_0 + sqrt(1 - ab) eps, and any one of
 * these determines the others (MATH.md, "Three equivalent predictions"). */
typedef enum {
    DM_PRED_EPS = 0, /* eps */
    DM_PRED_X0,      /* x_0 */
    DM_PRED_V,       /* v = sqrt(ab) eps - sqrt(1 - ab) x_0 (Salimans & Ho) */
    DM_PRED_SCORE,   /* grad log q(x_t) = -eps / sqrt(1 - ab) (Tweedie) */
} dm_prediction;

/* "epsilon", "x0", "v", "score". */
DM_API const char *dm_prediction_name(dm_prediction p);
DM_API dm_status dm_prediction_parse(const char *name, dm_prediction *p, dm_error *err);
/* The one place the conversions live: eps = a * x_t + b * pred for a prediction of kind p. */
DM_API void dm_prediction_to_eps_coeffs(dm_prediction p, double ab, double *a, double *b);
/* out = the prediction of kind `to` equivalent to `in` of kind `from`, for x_t at alpha_bar ab;
 * n values, out may equal in. */
DM_API void dm_prediction_convert(dm_prediction from, dm_prediction to, double ab, const float *xt,
                                  const float *in, float *out, int64_t n);
/* The exact value of kind p for given x_0 and eps (the training target). */
DM_API void dm_prediction_target(dm_prediction p, double ab, const float *x0, const float *eps,
                                 float *out, int64_t n);

/* ------------------------------------------------------------------------------------------ */
/* Objectives                                                                                 */

typedef enum {
    DM_LOSS_SIMPLE = 0, /* mean squared error of the prediction in its own units (L_simple) */
    DM_LOSS_VLB,        /* the variational bound's terms T * L_{t-1} (exact KL weights) */
    DM_LOSS_VDM,        /* (T/2)(SNR(t-1) - SNR(t)) ||x_0 - x0_hat||^2 (seed 004 eq. 3) */
    DM_LOSS_HYBRID,     /* L_simple + lambda L_vlb, L_vlb training only a learned variance */
    DM_LOSS_VDM_CONTINUOUS, /* VDM in continuous time: prior + reconstruction +
                             * 0.5 E_t[gamma'(t) ||eps - eps_hat||^2], t ~ U(0, 1); schedule
                             * logsnr or learned; points */
} dm_loss_kind;

typedef enum {
    DM_VAR_BETA = 0,   /* sigma_t^2 = beta_t */
    DM_VAR_BETA_TILDE, /* sigma_t^2 = beta_tilde_t */
    DM_VAR_LEARNED,    /* log sigma^2 = f log beta + (1 - f) log beta_tilde, f = (out + 1) / 2
                        * from a second output (the model has twice the channels) */
} dm_reverse_var;

typedef enum {
    DM_TIME_UNIFORM = 0, /* t ~ U{1..T} */
    DM_TIME_IMPORTANCE,  /* p_t proportional to sqrt(E[L_t^2]) over the last 10 losses of each t
                          * (improved DDPM), uniform until every t has 10 */
} dm_time_sampling;

DM_API const char *dm_loss_kind_name(dm_loss_kind k); /* simple, vlb, vdm, hybrid, vdm-continuous */
DM_API dm_status dm_loss_kind_parse(const char *name, dm_loss_kind *k, dm_error *err);
DM_API const char *dm_reverse_var_name(dm_reverse_var v);        /* beta, beta-tilde, learned */
DM_API dm_status dm_reverse_var_parse(const char *name, dm_reverse_var *v, dm_error *err);
DM_API const char *dm_time_sampling_name(dm_time_sampling t);    /* uniform, importance */
DM_API dm_status dm_time_sampling_parse(const char *name, dm_time_sampling *t, dm_error *err);

/* The general per-step weight: the objective's mean term is
 *   mean over the batch of w[i] * mean over dimensions of (eps_hat - eps)^2,
 * eps_hat converted from the model's prediction. w (T) for prediction p, loss kind and a fixed
 * reverse variance var (used by DM_LOSS_VLB; DM_LOSS_HYBRID's mean term is L_simple's). */
DM_API dm_status dm_loss_weights(const dm_schedule *s, dm_prediction p, dm_loss_kind loss,
                                 dm_reverse_var var, double *w, dm_error *err);

/* ------------------------------------------------------------------------------------------ */
/* Continuous time: the forward SDEs                                                          */

/* The forward SDEs of Song et al. 2021 ("Score-Based Generative Modeling through Stochastic
 * Differential Equations"; their code, score_sde's sde_lib.py, is the anchor). Their samplers and
 * the ODE likelihood are in sde.h; dm_train_config.sde_training trains a network on them.
 *
 * Every process here is linear, f(x, t) = f(t) x, with a scalar diffusion g(t), and its
 * perturbation kernel is p_0t(x_t | x_0) = N(mean(t) x_0, std(t)^2 I):
 *   VP:     beta(t) = beta_min + t (beta_max - beta_min), B(t) = int_0^t beta,
 *           f = -beta / 2, g^2 = beta, mean = exp(-B / 2), std^2 = 1 - exp(-B); prior N(0, I).
 *   sub-VP: f = -beta / 2, g^2 = beta (1 - exp(-2 B)), mean = exp(-B / 2), std = 1 - exp(-B)
 *           (the standard deviation, not the variance: std^2 <= the VP's); prior N(0, I).
 *   VE:     sigma(t) = sigma_min (sigma_max / sigma_min)^t, f = 0,
 *           g^2 = d sigma^2 / dt = 2 log(sigma_max / sigma_min) sigma(t)^2, mean = 1,
 *           std = sigma(t); prior N(0, sigma_max^2 I). As in score_sde the kernel's std is
 *           sigma(t) itself, so std(0) = sigma_min: p_0 is the data smoothed by N(0, sigma_min^2),
 *           and the SDE carries the kernel's variance exactly from there (d std^2 / dt = g^2).
 * docs/continuous-time.md has the samplers' formulas and what the tests measured.
 */

typedef enum {
    DM_SDE_VP = 0, /* variance preserving: DDPM's process in continuous time */
    DM_SDE_SUBVP,  /* sub-VP: VP's drift, a smaller diffusion (Song et al. eq. 31) */
    DM_SDE_VE,     /* variance exploding: SMLD / NCSN's noise levels in continuous time */
} dm_sde_kind;

typedef struct {
    dm_sde_kind kind;
    double beta_min;  /* VP, sub-VP: beta(0) = 0.1 */
    double beta_max;  /* VP, sub-VP: beta(1) = 20 (with T = 1000 steps of beta(t) / T: Ho et
                       * al.'s linear schedule 1e-4 .. 0.02) */
    double sigma_min; /* VE: sigma(0) = 0.01 */
    double sigma_max; /* VE: sigma(1) = 50 (score_sde's CIFAR-10 value); dm_sde_ve_sigma_max
                       * gives Song & Ermon's data-dependent choice */
    double eps;       /* the smallest time the samplers reach (and where noise removal
                       * happens): 1e-3 for VP and sub-VP, 1e-5 for VE, as score_sde samples */
} dm_sde;

/* score_sde's defaults for kind (the values above). */
DM_API void dm_sde_default(dm_sde *sde, dm_sde_kind kind);
/* DM_ERR_ARG with a message naming the field and what is allowed: 0 <= beta_min <= beta_max,
 * beta_max > 0; 0 < sigma_min < sigma_max; 0 < eps < 1; all finite. */
DM_API dm_status dm_sde_check(const dm_sde *sde, dm_error *err);
DM_API const char *dm_sde_kind_name(dm_sde_kind kind); /* "vp", "subvp", "ve" */
/* Accepts vp, subvp (or sub-vp), ve; DM_ERR_ARG naming the allowed names otherwise. */
DM_API dm_status dm_sde_kind_parse(const char *name, dm_sde_kind *kind, dm_error *err);

/* The drift coefficient f(t) of f(x, t) = f(t) x. */
DM_API double dm_sde_drift(const dm_sde *sde, double t);
/* The diffusion coefficient g(t). */
DM_API double dm_sde_diffusion(const dm_sde *sde, double t);
/* The perturbation kernel p_0t(x_t | x_0) = N(mean x_0, std^2 I) at t (score_sde's
 * marginal_prob): either pointer may be NULL. */
DM_API void dm_sde_marginal(const dm_sde *sde, double t, double *mean, double *std);
/* The prior N(0, std^2 I) the samplers start from: 1 (VP, sub-VP) or sigma_max (VE). */
DM_API double dm_sde_prior_std(const dm_sde *sde);
/* log N(z; 0, std^2 I) of the prior for one point z (dim), in nats. */
DM_API double dm_sde_prior_logp(const dm_sde *sde, const float *z, int64_t dim);
/* Song & Ermon's (2020, technique 1) sigma_max: the largest Euclidean distance between two of
 * the n points x (n, dim), in double, exact over all pairs. With 0 < max_points < n, over
 * max_points of them drawn without replacement from (seed): a lower bound of the full value,
 * for sets where n^2 / 2 pairs cost too much. DM_ERR_ARG for n < 2 or non-finite values. */
DM_API dm_status dm_sde_ve_sigma_max(const float *x, int64_t n, int64_t dim, int64_t max_points,
                                     uint64_t seed, double *sigma_max, dm_error *err);


#ifdef __cplusplus
}
#endif
