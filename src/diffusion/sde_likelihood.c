/* The exact log-likelihood through the probability-flow ODE (Song et al. 2021, appendix D;
 * score_sde's likelihood.py): [x, delta] integrated from eps to 1 by RK45 (rk45.c), the ODE
 * drift's divergence by the exact trace or Hutchinson's estimator, each Jacobian product from
 * the caller's vjp or by central differences of the score. Formulas: include/diffusion.h,
 * "Likelihood through the probability-flow ODE". */
#include "diffusion/rk45.h"
#include "diffusion/sde.h"

#include "core/core.h"

#include <math.h>
#include <string.h>

static const double ln2 = 0.69314718055994530942;
/* floats per buffer of probe rows: probes are evaluated in groups that fit (an image's exact
 * trace needs dim products a point) */
#define GROUP_FLOATS ((int64_t)1 << 22)

void dm_ode_nll_options_default(dm_ode_nll_options *o) {
    memset(o, 0, sizeof *o);
    o->trace = DM_TRACE_EXACT;
    o->probes = 1;
    o->rtol = 1e-5;
    o->atol = 1e-5;
    o->eps = 0;
    o->max_evals = 100000;
    o->fd_step = 1e-2;
    o->seed = 0;
    o->batch = 256;
}

static const char *const trace_names[] = {"exact", "rademacher", "gaussian"};

const char *dm_trace_kind_name(dm_trace_kind k) {
    if ((int)k < 0 || (int)k > DM_TRACE_GAUSSIAN) return "unknown";
    return trace_names[k];
}

dm_status dm_trace_kind_parse(const char *name, dm_trace_kind *k, dm_error *err) {
    for (int j = 0; name && j <= DM_TRACE_GAUSSIAN; j++)
        if (strcmp(name, trace_names[j]) == 0) {
            *k = (dm_trace_kind)j;
            return DM_OK;
        }
    return dm_error_set(err, DM_ERR_ARG, "unknown trace estimator '%s' (allowed: exact, "
                        "rademacher, gaussian)", name ? name : "(null)");
}

/* One batch's integration. */
typedef struct {
    const dm_sde *sde;
    dm_score_fn score;
    dm_score_vjp_fn vjp;
    void *ctx;
    const dm_ode_nll_options *o;
    int64_t B, D;
    int64_t M;       /* probes a point: D (exact) or o->probes */
    int64_t G;       /* probes per call */
    const float *pv; /* (M, B, D) Hutchinson's probes; NULL for the exact trace */
    float *xf;       /* (B, D) the state in float */
    float *s;        /* (B, D) the score at the state */
    float *X;        /* (2 G B, D) probe rows' inputs */
    float *V;        /* (G B, D) probes */
    float *S;        /* (2 G B, D) scores (vjp: the first G B rows) */
    float *P;        /* (G B, D) products v^T J */
    double *div;     /* (B) */
    dm_error *err;
} batch;

/* The probe m for point b, entry d. */
static float probe(const batch *c, int64_t m, int64_t b, int64_t d) {
    return c->pv ? c->pv[(m * c->B + b) * c->D + d] : (float)(m == d);
}

/* c->s = score(x) and c->div = div score(x) (the exact trace or Hutchinson's mean). */
static dm_status score_and_div(batch *c, double t) {
    const int64_t B = c->B, D = c->D, n = B * D;
    dm_status st;
    for (int64_t b = 0; b < B; b++) c->div[b] = 0;
    double h = 0;
    if (!c->vjp) {
        if ((st = c->score(c->ctx, c->s, c->xf, t, B, D, c->err))) return st;
        double std;
        dm_sde_marginal(c->sde, t, NULL, &std);
        h = c->o->fd_step * std;
    }
    for (int64_t m0 = 0; m0 < c->M; m0 += c->G) {
        const int64_t g = c->M - m0 < c->G ? c->M - m0 : c->G, rows = g * B;
        for (int64_t k = 0; k < g; k++)
            for (int64_t b = 0; b < B; b++)
                for (int64_t d = 0; d < D; d++) {
                    const int64_t j = (k * B + b) * D + d;
                    const float v = probe(c, m0 + k, b, d), x = c->xf[b * D + d];
                    c->V[j] = v;
                    if (c->vjp) {
                        c->X[j] = x;
                    } else {
                        c->X[j] = (float)(x + h * v);
                        c->X[rows * D + j] = (float)(x - h * v);
                    }
                }
        if (c->vjp) {
            if ((st = c->vjp(c->ctx, c->S, c->P, c->X, c->V, t, rows, D, c->err))) return st;
            if (m0 == 0) memcpy(c->s, c->S, (size_t)n * sizeof(float));
        } else {
            if ((st = c->score(c->ctx, c->S, c->X, t, 2 * rows, D, c->err))) return st;
        }
        for (int64_t k = 0; k < g; k++)
            for (int64_t b = 0; b < B; b++) {
                double acc = 0;
                for (int64_t d = 0; d < D; d++) {
                    const int64_t j = (k * B + b) * D + d;
                    if (c->vjp) {
                        acc += (double)c->V[j] * c->P[j];
                    } else if (!c->pv) {
                        /* a basis vector: only entry m0 + k moved, by exactly this much once
                         * rounded to float, so divide by that */
                        if (d != m0 + k) continue;
                        const double dx = (double)c->X[j] - (double)c->X[rows * D + j];
                        if (dx != 0)
                            acc += ((double)c->S[j] - (double)c->S[rows * D + j]) / dx;
                    } else {
                        acc += (double)c->V[j] *
                               ((double)c->S[j] - (double)c->S[rows * D + j]) / (2 * h);
                    }
                }
                c->div[b] += acc;
            }
    }
    if (c->pv)
        for (int64_t b = 0; b < B; b++) c->div[b] /= (double)c->M;
    return DM_OK;
}

