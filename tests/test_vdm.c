/* The continuous-time VDM objective's schedule gradients against finite differences, through a
 * real network: the endpoints (gamma_0, gamma_1) follow the loss itself (prior, reconstruction
 * and the diffusion term through z_t and gamma'), the shape parameters the variance objective
 * sum_b k L_b^2 / D (k = 1 / (B D)). Also: a fixed logsnr schedule's loss equals the formula
 * computed by hand for one example. */
#include "diffusion/vdm.h"
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
    /* a wrong endpoint gradient is caught: drop the reconstruction term's 1/2 */
    const float keep = p[DM_GAMMA_NET_G0];
    p[DM_GAMMA_NET_G0] = keep + 0.02f;
    const double lp = run(&s, NULL);
    p[DM_GAMMA_NET_G0] = keep - 0.02f;
    const double lm = run(&s, NULL);
    p[DM_GAMMA_NET_G0] = keep;
    CHECK(fabs((g[DM_GAMMA_NET_G0] - 0.5) - (lp - lm) / 0.04) > 0.1,
          "the check distinguishes a missing term");
    dm_model_free(s.m);
    dm_vdm_free(&s.v);
}

static void test_fixed_loss_formula(void) {
    dm_train_config cfg;
    dm_train_config_default(&cfg);
    cfg.loss = DM_LOSS_VDM_CONTINUOUS;
    cfg.schedule.kind = DM_SCHEDULE_LOGSNR;
    cfg.batch = 1;
    dm_vdm v;
    dm_error err = {0};
    CHECK(dm_vdm_init(&v, &cfg, D, &err) == DM_OK, "%s", err.msg);
    float x0[D] = {0.5f, -1.0f}, eps[D] = {0.3f, 0.2f}, zt[D], tm[1], eh[D] = {0.1f, 0.4f}, g[D];
    dm_rng r;
    dm_rng_init(&r, 1, 1);
    dm_vdm_prepare(&v, &r, x0, eps, zt, tm, 1, D);
    const double t = v.t[0], gmin = cfg.schedule.gamma_min, gmax = cfg.schedule.gamma_max;
    const double gam = gmin + (gmax - gmin) * t, ab = 1 / (1 + exp(gam));
    CHECK_CLOSE(zt[0], sqrt(ab) * x0[0] + sqrt(1 - ab) * eps[0], 1e-6, 1e-5, "z_t");
    CHECK_CLOSE(tm[0], cfg.schedule.T * t - 1, 1e-3, 1e-6, "model time");
    const double loss = dm_vdm_loss(&v, eh, x0, eps, g, 1, D);
    const double ab1 = 1 / (1 + exp(gmax)), s1 = 1 - ab1;
    double prior = 0;
    for (int d = 0; d < D; d++) prior += 0.5 * (ab1 * x0[d] * x0[d] + s1 - 1 - log(s1));
    const double recon = 0.5 * D * (log(2 * M_PI) + 1 + gmin);
    const double diff = 0.5 * (gmax - gmin) * (0.2 * 0.2 + 0.2 * 0.2);
    CHECK_CLOSE(loss, (prior + recon + diff) / D, 1e-6, 1e-6, "loss per dimension");
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

int main(void) {
    omp_set_num_threads(2);
    test_schedule_gradients();
    test_fixed_loss_formula();
    return tu_finish("test_vdm");
}
