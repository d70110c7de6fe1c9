/* The variational bound on -log p(x_0) (MATH.md, "Variational bound"):
 *   L = L_T + sum_{t=2..T} L_{t-1} + L_0,
 * each L_{t-1} an exact Gaussian KL, L_0 the decoder: a Gaussian density for continuous data,
 * Ho et al.'s discretised Gaussian (256 levels in [-1, 1], outer bins open) for images.
 * Exact: every t for every example (T network calls per batch). Estimate: L_0 exactly (one
 * call; it is the largest and most variable term) and t drawn uniformly from 2..T, the term
 * scaled by T - 1: unbiased for the sum, t_draws + 1 calls per batch. The KL's mean gap is
 * computed in eps form,
 * mu_tilde - mu_theta = c_t (eps_hat - eps), which is exact and avoids cancellation. */
#include "diffusion/diffusion_impl.h"
#include "diffusion/pipeline_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const double ln2 = 0.69314718055994530942;
/* probabilities below this count as this: a log of 0 would make one bad pixel infinite */
#define PROB_FLOOR 1e-300

void dm_nll_options_default(dm_nll_options *o) {
    memset(o, 0, sizeof *o);
    o->exact = 0;
    o->t_draws = 1;
    o->var = DM_VAR_BETA;
    o->discrete = 0;
    o->seed = 0;
    o->batch = 256;
}

static double std_cdf(double z) { return 0.5 * erfc(-z / M_SQRT2); }
static double std_sf(double z) { return 0.5 * erfc(z / M_SQRT2); }

/* log P(bin of x) under N(mu, sigma^2): the bin is x +- 1/255, open at the outer levels. */
double dm_log_discretized_gaussian(double x, double mu, double sigma) {
    const double plus = (x + 1.0 / 255.0 - mu) / sigma, minus = (x - 1.0 / 255.0 - mu) / sigma;
    double p;
    if (x < -0.999)
        p = std_cdf(plus);
    else if (x > 0.999)
        p = std_sf(minus);
    else if (minus > 0) /* both in the upper tail: the survival function keeps the digits */
        p = std_sf(minus) - std_sf(plus);
    else
        p = std_cdf(plus) - std_cdf(minus);
    return log(p > PROB_FLOOR ? p : PROB_FLOOR);
}

/* The bound's term at index i for one example, in nats (sum over dimensions). raw is the
 * model's variance output (learned) or NULL. */
static double bound_term(const dm_schedule *s, int32_t i, dm_reverse_var var, int discrete,
                         const float *x0, const float *eps, const float *eps_hat, const float *raw,
                         int64_t D) {
    const double c = dm_mean_gap_coeff(s, i);
    const double lb = log(s->beta[i]), lbt = log(dm_schedule_beta_tilde_clipped(s, i));
    const double fixed_lv = var == DM_VAR_BETA ? lb : lbt;
    const double bt = i > 0 ? s->beta_tilde[i] : 0.0, log_bt = i > 0 ? log(bt) : 0.0;
    double sum = 0.0;
    for (int64_t d = 0; d < D; d++) {
        const double lv = raw ? dm_learned_log_var(raw[d], lb, lbt) : fixed_lv;
        const double gap = c * ((double)eps_hat[d] - (double)eps[d]);
        if (i == 0 && discrete)
            sum -= dm_log_discretized_gaussian(x0[d], x0[d] - gap, exp(0.5 * lv));
        else
            sum += dm_bound_term_dim(i, lv, bt, log_bt, gap * gap);
    }
    return sum;
}

/* KL(N(sqrt(ab_T) x0, 1 - ab_T) || N(0, I)), summed over dimensions. */
static double prior_term(const dm_schedule *s, const float *x0, int64_t D) {
    const double ab = s->alpha_bar[s->T - 1];
    double sum = 0.0;
    for (int64_t d = 0; d < D; d++)
        sum += 0.5 * (ab * x0[d] * x0[d] + (1.0 - ab) - 1.0 - log1p(-ab));
    return sum;
}

