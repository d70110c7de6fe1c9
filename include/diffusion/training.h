/* diffusion/training.h: the optimiser and the trainer.
 * Part of the public API of libdiffusion; <diffusion.h> includes every part. */
#pragma once

#include "core.h"
#include "data.h"
#include "process.h"
#include "models.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------------------------ */
/* Optimiser                                                                                  */

/* Learning-rate schedules: diffusers' --lr_scheduler choices (diffusers.optimization
 * get_scheduler), docs/training.md. */
typedef enum {
    DM_LR_CONSTANT_WITH_WARMUP = 0, /* linear warm-up, then lr */
    DM_LR_CONSTANT,                 /* lr throughout; the warm-up is ignored, as diffusers does */
    DM_LR_LINEAR,                   /* warm-up, then linear decay to 0 at the last step */
    DM_LR_COSINE,                   /* warm-up, then a half cosine to 0 */
    DM_LR_COSINE_WITH_RESTARTS,     /* warm-up, then lr_num_cycles cosines with hard restarts */
    DM_LR_POLYNOMIAL,               /* warm-up, then (lr - lr_end) r^lr_power + lr_end */
} dm_lr_schedule;

typedef struct {
    double lr;           /* peak learning rate: 1e-3 */
    double beta1, beta2; /* 0.9, 0.999 */
    double eps;          /* 1e-8 */
    double weight_decay; /* decoupled (AdamW); 0 = Adam */
    int64_t warmup;      /* linear warm-up steps from lr/warmup to lr: 100 */
    double grad_clip;    /* clip the global gradient norm to this; 0 = off */
    double ema_decay;    /* exponential moving average of weights; 0 = off */
    dm_lr_schedule lr_schedule; /* DM_LR_CONSTANT_WITH_WARMUP */
    int32_t lr_num_cycles;      /* cosine_with_restarts: cosines over the decay: 1 */
    double lr_power;            /* polynomial: the power: 1 */
    double lr_end;              /* polynomial: the last learning rate, < lr: 1e-7 */
} dm_optim_config;

DM_API void dm_optim_config_default(dm_optim_config *cfg);
/* constant_with_warmup, constant, linear, cosine, cosine_with_restarts, polynomial */
DM_API const char *dm_lr_schedule_name(dm_lr_schedule s);
/* diffusers' names (a hyphen may stand for an underscore); others refused naming the allowed */
DM_API dm_status dm_lr_schedule_parse(const char *name, dm_lr_schedule *s, dm_error *err);
/* The learning rate of optimiser step `step` (1-based: the first update is step 1) of a run of
 * total_steps steps: cfg->lr times diffusers' lr_lambda(step), e.g. cosine after warm-up W
 * 0.5 (1 + cos(pi (step - W) / (total_steps - W))). diffusers' LambdaLR gives its k-th update
 * lr_lambda(k - 1); ours is the value one step later (so the warm-up starts at lr / W). */
DM_API double dm_lr_at(const dm_optim_config *cfg, int64_t step, int64_t total_steps);

/* ------------------------------------------------------------------------------------------ */
/* Training                                                                                   */

typedef enum {
    DM_ARCH_MLP = 0, /* low-dimensional points: dm_mlp_config */
    DM_ARCH_UNET,    /* images: dm_unet_config */
} dm_arch;

typedef struct {
    dm_arch arch;        /* DM_ARCH_MLP */
    dm_mlp_config mlp;   /* the network when arch is DM_ARCH_MLP */
    dm_unet_config unet; /* the network when arch is DM_ARCH_UNET (default "unet-28") */
    dm_schedule_config schedule;
    dm_optim_config optim;
    int64_t steps;      /* total optimiser steps: 8000 */
    int64_t batch;      /* examples per optimiser step (the effective batch): 512 */
    int64_t grad_accum; /* gradient accumulation: each step runs the batch as grad_accum
                         * micro-batches of batch / grad_accum (it must divide the batch), the
                         * same step to float rounding in less memory (docs/training.md): 1 */
    uint64_t seed;      /* everything random derives from it: 0 */
    int normalize;      /* standardise data to zero mean, unit variance (MLP only): 1 */
    int hflip;          /* images: mirror each drawn image left-right with probability 1/2: 0 */
    dm_prediction prediction;   /* what the network predicts: DM_PRED_EPS */
    dm_loss_kind loss;          /* DM_LOSS_SIMPLE */
    dm_reverse_var var;         /* the reverse variance the bound assumes (DM_LOSS_VLB) or
                                 * learns (DM_VAR_LEARNED doubles the model's outputs): BETA */
    dm_time_sampling timesteps; /* DM_TIME_UNIFORM */
    double hybrid_lambda;       /* DM_LOSS_HYBRID's weight of L_vlb (bits/dim): 0.001 */
    int32_t num_classes;        /* class-conditional training on labelled data with labels in
                                 * 0..K-1: K. The model gets K + 1 class embeddings, the last
                                 * (index K) the null label. 0 = unconditional */
    double p_uncond;            /* probability that a training label is replaced by the null
                                 * label (classifier-free guidance needs it > 0): 0.1 */
    int sde_training;           /* 0: the discrete chain of `schedule`. 1: continuous time on
                                 * `sde`, by denoising score matching with NCSN's std^2 weighting
                                 * (score_sde's get_sde_loss_fn): t ~ U(sde.eps, 1), x_t =
                                 * mean(t) x_0 + std(t) z, the network sees x_t / sqrt(mean(t)^2
                                 * + std(t)^2) (unit variance for unit-variance data: our choice,
                                 * Karras et al.'s c_in; 1 for VP) at time input t (T - 1), and
                                 * predicts z: score = -output / std(t), the loss ||output - z||^2
                                 * = std^2 ||score - grad log p_0t||^2. Needs prediction epsilon,
                                 * loss simple, t-sampling uniform and schedule linear. A VP
                                 * run's schedule is set to the SDE's T-step discretisation
                                 * (beta_min / T .. beta_max / T, score_sde's DDPM), so its model
                                 * also takes the discrete samplers and bound; sub-VP and VE
                                 * models take the SDE samplers and ODE likelihood only
                                 * (docs/continuous-time.md). 0 */
    dm_sde sde;                 /* with sde_training: the process (dm_sde_default(DM_SDE_VP)).
                                 * VE with sigma_max 0: Song & Ermon's data-dependent value,
                                 * the largest distance between two training examples as the
                                 * network sees them (standardised points, images in [-1, 1]),
                                 * over at most DM_SDE_SIGMA_MAX_POINTS of them; the run saves
                                 * the value it used */
} dm_train_config;

