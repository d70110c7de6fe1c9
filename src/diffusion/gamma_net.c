/* VDM's learned monotone schedule gamma_eta(t): evaluation and gradients, in double.
 * Formulas and parameter layout: gamma_net.h. */
#include "diffusion/gamma_net.h"

#include <float.h>
#include <math.h>

#define GAMMA_NET_HIDDEN_MAX ((int64_t)1 << 24)
#define GAMMA_NET_STREAM 7
/* Work is counted in hidden-unit evaluations (one exp each): like SiLU, an exp per element makes
 * two threads worth waking well below DM_PARALLEL_MIN. */
#define GAMMA_NET_PARALLEL_MIN 4096
/* Items per block in backward: the per-item coefficients live on the stack (no allocation, so
 * backward cannot fail), and the blocking is fixed so results do not depend on the threads. */
#define GAMMA_NET_BLOCK 1024

/* d|x|/dx, taken as +1 at 0 */
static inline double sgn(double x) { return x < 0 ? -1.0 : 1.0; }

/* phi(u) = 2 sigmoid(u) - 1 and phi'(u) = 2 sigmoid(u) (1 - sigmoid(u)), from one exp of -|u|
 * (never overflows; phi' keeps full relative precision where the unit saturates). */
static inline void unit(double u, double *phi, double *dphi) {
    const double e = exp(-fabs(u)), inv = 1.0 / (1.0 + e);
    const double p = (1.0 - e) * inv;
    *phi = u < 0 ? -p : p;
    *dphi = 2.0 * e * inv * inv;
}

/* The net's parameters as doubles, in one place for eval and backward. */
typedef struct {
    int64_t H;
    double g0, g1, a1, s1;         /* gamma_0, gamma_1, |w1|, sign(w1) */
    const float *w2, *b2, *w3;     /* (H) each */
} net_view;

static net_view view_of(const dm_gamma_net *g) {
    const int64_t H = g->hidden;
    const float *p = g->params;
    return (net_view){H,
                      p[DM_GAMMA_NET_G0],
                      p[DM_GAMMA_NET_G1],
                      fabs((double)p[DM_GAMMA_NET_W1]),
                      sgn(p[DM_GAMMA_NET_W1]),
                      p + DM_GAMMA_NET_W2(H),
                      p + DM_GAMMA_NET_B2(H),
                      p + DM_GAMMA_NET_W3(H)};
}

/* gt(t) and gt'(t); the sum over hidden units runs in index order, so every call with the same t
 * gives the same bits (gamma(0) and gamma(1) are exact because of that). */
static void gt_at(const net_view *v, double t, double *gt, double *dgt) {
    const double x = 2.0 * t - 1.0;
    double s = 0, ds = 0;
    for (int64_t k = 0; k < v->H; k++) {
        const double a2 = fabs((double)v->w2[k]), a3 = fabs((double)v->w3[k]);
        double phi, dphi;
        unit(a2 * x + v->b2[k], &phi, &dphi);
        s += a3 * phi;
        ds += a3 * 2.0 * a2 * dphi;
    }
    *gt = v->a1 * t + s / (double)v->H;
    *dgt = v->a1 + ds / (double)v->H;
}

/* gt(0), and the denominator gt(1) - gt(0) floored at DBL_MIN (*floored says whether it was). */
static void endpoints(const net_view *v, double *gt0, double *den, int *floored) {
    double gt1, d0, d1;
    gt_at(v, 0.0, gt0, &d0);
    gt_at(v, 1.0, &gt1, &d1);
    const double d = gt1 - *gt0;
    *floored = !(d >= DBL_MIN);
    *den = *floored ? DBL_MIN : d;
}

