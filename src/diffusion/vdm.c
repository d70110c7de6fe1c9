/* Continuous-time VDM objective with a fixed or learned log-SNR schedule (see vdm.h). */
#include "diffusion/vdm.h"

#include "diffusion.h"

#include <math.h>
#include <string.h>

static const double log_2pi = 1.83787706640934548356;

static double sigmoid(double x) {
    return x >= 0 ? 1.0 / (1.0 + exp(-x)) : exp(x) / (1.0 + exp(x));
}

dm_status dm_vdm_init(dm_vdm *v, const dm_train_config *cfg, int64_t dim, dm_error *err) {
    memset(v, 0, sizeof *v);
    const dm_schedule_kind k = cfg->schedule.kind;
    if (k != DM_SCHEDULE_LOGSNR && k != DM_SCHEDULE_LEARNED)
        return dm_error_set(err, DM_ERR_ARG, "loss vdm-continuous needs schedule logsnr (fixed) "
                            "or learned, not %s", dm_schedule_kind_name(k));
    if (cfg->prediction != DM_PRED_EPS)
        return dm_error_set(err, DM_ERR_ARG, "loss vdm-continuous is implemented for prediction "
                            "epsilon (got %s)", dm_prediction_name(cfg->prediction));
    if (cfg->var == DM_VAR_LEARNED)
        return dm_error_set(err, DM_ERR_ARG, "loss vdm-continuous has no reverse variance to "
                            "learn: use variance beta or beta-tilde");
    if (cfg->arch != DM_ARCH_MLP && cfg->arch != DM_ARCH_UNET)
        return dm_error_set(err, DM_ERR_ARG, "loss vdm-continuous is implemented for the mlp "
                            "(points) and the unet (images)");
    if (cfg->timesteps != DM_TIME_UNIFORM)
        return dm_error_set(err, DM_ERR_ARG, "loss vdm-continuous draws t itself "
                            "(low-discrepancy); use t-sampling uniform");
    v->learned = k == DM_SCHEDULE_LEARNED;
    v->discrete = cfg->arch == DM_ARCH_UNET;
    v->gamma_min = cfg->schedule.gamma_min;
    v->gamma_max = cfg->schedule.gamma_max;
    v->T = cfg->schedule.T;
    const int64_t B = cfg->batch;
    v->cap = B;
    dm_status st = DM_OK;
    if (v->learned) {
        if ((st = dm_gamma_net_init(&v->net, DM_GAMMA_NET_HIDDEN, v->gamma_min, v->gamma_max,
                                    cfg->seed, err)) ||
            (st = dm_adam_init(&v->opt, &cfg->optim, v->net.num_params, err)))
            goto fail;
        if (!(v->ema = dm_alloc(v->net.num_params * sizeof(float)))) goto nomem;
        memcpy(v->ema, v->net.params, v->net.num_params * sizeof(float));
    }
    v->t = dm_alloc((size_t)B * sizeof(double));
    v->g = dm_alloc((size_t)B * sizeof(double));
    v->dg = dm_alloc((size_t)B * sizeof(double));
    v->dl_dg = dm_alloc((size_t)B * sizeof(double));
    v->dl_ddg = dm_alloc((size_t)B * sizeof(double));
    v->shape_scale = dm_alloc((size_t)B * sizeof(double));
    v->diff = dm_alloc((size_t)B * sizeof(double));
    v->gx = dm_alloc((size_t)(B * dim) * sizeof(float));
    v->recon = dm_alloc((size_t)B * sizeof(double));
    if (v->discrete) v->eps0 = dm_alloc((size_t)(B * dim) * sizeof(float));
    if (!v->t || !v->g || !v->dg || !v->dl_dg || !v->dl_ddg || !v->shape_scale || !v->diff ||
        !v->gx || !v->recon || (v->discrete && !v->eps0))
        goto nomem;
    return DM_OK;
nomem:
    st = dm_error_set(err, DM_ERR_NOMEM, "out of memory for the VDM schedule");
fail:
    dm_vdm_free(v);
    return st;
}

void dm_vdm_free(dm_vdm *v) {
    if (v->learned) {
        dm_gamma_net_free(&v->net);
        dm_adam_free(&v->opt);
    }
    dm_free(v->ema);
    dm_free(v->t);
    dm_free(v->g);
    dm_free(v->dg);
    dm_free(v->dl_dg);
    dm_free(v->dl_ddg);
    dm_free(v->shape_scale);
    dm_free(v->diff);
    dm_free(v->gx);
    dm_free(v->recon);
    dm_free(v->eps0);
    memset(v, 0, sizeof *v);
}

