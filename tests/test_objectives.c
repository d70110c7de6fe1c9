/* Predictions, loss weights, the batch objective and importance sampling of t:
 *  - every conversion between eps, x0, v and score agrees with the exact targets;
 *  - the weights of each loss equal their formulas (VDM's SNR form = the bound with beta_tilde);
 *  - with the optimal Gaussian denoiser, each loss's mean equals its closed-form expectation
 *    (and a slightly wrong denoiser fails the same check);
 *  - every gradient of the objective, learned variance included, matches finite differences;
 *  - importance sampling draws t with the stated probabilities and stays unbiased. */
#include "gaussian_oracle.h"
#include "test_util.h"

#include <float.h>
#include <omp.h>

static double max_abs(const float *x, int64_t n) {
    double m = 0;
    for (int64_t j = 0; j < n; j++) m = fmax(m, fabs(x[j]));
    return m;
}

/* ---- conversions ------------------------------------------------------------------------- */

/* pred = k0 x0 + ke eps for each prediction, from MATH.md (independent of prediction.c) */
static void target_coeffs(dm_prediction p, double ab, double *k0, double *ke) {
    switch (p) {
    case DM_PRED_X0: *k0 = 1, *ke = 0; return;
    case DM_PRED_V: *k0 = -sqrt(1 - ab), *ke = sqrt(ab); return;
    case DM_PRED_SCORE: *k0 = 0, *ke = -1 / sqrt(1 - ab); return;
    default: *k0 = 0, *ke = 1; return;
    }
}

/* Float error of the conversions. x_t, each target and each converted value are float results
 * of a few float roundings (relative 2^-24 each) of terms whose magnitudes we know: x_t of
 * sqrt(ab)|x0| + sqrt(1-ab)|eps|, a target of |k0 x0| + |ke eps|, and the conversion
 * out = kx x_t + kin in of |kx| (terms of x_t) + |kin| (terms of in) + (terms of the target it is
 * compared with). With at most ~3 roundings on each term (coefficient, product, sum) the error is
 * below 2 FLT_EPSILON (= 4 roundings of 2^-24) times that sum of terms; 4 FLT_EPSILON leaves a
 * factor 2. A wrong coefficient (a sign, a sqrt(ab) for sqrt(1 - ab)) is off by O(1) relative
 * and fails by orders of magnitude; the former tolerance, 1e-3 of the target's size, let a
 * relative coefficient error of 1e-3 pass. */
#define CONV_TOL (4 * FLT_EPSILON)

