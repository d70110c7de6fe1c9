/* A trained pipeline as an SDE's score: a discrete model as the score of the VP SDE its linear
 * schedule discretises, a model trained in continuous time (dm_train_config.sde_training) as
 * the score of its own SDE. Its continuous-time samplers (dm_sde_sample) and its ODE likelihood
 * (the network's vector-Jacobian products from the backward pass with respect to the input,
 * and the data's standardisation or dequantisation around dm_sde_ode_nll). */
#include "diffusion/dsm.h"
#include "diffusion/pipeline_impl.h"
#include "diffusion/sde.h"

#include <math.h>
#include <string.h>

typedef struct {
    dm_pipeline *p;
    const dm_sde *sde;
    int64_t cap;      /* rows the buffers hold */
    float *out;       /* (cap, out_dim) */
    float *dout;      /* (cap, out_dim) */
    float *gx;        /* (cap, dim) */
    float *xin;       /* (cap, dim) the network's scaled input (continuous-time models) */
    float *tb;        /* (cap) */
} pipe_score;

static void pipe_score_free(pipe_score *c) {
    dm_free(c->out), dm_free(c->dout), dm_free(c->gx), dm_free(c->xin), dm_free(c->tb);
    c->out = c->dout = c->gx = c->xin = c->tb = NULL;
}

static dm_status ensure(pipe_score *c, int64_t B, dm_error *err) {
    if (B <= c->cap) return DM_OK;
    const int64_t D = dm_model_dim(c->p->model), OD = dm_model_out_dim(c->p->model);
    pipe_score_free(c);
    c->cap = 0;
    c->out = dm_alloc((size_t)(B * OD) * sizeof(float));
    c->dout = dm_alloc((size_t)(B * OD) * sizeof(float));
    c->gx = dm_alloc((size_t)(B * D) * sizeof(float));
    c->xin = dm_alloc((size_t)(B * D) * sizeof(float));
    c->tb = dm_alloc((size_t)B * sizeof(float));
    if (!c->out || !c->dout || !c->gx || !c->xin || !c->tb)
        return dm_error_set(err, DM_ERR_NOMEM, "ode nll: out of memory for %lld rows",
                            (long long)B);
    c->cap = B;
    return DM_OK;
}

/* The network at t (T - 1) as dm_sde_denoiser_score calls it; *k_x, *k_out: score = k_x x +
 * k_out out (the prediction converted to eps, times -1 / sqrt(1 - alpha_bar)); *k_in: d(the
 * network's input) / dx. A model trained in continuous time sees x scaled (dsm.h) and its
 * output is -std(t) times the score. */
static dm_status forward(pipe_score *c, const float *x, double t, int64_t B, int train,
                         double *k_x, double *k_out, double *k_in, dm_error *err) {
    /* a class-conditional model: its null label (the pipeline's buffer) */
    const int32_t *labels;
    dm_status st = ensure(c, B, err);
    if (st || (st = dm_pipeline_default_labels(c->p, &labels, B, err))) return st;
    const dm_schedule *s = &c->p->sched;
    const int32_t T = s->T;
    if (c->p->cfg.train.sde_training) {
        const int64_t D = dm_model_dim(c->p->model);
        const double in = dm_dsm_input_scale(c->sde, t);
        double std;
        dm_sde_marginal(c->sde, t, NULL, &std);
        for (int64_t j = 0; j < B * D; j++) c->xin[j] = (float)(in * x[j]);
        for (int64_t b = 0; b < B; b++) c->tb[b] = (float)dm_dsm_time_input(t, T);
        if ((st = dm_model_forward_cond(c->p->model, c->out, c->xin, c->tb, labels, B, train,
                                        err)))
            return st;
        *k_x = 0;
        *k_out = -1.0 / std;
        *k_in = in;
        return DM_OK;
    }
    *k_in = 1;
    double label = t * (double)(T - 1);
    label = label < 0 ? 0 : label > T - 1 ? T - 1 : label;
    const int32_t i = (int32_t)floor(label);
    for (int64_t b = 0; b < B; b++) c->tb[b] = (float)label;
    if ((st = dm_model_forward_cond(c->p->model, c->out, x, c->tb, labels, B, train, err)))
        return st;
    double a, bb;
    dm_prediction_to_eps_coeffs(c->p->cfg.train.prediction, s->alpha_bar[i], &a, &bb);
    const double sc = -1.0 / sqrt(1.0 - s->alpha_bar[i]);
    *k_x = sc * a;
    *k_out = sc * bb;
    return DM_OK;
}

static dm_status pipe_score_fn(void *vc, float *score, const float *x, double t, int64_t B,
                               int64_t dim, dm_error *err) {
    pipe_score *c = vc;
    double kx, ko, ki;
    dm_status st = forward(c, x, t, B, 0, &kx, &ko, &ki, err);
    if (st) return st;
    const int64_t OD = dm_model_out_dim(c->p->model);
    for (int64_t b = 0; b < B; b++)
        for (int64_t d = 0; d < dim; d++)
            score[b * dim + d] = (float)(kx * x[b * dim + d] + ko * c->out[b * OD + d]);
    return DM_OK;
}

