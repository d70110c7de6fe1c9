/* Classifiers and guidance: the class-conditional MLP's gradients (finite differences, unused
 * class rows untouched); classifier-free guidance against its formula eps~ = (1 + w) eps(x, y) -
 * w eps(x, null) evaluated by hand; the noise-conditioned classifier's input gradient against
 * finite differences of log softmax; a classifier that learns an easy image set, reloads and
 * retrains identically; classifier guidance eps~ = eps - gamma sqrt(1 - alpha_bar_t) grad_x log
 * p(y | x_t, t) through the sampler against a hand-written denoiser; and every refusal of a
 * guidance request, classifier or conditional training that makes no sense. */
#include "diffusion.h"
#include "diffusion/diffusion_impl.h"
#include "models/model.h"
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Largest |a - b| over n values (infinite if either is NaN). */
static double max_abs_diff(const float *a, const float *b, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) {
        const double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= m)) m = isnan(d) ? INFINITY : d;
    }
    return m;
}

/* ---- shared fixtures: written by the tests that make them, used by the later ones */

static char clf_noisy[600];   /* classifier-tiny, noisy, linear T = 50 */
static char clf_clean[600];   /* classifier-tiny, clean */
static char cond_ckpt[600];   /* conditional MLP on 8gaussians, p_uncond 0.1 */
static char unet_ckpt[600];   /* unconditional UNet "tiny", T = 50 */

/* Synthetic labelled 8x8 images: class k in 0..3 is bright (+0.8) in quadrant k (row k / 2,
 * column k % 2) and dark (-0.8) elsewhere, plus N(0, 0.2^2) noise; classes cycle. */
static void quadrant_images(dm_dataset *ds, int64_t n, int64_t size, uint64_t seed) {
    dm_error err = {0};
    const int64_t D = size * size, half = size / 2;
    CHECK(dm_dataset_init(ds, n, D, &err) == DM_OK, "%s", err.msg);
    CHECK(dm_dataset_add_labels(ds, 4, &err) == DM_OK, "%s", err.msg);
    dm_rng rng;
    dm_rng_init(&rng, seed, 0);
    dm_rng_normal(&rng, ds->x, (size_t)(n * D));
    for (int64_t i = 0; i < n; i++) {
        const int32_t k = (int32_t)(i % 4);
        ds->labels[i] = k;
        const int64_t r0 = (k / 2) * half, c0 = (k % 2) * half;
        for (int64_t r = 0; r < size; r++)
            for (int64_t c = 0; c < size; c++) {
                const int in = r >= r0 && r < r0 + half && c >= c0 && c < c0 + half;
                float *v = &ds->x[i * D + r * size + c];
                *v = (in ? 0.8f : -0.8f) + 0.2f * *v;
            }
    }
}

static void classifier_config(dm_classifier_config *cfg, int noisy, int32_t T, int64_t steps) {
    dm_error err = {0};
    dm_classifier_config_default(cfg);
    CHECK(dm_unet_preset(&cfg->net, "classifier-tiny", &err) == DM_OK, "%s", err.msg);
    cfg->noisy = noisy;
    dm_schedule_config_default(&cfg->schedule);
    cfg->schedule.T = T;
    cfg->optim.warmup = 10;
    cfg->optim.lr = 3e-3;
    cfg->steps = steps;
    cfg->batch = 32;
    cfg->seed = 5;
}

/* ---------------------------------------------------------------------------------------- */
/* 1. The class-conditional MLP's gradients                                                  */

/* L(theta, x) = sum(out * G) with labels; <grad, v> against central differences along a random
 * unit direction v, over the parameters and over the input (as test_unet's directional_check). */
