/* MLP internals shared with the checkpoint code. */
#pragma once

#include "models/model.h"

/* The configuration an MLP was created with; NULL if m is not an MLP. */
const dm_mlp_config *dm_mlp_get_config(const dm_model *m);
