/* Dormand-Prince 5(4) with scipy's step control (scipy.integrate.RK45), shared by the
 * probability-flow ODE sampler (sde_samplers.c) and the ODE likelihood (sde_likelihood.c). */
#pragma once

#include "diffusion.h"

#include <stddef.h>

/* dy (n) = the derivative at (t, y (n)). */
typedef dm_status (*dm_rk45_rhs)(void *ctx, double t, const double *y, double *dy);
/* Called after each accepted step with the time reached and the state. */
typedef void (*dm_rk45_accepted)(void *ctx, double t, const double *y);

typedef struct {
    double rtol, atol;   /* > 0 */
    int64_t max_evals;   /* give up beyond this many rhs evaluations; 0 = no limit */
    const char *what;    /* names the caller in messages ("sde sample ode-rk45") */
    dm_rk45_accepted accepted; /* optional */
    void *accepted_ctx;
} dm_rk45_options;

typedef struct {
    int64_t evals;
    int32_t steps, rejected;
} dm_rk45_stats;

/* out = y + sum_i c[i] k[i] over m stages (a stage with c[i] = 0 is skipped); out may be y. The
 * explicit Runge-Kutta steps of the fixed-step ODE samplers use it too. */
void dm_rk_combine(double *out, const double *y, double *const *k, const double *c, int m,
                   size_t n);

/* Integrates y (n) in place from t0 to t1 (either direction): error norm the RMS over all n
 * values of err / (atol + rtol max(|y|, |y_new|)), summed in index order; scipy's first step,
 * safety 0.9, step factors in [0.2, 10], no growth right after a rejection; the 7th stage
 * reused as the next step's first. work holds 11 n doubles. stats (may be NULL) is filled
 * also on failure. DM_ERR_NUMERIC for a non-finite error, a step below scipy's minimum or the
 * evaluation budget. */
dm_status dm_rk45_solve(dm_rk45_rhs f, void *ctx, double *y, size_t n, double t0, double t1,
                        const dm_rk45_options *opt, double *work, dm_rk45_stats *stats,
                        dm_error *err);
