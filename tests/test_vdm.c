/* The continuous-time VDM objective's schedule gradients against finite differences, through a
 * real network: the endpoints (gamma_0, gamma_1) follow the loss itself (prior, reconstruction
 * and the diffusion term through z_t and gamma'), the shape parameters the variance objective
 * sum_b k L_b^2 / D (k = 1 / (B D)). Also: a fixed logsnr schedule's loss is the T -> infinity
 * limit of the discrete-time bound, whose terms are KLs of Gaussians computed from their means
 * and variances; the discrete VDM and bound weights (dm_loss_weights) equal those KLs, and the
 * decoder's term at t = 1. */
#include "diffusion/vdm.h"
#include "gaussian_oracle.h"
#include "models/model.h"
#include "test_util.h"

#include <omp.h>

enum { B = 8, D = 2 };

typedef struct {
    dm_vdm v;
    dm_model *m;
    float x0[B * D], eps[B * D], zt[B * D], tm[B], out[B * D], dout[B * D];
} setup;

/* Loss and variance objective at the schedule's current parameters, from the same t draw. */
static double run(setup *s, double *variance) {
    dm_rng r;
    dm_rng_init(&r, 5, 3);
    dm_error err = {0};
    dm_vdm_prepare(&s->v, &r, s->x0, s->eps, s->zt, s->tm, B, D);
    dm_model_forward(s->m, s->out, s->zt, s->tm, B, 1, &err);
    const double loss = dm_vdm_loss(&s->v, s->out, s->x0, s->eps, s->dout, B, D);
    if (variance) {
        *variance = 0;
        for (int b = 0; b < B; b++) *variance += s->v.diff[b] * s->v.diff[b] / ((double)B * D * D);
    }
    return loss;
}

static void test_schedule_gradients(void) {
    dm_train_config cfg;
    dm_train_config_default(&cfg);
    cfg.loss = DM_LOSS_VDM_CONTINUOUS;
    cfg.schedule.kind = DM_SCHEDULE_LEARNED;
    cfg.schedule.T = 100;
    cfg.batch = B;
    cfg.mlp.hidden = 16;
    cfg.mlp.temb_dim = 8;
    cfg.mlp.layers = 2;
    setup s;
    dm_error err = {0};
    CHECK(dm_vdm_init(&s.v, &cfg, D, &err) == DM_OK, "%s", err.msg);
    CHECK(dm_mlp_create(&s.m, &cfg.mlp, 1, &err) == DM_OK, "%s", err.msg);
    dm_rng r;
    dm_rng_init(&r, 2, 0);
    dm_rng_normal(&r, s.x0, B * D);
    dm_rng_normal(&r, s.eps, B * D);
    /* The variance objective (about 473 here) moves by 1e-5 or less for a step of one of W3's
     * initial weights (|w| <= 0.01, and a step must stay under |w|, where |w| has its kink):
     * near the float rounding of the network's outputs. The two checked are moved to where a
     * step of 0.1 is safe and stands well above that noise, and the checks of W2 and B2 are of
     * the hidden units these two weights carry to the output. */
    const int64_t H = s.v.net.hidden;
    s.v.net.params[DM_GAMMA_NET_W3(H) + 11] = 0.3f;
    s.v.net.params[DM_GAMMA_NET_W3(H) + 500] = -0.3f;
    run(&s, NULL);
    memset(s.v.gx, 0, sizeof(float) * B * D);
    memset(dm_model_grads(s.m), 0, dm_model_num_params(s.m) * sizeof(float));
    dm_model_backward_input(s.m, s.dout, s.v.gx, B);
    dm_vdm_schedule_grads(&s.v, s.x0, s.eps, B, D);
    float *p = s.v.net.params;
    const float *g = s.v.net.grads;
    const size_t checks[] = {DM_GAMMA_NET_G0, DM_GAMMA_NET_G1, DM_GAMMA_NET_W1,
                             DM_GAMMA_NET_W2(H) + 11, DM_GAMMA_NET_B2(H) + 500,
                             DM_GAMMA_NET_W3(H) + 11, DM_GAMMA_NET_W3(H) + 500};
    for (size_t c = 0; c < sizeof checks / sizeof checks[0]; c++) {
        const size_t j = checks[c];
        const bool endpoint = j <= DM_GAMMA_NET_G1;
        const float keep = p[j];
        /* slopes enter as |w|: keep the step from crossing 0 */
        const float h = endpoint ? 2e-2f * fmaxf(1.0f, fabsf(keep))
                                 : fminf(0.1f, 0.5f * fabsf(keep));
        double vp, vm;
        p[j] = keep + h;
        const double lp = run(&s, &vp);
        p[j] = keep - h;
        const double lm = run(&s, &vm);
        p[j] = keep;
        const double fd = endpoint ? (lp - lm) / (2 * h) : (vp - vm) / (2 * h);
        CHECK(fabs(g[j] - fd) <= 3e-2 * fabs(fd) + 1e-6,
              "parameter %zu (%s): gradient %.6g, finite difference %.6g", j,
              endpoint ? "endpoint, the loss" : "shape, the variance", g[j], fd);
    }
    /* a gradient missing the decoder term's share is caught. That share is computed here from
     * the decoder's density, not taken from vdm.c: per dimension the term is
     * E[-log N(x; z_0 / alpha_0, v)] = 0.5 log(2 pi v) + 0.5 with v = sigma_0^2 / alpha_0^2,
     * differentiated in gamma_0 by central differences */
    const float keep = p[DM_GAMMA_NET_G0];
    double dec = 0;
    for (int side = -1; side <= 1; side += 2) {
        const double g0 = keep + side * 1e-3, ab0 = 1 / (1 + exp(g0));
        dec += side * (0.5 * log(2 * M_PI * (1 - ab0) / ab0) + 0.5) / 2e-3;
    }
    p[DM_GAMMA_NET_G0] = keep + 0.02f;
    const double lp = run(&s, NULL);
    p[DM_GAMMA_NET_G0] = keep - 0.02f;
    const double lm = run(&s, NULL);
    p[DM_GAMMA_NET_G0] = keep;
    const double fd0 = (lp - lm) / 0.04;
    CHECK(fabs((g[DM_GAMMA_NET_G0] - dec) - fd0) > 3e-2 * fabs(fd0) + 1e-6,
          "the check misses a gradient without the decoder's %.4g: %.6g against %.6g", dec,
          g[DM_GAMMA_NET_G0] - dec, fd0);
    dm_model_free(s.m);
    dm_vdm_free(&s.v);
}

