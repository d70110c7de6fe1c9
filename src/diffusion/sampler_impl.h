/* Internal pieces shared by the samplers (sampler.c, ddim.c, langevin.c, dpm_solver.c): one sampling run's
 * state and buffers, the denoiser call, and the ancestral step that PC reuses as its predictor.
 * Formulas: shared/MATH.md; index i = t - 1. */
#pragma once

#include "diffusion/diffusion_impl.h"

/* Annealed Langevin defaults (dm_sample_options steps = 0 / corrector_steps = 0), chosen on the
 * Gaussian-data oracle of tests/test_samplers.c (T = 1000 linear, delta 1e-4): 100 levels x 20
 * steps = 2000 network calls, whose exact output moments sit 0.015 from the data mean and 0.01
 * from its covariance (up to 4% of a variance of 0.3). The error falls only about as
 * calls^-0.65 (5000 calls: about half), because the data directions mix only at the low-noise
 * levels where the step a_i is small; what matters is levels x steps, not either alone. */
#define DM_LANGEVIN_DEFAULT_LEVELS 100
#define DM_LANGEVIN_DEFAULT_STEPS 20
/* Default step scale: a_i = delta sigma_i^2 / sigma_min^2, so delta / sigma_min^2 is the step
 * relative to the variance at the noisiest levels. Langevin on N(m, lambda) is stable only for
 * a / lambda < 4; 1e-4 keeps that ratio at 1 for the linear schedule (sigma_min^2 = beta_1 = 1e-4)
 * and about 2.5 for cosine and log-SNR at T = 1000 (sigma_min^2 ~ 4e-5). Song & Ermon's 2e-5
 * (sigma_min = 0.01) is as safe but needs about five times the calls for the same accuracy. */
#define DM_LANGEVIN_DEFAULT_DELTA 1e-4
/* Predictor-corrector: corrector steps per level when corrector_steps = 0 (Song et al. use 1). */
#define DM_PC_DEFAULT_STEPS 1

/* One call of dm_sample: what every sampler reads and the buffers it works in (allocated once). */
typedef struct {
    const dm_schedule *s; /* the model's schedule; denoiser timesteps are its indices */
    dm_denoise_fn denoise;
    void *ctx;
    float *x; /* (B, dim) the samples, updated in place */
    int64_t B, dim;
    size_t n; /* B * dim */
    const dm_sample_options *opt;
    dm_rng rng;   /* the only source of randomness, drawn in a fixed order */
    float *eps;   /* (n) eps_hat */
    float *z;     /* (n) standard normals */
    float *var;   /* (n) raw variance output; only with DM_VAR_LEARNED, else NULL */
    float *t;     /* (B) timesteps */
    double *norm; /* (2 B) per-sample norms (PC corrector) */
    dm_error *err;
} dm_sample_run;

/* Allocates the buffers (var only for a learned variance) and seeds the generator from opt;
 * frees everything on failure. */
dm_status dm_sample_run_init(dm_sample_run *r, const dm_schedule *s, dm_denoise_fn denoise,
                             void *ctx, float *x, int64_t B, int64_t dim,
                             const dm_sample_options *opt, dm_error *err);
void dm_sample_run_free(dm_sample_run *r);

/* eps_hat of the current x at original index t into r->eps; with_var asks for the raw variance
 * into r->var (r->var must exist). A failure keeps the denoiser's own message. */
dm_status dm_sample_denoise(dm_sample_run *r, int32_t t, int with_var);

static inline void dm_sample_observe(dm_sample_run *r, int32_t i) {
    if (r->opt->observe) r->opt->observe(r->opt->observe_ctx, i, r->x, r->B, r->dim);
}

/* x_T into r->x: opt->x_T when given, else n normals from the run's stream. */
void dm_sample_start(dm_sample_run *r);
/* The noise of the k-th step taken into r->z: block k of opt->noise when given, else n normals
 * from the run's stream. */
void dm_sample_step_noise(dm_sample_run *r, int32_t k);
/* The predicted x_0 (n) as the run asks: clipped to [-1, 1] with clip_x0, or with a diffusers
 * scheduler its dynamic thresholding or clip_sample. scratch (dim) for thresholding. */
void dm_sample_fix_x0(const dm_sample_run *r, float *x0, float *scratch);

/* x <- x + c z for the normals in r->z (n). */
void dm_sample_add_noise(dm_sample_run *r, float c);

/* One ancestral step (Ho et al. Algorithm 2) at index k of the sampled schedule `sched` (the
 * model's schedule or a respaced one), calling the denoiser at original index t: x <- mu_theta
 * (or the clipped-x0 posterior mean), plus sigma z when k > 0 with sigma^2 from opt->var on
 * sched (a learned variance per element). Draws n normals when k > 0. */
dm_status dm_ancestral_step(dm_sample_run *r, const dm_schedule *sched, int32_t k, int32_t t);

/* The samplers proper; x is set up and observed at i = T by each. tmap (S) maps an index of
 * `sched` to the model's index (NULL: sched is the model's schedule). levels (S) are decreasing
 * model indices. */
dm_status dm_sample_ancestral_on(dm_sample_run *r, const dm_schedule *sched,
                                 const int32_t *tmap);
dm_status dm_sample_ddim_on(dm_sample_run *r, const int32_t *levels, int32_t S);
dm_status dm_sample_langevin_on(dm_sample_run *r, const int32_t *levels, int32_t S, int32_t K);
dm_status dm_sample_pc_on(dm_sample_run *r, const dm_schedule *sched, const int32_t *tmap,
                          int32_t K);
dm_status dm_sample_dpmpp2m_on(dm_sample_run *r, const int32_t *levels, int32_t S);
/* DPM-Solver++ steps from the x already in r->x: step k from levels[k] to levels[k + 1], the
 * last to alpha_bar ab_final (1: x becomes the x0_hat of the lowest level); second[k] takes
 * step k (k >= 1) at second order, midpoint or (heun) Heun's form (Lu et al.'s two 2M
 * variants, as diffusers' solver_type). Draws nothing. */
dm_status dm_dpmpp_steps(dm_sample_run *r, const int32_t *levels, int32_t S, double ab_final,
                         const uint8_t *second, int heun);
/* The loop of opt->scheduler (scheduler.c) with S inference steps. */
dm_status dm_sample_scheduler_on(dm_sample_run *r, int32_t S);

/* DPM-Solver++(2M) from the x_T given in x (B, dim), updated in place, on explicit levels (S
 * strictly decreasing model indices in 0..T-1), with the orders of diffusers'
 * DPMSolverMultistepScheduler (dpmsolver++, solver_order 2, lower_order_final, final sigma 0):
 * first order on the first step and on the last, which goes to sigma 0 (x becomes the lowest
 * level's x0_hat), and on the step into the lowest level only when S < 15 (dm_sample's
 * dpmpp-2m always takes that one first order). So diffusers' timestep list (e.g. "linspace":
 * 999, 949, ..., 50) runs as diffusers runs it. Uses opt's clip_x0 and observer (which sees x
 * at i = T first); draws nothing. */
dm_status dm_sample_dpmpp2m_levels(const dm_schedule *s, dm_denoise_fn denoise, void *ctx,
                                   float *x, int64_t B, int64_t dim, const int32_t *levels,
                                   int32_t S, const dm_sample_options *opt, dm_error *err);