static dm_status check_options(const dm_nll_options *o, int64_t n, int64_t dim, dm_error *err) {
    if (n < 1 || dim < 1)
        return dm_error_set(err, DM_ERR_ARG, "nll: n = %lld, dim = %lld; both must be >= 1",
                            (long long)n, (long long)dim);
    if (o->batch < 1) return dm_error_set(err, DM_ERR_ARG, "nll: batch must be >= 1");
    if (!o->exact && o->t_draws < 1)
        return dm_error_set(err, DM_ERR_ARG, "nll: t_draws = %d; must be >= 1", (int)o->t_draws);
    if ((int)o->var < 0 || (int)o->var > DM_VAR_LEARNED)
        return dm_error_set(err, DM_ERR_ARG, "nll: unknown reverse variance %d (allowed: beta, "
                            "beta-tilde, learned)", (int)o->var);
    return DM_OK;
}

dm_status dm_nll_bound(const dm_schedule *s, dm_denoise_fn denoise, void *ctx, const float *x0,
                       int64_t n, int64_t dim, const dm_nll_options *o, dm_nll_report *r,
                       dm_error *err) {
    dm_status st = check_options(o, n, dim, err);
    if (st) return st;
    const int64_t D = dim, cap = o->batch < n ? o->batch : n, T = s->T;
    /* estimate: draw 0 is the decoder's t = 1, then t_draws uniform t in 2..T */
    const int32_t draws = o->exact ? (int32_t)T : (T > 1 ? o->t_draws + 1 : 1);
    const bool learned = o->var == DM_VAR_LEARNED;
    float *eps = dm_alloc((size_t)(cap * D) * sizeof(float));     /* (cap, D) */
    float *xt = dm_alloc((size_t)(cap * D) * sizeof(float));      /* (cap, D) */
    float *eps_hat = dm_alloc((size_t)(cap * D) * sizeof(float)); /* (cap, D) */
    float *raw = learned ? dm_alloc((size_t)(cap * D) * sizeof(float)) : NULL;
    float *t = dm_alloc((size_t)cap * sizeof(float));
    int32_t *idx = dm_alloc((size_t)cap * sizeof(int32_t));
    double *acc = dm_alloc((size_t)(3 * cap) * sizeof(double)); /* prior, diffusion, decoder */
    if (!eps || !xt || !eps_hat || (learned && !raw) || !t || !idx || !acc) {
        st = dm_error_set(err, DM_ERR_NOMEM, "nll: out of memory for a batch of %lld",
                          (long long)cap);
        goto done;
    }
    memset(r, 0, sizeof *r);
    r->n = n, r->dim = D, r->exact = o->exact;
    double sum = 0.0, sum2 = 0.0;
    const int64_t chunks = (n + cap - 1) / cap, calls = chunks * draws;
    for (int64_t k = 0; k < chunks; k++) {
        const int64_t lo = k * cap, B = n - lo < cap ? n - lo : cap;
        const float *x = x0 + lo * D;
        dm_rng rng; /* chunk k's draws: the result does not depend on how many chunks ran */
        dm_rng_init(&rng, o->seed, (uint64_t)k);
        for (int64_t b = 0; b < B; b++) {
            acc[3 * b] = prior_term(s, x + b * D, D);
            acc[3 * b + 1] = acc[3 * b + 2] = 0.0;
        }
        for (int32_t j = 0; j < draws; j++) {
            if (o->exact)
                for (int64_t b = 0; b < B; b++) idx[b] = (int32_t)(T - 1 - j);
            else if (j == 0)
                for (int64_t b = 0; b < B; b++) idx[b] = 0;
            else
                dm_rng_int(&rng, idx, (size_t)B, 1, (int32_t)T);
            for (int64_t b = 0; b < B; b++) t[b] = (float)idx[b];
            dm_rng_normal(&rng, eps, (size_t)(B * D));
            dm_q_sample(s, xt, x, eps, idx, B, D);
            if ((st = denoise(ctx, eps_hat, raw, xt, t, B, err))) goto done;
            /* the estimate scales each uniformly drawn term by (T - 1) / t_draws */
            const double scale = o->exact || j == 0 ? 1.0 : (double)(T - 1) / o->t_draws;
#pragma omp parallel for schedule(static) if (B * D >= DM_PARALLEL_MIN)
            for (int64_t b = 0; b < B; b++) {
                const double v = bound_term(s, idx[b], o->var, o->discrete, x + b * D,
                                            eps + b * D, eps_hat + b * D,
                                            raw ? raw + b * D : NULL, D);
                acc[3 * b + (idx[b] > 0 ? 1 : 2)] += scale * v;
            }
            if (o->progress) o->progress(o->progress_ctx, k * draws + j + 1, calls);
        }
        for (int64_t b = 0; b < B; b++) {
            const double tot = acc[3 * b] + acc[3 * b + 1] + acc[3 * b + 2];
            if (!isfinite(tot)) {
                st = dm_error_set(err, DM_ERR_NUMERIC, "nll: the bound of example %lld is not "
                                  "finite (the model output NaN or Inf?)", (long long)(lo + b));
                goto done;
            }
            if (o->per_example) o->per_example[lo + b] = tot;
            r->prior += acc[3 * b];
            r->diffusion += acc[3 * b + 1];
            r->decoder += acc[3 * b + 2];
            sum += tot;
            sum2 += tot * tot;
        }
    }
    r->prior /= (double)n;
    r->diffusion /= (double)n;
    r->decoder /= (double)n;
    r->total = sum / (double)n;
    const double var_ex = n > 1 ? (sum2 - sum * sum / (double)n) / (double)(n - 1) : 0.0;
    r->total_se = sqrt(var_ex > 0 ? var_ex / (double)n : 0.0);
    r->bpd = r->total / ((double)D * ln2);
    r->bpd_se = r->total_se / ((double)D * ln2);
done:
    dm_free(eps);
    dm_free(xt);
    dm_free(eps_hat);
    dm_free(raw);
    dm_free(t);
    dm_free(idx);
    dm_free(acc);
    return st;
}