static void test_conversions(void) {
    enum { N = 64 };
    float x0[N], eps[N], xt[N], tgt[4][N], conv[N];
    dm_rng r;
    dm_rng_init(&r, 1, 0);
    dm_rng_normal(&r, x0, N);
    dm_rng_normal(&r, eps, N);
    const double abs_[] = {1e-4, 0.02, 0.5, 0.97, 0.9999};
    double worst_ratio = 0; /* max error / (FLT_EPSILON x terms) over every check */
    for (int k = 0; k < 5; k++) {
        const double ab = abs_[k], sab = sqrt(ab), s1 = sqrt(1 - ab);
        for (int j = 0; j < N; j++) xt[j] = (float)(sab * x0[j] + s1 * eps[j]);
        for (int p = 0; p < 4; p++) dm_prediction_target((dm_prediction)p, ab, x0, eps, tgt[p], N);
        for (int from = 0; from < 4; from++) {
            double k0f, kef;
            target_coeffs((dm_prediction)from, ab, &k0f, &kef);
            /* the targets themselves against their definitions */
            double worst_t = 0;
            for (int j = 0; j < N; j++) {
                const double terms = fabs(k0f * x0[j]) + fabs(kef * eps[j]);
                const double e = fabs(tgt[from][j] - (k0f * x0[j] + kef * eps[j]));
                worst_t = fmax(worst_t, e / (FLT_EPSILON * terms));
            }
            CHECK(worst_t <= CONV_TOL / FLT_EPSILON, "ab %g: %s target off by %.3g FLT_EPSILON",
                  ab, dm_prediction_name((dm_prediction)from), worst_t);
            worst_ratio = fmax(worst_ratio, worst_t);
            /* a x_t + b target = eps (in double: only x_t's and the target's rounding) */
            double a, b, worst = 0;
            dm_prediction_to_eps_coeffs((dm_prediction)from, ab, &a, &b);
            for (int j = 0; j < N; j++) {
                const double terms = fabs(a) * (sab * fabs(x0[j]) + s1 * fabs(eps[j])) +
                                     fabs(b) * (fabs(k0f * x0[j]) + fabs(kef * eps[j]));
                const double e = fabs(a * xt[j] + b * tgt[from][j] - eps[j]);
                worst = fmax(worst, e / (FLT_EPSILON * terms));
            }
            CHECK(worst <= CONV_TOL / FLT_EPSILON, "ab %g: %s -> eps off by %.3g FLT_EPSILON", ab,
                  dm_prediction_name((dm_prediction)from), worst);
            worst_ratio = fmax(worst_ratio, worst);
            for (int to = 0; to < 4; to++) {
                double at, bt, k0t, ket;
                dm_prediction_to_eps_coeffs((dm_prediction)to, ab, &at, &bt);
                target_coeffs((dm_prediction)to, ab, &k0t, &ket);
                const double kx = (a - at) / bt, kin = b / bt;
                dm_prediction_convert((dm_prediction)from, (dm_prediction)to, ab, xt, tgt[from],
                                      conv, N);
                double d = 0;
                int jw = 0;
                for (int j = 0; j < N; j++) {
                    const double terms =
                        fabs(kx) * (sab * fabs(x0[j]) + s1 * fabs(eps[j])) +
                        fabs(kin) * (fabs(k0f * x0[j]) + fabs(kef * eps[j])) +
                        fabs(k0t * x0[j]) + fabs(ket * eps[j]);
                    const double e = fabs(conv[j] - tgt[to][j]) / (FLT_EPSILON * terms);
                    if (e > d) d = e, jw = j;
                }
                CHECK(d <= CONV_TOL / FLT_EPSILON,
                      "ab %g: %s -> %s off by %.3g FLT_EPSILON x terms (element %d: %.9g vs "
                      "%.9g)",
                      ab, dm_prediction_name((dm_prediction)from),
                      dm_prediction_name((dm_prediction)to), d, jw, conv[jw], tgt[to][jw]);
                worst_ratio = fmax(worst_ratio, d);
            }
        }
    }
    printf("conversions: worst error %.3g FLT_EPSILON x the terms' magnitude (allowed %g)\n",
           worst_ratio, CONV_TOL / FLT_EPSILON);
    /* the definitions themselves, from MATH.md */
    const double ab = 0.3;
    dm_prediction_target(DM_PRED_V, ab, x0, eps, conv, N);
    CHECK_CLOSE(conv[5], sqrt(ab) * eps[5] - sqrt(1 - ab) * x0[5], 1e-6, 1e-6, "v definition");
    dm_prediction_target(DM_PRED_SCORE, ab, x0, eps, conv, N);
    CHECK_CLOSE(conv[7], -eps[7] / sqrt(1 - ab), 1e-6, 1e-6, "score definition");
    dm_prediction p;
    dm_error err = {0};
    CHECK(dm_prediction_parse("v", &p, &err) == DM_OK && p == DM_PRED_V, "parse v");
    CHECK(dm_prediction_parse("noise", &p, &err) == DM_ERR_ARG &&
              strstr(err.msg, "epsilon, x0, v, score"),
          "a bad name lists the allowed ones: %s", err.msg);
}

/* ---- weights ------------------------------------------------------------------------------ */