static void test_conditional_mlp_gradient(void) {
    dm_error err = {0};
    dm_mlp_config mc;
    dm_mlp_config_default(&mc);
    mc.dim = 2;
    mc.hidden = 16;
    mc.temb_dim = 8;
    mc.layers = 2;
    mc.num_classes = 3;
    dm_model *m = NULL;
    CHECK(dm_mlp_create(&m, &mc, 13, &err) == DM_OK, "%s", err.msg);
    if (!m) return;
    CHECK(dm_model_num_classes(m) == 3, "num_classes %d", (int)dm_model_num_classes(m));
    enum { B = 4 };
    const int64_t dim = dm_model_dim(m), n = B * dim, no = B * dm_model_out_dim(m);
    const size_t P = dm_model_num_params(m);
    /* label 1 is used by no row: its class embedding row must get no gradient */
    const int32_t labels[B] = {0, 2, 2, 0};
    const float t[B] = {3, 17, 17, 40}; /* unequal: the batched time path */
    float *x = malloc((size_t)n * sizeof *x), *G = malloc((size_t)no * sizeof *G);
    float *out = malloc((size_t)no * sizeof *out), *dx = calloc((size_t)n, sizeof *dx);
    float *vp = malloc(P * sizeof *vp), *vx = malloc((size_t)n * sizeof *vx);
    float *theta = malloc(P * sizeof *theta), *xp = malloc((size_t)n * sizeof *xp);
    dm_rng rng;
    dm_rng_init(&rng, 21, 0);
    dm_rng_normal(&rng, x, (size_t)n);
    dm_rng_normal(&rng, G, (size_t)no);
    dm_rng_normal(&rng, vp, P);
    dm_rng_normal(&rng, vx, (size_t)n);
    double nv = 0, nx = 0;
    for (size_t i = 0; i < P; i++) nv += (double)vp[i] * vp[i];
    for (int64_t i = 0; i < n; i++) nx += (double)vx[i] * vx[i];
    for (size_t i = 0; i < P; i++) vp[i] = (float)(vp[i] / sqrt(nv));
    for (int64_t i = 0; i < n; i++) vx[i] = (float)(vx[i] / sqrt(nx));
    float *p = dm_model_params(m);
    memcpy(theta, p, P * sizeof *theta);

    CHECK(dm_model_forward_cond(m, out, x, t, labels, B, 1, &err) == DM_OK, "%s", err.msg);
    /* the labels change the output (the embedding reaches it) */
    {
        const int32_t other[B] = {1, 1, 1, 1};
        float *o2 = malloc((size_t)no * sizeof *o2);
        CHECK(dm_model_forward_cond(m, o2, x, t, other, B, 0, &err) == DM_OK, "%s", err.msg);
        CHECK(max_abs_diff(out, o2, no) > 1e-3, "labels do not change the MLP's output");
        free(o2);
        /* a training forward must come right before backward */
        CHECK(dm_model_forward_cond(m, out, x, t, labels, B, 1, &err) == DM_OK, "%s", err.msg);
    }
    memset(dm_model_grads(m), 0, P * sizeof(float));
    dm_model_backward_input(m, G, dx, B);
    double gv = 0, gx = 0;
    for (size_t i = 0; i < P; i++) gv += (double)dm_model_grads(m)[i] * vp[i];
    for (int64_t i = 0; i < n; i++) gx += (double)dx[i] * vx[i];

    /* class_embedding.weight (3, H): rows 0 and 2 get gradient, row 1 exactly none */
    int found = 0;
    for (int i = 0; i < dm_model_tensor_count(m); i++) {
        const char *name;
        int64_t shape[4];
        int ndim;
        size_t off;
        dm_model_tensor_info(m, i, &name, shape, &ndim, &off);
        if (strcmp(name, "class_embedding.weight") != 0) continue;
        found = 1;
        CHECK(ndim == 2 && shape[0] == 3 && shape[1] == mc.hidden, "class_embedding shape");
        const float *g = dm_model_grads(m) + off;
        double n0 = 0, n1 = 0, n2 = 0;
        for (int64_t j = 0; j < shape[1]; j++) {
            n0 += fabs(g[j]);
            n1 += fabs(g[shape[1] + j]);
            n2 += fabs(g[2 * shape[1] + j]);
        }
        CHECK(n1 == 0, "class_embedding row of the unused label 1 has gradient %g", n1);
        CHECK(n0 > 0 && n2 > 0, "class_embedding rows of used labels: |g| %g, %g", n0, n2);
    }
    CHECK(found, "no class_embedding.weight tensor");

    const double h = 1e-2;
    double L[2], Lx[2];
    for (int s = 0; s < 2; s++) {
        const double sign = s ? -1 : 1;
        for (size_t i = 0; i < P; i++) p[i] = theta[i] + (float)(sign * h) * vp[i];
        CHECK(dm_model_forward_cond(m, out, x, t, labels, B, 0, &err) == DM_OK, "%s", err.msg);
        L[s] = 0;
        for (int64_t i = 0; i < no; i++) L[s] += (double)out[i] * G[i];
        memcpy(p, theta, P * sizeof *p);
        for (int64_t i = 0; i < n; i++) xp[i] = x[i] + (float)(sign * h) * vx[i];
        CHECK(dm_model_forward_cond(m, out, xp, t, labels, B, 0, &err) == DM_OK, "%s", err.msg);
        Lx[s] = 0;
        for (int64_t i = 0; i < no; i++) Lx[s] += (double)out[i] * G[i];
    }
    const double fd = (L[0] - L[1]) / (2 * h), fdx = (Lx[0] - Lx[1]) / (2 * h);
    /* a random direction sees a small part of the gradient: the absolute tolerance is a
     * fraction of the gradient's norm (the largest derivative along any unit direction) */
    double ng = 0, ngx = 0;
    for (size_t i = 0; i < P; i++) ng += (double)dm_model_grads(m)[i] * dm_model_grads(m)[i];
    for (int64_t i = 0; i < n; i++) ngx += (double)dx[i] * dx[i];
    ng = sqrt(ng), ngx = sqrt(ngx);
    CHECK_CLOSE(gv, fd, 1e-3 * ng, 2e-3, "conditional MLP: parameter derivative");
    CHECK_CLOSE(gx, fdx, 1e-3 * ngx, 2e-3, "conditional MLP: input derivative");
    printf("  conditional MLP: <g,v> %.6f fd %.6f (|g| %.4f); <dx,v> %.6f fd %.6f (|dx| %.4f)\n",
           gv, fd, ng, gx, fdx, ngx);

    /* a conditional model without labels, and a label outside its classes, are refused */
    CHECK(dm_model_forward(m, out, x, t, B, 0, &err) == DM_ERR_ARG, "no labels accepted");
    const int32_t bad[B] = {0, 3, 0, 0};
    CHECK(dm_model_forward_cond(m, out, x, t, bad, B, 0, &err) == DM_ERR_ARG &&
              strstr(err.msg, "outside"),
          "label 3 of a 3-class MLP: %s", err.msg);
    free(x), free(G), free(out), free(dx), free(vp), free(vx), free(theta), free(xp);
    dm_model_free(m);
}

/* ---------------------------------------------------------------------------------------- */
/* 2. Classifier-free guidance equals its formula                                           */

typedef struct {
    dm_pipeline *p;
    const int32_t *labels; /* (n) the classes, or NULL: the null label only */
    double w;
    int32_t *null;         /* (n) the null label K */
    float *eps_u;          /* (n, D) */
} cfg_ref;

/* (1 + w) eps(x, y) - w eps(x, null) in two separate network calls (w = 0 or labels NULL: one) */
static dm_status cfg_ref_denoise(void *ctx, float *eps, float *var, const float *x,
                                 const float *t, int64_t B, dm_error *err) {
    cfg_ref *r = ctx;
    const int64_t D = dm_pipeline_dim(r->p);
    dm_status st;
    if (!r->labels) return dm_pipeline_denoise_labels(r->p, eps, var, x, t, r->null, B, err);
    if ((st = dm_pipeline_denoise_labels(r->p, eps, var, x, t, r->labels, B, err))) return st;
    if (r->w == 0) return DM_OK;
    if ((st = dm_pipeline_denoise_labels(r->p, r->eps_u, NULL, x, t, r->null, B, err))) return st;
    const float w = (float)r->w;
    for (int64_t i = 0; i < B * D; i++) eps[i] = (1.0f + w) * eps[i] - w * r->eps_u[i];
    return DM_OK;
}

