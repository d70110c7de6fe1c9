/* The continuous-time VDM objective (Kingma et al. 2021; MATH.md, "VDM ... continuous time")
 * for low-dimensional points, with the log-SNR schedule gamma(t) either fixed (linear from
 * gamma_min to gamma_max) or learned (diffusion/gamma_net.h) jointly with the network:
 *   L(x) = KL(q(z_1 | x) || N(0, I))                        prior, through gamma_1
 *        + E[-log N(x; z_0 / alpha_0, sigma_0^2 / alpha_0^2)] = D/2 (log 2 pi + 1 + gamma_0)
 *        + 0.5 E_{t ~ U(0,1)} [gamma'(t) ||eps - eps_hat(z_t, t)||^2]
 * with z_t = sqrt(sigmoid(-gamma)) x + sqrt(sigmoid(gamma)) eps. t is drawn low-discrepancy
 * (t_b = (u + b / B) mod 1), as VDM does. The schedule's endpoints follow the bound; its shape
 * follows the variance of the diffusion term (shape_scale = 2 L_b). The network sees
 * t_model = T t - 1, so that the T-step discretisation alpha_bar_i = sigmoid(-gamma((i + 1) / T))
 * used for sampling and the discrete bound puts step i at the model's input i. */
#pragma once

#include "diffusion/gamma_net.h"
#include "nn/nn.h"

typedef struct {
    int learned;         /* 0: gamma linear from gamma_min to gamma_max */
    double gamma_min, gamma_max;
    int32_t T;           /* steps of the discretisation (the model's time scale) */
    dm_gamma_net net;    /* learned only */
    dm_adam opt;         /* the schedule's own optimiser state */
    float *ema;          /* (net.num_params) EMA of the schedule, saved with the EMA network */
    int64_t cap;         /* batch capacity */
    double *t, *g, *dg;  /* (cap) t, gamma(t), gamma'(t) */
    double *dl_dg, *dl_ddg, *shape_scale; /* (cap) */
    double *diff;        /* (cap) each example's diffusion term, nats */
    float *gx;           /* (cap, dim) d loss / d z_t from the network's backward */
} dm_vdm;

/* Needs cfg->loss == DM_LOSS_VDM_CONTINUOUS; refuses what it does not support, saying what is
 * allowed (epsilon prediction, a fixed variance, a logsnr or learned schedule, points). */
dm_status dm_vdm_init(dm_vdm *v, const dm_train_config *cfg, int64_t dim, dm_error *err);
void dm_vdm_free(dm_vdm *v);

/* Draws t for the batch from rng and writes z_t (B, D) and the model's time input tm (B). */
void dm_vdm_prepare(dm_vdm *v, dm_rng *rng, const float *x0, const float *eps, float *zt,
                    float *tm, int64_t B, int64_t D);
/* The objective per dimension (mean over the batch of L(x) / D) after the network's forward;
 * dout (B, D) receives d loss / d eps_hat. */
double dm_vdm_loss(dm_vdm *v, const float *eps_hat, const float *x0, const float *eps,
                   float *dout, int64_t B, int64_t D);
/* After the network's backward wrote d loss / d z_t into v->gx: the schedule's gradients and
 * its Adam and EMA steps (learned only). */
void dm_vdm_update_schedule(dm_vdm *v, const float *x0, const float *eps, int64_t B, int64_t D,
                            double ema_decay);

/* The schedule's gradients alone (into v->net.grads, overwritten), for tests. */
void dm_vdm_schedule_grads(dm_vdm *v, const float *x0, const float *eps, int64_t B, int64_t D);

/* alpha_bar (T) of the discretisation from schedule parameters (the EMA ones for sampling). */
void dm_vdm_alpha_bar(const dm_vdm *v, const float *params, double *alpha_bar);
