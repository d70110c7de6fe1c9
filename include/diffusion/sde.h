/* diffusion/sde.h: continuous time: SDEs, their samplers and the ODE likelihood.
 * Part of the public API of libdiffusion; <diffusion.h> includes every part. */
#pragma once

#include "core.h"
#include "sampling.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------------------------ */
/* Continuous time: scores, samplers, the ODE likelihood                                      */

/* The processes (dm_sde: VP, sub-VP, VE, their coefficients and perturbation kernels) are part
 * of the forward process, in process.h; here are their scores, the samplers of their reverse-time
 * SDE and probability-flow ODE, and the likelihood through that ODE:
 *
 *     dm_sde sde; dm_sde_default(&sde, DM_SDE_VP);
 *     dm_sde_sample_options so; dm_sde_sample_options_default(&so);
 *     so.sampler = DM_SDE_ODE_RK45;
 *     dm_sde_sample_stats st;
 *     dm_sde_sample(&sde, my_score, my_ctx, x, B, dim, &so, &st, &err);  // st.score_evals
 */

/* ------------------------------------------------------------------------------------------ */
/* Scores                                                                                     */

/* The score grad_x log p_t(x) of the perturbed data at continuous time t (one t for the whole
 * batch, in [sde->eps, 1]): score (B, dim) for x (B, dim). */
typedef dm_status (*dm_score_fn)(void *ctx, float *score, const float *x, double t, int64_t B,
                                 int64_t dim, dm_error *err);

/* A discrete eps-predicting model (dm_denoise_fn on a dm_schedule of T steps) as the score of
 * the VP SDE, as score_sde's get_score_fn does for its discrete DDPM checkpoints: the model is
 * called at timestep t (T - 1) and score = -eps_hat / sqrt(1 - alpha_bar[floor(t (T - 1))]).
 * With round_index the timestep is rounded to the nearest index and alpha_bar taken there
 * (for models that only accept integer steps). Meaningful when the schedule discretises the
 * SDE: the default VP SDE is the linear schedule 1e-4 .. 0.02 at T = 1000 (alpha_bar_i
 * within 0.1% of mean(t_i)^2 there). ctx for dm_sde_denoiser_score. */
typedef struct {
    const dm_sde *sde;     /* must be DM_SDE_VP (others: DM_ERR_ARG) */
    const dm_schedule *s;  /* the model's schedule */
    dm_denoise_fn denoise; /* the model */
    void *ctx;             /* its context */
    int round_index;       /* 0: t (T - 1) as a float timestep, as score_sde; 1: nearest index */
} dm_sde_denoiser;

DM_API dm_status dm_sde_denoiser_score(void *ctx, float *score, const float *x, double t, int64_t B,
                                       int64_t dim, dm_error *err);

/* ------------------------------------------------------------------------------------------ */
/* Samplers                                                                                   */

/* Fixed-step samplers run on N steps of a uniform grid t_k = 1 - k (1 - eps) / N, k = 0..N,
 * from t_0 = 1 to t_N = eps; x starts from the prior (or opt->x_T). With s = score(x, t_k),
 * h = t_k - t_{k+1} and f, g at t_k:
 *   EULER_MARUYAMA:    x <- x - h (f x - g^2 s) + g sqrt(h) z (the reverse-time SDE).
 *   REVERSE_DIFFUSION: score_sde's predictor from the forward process's exact transition
 *                      x_{t_k} = c x_{t_{k+1}} + sqrt(v) z between the grid points
 *                      (c = mean(t_k) / mean(t_{k+1}), v = std(t_k)^2 - c^2 std(t_{k+1})^2):
 *                      x <- (2 - c) x + v s + sqrt(v) z. For VP this is score_sde's DDPM
 *                      discretisation (beta = 1 - c^2), for VE its SMLD one (v = sigma_k^2 -
 *                      sigma_{k+1}^2); for sub-VP the exact transition replaces score_sde's
 *                      Euler-Maruyama form.
 *   PC:                at each t_k, corrector_steps Langevin steps (score_sde's
 *                      LangevinCorrector) then the predictor's step: e = 2 alpha (snr ||z|| /
 *                      ||s||)^2 with the norms of each sample averaged over the batch, alpha =
 *                      c^2 (VP, sub-VP) or 1 (VE), x <- x + e s + sqrt(2 e) z.
 *   ODE_EULER, ODE_HEUN, ODE_RK4: the probability-flow ODE dx/dt = f x - g^2 s / 2 from 1 to
 *                      eps with explicit Euler (1 evaluation a step), Heun's trapezoid (2) or
 *                      classical Runge-Kutta (4), the state in double.
 *   ODE_RK45:          the same ODE with Dormand-Prince 5(4) and step control as scipy's
 *                      solve_ivp(method='RK45') (score_sde's ODE sampler): the batch is one
 *                      system, error norm RMS over all B * dim values of err / (atol + rtol
 *                      max(|x|, |x_new|)), first step by scipy's rule.
 * The output is x at t = eps (a sample of p_eps), then with opt->denoise Tweedie's noise removal
 * x <- (x + std(eps)^2 score(x, eps)) / mean(eps) = E[x_0 | x_eps] (one more evaluation). */