static void test_weights(void) {
    dm_schedule s = gauss_oracle_schedule(DM_SCHEDULE_LINEAR, 1000);
    const int T = s.T;
    double *w = malloc(4 * T * sizeof *w), *w_vdm = w + T, *w_vlb = w + 2 * T, *w_b = w + 3 * T;
    dm_error err = {0};
    for (int p = 0; p < 4; p++) {
        CHECK(dm_loss_weights(&s, (dm_prediction)p, DM_LOSS_SIMPLE, DM_VAR_BETA, w, &err) == 0,
              "%s", err.msg);
        for (int i = 0; i < T; i += 37) {
            double a, b;
            dm_prediction_to_eps_coeffs((dm_prediction)p, s.alpha_bar[i], &a, &b);
            CHECK_CLOSE(w[i] * b * b, 1.0, 0, 1e-12, "simple: unit weight in the target's units");
        }
    }
    /* x0's simple weight is 1 / SNR(t) */
    dm_loss_weights(&s, DM_PRED_X0, DM_LOSS_SIMPLE, DM_VAR_BETA, w, &err);
    CHECK_CLOSE(w[400], (1 - s.alpha_bar[400]) / s.alpha_bar[400], 0, 1e-12, "x0 weight 1/SNR");
    /* seed 004 eq. 3 is the bound with sigma^2 = beta_tilde: two formulas, one value. From
     * t = 2: at t = 1 both use the bound's formula; test_vdm checks every weight, t = 1's
     * included, against the Gaussians' KL and the decoder's term evaluated directly */
    dm_loss_weights(&s, DM_PRED_EPS, DM_LOSS_VDM, DM_VAR_BETA, w_vdm, &err);
    dm_loss_weights(&s, DM_PRED_EPS, DM_LOSS_VLB, DM_VAR_BETA_TILDE, w_vlb, &err);
    double worst = 0;
    for (int i = 1; i < T; i++) worst = fmax(worst, fabs(w_vdm[i] / w_vlb[i] - 1));
    CHECK(worst < 1e-9, "vdm vs vlb(beta_tilde) weights differ by %g relative", worst);
    /* the bound with sigma^2 = beta: T beta / (2 alpha (1 - ab)) */
    dm_loss_weights(&s, DM_PRED_EPS, DM_LOSS_VLB, DM_VAR_BETA, w_b, &err);
    CHECK_CLOSE(w_b[700], T * s.beta[700] / (2 * s.alpha[700] * (1 - s.alpha_bar[700])), 0, 1e-12,
                "vlb weight with beta");
    CHECK(dm_loss_weights(&s, DM_PRED_EPS, DM_LOSS_VLB, DM_VAR_LEARNED, w, &err) == DM_ERR_ARG,
          "vlb with a learned variance has no fixed weight");
    free(w);
    dm_schedule_free(&s);
}

/* ---- closed-form expectations ------------------------------------------------------------- */

typedef struct {
    double mean, se;
} estimate;

/* Mean per-example objective at index i for prediction p and loss, with the oracle's eps_hat
 * (plus `shift`), over n draws. */
static estimate objective_at(const dm_schedule *s, gauss_oracle *g, int32_t i, dm_prediction p,
                             dm_loss_kind loss, dm_reverse_var var, double shift, int64_t n) {
    const int64_t D = 2;
    float *x0 = malloc(n * D * sizeof *x0), *eps = malloc(n * D * sizeof *eps);
    float *xt = malloc(n * D * sizeof *xt), *out = malloc(n * D * sizeof *out);
    float *grad = malloc(n * D * sizeof *grad), *t = malloc(n * sizeof *t);
    int32_t *idx = malloc(n * sizeof *idx);
    double *ex = malloc(n * sizeof *ex), *w = malloc(s->T * sizeof *w);
    gauss_oracle_data(g, x0, n, 7 + i);
    dm_rng r;
    dm_rng_init(&r, 11, (uint64_t)i);
    dm_rng_normal(&r, eps, (size_t)(n * D));
    for (int64_t b = 0; b < n; b++) idx[b] = i, t[b] = (float)i;
    dm_q_sample(s, xt, x0, eps, idx, n, D);
    dm_error err = {0};
    gauss_oracle_denoise(g, out, NULL, xt, t, n, &err);
    for (int64_t j = 0; j < n * D; j++) out[j] += (float)shift;
    dm_prediction_convert(DM_PRED_EPS, p, s->alpha_bar[i], xt, out, out, n * D);
    dm_loss_weights(s, p, loss, var, w, &err);
    dm_objective o = {.s = s, .pred = p, .loss = loss, .var = var, .w = w};
    dm_objective_batch(&o, out, xt, eps, idx, NULL, grad, ex, n, D);
    double m = 0, m2 = 0;
    for (int64_t b = 0; b < n; b++) m += ex[b], m2 += ex[b] * ex[b];
    m /= n;
    estimate e = {m, sqrt(fmax(m2 / n - m * m, 0) / n)};
    free(x0), free(eps), free(xt), free(out), free(grad), free(t), free(idx), free(ex), free(w);
    return e;
}

