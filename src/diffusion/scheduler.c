/* The sampling loops of diffusers' schedulers (diffusers 0.31.0: DDPMScheduler.step,
 * DDIMScheduler.step, DPMSolverMultistepScheduler.step, and their set_timesteps), so that the
 * same x_T and noise give diffusers' result; the network is seen through the denoiser's eps_hat,
 * whatever the scheduler's prediction_type (dm_pipeline_denoise converts it). Reading the
 * config: scheduler_config.c. */
#include "diffusion/sampler_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int compare_floats(const void *a, const void *b) {
    const float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* Imagen's dynamic thresholding as diffusers' _threshold_sample: per sample, s = the ratio
 * quantile of |x0| (torch.quantile: linear interpolation), clamped to [1, sample_max_value];
 * x0 <- clamp(x0, -s, s) / s. scratch (dim). */
static void threshold(float *x0, int64_t B, int64_t dim, double ratio, double max_value,
                      float *scratch) {
    for (int64_t b = 0; b < B; b++) {
        float *v = x0 + b * dim;
        for (int64_t j = 0; j < dim; j++) scratch[j] = fabsf(v[j]);
        qsort(scratch, (size_t)dim, sizeof(float), compare_floats);
        const double pos = ratio * (double)(dim - 1);
        const int64_t lo = (int64_t)floor(pos);
        const int64_t hi = lo + 1 < dim ? lo + 1 : lo;
        double q = scratch[lo] + (pos - (double)lo) * (scratch[hi] - scratch[lo]);
        q = fmin(fmax(q, 1.0), max_value);
        const float s = (float)q;
        for (int64_t j = 0; j < dim; j++) v[j] = fminf(fmaxf(v[j], -s), s) / s;
    }
}

static void clip(float *x0, size_t n, float range) {
    for (size_t j = 0; j < n; j++) x0[j] = fminf(fmaxf(x0[j], -range), range);
}

void dm_sample_fix_x0(const dm_sample_run *r, float *x0, float *scratch) {
    const dm_scheduler *sc = r->opt->scheduler;
    if (!sc) {
        if (r->opt->clip_x0) clip(x0, r->n, 1.0f);
    } else if (sc->thresholding) {
        threshold(x0, r->B, r->dim, sc->dynamic_thresholding_ratio, sc->sample_max_value,
                  scratch);
    } else if (sc->clip_sample) {
        clip(x0, r->n, (float)sc->clip_sample_range);
    }
}

/* ---- timesteps */

/* numpy's np.round: half to even, as rint in the default rounding mode */
static int64_t np_round(double v) { return (int64_t)rint(v); }

/* DPM-Solver's last timestep: lambda_min_clipped drops the timesteps whose lambda lies below it
 * (diffusers: searchsorted over the flipped lambdas). */
static int32_t dpm_last_timestep(const dm_scheduler *sc, const dm_schedule *s) {
    int32_t clipped = 0;
    for (int32_t i = 0; i < s->T; i++) {
        const double ab = s->alpha_bar[i];
        if (0.5 * log(ab / (1.0 - ab)) < sc->lambda_min_clipped) clipped++;
    }
    return sc->T - clipped;
}

/* set_timesteps of the three classes (they differ only for DPM-Solver, which spaces S + 1
 * points and drops the last); s is needed for DPM-Solver's lambda_min_clipped. */
