/* The time-conditioned MLP for low-dimensional data (the PyTorch reference mlp2d):
 *   temb = SiLU(time_mlp(sinusoid_E(t)) [+ cls[y]])    time_mlp: Linear(E, H); cls (K, H)
 *   a_0  = SiLU(net.0([x, temb]))                       net.0: Linear(D + H, H)
 *   a_k  = SiLU(net.{2k}(a_{k-1})), 0 < k < L           net.{2k}: Linear(H, H)
 *   out  = net.{2L}(a_{L-1})                            net.{2L}: Linear(H, D)
 * net.0 is applied in two pieces, W0[:, D:] temb (a GEMM) and W0[:, :D] x (D terms a row, a
 * plain loop), so the concatenation is never built. When every t of an inference batch is the
 * same (the sampler's case), the time path runs for one row and b0 + W0[:, D:] temb becomes a
 * per-call bias: mathematically the same network, without the time path and most of net.0. */
#include "models/mlp.h"

#include "nn/nn.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Limits that keep sizes far from overflow and the tensors within DM_MODEL_MAX_TENSORS. */
#define MLP_MAX_WIDTH 65536
#define MLP_MAX_LAYERS ((DM_MODEL_MAX_TENSORS - 3) / 2 - 1) /* + time_mlp, class embedding */

/* get_timestep_embedding arguments of the reference model */
#define MLP_FLIP_SIN_TO_COS true
#define MLP_FREQ_SHIFT 0.0
#define MLP_MAX_PERIOD 10000.0

typedef struct {
    dm_mlp_config cfg;
    size_t wt, bt;   /* offsets of time_mlp.weight (H, E) and time_mlp.bias (H) */
    size_t cls;      /* offset of class_embedding.weight (K, H), when K > 0 */
    size_t *w, *b;   /* (L + 1) offsets of net.{2k}.weight and net.{2k}.bias */
    int64_t cap;     /* batch capacity of the activation arena */
    int64_t train_B; /* batch of the last training forward; 0 once its activations are gone */
    dm_arena arena;
    /* activations, carved from the arena for cap rows */
    float *xin;      /* (cap, D) the input x, kept for net.0's weight gradient */
    float *emb;      /* (cap, E) sinusoidal embedding */
    float *tpre;     /* (cap, H) time_mlp output before SiLU */
    float *temb;     /* (cap, H) SiLU(tpre) */
    float **pre;     /* L x (cap, H) pre-activations of the hidden layers */
    float **act;     /* L x (cap, H) their SiLU outputs */
    float *g0, *g1;  /* (cap, H) gradient scratch */
    float *wx;       /* (D, H) W0[:, :D] transposed, for the x piece of net.0 */
    float *bias0;    /* (H) b0 + W0[:, D:] temb, for a batch with one t */
    int32_t *labels; /* (cap) labels of the last training forward */
    bool has_labels;
} mlp_impl;

void dm_mlp_config_default(dm_mlp_config *cfg) {
    cfg->dim = 2;
    cfg->hidden = 256;
    cfg->temb_dim = 128;
    cfg->layers = 3;
    cfg->out_dim = 0;
    cfg->num_classes = 0;
}

double dm_mlp_macs_per_example(const dm_mlp_config *cfg) {
    const double D = (double)cfg->dim, H = (double)cfg->hidden, E = (double)cfg->temb_dim;
    const double L = (double)cfg->layers;
    const double O = cfg->out_dim ? (double)cfg->out_dim : D;
    return E * H + (D + H) * H + (L - 1) * H * H + H * O;
}

static const dm_model_ops mlp_ops;

const dm_mlp_config *dm_mlp_get_config(const dm_model *m) {
    if (!m || m->ops != &mlp_ops) return NULL;
    return &((const mlp_impl *)m->impl)->cfg;
}

/* ---- activation arena ---------------------------------------------------------------------- */

static size_t arena_bytes(const dm_mlp_config *c, int64_t cap) {
    const size_t B = (size_t)cap, D = (size_t)c->dim, H = (size_t)c->hidden;
    const size_t E = (size_t)c->temb_dim, L = (size_t)c->layers;
    return dm_arena_piece_bytes(B * D) + dm_arena_piece_bytes(B * E) +
           (4 + 2 * L) * dm_arena_piece_bytes(B * H) + dm_arena_piece_bytes(D * H) +
           dm_arena_piece_bytes(H) + dm_arena_piece_bytes(B);
}

