/* UNet internals shared with the checkpoint code (the public API is in diffusion.h). */
#pragma once

#include "models/model.h"

/* diffusers' file names inside a model folder */
#define DM_DIFFUSERS_CONFIG "config.json"
#define DM_DIFFUSERS_WEIGHTS "diffusion_pytorch_model.safetensors"

/* An encoder classifier's pooled features (B, *dim) from its last forward, valid until the next
 * forward; NULL for a model that is not a classifier. */
/* The parameters a UNet of this config holds, counted without allocating them (0 for an
 * invalid config): checked against a weights file before the model is created. */
double dm_unet_num_params(const dm_unet_config *cfg);
const float *dm_unet_classifier_features(const dm_model *m, int64_t *dim);
