/* train --init-from: a diffusers folder as the starting point of training. */
#pragma once

#include "common.h"

/* Loads the diffusers folder dir (variant: NULL or e.g. "fp16") into *p and sets cfg's
 * architecture, schedule, prediction and reverse variance from it; refuses a schedule diffusion.c
 * cannot train with and class-conditional UNets. The caller passes dm_pipeline_model(*p) to
 * dm_trainer_init_weights and frees *p. */
dm_status cli_init_from(dm_pipeline **p, dm_train_config *cfg, const char *dir,
                        const char *variant, dm_error *err);
