/* Steering a pipeline's samples toward a class (seed 003, "Guidance"; MATH.md):
 *   classifier-free:  eps~ = (1 + w) eps(x_t, y) - w eps(x_t, null), the conditional and the
 *                     unconditional evaluation in one network call of twice the batch;
 *   classifier:       eps~ = eps - gamma sqrt(1 - alpha_bar_t) grad_x log p_phi(y | x_t, t).
 * Both act inside the denoiser, so every sampler of the project is guided the same way. */
#include "diffusion/diffusion_impl.h"
#include "diffusion/pipeline_impl.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

void dm_guidance_default(dm_guidance *g) {
    memset(g, 0, sizeof *g);
}

typedef struct {
    dm_pipeline *p;
    const dm_guidance *g;
    const int32_t *labels; /* (cap) the current chunk's classes, or NULL */
    int64_t cap, D;
    float *x2, *t2, *eps2, *var2; /* (2 cap, D), (2 cap): the doubled batch */
    int32_t *y2;                  /* (2 cap) classes, then null labels */
    float *grad;                  /* (cap, D) */
} guided;

static void guided_free(guided *c) {
    dm_free(c->x2), dm_free(c->t2), dm_free(c->eps2), dm_free(c->var2);
    dm_free(c->y2), dm_free(c->grad);
}

static dm_status guided_init(guided *c, dm_pipeline *p, const dm_guidance *g, int64_t cap,
                             dm_error *err) {
    memset(c, 0, sizeof *c);
    c->p = p;
    c->g = g;
    c->cap = cap;
    c->D = dm_pipeline_dim(p);
    const size_t n = (size_t)(cap * c->D);
    const bool cfg = g->cfg_scale != 0, var = dm_model_out_dim(dm_pipeline_model(p)) > c->D;
    if (cfg) {
        c->x2 = dm_alloc(2 * n * sizeof(float));
        c->t2 = dm_alloc(2 * (size_t)cap * sizeof(float));
        c->eps2 = dm_alloc(2 * n * sizeof(float));
        c->var2 = var ? dm_alloc(2 * n * sizeof(float)) : NULL;
        c->y2 = dm_alloc(2 * (size_t)cap * sizeof(int32_t));
    }
    if (g->classifier) c->grad = dm_alloc(n * sizeof(float));
    if ((cfg && (!c->x2 || !c->t2 || !c->eps2 || (var && !c->var2) || !c->y2)) ||
        (g->classifier && !c->grad)) {
        guided_free(c);
        return dm_error_set(err, DM_ERR_NOMEM, "out of memory for guided sampling of %lld",
                            (long long)cap);
    }
    return DM_OK;
}

static dm_status guided_denoise(void *ctx, float *eps, float *var, const float *x,
                                const float *t, int64_t B, dm_error *err) {
    guided *c = ctx;
    const dm_guidance *g = c->g;
    const int64_t D = c->D, n = B * D;
    const bool cond = dm_pipeline_train_config(c->p)->num_classes > 0;
    dm_status st;
    if (B > c->cap) return dm_error_set(err, DM_ERR_ARG, "guided denoise: batch above capacity");
    if (cond && g->cfg_scale != 0) {
        /* a variance the model lacks: the plain call refuses it with the usual message */
        if (var && !c->var2)
            return dm_pipeline_denoise_labels(c->p, eps, var, x, t, c->labels, B, err);
        memcpy(c->x2, x, (size_t)n * sizeof *x);
        memcpy(c->x2 + n, x, (size_t)n * sizeof *x);
        memcpy(c->t2, t, (size_t)B * sizeof *t);
        memcpy(c->t2 + B, t, (size_t)B * sizeof *t);
        memcpy(c->y2, c->labels, (size_t)B * sizeof *c->y2);
        if ((st = dm_pipeline_null_labels(c->p, c->y2 + B, B, err)) ||
            (st = dm_pipeline_denoise_labels(c->p, c->eps2, var ? c->var2 : NULL, c->x2, c->t2,
                                             c->y2, 2 * B, err)))
            return st;
        const float w = (float)g->cfg_scale;
        for (int64_t i = 0; i < n; i++) eps[i] = (1.0f + w) * c->eps2[i] - w * c->eps2[n + i];
        /* a learned variance is the conditional one (as GLIDE samples) */
        if (var) memcpy(var, c->var2, (size_t)n * sizeof *var);
    } else {
        /* no labels: an unconditional model, or a conditional one's null label */
        const int32_t *labels = cond && !g->unconditional_model ? c->labels : NULL;
        if ((st = dm_pipeline_denoise_labels(c->p, eps, var, x, t, labels, B, err))) return st;
    }
    if (g->classifier && g->classifier_scale != 0) {
        if ((st = dm_classifier_grad_log_prob(g->classifier, c->grad, x, t, c->labels, B, err)))
            return st;
        const dm_schedule *s = dm_pipeline_schedule(c->p);
        for (int64_t b = 0; b < B; b++) {
            const double ab = s->alpha_bar[lrint(t[b])]; /* t was checked by the denoiser */
            const float k = (float)(g->classifier_scale * sqrt(1.0 - ab));
            for (int64_t i = 0; i < D; i++) eps[b * D + i] -= k * c->grad[b * D + i];
        }
    }
    return DM_OK;
}