/* ---- the fixed schedule's loss as the limit of the discrete-time bound. For one x and one eps,
 * the T-step bound (Kingma et al. 2021, eq. 11) is
 *   L_T = KL(q(z_1 | x) || N(0, I)) + E[-log N(x; z_0 / alpha_0, sigma_0^2 / alpha_0^2)]
 *       + sum_{i=1..T} KL(q(z_s | z_t, x) || q(z_s | z_t, x_hat(z_t))),  s = (i-1)/T, t = i/T,
 * each KL computed here from the two Gaussians' means and variances (z_t = alpha_t x + sigma_t
 * eps with the same eps at every t, x_hat from the denoiser). As T grows the sum tends to the
 * continuous diffusion term with a gap that falls as 1/T, so 2 L_2T - L_T (Richardson) is the
 * continuous loss to O(1/T^2). The library's side is dm_vdm_loss on a batch of NB copies of
 * (x, eps): its t_b = (u + b/NB) mod 1 are a shifted uniform grid, so the batch mean is the
 * t-integral to O(1/NB). The denoiser is the exact one for Gaussian data (gaussian_oracle.h),
 * smooth in t. */

enum { NB = 1 << 16 };

static double sigmoid_(double x) { return 1 / (1 + exp(-x)); }

/* the optimal eps_hat for the oracle's data at alpha_bar ab */
static void oracle_eps(const gauss_oracle *g, double ab, const double z[D], double e[D]) {
    double P[2][2];
    gauss_oracle_prec(g, ab, P);
    const double r0 = z[0] - sqrt(ab) * g->mu[0], r1 = z[1] - sqrt(ab) * g->mu[1];
    e[0] = sqrt(1 - ab) * (P[0][0] * r0 + P[0][1] * r1);
    e[1] = sqrt(1 - ab) * (P[1][0] * r0 + P[1][1] * r1);
}

/* KL(N(m1, v1 I) || N(m2, v2 I)) in D dimensions */
static double kl_gauss(const double *m1, double v1, const double *m2, double v2) {
    double k = 0;
    for (int d = 0; d < D; d++)
        k += 0.5 * (log(v2 / v1) + (v1 + (m1[d] - m2[d]) * (m1[d] - m2[d])) / v2 - 1);
    return k;
}