/* At most this many training examples (drawn from the seed) set a VE run's automatic sigma_max. */
#define DM_SDE_SIGMA_MAX_POINTS 2000

DM_API void dm_train_config_default(dm_train_config *cfg);
/* The option checks dm_trainer_create makes before it looks at the data or the network (ranges,
 * the learning-rate schedule against steps, grad_accum dividing the batch), each refusal one
 * message naming the value. */
DM_API dm_status dm_train_config_check(const dm_train_config *cfg, dm_error *err);
/* The data dimension the configured network takes (c * h * w for a UNet). */
DM_API int64_t dm_train_config_dim(const dm_train_config *cfg);

typedef struct dm_trainer dm_trainer;

/* Copies (and standardises) the data; creates model, optimiser and EMA. With
 * cfg->num_classes > 0 the data must carry labels in 0..num_classes-1. Data held as uint8
 * (data->u8) are not copied for a UNet: the trainer reads the caller's pixels, converting only
 * each step's drawn rows, so `data` must stay alive and unchanged until dm_trainer_free (the
 * labels are copied). The same run results from either form of the same pixels. */
DM_API dm_status dm_trainer_create(dm_trainer **tr, const dm_train_config *cfg,
                                   const dm_dataset *data, dm_error *err);
/* Resumes from a checkpoint written by dm_trainer_save: the same weights, optimiser state, EMA,
 * step and random streams, so the run continues exactly. cfg->steps may be raised. The data
 * as for dm_trainer_create (uint8 pixels kept by reference). */
DM_API dm_status dm_trainer_resume(dm_trainer **tr, const char *checkpoint, const dm_dataset *data,
                                   int64_t steps, dm_error *err);
/* One optimiser step; *loss receives the mini-batch objective (may be NULL). A non-finite loss
 * returns DM_ERR_NUMERIC and leaves the weights untouched. */
/* Starts from another model's weights (fine-tuning, e.g. a diffusers UNet from
 * dm_pipeline_model): the same architecture, tensor by tensor; raw and EMA weights both.
 * Only before the first step. */
DM_API dm_status dm_trainer_init_weights(dm_trainer *tr, const dm_model *from, dm_error *err);
DM_API dm_status dm_trainer_step(dm_trainer *tr, double *loss, dm_error *err);
/* With skip set, a step whose loss or gradient is not finite is skipped instead: the weights stay
 * unchanged, the step is counted (its loss recorded as NaN, *loss = NaN) and DM_OK returned;
 * more than 100 such steps in a row still stop with DM_ERR_NUMERIC. Off by default. */
DM_API void dm_trainer_set_skip_nonfinite(dm_trainer *tr, int skip);
DM_API int64_t dm_trainer_skipped_steps(const dm_trainer *tr);
/* Data parallelism: a sum over the processes (ranks) of a job, in place: buf (n) receives the
 * element-wise sum of every rank's buf, identical on every rank (e.g. MPI_Allreduce with MPI_SUM
 * over MPI_FLOAT and MPI_IN_PLACE). Returns 0 on success. */
typedef int (*dm_allreduce_fn)(float *buf, size_t n, void *ctx);
/* Whether a run of cfg can be split over nranks ranks: nranks <= batch, and the batch a multiple
 * of nranks x grad_accum (each rank runs batch / nranks examples as grad_accum micro-batches);
 * not loss vdm-continuous when nranks > 1. One message naming the values. */
