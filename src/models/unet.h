/* UNet internals shared with the checkpoint code (the public API is in diffusion.h). */
#pragma once

#include "models/model.h"

/* diffusers' file names inside a model folder */
#define DM_DIFFUSERS_CONFIG "config.json"
#define DM_DIFFUSERS_WEIGHTS "diffusion_pytorch_model.safetensors"

/* The parameters a UNet of this config holds, counted without allocating them (0 for an
 * invalid config): checked against a weights file before the model is created. */
double dm_unet_num_params(const dm_unet_config *cfg);
/* An encoder classifier's pooled features (B, *dim) from its last forward, valid until the next
 * forward; NULL for a model that is not a classifier. */
const float *dm_unet_classifier_features(const dm_model *m, int64_t *dim);
/* For tests: the output of the block whose tensors are named under `block` (diffusers' prefix:
 * "conv_in", "down_blocks.1.resnets.0", "mid_block.attentions.0", "up_blocks.0.upsamplers.0",
 * "conv_out") from the last forward, (B, shape[0], shape[1], shape[2]), and in *input (if not
 * NULL) the block's input; valid until the next forward. An inference forward keeps every
 * block's output but not a concatenating up-block resnet's input. NULL when no block has that
 * name or no forward has run. */
const float *dm_unet_block_output(const dm_model *m, const char *block, const float **input,
                                  int64_t shape[3]);