static dm_status timesteps(const dm_scheduler *sc, const dm_schedule *s, int32_t S, int32_t *out,
                           dm_error *err) {
    const int32_t T = sc->T;
    if (S < 1 || S > T)
        return dm_error_set(err, DM_ERR_ARG, "%s: num_inference_steps = %d; allowed 1..%d",
                            dm_scheduler_class_name(sc->cls), (int)S, (int)T);
    const int dpm = sc->cls == DM_SCHEDULER_DPMSOLVER;
    const int32_t last = dpm && s ? dpm_last_timestep(sc, s) : T;
    const int32_t points = dpm ? S + 1 : S; /* DPM: S + 1 points, the last (0) dropped */
    int64_t *t = malloc((size_t)(points + 1) * sizeof(int64_t));
    if (!t) return dm_error_set(err, DM_ERR_NOMEM, "out of memory");
    int32_t count = points;
    switch (sc->spacing) {
    case DM_SPACING_LINSPACE: {
        /* np.linspace(0, last - 1, points): start + i * step, the last point exactly the stop */
        const double stop = (double)(last - 1);
        const double step = points > 1 ? stop / (double)(points - 1) : 0.0;
        for (int32_t i = 0; i < points; i++)
            t[points - 1 - i] = np_round(i == points - 1 ? stop : (double)i * step);
        break;
    }
    case DM_SPACING_LEADING: {
        const int64_t ratio = (dpm ? last : T) / points;
        for (int32_t i = 0; i < points; i++)
            t[points - 1 - i] = (int64_t)i * ratio + sc->steps_offset;
        break;
    }
    case DM_SPACING_TRAILING: {
        /* np.round(np.arange(last, 0, -T / S)) - 1: arange's length is ceil(last / ratio) */
        const double ratio = (double)T / (double)S;
        count = (int32_t)ceil((0.0 - (double)(dpm ? last : T)) / -ratio);
        if (count > S + 1) count = S + 1;
        for (int32_t i = 0; i < count; i++)
            t[i] = np_round((double)(dpm ? last : T) + (double)i * -ratio) - 1;
        break;
    }
    }
    if (dpm && sc->spacing != DM_SPACING_TRAILING) count = S; /* [:-1] drops the 0 point */
    dm_status st = DM_OK;
    if (count != S)
        st = dm_error_set(err, DM_ERR_ARG, "%s: %d inference steps give %d timesteps with "
                          "timestep_spacing trailing; diffusers would run those, diffusion.c "
                          "refuses: choose another number of steps",
                          dm_scheduler_class_name(sc->cls), (int)S, (int)count);
    for (int32_t k = 0; k < S && !st; k++) {
        if (t[k] < 0 || t[k] >= T || (k > 0 && t[k] >= t[k - 1]))
            st = dm_error_set(err, DM_ERR_ARG, "%s: %d inference steps give timestep %lld at "
                              "step %d (steps_offset %d): the timesteps must decrease strictly "
                              "within 0..%d", dm_scheduler_class_name(sc->cls), (int)S,
                              (long long)t[k], (int)k, (int)sc->steps_offset, (int)T - 1);
        else
            out[k] = (int32_t)t[k];
    }
    free(t);
    return st;
}

dm_status dm_scheduler_timesteps(const dm_scheduler *sc, int32_t S, int32_t *out,
                                 dm_error *err) {
    if (!sc || !sc->betas || !out)
        return dm_error_set(err, DM_ERR_ARG, "scheduler timesteps: NULL argument");
    if (sc->cls != DM_SCHEDULER_DPMSOLVER || sc->lambda_min_clipped == -INFINITY)
        return timesteps(sc, NULL, S, out, err);
    dm_schedule s = {0};
    dm_status st = dm_scheduler_schedule(sc, &s, err);
    if (!st) st = timesteps(sc, &s, S, out, err);
    dm_schedule_free(&s);
    return st;
}

/* ---- DDPM and DDIM steps */

typedef struct {
    const dm_scheduler *sc;
    const dm_schedule *s;
    int32_t S;
    double eta;
    int clipped_eps;
    float *x0;      /* (n) */
    float *scratch; /* (dim) */
} step_ctx;

/* x0_hat = (x - sqrt(1 - ab) eps) / sqrt(ab), clipped or thresholded */
static void predicted_x0(const step_ctx *c, const float *x, const float *eps, double ab,
                         int64_t B, int64_t dim) {
    const size_t n = (size_t)(B * dim);
    const double c_x = 1.0 / sqrt(ab), c_e = sqrt(1.0 / ab - 1.0);
    for (size_t j = 0; j < n; j++) c->x0[j] = (float)(c_x * x[j] - c_e * eps[j]);
    if (c->sc->thresholding)
        threshold(c->x0, B, dim, c->sc->dynamic_thresholding_ratio, c->sc->sample_max_value,
                  c->scratch);
    else if (c->sc->clip_sample)
        clip(c->x0, n, (float)c->sc->clip_sample_range);
}

/* DDPMScheduler.step: the posterior mean of x_{prev} given x_t and x0_hat, plus (t > 0) the
 * noise of variance_type. */
