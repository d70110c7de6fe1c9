/* Continuous-time training on a forward SDE: denoising score matching with NCSN's std^2
 * weighting (score_sde's get_sde_loss_fn, likelihood_weighting off), as dm_train_config's
 * sde_training describes. With epsilon prediction the weighted loss std^2 ||s + z / std||^2 is
 * ||eps_hat - z||^2, L_simple's form, so the trainer's objective code serves it; what differs
 * is here: how t, x_t and the network's inputs are drawn, and how the output is read as a score. */
#pragma once

#include "core/core.h"

/* The scale the network's input gets at t: 1 / sqrt(mean(t)^2 + std(t)^2) (1 for VP). */
double dm_dsm_input_scale(const dm_sde *sde, double t);
/* The network's time input at t: t (T - 1), score_sde's labels for its DDPM-type models (a VP
 * model's step i of the T-step discretisation sits at t = i / (T - 1)). */
double dm_dsm_time_input(double t, int32_t T);

/* One batch: t_b = eps + u_b (1 - eps) for uniform draws u (B); x_t = mean x0 + std z, given to
 * the network as xin = x_t * input_scale (B, D) at time input tm (B); idx (B) receives the
 * nearest step of the T-step grid (the objective's bookkeeping: with epsilon prediction and loss
 * simple the objective does not depend on it). */
void dm_dsm_prepare(const dm_sde *sde, int32_t T, const float *u, const float *x0, const float *z,
                    float *xin, float *tm, int32_t *idx, int64_t B, int64_t D);

/* What sde_training accepts of the rest of the config, and the SDE itself (a VE sigma_max of 0
 * is allowed: resolved from the data by dm_dsm_resolve_sigma_max); one message naming what is
 * allowed. */
dm_status dm_dsm_check_config(const dm_train_config *cfg, dm_error *err);
/* The schedule a VP run samples with: its SDE's T-step discretisation (score_sde's DDPM:
 * beta_i linear from beta_min / T to beta_max / T). Other kinds keep cfg->schedule. */
void dm_dsm_set_schedule(dm_train_config *cfg);
/* A VE run's sigma_max of 0 becomes the largest distance between two of (at most
 * DM_SDE_SIGMA_MAX_POINTS of) the rows the network sees, drawn by a shuffle from seed: x (n, D)
 * floats or, when x is NULL, u8 pixels (as dm_pixel_from_u8 maps them). */
dm_status dm_dsm_resolve_sigma_max(dm_sde *sde, const float *x, const uint8_t *u8, int64_t n,
                                   int64_t D, uint64_t seed, dm_error *err);