typedef enum {
    DM_SDE_EULER_MARUYAMA = 0,
    DM_SDE_REVERSE_DIFFUSION,
    DM_SDE_PC,
    DM_SDE_ODE_EULER,
    DM_SDE_ODE_HEUN,
    DM_SDE_ODE_RK4,
    DM_SDE_ODE_RK45,
} dm_sde_sampler_kind;

/* "euler-maruyama", "reverse-diffusion", "pc", "ode-euler", "ode-heun", "ode-rk4", "ode-rk45" */
DM_API const char *dm_sde_sampler_name(dm_sde_sampler_kind kind);
DM_API dm_status dm_sde_sampler_parse(const char *name, dm_sde_sampler_kind *kind, dm_error *err);

/* Called with x (B, dim) at t = 1 before the first step and after each step at the time
 * reached (RK45: after each accepted step); once more after noise removal, at t = 0. */
typedef void (*dm_sde_observer)(void *ctx, double t, const float *x, int64_t B, int64_t dim);

typedef struct {
    dm_sde_sampler_kind sampler;   /* DM_SDE_PC */
    int32_t steps;                 /* N for the fixed-step samplers; 0 = the sampler's default
                                    * (EM, reverse diffusion, PC: 1000 as score_sde; ODE Euler
                                    * 1000; Heun 100 and RK4 50, 200 evaluations each). Ignored
                                    * by RK45 */
    dm_sde_sampler_kind predictor; /* PC: DM_SDE_REVERSE_DIFFUSION or DM_SDE_EULER_MARUYAMA */
    int32_t corrector_steps;       /* PC: Langevin steps per level, 0 = 1 (score_sde) */
    double snr;                    /* PC: the corrector's signal-to-noise ratio, 0.16 */
    double rtol, atol;             /* RK45: 1e-5 and 1e-5 (score_sde); > 0 */
    int64_t max_evals;             /* RK45: give up (DM_ERR_NUMERIC) beyond this many score
                                    * evaluations: 100000; 0 = no limit */
    int denoise;                   /* 1: Tweedie's noise removal at eps (score_sde's
                                    * noise_removal, on by default); 0: x at eps */
    uint64_t seed;                 /* 0 */
    uint64_t stream;               /* 0 */
    const float *x_T;              /* NULL: drawn from the prior; else the start (B, dim) */
    const float *noise;            /* NULL: drawn; else the normals of every noise-adding step
                                    * in order, (S, B, dim): EM and reverse diffusion one block
                                    * a step (S = N), PC corrector_steps blocks then the
                                    * predictor's at each step (S = N (corrector_steps + 1)).
                                    * Refused for the ODE samplers */
    dm_sde_observer observe;       /* optional */
    void *observe_ctx;
    int64_t chunk_first, chunk_step; /* dm_pipeline_sde_sample: only chunks chunk_first,
                                    * chunk_first + chunk_step, ... as dm_sample_options'
                                    * (stats count those): 0 and 1 */
} dm_sde_sample_options;

DM_API void dm_sde_sample_options_default(dm_sde_sample_options *opt);

/* What a run did: score evaluations (each over the whole batch), steps taken (RK45: accepted)
 * and, for RK45, steps rejected. */
typedef struct {
    int64_t score_evals;
    int32_t steps;
    int32_t rejected;
} dm_sde_sample_stats;

