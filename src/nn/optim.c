/* Adam / AdamW with a learning-rate schedule (diffusers' get_scheduler: linear warm-up, then
 * constant, linear, cosine, cosine with hard restarts or polynomial decay), gradient clipping and
 * an EMA of the weights. The update follows torch.optim.Adam / AdamW (single-tensor path)
 * operation for operation. */
#include "nn.h"

#include <math.h>
#include <stdbool.h>
#include <string.h>

#if defined(__SSE2__)
#include <immintrin.h>
#endif

void dm_optim_config_default(dm_optim_config *cfg) {
    cfg->lr = 1e-3;
    cfg->beta1 = 0.9;
    cfg->beta2 = 0.999;
    cfg->eps = 1e-8;
    cfg->weight_decay = 0.0;
    cfg->warmup = 100;
    cfg->grad_clip = 1.0;
    cfg->ema_decay = 0.999;
    cfg->lr_schedule = DM_LR_CONSTANT_WITH_WARMUP;
    cfg->lr_num_cycles = 1;
    cfg->lr_power = 1.0;
    cfg->lr_end = 1e-7;
}

/* ---- learning-rate schedules: diffusers' optimization.py (v0.31), lr_lambda for lr_lambda */

static const char *const lr_names[] = {"constant_with_warmup", "constant", "linear", "cosine",
                                       "cosine_with_restarts", "polynomial"};
enum { LR_COUNT = (int)(sizeof lr_names / sizeof lr_names[0]) };

const char *dm_lr_schedule_name(dm_lr_schedule s) {
    return (int)s >= 0 && (int)s < LR_COUNT ? lr_names[s] : "unknown";
}

dm_status dm_lr_schedule_parse(const char *name, dm_lr_schedule *out, dm_error *err) {
    for (int k = 0; name && k < LR_COUNT; k++) {
        /* diffusers' names; a hyphen is taken for an underscore (cosine-with-restarts) */
        size_t i = 0;
        for (; name[i] && lr_names[k][i]; i++)
            if (name[i] != lr_names[k][i] && !(name[i] == '-' && lr_names[k][i] == '_')) break;
        if (!name[i] && !lr_names[k][i]) {
            *out = (dm_lr_schedule)k;
            return DM_OK;
        }
    }
    if (name && strcmp(name, "piecewise_constant") == 0)
        return dm_error_set(err, DM_ERR_ARG, "lr scheduler 'piecewise_constant' is not supported "
                            "(allowed: constant_with_warmup, constant, linear, cosine, "
                            "cosine_with_restarts, polynomial)");
    return dm_error_set(err, DM_ERR_ARG, "unknown lr scheduler '%s' (allowed: "
                        "constant_with_warmup, constant, linear, cosine, cosine_with_restarts, "
                        "polynomial)", name ? name : "(null)");
}

dm_status dm_lr_schedule_check(const dm_optim_config *c, int64_t total_steps, dm_error *err) {
    const char *name = dm_lr_schedule_name(c->lr_schedule);
    if ((int)c->lr_schedule < 0 || (int)c->lr_schedule >= LR_COUNT)
        return dm_error_set(err, DM_ERR_ARG, "unknown lr scheduler %d (allowed: "
                            "constant_with_warmup, constant, linear, cosine, "
                            "cosine_with_restarts, polynomial)", (int)c->lr_schedule);
    if (c->warmup < 0)
        return dm_error_set(err, DM_ERR_ARG, "warmup must be >= 0 (got %lld)",
                            (long long)c->warmup);
    if (c->lr_num_cycles < 1)
        return dm_error_set(err, DM_ERR_ARG, "lr num_cycles must be an integer >= 1 (got %d)",
                            (int)c->lr_num_cycles);
    if (!(c->lr_power > 0 && c->lr_power <= 1e6))
        return dm_error_set(err, DM_ERR_ARG, "lr power must be in (0, 1e6] (got %g)", c->lr_power);
    if (!(c->lr_end >= 0 && isfinite(c->lr_end)))
        return dm_error_set(err, DM_ERR_ARG, "lr_end must be >= 0 (got %g)", c->lr_end);
    if (c->lr_schedule == DM_LR_POLYNOMIAL && !(c->lr > c->lr_end))
        /* diffusers' ValueError */
        return dm_error_set(err, DM_ERR_ARG, "lr_end (%g) must be smaller than the initial lr "
                            "(%g) for the polynomial lr scheduler", c->lr_end, c->lr);
    const bool decays = c->lr_schedule == DM_LR_LINEAR || c->lr_schedule == DM_LR_COSINE ||
                        c->lr_schedule == DM_LR_COSINE_WITH_RESTARTS ||
                        c->lr_schedule == DM_LR_POLYNOMIAL;
    if (decays && total_steps - c->warmup < 1)
        return dm_error_set(err, DM_ERR_ARG, "lr scheduler %s decays over steps - warmup = %lld "
                            "- %lld = %lld steps: it needs more steps than warm-up steps", name,
                            (long long)total_steps, (long long)c->warmup,
                            (long long)(total_steps - c->warmup));
    return DM_OK;
}

