/* UNet internals shared with the checkpoint code (the public API is in diffusion.h). */
#pragma once

#include "models/model.h"

/* diffusers' file names inside a model folder */
#define DM_DIFFUSERS_CONFIG "config.json"
#define DM_DIFFUSERS_WEIGHTS "diffusion_pytorch_model.safetensors"