DM_API dm_status dm_train_config_check_parallel(const dm_train_config *cfg, int nranks,
                                                dm_error *err);
/* Makes tr rank `rank` of `nranks` identical trainers (the same config, data, seed and state, one
 * per process): each step every rank draws the whole batch's examples, timesteps and noise as
 * one process would, runs forward and backward on its own batch / nranks examples only (as
 * grad_accum micro-batches), and fn sums the gradient, the loss and (importance sampling) the
 * examples' losses over the ranks, so every rank takes the same optimiser step and keeps the
 * same weights, EMA, loss and timestep histories. Every rank calls dm_trainer_step the same
 * number of times (fn is collective); a step's non-finite loss or gradient is decided after the
 * sums, so every rank takes the same branch. The result equals one process with the same batch
 * to float rounding (the sums' order differs); with dropout, masks are drawn per micro-batch, so
 * nranks x grad_accum K equals one process with grad_accum nranks x K. nranks = 1 (fn may be
 * NULL) is the single-process step. Call before the first step of this process (after create or
 * resume: the saved state is global, so a run may resume with another rank count). */
DM_API dm_status dm_trainer_set_data_parallel(dm_trainer *tr, int rank, int nranks,
                                              dm_allreduce_fn fn, void *ctx, dm_error *err);
/* Testing only: poisons one input value of the given step (1-based) with NaN, to exercise the
 * non-finite path end to end. 0 = none. */
DM_API void dm_trainer_inject_nan(dm_trainer *tr, int64_t step);
DM_API int64_t dm_trainer_step_count(const dm_trainer *tr);
/* The learning rate the next step uses: dm_lr_at(&cfg->optim, optimiser steps + 1, cfg->steps). */
DM_API double dm_trainer_lr(const dm_trainer *tr);
DM_API const dm_train_config *dm_trainer_config(const dm_trainer *tr);
/* The model being trained (its current weights, not the EMA), owned by the trainer. */
DM_API dm_model *dm_trainer_model(dm_trainer *tr);
/* Loss of every step so far (dm_trainer_step_count values). */
DM_API const float *dm_trainer_loss_history(const dm_trainer *tr);
/* Writes a checkpoint folder (config.json, model.safetensors with the EMA weights,
 * train_state.safetensors); the previous checkpoint survives any crash during the write, and a
 * failed write (a full disk) removes its partial files. Refuses non-finite weights. */
DM_API dm_status dm_trainer_save(dm_trainer *tr, const char *dir, dm_error *err);
typedef struct dm_pipeline dm_pipeline;
/* A pipeline of the trainer's EMA weights as they are now (what dm_pipeline_load gives from a
 * checkpoint saved at this step), for samples during training; the trainer goes on unchanged.
 * Not for a learned schedule (DM_SCHEDULE_LEARNED): sample its saved checkpoint. */
DM_API dm_status dm_trainer_pipeline(const dm_trainer *tr, dm_pipeline **p, dm_error *err);
/* Another peak learning rate from the next step on (a resumed run given a new --lr): the
 * schedule's shape and position stay, its values scale to the new lr; saved in the config by the
 * next dm_trainer_save. Refuses lr outside (0, 1) and, for polynomial, lr <= lr_end. */
DM_API dm_status dm_trainer_set_lr(dm_trainer *tr, double lr, dm_error *err);
DM_API void dm_trainer_free(dm_trainer *tr);

/* Checkpoint folders of a training run. A run folder holds step-numbered checkpoints
 * DIR/checkpoint-N and DIR/checkpoint, the newest (the same files under a second name). */
/* The checkpoint folder a path names, into out (cap bytes): PATH itself when it holds a
 * config.json, else PATH/checkpoint, else PATH.old when PATH is a checkpoint folder's own name
 * (checkpoint, checkpoint-N) and is gone (a crash between the renames of a save), else
 * PATH/checkpoint.old, else the newest complete PATH/checkpoint-N. Never a sibling: runs/a.old
 * does not stand in for runs/a. dm_pipeline_load and dm_trainer_resume look up the same way. */
DM_API dm_status dm_checkpoint_find(const char *path, char *out, size_t cap, dm_error *err);
/* N for a folder name "checkpoint-N" (digits, no leading zero); -1 for any other name. */
DM_API int64_t dm_checkpoint_name_step(const char *name);
/* Removes a checkpoint folder as dm_trainer_save writes it: only its files (and temporaries of
 * a killed write), then the folder; a symbolic link is removed, never followed. A folder that
 * also holds other files is left with them and reported. */
DM_API dm_status dm_checkpoint_remove(const char *dir, dm_error *err);
/* Makes the checkpoint folder `to` hold the checkpoint files of `from` (hard links where the
 * file system allows, else copies), swapped in as dm_trainer_save swaps: a crash at any moment
 * leaves the old `to` or the new one complete. */
DM_API dm_status dm_checkpoint_copy(const char *from, const char *to, dm_error *err);

#ifdef __cplusplus
}
#endif