static void test_expectations(void) {
    dm_schedule s = gauss_oracle_schedule(DM_SCHEDULE_LINEAR, 1000);
    gauss_oracle g = gauss_oracle_make(&s);
    double *w = malloc(s.T * sizeof *w);
    const int32_t steps[] = {0, 5, 100, 500, 999};
    const struct {
        dm_loss_kind loss;
        dm_reverse_var var;
    } losses[] = {{DM_LOSS_SIMPLE, DM_VAR_BETA}, {DM_LOSS_VLB, DM_VAR_BETA},
                  {DM_LOSS_VLB, DM_VAR_BETA_TILDE}, {DM_LOSS_VDM, DM_VAR_BETA}};
    dm_error err = {0};
    int caught = 0, tried = 0;
    for (int p = 0; p < 4; p++)
        for (size_t l = 0; l < sizeof losses / sizeof losses[0]; l++) {
            dm_loss_weights(&s, (dm_prediction)p, losses[l].loss, losses[l].var, w, &err);
            for (size_t k = 0; k < sizeof steps / sizeof steps[0]; k++) {
                const int32_t i = steps[k];
                /* E[w_i mean_d e^2] = w_i tr(Cov[eps | x_t]) / D */
                const double want = w[i] * gauss_oracle_mse(&g, s.alpha_bar[i]) / 2.0;
                estimate e = objective_at(&s, &g, i, (dm_prediction)p, losses[l].loss,
                                          losses[l].var, 0.0, 20000);
                CHECK(fabs(e.mean - want) <= 5 * e.se + 1e-6 * want,
                      "%s / %s / %s at i = %d: mean %.6g, closed form %.6g (se %.3g)",
                      dm_prediction_name((dm_prediction)p), dm_loss_kind_name(losses[l].loss),
                      dm_reverse_var_name(losses[l].var), i, e.mean, want, e.se);
                /* the same check must reject a denoiser that is off by 0.4 */
                estimate bad = objective_at(&s, &g, i, (dm_prediction)p, losses[l].loss,
                                            losses[l].var, 0.4, 20000);
                tried++;
                caught += fabs(bad.mean - want) > 5 * bad.se + 1e-6 * want;
            }
        }
    CHECK(caught == tried, "a denoiser off by 0.4 passed %d of %d checks", tried - caught, tried);
    free(w);
    dm_schedule_free(&s);
}

/* ---- gradients ----------------------------------------------------------------------------- */

static double eval_obj(const dm_objective *o, const float *out, const float *xt, const float *eps,
                       const int32_t *idx, const double *scale, float *grad, double *ex,
                       int64_t B, int64_t D) {
    return dm_objective_batch(o, out, xt, eps, idx, scale, grad, ex, B, D);
}