static void test_classifier_free(void) {
    dm_error err = {0};
    dm_dataset data;
    CHECK(dm_toy2d_generate(&data, "8gaussians", 2000, 3, &err) == DM_OK, "%s", err.msg);
    CHECK(data.labels && data.num_classes == 8, "8gaussians: %d classes", (int)data.num_classes);
    dm_train_config cfg;
    dm_train_config_default(&cfg);
    cfg.mlp.hidden = 32;
    cfg.mlp.temb_dim = 16;
    cfg.mlp.layers = 2;
    cfg.batch = 128;
    cfg.steps = 300;
    cfg.schedule.T = 50;
    cfg.seed = 7;
    cfg.num_classes = 8;
    cfg.p_uncond = 0.2;
    cfg.optim.lr = 3e-3;
    cfg.optim.warmup = 20;
    dm_trainer *tr = NULL;
    CHECK(dm_trainer_create(&tr, &cfg, &data, &err) == DM_OK, "%s", err.msg);
    if (!tr) {
        dm_dataset_free(&data);
        return;
    }
    while (dm_trainer_step_count(tr) < cfg.steps)
        if (dm_trainer_step(tr, NULL, &err)) {
            CHECK(0, "step: %s", err.msg);
            break;
        }
    CHECK(dm_model_num_classes(dm_trainer_model(tr)) == 9, "the model has %d class embeddings",
          (int)dm_model_num_classes(dm_trainer_model(tr)));
    snprintf(cond_ckpt, sizeof cond_ckpt, "%s", tu_tmp_path("cond_mlp"));
    CHECK(dm_trainer_save(tr, cond_ckpt, &err) == DM_OK, "save: %s", err.msg);
    dm_trainer_free(tr);
    dm_dataset_free(&data);

    dm_pipeline *p = NULL;
    CHECK(dm_pipeline_load(&p, cond_ckpt, &err) == DM_OK, "%s", err.msg);
    if (!p) return;
    CHECK(dm_pipeline_train_config(p)->num_classes == 8 &&
              dm_pipeline_train_config(p)->p_uncond == 0.2,
          "pipeline conditioning: %d classes, p_uncond %g",
          (int)dm_pipeline_train_config(p)->num_classes, dm_pipeline_train_config(p)->p_uncond);
    enum { N = 64, D = 2 };
    int32_t labels[N], null[N];
    for (int i = 0; i < N; i++) labels[i] = i % 8, null[i] = 8;
    float got[N * D], want[N * D], eps_u[N * D];
    cfg_ref ref = {.p = p, .labels = labels, .w = 2.0, .null = null, .eps_u = eps_u};
    dm_guidance g;
    dm_guidance_default(&g);
    g.labels = labels;
    g.cfg_scale = 2.0;
    const dm_sampler_kind samplers[2] = {DM_SAMPLER_DDIM, DM_SAMPLER_DPMPP_2M};
    for (int k = 0; k < 2; k++) {
        dm_sample_options so;
        dm_sample_options_default(&so);
        so.sampler = samplers[k];
        so.steps = 10;
        so.seed = 17;
        so.stream = 3;
        CHECK(dm_pipeline_sample_guided(p, got, N, &so, &g, &err) == DM_OK, "%s", err.msg);
        CHECK(dm_sample(dm_pipeline_schedule(p), cfg_ref_denoise, &ref, want, N, D, &so, &err) ==
                  DM_OK,
              "%s", err.msg);
        dm_normalizer_invert(dm_pipeline_normalizer(p), want, N);
        const double d = max_abs_diff(got, want, N * D);
        CHECK(d <= 1e-5, "%s, w = 2: guided samples differ from the formula by %g",
              dm_sampler_name(samplers[k]), d);
        printf("  classifier-free w = 2 (%s): max |guided - formula| = %.3g\n",
               dm_sampler_name(samplers[k]), d);
        if (k == 0) {
            /* the guided samples sit at their class's mode: (4 cos, 4 sin)(k pi/4) / 1.414 */
            int right = 0;
            for (int i = 0; i < N; i++) {
                int best = 0;
                double bd = INFINITY;
                for (int c = 0; c < 8; c++) {
                    const double cx = 4 * cos(c * M_PI / 4) / 1.414,
                                 cy = 4 * sin(c * M_PI / 4) / 1.414;
                    const double dd = pow(got[2 * i] - cx, 2) + pow(got[2 * i + 1] - cy, 2);
                    if (dd < bd) bd = dd, best = c;
                }
                right += best == labels[i];
            }
            CHECK(right >= N * 3 / 4, "only %d of %d guided samples at their class's mode", right,
                  N);
            printf("  classifier-free w = 2: %d of %d samples nearest their class's mode\n",
                   right, N);
        }
    }

    dm_sample_options so;
    dm_sample_options_default(&so);
    so.sampler = DM_SAMPLER_DDIM;
    so.steps = 10;
    so.seed = 4;
    /* w = 0: plain conditional sampling */
    g.cfg_scale = 0;
    ref.w = 0;
    CHECK(dm_pipeline_sample_guided(p, got, N, &so, &g, &err) == DM_OK, "%s", err.msg);
    CHECK(dm_sample(dm_pipeline_schedule(p), cfg_ref_denoise, &ref, want, N, D, &so, &err) ==
              DM_OK,
          "%s", err.msg);
    dm_normalizer_invert(dm_pipeline_normalizer(p), want, N);
    double d = max_abs_diff(got, want, N * D);
    CHECK(d <= 1e-5, "w = 0: guided samples differ from conditional sampling by %g", d);
    float cond_only[N * D];
    memcpy(cond_only, got, sizeof got);
    /* no labels: the null-label prediction, by dm_pipeline_sample and by guidance NULL */
    ref.labels = NULL;
    CHECK(dm_pipeline_sample(p, got, N, &so, &err) == DM_OK, "%s", err.msg);
    CHECK(dm_sample(dm_pipeline_schedule(p), cfg_ref_denoise, &ref, want, N, D, &so, &err) ==
              DM_OK,
          "%s", err.msg);
    dm_normalizer_invert(dm_pipeline_normalizer(p), want, N);
    d = max_abs_diff(got, want, N * D);
    CHECK(d <= 1e-5, "labels NULL: samples differ from the null-label prediction by %g", d);
    /* ... which dm_pipeline_denoise is too */
    CHECK(dm_sample(dm_pipeline_schedule(p), dm_pipeline_denoise, p, want, N, D, &so, &err) ==
              DM_OK,
          "%s", err.msg);
    dm_normalizer_invert(dm_pipeline_normalizer(p), want, N);
    d = max_abs_diff(got, want, N * D);
    CHECK(d <= 1e-5, "dm_pipeline_denoise differs from the null-label prediction by %g", d);
    /* and the classes matter: conditional and unconditional samples differ */
    CHECK(max_abs_diff(got, cond_only, N * D) > 1e-2, "labels do not change the samples");
    /* unconditional_model: the null label whatever the labels, = dm_pipeline_sample */
    g.unconditional_model = 1;
    float un[N * D];
    CHECK(dm_pipeline_sample_guided(p, un, N, &so, &g, &err) == DM_OK, "%s", err.msg);
    CHECK(max_abs_diff(un, got, N * D) <= 1e-5, "unconditional_model differs from no labels");
    dm_pipeline_free(p);
}

/* ---------------------------------------------------------------------------------------- */
/* 3. The noisy classifier's gradient against finite differences                            */

/* log softmax(z)[y] in double from float logits */
static double log_prob(const float *z, int64_t K, int32_t y) {
    double mx = z[0], s = 0;
    for (int64_t k = 1; k < K; k++) mx = fmax(mx, z[k]);
    for (int64_t k = 0; k < K; k++) s += exp((double)z[k] - mx);
    return (double)z[y] - mx - log(s);
}

static double sum_log_prob(dm_classifier *c, const float *x, const float *t, const int32_t *y,
                           int64_t B, float *logits) {
    dm_error err = {0};
    const int64_t K = dm_classifier_num_classes(c);
    CHECK(dm_classifier_forward(c, logits, NULL, x, t, B, &err) == DM_OK, "%s", err.msg);
    double s = 0;
    for (int64_t b = 0; b < B; b++) s += log_prob(logits + b * K, K, y[b]);
    return s;
}