/* Draws B samples into x (B, dim) with opt's sampler of sde's reverse process. Every random
 * draw comes from (seed, stream) in a fixed order, x_T's B*dim normals first (when not given),
 * then each noise block in the order of opt->noise, so a seed reproduces the samples for any
 * thread count. stats may be NULL. Options out of range are refused with a message naming the
 * option and what is allowed. */
DM_API dm_status dm_sde_sample(const dm_sde *sde, dm_score_fn score, void *ctx, float *x, int64_t B,
                               int64_t dim, const dm_sde_sample_options *opt,
                               dm_sde_sample_stats *stats, dm_error *err);
/* Score evaluations per run with these options (noise removal included); -1 for RK45, whose
 * count depends on the problem. */
DM_API int64_t dm_sde_sample_evaluations(const dm_sde_sample_options *opt);

/* ------------------------------------------------------------------------------------------ */
/* Likelihood through the probability-flow ODE                                                */

/* The exact log-likelihood of the probability-flow ODE's model (Song et al. 2021, appendix D;
 * score_sde's likelihood.py): the instantaneous change of variables integrates
 *   d/dt [x, delta] = [u(x, t), div u(x, t)],  u = f(t) x - g(t)^2 s(x, t) / 2,
 *   div u = dim f(t) - g(t)^2 div s(x, t) / 2,
 * from t = eps to 1 with RK45 (x and delta as one system per batch, as score_sde's solve_ivp
 * call), then log p_eps(x) = log p_1(x(1)) + delta(1) with p_1 the prior N(0, prior_std^2 I).
 * div s is the trace of the score's Jacobian:
 *   DM_TRACE_EXACT:      sum over the dim basis vectors e_d of e_d^T J e_d (dim products a point:
 *                        for low dimensions);
 *   DM_TRACE_RADEMACHER, DM_TRACE_GAUSSIAN: Hutchinson's estimate, the mean over `probes`
 *                        vectors v (entries +-1, or standard normals) of v^T J v, the probes
 *                        drawn once per example and kept for the whole integration (score_sde),
 *                        so the result is an unbiased estimate of a smooth function's value.
 * Each product v^T J comes from the vjp callback when given (one forward and backward pass per
 * probe: a network's backward pass with respect to its input), else from central finite
 * differences of the score along v (two evaluations per probe, step fd_step * std(t): see
 * dm_ode_nll_options). */

/* score (B, dim) at x (B, dim) and t, and vjp (B, dim) with row b = v_b^T (d score / d x)(x_b)
 * for probes v (B, dim). */
typedef dm_status (*dm_score_vjp_fn)(void *ctx, float *score, float *vjp, const float *x,
                                     const float *v, double t, int64_t B, int64_t dim,
                                     dm_error *err);

typedef enum {
    DM_TRACE_EXACT = 0,
    DM_TRACE_RADEMACHER,
    DM_TRACE_GAUSSIAN,
} dm_trace_kind;

DM_API const char *dm_trace_kind_name(dm_trace_kind k); /* exact, rademacher, gaussian */
DM_API dm_status dm_trace_kind_parse(const char *name, dm_trace_kind *k, dm_error *err);

typedef struct {
    dm_trace_kind trace; /* DM_TRACE_EXACT */
    int32_t probes;      /* Hutchinson: probes per example, >= 1: 1 (score_sde) */
    double rtol, atol;   /* RK45 tolerances, > 0: 1e-5 each (score_sde) */
    double eps;          /* the start time: 0 = the SDE's eps; else in (0, 1) */
    int64_t max_evals;   /* RK45 right-hand sides per batch before giving up: 100000; 0 = none */
    double fd_step;      /* finite differences (no vjp): the step along a probe relative to
                          * std(t), the scale on which the perturbed data's score can vary:
                          * 1e-2 (truncation about 1e-4 relative; float rounding of the score
                          * about 1e-5 relative at that step); > 0 */
    uint64_t seed;       /* the probes (and dm_pipeline_ode_nll's dequantisation): 0 */
    int64_t batch;       /* examples integrated as one system: 256 */
    double *per_example; /* optional (n): each example's -log p in nats (the units of x) */
    double *delta;       /* optional (n): each example's delta(1) */
    float *z;            /* optional (n, dim): each example's x(1) */
    /* optional: called after each batch with the examples done and n */
    void (*progress)(void *ctx, int64_t done, int64_t total);
    void *progress_ctx;
} dm_ode_nll_options;