void dm_vdm_gamma(const dm_vdm *v, const float *params, const double *t, double *g, double *dg,
                  int64_t n) {
    if (v->learned) {
        dm_gamma_net net = v->net;
        net.params = (float *)params;
        dm_gamma_net_eval(&net, t, g, dg, n);
        return;
    }
    const double slope = v->gamma_max - v->gamma_min;
    for (int64_t j = 0; j < n; j++) {
        if (g) g[j] = v->gamma_min + slope * t[j];
        if (dg) dg[j] = slope;
    }
}

void dm_vdm_prepare(dm_vdm *v, dm_rng *rng, const float *x0, const float *eps, float *zt,
                    float *tm, int64_t B, int64_t D) {
    const double u = dm_rng_uniform1(rng);
    for (int64_t b = 0; b < B; b++) {
        double t = u + (double)b / (double)B;
        v->t[b] = t - floor(t);
        tm[b] = (float)((double)v->T * v->t[b] - 1.0);
    }
    dm_vdm_gamma(v, v->learned ? v->net.params : NULL, v->t, v->g, v->dg, B);
    for (int64_t b = 0; b < B; b++) {
        const float a = (float)sqrt(sigmoid(-v->g[b])), s = (float)sqrt(sigmoid(v->g[b]));
        for (int64_t d = 0; d < D; d++) zt[b * D + d] = a * x0[b * D + d] + s * eps[b * D + d];
    }
    if (v->discrete) dm_rng_normal(rng, v->eps0, (size_t)(B * D));
}

/* VDM's EncDec.logprob and decode (vdm/model_vdm.py, vocab_size 256), per pixel: logits
 * -0.5 ((z - v_j) exp(-gamma_0 / 2))^2 over the levels, log_softmax, the data's level picked.
 * VDM's levels are its encode(), 2 (k + 0.5) / 256 - 1; ours are the data's own, 2 k / 255 - 1
 * (the trainer's images), so that x is exactly a level. */
double dm_vdm_recon_discrete(const float *x, const float *e0, int64_t n, double gamma_0,
                             double *dg0) {
    const double half = 0.5 * (DM_VDM_LEVELS - 1); /* level coordinate (z + 1) * half */
    const double sigma = exp(0.5 * gamma_0);
    /* levels farther than 12 sigma beyond the nearest one: logit 72 below it or more */
    const double wd = ceil(12.0 * sigma * half) + 1.0; /* capped: no cast of a huge or NaN */
    const int64_t w = wd < DM_VDM_LEVELS ? (int64_t)wd : DM_VDM_LEVELS;
    double total = 0.0, dtotal = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double kx = floor(((double)x[i] + 1.0) * half + 0.5);
        const int64_t k = kx < 0 ? 0 : kx > DM_VDM_LEVELS - 1 ? DM_VDM_LEVELS - 1 : (int64_t)kx;
        const double e = e0[i], z = (double)x[i] + sigma * e;
        double c = floor((z + 1.0) * half + 0.5);
        c = c < 0 ? 0 : c > DM_VDM_LEVELS - 1 ? DM_VDM_LEVELS - 1 : c;
        const int64_t lo = (int64_t)c - w < 0 ? 0 : (int64_t)c - w;
        const int64_t hi = (int64_t)c + w > DM_VDM_LEVELS - 1 ? DM_VDM_LEVELS - 1 : (int64_t)c + w;
        const double rc = (z - ((double)c / half - 1.0)) / sigma;
        const double lmax = -0.5 * rc * rc; /* the nearest level's logit, the largest */
        double sum = 0.0, dsum = 0.0;
        for (int64_t j = lo; j <= hi; j++) {
            const double r = (z - ((double)j / half - 1.0)) / sigma;
            const double p = exp(-0.5 * r * r - lmax);
            sum += p;
            dsum += p * 0.5 * (r * r - r * e); /* d logit_j / d gamma_0 */
        }
        const double rk = (z - ((double)k / half - 1.0)) / sigma;
        total += 0.5 * rk * rk + lmax + log(sum);
        dtotal += -0.5 * (rk * rk - rk * e) + dsum / sum;
    }
    if (dg0) *dg0 = dtotal;
    return total;
}

/* The prior and reconstruction terms, per example, and their gamma_1 / gamma_0 derivatives. */
static double gamma_endpoint(const dm_vdm *v, int which) {
    if (v->learned) return v->net.params[which ? DM_GAMMA_NET_G1 : DM_GAMMA_NET_G0];
    return which ? v->gamma_max : v->gamma_min;
}