/* v^T J = k_x v + k_out v^T (d out / d x): one training forward (it keeps the activations)
 * and one backward pass with respect to the input. */
static dm_status pipe_vjp_fn(void *vc, float *score, float *vjp, const float *x, const float *v,
                             double t, int64_t B, int64_t dim, dm_error *err) {
    pipe_score *c = vc;
    double kx, ko, ki;
    dm_status st = forward(c, x, t, B, 1, &kx, &ko, &ki, err);
    if (st) return st;
    dm_model *m = c->p->model;
    const int64_t OD = dm_model_out_dim(m);
    memset(c->dout, 0, (size_t)(B * OD) * sizeof(float)); /* a variance output gets no gradient */
    for (int64_t b = 0; b < B; b++)
        for (int64_t d = 0; d < dim; d++) c->dout[b * OD + d] = v[b * dim + d];
    memset(c->gx, 0, (size_t)(B * dim) * sizeof(float));
    /* the backward pass also adds parameter gradients, unused here: cleared so they cannot grow */
    memset(dm_model_grads(m), 0, dm_model_num_params(m) * sizeof(float));
    dm_model_backward_input(m, c->dout, c->gx, B);
    for (int64_t b = 0; b < B; b++)
        for (int64_t d = 0; d < dim; d++) {
            const int64_t j = b * dim + d;
            score[j] = (float)(kx * x[j] + ko * c->out[b * OD + d]);
            vjp[j] = (float)(kx * v[j] + ko * ki * c->gx[j]);
        }
    return DM_OK;
}

/* The VP SDE a linear schedule discretises (score_sde's DDPM: beta_i = beta(t) / T). A diffusers
 * pipeline's betas are its scheduler's, linear to float32's precision (torch.linspace in
 * float32); its schedule's come back from alpha_bar's float32 cumulative product, linear only to
 * about 1e-3. */
static dm_status vp_of_pipeline(const dm_pipeline *p, dm_sde *sde, const char *what,
                                dm_error *err) {
    const int32_t T = p->sched.T;
    const double *beta = p->has_scheduler ? p->scheduler.betas : p->sched.beta;
    const double b0 = beta[0], b1 = beta[T - 1];
    for (int32_t i = 0; i < T; i++) {
        const double want = T > 1 ? b0 + (b1 - b0) * i / (T - 1) : b0;
        if (fabs(beta[i] - want) > 1e-6 * fabs(want) + 1e-15)
            return dm_error_set(err, DM_ERR_ARG,
                                "%s: the model's schedule is not linear in beta (step %d: %g, "
                                "linear would be %g); a discrete model is the VP SDE's score "
                                "only on the linear schedule that SDE discretises",
                                what, (int)i, beta[i], want);
    }
    dm_sde_default(sde, DM_SDE_VP);
    sde->beta_min = b0 * T;
    sde->beta_max = b1 * T;
    return DM_OK;
}

dm_status dm_pipeline_ode_nll(dm_pipeline *p, const dm_sde *sde_in, const dm_dataset *data,
                              const dm_ode_nll_options *o, dm_ode_nll_report *r,
                              dm_error *err) {
    const int64_t D = dm_pipeline_dim(p);
    if (data && !data->x) return dm_error_set(err, DM_ERR_ARG, "%s: the data are uint8 pixels; convert them with dm_dataset_to_float", "ode nll");
    if (!data || data->n < 1 || data->dim != D)
        return dm_error_set(err, DM_ERR_MISMATCH, "ode nll: the data have dimension %lld, the "
                            "model %lld", data ? (long long)data->dim : 0LL, (long long)D);
    dm_sde sde;
    dm_status st;
    if (p->cfg.train.sde_training) {
        sde = p->cfg.train.sde;
        if (sde_in && sde_in->kind != sde.kind)
            return dm_error_set(err, DM_ERR_ARG, "ode nll: this model was trained on the %s SDE "
                                "and is the score of that one only (asked: %s)",
                                dm_sde_kind_name(sde.kind), dm_sde_kind_name(sde_in->kind));
    } else if (sde_in) {
        if (sde_in->kind != DM_SDE_VP)
            return dm_error_set(err, DM_ERR_ARG,
                                "ode nll: a discrete eps model is the score of the VP SDE only "
                                "(asked: %s; allowed: vp)", dm_sde_kind_name(sde_in->kind));
        sde = *sde_in;
    } else if ((st = vp_of_pipeline(p, &sde, "ode nll", err))) {
        return st;
    }
    if (p->cfg.train.num_classes > 0 && p->cfg.train.p_uncond <= 0)
        return dm_pipeline_null_labels(p, NULL, 0, err); /* its message: no null label */
    const int images = dm_model_image_shape(p->model, NULL, NULL, NULL);
    dm_dataset x = {0};
    if ((st = dm_dataset_init(&x, data->n, D, err))) return st;
    memcpy(x.x, data->x, (size_t)(data->n * D) * sizeof(float));
    double log_det = 0.0;
    const dm_normalizer *nz = &p->cfg.norm;
    if (images) {
        /* score_sde: (k + u) / 256 for pixel k, u ~ U(0, 1), then to [-1, 1) */
        dm_rng rng;
        dm_rng_init(&rng, o->seed, 1u << 20);
        float *u = dm_alloc((size_t)(x.n * D) * sizeof(float));
        if (!u) {
            dm_dataset_free(&x);
            return dm_error_set(err, DM_ERR_NOMEM, "ode nll: out of memory");
        }
        dm_rng_uniform(&rng, u, (size_t)(x.n * D));
        for (int64_t j = 0; j < x.n * D; j++) {
            if (!(x.x[j] >= -1.0f && x.x[j] <= 1.0f)) {
                dm_free(u);
                dm_dataset_free(&x);
                return dm_error_set(err, DM_ERR_ARG, "ode nll: image values must lie in [-1, 1]");
            }
            const double k = nearbyint(((double)x.x[j] + 1.0) * 127.5);
            x.x[j] = (float)(2.0 * (k + (double)u[j]) / 256.0 - 1.0);
        }
        dm_free(u);
        log_det = (double)D * log(128.0);
    } else if (nz->dim == D) {
        dm_normalizer_apply(nz, x.x, x.n);
        for (int64_t d = 0; d < D; d++) log_det += log(nz->std[d]);
    }
    pipe_score c = {.p = p, .sde = &sde};
    /* a UNet's training forward applies its dropout: its products come from differences */
    const int vjp_ok = p->cfg.train.arch != DM_ARCH_UNET || p->cfg.train.unet.dropout == 0;
    st = dm_sde_ode_nll(&sde, pipe_score_fn, vjp_ok ? pipe_vjp_fn : NULL, &c, x.x, x.n, D, o, r,
                        err);
    pipe_score_free(&c);
    dm_dataset_free(&x);
    if (st) return st;
    r->log_det = log_det;
    r->nll += log_det;
    if (o->per_example)
        for (int64_t j = 0; j < data->n; j++) o->per_example[j] += log_det;
    r->bpd = r->nll / ((double)D * log(2.0));
    return DM_OK;
}

