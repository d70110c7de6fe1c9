/* Time per layer type, for `diffusion bench --profile`: the layer primitives add their wall time
 * to a category while profiling is on. Off, a primitive pays one branch. The primitives are
 * called from serial code (they parallelise inside), so plain accumulators suffice. */
#include "core/core.h"

#include <omp.h>
#include <string.h>

static bool profile_on;
static double profile_seconds[DM_PROFILE_COUNT];

void dm_profile_enable(int on) { profile_on = on != 0; }
void dm_profile_reset(void) { memset(profile_seconds, 0, sizeof profile_seconds); }
double dm_profile_seconds(dm_profile_kind k) {
    return (unsigned)k < DM_PROFILE_COUNT ? profile_seconds[k] : 0.0;
}

const char *dm_profile_name(dm_profile_kind k) {
    static const char *const names[DM_PROFILE_COUNT] = {
        "conv forward", "conv backward", "attention",  "group norm",
        "linear",       "elementwise",   "optimiser",
    };
    return (unsigned)k < DM_PROFILE_COUNT ? names[k] : "?";
}

double dm_profile_begin(void) { return profile_on ? omp_get_wtime() : 0.0; }

void dm_profile_end(dm_profile_kind k, double t0) {
    if (profile_on) profile_seconds[k] += omp_get_wtime() - t0;
}