/* Makes room for B rows: the only allocation a forward pass can make. */
static dm_status ensure_capacity(mlp_impl *im, int64_t B, dm_error *err) {
    if (B <= im->cap) return DM_OK;
    const dm_mlp_config *c = &im->cfg;
    dm_arena_free(&im->arena);
    im->cap = 0;
    im->train_B = 0;
    dm_status st = dm_arena_init(&im->arena, arena_bytes(c, B), err);
    if (st) {
        dm_error_prefix(err, "MLP activations for batch %lld", (long long)B);
        return st; /* not dm_error_prefix's value: DM_OK when err is NULL */
    }
    const size_t n = (size_t)B, H = (size_t)c->hidden;
    im->xin = dm_arena_floats(&im->arena, n * (size_t)c->dim);
    im->emb = dm_arena_floats(&im->arena, n * (size_t)c->temb_dim);
    im->tpre = dm_arena_floats(&im->arena, n * H);
    im->temb = dm_arena_floats(&im->arena, n * H);
    for (int64_t k = 0; k < c->layers; k++) {
        im->pre[k] = dm_arena_floats(&im->arena, n * H);
        im->act[k] = dm_arena_floats(&im->arena, n * H);
    }
    im->g0 = dm_arena_floats(&im->arena, n * H);
    im->g1 = dm_arena_floats(&im->arena, n * H);
    im->wx = dm_arena_floats(&im->arena, (size_t)c->dim * H);
    im->bias0 = dm_arena_floats(&im->arena, H);
    im->labels = (int32_t *)dm_arena_floats(&im->arena, n); /* int32 and float share a size */
    im->cap = B;
    return DM_OK;
}

/* ---- forward ------------------------------------------------------------------------------- */

/* y (B, H) = bias (H) + x (B, D) v (D, H) for the small D, row by row along contiguous rows of v;
 * bias NULL means zero. Used for the x piece of net.0 (v = W0[:, :D] transposed) and for the
 * output layer's input gradient (v = W_L). */
DM_VECTOR_KERNEL
static void small_d_product(float *y, const float *x, const float *v, const float *bias,
                            int64_t B, int64_t D, int64_t H) {
#pragma omp parallel for schedule(static) if (B * H >= DM_PARALLEL_MIN)
    for (int64_t r = 0; r < B; r++) {
        float *row = y + r * H;      /* (H) */
        const float *xr = x + r * D; /* (D) */
        if (bias)
            memcpy(row, bias, (size_t)H * sizeof *row);
        else
            memset(row, 0, (size_t)H * sizeof *row);
        for (int64_t d = 0; d < D; d++) {
            const float xd = xr[d];
            const float *vd = v + d * H; /* (H) */
#pragma omp simd
            for (int64_t j = 0; j < H; j++) row[j] += xd * vd[j];
        }
    }
}

/* wx (D, H) = W0[:, :D]^T, W0 (H, D + H) */
static void transpose_x_columns(float *wx, const float *w0, int64_t D, int64_t H) {
    for (int64_t j = 0; j < H; j++)
        for (int64_t d = 0; d < D; d++) wx[d * H + j] = w0[j * (D + H) + d];
}

/* The time path for B rows: emb, tpre (+ each row's class embedding), temb. */
static void time_path(const dm_model *m, mlp_impl *im, const float *t, const int32_t *labels,
                      int64_t B) {
    const dm_mlp_config *c = &im->cfg;
    const int64_t H = c->hidden;
    const float *p = m->params;
    dm_timestep_embedding(im->emb, t, B, c->temb_dim, MLP_FLIP_SIN_TO_COS, MLP_FREQ_SHIFT,
                          MLP_MAX_PERIOD);
    dm_linear_forward(im->tpre, im->emb, p + im->wt, p + im->bt, B, c->temb_dim, H);
    if (labels)
        for (int64_t r = 0; r < B; r++) {
            const float *row = p + im->cls + (int64_t)labels[r] * H; /* (H) */
            for (int64_t j = 0; j < H; j++) im->tpre[r * H + j] += row[j];
        }
    dm_silu_forward(im->temb, im->tpre, (size_t)(B * H));
}