double dm_lr_schedule_factor(const dm_optim_config *c, int64_t step, int64_t total_steps) {
    const double s = (double)step, W = (double)c->warmup, N = (double)total_steps;
    const double pi = 3.14159265358979323846;
    if (c->lr_schedule == DM_LR_CONSTANT) return 1.0;
    /* the warm-up every other schedule starts with; none when warmup <= 0 */
    if (step < c->warmup) return s / (W > 1.0 ? W : 1.0);
    const double decay = N - W > 1.0 ? N - W : 1.0; /* max(1, N - W) */
    const double progress = (s - W) / decay;
    switch (c->lr_schedule) {
    case DM_LR_LINEAR: {
        const double f = (N - s) / decay;
        return f > 0.0 ? f : 0.0;
    }
    case DM_LR_COSINE: { /* get_scheduler passes no num_cycles: 0.5, one half cosine */
        const double f = 0.5 * (1.0 + cos(pi * 0.5 * 2.0 * progress));
        return f > 0.0 ? f : 0.0;
    }
    case DM_LR_COSINE_WITH_RESTARTS: {
        if (progress >= 1.0) return 0.0;
        const double f = 0.5 * (1.0 + cos(pi * fmod((double)c->lr_num_cycles * progress, 1.0)));
        return f > 0.0 ? f : 0.0;
    }
    case DM_LR_POLYNOMIAL: {
        const double lr_init = c->lr;
        /* s > N, and N <= W (a zero-length decay dm_lr_schedule_check refuses; diffusers would
         * divide by zero) */
        if (s > N || N - W <= 0.0) return c->lr_end / lr_init; /* LambdaLR multiplies by lr */
        const double pct_remaining = 1.0 - (s - W) / (N - W);
        return ((lr_init - c->lr_end) * pow(pct_remaining, c->lr_power) + c->lr_end) / lr_init;
    }
    default: /* DM_LR_CONSTANT_WITH_WARMUP */
        return 1.0;
    }
}

double dm_lr_at(const dm_optim_config *c, int64_t step, int64_t total_steps) {
    return c->lr * dm_lr_schedule_factor(c, step, total_steps);
}

dm_status dm_adam_init(dm_adam *opt, const dm_optim_config *cfg, size_t n, dm_error *err) {
    opt->cfg = *cfg;
    opt->n = n;
    opt->step = 0;
    opt->total_steps = 0;
    opt->m = opt->v = NULL;
    dm_status st = dm_memory_check(2 * (uint64_t)n * sizeof(float), err);
    if (st) {
        dm_error_prefix(err, "Adam moments for %zu parameters", n);
        return st; /* not dm_error_prefix's value: DM_OK when err is NULL */
    }
    opt->m = dm_alloc(n * sizeof *opt->m);
    opt->v = dm_alloc(n * sizeof *opt->v);
    if (!opt->m || !opt->v) {
        dm_adam_free(opt);
        return dm_error_set(err, DM_ERR_NOMEM, "cannot allocate Adam moments for %zu parameters",
                            n);
    }
    return DM_OK;
}