static void test_classifier_gradient(void) {
    dm_error err = {0};
    dm_dataset data;
    quadrant_images(&data, 256, 8, 1);
    dm_classifier_config cfg;
    classifier_config(&cfg, 1, 50, 30);
    snprintf(clf_noisy, sizeof clf_noisy, "%s", tu_tmp_path("clf_noisy"));
    int64_t done = 0;
    CHECK(dm_classifier_train(&cfg, &data, clf_noisy, NULL, NULL, &done, &err) == DM_OK, "%s",
          err.msg);
    CHECK(done == 30, "%lld steps done", (long long)done);
    dm_classifier *c = NULL;
    CHECK(dm_classifier_load(&c, clf_noisy, &err) == DM_OK, "%s", err.msg);
    if (!c) {
        dm_dataset_free(&data);
        return;
    }
    CHECK(dm_classifier_get_config(c)->noisy == 1 && dm_classifier_get_config(c)->schedule.T == 50,
          "loaded config: noisy %d, T %d", dm_classifier_get_config(c)->noisy,
          (int)dm_classifier_get_config(c)->schedule.T);
    enum { B = 3, D = 64, K = 4 };
    /* x_t of data images at three noise levels */
    dm_schedule s;
    CHECK(dm_schedule_init(&s, &cfg.schedule, &err) == DM_OK, "%s", err.msg);
    const float t[B] = {0, 20, 49};
    const int32_t tidx[B] = {0, 20, 49};
    const int32_t y[B] = {0, 1, 3};
    float x[B * D], eps[B * D], grad[B * D], xp[B * D], logits[B * K], v[B * D];
    dm_rng rng;
    dm_rng_init(&rng, 31, 0);
    dm_rng_normal(&rng, eps, B * D);
    dm_q_sample(&s, x, data.x + 5 * D, eps, tidx, B, D); /* images of classes 1, 2, 3 */
    CHECK(dm_classifier_grad_log_prob(c, grad, x, t, y, B, &err) == DM_OK, "%s", err.msg);
    CHECK(dm_all_finite(grad, B * D), "non-finite gradient");

    /* along a random unit direction */
    dm_rng_normal(&rng, v, B * D);
    double nv = 0;
    for (int i = 0; i < B * D; i++) nv += (double)v[i] * v[i];
    for (int i = 0; i < B * D; i++) v[i] = (float)(v[i] / sqrt(nv));
    const double h = 1e-2;
    double gv = 0;
    for (int i = 0; i < B * D; i++) gv += (double)grad[i] * v[i];
    for (int i = 0; i < B * D; i++) xp[i] = x[i] + (float)h * v[i];
    const double lp = sum_log_prob(c, xp, t, y, B, logits);
    for (int i = 0; i < B * D; i++) xp[i] = x[i] - (float)h * v[i];
    const double lm = sum_log_prob(c, xp, t, y, B, logits);
    const double fd = (lp - lm) / (2 * h);
    double ng = 0;
    for (int i = 0; i < B * D; i++) ng += (double)grad[i] * grad[i];
    ng = sqrt(ng);
    CHECK(ng > 1e-3, "classifier gradient norm %g: nothing to check", ng);
    CHECK_CLOSE(gv, fd, 1e-3 * ng, 2e-3, "classifier: directional derivative");
    printf("  classifier grad: <g,v> %.6f fd %.6f (|g| %.4f)\n", gv, fd, ng);
    /* along the gradient itself: the derivative is |g| */
    for (int i = 0; i < B * D; i++) xp[i] = x[i] + (float)(h / ng) * grad[i];
    const double gp = sum_log_prob(c, xp, t, y, B, logits);
    for (int i = 0; i < B * D; i++) xp[i] = x[i] - (float)(h / ng) * grad[i];
    const double gm = sum_log_prob(c, xp, t, y, B, logits);
    CHECK_CLOSE((gp - gm) / (2 * h), ng, 2e-3 * ng, 0, "classifier: derivative along grad");
    printf("  classifier grad: along g/|g| fd %.6f vs |g| %.6f\n", (gp - gm) / (2 * h), ng);

    /* coordinate by coordinate, a few per image */
    double worst = 0;
    for (int b = 0; b < B; b++)
        for (int j = 0; j < 4; j++) {
            int32_t r;
            dm_rng_int(&rng, &r, 1, 0, D);
            const int i = b * D + r;
            memcpy(xp, x, sizeof xp);
            xp[i] = x[i] + (float)h;
            const double a = sum_log_prob(c, xp, t, y, B, logits);
            xp[i] = x[i] - (float)h;
            const double bm = sum_log_prob(c, xp, t, y, B, logits);
            const double fdi = (a - bm) / (2 * h);
            worst = fmax(worst, fabs(grad[i] - fdi));
            char what[96];
            snprintf(what, sizeof what, "classifier: d log p / dx[%d] (t = %g)", i, t[b]);
            CHECK_CLOSE(grad[i], fdi, 1e-3 * ng, 2e-3, what);
        }
    printf("  classifier grad: worst coordinate |g - fd| = %.3g\n", worst);

    /* each row alone gives the same gradient (no coupling across the batch) */
    float g1[D];
    double dmax = 0;
    for (int b = 0; b < B; b++) {
        CHECK(dm_classifier_grad_log_prob(c, g1, x + b * D, t + b, y + b, 1, &err) == DM_OK, "%s",
              err.msg);
        dmax = fmax(dmax, max_abs_diff(g1, grad + b * D, D));
    }
    CHECK(dmax <= 1e-5, "batched and single-row gradients differ by %g", dmax);
    /* grad_log_prob leaves the forward's logits alone: the logits of the same input agree */
    float l2[B * K];
    CHECK(dm_classifier_forward(c, logits, NULL, x, t, B, &err) == DM_OK, "%s", err.msg);
    CHECK(dm_classifier_grad_log_prob(c, grad, x, t, y, B, &err) == DM_OK, "%s", err.msg);
    CHECK(dm_classifier_forward(c, l2, NULL, x, t, B, &err) == DM_OK, "%s", err.msg);
    CHECK(memcmp(logits, l2, sizeof l2) == 0, "logits changed by a gradient call");
    /* a class outside the classifier's */
    const int32_t bad[B] = {0, 4, 1};
    CHECK(dm_classifier_grad_log_prob(c, grad, x, t, bad, B, &err) == DM_ERR_ARG &&
              strstr(err.msg, "outside"),
          "class 4 of a 4-class classifier: %s", err.msg);
    dm_schedule_free(&s);
    dm_classifier_free(c);
    dm_dataset_free(&data);
}

/* ---------------------------------------------------------------------------------------- */
/* 4. A classifier learns, reloads and retrains identically                                 */

