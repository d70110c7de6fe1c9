/* diffusion eval --metric nll: the variational bound of a trained model on held-out data and
 * its exact likelihood through the probability-flow ODE. */
#pragma once

#include "diffusion.h"

typedef struct {
    const char *model;   /* checkpoint */
    const char *data;    /* held-out data: a built-in 2-D set (fresh draws), a file, or images */
    int64_t n;           /* examples (0 = the default: all test images, 10000 points) */
    int exact;           /* all T terms per example, instead of the unbiased estimate */
    int32_t t_draws;     /* estimate: draws of t per example */
    const char *var;     /* "model", or a reverse variance name */
    int64_t batch;       /* examples per network call */
    uint64_t seed;
    int bound, ode;       /* which likelihoods: the bound, the ODE's, or both */
    int32_t hutchinson;   /* ODE: Hutchinson probes per example; 0 = the exact trace (points) or
                           * 1 (images, where dim products a point cost too much) */
    const char *probe;    /* ODE Hutchinson probes: rademacher or gaussian */
    const char *sde;      /* ODE: vp (the schedule's VP SDE); others are refused by the library */
    double ode_rtol, ode_atol;
    int quiet, json;
} cli_nll_args;

/* Returns the process exit status; errors are printed. */
int cli_eval_nll(const cli_nll_args *a);
