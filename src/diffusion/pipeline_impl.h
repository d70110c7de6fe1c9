/* The pipeline's state, shared by its loaders: our checkpoints (pipeline.c) and diffusers
 * folders (diffusers_pipeline.c). */
#pragma once

#include "diffusion/checkpoint.h"
#include "diffusion/diffusion_impl.h"
#include "diffusion/vdm.h"
#include "models/model.h"

struct dm_pipeline {
    dm_checkpoint_config cfg;
    dm_model *model;
    dm_schedule sched;
    float *out;     /* (out_cap, out_dim) the model's output when it has a variance output */
    int64_t out_cap;
    int32_t *null_labels; /* (null_cap) the null label, for a conditional model asked without
                           * labels */
    int64_t null_cap;
    dm_scheduler scheduler; /* a diffusers folder's scheduler (has_scheduler) */
    int has_scheduler;
    dm_vdm vdm;     /* loss vdm-continuous: the log-SNR schedule in continuous time (has_vdm) */
    int has_vdm;
};

/* The labels of an unconditional prediction for B rows: NULL for an unconditional model, else
 * the null label in the pipeline's own buffer (grown as needed, not freed by the caller);
 * refused for a conditional model trained without it. */
dm_status dm_pipeline_default_labels(dm_pipeline *p, const int32_t **labels, int64_t B,
                                     dm_error *err);

/* The chunks a pipeline call draws (dm_sample_options.chunk_first, chunk_step): *step 1 for 0;
 * a negative first or step refused. */
static inline dm_status dm_pipeline_chunk_step(int64_t first, int64_t step, int64_t *out,
                                               dm_error *err) {
    if (first < 0 || step < 0)
        return dm_error_set(err, DM_ERR_ARG, "sample: chunk_first %lld and chunk_step %lld must "
                            "be >= 0", (long long)first, (long long)step);
    *out = step > 0 ? step : 1;
    return DM_OK;
}

/* *diffusers = 1 when path is a diffusers folder: a pipeline (model_index.json and no
 * config.json of ours) or a bare UNet2DModel folder (config.json with "_class_name"). */
dm_status dm_diffusers_folder_detect(const char *path, int *diffusers, dm_error *err);