void dm_adam_free(dm_adam *opt) {
    dm_free(opt->m);
    dm_free(opt->v);
    opt->m = opt->v = NULL;
}

double dm_adam_lr(const dm_adam *opt) {
    return dm_lr_at(&opt->cfg, opt->step + 1, opt->total_steps);
}

/* The per-step constants of the update, computed in double as PyTorch computes them in Python
 * floats, then rounded once. */
typedef struct {
    float b1, b2, one_b1, one_b2; /* beta1, beta2, 1 - beta1, 1 - beta2 */
    float step_size;              /* lr / (1 - beta1^t) */
    float bc2_sqrt;               /* sqrt(1 - beta2^t) */
    float eps;
    float decay;                  /* 1 - lr * weight_decay */
} adam_consts;

/* sqrt of a tile with the CPU's vector instruction, bit for bit what sqrtf returns. sqrtf may
 * set errno, and that alone keeps GCC from vectorising a loop that calls it: the update took
 * 585 us instead of 49 us for 231k parameters on one thread. The project builds without
 * -fno-math-errno, and GCC ignores it as a per-function optimize attribute. */
DM_VECTOR_KERNEL
static void sqrt_tile(float *restrict out, const float *restrict in, size_t n) {
    size_t i = 0;
#if defined(__AVX512F__)
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(out + i, _mm512_sqrt_ps(_mm512_loadu_ps(in + i)));
#elif defined(__AVX__)
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, _mm256_sqrt_ps(_mm256_loadu_ps(in + i)));
#elif defined(__SSE2__)
    for (; i + 4 <= n; i += 4) _mm_storeu_ps(out + i, _mm_sqrt_ps(_mm_loadu_ps(in + i)));
#endif
    for (; i < n; i++) out[i] = sqrtf(in[i]);
}

/* Elements per tile: the square roots of one tile stay in L1 between the passes. */
#define ADAM_TILE 256

DM_VECTOR_KERNEL
static void adam_kernel(float *restrict p, float *restrict m, float *restrict v,
                        const float *restrict g, size_t n, const adam_consts *k) {
    const adam_consts c = *k;
    float s[ADAM_TILE]; /* sqrt(v) of the tile */
    for (size_t lo = 0; lo < n; lo += ADAM_TILE) {
        const size_t len = n - lo < ADAM_TILE ? n - lo : ADAM_TILE;
        for (size_t i = lo; i < lo + len; i++) {
            m[i] = c.b1 * m[i] + c.one_b1 * g[i];
            v[i] = c.b2 * v[i] + c.one_b2 * g[i] * g[i];
        }
        sqrt_tile(s, v + lo, len);
        for (size_t i = 0; i < len; i++) {
            const float pi = p[lo + i] * c.decay;
            p[lo + i] = pi - c.step_size * (m[lo + i] / (s[i] / c.bc2_sqrt + c.eps)); /* addcdiv */
        }
    }
}

/* elements per parallel chunk of the update */
#define ADAM_CHUNK 8192

DM_VECTOR_KERNEL
static void dm_adam_step_impl(dm_adam *opt, float *params, const float *grads) {
    const dm_optim_config *cfg = &opt->cfg;
    const double lr = dm_adam_lr(opt);
    const int64_t step = ++opt->step;
    const adam_consts k = {
        .b1 = (float)cfg->beta1,
        .b2 = (float)cfg->beta2,
        .one_b1 = (float)(1.0 - cfg->beta1),
        .one_b2 = (float)(1.0 - cfg->beta2),
        .step_size = (float)(lr / (1.0 - pow(cfg->beta1, (double)step))),
        .bc2_sqrt = (float)sqrt(1.0 - pow(cfg->beta2, (double)step)),
        .eps = (float)cfg->eps,
        .decay = (float)(1.0 - lr * cfg->weight_decay), /* 1 when weight_decay = 0 */
    };
    const size_t n = opt->n;
    const int64_t chunks = (int64_t)((n + ADAM_CHUNK - 1) / ADAM_CHUNK);
#pragma omp parallel for schedule(static) if (n >= DM_PARALLEL_MIN)
    for (int64_t ch = 0; ch < chunks; ch++) {
        const size_t lo = (size_t)ch * ADAM_CHUNK, len = n - lo < ADAM_CHUNK ? n - lo : ADAM_CHUNK;
        adam_kernel(params + lo, opt->m + lo, opt->v + lo, grads + lo, len, &k);
    }
}

