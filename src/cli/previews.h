/* Sample previews during training: every N steps a picture of samples from the EMA weights,
 * DIR/previews/step-N.png, drawn from the same starting noise every time (seed 0, DDIM with
 * eta 0: deterministic given x_T), so frames show the model changing and nothing else.
 * Images: a grid (a class per column for a class-conditional model); points: a scatter plot. */
#pragma once

#include "common.h"

#define CLI_PREVIEW_STEPS 50 /* DDIM network evaluations per preview unless given */

/* Writes DIR/previews/step-<step>.png for the trainer's current EMA weights, with a DDIM
 * sampler of `steps` network levels. */
dm_status cli_preview_write(const dm_trainer *tr, const char *dir, int steps, dm_error *err);