static void test_classifier_training(void) {
    dm_error err = {0};
    dm_dataset train, test;
    quadrant_images(&train, 512, 8, 2);
    quadrant_images(&test, 400, 8, 99);
    dm_classifier_config cfg;
    classifier_config(&cfg, 0, 50, 150);
    snprintf(clf_clean, sizeof clf_clean, "%s", tu_tmp_path("clf_clean"));
    char again[600];
    snprintf(again, sizeof again, "%s", tu_tmp_path("clf_clean_again"));
    double t0 = now_s();
    CHECK(dm_classifier_train(&cfg, &train, clf_clean, NULL, NULL, NULL, &err) == DM_OK, "%s",
          err.msg);
    printf("  classifier training: 150 steps in %.2f s\n", now_s() - t0);
    CHECK(dm_classifier_train(&cfg, &train, again, NULL, NULL, NULL, &err) == DM_OK, "%s",
          err.msg);
    dm_classifier *a = NULL, *a2 = NULL, *b = NULL;
    CHECK(dm_classifier_load(&a, clf_clean, &err) == DM_OK, "%s", err.msg);
    CHECK(dm_classifier_load(&a2, clf_clean, &err) == DM_OK, "%s", err.msg);
    CHECK(dm_classifier_load(&b, again, &err) == DM_OK, "%s", err.msg);
    if (a && a2 && b) {
        CHECK(dm_classifier_num_classes(a) == 4, "%d classes", (int)dm_classifier_num_classes(a));
        CHECK(dm_classifier_feature_dim(a) == 16, "feature dim %lld",
              (long long)dm_classifier_feature_dim(a));
        CHECK(dm_classifier_get_config(a)->noisy == 0, "a clean classifier reads back noisy");
        double acc = 0, acc_train = 0;
        CHECK(dm_classifier_accuracy(a, &test, NULL, &acc, &err) == DM_OK, "%s", err.msg);
        CHECK(dm_classifier_accuracy(a, &train, NULL, &acc_train, &err) == DM_OK, "%s", err.msg);
        CHECK(acc >= 0.95, "accuracy %.3f on fresh images", acc);
        printf("  classifier accuracy: %.3f fresh, %.3f training\n", acc, acc_train);
        /* the accuracy at explicit t = 0 is the same */
        float *tz = calloc((size_t)test.n, sizeof *tz);
        double acc0 = -1;
        CHECK(dm_classifier_accuracy(a, &test, tz, &acc0, &err) == DM_OK, "%s", err.msg);
        CHECK(acc0 == acc, "accuracy at t = 0 %.3f vs t = NULL %.3f", acc0, acc);
        free(tz);
        enum { B = 16, K = 4, F = 16 };
        float la[B * K], la2[B * K], lb[B * K], fa[B * F], fb[B * F];
        CHECK(dm_classifier_forward(a, la, fa, test.x, NULL, B, &err) == DM_OK, "%s", err.msg);
        CHECK(dm_classifier_forward(a2, la2, NULL, test.x, NULL, B, &err) == DM_OK, "%s",
              err.msg);
        CHECK(dm_classifier_forward(b, lb, fb, test.x, NULL, B, &err) == DM_OK, "%s", err.msg);
        CHECK(memcmp(la, la2, sizeof la) == 0, "two loads of one folder give other logits");
        CHECK(memcmp(la, lb, sizeof la) == 0, "two trainings with one seed give other logits");
        CHECK(memcmp(fa, fb, sizeof fa) == 0, "two trainings with one seed give other features");
        CHECK(dm_all_finite(fa, B * F) && dm_all_finite(la, B * K), "non-finite features");
        double fnorm = 0;
        for (int i = 0; i < B * F; i++) fnorm += fabs(fa[i]);
        CHECK(fnorm > 0, "features all zero");
        /* a different seed trains a different classifier */
        cfg.seed = 6;
        cfg.steps = 5;
        char other[600];
        snprintf(other, sizeof other, "%s", tu_tmp_path("clf_other_seed"));
        dm_classifier *o = NULL;
        CHECK(dm_classifier_train(&cfg, &train, other, NULL, NULL, NULL, &err) == DM_OK, "%s",
              err.msg);
        CHECK(dm_classifier_load(&o, other, &err) == DM_OK, "%s", err.msg);
        if (o) {
            CHECK(dm_classifier_forward(o, lb, NULL, test.x, NULL, B, &err) == DM_OK, "%s",
                  err.msg);
            CHECK(memcmp(la, lb, sizeof la) != 0, "another seed gives the same logits");
        }
        dm_classifier_free(o);
    }
    dm_classifier_free(a);
    dm_classifier_free(a2);
    dm_classifier_free(b);
    dm_dataset_free(&train);
    dm_dataset_free(&test);
}

/* ---------------------------------------------------------------------------------------- */
/* 5. Classifier guidance through the sampler                                               */

typedef struct {
    dm_pipeline *p;
    dm_classifier *c;
    double gamma;
    const int32_t *labels;
    float *grad; /* (n, D) */
} clf_ref;

static dm_status clf_ref_denoise(void *ctx, float *eps, float *var, const float *x,
                                 const float *t, int64_t B, dm_error *err) {
    clf_ref *r = ctx;
    const int64_t D = dm_pipeline_dim(r->p);
    dm_status st;
    if ((st = dm_pipeline_denoise(r->p, eps, var, x, t, B, err))) return st;
    if ((st = dm_classifier_grad_log_prob(r->c, r->grad, x, t, r->labels, B, err))) return st;
    const dm_schedule *s = dm_pipeline_schedule(r->p);
    for (int64_t b = 0; b < B; b++) {
        const double ab = s->alpha_bar[(int)lrint(t[b])];
        const float k = (float)(r->gamma * sqrt(1.0 - ab));
        for (int64_t i = 0; i < D; i++) eps[b * D + i] -= k * r->grad[b * D + i];
    }
    return DM_OK;
}