static void ddpm_step(const step_ctx *c, int32_t t, float *x, const float *eps, const float *var,
                      const float *noise, int64_t B, int64_t dim) {
    const dm_schedule *s = c->s;
    const int32_t prev = t - c->sc->T / c->S;
    const double ab = s->alpha_bar[t], ab_prev = prev >= 0 ? s->alpha_bar[prev] : 1.0;
    const double alpha = ab / ab_prev, beta = 1.0 - alpha;
    predicted_x0(c, x, eps, ab, B, dim);
    const double c0 = sqrt(ab_prev) * beta / (1.0 - ab), ct = sqrt(alpha) * (1.0 - ab_prev) / (1.0 - ab);
    const size_t n = (size_t)(B * dim);
    const double small = fmax((1.0 - ab_prev) / (1.0 - ab) * beta, 1e-20);
    double sd = 0;
    switch (c->sc->variance) {
    case DM_DDPM_FIXED_SMALL: sd = sqrt(small); break;
    case DM_DDPM_FIXED_SMALL_LOG: sd = exp(0.5 * log(small)); break;
    case DM_DDPM_FIXED_LARGE: sd = sqrt(beta); break;
    default: break; /* per element below */
    }
    const double lmin = log(small), lmax = log(beta);
    for (size_t j = 0; j < n; j++) {
        double v = c0 * c->x0[j] + ct * x[j];
        if (t > 0 && noise) {
            double sj = sd;
            if (c->sc->variance == DM_DDPM_LEARNED) {
                sj = sqrt((double)var[j]);
            } else if (c->sc->variance == DM_DDPM_LEARNED_RANGE) {
                const double f = 0.5 * ((double)var[j] + 1.0);
                sj = exp(0.5 * (f * lmax + (1.0 - f) * lmin));
            }
            v += sj * noise[j];
        }
        x[j] = (float)v;
    }
}

/* DDIMScheduler.step: prev = t - T / S, alpha_bar 1 or alpha_bar_0 below timestep 0. */
static void ddim_step(const step_ctx *c, int32_t t, float *x, const float *eps,
                      const float *noise, int64_t B, int64_t dim) {
    const dm_schedule *s = c->s;
    const int32_t prev = t - c->sc->T / c->S;
    const double ab = s->alpha_bar[t];
    const double ab_prev = prev >= 0               ? s->alpha_bar[prev]
                           : c->sc->set_alpha_to_one ? 1.0
                                                     : s->alpha_bar[0];
    predicted_x0(c, x, eps, ab, B, dim);
    const double variance = (1.0 - ab_prev) / (1.0 - ab) * (1.0 - ab / ab_prev);
    const double sd = c->eta * sqrt(variance);
    const double c_dir = sqrt(fmax(0.0, 1.0 - ab_prev - sd * sd));
    const double s_ab = sqrt(ab), r_1ab = 1.0 / sqrt(1.0 - ab), c_x0 = sqrt(ab_prev);
    const size_t n = (size_t)(B * dim);
    for (size_t j = 0; j < n; j++) {
        const double e = c->clipped_eps ? (x[j] - s_ab * c->x0[j]) * r_1ab : (double)eps[j];
        double v = c_x0 * c->x0[j] + c_dir * e;
        if (c->eta > 0 && noise) v += sd * noise[j];
        x[j] = (float)v;
    }
}

static dm_status step_ctx_init(step_ctx *c, const dm_scheduler *sc, const dm_schedule *s,
                               int32_t S, double eta, int clipped_eps, size_t n, int64_t dim,
                               dm_error *err) {
    memset(c, 0, sizeof *c);
    *c = (step_ctx){sc, s, S, eta, clipped_eps, dm_alloc(n * sizeof(float)),
                    dm_alloc((size_t)dim * sizeof(float))};
    if (!c->x0 || !c->scratch) {
        dm_free(c->x0);
        dm_free(c->scratch);
        return dm_error_set(err, DM_ERR_NOMEM, "scheduler: out of memory");
    }
    return DM_OK;
}

static void step_ctx_free(step_ctx *c) {
    dm_free(c->x0);
    dm_free(c->scratch);
}