double dm_vdm_loss(dm_vdm *v, const float *eps_hat, const float *x0, const float *eps,
                   float *dout, int64_t B, int64_t D) {
    const double g1 = gamma_endpoint(v, 1), g0 = gamma_endpoint(v, 0);
    const double ab1 = sigmoid(-g1), s1 = sigmoid(g1);
    const double recon = 0.5 * (double)D * (log_2pi + 1.0 + g0);
    const double k = 1.0 / ((double)B * (double)D);
    double total = 0.0;
    v->recon_dg0 = 0.0;
    for (int64_t b = 0; b < B; b++) {
        if (v->discrete) {
            double dg0;
            v->recon[b] = dm_vdm_recon_discrete(x0 + b * D, v->eps0 + b * D, D, g0, &dg0);
            v->recon_dg0 += k * dg0;
        } else {
            v->recon[b] = recon;
        }
        double sq = 0.0, prior = 0.0;
        for (int64_t d = 0; d < D; d++) {
            const double e = (double)eps_hat[b * D + d] - (double)eps[b * D + d];
            const double x = x0[b * D + d];
            sq += e * e;
            dout[b * D + d] = (float)(k * v->dg[b] * e);
            prior += 0.5 * (ab1 * x * x + s1 - 1.0 - log(s1));
        }
        v->diff[b] = 0.5 * v->dg[b] * sq;
        v->dl_ddg[b] = k * 0.5 * sq;
        total += prior + v->recon[b] + v->diff[b];
    }
    return total * k;
}

void dm_vdm_schedule_grads(dm_vdm *v, const float *x0, const float *eps, int64_t B, int64_t D) {
    const double k = 1.0 / ((double)B * (double)D);
    /* d loss / d gamma(t_b) through z_t = sqrt(ab) x + sqrt(1 - ab) eps, ab = sigmoid(-gamma) */
    for (int64_t b = 0; b < B; b++) {
        const double ab = sigmoid(-v->g[b]), s = 1.0 - ab;
        const double cx = -0.5 * sqrt(ab) * s, ce = 0.5 * ab * sqrt(s);
        double acc = 0.0;
        for (int64_t d = 0; d < D; d++)
            acc += (double)v->gx[b * D + d] * (cx * x0[b * D + d] + ce * eps[b * D + d]);
        v->dl_dg[b] = acc;
        /* the shape minimises the variance of the estimator: d E[L^2] = E[2 L dL] */
        v->shape_scale[b] = 2.0 * v->diff[b] / (double)D;
    }
    float *gr = v->net.grads;
    memset(gr, 0, v->net.num_params * sizeof *gr);
    dm_gamma_net_backward(&v->net, v->t, v->dl_dg, v->dl_ddg, v->shape_scale, B);
    /* the endpoints' direct terms: prior through gamma_1, reconstruction through gamma_0 */
    const double g1 = v->net.params[DM_GAMMA_NET_G1];
    const double ab1 = sigmoid(-g1), s1 = 1.0 - ab1;
    double dprior = 0.0;
    for (int64_t j = 0; j < B * D; j++) {
        const double x = x0[j];
        dprior += 0.5 * ab1 * (s1 * (1.0 - x * x) - 1.0);
    }
    gr[DM_GAMMA_NET_G1] += (float)(k * dprior);
    /* points: D/2 (log 2 pi + 1 + gamma_0) per example is 1/2 per dimension */
    gr[DM_GAMMA_NET_G0] += v->discrete ? (float)v->recon_dg0 : 0.5f;
}

void dm_vdm_update_schedule(dm_vdm *v, const float *x0, const float *eps, int64_t B, int64_t D,
                            double ema_decay) {
    if (!v->learned) return;
    dm_vdm_schedule_grads(v, x0, eps, B, D);
    dm_adam_step(&v->opt, v->net.params, v->net.grads);
    dm_ema_update(v->ema, v->net.params, v->net.num_params, ema_decay);
}

void dm_vdm_alpha_bar(const dm_vdm *v, const float *params, double *alpha_bar) {
    for (int32_t i = 0; i < v->T; i++) {
        const double t = (double)(i + 1) / (double)v->T;
        double g;
        dm_vdm_gamma(v, params, &t, &g, NULL, 1);
        alpha_bar[i] = sigmoid(-g);
    }
}