/* The norm is summed over a fixed number of chunks, then the chunks in order, so it (and with it
 * clipping) does not depend on the thread count. */
#define NORM_CHUNKS 64

DM_VECTOR_KERNEL
static double dm_grad_norm_kernel(const float *g, size_t n) {
    double partial[NORM_CHUNKS];
    const size_t len = (n + NORM_CHUNKS - 1) / NORM_CHUNKS;
#pragma omp parallel for schedule(static) if (n >= DM_PARALLEL_MIN)
    for (int c = 0; c < NORM_CHUNKS; c++) {
        size_t lo = (size_t)c * len, hi = lo + len < n ? lo + len : n;
        /* eight running sums: one sum is a chain of dependent adds (4 cycles each), and the
         * compiler may not reorder it; eight lanes of its own vectorise, the same on every run */
        double s[8] = {0};
        size_t i = lo;
        for (; i + 8 <= hi; i += 8) {
#pragma omp simd
            for (int k = 0; k < 8; k++) s[k] += (double)g[i + k] * (double)g[i + k];
        }
        for (; i < hi; i++) s[0] += (double)g[i] * (double)g[i];
        partial[c] = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
    }
    double total = 0.0;
    for (int c = 0; c < NORM_CHUNKS; c++) total += partial[c];
    return sqrt(total);
}

/* not multiversioned itself: GCC 12 makes the resolver of a non-static clone public */
double dm_grad_norm(const float *g, size_t n) { return dm_grad_norm_kernel(g, n); }

DM_VECTOR_KERNEL
static double grad_clip_impl(float *g, size_t n, double max_norm) {
    const double norm = dm_grad_norm(g, n);
    if (max_norm > 0 && norm > max_norm) {
        const float scale = (float)(max_norm / norm);
#pragma omp parallel for simd schedule(static) if (parallel : n >= DM_PARALLEL_MIN)
        for (size_t i = 0; i < n; i++) g[i] *= scale;
    }
    return norm;
}

double dm_ema_warmup_decay(double decay, int64_t step) {
    const double warm = (1.0 + (double)step) / (10.0 + (double)step);
    return decay < warm ? decay : warm;
}

DM_VECTOR_KERNEL
static void dm_ema_update_impl(float *ema, const float *params, size_t n, double decay) {
    const float d = (float)decay, one_d = (float)(1.0 - decay);
#pragma omp parallel for simd schedule(static) if (parallel : n >= DM_PARALLEL_MIN)
    for (size_t i = 0; i < n; i++) ema[i] = d * ema[i] + one_d * params[i];
}

void dm_adam_step(dm_adam *opt, float *params, const float *grads) {
    const double t0 = dm_profile_begin();
    dm_adam_step_impl(opt, params, grads);
    dm_profile_end(DM_PROFILE_OPTIMISER, t0);
}

void dm_ema_update(float *ema, const float *params, size_t n, double decay) {
    const double t0 = dm_profile_begin();
    dm_ema_update_impl(ema, params, n, decay);
    dm_profile_end(DM_PROFILE_OPTIMISER, t0);
}

double dm_grad_clip(float *g, size_t n, double max_norm) {
    const double t0 = dm_profile_begin();
    const double norm = grad_clip_impl(g, n, max_norm);
    dm_profile_end(DM_PROFILE_OPTIMISER, t0);
    return norm;
}