/* L_T of one (x, eps) on the linear log-SNR schedule, per dimension */
static double discrete_bound(const gauss_oracle *g, double gmin, double gmax, const double x[D],
                             const double eps[D], int64_t T) {
#define AB(t) sigmoid_(-(gmin + (gmax - gmin) * (t)))
    const double ab1 = AB(1.0), ab0 = AB(0.0), zero[D] = {0, 0};
    double m1[D];
    for (int d = 0; d < D; d++) m1[d] = sqrt(ab1) * x[d];
    const double prior = kl_gauss(m1, 1 - ab1, zero, 1);
    /* -log N(x; z_0 / alpha_0, v) with z_0 / alpha_0 - x = sqrt(v) eps, averaged over eps */
    const double v0 = (1 - ab0) / ab0;
    const double recon = D * (0.5 * log(2 * M_PI * v0) + 0.5);
    double diff = 0;
    for (int64_t i = 1; i <= T; i++) {
        const double abt = AB((double)i / T), abs_ = AB((double)(i - 1) / T);
        const double at = sqrt(abt), st2 = 1 - abt, as = sqrt(abs_), ss2 = 1 - abs_;
        const double ats = at / as, sts2 = st2 - ats * ats * ss2; /* alpha_t|s, sigma_t|s^2 */
        const double var = sts2 * ss2 / st2;
        double z[D], e[D], mq[D], mp[D];
        for (int d = 0; d < D; d++) z[d] = at * x[d] + sqrt(st2) * eps[d];
        oracle_eps(g, abt, z, e);
        for (int d = 0; d < D; d++) {
            const double xh = (z[d] - sqrt(st2) * e[d]) / at;
            mq[d] = ats * ss2 / st2 * z[d] + as * sts2 / st2 * x[d];
            mp[d] = ats * ss2 / st2 * z[d] + as * sts2 / st2 * xh;
        }
        diff += kl_gauss(mq, var, mp, var);
    }
#undef AB
    return (prior + recon + diff) / D;
}

/* dm_vdm_loss on NB copies of (x, eps) with the oracle's eps_hat plus `shift` */
static double library_loss(dm_vdm *v, const gauss_oracle *g, const float x[D],
                           const float eps[D], double shift) {
    float *x0 = malloc(NB * D * sizeof *x0), *ep = malloc(NB * D * sizeof *ep);
    float *zt = malloc(NB * D * sizeof *zt), *eh = malloc(NB * D * sizeof *eh);
    float *tm = malloc(NB * sizeof *tm), *gr = malloc(NB * D * sizeof *gr);
    for (int b = 0; b < NB; b++)
        for (int d = 0; d < D; d++) x0[b * D + d] = x[d], ep[b * D + d] = eps[d];
    dm_rng r;
    dm_rng_init(&r, 4, 0);
    dm_vdm_prepare(v, &r, x0, ep, zt, tm, NB, D);
    for (int b = 0; b < NB; b++) {
        const double ab = sigmoid_(-(v->gamma_min + (v->gamma_max - v->gamma_min) * v->t[b]));
        const double z[D] = {zt[b * D], zt[b * D + 1]};
        double e[D];
        oracle_eps(g, ab, z, e);
        for (int d = 0; d < D; d++) eh[b * D + d] = (float)(e[d] + shift);
    }
    const double loss = dm_vdm_loss(v, eh, x0, ep, gr, NB, D);
    free(x0), free(ep), free(zt), free(eh), free(tm), free(gr);
    return loss;
}

