/* diffusion/likelihood.h: the variational bound.
 * Part of the public API of libdiffusion; <diffusion.h> includes every part. */
#pragma once

#include "core.h"
#include "sampling.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------------------------ */
/* Likelihood: the variational bound on -log p(x_0)                                           */

typedef struct {
    int exact;            /* 1: all T terms per example; 0: an unbiased estimate: L_0 exactly
                           * and t drawn uniformly from 2..T, t_draws times per example */
    int32_t t_draws;      /* estimate: 1 */
    dm_reverse_var var;   /* the reverse variance of p (DM_VAR_LEARNED: the model's output) */
    int discrete;         /* 1: data on 256 levels in [-1, 1] (images; Ho et al.'s discretised
                           * decoder, a probability); 0: continuous data (a Gaussian density) */
    uint64_t seed;        /* the forward-process noise: 0 */
    int64_t batch;        /* examples per network call: 256 */
    double *per_example;  /* optional (n): each example's bound in nats (in the model's units) */
    /* optional: called after each network call with the calls done and the total */
    void (*progress)(void *ctx, int64_t done, int64_t total);
    void *progress_ctx;
} dm_nll_options;

DM_API void dm_nll_options_default(dm_nll_options *o);

/* Means over the examples, in nats per example, and the bound in bits per dimension. */
typedef struct {
    int64_t n, dim;
    int exact;
    double prior;      /* L_T = KL(q(x_T | x_0) || N(0, I)) */
    double diffusion;  /* sum over t = 2..T of L_{t-1} */
    double decoder;    /* L_0 = -log p(x_0 | x_1) */
    double log_det;    /* added for data units (points standardised by the model: sum log std) */
    double total;      /* prior + diffusion + decoder + log_det */
    double total_se;   /* standard error of total over the examples (and t draws) */
    double bpd, bpd_se; /* total / (dim ln 2) */
} dm_nll_report;

/* The bound for x0 (n, dim) in the model's own units, with any denoiser over schedule s. */
DM_API dm_status dm_nll_bound(const dm_schedule *s, dm_denoise_fn denoise, void *ctx,
                              const float *x0, int64_t n, int64_t dim, const dm_nll_options *o,
                              dm_nll_report *r, dm_error *err);
/* The bound of a trained model on data in data units: standardised as the model was (points,
 * with log_det so the result is a density of the data as given) or used as they are (images,
 * with the discretised decoder whatever o->discrete says). */
DM_API dm_status dm_pipeline_nll(dm_pipeline *p, const dm_dataset *data, const dm_nll_options *o,
                                 dm_nll_report *r, dm_error *err);

#ifdef __cplusplus
}
#endif
