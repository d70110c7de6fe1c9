/* The continuous-time processes and samplers are declared in the public header
 * (include/diffusion.h, "Continuous time"); formulas there and in docs/continuous-time.md. */
#pragma once

#include "diffusion.h"