static void test_continuous_limit(void) {
    /* the default endpoints, where the prior is ~1e-5 nats, and narrower ones, where it is not */
    const double ends[2][2] = {{-10, 10}, {-6, 1}};
    for (int sc = 0; sc < 2; sc++) {
        dm_train_config cfg;
        dm_train_config_default(&cfg);
        cfg.loss = DM_LOSS_VDM_CONTINUOUS;
        cfg.schedule.kind = DM_SCHEDULE_LOGSNR;
        cfg.schedule.gamma_min = ends[sc][0];
        cfg.schedule.gamma_max = ends[sc][1];
        cfg.batch = NB;
        dm_vdm v;
        dm_error err = {0};
        CHECK(dm_vdm_init(&v, &cfg, D, &err) == DM_OK, "%s", err.msg);
        const gauss_oracle g = gauss_oracle_make(NULL);
        const double gmin = cfg.schedule.gamma_min, gmax = cfg.schedule.gamma_max;
        const float xs[2][D] = {{0.5f, -1.0f}, {1.6f, 0.3f}};
        const float es[2][D] = {{0.3f, 0.2f}, {-1.2f, 0.7f}};
        for (int c = 0; c < 2; c++) {
            const double x[D] = {xs[c][0], xs[c][1]}, eps[D] = {es[c][0], es[c][1]};
            const double lib = library_loss(&v, &g, xs[c], es[c], 0);
            const int64_t Ts[3] = {1000, 2000, 4000};
            double L[3];
            for (int j = 0; j < 3; j++) L[j] = discrete_bound(&g, gmin, gmax, x, eps, Ts[j]);
            const double rich = 2 * L[2] - L[1];
            printf("  gamma %g..%g, x (%g, %g): L_1000 %.6f, L_2000 %.6f, L_4000 %.6f, "
                   "extrapolated %.6f, dm_vdm_loss %.6f\n", gmin, gmax, x[0], x[1], L[0], L[1],
                   L[2], rich, lib);
            /* the gap to the continuous loss halves as T doubles */
            const double r1 = (L[0] - lib) / (L[1] - lib), r2 = (L[1] - lib) / (L[2] - lib);
            CHECK(fabs(r1 - 2) < 0.1 && fabs(r2 - 2) < 0.1,
                  "gamma %g..%g, x %d: the gap L_T - dm_vdm_loss shrinks by %.3f and %.3f per "
                  "doubling of T, not as 1/T (2)", gmin, gmax, c, r1, r2);
            /* Tolerance: the batch's t grid integrates to about (f(1) - f(0)) / (2 NB) (f the
             * diffusion integrand, up to ~20 here: 1.5e-4) and the extrapolation leaves
             * O(1/T^2) (|2 L_2000 - L_1000 - (2 L_4000 - L_2000)| is below 1e-5); float z_t
             * and eps_hat add ~1e-7 relative (measured: 1e-6 to 3.5e-5 from the limit).
             * 3e-4 nats per dimension is 5% or less of the gaps at T = 1000, and under 1% of
             * the 0.04-0.05 that eps_hat + 0.01 moves the loss (below). */
            CHECK_CLOSE(lib, rich, 3e-4, 0, "dm_vdm_loss against the discrete bound's limit");
            /* a denoiser off by 0.01 in every output, fed to dm_vdm_loss alone, misses it */
            const double off = library_loss(&v, &g, xs[c], es[c], 0.01);
            printf("  eps_hat + 0.01: dm_vdm_loss moves by %.2e\n", off - lib);
            CHECK(fabs(off - rich) > 3 * 3e-4, "x %d: eps_hat + 0.01 gives %.6f, within the "
                  "tolerance of the limit %.6f", c, off, rich);
        }
        dm_vdm_free(&v);
    }
}

/* ---- the discrete VDM and bound weights against KLs of Gaussians evaluated directly: for
 * t >= 2 KL(q(x_{t-1} | x_t, x_0) || N(mu_theta(x_t), beta_tilde_t)) from the two means and
 * variances; at t = 1 (i = 0) the decoder's -log N(x_0; mu_theta(x_1), beta_tilde_2) less its
 * value at mu_theta = x_0, from the Gaussian density. The objective's mean term is w[i] times
 * the mean over dimensions of (eps_hat - eps)^2, which is T L_{t-1} / D. */