static void test_classifier_guidance(void) {
    dm_error err = {0};
    dm_dataset data;
    quadrant_images(&data, 64, 8, 3);
    dm_train_config cfg;
    dm_train_config_default(&cfg);
    cfg.arch = DM_ARCH_UNET;
    CHECK(dm_unet_preset(&cfg.unet, "tiny", &err) == DM_OK, "%s", err.msg);
    cfg.schedule.T = 50;
    cfg.batch = 8;
    cfg.steps = 3;
    cfg.seed = 9;
    dm_trainer *tr = NULL;
    CHECK(dm_trainer_create(&tr, &cfg, &data, &err) == DM_OK, "%s", err.msg);
    dm_dataset_free(&data);
    if (!tr) return;
    while (dm_trainer_step_count(tr) < cfg.steps)
        if (dm_trainer_step(tr, NULL, &err)) {
            CHECK(0, "step: %s", err.msg);
            break;
        }
    snprintf(unet_ckpt, sizeof unet_ckpt, "%s", tu_tmp_path("unet"));
    CHECK(dm_trainer_save(tr, unet_ckpt, &err) == DM_OK, "%s", err.msg);
    dm_trainer_free(tr);
    dm_pipeline *p = NULL;
    dm_classifier *c = NULL;
    CHECK(dm_pipeline_load(&p, unet_ckpt, &err) == DM_OK, "%s", err.msg);
    CHECK(dm_classifier_load(&c, clf_noisy, &err) == DM_OK, "%s", err.msg);
    if (!p || !c) {
        dm_pipeline_free(p);
        dm_classifier_free(c);
        return;
    }
    CHECK(dm_classifier_check_guidance(c, dm_pipeline_schedule(p), 1, 8, 8, &err) == DM_OK,
          "a matching classifier refused: %s", err.msg);
    enum { N = 4, D = 64 };
    const int32_t labels[N] = {0, 1, 2, 3};
    float got[N * D], want[N * D], plain[N * D], grad[N * D];
    clf_ref ref = {.p = p, .c = c, .gamma = 3.0, .labels = labels, .grad = grad};
    dm_guidance g;
    dm_guidance_default(&g);
    g.labels = labels;
    g.classifier = c;
    g.classifier_scale = 3.0;
    for (int clip = 0; clip < 2; clip++) {
        dm_sample_options so;
        dm_sample_options_default(&so);
        so.sampler = DM_SAMPLER_DDIM;
        so.steps = 5;
        so.seed = 12;
        so.clip_x0 = clip;
        CHECK(dm_pipeline_sample_guided(p, got, N, &so, &g, &err) == DM_OK, "%s", err.msg);
        CHECK(dm_sample(dm_pipeline_schedule(p), clf_ref_denoise, &ref, want, N, D, &so, &err) ==
                  DM_OK,
              "%s", err.msg);
        dm_normalizer_invert(dm_pipeline_normalizer(p), want, N); /* images: nothing to undo */
        const double d = max_abs_diff(got, want, N * D);
        CHECK(d <= 1e-5, "classifier guidance (clip %d) differs from the formula by %g", clip, d);
        printf("  classifier guidance gamma 3 (clip_x0 %d): max |guided - formula| = %.3g\n",
               clip, d);
        if (clip) {
            int bounded = 1;
            for (int i = 0; i < N * D; i++) bounded &= fabsf(got[i]) <= 1.0f;
            CHECK(bounded, "clip_x0 samples outside [-1, 1]");
        }
    }
    /* It steers toward the asked class. With the same noise, guided and unguided samples are
     * paired; the guided one should be more likely the asked class under the classifier that
     * guided it, read at t = 0. Per pair d_b = log p(y_b | guided_b) - log p(y_b | plain_b);
     * checked: mean(d) > 4 se(d) (a real effect, not noise: one-sided 4 se) and mean(d) >
     * 0.1 nats (an effect of a size worth the name). Guidance of the wrong sign, or a scale
     * that does not reach the sampler, gives mean(d) <= 0. */
    {
        enum { M = 128 };
        float *gx = malloc(M * D * sizeof *gx), *px = malloc(M * D * sizeof *px);
        float *logits = malloc(M * 4 * sizeof *logits);
        int32_t ys[M];
        for (int b = 0; b < M; b++) ys[b] = b % 4;
        dm_sample_options so;
        dm_sample_options_default(&so);
        so.sampler = DM_SAMPLER_DDIM;
        so.steps = 5;
        so.seed = 21;
        g.labels = ys;
        g.classifier_scale = 3.0;
        CHECK(dm_pipeline_sample_guided(p, gx, M, &so, &g, &err) == DM_OK, "%s", err.msg);
        CHECK(dm_pipeline_sample(p, px, M, &so, &err) == DM_OK, "%s", err.msg);
        double lg[M], lp[M], m = 0, m2 = 0, mg = 0, mp = 0;
        CHECK(dm_classifier_forward(c, logits, NULL, gx, NULL, M, &err) == DM_OK, "%s", err.msg);
        for (int b = 0; b < M; b++) lg[b] = log_prob(logits + 4 * b, 4, ys[b]);
        CHECK(dm_classifier_forward(c, logits, NULL, px, NULL, M, &err) == DM_OK, "%s", err.msg);
        for (int b = 0; b < M; b++) lp[b] = log_prob(logits + 4 * b, 4, ys[b]);
        for (int b = 0; b < M; b++) {
            const double d = lg[b] - lp[b];
            m += d, m2 += d * d, mg += lg[b], mp += lp[b];
        }
        m /= M;
        const double se = sqrt((m2 / M - m * m) / (M - 1));
        printf("  classifier guidance gamma 3: log p(y | x) guided %.3f, unguided %.3f, paired "
               "difference %.3f +- %.3f nats (%d samples)\n", mg / M, mp / M, m, se, M);
        CHECK(m > 4 * se && m > 0.1,
              "guidance does not steer toward the class: log p(y | x) rises by %.4f +- %.4f "
              "nats (want > 4 se and > 0.1)", m, se);
        g.labels = labels;
        free(gx), free(px), free(logits);
    }
    /* a classifier scale of 0 with a classifier: the unguided samples */
    {
        dm_sample_options so;
        dm_sample_options_default(&so);
        so.sampler = DM_SAMPLER_DDIM;
        so.steps = 5;
        g.classifier_scale = 0;
        CHECK(dm_pipeline_sample_guided(p, got, N, &so, &g, &err) == DM_OK, "%s", err.msg);
        CHECK(dm_pipeline_sample(p, plain, N, &so, &err) == DM_OK, "%s", err.msg);
        CHECK(max_abs_diff(got, plain, N * D) == 0, "gamma 0 is not unguided sampling");
    }
    dm_classifier_free(c);
    dm_pipeline_free(p);
}

/* ---------------------------------------------------------------------------------------- */
/* 6. Requests that make no sense are refused, saying why                                   */

#define CHECK_REFUSED(call, want_st, substr)                                                    \
    do {                                                                                        \
        dm_error e_ = {0};                                                                      \
        dm_error *err_ = &e_;                                                                   \
        (void)err_;                                                                             \
        dm_status st_ = (call);                                                                 \
        CHECK(st_ == (want_st) && strstr(e_.msg, (substr)),                                     \
              "%s: got %s \"%s\", want %s with \"%s\"", #call, dm_status_name(st_), e_.msg,     \
              dm_status_name(want_st), substr);                                                 \
    } while (0)

