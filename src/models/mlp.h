/* MLP internals shared with the checkpoint code. */
#pragma once

#include "models/model.h"

/* The configuration an MLP was created with; NULL if m is not an MLP. */
const dm_mlp_config *dm_mlp_get_config(const dm_model *m);
/* The parameters dm_mlp_create would allocate for cfg, counted without allocating them (0 for
 * an invalid config): checked against a weights file before the model is created. */
double dm_mlp_num_params(const dm_mlp_config *cfg);