/* d/dt [x, delta] = [f x - g^2 s / 2, D f - g^2 div s / 2]. */
static dm_status rhs(void *vc, double t, const double *y, double *dy) {
    batch *c = vc;
    const int64_t n = c->B * c->D;
    for (int64_t j = 0; j < n; j++) c->xf[j] = (float)y[j];
    dm_status st = score_and_div(c, t);
    if (st) {
        if (c->err && c->err->status != st)
            dm_error_set(c->err, st, "ode nll: score failed at t = %g", t);
        return st;
    }
    const double f = dm_sde_drift(c->sde, t), g = dm_sde_diffusion(c->sde, t), hg2 = 0.5 * g * g;
    for (int64_t j = 0; j < n; j++) dy[j] = f * y[j] - hg2 * (double)c->s[j];
    for (int64_t b = 0; b < c->B; b++) dy[n + b] = (double)c->D * f - hg2 * c->div[b];
    return DM_OK;
}

static dm_status check(const dm_sde *sde, dm_score_fn score, const float *x, int64_t n,
                       int64_t dim, const dm_ode_nll_options *o, dm_error *err) {
    dm_status st = dm_sde_check(sde, err);
    if (st) return st;
    if (!score || !x || !o)
        return dm_error_set(err, DM_ERR_ARG, "ode nll: %s is NULL",
                            !score ? "score" : !x ? "x" : "options");
    if (n < 1 || dim < 1)
        return dm_error_set(err, DM_ERR_ARG, "ode nll: n = %lld, dim = %lld; both must be >= 1",
                            (long long)n, (long long)dim);
    if ((int)o->trace < 0 || (int)o->trace > DM_TRACE_GAUSSIAN)
        return dm_error_set(err, DM_ERR_ARG, "ode nll: unknown trace estimator %d (allowed: "
                            "exact, rademacher, gaussian)", (int)o->trace);
    if (o->trace != DM_TRACE_EXACT && o->probes < 1)
        return dm_error_set(err, DM_ERR_ARG, "ode nll: %d Hutchinson probes; must be >= 1 (or "
                            "the exact trace)", (int)o->probes);
    if (!(o->rtol > 0 && isfinite(o->rtol)) || !(o->atol > 0 && isfinite(o->atol)))
        return dm_error_set(err, DM_ERR_ARG, "ode nll: rtol = %g, atol = %g; both ODE "
                            "tolerances must be > 0 and finite", o->rtol, o->atol);
    if (!(o->eps == 0 || (o->eps > 0 && o->eps < 1)))
        return dm_error_set(err, DM_ERR_ARG, "ode nll: eps = %g; must lie in (0, 1) (0: the "
                            "SDE's)", o->eps);
    if (o->max_evals < 0)
        return dm_error_set(err, DM_ERR_ARG, "ode nll: max_evals = %lld; must be >= 0 (0: no "
                            "limit)", (long long)o->max_evals);
    if (!(o->fd_step > 0 && o->fd_step < 1))
        return dm_error_set(err, DM_ERR_ARG, "ode nll: fd_step = %g; must lie in (0, 1)",
                            o->fd_step);
    if (o->batch < 1)
        return dm_error_set(err, DM_ERR_ARG, "ode nll: batch = %lld; must be >= 1",
                            (long long)o->batch);
    return DM_OK;
}