static void test_discrete_weights(void) {
    dm_schedule s = gauss_oracle_schedule(DM_SCHEDULE_LINEAR, 1000);
    const int T = s.T;
    double *wv = malloc(2 * T * sizeof *wv), *wb = wv + T;
    dm_error err = {0};
    CHECK(dm_loss_weights(&s, DM_PRED_EPS, DM_LOSS_VDM, DM_VAR_BETA, wv, &err) == DM_OK, "%s",
          err.msg);
    CHECK(dm_loss_weights(&s, DM_PRED_EPS, DM_LOSS_VLB, DM_VAR_BETA_TILDE, wb, &err) == DM_OK,
          "%s", err.msg);
    const double x0[D] = {0.4, -1.1}, eps[D] = {0.9, 0.25}, eh[D] = {0.7, 0.45};
    const int is[] = {0, 1, 2, 10, 500, 998, 999};
    double worst = 0, worst_b = 0;
    for (size_t k = 0; k < sizeof is / sizeof is[0]; k++) {
        const int i = is[k];
        const double beta = s.beta[i], alpha = 1 - beta, ab = s.alpha_bar[i];
        const double abp = i ? s.alpha_bar[i - 1] : 1.0;
        double xt[D], mq[D], mp[D], e2 = 0;
        for (int d = 0; d < D; d++) {
            xt[d] = sqrt(ab) * x0[d] + sqrt(1 - ab) * eps[d];
            mq[d] = sqrt(abp) * beta / (1 - ab) * x0[d] +
                    sqrt(alpha) * (1 - abp) / (1 - ab) * xt[d];
            mp[d] = (xt[d] - beta / sqrt(1 - ab) * eh[d]) / sqrt(alpha);
            e2 += (eh[d] - eps[d]) * (eh[d] - eps[d]);
        }
        double L;
        if (i == 0) {
            /* beta_tilde of t = 2, from its definition */
            const double var = (1 - s.alpha_bar[0]) / (1 - s.alpha_bar[1]) * s.beta[1];
            L = 0;
            for (int d = 0; d < D; d++) {
                const double nll = 0.5 * log(2 * M_PI * var) +
                                   (x0[d] - mp[d]) * (x0[d] - mp[d]) / (2 * var);
                L += nll - 0.5 * log(2 * M_PI * var);
            }
            CHECK_CLOSE(mq[0], x0[0], 1e-12, 0, "the posterior mean at t = 1 is x_0");
        } else {
            const double var = (1 - abp) / (1 - ab) * beta;
            L = kl_gauss(mq, var, mp, var);
        }
        const double got_v = wv[i] * e2 / T, got_b = wb[i] * e2 / T;
        worst = fmax(worst, fabs(got_v / L - 1));
        worst_b = fmax(worst_b, fabs(got_b / L - 1));
        /* double throughout: x_t's mean gap cancels to ~1e-16 / beta_t relative (1e-12 at
         * t = 1, where beta = 1e-4); 1e-8 relative */
        CHECK_CLOSE(got_v, L, 0, 1e-8, i == 0 ? "vdm weight at t = 1: the decoder's term"
                                               : "vdm weight: the KL of the two Gaussians");
        CHECK_CLOSE(got_b, L, 0, 1e-8, "vlb (beta_tilde) weight: the same KL");
        /* a wrong variance (beta instead of beta_tilde) is 1e-8 away only where they agree */
        if (i == 1 || i == 10) {
            const double bad = kl_gauss(mq, (1 - abp) / (1 - ab) * beta, mp, beta);
            CHECK(fabs(got_v / bad - 1) > 1e-3, "i %d: the KL with sigma^2 = beta matches too "
                  "(%.9g against %.9g)", i, bad, got_v);
        }
    }
    printf("  discrete weights against Gaussian KLs: vdm %.2e, vlb %.2e relative\n", worst,
           worst_b);
    free(wv);
    dm_schedule_free(&s);
}

static void test_refused(void) {
    dm_train_config cfg;
    dm_train_config_default(&cfg);
    cfg.loss = DM_LOSS_VDM_CONTINUOUS;
    cfg.schedule.kind = DM_SCHEDULE_LOGSNR;
    cfg.batch = 1;
    dm_vdm v;
    dm_error err = {0};
    CHECK(dm_vdm_init(&v, &cfg, D, &err) == DM_OK, "%s", err.msg);
    float x0[D] = {0.5f, -1.0f}, eps[D] = {0.3f, 0.2f}, zt[D], tm[1];
    dm_rng r;
    dm_rng_init(&r, 1, 1);
    dm_vdm_prepare(&v, &r, x0, eps, zt, tm, 1, D);
    /* the definitions: z_t = sqrt(ab) x + sqrt(1 - ab) eps with ab = sigmoid(-gamma(t)), and
     * the network's time T t - 1 */
    const double t = v.t[0], gmin = cfg.schedule.gamma_min, gmax = cfg.schedule.gamma_max;
    const double gam = gmin + (gmax - gmin) * t, ab = 1 / (1 + exp(gam));
    CHECK_CLOSE(zt[0], sqrt(ab) * x0[0] + sqrt(1 - ab) * eps[0], 1e-6, 1e-5, "z_t");
    CHECK_CLOSE(tm[0], cfg.schedule.T * t - 1, 1e-3, 1e-6, "model time");
    /* refused combinations */
    dm_vdm w;
    cfg.schedule.kind = DM_SCHEDULE_COSINE;
    CHECK(dm_vdm_init(&w, &cfg, D, &err) == DM_ERR_ARG && strstr(err.msg, "logsnr"),
          "cosine refused: %s", err.msg);
    cfg.schedule.kind = DM_SCHEDULE_LOGSNR;
    cfg.prediction = DM_PRED_V;
    CHECK(dm_vdm_init(&w, &cfg, D, &err) == DM_ERR_ARG && strstr(err.msg, "epsilon"),
          "v refused: %s", err.msg);
    dm_vdm_free(&v);
}

