/* diffusion/sampling.h: samplers, diffusers schedulers and pipelines.
 * Part of the public API of libdiffusion; <diffusion.h> includes every part. */
#pragma once

#include "core.h"
#include "training.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------------------------ */
/* Sampling                                                                                   */

/* The network seen by a sampler, at float timesteps t (B) (0-based step indices): eps_hat
 * (B, dim) for x (B, dim) and, when var_out is not NULL (a learned variance), the model's raw
 * variance output (B, dim), mapped to sigma^2 as DM_VAR_LEARNED says. A denoiser without a
 * variance output returns DM_ERR_ARG when var_out is not NULL. */
typedef dm_status (*dm_denoise_fn)(void *ctx, float *eps_hat, float *var_out, const float *x,
                                   const float *t, int64_t B, dm_error *err);
/* Called after each reverse step with the current x (B, dim) and the 0-based index i of the
 * step just taken (i = T - 1 first, 0 last; a strided sampler reports its subset's indices);
 * also once before the first step with i = T. */
typedef void (*dm_sample_observer)(void *ctx, int32_t i, const float *x, int64_t B, int64_t dim);

typedef enum {
    DM_SAMPLER_ANCESTRAL = 0, /* Ho et al. Algorithm 2, on all T steps or a respaced subset */
    DM_SAMPLER_DDIM,          /* Song et al.; eta = 0 deterministic */
    DM_SAMPLER_LANGEVIN,      /* annealed Langevin dynamics on the score (Song & Ermon) */
    DM_SAMPLER_PC,            /* predictor-corrector: ancestral step + Langevin corrector steps */
    DM_SAMPLER_DPMPP_2M,      /* DPM-Solver++(2M): second-order multistep ODE solver (Lu et al.) */
} dm_sampler_kind;

DM_API const char *dm_sampler_name(dm_sampler_kind k); /* ancestral, ddim, langevin, pc, dpmpp-2m */
DM_API dm_status dm_sampler_parse(const char *name, dm_sampler_kind *k, dm_error *err);

/* A diffusers scheduler (below, "diffusers schedulers"). */
typedef struct dm_scheduler dm_scheduler;

typedef struct {
    dm_sampler_kind sampler;  /* DM_SAMPLER_ANCESTRAL */
    int32_t steps;            /* network levels: 0 = all T (langevin: min(T, 100)); S < T =
                               * dm_timesteps(T, S) */
    double eta;               /* DDIM noise: 0 (deterministic) .. 1 */
    dm_reverse_var var;       /* DM_VAR_BETA; DM_VAR_LEARNED needs a variance output. Used by
                               * ancestral and pc; DDIM's noise is eta's, Langevin's its step's;
                               * dpmpp-2m adds no noise */
    int32_t corrector_steps;  /* Langevin steps per level: 0 = the default (langevin 20, pc 1) */
    double langevin_delta;    /* annealed Langevin step a_i = delta sigma_i^2 / sigma_min^2:
                               * 1e-4 (stable for T = 1000 linear, cosine and logsnr) */
    double pc_snr;            /* PC corrector: step 2 alpha_i (r ||z|| / ||s_hat||)^2 with the
                               * norms averaged over the batch, as Song et al.'s code: r = 0.16 */
    uint64_t seed;            /* 0 */
    uint64_t stream;          /* 0; independent draws of the same seed use different streams */
    int clip_x0;              /* 0; 1 clips the predicted x_0 to [-1, 1] before each step's mean
                               * (images; diffusers' clip_sample) */
    int ddim_clipped_eps;     /* 0: DDIM with clip_x0 keeps the network's eps in the direction
                               * term, as diffusers' default (use_clipped_model_output False);
                               * 1: recomputes eps from the clipped x_0 (GLIDE's form) */
    const float *x_T;         /* NULL: x_T is drawn from (seed, stream); else the start (B, dim),
                               * for reproducing a run made elsewhere */
    const float *noise;       /* NULL: every step's noise is drawn; else (S, B, dim), block k the
                               * noise of the k-th step taken (S = the steps of the run; a step
                               * that adds no noise ignores its block). Ancestral, DDIM and the
                               * diffusers schedulers; refused for langevin and pc */
    const dm_scheduler *scheduler; /* NULL; else dm_sample runs this diffusers
                               * scheduler's loop (sampler, var, clip_x0 ignored; steps = its
                               * num_inference_steps, 0 = the pipeline's default) */
    dm_sample_observer observe; /* optional */
    void *observe_ctx;
    int64_t chunk_first;      /* pipelines: draw only chunks chunk_first, chunk_first +
                               * chunk_step, ... of the n samples (dm_pipeline_sample), leaving
                               * the other rows of x as they are: how the processes of a job
                               * split the work. 0 */
    int64_t chunk_step;       /* 0 or 1: every chunk from chunk_first */
} dm_sample_options;

