/* Dormand-Prince 5(4) as scipy.integrate.RK45 (its C, A, B and E and its step control):
 * 6 stages a step, the 7th (the derivative at the new point) reused as the next step's first
 * (FSAL). score_sde's ODE sampler and likelihood call solve_ivp(method='RK45'); this follows
 * it so that evaluation counts and end points agree with scipy (tests/test_sde.c). */
#include "diffusion/rk45.h"

#include "core/core.h"

#include <math.h>
#include <string.h>

static const double DP_C[6] = {0, 1.0 / 5, 3.0 / 10, 4.0 / 5, 8.0 / 9, 1};
static const double DP_A[6][5] = {
    {0, 0, 0, 0, 0},
    {1.0 / 5, 0, 0, 0, 0},
    {3.0 / 40, 9.0 / 40, 0, 0, 0},
    {44.0 / 45, -56.0 / 15, 32.0 / 9, 0, 0},
    {19372.0 / 6561, -25360.0 / 2187, 64448.0 / 6561, -212.0 / 729, 0},
    {9017.0 / 3168, -355.0 / 33, 46732.0 / 5247, 49.0 / 176, -5103.0 / 18656},
};
static const double DP_B[6] = {35.0 / 384, 0, 500.0 / 1113, 125.0 / 192, -2187.0 / 6784,
                               11.0 / 84};
static const double DP_E[7] = {-71.0 / 57600, 0, 71.0 / 16695, -71.0 / 1920,
                               17253.0 / 339200, -22.0 / 525, 1.0 / 40};
#define RK45_SAFETY 0.9
#define RK45_MIN_FACTOR 0.2
#define RK45_MAX_FACTOR 10.0

/* RMS over n of v[j] / scale[j], summed in index order (thread-count independent). */
static double rms_scaled(const double *v, const double *scale, size_t n) {
    double acc = 0;
    for (size_t j = 0; j < n; j++) {
        const double q = v[j] / scale[j];
        acc += q * q;
    }
    return sqrt(acc / (double)n);
}

void dm_rk_combine(double *out, const double *y, double *const *k, const double *c, int m,
                   size_t n) {
#pragma omp parallel for schedule(static) if (n >= DM_PARALLEL_MIN)
    for (size_t j = 0; j < n; j++) {
        double v = y[j];
        for (int i = 0; i < m; i++)
            if (c[i] != 0.0) v += c[i] * k[i][j];
        out[j] = v;
    }
}

typedef struct {
    dm_rk45_rhs f;
    void *ctx;
    const dm_rk45_options *opt;
    dm_rk45_stats st;
    dm_error *err;
} solver;

static dm_status budget(solver *s, int64_t more) {
    const int64_t cap = s->opt->max_evals;
    if (cap > 0 && s->st.evals + more > cap)
        return dm_error_set(s->err, DM_ERR_NUMERIC,
                            "%s: more than max_evals = %lld score evaluations (rtol %g, atol "
                            "%g); loosen the tolerances or raise max_evals",
                            s->opt->what, (long long)cap, s->opt->rtol, s->opt->atol);
    return DM_OK;
}

static dm_status rhs(solver *s, double t, const double *y, double *dy) {
    s->st.evals++;
    return s->f(s->ctx, t, y, dy);
}