/* ---- images: the discretised reconstruction term (VDM's EncDec.logprob) against a direct loop
 * over all 256 levels with a log-sum-exp, its gamma_0 derivative against finite differences,
 * and its limits: a broad decoder (sigma far above the data's range) is uniform over the
 * levels, log 256 per pixel; a sharp one puts nearly all mass on the pixel's own level. */

static double slow_recon(const float *x, const float *e0, int64_t n, double g0) {
    double total = 0;
    for (int64_t i = 0; i < n; i++) {
        const int k = (int)lround((x[i] + 1.0) * 127.5);
        const double z = x[i] + exp(0.5 * g0) * e0[i];
        double logit[256], mx = -INFINITY;
        for (int j = 0; j < 256; j++) {
            const double d = z - (2.0 * j / 255.0 - 1.0);
            logit[j] = -0.5 * d * d * exp(-g0);
            if (logit[j] > mx) mx = logit[j];
        }
        double sum = 0;
        for (int j = 0; j < 256; j++) sum += exp(logit[j] - mx);
        total += -(logit[k] - (mx + log(sum)));
    }
    return total;
}

static void test_recon_discrete(void) {
    enum { N = 4096 };
    static float x[N], e0[N];
    dm_rng r;
    dm_rng_init(&r, 11, 0);
    int32_t lv[N];
    dm_rng_int(&r, lv, N, 0, 256);
    dm_rng_normal(&r, e0, N);
    for (int i = 0; i < N; i++) x[i] = (float)(2.0 * lv[i] / 255.0 - 1.0);
    x[0] = -1.0f, x[1] = 1.0f, e0[0] = -4.0f, e0[1] = 4.0f; /* z beyond the levels */
    const double g0s[] = {-13.3, -9.0, -7.0, -5.0, -2.0, 1.0, 10.0};
    for (size_t q = 0; q < sizeof g0s / sizeof g0s[0]; q++) {
        const double g0 = g0s[q];
        double dg0;
        const double got = dm_vdm_recon_discrete(x, e0, N, g0, &dg0);
        const double want = slow_recon(x, e0, N, g0);
        CHECK(fabs(got - want) <= 1e-9 * fabs(want) + 1e-9, "gamma_0 %g: %.12g, direct %.12g",
              g0, got, want);
        const double h = 1e-4;
        const double fd = (dm_vdm_recon_discrete(x, e0, N, g0 + h, NULL) -
                           dm_vdm_recon_discrete(x, e0, N, g0 - h, NULL)) / (2 * h);
        CHECK(fabs(dg0 - fd) <= 1e-5 * fabs(fd) + 1e-6, "gamma_0 %g: d/d gamma_0 %.10g, finite "
              "difference %.10g", g0, dg0, fd);
    }
    const double broad = dm_vdm_recon_discrete(x, e0, N, 10.0, NULL) / N;
    CHECK(fabs(broad - log(256.0)) < 1e-3, "broad decoder: %.6f nats per pixel, log 256 = %.6f",
          broad, log(256.0));
    /* sigma 0.0013 against a spacing of 0.0078 (3 sigma to the midpoint): p(own level) is
     * about Phi(3) - Phi(-3), so well under 0.01 nats per pixel but above 0 */
    const double sharp = dm_vdm_recon_discrete(x, e0, N, -13.3, NULL) / N;
    CHECK(sharp > 0 && sharp < 0.01, "sharp decoder: %.6g nats per pixel", sharp);
}