dm_status dm_gamma_net_init(dm_gamma_net *g, int64_t hidden, double gamma_0, double gamma_1,
                            uint64_t seed, dm_error *err) {
    *g = (dm_gamma_net){0};
    if (hidden < 1 || hidden > GAMMA_NET_HIDDEN_MAX)
        return dm_error_set(err, DM_ERR_ARG, "gamma net: hidden = %lld, allowed 1 to %lld",
                            (long long)hidden, (long long)GAMMA_NET_HIDDEN_MAX);
    if (!isfinite(gamma_0) || !isfinite(gamma_1) || !(gamma_0 < gamma_1))
        return dm_error_set(err, DM_ERR_ARG,
                            "gamma net: endpoints gamma_0 = %g, gamma_1 = %g; need finite "
                            "gamma_0 < gamma_1",
                            gamma_0, gamma_1);
    const size_t np = 3 + 3 * (size_t)hidden;
    float *params = dm_alloc(np * sizeof *params), *grads = dm_alloc(np * sizeof *grads);
    if (!params || !grads) {
        dm_free(params);
        dm_free(grads);
        return dm_error_set(err, DM_ERR_NOMEM, "gamma net: cannot allocate %zu parameters", np);
    }
    params[DM_GAMMA_NET_G0] = (float)gamma_0;
    params[DM_GAMMA_NET_G1] = (float)gamma_1;
    params[DM_GAMMA_NET_W1] = 1.0f;
    /* Near-linear start (gamma_net.h gives the bound): the hidden units get O(1) slopes and
     * offsets so they cover different parts of [0, 1], but 1/100 of the linear part's weight. */
    dm_rng rng;
    dm_rng_init(&rng, seed, GAMMA_NET_STREAM);
    float *w2 = params + DM_GAMMA_NET_W2(hidden), *b2 = params + DM_GAMMA_NET_B2(hidden);
    float *w3 = params + DM_GAMMA_NET_W3(hidden);
    dm_rng_uniform(&rng, w2, (size_t)hidden);
    dm_rng_uniform(&rng, b2, (size_t)hidden);
    dm_rng_uniform(&rng, w3, (size_t)hidden);
    for (int64_t k = 0; k < hidden; k++) {
        w2[k] = 2.0f * w2[k] - 1.0f;
        b2[k] = 2.0f * b2[k] - 1.0f;
        w3[k] = 0.01f * (2.0f * w3[k] - 1.0f);
    }
    g->hidden = hidden;
    g->num_params = np;
    g->params = params;
    g->grads = grads;
    return DM_OK;
}

void dm_gamma_net_free(dm_gamma_net *g) {
    if (!g) return;
    dm_free(g->params);
    dm_free(g->grads);
    *g = (dm_gamma_net){0};
}

void dm_gamma_net_eval(const dm_gamma_net *g, const double *t, double *gamma, double *dgamma,
                       int64_t n) {
    if (n <= 0 || (!gamma && !dgamma)) return;
    const net_view v = view_of(g);
    double gt0, den;
    int floored;
    endpoints(&v, &gt0, &den, &floored);
    const double delta = v.g1 - v.g0;
    /* Items are independent, so the thread count cannot change any value. */
#pragma omp parallel for schedule(static) if (n * v.H >= GAMMA_NET_PARALLEL_MIN)
    for (int64_t j = 0; j < n; j++) {
        double gt, dgt;
        gt_at(&v, t[j], &gt, &dgt);
        /* (1 - r) g0 + r g1 rather than g0 + r (g1 - g0): exact at r = 0 and at r = 1 */
        const double r = (gt - gt0) / den;
        if (gamma) gamma[j] = (1.0 - r) * v.g0 + r * v.g1;
        if (dgamma) dgamma[j] = delta * dgt / den;
    }
}

/* Backward, derived from gamma = (1 - r) g0 + r g1, gamma' = D q with D = g1 - g0,
 * r = (gt(t) - gt(0)) / den, q = gt'(t) / den, den = gt(1) - gt(0). With A = dl_dgamma,
 * B = dl_ddgamma, s = shape_scale per item:
 *   d/dg0 = A (1 - r) - B q,   d/dg1 = A r + B q,
 *   d/dtheta (shape) = s D / den [A d(gt(t) - gt(0)) + B d gt'(t) - (A r + B q) d den].
 * Writing cA = s D A / den, cB = s D B / den, cD = -s D (A r + B q) / den, the shape gradient is
 *   sum_j [cA_j d gt(t_j) + cB_j d gt'(t_j)] + C0 d gt(0) + C1 d gt(1),
 * C0 = -sum_j (cA_j + cD_j), C1 = sum_j cD_j, so gt(0) and gt(1) are differentiated once per
 * block, not per item. Per hidden unit (u = |w2| x + b2, x = 2t - 1, phi'' = -phi' phi):
 *   d gt / d w3 = sgn(w3) phi / H,         d gt' / d w3 = sgn(w3) 2 |w2| phi' / H,
 *   d gt / d b2 = |w3| phi' / H,           d gt' / d b2 = |w3| 2 |w2| phi'' / H,
 *   d gt / d w2 = |w3| sgn(w2) x phi' / H, d gt' / d w2 = |w3| sgn(w2) 2 (phi' + |w2| x phi'') / H,
 * and d gt / d w1 = sgn(w1) t, d gt' / d w1 = sgn(w1). */