DM_API void dm_sample_options_default(dm_sample_options *opt);

/* Draws B samples into x (B, dim) with the sampler of opt, in the model's (standardised)
 * space. Every random draw comes from (seed, stream), so a fixed seed reproduces the samples.
 * Incompatible options (DDIM steps above T, a learned variance the denoiser cannot give) are
 * refused with a message saying what is allowed. */
DM_API dm_status dm_sample(const dm_schedule *s, dm_denoise_fn denoise, void *ctx, float *x,
                           int64_t B, int64_t dim, const dm_sample_options *opt, dm_error *err);
/* Network evaluations per sample that dm_sample makes with these options (levels, times the
 * corrector's steps for langevin and pc), for progress and throughput figures. */
DM_API int64_t dm_sample_evaluations(const dm_schedule *s, const dm_sample_options *opt);
/* Ho et al. Algorithm 2: x_T ~ N(0, I), x_{t-1} = mu_theta + sigma_t z (z = 0 at t = 1).
 * The noise comes from (seed, stream): step i draws B*dim normals after x_T's. With clip_x0
 * the mean is the posterior mean of q(x_{t-1} | x_t, x0_hat) with x0_hat clipped to [-1, 1].
 * opt->sampler and opt->steps are ignored (dm_sample handles the subset). */
DM_API dm_status dm_sample_ancestral(const dm_schedule *s, dm_denoise_fn denoise, void *ctx,
                                     float *x, int64_t B, int64_t dim, const dm_sample_options *opt,
                                     dm_error *err);

/* ------------------------------------------------------------------------------------------ */
/* diffusers schedulers                                                                       */

/* The sampling loop of a diffusers scheduler as its scheduler_config.json describes it
 * (diffusers 0.31.0's DDPMScheduler, DDIMScheduler and DPMSolverMultistepScheduler), so that a
 * diffusers pipeline folder samples as diffusers does: the same x_T and noise give diffusers'
 * result. Every key of those classes is honoured or refused with its value named;
 * docs/diffusers.md lists what happens to each. */
typedef enum {
    DM_SCHEDULER_DDPM = 0,
    DM_SCHEDULER_DDIM,
    DM_SCHEDULER_DPMSOLVER,
} dm_scheduler_class;
typedef enum {
    DM_SPACING_LEADING = 0,
    DM_SPACING_TRAILING,
    DM_SPACING_LINSPACE,
} dm_timestep_spacing;
/* DDPMScheduler's variance_type (fixed_large_log is refused: diffusers 0.31 takes the square
 * root of log(beta), which is NaN) */
typedef enum {
    DM_DDPM_FIXED_SMALL = 0, /* beta_tilde, clamped at 1e-20 */
    DM_DDPM_FIXED_SMALL_LOG, /* the same through exp(0.5 log) */
    DM_DDPM_FIXED_LARGE,     /* beta of the step */
    DM_DDPM_LEARNED,         /* the model's variance channel is sigma^2 itself */
    DM_DDPM_LEARNED_RANGE,   /* improved DDPM: interpolates log beta_tilde .. log beta */
} dm_ddpm_variance;

struct dm_scheduler {
    dm_scheduler_class cls;
    int32_t T;                 /* num_train_timesteps */
    double *betas;             /* (T) as diffusers computes them (float32 values) */
    dm_prediction prediction;  /* prediction_type: epsilon, v_prediction or sample */
    dm_ddpm_variance variance; /* DDPM's variance_type (DDIM, DPM: fixed_small) */
    int variance_output;       /* the model has a variance channel (learned, learned_range) */
    int clip_sample;           /* DDPM, DDIM */
    double clip_sample_range;
    int thresholding;          /* dynamic thresholding of x_0 (Imagen) */
    double dynamic_thresholding_ratio, sample_max_value;
    dm_timestep_spacing spacing;
    int32_t steps_offset;
    int set_alpha_to_one;      /* DDIM: the last step goes to alpha_bar 1, else alpha_bar_0 */
    int solver_order;          /* DPM: 1 or 2 */
    int heun;                  /* DPM: solver_type heun (else midpoint) */
    int lower_order_final, euler_at_final;
    int final_sigma_min;       /* DPM: final_sigmas_type sigma_min (else zero) */
    double lambda_min_clipped; /* DPM: -inf = off */
    int32_t default_steps;     /* num_inference_steps when none is asked: the pipeline's
                                * default (DDPMPipeline 1000, DDIMPipeline 50; DPM-Solver 20) */
};

/* Reads a scheduler_config.json; unknown keys, other classes and unsupported values are
 * refused with the file, key and value named. Free with dm_scheduler_free. */
