/* The optimal denoiser for Gaussian data x0 ~ N(mu, S) in 2-D, known in closed form:
 *   x_t ~ N(sqrt(ab) mu, Sigma_t), Sigma_t = ab S + (1 - ab) I,
 *   E[eps | x_t] = sqrt(1 - ab) Sigma_t^{-1} (x_t - sqrt(ab) mu),
 *   Cov[eps | x_t] = I - (1 - ab) Sigma_t^{-1}.
 * Plugged in as a dm_denoise_fn, it lets tests compare the library's bound, losses and samplers
 * with exact answers. */
#pragma once

#include "diffusion/diffusion_impl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* A schedule of the given kind and T with the other settings at their defaults; exits on error. */
static inline dm_schedule gauss_oracle_schedule(dm_schedule_kind kind, int32_t T) {
    dm_schedule_config cfg;
    dm_schedule_config_default(&cfg);
    cfg.kind = kind;
    cfg.T = T;
    dm_schedule s;
    dm_error err = {0};
    if (dm_schedule_init(&s, &cfg, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
    return s;
}

typedef struct {
    const dm_schedule *s;
    double mu[2];
    double S[2][2]; /* symmetric positive definite */
    int calls;
} gauss_oracle;

static inline gauss_oracle gauss_oracle_make(const dm_schedule *s) {
    gauss_oracle g = {.s = s, .mu = {0.7, -0.4}, .S = {{1.3, 0.5}, {0.5, 0.6}}};
    return g;
}

/* Sigma_t^{-1} at alpha_bar ab. */
static inline void gauss_oracle_prec(const gauss_oracle *g, double ab, double P[2][2]) {
    const double a = ab * g->S[0][0] + 1 - ab, b = ab * g->S[0][1], d = ab * g->S[1][1] + 1 - ab;
    const double det = a * d - b * b;
    P[0][0] = d / det, P[0][1] = P[1][0] = -b / det, P[1][1] = a / det;
}

static inline dm_status gauss_oracle_denoise(void *ctx, float *eps_hat, float *var_out,
                                             const float *x, const float *t, int64_t B,
                                             dm_error *err) {
    gauss_oracle *g = ctx;
    if (var_out) return dm_error_set(err, DM_ERR_ARG, "the oracle has no variance output");
    g->calls++;
    for (int64_t b = 0; b < B; b++) {
        const double ab = g->s->alpha_bar[(int32_t)t[b]], sab = sqrt(ab), s1 = sqrt(1 - ab);
        double P[2][2];
        gauss_oracle_prec(g, ab, P);
        const double r0 = x[2 * b] - sab * g->mu[0], r1 = x[2 * b + 1] - sab * g->mu[1];
        eps_hat[2 * b] = (float)(s1 * (P[0][0] * r0 + P[0][1] * r1));
        eps_hat[2 * b + 1] = (float)(s1 * (P[1][0] * r0 + P[1][1] * r1));
    }
    return DM_OK;
}

/* E ||eps - E[eps | x_t]||^2 = tr(I - (1 - ab) Sigma_t^{-1}). */
static inline double gauss_oracle_mse(const gauss_oracle *g, double ab) {
    double P[2][2];
    gauss_oracle_prec(g, ab, P);
    return 2.0 - (1 - ab) * (P[0][0] + P[1][1]);
}

/* n 2-D draws from N(mu, S): its Cholesky factor times normals from (seed, stream). */
static inline void gauss_draw(const double mu[2], const double S[2][2], float *x, int64_t n,
                              uint64_t seed, uint64_t stream) {
    const double l00 = sqrt(S[0][0]), l10 = S[1][0] / l00;
    const double l11 = sqrt(S[1][1] - l10 * l10);
    dm_rng r;
    dm_rng_init(&r, seed, stream);
    dm_rng_normal(&r, x, (size_t)(2 * n));
    for (int64_t b = 0; b < n; b++) {
        const double z0 = x[2 * b], z1 = x[2 * b + 1];
        x[2 * b] = (float)(mu[0] + l00 * z0);
        x[2 * b + 1] = (float)(mu[1] + l10 * z0 + l11 * z1);
    }
}

/* n draws of x0 from the oracle's N(mu, S). */
static inline void gauss_oracle_data(const gauss_oracle *g, float *x0, int64_t n, uint64_t seed) {
    gauss_draw(g->mu, g->S, x0, n, seed, 99);
}

/* The data's differential entropy, 0.5 log((2 pi e)^2 det S), in nats. */
static inline double gauss_oracle_entropy(const gauss_oracle *g) {
    const double det = g->S[0][0] * g->S[1][1] - g->S[0][1] * g->S[1][0];
    return 0.5 * (2.0 * (1.0 + log(2.0 * M_PI)) + log(det));
}