static dm_status solve(solver *s, double *y, size_t n, double t0, double t1, double *work) {
    const double rtol = s->opt->rtol, atol = s->opt->atol;
    const double d = t1 >= t0 ? 1.0 : -1.0; /* direction */
    double *K[7];
    for (int i = 0; i < 7; i++) K[i] = work + (size_t)i * n;
    double *y_new = work + 7 * n, *scale = work + 8 * n, *e = work + 9 * n, *tmp = work + 10 * n;
    double t = t0;
    dm_status st;
    if ((st = budget(s, 2)) != DM_OK) return st;
    if ((st = rhs(s, t, y, K[0])) != DM_OK) return st;
    /* scipy's select_initial_step (Hairer, Norsett & Wanner II.4), error order 4 */
    double h;
    {
        for (size_t j = 0; j < n; j++) scale[j] = atol + fabs(y[j]) * rtol;
        const double d0 = rms_scaled(y, scale, n), d1 = rms_scaled(K[0], scale, n);
        const double h0 = (d0 < 1e-5 || d1 < 1e-5) ? 1e-6 : 0.01 * d0 / d1;
        for (size_t j = 0; j < n; j++) tmp[j] = y[j] + d * h0 * K[0][j];
        if ((st = rhs(s, t + d * h0, tmp, K[1])) != DM_OK) return st;
        for (size_t j = 0; j < n; j++) e[j] = K[1][j] - K[0][j];
        const double d2 = rms_scaled(e, scale, n) / h0;
        const double dmax = d1 > d2 ? d1 : d2;
        const double h1 = dmax <= 1e-15 ? fmax(1e-6, h0 * 1e-3) : pow(0.01 / dmax, 1.0 / 5.0);
        h = fmin(100 * h0, h1);
    }
    int rejected_last = 0;
    while (d * (t1 - t) > 0) {
        const double min_step = 10.0 * fabs(nextafter(t, d * INFINITY) - t);
        const double left = d * (t1 - t);
        const int last = h >= left;
        if (last) h = left;
        if (!(h >= min_step) && left > min_step)
            return dm_error_set(s->err, DM_ERR_NUMERIC,
                                "%s: step size %g fell below %g at t = %g (the score may be "
                                "non-finite or the problem too stiff)",
                                s->opt->what, h, min_step, t);
        if ((st = budget(s, 6)) != DM_OK) return st;
        const double dt = d * h;
        for (int i = 1; i < 6; i++) {
            double c[5];
            for (int q = 0; q < i; q++) c[q] = dt * DP_A[i][q];
            dm_rk_combine(tmp, y, K, c, i, n);
            if ((st = rhs(s, t + DP_C[i] * dt, tmp, K[i])) != DM_OK) return st;
        }
        {
            double c[6];
            for (int q = 0; q < 6; q++) c[q] = dt * DP_B[q];
            dm_rk_combine(y_new, y, K, c, 6, n);
        }
        const double t_new = last ? t1 : t + dt;
        if ((st = rhs(s, t_new, y_new, K[6])) != DM_OK) return st;
        for (size_t j = 0; j < n; j++) {
            double v = 0;
            for (int i = 0; i < 7; i++) v += DP_E[i] * K[i][j];
            e[j] = dt * v;
            scale[j] = atol + fmax(fabs(y[j]), fabs(y_new[j])) * rtol;
        }
        const double err_norm = rms_scaled(e, scale, n);
        if (!isfinite(err_norm))
            return dm_error_set(s->err, DM_ERR_NUMERIC,
                                "%s: non-finite values at t = %g (the score returned NaN or Inf)",
                                s->opt->what, t_new);
        if (err_norm < 1.0) {
            double factor = err_norm == 0.0 ? RK45_MAX_FACTOR
                                            : fmin(RK45_MAX_FACTOR,
                                                   RK45_SAFETY * pow(err_norm, -1.0 / 5.0));
            if (rejected_last) factor = fmin(1.0, factor);
            memcpy(y, y_new, n * sizeof(double));
            double *tk = K[0];
            K[0] = K[6];
            K[6] = tk;
            t = t_new;
            h *= factor;
            rejected_last = 0;
            s->st.steps++;
            if (s->opt->accepted) s->opt->accepted(s->opt->accepted_ctx, t, y);
        } else {
            h *= fmax(RK45_MIN_FACTOR, RK45_SAFETY * pow(err_norm, -1.0 / 5.0));
            rejected_last = 1;
            s->st.rejected++;
        }
    }
    return DM_OK;
}

dm_status dm_rk45_solve(dm_rk45_rhs f, void *ctx, double *y, size_t n, double t0, double t1,
                        const dm_rk45_options *opt, double *work, dm_rk45_stats *stats,
                        dm_error *err) {
    solver s = {.f = f, .ctx = ctx, .opt = opt, .err = err};
    const dm_status st = solve(&s, y, n, t0, t1, work);
    if (stats) *stats = s.st;
    return st;
}