dm_status dm_sde_ode_nll(const dm_sde *sde, dm_score_fn score, dm_score_vjp_fn vjp, void *ctx,
                         const float *x, int64_t n, int64_t dim, const dm_ode_nll_options *o,
                         dm_ode_nll_report *r, dm_error *err) {
    dm_status st = check(sde, score, x, n, dim, o, err);
    if (st) return st;
    const int64_t D = dim, cap = o->batch < n ? o->batch : n;
    const int hutch = o->trace != DM_TRACE_EXACT;
    const int64_t M = hutch ? o->probes : D;
    int64_t G = GROUP_FLOATS / (cap * D);
    G = G < 1 ? 1 : G > M ? M : G;
    const double eps = o->eps > 0 ? o->eps : sde->eps, s1 = dm_sde_prior_std(sde);
    const size_t ny = (size_t)(cap * D + cap);
    batch c = {.sde = sde, .score = score, .vjp = vjp, .ctx = ctx, .o = o, .M = M, .G = G,
               .err = err};
    float *pv = hutch ? dm_alloc((size_t)(M * cap * D) * sizeof(float)) : NULL;
    c.xf = dm_alloc((size_t)(cap * D) * sizeof(float));
    c.s = dm_alloc((size_t)(cap * D) * sizeof(float));
    c.X = dm_alloc((size_t)(2 * G * cap * D) * sizeof(float));
    c.V = dm_alloc((size_t)(G * cap * D) * sizeof(float));
    c.S = dm_alloc((size_t)(2 * G * cap * D) * sizeof(float));
    c.P = dm_alloc((size_t)(G * cap * D) * sizeof(float));
    c.div = dm_alloc((size_t)cap * sizeof(double));
    double *y = dm_alloc(ny * sizeof(double)), *work = dm_alloc(11 * ny * sizeof(double));
    if ((hutch && !pv) || !c.xf || !c.s || !c.X || !c.V || !c.S || !c.P || !c.div || !y ||
        !work) {
        st = dm_error_set(err, DM_ERR_NOMEM, "ode nll: out of memory for a batch of %lld",
                          (long long)cap);
        goto done;
    }
    memset(r, 0, sizeof *r);
    r->n = n, r->dim = D, r->trace = o->trace, r->probes = hutch ? o->probes : 0;
    r->vjp = vjp != NULL;
    double sum = 0, sum2 = 0;
    const dm_rk45_options ro = {.rtol = o->rtol, .atol = o->atol, .max_evals = o->max_evals,
                                .what = "ode nll rk45"};
    for (int64_t lo = 0, k = 0; lo < n; lo += cap, k++) {
        const int64_t B = n - lo < cap ? n - lo : cap;
        c.B = B, c.D = D;
        if (hutch) {
            /* batch k's probes, fixed for its whole integration (score_sde draws them once) */
            dm_rng rng;
            dm_rng_init(&rng, o->seed, (uint64_t)k);
            const size_t m = (size_t)(M * B * D);
            if (o->trace == DM_TRACE_GAUSSIAN) {
                dm_rng_normal(&rng, pv, m);
            } else {
                dm_rng_uniform(&rng, pv, m);
                for (size_t j = 0; j < m; j++) pv[j] = pv[j] < 0.5f ? -1.0f : 1.0f;
            }
            c.pv = pv;
        }
        for (int64_t j = 0; j < B * D; j++) y[j] = x[lo * D + j];
        for (int64_t b = 0; b < B; b++) y[B * D + b] = 0;
        dm_rk45_stats rs;
        st = dm_rk45_solve(rhs, &c, y, (size_t)(B * D + B), eps, 1.0, &ro, work, &rs, err);
        r->score_evals += rs.evals;
        r->steps += rs.steps;
        r->rejected += rs.rejected;
        if (st) goto done;
        for (int64_t b = 0; b < B; b++) {
            double zz = 0;
            for (int64_t d = 0; d < D; d++) zz += y[b * D + d] * y[b * D + d];
            const double prior = -0.5 * (double)D * log(2 * M_PI * s1 * s1) - 0.5 * zz / (s1 * s1);
            const double delta = y[B * D + b], nll = -(prior + delta);
            if (!isfinite(nll)) {
                st = dm_error_set(err, DM_ERR_NUMERIC, "ode nll: example %lld's log-likelihood "
                                  "is not finite", (long long)(lo + b));
                goto done;
            }
            if (o->per_example) o->per_example[lo + b] = nll;
            if (o->delta) o->delta[lo + b] = delta;
            if (o->z)
                for (int64_t d = 0; d < D; d++) o->z[(lo + b) * D + d] = (float)y[b * D + d];
            r->prior_logp += prior;
            r->delta += delta;
            sum += nll;
            sum2 += nll * nll;
        }
        if (o->progress) o->progress(o->progress_ctx, lo + B, n);
    }
    r->prior_logp /= (double)n;
    r->delta /= (double)n;
    r->nll = sum / (double)n;
    const double var = n > 1 ? (sum2 - sum * sum / (double)n) / (double)(n - 1) : 0.0;
    r->nll_se = sqrt(var > 0 ? var / (double)n : 0.0);
    r->bpd = r->nll / ((double)D * ln2);
    r->bpd_se = r->nll_se / ((double)D * ln2);
done:
    dm_free(pv);
    dm_free(c.xf);
    dm_free(c.s);
    dm_free(c.X);
    dm_free(c.V);
    dm_free(c.S);
    dm_free(c.P);
    dm_free(c.div);
    dm_free(y);
    dm_free(work);
    return st;
}