static bool all_equal(const float *t, int64_t B) {
    for (int64_t r = 1; r < B; r++)
        if (t[r] != t[0]) return false;
    return true;
}

static dm_status mlp_forward(dm_model *m, float *out, const float *x, const float *t,
                             const int32_t *labels, int64_t B,
                             int train, dm_error *err) {
    mlp_impl *im = m->impl;
    const dm_mlp_config *c = &im->cfg;
    const int64_t D = c->dim, H = c->hidden, L = c->layers;
    if (c->num_classes && !labels)
        return dm_error_set(err, DM_ERR_ARG, "MLP forward: this model is class-conditional "
                                             "(%lld classes) and needs labels",
                            (long long)c->num_classes);
    dm_status st = ensure_capacity(im, B, err);
    if (st) return st;
    const float *p = m->params;
    const float *w0 = p + im->w[0]; /* (H, D + H) */
    const bool keep = train != 0;   /* keep the activations for backward */
    im->train_B = 0;
    transpose_x_columns(im->wx, w0, D, H);

    /* net.0: pre0 = b0 + W0[:, :D] x + W0[:, D:] temb */
    if (!keep && !labels && all_equal(t, B)) {
        time_path(m, im, t, NULL, 1);
        memcpy(im->bias0, p + im->b[0], (size_t)H * sizeof(float));
        dm_sgemm(false, true, 1, H, H, 1.0f, im->temb, H, w0 + D, D + H, 1.0f, im->bias0, H);
        small_d_product(im->pre[0], x, im->wx, im->bias0, B, D, H);
    } else {
        time_path(m, im, t, labels, B);
        small_d_product(im->pre[0], x, im->wx, p + im->b[0], B, D, H);
        dm_sgemm(false, true, B, H, H, 1.0f, im->temb, H, w0 + D, D + H, 1.0f, im->pre[0], H);
    }
    /* inference keeps nothing, so each SiLU writes over its input */
    float **act = keep ? im->act : im->pre;
    dm_silu_forward(act[0], im->pre[0], (size_t)(B * H));
    for (int64_t k = 1; k < L; k++) {
        dm_linear_forward(im->pre[k], act[k - 1], p + im->w[k], p + im->b[k], B, H, H);
        dm_silu_forward(act[k], im->pre[k], (size_t)(B * H));
    }
    dm_linear_forward(out, act[L - 1], p + im->w[L], p + im->b[L], B, H, m->out_dim);
    if (keep) {
        memcpy(im->xin, x, (size_t)(B * D) * sizeof *x);
        im->has_labels = labels != NULL;
        if (labels) memcpy(im->labels, labels, (size_t)B * sizeof *labels);
        im->train_B = B;
    }
    return DM_OK;
}

/* ---- backward ------------------------------------------------------------------------------ */