/* The network's epsilon at continuous model times T t - 1 in [-1, T - 1) (a vdm-continuous
 * model predicts epsilon: dm_vdm_init), not rounded to a step as dm_pipeline_denoise does; a
 * class-conditional model's unconditional prediction. */
static dm_status vdm_denoise(void *ctx, float *eps_hat, float *var_out, const float *x,
                             const float *t, int64_t B, dm_error *err) {
    (void)var_out;
    dm_pipeline *p = ctx;
    const int32_t *labels;
    dm_status st = dm_pipeline_default_labels(p, &labels, B, err);
    if (st) return st;
    return dm_model_forward_cond(p->model, eps_hat, x, t, labels, B, 0, err);
}

dm_status dm_pipeline_nll(dm_pipeline *p, const dm_dataset *data, const dm_nll_options *o,
                          dm_nll_report *r, dm_error *err) {
    if (data && !data->x) return dm_error_set(err, DM_ERR_ARG, "%s: the data are uint8 pixels; convert them with dm_dataset_to_float", "nll");
    const int64_t D = dm_pipeline_dim(p);
    if (!data || data->n < 1 || data->dim != D)
        return dm_error_set(err, DM_ERR_MISMATCH, "nll: the data have dimension %lld, the model "
                            "%lld", data ? (long long)data->dim : 0LL, (long long)D);
    dm_nll_options opt = *o;
    const dm_normalizer *nz = dm_pipeline_normalizer(p);
    const bool images = dm_model_image_shape(dm_pipeline_model(p), NULL, NULL, NULL);
    dm_dataset x = {0};
    dm_status st = dm_dataset_init(&x, data->n, D, err);
    if (st) return st;
    memcpy(x.x, data->x, (size_t)(data->n * D) * sizeof(float));
    double log_det = 0.0;
    if (images) {
        opt.discrete = 1;
        for (int64_t j = 0; j < data->n * D; j++)
            if (!(x.x[j] >= -1.0f && x.x[j] <= 1.0f)) {
                dm_dataset_free(&x);
                return dm_error_set(err, DM_ERR_ARG, "nll: image values must lie in [-1, 1]");
            }
    } else if (nz->dim == D) {
        /* the model's density is over standardised points; p(x) = p(z) / prod std */
        dm_normalizer_apply(nz, x.x, x.n);
        for (int64_t d = 0; d < D; d++) log_det += log(nz->std[d]);
    }
    if (images && p->has_vdm) {
        /* a loss vdm-continuous image model: VDM's continuous-time bound (vdm.c), an estimate
         * over t whatever o->exact says */
        st = dm_vdm_nll(&p->vdm, p->vdm.learned ? p->vdm.net.params : NULL, vdm_denoise, p, x.x,
                        x.n, D, &opt, r, err);
    } else {
        st = dm_nll_bound(dm_pipeline_schedule(p), dm_pipeline_denoise, p, x.x, x.n, D, &opt, r,
                          err);
    }
    dm_dataset_free(&x);
    if (st) return st;
    r->log_det = log_det;
    r->total += log_det;
    r->bpd = r->total / ((double)D * ln2);
    return DM_OK;
}