static void test_gradients(void) {
    dm_schedule s = gauss_oracle_schedule(DM_SCHEDULE_LINEAR, 1000);
    enum { B = 4, D = 5 };
    const int32_t idx[B] = {0, 3, 180, 999};
    const double scale[B] = {0.5, 2.0, 1.0, 1.5};
    float x0[B * D], eps[B * D], xt[B * D], out[2 * B * D], grad[2 * B * D], g2[2 * B * D];
    double ex[B], *w = malloc(s.T * sizeof *w);
    dm_rng r;
    dm_rng_init(&r, 3, 0);
    dm_rng_normal(&r, x0, B * D);
    dm_rng_normal(&r, eps, B * D);
    dm_q_sample(&s, xt, x0, eps, idx, B, D);
    const struct {
        dm_loss_kind loss;
        dm_reverse_var var;
    } cases[] = {{DM_LOSS_SIMPLE, DM_VAR_BETA}, {DM_LOSS_VLB, DM_VAR_BETA},
                 {DM_LOSS_VDM, DM_VAR_BETA}, {DM_LOSS_HYBRID, DM_VAR_LEARNED},
                 {DM_LOSS_VLB, DM_VAR_LEARNED}};
    dm_error err = {0};
    for (int p = 0; p < 4; p++)
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
            for (int scaled = 0; scaled < 2; scaled++) {
                const bool learned = cases[c].var == DM_VAR_LEARNED;
                const int64_t OD = learned ? 2 * D : D;
                dm_objective o = {.s = &s, .pred = (dm_prediction)p, .loss = cases[c].loss,
                                  .var = cases[c].var, .hybrid_lambda = 0.3, .w = w};
                CHECK(dm_objective_check(&o, &err) == DM_OK, "%s", err.msg);
                if (!(cases[c].loss == DM_LOSS_VLB && learned))
                    dm_loss_weights(&s, o.pred, o.loss, o.var, w, &err);
                /* predictions near the truth (as in training), variance outputs in [-1, 1] */
                for (int b = 0; b < B; b++) {
                    float tgt[D];
                    dm_prediction_target(o.pred, s.alpha_bar[idx[b]], x0 + b * D, eps + b * D,
                                         tgt, D);
                    for (int d = 0; d < D; d++) {
                        float u;
                        dm_rng_normal(&r, &u, 1);
                        out[b * OD + d] = tgt[d] * (1.0f + 0.1f * u) + 0.1f * u;
                        if (learned) {
                            dm_rng_uniform(&r, &u, 1);
                            out[b * OD + D + d] = 2.0f * u - 1.0f;
                        }
                    }
                }
                const double *sc = scaled ? scale : NULL;
                eval_obj(&o, out, xt, eps, idx, sc, grad, ex, B, D);
                /* hybrid holds the mean fixed inside L_vlb (a stop-gradient): the prediction's
                 * gradient is L_simple's alone, i.e. the derivative of the loss at lambda 0 */
                dm_objective o_mean = o;
                if (o.loss == DM_LOSS_HYBRID) o_mean.hybrid_lambda = 0.0;
                int bad = 0;
                double worst = 0;
                for (int64_t j = 0; j < B * OD; j++) {
                    const bool mean_entry = j % OD < D;
                    const dm_objective *oj = mean_entry ? &o_mean : &o;
                    const float keep = out[j];
                    const float h = 1e-2f * fmaxf(1.0f, fabsf(keep));
                    out[j] = keep + h;
                    const double lp = eval_obj(oj, out, xt, eps, idx, sc, g2, ex, B, D);
                    out[j] = keep - h;
                    const double lm = eval_obj(oj, out, xt, eps, idx, sc, g2, ex, B, D);
                    out[j] = keep;
                    const double fd = (lp - lm) / (2.0 * (double)h);
                    const double tol = 2e-3 * max_abs(grad, B * OD) + 2e-2 * fabs(fd) + 1e-9;
                    worst = fmax(worst, fabs(grad[j] - fd));
                    bad += !(fabs(grad[j] - fd) <= tol);
                }
                CHECK(bad == 0, "%s / %s / %s%s: %d gradient entries off (worst %g)",
                      dm_prediction_name(o.pred), dm_loss_kind_name(o.loss),
                      dm_reverse_var_name(o.var), scaled ? " / importance-weighted" : "", bad,
                      worst);
            }
    /* refused combinations say what is allowed */
    dm_objective o = {.s = &s, .loss = DM_LOSS_SIMPLE, .var = DM_VAR_LEARNED, .w = w};
    CHECK(dm_objective_check(&o, &err) == DM_ERR_ARG && strstr(err.msg, "hybrid or vlb"),
          "simple + learned refused: %s", err.msg);
    o.loss = DM_LOSS_HYBRID, o.var = DM_VAR_BETA;
    CHECK(dm_objective_check(&o, &err) == DM_ERR_ARG && strstr(err.msg, "variance learned"),
          "hybrid + fixed refused: %s", err.msg);
    free(w);
    dm_schedule_free(&s);
}

