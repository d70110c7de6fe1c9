/* The continuous-time VDM objective (Kingma et al. 2021; MATH.md, "VDM ... continuous time")
 * for points and images, with the log-SNR schedule gamma(t) either fixed (linear from
 * gamma_min to gamma_max) or learned (diffusion/gamma_net.h) jointly with the network:
 *   L(x) = KL(q(z_1 | x) || N(0, I))                        prior, through gamma_1
 *        + E[-log N(x; z_0 / alpha_0, sigma_0^2 / alpha_0^2)] = D/2 (log 2 pi + 1 + gamma_0)
 *          (points: the continuous reconstruction), or for images the discretised one,
 *          E[-log p(x | z_0)] with p a categorical over the 256 levels per pixel (VDM's
 *          EncDec.logprob / decode, dm_vdm_recon_discrete below), drawn with one eps_0
 *        + 0.5 E_{t ~ U(0,1)} [gamma'(t) ||eps - eps_hat(z_t, t)||^2]
 * with z_t = sqrt(sigmoid(-gamma)) x + sqrt(sigmoid(gamma)) eps. t is drawn low-discrepancy
 * (t_b = (u + b / B) mod 1), as VDM does. The schedule's endpoints follow the bound; its shape
 * follows the variance of the diffusion term (shape_scale = 2 L_b). The network sees
 * t_model = T t - 1, so that the T-step discretisation alpha_bar_i = sigmoid(-gamma((i + 1) / T))
 * used for sampling and the discrete bound puts step i at the model's input i. */
#pragma once

#include "diffusion/gamma_net.h"
#include "nn/nn.h"

typedef struct dm_vdm {
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
    int discrete;        /* images: the discretised reconstruction on DM_VDM_LEVELS levels */
    float *eps0;         /* (cap, dim) discrete only: the reconstruction's noise eps_0 */
    double *recon;       /* (cap) each example's reconstruction term, nats */
    double recon_dg0;    /* discrete: d loss / d gamma_0 of the reconstruction term (from
                          * dm_vdm_loss, in the objective's per-dimension units) */
} dm_vdm;

/* Pixel levels of the discretised reconstruction: the data's x = 2 k / 255 - 1, k = 0..255. */
#define DM_VDM_LEVELS 256

/* Needs cfg->loss == DM_LOSS_VDM_CONTINUOUS; refuses what it does not support, saying what is
 * allowed (epsilon prediction, a fixed variance, a logsnr or learned schedule). cfg->arch
 * DM_ARCH_UNET selects the discretised reconstruction (images in [-1, 1] on 256 levels). */
dm_status dm_vdm_init(dm_vdm *v, const dm_train_config *cfg, int64_t dim, dm_error *err);
void dm_vdm_free(dm_vdm *v);

/* Draws t for the batch from rng (and, for images, eps_0 after it) and writes z_t (B, D) and
 * the model's time input tm (B). */
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

/* The discretised reconstruction term of n pixels x (values 2 k / 255 - 1) with noise e0:
 * sum_j -log p(k_j | z_j), z_j = x_j + exp(gamma_0 / 2) e0_j (VDM's z_0 / alpha_0), p(k | z)
 * proportional to exp(-0.5 (z - v_k)^2 exp(-gamma_0)) over the levels v_k (VDM's
 * EncDec.decode with vocab_size 256, on our data's levels). Levels whose logit is more than
 * 72 below the nearest level's are left out of the normaliser (each weighs < e^-72 of it).
 * *dg0 (may be NULL) receives the sum's derivative in gamma_0 (through z and the scale). */
double dm_vdm_recon_discrete(const float *x, const float *e0, int64_t n, double gamma_0,
                             double *dg0);

/* gamma(t) and gamma'(t) at n values of t from the schedule with parameters params (learned;
 * ignored for the fixed one); either output may be NULL. */
void dm_vdm_gamma(const dm_vdm *v, const float *params, const double *t, double *g, double *dg,
                  int64_t n);

/* VDM's continuous-time bound (vdm/model_vdm.py, VDM.__call__ with sm_n_timesteps 0) of n
 * images x (n, D) in [-1, 1] on the 256 levels, in nats per example: the prior KL exactly, and
 * the discretised reconstruction and 0.5 gamma'(t) ||eps - eps_hat(z_t, T t - 1)||^2 averaged
 * over o->t_draws draws of (t, eps, eps_0) per example, t stratified (u + j / t_draws) mod 1.
 * Unbiased for the bound. denoise gives eps_hat for the schedule params (the EMA ones). Uses
 * o->t_draws, batch (rows per call), seed, per_example, progress; r gets the means (decoder:
 * the reconstruction), total_se over examples, and bpd = total / (D ln 2) as VDM reports it. */
dm_status dm_vdm_nll(const dm_vdm *v, const float *params, dm_denoise_fn denoise, void *ctx,
                     const float *x, int64_t n, int64_t D, const dm_nll_options *o,
                     dm_nll_report *r, dm_error *err);