DM_API void dm_ode_nll_options_default(dm_ode_nll_options *o);

/* Means over the examples, in nats per example. */
typedef struct {
    int64_t n, dim;
    dm_trace_kind trace;
    int32_t probes;       /* 0 for the exact trace */
    int vjp;              /* 1: products by the vjp callback; 0: by finite differences */
    double prior_logp;    /* mean log p_1(x(1)) */
    double delta;         /* mean delta(1) */
    double log_det;       /* added for data units (dm_pipeline_ode_nll: points standardised by the
                           * model, sum log std; images, dim log 128 for pixel values in [0, 256)) */
    double nll;           /* -(prior_logp + delta) + log_det */
    double nll_se;        /* its standard error over the examples */
    double bpd, bpd_se;   /* nll / (dim ln 2) */
    int64_t score_evals;  /* RK45 right-hand sides, summed over the batches */
    int32_t steps, rejected; /* RK45 steps, summed over the batches */
} dm_ode_nll_report;

/* -log p_eps(x) for x (n, dim) through sde's probability-flow ODE with score (vjp may be NULL:
 * finite differences). DM_ERR_ARG for options out of range (tolerances <= 0, probes < 1, ...),
 * naming what is allowed. */
DM_API dm_status dm_sde_ode_nll(const dm_sde *sde, dm_score_fn score, dm_score_vjp_fn vjp,
                                void *ctx, const float *x, int64_t n, int64_t dim,
                                const dm_ode_nll_options *o, dm_ode_nll_report *r, dm_error *err);

/* Samples of a model trained in continuous time (dm_train_config.sde_training) with a sampler of
 * its own SDE (score = -output / std(t), the input scaled as in training), or of a trained
 * discrete eps (or x0, v) model with a continuous-time sampler of the VP SDE
 * its linear schedule discretises (score_sde's: beta(t) = T beta_i; dm_sde_denoiser_score's
 * mapping); the null label for a class-conditional model trained with label drops: x (n, dim) in
 * data units for points, in [-1, 1] for images, as dm_pipeline_sample, and like it in chunks
 * (DM_PIPELINE_IMAGE_CHUNK images, DM_PIPELINE_POINT_CHUNK points), chunk k from stream
 * opt->stream + k (stats: the chunks' sums; given noise: at most one chunk). Refused for other schedules, with a message. */
DM_API dm_status dm_pipeline_sde_sample(dm_pipeline *p, float *x, int64_t n,
                                        const dm_sde_sample_options *opt,
                                        dm_sde_sample_stats *stats, dm_error *err);

/* The ODE likelihood, on data in data units, of a model trained in continuous time (its own SDE;
 * sde must be NULL or of the same kind, else DM_ERR_ARG) or of a trained discrete eps (or x0,
 * v) model as the VP SDE's score (dm_sde_denoiser_score's mapping, t (T - 1) and
 * alpha_bar[floor(t (T - 1))]): sde NULL: the VP SDE the model's schedule discretises, beta_min
 * = T beta_1 and beta_max = T beta_T (the schedule must be linear in beta, else DM_ERR_ARG);
 * else it must be DM_SDE_VP (sub-VP and VE: DM_ERR_ARG, naming vp) and is used as given.
 * per_example is in data units (log_det included).
 * Points are standardised as the model was (log_det = sum log std). Images (values on 256
 * levels in [-1, 1]) are dequantised as score_sde does: pixel k in 0..255 becomes
 * (k + u) / 256, u ~ U(0, 1) from o->seed, mapped to [-1, 1); the result is a density of pixel
 * values in [0, 256) (log_det = dim log 128), so bpd = the model's bits per dimension + 7
 * (score_sde's offset for centred data). The products v^T J use the network's backward pass
 * (an MLP, or a UNet without dropout); a UNet with dropout uses finite differences. */
DM_API dm_status dm_pipeline_ode_nll(dm_pipeline *p, const dm_sde *sde, const dm_dataset *data,
                                     const dm_ode_nll_options *o, dm_ode_nll_report *r,
                                     dm_error *err);

#ifdef __cplusplus
}
#endif