dm_status dm_vdm_nll(const dm_vdm *v, const float *params, dm_denoise_fn denoise, void *ctx,
                     const float *x, int64_t n, int64_t D, const dm_nll_options *o,
                     dm_nll_report *r, dm_error *err) {
    memset(r, 0, sizeof *r);
    if (n < 1 || D < 1 || o->t_draws < 1 || o->batch < 1)
        return dm_error_set(err, DM_ERR_ARG, "vdm nll: need n, dim, t_draws and batch >= 1");
    const int64_t K = o->t_draws, rows = n * K, cap = o->batch < rows ? o->batch : rows;
    const double g0 = v->learned ? params[DM_GAMMA_NET_G0] : v->gamma_min;
    const double g1 = v->learned ? params[DM_GAMMA_NET_G1] : v->gamma_max;
    const double ab1 = sigmoid(-g1), s1 = sigmoid(g1);
    float *z = dm_alloc((size_t)(cap * D) * sizeof(float));
    float *eps = dm_alloc((size_t)(cap * D) * sizeof(float));
    float *eh = dm_alloc((size_t)(cap * D) * sizeof(float));
    float *tm = dm_alloc((size_t)cap * sizeof(float));
    double *t = dm_alloc((size_t)cap * sizeof(double)), *g = dm_alloc((size_t)cap * sizeof(double));
    double *dg = dm_alloc((size_t)cap * sizeof(double)), *u = dm_alloc((size_t)n * sizeof(double));
    double *acc = dm_alloc((size_t)n * sizeof(double));
    dm_status st = DM_OK;
    if (!z || !eps || !eh || !tm || !t || !g || !dg || !u || !acc) {
        st = dm_error_set(err, DM_ERR_NOMEM, "out of memory for the VDM bound");
        goto done;
    }
    dm_rng rng;
    dm_rng_init(&rng, o->seed, 0);
    for (int64_t b = 0; b < n; b++) {
        u[b] = dm_rng_uniform1(&rng);
        double prior = 0.0;
        for (int64_t d = 0; d < D; d++) {
            const double xv = x[b * D + d];
            prior += 0.5 * (ab1 * xv * xv + s1 - 1.0 - log(s1));
        }
        acc[b] = prior;
        r->prior += prior / (double)n;
    }
    const int64_t calls = (rows + cap - 1) / cap;
    for (int64_t c = 0; c < calls; c++) {
        const int64_t r0 = c * cap, B = rows - r0 < cap ? rows - r0 : cap;
        for (int64_t i = 0; i < B; i++) { /* row r0 + i: example (r0 + i) / K, draw % K */
            const int64_t row = r0 + i;
            const double ti = u[row / K] + (double)(row % K) / (double)K;
            t[i] = ti - floor(ti);
            tm[i] = (float)((double)v->T * t[i] - 1.0);
        }
        dm_vdm_gamma(v, params, t, g, dg, B);
        dm_rng_normal(&rng, eps, (size_t)(B * D));
        for (int64_t i = 0; i < B; i++) {
            const float a = (float)sqrt(sigmoid(-g[i])), sg = (float)sqrt(sigmoid(g[i]));
            const float *xb = x + ((r0 + i) / K) * D;
            for (int64_t d = 0; d < D; d++) z[i * D + d] = a * xb[d] + sg * eps[i * D + d];
        }
        if ((st = denoise(ctx, eh, NULL, z, tm, B, err))) goto done;
        for (int64_t i = 0; i < B; i++) {
            double sq = 0.0;
            for (int64_t d = 0; d < D; d++) {
                const double e = (double)eh[i * D + d] - (double)eps[i * D + d];
                sq += e * e;
            }
            const double diff = 0.5 * dg[i] * sq / (double)K;
            acc[(r0 + i) / K] += diff;
            r->diffusion += diff / (double)n;
        }
        /* the reconstruction's eps_0, one per row */
        dm_rng_normal(&rng, eps, (size_t)(B * D));
        for (int64_t i = 0; i < B; i++) {
            const double rec =
                dm_vdm_recon_discrete(x + ((r0 + i) / K) * D, eps + i * D, D, g0, NULL) /
                (double)K;
            acc[(r0 + i) / K] += rec;
            r->decoder += rec / (double)n;
        }
        if (o->progress) o->progress(o->progress_ctx, c + 1, calls);
    }
    double s1m = 0.0, s2m = 0.0;
    for (int64_t b = 0; b < n; b++) {
        s1m += acc[b], s2m += acc[b] * acc[b];
        if (o->per_example) o->per_example[b] = acc[b];
    }
    r->n = n;
    r->dim = D;
    r->total = s1m / (double)n;
    const double var = n > 1 ? (s2m - s1m * s1m / (double)n) / (double)(n - 1) : 0.0;
    r->total_se = sqrt(var > 0 ? var / (double)n : 0.0);
    r->bpd = r->total / ((double)D * log(2.0));
    r->bpd_se = r->total_se / ((double)D * log(2.0));
done:
    dm_free(z), dm_free(eps), dm_free(eh), dm_free(tm), dm_free(t), dm_free(g), dm_free(dg);
    dm_free(u), dm_free(acc);
    return st;
}
