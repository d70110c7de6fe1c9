/* VDM's learned monotone noise schedule gamma_eta(t) = -log SNR(t), t in [0, 1] (Kingma et al.
 * 2021, NoiseSchedule_NNet), with its endpoints made explicit (shared/MATH.md, "learned (VDM)"):
 *
 *   gt(t)    = |w1| t + (1/H) sum_k |w3_k| phi(|w2_k| (2t - 1) + b2_k),  phi(u) = 2 sigmoid(u) - 1
 *   gamma(t) = gamma_0 + (gamma_1 - gamma_0) (gt(t) - gt(0)) / (gt(1) - gt(0))
 *   gamma'(t) = (gamma_1 - gamma_0) gt'(t) / (gt(1) - gt(0))
 *
 * so gamma(0) = gamma_0 and gamma(1) = gamma_1 exactly, and gamma is monotone increasing whenever
 * gamma_1 > gamma_0: every slope enters through |.|, and phi is increasing. gamma_0 and gamma_1
 * are the "endpoint" parameters; w1, w2, b2, w3 the "shape" parameters. VDM's bias on the linear
 * layer cancels in the normalisation and is left out. The derivative of |x| at x = 0 is taken as
 * +1, so a slope that reaches exactly 0 can leave it again.
 *
 * The denominator gt(1) - gt(0) is >= |w1| and > 0 unless w1 = 0 and every hidden unit is flat
 * or saturated; it is floored at DBL_MIN so that such a degenerate net gives gamma = gamma_0 (so
 * gamma(1) misses gamma_1) and no shape gradient, instead of NaN.
 *
 * t outside [0, 1] is allowed and extrapolates the same formula: gamma stays monotone and grows
 * linearly (slope from |w1|) far out; nothing bounds it to [gamma_0, gamma_1] there.
 *
 * If training ever drives gamma_1 below gamma_0, gamma becomes decreasing; the net does not
 * prevent that (the caller may watch gamma_1 - gamma_0).
 *
 * Parameters are stored as float (for the optimiser and checkpoints); everything is computed in
 * double. Results do not depend on the thread count. */
#pragma once

#include "core/core.h"

/* VDM's hidden width. */
#define DM_GAMMA_NET_HIDDEN 1024

typedef struct {
    int64_t hidden;    /* H */
    size_t num_params; /* 3 + 3 H, layout below */
    float *params;     /* [gamma_0, gamma_1, w1, w2 (H), b2 (H), w3 (H)] */
    float *grads;      /* same layout; backward ADDS into it (zeroed at init) */
} dm_gamma_net;

/* Offsets into params / grads. */
#define DM_GAMMA_NET_G0 0
#define DM_GAMMA_NET_G1 1
#define DM_GAMMA_NET_W1 2
#define DM_GAMMA_NET_W2(H) 3
#define DM_GAMMA_NET_B2(H) (3 + (H))
#define DM_GAMMA_NET_W3(H) (3 + 2 * (H))

/* hidden in [1, 2^24], gamma_0 < gamma_1, both finite. Initialisation, chosen so that gamma
 * starts (close to) linear from gamma_0 to gamma_1 as in VDM: w1 = 1, and from (seed, stream 7)
 * in this order: w2_k ~ U(-1, 1), b2_k ~ U(-1, 1), w3_k ~ U(-0.01, 0.01). Then
 * |gamma(t) - (gamma_0 + (gamma_1 - gamma_0) t)| <= (gamma_1 - gamma_0) max|w2| max|w3|
 * <= 0.01 (gamma_1 - gamma_0) on [0, 1] (the hidden part's slope is at most max|w2| max|w3|
 * against the linear part's 1). */
dm_status dm_gamma_net_init(dm_gamma_net *g, int64_t hidden, double gamma_0, double gamma_1,
                            uint64_t seed, dm_error *err);
void dm_gamma_net_free(dm_gamma_net *g);

/* gamma(t_j) and gamma'(t_j) for j < n (either output may be NULL), computed in double. O(n H). */
void dm_gamma_net_eval(const dm_gamma_net *g, const double *t, double *gamma, double *dgamma,
                       int64_t n);

/* Adds to g->grads the gradient of sum_j [dl_dgamma[j] gamma(t_j) + dl_ddgamma[j] gamma'(t_j)]
 * (either array may be NULL = zeros). The endpoint parameters (gamma_0, gamma_1) get these
 * gradients as they are; the shape parameters get them multiplied per item by shape_scale[j]
 * (NULL = 1): the trainer uses shape_scale = 2 L_j to train the shape on the variance of the loss,
 * as VDM does, while the endpoints follow the bound itself. O(n H).
 * Sums over items run in a fixed order in double; for n > 1024 the shape gradients are added to
 * grads once per block of 1024 items (a fixed blocking, independent of the thread count). */
void dm_gamma_net_backward(dm_gamma_net *g, const double *t, const double *dl_dgamma,
                           const double *dl_ddgamma, const double *shape_scale, int64_t n);
