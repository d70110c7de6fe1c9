/* Langevin corrector pieces shared by the discrete (langevin.c) and continuous-time
 * (sde_samplers.c) samplers. */
#pragma once

#include "core/core.h"

/* score_sde's LangevinCorrector norms: s_sum = sum_b ||s_b||, z_sum = sum_b ||z_b|| over B
 * samples of dim values (their ratio sets the step size; the batch means' 1/B cancels). Each
 * norm in double, the sums in a fixed order, so the thread count does not matter. nrm: (2 B)
 * scratch. */
void dm_langevin_norm_sums(const float *s, const float *z, int64_t B, int64_t dim, double *nrm,
                           double *s_sum, double *z_sum);