static void mlp_backward(dm_model *m, const float *dout, float *dx, int64_t B) {
    mlp_impl *im = m->impl;
    const dm_mlp_config *c = &im->cfg;
    const int64_t D = c->dim, H = c->hidden, E = c->temb_dim, L = c->layers;
    assert(im->train_B == B && "backward needs a training forward of the same batch just before");
    const float *p = m->params;
    float *g = m->grads;
    float *d = im->g0, *dnext = im->g1; /* (B, H) gradients of the current and next layer input */

    /* output layer; d = dout W_L is written, not added (scratch) */
    const int64_t O = m->out_dim;
    dm_linear_backward(NULL, g + im->w[L], g + im->b[L], dout, im->act[L - 1], p + im->w[L], B,
                       H, O);
    small_d_product(d, dout, p + im->w[L], NULL, B, O, H);
    for (int64_t k = L - 1; k >= 1; k--) {
        dm_silu_backward_inplace(d, im->pre[k], (size_t)(B * H));
        dm_linear_backward(NULL, g + im->w[k], g + im->b[k], d, im->act[k - 1], p + im->w[k], B,
                           H, H);
        dm_sgemm(false, false, B, H, H, 1.0f, d, H, p + im->w[k], H, 0.0f, dnext, H);
        float *swap = d;
        d = dnext;
        dnext = swap;
    }
    /* net.0, in its two column pieces of W0 (H, D + H) */
    dm_silu_backward_inplace(d, im->pre[0], (size_t)(B * H));
    float *gw0 = g + im->w[0]; /* (H, D + H) */
    /* W0[:, :D] += d^T x, written through a transposed view: element (k, j) at gw0[k + j (D+H)] */
    dm_gemm_tn_skinny(gw0, 1, D + H, im->xin, D, d, H, B, D, H);
    dm_sgemm(true, false, H, H, B, 1.0f, d, H, im->temb, H, 1.0f, gw0 + D, D + H);
    dm_bias_backward(g + im->b[0], d, B, H);
    /* dx (B, D) += d W0[:, :D] */
    if (dx) dm_sgemm(false, false, B, D, H, 1.0f, d, H, p + im->w[0], D + H, 1.0f, dx, D);
    /* time path: dtemb = d W0[:, D:] */
    dm_sgemm(false, false, B, H, H, 1.0f, d, H, p + im->w[0] + D, D + H, 0.0f, dnext, H);
    dm_silu_backward_inplace(dnext, im->tpre, (size_t)(B * H));
    if (im->has_labels)
        for (int64_t r = 0; r < B; r++) {
            float *row = g + im->cls + (int64_t)im->labels[r] * H; /* (H) */
            for (int64_t j = 0; j < H; j++) row[j] += dnext[r * H + j];
        }
    dm_linear_backward(NULL, g + im->wt, g + im->bt, dnext, im->emb, p + im->wt, B, E, H);
}

/* ---- creation ------------------------------------------------------------------------------ */

static void mlp_free_impl(void *impl) {
    mlp_impl *im = impl;
    if (!im) return;
    dm_arena_free(&im->arena);
    free(im->w);
    free(im->b);
    free(im->pre);
    free(im->act);
    free(im);
}

static const dm_model_ops mlp_ops = {
    .type = "mlp",
    .forward = mlp_forward,
    .backward = mlp_backward,
    .free_impl = mlp_free_impl,
};

static dm_status check_config(const dm_mlp_config *c, dm_error *err) {
    if (c->dim < 1 || c->dim > DM_MAX_DIM)
        return dm_error_set(err, DM_ERR_ARG, "mlp dim %lld: must be 1..%d", (long long)c->dim,
                            DM_MAX_DIM);
    if (c->hidden < 1 || c->hidden > MLP_MAX_WIDTH)
        return dm_error_set(err, DM_ERR_ARG, "mlp hidden %lld: must be 1..%d",
                            (long long)c->hidden, MLP_MAX_WIDTH);
    if (c->temb_dim < 2 || c->temb_dim > MLP_MAX_WIDTH || c->temb_dim % 2)
        return dm_error_set(err, DM_ERR_ARG, "mlp temb_dim %lld: must be even and 2..%d",
                            (long long)c->temb_dim, MLP_MAX_WIDTH);
    if (c->out_dim != 0 && c->out_dim != c->dim && c->out_dim != 2 * c->dim)
        return dm_error_set(err, DM_ERR_ARG, "mlp out_dim %lld: must be 0, dim or 2 dim",
                            (long long)c->out_dim);
    if (c->num_classes < 0 || c->num_classes > 1000000)
        return dm_error_set(err, DM_ERR_ARG, "mlp num_classes %lld: must be 0..1000000",
                            (long long)c->num_classes);
    if (c->layers < 1 || c->layers > MLP_MAX_LAYERS)
        return dm_error_set(err, DM_ERR_ARG, "mlp layers %lld: must be 1..%d",
                            (long long)c->layers, MLP_MAX_LAYERS);
    return DM_OK;
}

/* Registers a Linear(in, out) as name.weight (out, in) and name.bias (out). */
static void add_linear(dm_model *m, const char *name, int64_t in, int64_t out, size_t *w,
                       size_t *b) {
    char full[DM_TENSOR_NAME_MAX];
    snprintf(full, sizeof full, "%s.weight", name);
    *w = dm_model_add_tensor(m, full, 2, (const int64_t[]){out, in});
    snprintf(full, sizeof full, "%s.bias", name);
    *b = dm_model_add_tensor(m, full, 1, (const int64_t[]){out});
}