void dm_gamma_net_backward(dm_gamma_net *g, const double *t, const double *dl_dgamma,
                           const double *dl_ddgamma, const double *shape_scale, int64_t n) {
    if (n <= 0 || (!dl_dgamma && !dl_ddgamma)) return;
    const net_view v = view_of(g);
    const int64_t H = v.H;
    double gt0, den;
    int floored;
    endpoints(&v, &gt0, &den, &floored);
    const double delta = v.g1 - v.g0;
    double gg0 = 0, gg1 = 0, gw1 = 0; /* over all items, added once at the end */
    float *gw2 = g->grads + DM_GAMMA_NET_W2(H), *gb2 = g->grads + DM_GAMMA_NET_B2(H);
    float *gw3 = g->grads + DM_GAMMA_NET_W3(H);

    for (int64_t j0 = 0; j0 < n; j0 += GAMMA_NET_BLOCK) {
        const int64_t m = n - j0 < GAMMA_NET_BLOCK ? n - j0 : GAMMA_NET_BLOCK;
        const double *tb = t + j0;
        double cA[GAMMA_NET_BLOCK], cB[GAMMA_NET_BLOCK];
        /* gt and gt' per item (cA, cB hold them until overwritten below) */
#pragma omp parallel for schedule(static) if (m * H >= GAMMA_NET_PARALLEL_MIN)
        for (int64_t j = 0; j < m; j++) gt_at(&v, tb[j], &cA[j], &cB[j]);

        double C0 = 0, C1 = 0;
        for (int64_t j = 0; j < m; j++) {
            const double A = dl_dgamma ? dl_dgamma[j0 + j] : 0.0;
            const double B = dl_ddgamma ? dl_ddgamma[j0 + j] : 0.0;
            const double s = shape_scale ? shape_scale[j0 + j] : 1.0;
            const double r = (cA[j] - gt0) / den, q = cB[j] / den;
            gg0 += A * (1.0 - r) - B * q;
            gg1 += A * r + B * q;
            /* A degenerate (floored) net gives the shape no gradient: delta / DBL_MIN would
             * overflow, and a constant gamma = gamma_0 has no useful direction anyway. */
            const double c = floored ? 0.0 : s * delta / den;
            const double cD = -c * (A * r + B * q);
            cA[j] = c * A;
            cB[j] = c * B;
            C0 -= cA[j] + cD;
            C1 += cD;
            gw1 += v.s1 * (cA[j] * tb[j] + cB[j]);
        }
        gw1 += v.s1 * C1; /* d gt(1) / d w1 = sgn(w1); d gt(0) / d w1 = 0 */

        /* Each hidden unit's three gradients depend on no other unit: parallel over units, items
         * summed in order inside, so the thread count cannot change a bit. */
#pragma omp parallel for schedule(static) if (m * H >= GAMMA_NET_PARALLEL_MIN)
        for (int64_t k = 0; k < H; k++) {
            const double a2 = fabs((double)v.w2[k]), a3 = fabs((double)v.w3[k]);
            const double b2 = v.b2[k];
            double sw3 = 0, sb2 = 0, sw2 = 0;
            for (int64_t j = 0; j < m; j++) {
                const double x = 2.0 * tb[j] - 1.0;
                double phi, dphi;
                unit(a2 * x + b2, &phi, &dphi);
                const double ddphi = -dphi * phi;
                sw3 += cA[j] * phi + cB[j] * 2.0 * a2 * dphi;
                sb2 += cA[j] * dphi + cB[j] * 2.0 * a2 * ddphi;
                sw2 += cA[j] * x * dphi + cB[j] * 2.0 * (dphi + a2 * x * ddphi);
            }
            double phi0, dphi0, phi1, dphi1;
            unit(b2 - a2, &phi0, &dphi0); /* t = 0, x = -1 */
            unit(a2 + b2, &phi1, &dphi1); /* t = 1, x = +1 */
            sw3 += C0 * phi0 + C1 * phi1;
            sb2 += C0 * dphi0 + C1 * dphi1;
            sw2 += -C0 * dphi0 + C1 * dphi1;
            gw3[k] += (float)(sgn(v.w3[k]) * sw3 / (double)H);
            gb2[k] += (float)(a3 * sb2 / (double)H);
            gw2[k] += (float)(a3 * sgn(v.w2[k]) * sw2 / (double)H);
        }
    }
    g->grads[DM_GAMMA_NET_G0] += (float)gg0;
    g->grads[DM_GAMMA_NET_G1] += (float)gg1;
    g->grads[DM_GAMMA_NET_W1] += (float)gw1;
}