static void test_bad_input(void) {
    dm_error err = {0};
    dm_pipeline *cond = NULL, *unet = NULL, *nonull = NULL;
    dm_classifier *noisy = NULL, *clean = NULL, *t60 = NULL, *big = NULL;
    CHECK(dm_pipeline_load(&cond, cond_ckpt, &err) == DM_OK, "%s", err.msg);
    CHECK(dm_pipeline_load(&unet, unet_ckpt, &err) == DM_OK, "%s", err.msg);
    CHECK(dm_classifier_load(&noisy, clf_noisy, &err) == DM_OK, "%s", err.msg);
    CHECK(dm_classifier_load(&clean, clf_clean, &err) == DM_OK, "%s", err.msg);

    /* a conditional MLP trained without the null label */
    dm_dataset pts;
    CHECK(dm_toy2d_generate(&pts, "8gaussians", 256, 5, &err) == DM_OK, "%s", err.msg);
    dm_train_config tc;
    dm_train_config_default(&tc);
    tc.mlp.hidden = 32;
    tc.mlp.temb_dim = 16;
    tc.mlp.layers = 2;
    tc.batch = 32;
    tc.steps = 2;
    tc.schedule.T = 50;
    tc.num_classes = 8;
    tc.p_uncond = 0;
    dm_trainer *tr = NULL;
    CHECK(dm_trainer_create(&tr, &tc, &pts, &err) == DM_OK, "%s", err.msg);
    if (tr) {
        dm_trainer_step(tr, NULL, &err);
        dm_trainer_step(tr, NULL, &err);
        CHECK(dm_trainer_save(tr, tu_tmp_path("nonull"), &err) == DM_OK, "%s", err.msg);
        dm_trainer_free(tr);
        CHECK(dm_pipeline_load(&nonull, tu_tmp_path("nonull"), &err) == DM_OK, "%s", err.msg);
    }
    /* trainer: labels needed, and within the classes */
    dm_dataset unl;
    CHECK(dm_dataset_init(&unl, 32, 2, &err) == DM_OK, "%s", err.msg);
    memcpy(unl.x, pts.x, 64 * sizeof(float));
    tr = NULL;
    CHECK_REFUSED(dm_trainer_create(&tr, &tc, &unl, err_), DM_ERR_ARG, "labelled");
    CHECK(tr == NULL, "a trainer was returned");
    tc.num_classes = 4; /* 8gaussians has labels up to 7 */
    CHECK_REFUSED(dm_trainer_create(&tr, &tc, &pts, err_), DM_ERR_ARG, "outside");
    CHECK(tr == NULL, "a trainer was returned");
    tc.num_classes = 8;
    tc.p_uncond = 1.5;
    CHECK_REFUSED(dm_trainer_create(&tr, &tc, &pts, err_), DM_ERR_ARG, "p_uncond");
    dm_dataset_free(&unl);

    /* classifiers that cannot guide: trained on T = 60, on 16 x 16 images */
    dm_dataset img8, img16;
    quadrant_images(&img8, 8, 8, 4);
    quadrant_images(&img16, 8, 16, 4);
    dm_classifier_config cc;
    classifier_config(&cc, 1, 60, 1);
    cc.batch = 4;
    CHECK(dm_classifier_train(&cc, &img8, tu_tmp_path("clf_t60"), NULL, NULL, NULL, &err) ==
              DM_OK,
          "%s", err.msg);
    CHECK(dm_classifier_load(&t60, tu_tmp_path("clf_t60"), &err) == DM_OK, "%s", err.msg);
    classifier_config(&cc, 1, 50, 1);
    cc.batch = 4;
    cc.net.sample_size = 16;
    CHECK(dm_classifier_train(&cc, &img16, tu_tmp_path("clf_16"), NULL, NULL, NULL, &err) ==
              DM_OK,
          "%s", err.msg);
    CHECK(dm_classifier_load(&big, tu_tmp_path("clf_16"), &err) == DM_OK, "%s", err.msg);

    /* classifier training on unlabelled images, and on labels beyond its classes */
    classifier_config(&cc, 0, 50, 1);
    cc.batch = 4;
    int32_t *keep = img8.labels;
    img8.labels = NULL;
    CHECK_REFUSED(dm_classifier_train(&cc, &img8, tu_tmp_path("clf_bad"), NULL, NULL, NULL, err_),
                  DM_ERR_ARG, "labels");
    img8.labels = keep;
    img8.labels[3] = 4;
    CHECK_REFUSED(dm_classifier_train(&cc, &img8, tu_tmp_path("clf_bad"), NULL, NULL, NULL, err_),
                  DM_ERR_ARG, "outside");
    img8.labels[3] = -1;
    CHECK_REFUSED(dm_classifier_train(&cc, &img8, tu_tmp_path("clf_bad"), NULL, NULL, NULL, err_),
                  DM_ERR_ARG, "outside");
    img8.labels[3] = 3;
    CHECK_REFUSED(dm_classifier_train(&cc, &img16, tu_tmp_path("clf_bad"), NULL, NULL, NULL, err_),
                  DM_ERR_MISMATCH, "images");
    cc.net.classifier_classes = 1;
    CHECK_REFUSED(dm_classifier_train(&cc, &img8, tu_tmp_path("clf_bad"), NULL, NULL, NULL, err_),
                  DM_ERR_ARG, "classifier_classes");
    CHECK(access(tu_tmp_path("clf_bad"), F_OK) != 0, "a refused training wrote its folder");
    /* a diffusion checkpoint is not a classifier; a missing folder is an I/O error */
    dm_classifier *none = NULL;
    CHECK_REFUSED(dm_classifier_load(&none, unet_ckpt, err_), DM_ERR_FORMAT, "not a classifier");
    CHECK(none == NULL, "a classifier was returned");
    CHECK_REFUSED(dm_classifier_load(&none, cond_ckpt, err_), DM_ERR_FORMAT, "not a classifier");
    CHECK(dm_classifier_load(&none, tu_tmp_path("no_such_folder"), &err) != DM_OK && !none,
          "a missing folder loaded");

    enum { N = 4 };
    float x[N * 64];
    int32_t labels[N] = {0, 1, 2, 7};
    dm_sample_options so;
    dm_sample_options_default(&so);
    so.sampler = DM_SAMPLER_DDIM;
    so.steps = 2;
    dm_guidance g;
    if (cond) {
        /* a class outside the model's, under cfg and without */
        labels[3] = 8;
        dm_guidance_default(&g);
        g.labels = labels;
        CHECK_REFUSED(dm_pipeline_sample_guided(cond, x, N, &so, &g, err_), DM_ERR_ARG,
                      "outside");
        g.cfg_scale = 2;
        CHECK_REFUSED(dm_pipeline_sample_guided(cond, x, N, &so, &g, err_), DM_ERR_ARG,
                      "outside");
        labels[3] = -1;
        CHECK_REFUSED(dm_pipeline_sample_guided(cond, x, N, &so, &g, err_), DM_ERR_ARG,
                      "outside");
        labels[3] = 7;
        /* cfg without classes */
        g.labels = NULL;
        CHECK_REFUSED(dm_pipeline_sample_guided(cond, x, N, &so, &g, err_), DM_ERR_ARG,
                      "--class");
        /* cfg with unconditional_model set */
        g.labels = labels;
        g.unconditional_model = 1;
        CHECK_REFUSED(dm_pipeline_sample_guided(cond, x, N, &so, &g, err_), DM_ERR_ARG,
                      "unconditional_model");
        g.unconditional_model = 0;
        /* scales that are not finite */
        g.cfg_scale = NAN;
        CHECK_REFUSED(dm_pipeline_sample_guided(cond, x, N, &so, &g, err_), DM_ERR_ARG,
                      "finite");
        g.cfg_scale = INFINITY;
        CHECK_REFUSED(dm_pipeline_sample_guided(cond, x, N, &so, &g, err_), DM_ERR_ARG,
                      "finite");
        /* a classifier scale without a classifier */
        g.cfg_scale = 0;
        g.classifier_scale = 1;
        CHECK_REFUSED(dm_pipeline_sample_guided(cond, x, N, &so, &g, err_), DM_ERR_ARG,
                      "classifier");
        /* classifier guidance of a points model */
        g.classifier = noisy;
        labels[3] = 3;
        CHECK_REFUSED(dm_pipeline_sample_guided(cond, x, N, &so, &g, err_), DM_ERR_MISMATCH,
                      "classes");
        labels[3] = 7;
        /* a learned variance the model does not have, under classifier-free guidance */
        dm_guidance_default(&g);
        g.labels = labels;
        g.cfg_scale = 2;
        so.sampler = DM_SAMPLER_ANCESTRAL;
        so.var = DM_VAR_LEARNED;
        CHECK_REFUSED(dm_pipeline_sample_guided(cond, x, N, &so, &g, err_), DM_ERR_ARG,
                      "variance");
        so.var = DM_VAR_BETA;
        so.sampler = DM_SAMPLER_DDIM;
        /* zero samples */
        dm_guidance_default(&g);
        CHECK_REFUSED(dm_pipeline_sample_guided(cond, x, 0, &so, &g, err_), DM_ERR_ARG, ">= 1");
    }
    if (nonull) {
        dm_guidance_default(&g);
        g.labels = labels;
        g.cfg_scale = 2;
        CHECK_REFUSED(dm_pipeline_sample_guided(nonull, x, N, &so, &g, err_), DM_ERR_ARG,
                      "null label");
        /* without labels there is no unconditional prediction to sample either */
        CHECK_REFUSED(dm_pipeline_sample(nonull, x, N, &so, err_), DM_ERR_ARG, "null label");
        /* but conditional sampling works */
        g.cfg_scale = 0;
        CHECK(dm_pipeline_sample_guided(nonull, x, N, &so, &g, &err) == DM_OK,
              "conditional sampling of a p_uncond 0 model: %s", err.msg);
    }
    if (unet) {
        const int32_t cl[N] = {0, 1, 2, 3};
        dm_guidance_default(&g);
        g.labels = cl;
        g.cfg_scale = 2;
        CHECK_REFUSED(dm_pipeline_sample_guided(unet, x, N, &so, &g, err_), DM_ERR_ARG,
                      "class-conditional");
        /* a class alone, without a classifier */
        g.cfg_scale = 0;
        CHECK_REFUSED(dm_pipeline_sample_guided(unet, x, N, &so, &g, err_), DM_ERR_ARG,
                      "unconditional");
        /* a classifier without classes */
        g.labels = NULL;
        g.classifier = noisy;
        g.classifier_scale = 1;
        CHECK_REFUSED(dm_pipeline_sample_guided(unet, x, N, &so, &g, err_), DM_ERR_ARG,
                      "--class");
        g.labels = cl;
        /* a class outside the classifier's */
        const int32_t cl4[N] = {0, 1, 4, 3};
        g.labels = cl4;
        CHECK_REFUSED(dm_pipeline_sample_guided(unet, x, N, &so, &g, err_), DM_ERR_ARG,
                      "outside");
        g.labels = cl;
        g.classifier = clean;
        if (clean)
            CHECK_REFUSED(dm_pipeline_sample_guided(unet, x, N, &so, &g, err_), DM_ERR_MISMATCH,
                          "clean");
        g.classifier = t60;
        if (t60)
            CHECK_REFUSED(dm_pipeline_sample_guided(unet, x, N, &so, &g, err_), DM_ERR_MISMATCH,
                          "T =");
        g.classifier = big;
        if (big)
            CHECK_REFUSED(dm_pipeline_sample_guided(unet, x, N, &so, &g, err_), DM_ERR_MISMATCH,
                          "images");
        /* dm_classifier_check_guidance directly: another shape, another schedule of equal T */
        if (noisy) {
            const dm_schedule *s = dm_pipeline_schedule(unet);
            CHECK_REFUSED(dm_classifier_check_guidance(noisy, s, 1, 16, 16, err_),
                          DM_ERR_MISMATCH, "images");
            CHECK_REFUSED(dm_classifier_check_guidance(noisy, s, 3, 8, 8, err_), DM_ERR_MISMATCH,
                          "images");
            CHECK_REFUSED(dm_classifier_check_guidance(noisy, s, 1, 8, 4, err_), DM_ERR_MISMATCH,
                          "images");
            dm_schedule_config sc;
            dm_schedule_config_default(&sc);
            sc.kind = DM_SCHEDULE_COSINE;
            sc.T = 50;
            dm_schedule cosine;
            CHECK(dm_schedule_init(&cosine, &sc, &err) == DM_OK, "%s", err.msg);
            CHECK_REFUSED(dm_classifier_check_guidance(noisy, &cosine, 1, 8, 8, err_),
                          DM_ERR_MISMATCH, "schedule");
            dm_schedule_free(&cosine);
            CHECK(dm_classifier_check_guidance(noisy, s, 1, 8, 8, &err) == DM_OK, "%s", err.msg);
        }
        if (clean)
            CHECK_REFUSED(dm_classifier_check_guidance(clean, dm_pipeline_schedule(unet), 1, 8, 8,
                                                       err_),
                          DM_ERR_MISMATCH, "clean");
    }
    dm_dataset_free(&img8);
    dm_dataset_free(&img16);
    dm_dataset_free(&pts);
    dm_classifier_free(noisy);
    dm_classifier_free(clean);
    dm_classifier_free(t60);
    dm_classifier_free(big);
    dm_pipeline_free(cond);
    dm_pipeline_free(unet);
    dm_pipeline_free(nonull);
}

int main(void) {
    dm_set_num_threads(1);
    if (tu_tmpdir_make("test_guidance")) return 1;
    struct {
        const char *name;
        void (*fn)(void);
    } tests[] = {
        {"conditional MLP gradient", test_conditional_mlp_gradient},
        {"classifier-free guidance", test_classifier_free},
        {"classifier gradient", test_classifier_gradient},
        {"classifier training", test_classifier_training},
        {"classifier guidance", test_classifier_guidance},
        {"bad input", test_bad_input},
    };
    const double start = now_s();
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
        const double t0 = now_s();
        const int before = tu_failures;
        printf("%s\n", tests[i].name);
        tests[i].fn();
        printf("  -> %s in %.2f s\n", tu_failures == before ? "ok" : "FAILED", now_s() - t0);
    }
    printf("total %.2f s\n", now_s() - start);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tu_tmpdir());
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tu_tmpdir());
    return tu_finish("test_guidance");
}