/* PyTorch's nn.Linear default: weight and bias uniform in +-1/sqrt(fan_in), fan_in = in; the
 * class embedding N(0, 1) as nn.Embedding's. */
static void init_params(dm_model *m, uint64_t seed) {
    dm_rng rng;
    dm_rng_init(&rng, seed, 1);
    for (int i = 0; i < m->n_tensors; i++) {
        const dm_param_tensor *pt = &m->tensors[i];
        if (strcmp(pt->name, "class_embedding.weight") == 0) {
            dm_rng_normal(&rng, m->params + pt->offset,
                          (size_t)(pt->shape[0] * pt->shape[1]));
            continue;
        }
        /* a bias follows its weight, whose shape[1] is the fan-in */
        const int64_t fan_in = pt->ndim == 2 ? pt->shape[1] : m->tensors[i - 1].shape[1];
        const float bound = (float)(1.0 / sqrt((double)fan_in));
        const size_t n = (size_t)pt->shape[0] * (pt->ndim == 2 ? (size_t)pt->shape[1] : 1);
        float *v = m->params + pt->offset; /* (n) */
        dm_rng_uniform(&rng, v, n);
        for (size_t j = 0; j < n; j++) v[j] = (2.0f * v[j] - 1.0f) * bound;
    }
}

double dm_mlp_num_params(const dm_mlp_config *cfg) {
    if (check_config(cfg, NULL)) return 0;
    const double D = (double)cfg->dim, H = (double)cfg->hidden, E = (double)cfg->temb_dim;
    const double OD = cfg->out_dim ? (double)cfg->out_dim : D;
    double n = E * H + H; /* time_mlp */
    for (int64_t k = 0; k <= cfg->layers; k++) {
        const double in = k == 0 ? D + H : H, out = k == cfg->layers ? OD : H;
        n += in * out + out; /* net.2k */
    }
    return n + (double)cfg->num_classes * H; /* class_embedding */
}

dm_status dm_mlp_create(dm_model **out, const dm_mlp_config *cfg, uint64_t seed, dm_error *err) {
    *out = NULL;
    dm_status st = check_config(cfg, err);
    if (st) return st;
    const int64_t D = cfg->dim, H = cfg->hidden, E = cfg->temb_dim, L = cfg->layers;
    dm_model *m = calloc(1, sizeof *m);
    mlp_impl *im = calloc(1, sizeof *im);
    if (m) {
        m->ops = &mlp_ops;
        m->impl = im;
        m->dim = D;
        m->out_dim = cfg->out_dim ? cfg->out_dim : D;
        m->num_classes = (int32_t)cfg->num_classes;
    }
    if (im) {
        im->cfg = *cfg;
        im->w = calloc((size_t)L + 1, sizeof *im->w);
        im->b = calloc((size_t)L + 1, sizeof *im->b);
        im->pre = calloc((size_t)L, sizeof *im->pre);
        im->act = calloc((size_t)L, sizeof *im->act);
    }
    if (!m || !im || !im->w || !im->b || !im->pre || !im->act) {
        if (m) dm_model_free(m);
        else mlp_free_impl(im);
        return dm_error_set(err, DM_ERR_NOMEM, "cannot allocate the MLP");
    }
    add_linear(m, "time_mlp", E, H, &im->wt, &im->bt);
    for (int64_t k = 0; k <= L; k++) {
        char name[32];
        snprintf(name, sizeof name, "net.%lld", (long long)(2 * k));
        add_linear(m, name, k == 0 ? D + H : H, k == L ? m->out_dim : H, &im->w[k], &im->b[k]);
    }
    /* last, so an unconditional model's tensors keep their offsets */
    if (cfg->num_classes)
        im->cls = dm_model_add_tensor(m, "class_embedding.weight", 2,
                                      (const int64_t[]){cfg->num_classes, H});
    if ((st = dm_model_alloc_params(m, err))) {
        dm_model_free(m);
        return st;
    }
    init_params(m, seed);
    *out = m;
    return DM_OK;
}
