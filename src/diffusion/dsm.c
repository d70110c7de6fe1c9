/* Continuous-time denoising score matching on a forward SDE (see dsm.h). */
#include "diffusion/dsm.h"
#include "diffusion/diffusion_impl.h"
#include "io/image_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { STREAM_SIGMA_MAX = 9 }; /* the trainer's streams are 1..8 (trainer.c) */

double dm_dsm_input_scale(const dm_sde *sde, double t) {
    double mean, std;
    dm_sde_marginal(sde, t, &mean, &std);
    return 1.0 / sqrt(mean * mean + std * std);
}

double dm_dsm_time_input(double t, int32_t T) { return t * (double)(T - 1); }

void dm_dsm_prepare(const dm_sde *sde, int32_t T, const float *u, const float *x0, const float *z,
                    float *xin, float *tm, int32_t *idx, int64_t B, int64_t D) {
    for (int64_t b = 0; b < B; b++) {
        const double t = sde->eps + (double)u[b] * (1.0 - sde->eps);
        double mean, std;
        dm_sde_marginal(sde, t, &mean, &std);
        const double c = 1.0 / sqrt(mean * mean + std * std);
        const float cm = (float)(c * mean), cs = (float)(c * std);
        for (int64_t d = 0; d < D; d++) xin[b * D + d] = cm * x0[b * D + d] + cs * z[b * D + d];
        tm[b] = (float)dm_dsm_time_input(t, T);
        const long i = lround(dm_dsm_time_input(t, T));
        idx[b] = (int32_t)(i < 0 ? 0 : i > T - 1 ? T - 1 : i);
    }
}

dm_status dm_dsm_check_config(const dm_train_config *c, dm_error *err) {
    const char *kind = dm_sde_kind_name(c->sde.kind);
    if ((int)c->sde.kind < 0 || (int)c->sde.kind > DM_SDE_VE)
        return dm_error_set(err, DM_ERR_ARG, "unknown sde %d (allowed: vp, subvp, ve)",
                            (int)c->sde.kind);
    if (c->loss != DM_LOSS_SIMPLE)
        return dm_error_set(err, DM_ERR_ARG, "sde %s training is denoising score matching with "
                            "NCSN's std^2 weighting: loss simple (got %s)", kind,
                            dm_loss_kind_name(c->loss));
    if (c->prediction != DM_PRED_EPS)
        return dm_error_set(err, DM_ERR_ARG, "sde %s training predicts the noise (score = "
                            "-output / std): prediction epsilon (got %s)", kind,
                            dm_prediction_name(c->prediction));
    if (c->var == DM_VAR_LEARNED)
        return dm_error_set(err, DM_ERR_ARG, "sde %s training has no reverse variance to learn: "
                            "variance beta or beta-tilde", kind);
    if (c->timesteps != DM_TIME_UNIFORM)
        return dm_error_set(err, DM_ERR_ARG, "sde %s training draws t uniformly from [eps, 1]: "
                            "t-sampling uniform (got %s)", kind,
                            dm_time_sampling_name(c->timesteps));
    if (c->schedule.kind != DM_SCHEDULE_LINEAR)
        return dm_error_set(err, DM_ERR_ARG, "sde %s training: the noise levels are the SDE's "
                            "(a VP run samples with its linear discretisation); schedule %s is "
                            "for the discrete chain: leave it at linear", kind,
                            dm_schedule_kind_name(c->schedule.kind));
    if (c->schedule.T < 2)
        return dm_error_set(err, DM_ERR_ARG, "sde %s training: T = %d is the network's time "
                            "scale t (T - 1) and needs T >= 2", kind, (int)c->schedule.T);
    dm_sde s = c->sde;
    /* VE's sigma_max 0 (from the data, checked when resolved): any value above sigma_min lets
     * dm_sde_check judge the other fields */
    if (s.kind == DM_SDE_VE && s.sigma_max == 0) s.sigma_max = 2 * s.sigma_min + 1;
    return dm_sde_check(&s, err);
}

void dm_dsm_set_schedule(dm_train_config *c) {
    if (c->sde.kind != DM_SDE_VP) return;
    c->schedule.kind = DM_SCHEDULE_LINEAR;
    c->schedule.beta_start = c->sde.beta_min / (double)c->schedule.T;
    c->schedule.beta_end = c->sde.beta_max / (double)c->schedule.T;
}

dm_status dm_dsm_resolve_sigma_max(dm_sde *sde, const float *x, const uint8_t *u8, int64_t n,
                                   int64_t D, uint64_t seed, dm_error *err) {
    if (sde->kind != DM_SDE_VE || sde->sigma_max != 0) return DM_OK;
    if (n < 2)
        return dm_error_set(err, DM_ERR_ARG, "sde ve: sigma_max from the data needs at least 2 "
                            "examples (got %lld); give sigma_max", (long long)n);
    const int64_t m = n < DM_SDE_SIGMA_MAX_POINTS ? n : DM_SDE_SIGMA_MAX_POINTS;
    int32_t *perm = dm_alloc((size_t)n * sizeof *perm);
    float *rows = dm_alloc((size_t)(m * D) * sizeof *rows);
    dm_status st = DM_OK;
    if (!perm || !rows) {
        st = dm_error_set(err, DM_ERR_NOMEM, "sde ve: out of memory for sigma_max");
    } else {
        dm_epoch_order(perm, n, seed, STREAM_SIGMA_MAX, 0);
        for (int64_t i = 0; i < m; i++) {
            const int64_t r = perm[i];
            if (x)
                memcpy(rows + i * D, x + r * D, (size_t)D * sizeof *rows);
            else
                dm_pixels_from_u8(rows + i * D, u8 + r * D, (size_t)D);
        }
        double sm = 0;
        st = dm_sde_ve_sigma_max(rows, m, D, 0, 0, &sm, err);
        if (!st && !(sm > sde->sigma_min))
            st = dm_error_set(err, DM_ERR_ARG, "sde ve: the data's largest distance %g is not "
                              "above sigma_min %g; give sigma_max", sm, sde->sigma_min);
        if (!st) {
            /* to 15 significant digits: config.json keeps that many of a double (cJSON), and
             * the value trained with must be the one a resumed run reads back */
            char digits[32];
            snprintf(digits, sizeof digits, "%.15g", sm);
            sde->sigma_max = strtod(digits, NULL);
        }
    }
    dm_free(perm);
    dm_free(rows);
    return st;
}