/* The schedule's gamma_0 gradient through a tiny UNet on 8x8 images, where it is the
 * discretised reconstruction's (with the diffusion term's share through gamma(t)); a gradient
 * missing the reconstruction's share is caught. */
static void test_image_gamma0_gradient(void) {
    enum { IB = 4 };
    dm_train_config cfg;
    dm_train_config_default(&cfg);
    cfg.loss = DM_LOSS_VDM_CONTINUOUS;
    cfg.schedule.kind = DM_SCHEDULE_LEARNED;
    cfg.schedule.T = 100;
    cfg.batch = IB;
    cfg.arch = DM_ARCH_UNET;
    dm_error err = {0};
    CHECK(dm_unet_preset(&cfg.unet, "tiny", &err) == DM_OK, "%s", err.msg);
    const int64_t ID = 64;
    dm_vdm v;
    dm_model *m;
    CHECK(dm_vdm_init(&v, &cfg, ID, &err) == DM_OK, "%s", err.msg);
    CHECK(v.discrete == 1, "a UNet selects the discretised reconstruction");
    CHECK(dm_unet_create(&m, &cfg.unet, 1, &err) == DM_OK, "%s", err.msg);
    static float x0[IB * 64], eps[IB * 64], zt[IB * 64], tm[IB], out[IB * 64], dout[IB * 64];
    dm_rng r;
    dm_rng_init(&r, 3, 0);
    int32_t lv[IB * 64];
    dm_rng_int(&r, lv, IB * ID, 0, 256);
    for (int i = 0; i < IB * ID; i++) x0[i] = (float)(2.0 * lv[i] / 255.0 - 1.0);
    dm_rng_normal(&r, eps, IB * ID);
    /* gamma_0 where the reconstruction term has a slope of its own */
    v.net.params[DM_GAMMA_NET_G0] = -6.0f;
    double loss[3];
    const float keep = v.net.params[DM_GAMMA_NET_G0], h = 0.01f;
    for (int side = 0; side < 3; side++) {
        v.net.params[DM_GAMMA_NET_G0] = keep + (float)(side - 1) * h;
        dm_rng tr;
        dm_rng_init(&tr, 5, 3);
        dm_vdm_prepare(&v, &tr, x0, eps, zt, tm, IB, ID);
        CHECK(dm_model_forward(m, out, zt, tm, IB, 1, &err) == DM_OK, "%s", err.msg);
        loss[side] = dm_vdm_loss(&v, out, x0, eps, dout, IB, ID);
    }
    v.net.params[DM_GAMMA_NET_G0] = keep; /* the last forward was at keep + h: redo at keep */
    dm_rng tr;
    dm_rng_init(&tr, 5, 3);
    dm_vdm_prepare(&v, &tr, x0, eps, zt, tm, IB, ID);
    CHECK(dm_model_forward(m, out, zt, tm, IB, 1, &err) == DM_OK, "%s", err.msg);
    dm_vdm_loss(&v, out, x0, eps, dout, IB, ID);
    memset(v.gx, 0, sizeof(float) * IB * ID);
    dm_model_backward_input(m, dout, v.gx, IB);
    dm_vdm_schedule_grads(&v, x0, eps, IB, ID);
    const double g = v.net.grads[DM_GAMMA_NET_G0];
    const double fd = (loss[2] - loss[0]) / (2.0 * (double)h);
    CHECK(fabs(g - fd) <= 2e-2 * fabs(fd) + 1e-6, "gamma_0: gradient %.6g, finite difference "
          "%.6g", g, fd);
    /* the reconstruction's share, from the slow reference by central differences */
    double share = 0;
    for (int side = -1; side <= 1; side += 2)
        share += side * slow_recon(x0, v.eps0, IB * ID, keep + side * 1e-4) / 2e-4;
    share /= (double)(IB * ID);
    CHECK(fabs(share) > 0.05 && fabs((g - share) - fd) > 2e-2 * fabs(fd) + 1e-6,
          "the check misses a gradient without the reconstruction's %.4g: %.6g against %.6g",
          share, g - share, fd);
    dm_model_free(m);
    dm_vdm_free(&v);
}

int main(void) {
    omp_set_num_threads(2);
    test_schedule_gradients();
    test_continuous_limit();
    test_discrete_weights();
    test_refused();
    test_recon_discrete();
    test_image_gamma0_gradient();
    return tu_finish("test_vdm");
}