/* Everything that makes a guidance request meaningless for this pipeline, said plainly. */
static dm_status check_guidance(dm_pipeline *p, const dm_guidance *g, int64_t n, dm_error *err) {
    const dm_train_config *tc = dm_pipeline_train_config(p);
    const int32_t K = tc->num_classes;
    const int32_t KC = g->classifier ? dm_classifier_num_classes(g->classifier) : 0;
    if (!isfinite(g->cfg_scale) || !isfinite(g->classifier_scale))
        return dm_error_set(err, DM_ERR_ARG, "guidance scales must be finite");
    if (g->cfg_scale != 0 && !K)
        return dm_error_set(err, DM_ERR_ARG, "classifier-free guidance (--guidance) needs a "
                            "class-conditional model; this one was trained unconditionally "
                            "(train with --conditional, or guide with a classifier)");
    if (g->cfg_scale != 0 && g->unconditional_model)
        return dm_error_set(err, DM_ERR_ARG, "classifier-free guidance needs the conditional "
                                             "prediction (unconditional_model is set)");
    if (g->cfg_scale != 0 && !g->labels)
        return dm_error_set(err, DM_ERR_ARG, "classifier-free guidance needs the classes to "
                                             "guide toward (--class)");
    if (g->classifier_scale != 0 && !g->classifier)
        return dm_error_set(err, DM_ERR_ARG, "a classifier scale without a classifier "
                                             "(--guide-classifier)");
    if (g->classifier && !g->labels)
        return dm_error_set(err, DM_ERR_ARG, "classifier guidance needs the classes to guide "
                                             "toward (--class)");
    if (g->labels && !K && !g->classifier)
        return dm_error_set(err, DM_ERR_ARG, "a class was asked of an unconditional model: "
                            "train with --conditional, or guide with a classifier "
                            "(--guide-classifier)");
    if (g->cfg_scale != 0) {
        int32_t probe;
        dm_status st = dm_pipeline_null_labels(p, &probe, 1, err);
        if (st) return st;
    }
    for (int64_t i = 0; g->labels && i < n; i++) {
        const int32_t y = g->labels[i];
        if (K && (y < 0 || y >= K))
            return dm_error_set(err, DM_ERR_ARG, "class %d is outside 0..%d: the model has %d "
                                "classes", (int)y, (int)K - 1, (int)K);
        if (KC && (y < 0 || y >= KC))
            return dm_error_set(err, DM_ERR_ARG, "class %d is outside 0..%d: the classifier has "
                                "%d classes", (int)y, (int)KC - 1, (int)KC);
    }
    if (K && KC && K != KC)
        return dm_error_set(err, DM_ERR_MISMATCH, "the model has %d classes, the classifier %d",
                            (int)K, (int)KC);
    if (g->classifier) {
        int64_t c, h, w;
        if (!dm_model_image_shape(dm_pipeline_model(p), &c, &h, &w))
            return dm_error_set(err, DM_ERR_ARG, "classifier guidance is for image models");
        dm_status st = dm_classifier_check_guidance(g->classifier, dm_pipeline_schedule(p), c,
                                                    h, w, err);
        if (st) return st;
    }
    return DM_OK;
}

dm_status dm_pipeline_sample_guided(dm_pipeline *p, float *x, int64_t n,
                                    const dm_sample_options *opt, const dm_guidance *g,
                                    dm_error *err) {
    if (n < 1) return dm_error_set(err, DM_ERR_ARG, "number of samples must be >= 1");
    dm_guidance none;
    dm_guidance_default(&none);
    if (!g) g = &none;
    dm_status st = check_guidance(p, g, n, err);
    if (st) return st;
    const int64_t D = dm_pipeline_dim(p);
    dm_sample_options o;
    if (opt) o = *opt; else dm_sample_options_default(&o);
    /* a UNet's activations grow with the batch, and fixed chunks (chunk k from stream k) let
     * any split of the work over processes reproduce the samples: they depend on the seed and
     * the chunk size only */
    const int64_t chunk = dm_model_image_shape(dm_pipeline_model(p), NULL, NULL, NULL)
                              ? DM_PIPELINE_IMAGE_CHUNK
                              : DM_PIPELINE_POINT_CHUNK;
    /* given noise is laid out (steps, n, dim) for one call: it cannot be split into chunks */
    if (o.noise && n > chunk)
        return dm_error_set(err, DM_ERR_ARG, "sample: with given noise, at most %lld samples a "
                            "call (the chunk size)", (long long)chunk);
    int64_t step = 1;
    if ((st = dm_pipeline_chunk_step(o.chunk_first, o.chunk_step, &step, err))) return st;
    guided ctx;
    if ((st = guided_init(&ctx, p, g, chunk < n ? chunk : n, err))) return st;
    for (int64_t k = o.chunk_first; k * chunk < n && !st; k += step) {
        const int64_t start = k * chunk, B = n - start < chunk ? n - start : chunk;
        dm_sample_options ok = o;
        ok.stream = o.stream + (uint64_t)k;
        ok.x_T = o.x_T ? o.x_T + start * D : NULL; /* (n, dim): this chunk's rows */
        ctx.labels = g->labels ? g->labels + start : NULL;
        float *xk = x + start * D;
        st = dm_sample(dm_pipeline_schedule(p), guided_denoise, &ctx, xk, B, D, &ok, err);
        /* checked after de-normalising: a finite standard sample can overflow float32 there */
        if (!st) dm_normalizer_invert(dm_pipeline_normalizer(p), xk, B);
        if (!st && !dm_all_finite(xk, (size_t)(B * D)))
            st = dm_error_set(err, DM_ERR_NUMERIC, "sampling produced NaN or Inf");
    }
    guided_free(&ctx);
    return st;
}