dm_status dm_scheduler_step(const dm_scheduler *sc, const dm_schedule *s, int32_t S, int32_t t,
                            float *x, const float *eps, const float *var, const float *noise,
                            double eta, int clipped_eps, int64_t B, int64_t dim, dm_error *err) {
    if (!sc || !sc->betas || !s || !s->alpha_bar || sc->T != s->T || !x || !eps)
        return dm_error_set(err, DM_ERR_ARG, "scheduler step: NULL argument or a schedule "
                            "that is not the scheduler's");
    if (sc->cls == DM_SCHEDULER_DPMSOLVER)
        return dm_error_set(err, DM_ERR_ARG, "scheduler step: DPM-Solver is multistep; sample "
                            "with dm_sample and opt->scheduler");
    if (S < 1 || S > sc->T || t < 0 || t >= sc->T || B < 1 || dim < 1)
        return dm_error_set(err, DM_ERR_ARG, "scheduler step: S = %d, t = %d, B = %lld, dim = "
                            "%lld out of range (T = %d)", (int)S, (int)t, (long long)B,
                            (long long)dim, (int)sc->T);
    if (sc->cls == DM_SCHEDULER_DDPM && sc->variance_output && !var)
        return dm_error_set(err, DM_ERR_ARG, "scheduler step: variance_type learned needs the "
                            "model's variance channel");
    if (!(eta >= 0 && eta <= 1))
        return dm_error_set(err, DM_ERR_ARG, "scheduler step: eta = %g; allowed 0..1", eta);
    step_ctx c;
    dm_status st = step_ctx_init(&c, sc, s, S, eta, clipped_eps, (size_t)(B * dim), dim, err);
    if (st) return st;
    if (sc->cls == DM_SCHEDULER_DDPM)
        ddpm_step(&c, t, x, eps, var, noise, B, dim);
    else
        ddim_step(&c, t, x, eps, noise, B, dim);
    step_ctx_free(&c);
    return DM_OK;
}

/* ---- the loops */

/* DPM-Solver's orders (DPMSolverMultistepScheduler.step): first order at the first step, at the
 * last when euler_at_final, lower_order_final with S < 15, or a final sigma of zero, and second
 * order elsewhere (solver_order 2) except the step before last with lower_order_final and
 * S < 15; solver_order 1 is first order throughout. */
static dm_status dpm_loop(dm_sample_run *r, const int32_t *levels, int32_t S) {
    const dm_scheduler *sc = r->opt->scheduler;
    uint8_t *second = dm_alloc((size_t)S);
    if (!second) return dm_error_set(r->err, DM_ERR_NOMEM, "sample: out of memory");
    const int short_run = sc->lower_order_final && S < 15;
    for (int32_t k = 0; k < S; k++) {
        const int final_first = k == S - 1 && (sc->euler_at_final || short_run || !sc->final_sigma_min);
        const int second_first = k == S - 2 && short_run;
        second[k] = sc->solver_order == 2 && k > 0 && !final_first && !second_first;
    }
    const double ab_final = sc->final_sigma_min ? r->s->alpha_bar[0] : 1.0;
    dm_status st = dm_dpmpp_steps(r, levels, S, ab_final, second, sc->heun);
    dm_free(second);
    return st;
}

dm_status dm_sample_scheduler_on(dm_sample_run *r, int32_t S) {
    const dm_scheduler *sc = r->opt->scheduler;
    int32_t *ts = dm_alloc((size_t)S * sizeof(int32_t));
    if (!ts) return dm_error_set(r->err, DM_ERR_NOMEM, "sample: out of memory");
    dm_status st = timesteps(sc, r->s, S, ts, r->err);
    if (st) goto done;
    dm_sample_start(r);
    dm_sample_observe(r, r->s->T);
    if (sc->cls == DM_SCHEDULER_DPMSOLVER) {
        st = dpm_loop(r, ts, S);
        goto done;
    }
    step_ctx c;
    if ((st = step_ctx_init(&c, sc, r->s, S, r->opt->eta, r->opt->ddim_clipped_eps, r->n, r->dim,
                            r->err)))
        goto done;
    const int ddpm = sc->cls == DM_SCHEDULER_DDPM;
    for (int32_t k = 0; k < S && !st; k++) {
        const int32_t t = ts[k];
        if ((st = dm_sample_denoise(r, t, ddpm && sc->variance_output))) break;
        /* diffusers draws DDPM's noise where t > 0, DDIM's at every step when eta > 0 */
        const int noisy = ddpm ? t > 0 : r->opt->eta > 0;
        if (noisy) dm_sample_step_noise(r, k);
        if (ddpm)
            ddpm_step(&c, t, r->x, r->eps, r->var, noisy ? r->z : NULL, r->B, r->dim);
        else
            ddim_step(&c, t, r->x, r->eps, noisy ? r->z : NULL, r->B, r->dim);
        dm_sample_observe(r, t);
    }
    step_ctx_free(&c);
done:
    dm_free(ts);
    return st;
}