dm_status dm_pipeline_sde_sample(dm_pipeline *p, float *x, int64_t n,
                                 const dm_sde_sample_options *opt, dm_sde_sample_stats *stats,
                                 dm_error *err) {
    if (n < 1) return dm_error_set(err, DM_ERR_ARG, "sde sample: n must be >= 1 (got %lld)",
                                   (long long)n);
    dm_sde sde = p->cfg.train.sde;
    dm_status st = p->cfg.train.sde_training ? DM_OK : vp_of_pipeline(p, &sde, "sde sample", err);
    if (st) return st;
    if (p->cfg.train.num_classes > 0 && p->cfg.train.p_uncond <= 0)
        return dm_pipeline_null_labels(p, NULL, 0, err); /* its message: no null label */
    const int64_t D = dm_pipeline_dim(p);
    dm_sde_sample_options o;
    if (opt) o = *opt; else dm_sde_sample_options_default(&o);
    /* as dm_pipeline_sample: in chunks (a UNet's activations grow with the batch), chunk k
     * from stream opt->stream + k */
    const int images = dm_model_image_shape(p->model, NULL, NULL, NULL);
    const int64_t chunk = images ? DM_PIPELINE_IMAGE_CHUNK : DM_PIPELINE_POINT_CHUNK;
    if (o.noise && n > chunk) /* laid out (S, n, dim) for one call: not splittable */
        return dm_error_set(err, DM_ERR_ARG, "sde sample: with given noise, at most %lld %s a "
                            "call (the chunk size)", (long long)chunk, images ? "images" : "points");
    int64_t step = 1;
    if ((st = dm_pipeline_chunk_step(o.chunk_first, o.chunk_step, &step, err))) return st;
    if (stats) *stats = (dm_sde_sample_stats){0};
    pipe_score c = {.p = p, .sde = &sde};
    for (int64_t k = o.chunk_first; k * chunk < n && !st; k += step) {
        const int64_t start = k * chunk, B = n - start < chunk ? n - start : chunk;
        dm_sde_sample_options ok = o;
        ok.stream = o.stream + (uint64_t)k;
        ok.x_T = o.x_T ? o.x_T + start * D : NULL;
        dm_sde_sample_stats sk;
        float *xk = x + start * D;
        st = dm_sde_sample(&sde, pipe_score_fn, &c, xk, B, D, &ok, &sk, err);
        if (!st && stats) {
            stats->score_evals += sk.score_evals;
            stats->steps += sk.steps;
            stats->rejected += sk.rejected;
        }
        /* in data units as dm_pipeline_sample gives them (images: the identity); checked
         * after, as there: a finite standard sample can overflow float32 when de-normalised */
        if (!st) dm_normalizer_invert(dm_pipeline_normalizer(p), xk, B);
        if (!st && !dm_all_finite(xk, (size_t)(B * D)))
            st = dm_error_set(err, DM_ERR_NUMERIC, "sde sample: sampling produced NaN or Inf");
    }
    pipe_score_free(&c);
    return st;
}
