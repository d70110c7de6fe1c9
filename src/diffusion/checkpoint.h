/* Checkpoint folders: config.json (architecture, schedule, normalisation, training settings,
 * step), model.safetensors (EMA weights under their PyTorch names) and, for resuming,
 * train_state.safetensors (raw weights, Adam moments, loss history, random stream offsets).
 * A folder is written whole beside the old one and swapped in by renames, so a crash at any
 * moment leaves a complete checkpoint under DIR or, between the two renames, under DIR.old. */
#pragma once

#include "core/core.h"

#define DM_CKPT_CONFIG "config.json"
#define DM_CKPT_MODEL "model.safetensors"
#define DM_CKPT_STATE "train_state.safetensors"
/* a learned schedule (VDM): its EMA parameters, tensor "gamma_net" */
#define DM_CKPT_SCHEDULE "schedule.safetensors"
/* and for resuming, its raw parameters and Adam state */
#define DM_CKPT_SCHEDULE_STATE "schedule_state.safetensors"
/* UNet checkpoints keep the weights as a diffusers model folder, beside the files diffusers'
 * DDPMPipeline needs, so the checkpoint folder loads in Python as it is */
#define DM_CKPT_UNET_DIR "unet"
#define DM_CKPT_MODEL_INDEX "model_index.json"
#define DM_CKPT_SCHEDULER_CONFIG "scheduler/scheduler_config.json"

typedef struct {
    dm_train_config train;
    dm_normalizer norm;
    int64_t step;
    int64_t data_n;     /* rows of the training data */
    uint64_t data_hash; /* FNV-1a of the training data's bytes: resume refuses other data */
} dm_checkpoint_config;

/* Adds "schedule": {kind, T, beta_start, ...} to parent (our config.json and a classifier's). */
typedef struct cJSON cJSON;
void dm_schedule_config_add_json(cJSON *parent, const dm_schedule_config *c);
/* Reads such an object back (every field required, T in 1..100000, kind a known name); errors
 * name path and the field. */
dm_status dm_schedule_config_read_json(const cJSON *sched, dm_schedule_config *c,
                                       const char *path, dm_error *err);

dm_status dm_checkpoint_config_write(const char *path, const dm_checkpoint_config *c,
                                     dm_error *err);
dm_status dm_checkpoint_config_read(const char *path, dm_checkpoint_config *c, dm_error *err);

/* Finds the checkpoint folder for a user path: PATH itself, PATH/checkpoint (a training run's
 * output folder), or PATH.old left by a crash mid-swap. out receives the folder. */
dm_status dm_checkpoint_resolve(const char *path, char *out, size_t cap, dm_error *err);

/* Creates an empty DIR.tmp (clearing a stale one) and returns its name in tmp. */
dm_status dm_checkpoint_begin(const char *dir, char *tmp, size_t cap, dm_error *err);
/* Swaps DIR.tmp into DIR; the old DIR is removed only after the new one is in place. */
dm_status dm_checkpoint_commit(const char *dir, const char *tmp, dm_error *err);
/* Removes the folder dm_checkpoint_begin made, after a failed write. */
void dm_checkpoint_abort(const char *tmp);

/* Writes `weights` (laid out like m's params) under m's tensor names, with string metadata. */
dm_status dm_model_weights_save(const dm_model *m, const float *weights, const char *path,
                                dm_error *err);
/* Loads every tensor of m by name into its params, checking names and shapes. */
dm_status dm_model_weights_load(dm_model *m, const char *path, dm_error *err);
/* Another name a weights file may hold a model tensor under (diffusers' attention names from
 * before 0.17): written into buf (cap bytes), which is returned; NULL when there is none. */
typedef const char *(*dm_weights_alias)(const char *name, char *buf, size_t cap);
typedef struct dm_safetensors dm_safetensors;
/* dm_model_weights_load over open files that together hold m's weights (one file, or the shards
 * of a sharded checkpoint): each tensor of m in exactly one of them, under its name or (alias
 * not NULL) its alias, with its shape and any dtype dm_safetensors_read_f32 converts; the files
 * hold no other tensor. A tensor with NaN or Inf is refused naming it and its file. `what`
 * names the whole set (the file, or a shard index) in errors about the set. */
dm_status dm_model_weights_load_files(dm_model *m, dm_safetensors *const *files, int n_files,
                                      dm_weights_alias alias, const char *what, dm_error *err);

/* The schedule a checkpoint samples with: from its config, or for a learned schedule from
 * DIR/schedule.safetensors discretised to T steps. */
dm_status dm_checkpoint_schedule(dm_schedule *s, const char *dir, const dm_train_config *t,
                                 dm_error *err);

/* The VDM log-SNR schedule of a loss vdm-continuous checkpoint (fields learned, gamma_min,
 * gamma_max, T, and for a learned one net with the EMA parameters of DIR/schedule.safetensors);
 * no training buffers. Free with dm_vdm_free. */
typedef struct dm_vdm dm_vdm;
dm_status dm_checkpoint_vdm(dm_vdm *v, const char *dir, const dm_train_config *t, dm_error *err);

/* Model described by a checkpoint config. */
dm_status dm_checkpoint_model_create(dm_model **m, const dm_checkpoint_config *c, dm_error *err);
/* DM_ERR_MISMATCH unless the weights file at path holds as many parameters as a model of
 * `expected` (dm_unet_num_params, dm_mlp_num_params): called before the model is created, so
 * a config describing a far larger model than its weights (num_classes 999999, channels of
 * 10^5) is refused without allocating it. expected 0 (an invalid config) passes: creating
 * the model reports why. dm_checkpoint_weights_check takes t's model. */
dm_status dm_weights_count_check(const char *path, double expected, dm_error *err);
/* The same over open files (the shards of a sharded checkpoint): the sum of their parameters;
 * `what` names them in the error. */
dm_status dm_weights_count_check_files(dm_safetensors *const *files, int n_files,
                                       const char *what, double expected, dm_error *err);
dm_status dm_checkpoint_weights_check(const dm_train_config *t, const char *path, dm_error *err);
/* Where a checkpoint folder keeps the (EMA) weights: model.safetensors, or for a UNet
 * unet/diffusion_pytorch_model.safetensors. */
void dm_checkpoint_weights_path(char *out, size_t cap, const char *dir, const dm_train_config *t);
/* model_index.json + scheduler/scheduler_config.json for diffusers' DDPMPipeline. */
dm_status dm_checkpoint_write_diffusers_pipeline(const char *dir, const dm_schedule *s,
                                                 const dm_train_config *t, dm_error *err);