DM_API dm_status dm_scheduler_read(dm_scheduler *sc, const char *path, dm_error *err);
/* The class's defaults, as diffusers' DDPMScheduler() etc. construct it. */
DM_API dm_status dm_scheduler_default(dm_scheduler *sc, dm_scheduler_class cls, dm_error *err);
DM_API void dm_scheduler_free(dm_scheduler *sc);
DM_API const char *dm_scheduler_class_name(dm_scheduler_class c); /* DDPMScheduler, ... */
/* The scheduler's alpha_bar as a schedule (cumulative product as torch.cumprod computes it). */
DM_API dm_status dm_scheduler_schedule(const dm_scheduler *sc, dm_schedule *s, dm_error *err);
/* diffusers' set_timesteps(S): the S timesteps of a run, decreasing, into out (S). */
DM_API dm_status dm_scheduler_timesteps(const dm_scheduler *sc, int32_t S, int32_t *out,
                                        dm_error *err);
/* One DDPMScheduler.step or DDIMScheduler.step (eta from opt) from timestep t with S inference
 * steps (prev = t - T / S): x (B, dim) updated in place from eps_hat, var (the raw variance
 * channel, learned variances only) and noise (B, dim; NULL = none, DDPM at t = 0 and DDIM with
 * eta 0 need none). s is dm_scheduler_schedule's. */
DM_API dm_status dm_scheduler_step(const dm_scheduler *sc, const dm_schedule *s, int32_t S,
                                   int32_t t, float *x, const float *eps, const float *var,
                                   const float *noise, double eta, int clipped_eps, int64_t B,
                                   int64_t dim, dm_error *err);

/* A trained model with its schedule and normalisation, loaded from a checkpoint folder. */
typedef struct dm_pipeline dm_pipeline;

/* checkpoint: one of our checkpoint folders (or a training run's folder), or a diffusers
 * folder (dm_pipeline_load_diffusers with its own scheduler and no variant). */
DM_API dm_status dm_pipeline_load(dm_pipeline **p, const char *checkpoint, dm_error *err);
DM_API int64_t dm_pipeline_dim(const dm_pipeline *p);
DM_API const dm_model *dm_pipeline_model(const dm_pipeline *p);
DM_API const dm_schedule *dm_pipeline_schedule(const dm_pipeline *p);
DM_API const dm_normalizer *dm_pipeline_normalizer(const dm_pipeline *p);
/* Draws n samples into x (n, dim), in data units. The observer sees standardised values.
 * Images are drawn DM_PIPELINE_IMAGE_CHUNK at a time, points DM_PIPELINE_POINT_CHUNK, chunk k
 * with stream opt->stream + k (and rows of opt->x_T, (n, dim), when given; given noise allows
 * one chunk only). So chunk k is the same whoever draws it: opt->chunk_first and chunk_step
 * draw a subset of the chunks with the bits a call for all gives (how `mpirun diffusion
 * sample` splits the work). opt NULL means the defaults. */
#define DM_PIPELINE_IMAGE_CHUNK 256
#define DM_PIPELINE_POINT_CHUNK 2048
DM_API dm_status dm_pipeline_sample(dm_pipeline *p, float *x, int64_t n,
                                    const dm_sample_options *opt, dm_error *err);
/* The pipeline as a dm_denoise_fn (ctx = the pipeline): the model's prediction converted to
 * eps_hat, and its raw variance output when asked. For custom samplers and evaluations. */
DM_API dm_status dm_pipeline_denoise(void *ctx, float *eps_hat, float *var_out, const float *x,
                                     const float *t, int64_t B, dm_error *err);
/* The training configuration the checkpoint was written with (prediction, loss, variance...). */
DM_API const dm_train_config *dm_pipeline_train_config(const dm_pipeline *p);
/* A diffusers folder's scheduler (its scheduler_config.json), NULL for our checkpoints: pass it
 * as dm_sample_options.scheduler to sample as diffusers does. */
DM_API const dm_scheduler *dm_pipeline_scheduler(const dm_pipeline *p);
/* A diffusers folder: a pipeline folder as DDPMPipeline / DDIMPipeline.save_pretrained writes it
 * (model_index.json, unet/, scheduler/) or a bare UNet2DModel folder (config.json and weights).
 * scheduler_config (NULL: the pipeline's scheduler/scheduler_config.json, with the pipeline's
 * default steps, DDPMPipeline 1000 and DDIMPipeline 50; for a bare UNet diffusers' DDPMScheduler
 * defaults) replaces the folder's scheduler, keeping its class's default steps; variant (NULL:
 * none)
 * loads diffusion_pytorch_model.<variant>.safetensors as diffusers' variant argument does.
 * dm_pipeline_load calls this for diffusers folders. */
DM_API dm_status dm_pipeline_load_diffusers(dm_pipeline **p, const char *dir,
                                            const char *scheduler_config, const char *variant,
                                            dm_error *err);
DM_API void dm_pipeline_free(dm_pipeline *p);

#ifdef __cplusplus
}
#endif
