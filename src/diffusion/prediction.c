/* The three (four) equivalent predictions of MATH.md: eps, x0, v and the score. Every
 * conversion goes through eps, which is affine in the prediction given x_t:
 *   eps = a x_t + b pred.
 * This file is the one place those coefficients live. */
#include "diffusion/diffusion_impl.h"

#include <math.h>
#include <string.h>

static const char *const prediction_names[] = {"epsilon", "x0", "v", "score"};
#define PREDICTION_COUNT (int)(sizeof prediction_names / sizeof prediction_names[0])

const char *dm_prediction_name(dm_prediction p) {
    if ((int)p < 0 || (int)p >= PREDICTION_COUNT) return "unknown";
    return prediction_names[p];
}

dm_status dm_prediction_parse(const char *name, dm_prediction *p, dm_error *err) {
    for (int k = 0; name && k < PREDICTION_COUNT; k++) {
        if (strcmp(name, prediction_names[k]) == 0) {
            *p = (dm_prediction)k;
            return DM_OK;
        }
    }
    return dm_error_set(err, DM_ERR_ARG,
                        "unknown prediction '%s' (allowed: epsilon, x0, v, score)",
                        name ? name : "(null)");
}

void dm_prediction_to_eps_coeffs(dm_prediction p, double ab, double *a, double *b) {
    const double s_ab = sqrt(ab), s_1ab = sqrt(1.0 - ab);
    switch (p) {
    case DM_PRED_X0: /* x_t = sqrt(ab) x0 + sqrt(1 - ab) eps */
        *a = 1.0 / s_1ab;
        *b = -s_ab / s_1ab;
        return;
    case DM_PRED_V: /* sqrt(1 - ab) x_t + sqrt(ab) v = eps, since ab + (1 - ab) = 1 */
        *a = s_1ab;
        *b = s_ab;
        return;
    case DM_PRED_SCORE: /* score = -eps / sqrt(1 - ab) */
        *a = 0.0;
        *b = -s_1ab;
        return;
    case DM_PRED_EPS:
    default:
        *a = 0.0;
        *b = 1.0;
        return;
    }
}

void dm_prediction_convert(dm_prediction from, dm_prediction to, double ab, const float *xt,
                           const float *in, float *out, int64_t n) {
    /* eps = a_f x + b_f in, and out = (eps - a_t x) / b_t, folded into one affine map */
    double af, bf, at, bt;
    dm_prediction_to_eps_coeffs(from, ab, &af, &bf);
    dm_prediction_to_eps_coeffs(to, ab, &at, &bt);
    const float kx = (float)((af - at) / bt), kin = (float)(bf / bt);
#pragma omp parallel for schedule(static) if (n >= DM_PARALLEL_MIN)
    for (int64_t j = 0; j < n; j++) out[j] = kx * xt[j] + kin * in[j];
}

void dm_prediction_target(dm_prediction p, double ab, const float *x0, const float *eps,
                          float *out, int64_t n) {
    const double s_ab = sqrt(ab), s_1ab = sqrt(1.0 - ab);
    float k0 = 0.0f, ke = 1.0f; /* out = k0 x0 + ke eps */
    switch (p) {
    case DM_PRED_X0: k0 = 1.0f, ke = 0.0f; break;
    case DM_PRED_V: k0 = (float)-s_1ab, ke = (float)s_ab; break;
    case DM_PRED_SCORE: k0 = 0.0f, ke = (float)(-1.0 / s_1ab); break;
    case DM_PRED_EPS:
    default: break;
    }
#pragma omp parallel for schedule(static) if (n >= DM_PARALLEL_MIN)
    for (int64_t j = 0; j < n; j++) out[j] = k0 * x0[j] + ke * eps[j];
}
