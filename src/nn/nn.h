/* Layers with explicit forward and backward passes, optimiser pieces.
 * Rule (as in llm.c): every backward ADDS (+=) into the gradients it writes, inputs' gradients
 * included; the caller zeroes them. Layouts are PyTorch's: Linear weight (out, in). */
#pragma once

#include "core/core.h"

/* y (B, out) = x (B, in) W^T + b;  w (out, in), b (out) or NULL. */
void dm_linear_forward(float *y, const float *x, const float *w, const float *b, int64_t B,
                       int64_t in, int64_t out);
/* dx (B, in) += dy W (skipped if dx is NULL); dw (out, in) += dy^T x; db (out) += sum_b dy
 * (skipped if NULL). */
void dm_linear_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                        const float *w, int64_t B, int64_t in, int64_t out);
/* db (out) += sum over the B rows of dy (B, out): the bias part of dm_linear_backward, for
 * callers whose weight gradient is a strided view. */
void dm_bias_backward(float *db, const float *dy, int64_t B, int64_t out);
/* C += A^T Bm for a small P: A (R, P) with row stride lda, Bm (R, Q) with row stride ldb, and
 * element (p, q) of C at C[p * csp + q * csq], so C may be a transposed or strided view (a column
 * slice of a weight gradient). One pass over the rows, summed in row order; OpenBLAS is slow at
 * such skinny shapes. P <= DM_SKINNY_MAX. */
#define DM_SKINNY_MAX 64
void dm_gemm_tn_skinny(float *C, int64_t csp, int64_t csq, const float *A, int64_t lda,
                       const float *Bm, int64_t ldb, int64_t R, int64_t P, int64_t Q);

/* y = x * sigmoid(x); y may equal x. */
void dm_silu_forward(float *y, const float *x, size_t n);
/* dx += dy * silu'(x), x the forward input. */
void dm_silu_backward(float *dx, const float *dy, const float *x, size_t n);
/* d *= silu'(x): the backward written over its input, for callers that own the buffer and
 * would otherwise zero a second one (the one exception to the += rule, hence the name). */
void dm_silu_backward_inplace(float *d, const float *x, size_t n);

/* diffusers' get_timestep_embedding: half = dim / 2,
 * freq_j = exp(-ln(max_period) * j / (half - downscale_freq_shift)),
 * out = [sin(t freq), cos(t freq)] or [cos, sin] with flip_sin_to_cos; a zero column pads an
 * odd dim. out (B, dim), t (B). Computed in double. */
void dm_timestep_embedding(float *out, const float *t, int64_t B, int64_t dim,
                           bool flip_sin_to_cos, double downscale_freq_shift, double max_period);

/* ---- optimiser: Adam / AdamW with a learning-rate schedule */
typedef struct {
    dm_optim_config cfg;
    size_t n;
    float *m;     /* (n) first moment */
    float *v;     /* (n) second moment */
    int64_t step; /* steps taken */
    int64_t total_steps; /* the schedule's num_training_steps (the decaying schedules): 0 */
} dm_adam;

dm_status dm_adam_init(dm_adam *opt, const dm_optim_config *cfg, size_t n, dm_error *err);
void dm_adam_free(dm_adam *opt);
/* Learning rate of the next step: dm_lr_at(&cfg, step + 1, total_steps); with the default
 * constant_with_warmup, cfg.lr * min(1, (step + 1) / warmup). */
double dm_adam_lr(const dm_adam *opt);
/* One update with bias correction; weight decay decoupled (AdamW) when cfg.weight_decay > 0.
 * Increments opt->step. */
void dm_adam_step(dm_adam *opt, float *params, const float *grads);

/* The refusals of a schedule in a config of total_steps optimiser steps: an unknown schedule,
 * warmup < 0, num_cycles < 1, power outside (0, 1e6], lr_end < 0, polynomial with lr_end >= lr
 * (diffusers' ValueError), a decaying schedule with total_steps <= warmup. */
dm_status dm_lr_schedule_check(const dm_optim_config *cfg, int64_t total_steps, dm_error *err);

/* Global L2 norm (accumulated in double). */
double dm_grad_norm(const float *g, size_t n);
/* If the norm exceeds max_norm > 0, scales g by max_norm / norm. Returns the norm before. */
double dm_grad_clip(float *g, size_t n, double max_norm);
/* ema = decay * ema + (1 - decay) * params */
void dm_ema_update(float *ema, const float *params, size_t n, double decay);
/* The usual EMA warm-up: the decay used after `step` optimiser steps (0-based) is
 * min(decay, (1 + step) / (10 + step)), so early on the average follows the weights closely. */
double dm_ema_warmup_decay(double decay, int64_t step);