/* ---- importance sampling ------------------------------------------------------------------- */

static void test_importance(void) {
    enum { T = 4, N = 200000 };
    dm_importance imp;
    dm_error err = {0};
    CHECK(dm_importance_init(&imp, T, &err) == DM_OK, "%s", err.msg);
    int32_t *idx = malloc(N * sizeof *idx), *ref = malloc(N * sizeof *ref);
    double *scale = malloc(N * sizeof *scale), *loss = malloc(N * sizeof *loss);
    float *u = malloc(N * sizeof *u);
    /* before the history is full: the uniform sampler's exact draws */
    dm_rng a, b;
    dm_rng_init(&a, 5, 3);
    dm_rng_init(&b, 5, 3);
    dm_importance_draw(&imp, &a, idx, scale, u, 1000);
    dm_rng_int(&b, ref, 1000, 0, T);
    CHECK(memcmp(idx, ref, 1000 * sizeof *idx) == 0 && scale[0] == 1.0,
          "uniform draws until the history is full");
    /* losses t + 1 for t: p_t = 0.999 (t + 1) / 10 + 0.001 / 4 */
    for (int k = 0; k < DM_IMPORTANCE_HISTORY; k++)
        for (int t = 0; t < T; t++) {
            int32_t i = t;
            double l = t + 1;
            dm_importance_update(&imp, &i, &l, 1);
        }
    CHECK(dm_importance_ready(&imp), "ready after %d losses per t", DM_IMPORTANCE_HISTORY);
    dm_importance_draw(&imp, &a, idx, scale, u, N);
    int64_t count[T] = {0};
    double est = 0;
    for (int j = 0; j < N; j++) {
        count[idx[j]]++;
        est += scale[j] * (double)(idx[j] * idx[j]);
    }
    for (int t = 0; t < T; t++) {
        const double p = 0.999 * (t + 1) / 10.0 + 0.001 / T;
        const double se = sqrt(p * (1 - p) / N);
        CHECK(fabs((double)count[t] / N - p) < 5 * se, "t = %d drawn %.4f, p = %.4f", t,
              (double)count[t] / N, p);
        for (int j = 0; j < N; j++)
            if (idx[j] == t) {
                CHECK_CLOSE(scale[j], 1.0 / (T * p), 0, 1e-9, "scale = 1 / (T p_t)");
                break;
            }
    }
    /* E[scale f(t)] = mean_t f(t): (0 + 1 + 4 + 9) / 4 */
    CHECK(fabs(est / N - 3.5) < 0.05, "importance-weighted mean %.4f, want 3.5", est / N);
    /* a full history shifts: the newest loss replaces the oldest */
    for (int k = 0; k < DM_IMPORTANCE_HISTORY; k++) {
        int32_t i = 0;
        double l = 100;
        dm_importance_update(&imp, &i, &l, 1);
    }
    CHECK(imp.history[0] == 100 && imp.history[DM_IMPORTANCE_HISTORY - 1] == 100,
          "history replaced by the newest losses");
    dm_importance_free(&imp);
    free(idx), free(ref), free(scale), free(loss), free(u);
}

int main(void) {
    omp_set_num_threads(2);
    test_conversions();
    test_weights();
    test_expectations();
    test_gradients();
    test_importance();
    return tu_finish("test_objectives");
}
