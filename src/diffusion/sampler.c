/* Sampling: options, validation and dispatch (dm_sample), the state every sampler shares, and
 * ancestral sampling (Ho et al. 2020, Algorithm 2) on all T steps or a respaced subset. The
 * samplers see only a denoise callback and a schedule, never the network. DDIM: ddim.c;
 * annealed Langevin and predictor-corrector: langevin.c; DPM-Solver++(2M): dpm_solver.c. */
#include "diffusion/sampler_impl.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

void dm_sample_options_default(dm_sample_options *opt) {
    opt->sampler = DM_SAMPLER_ANCESTRAL;
    opt->steps = 0;
    opt->eta = 0.0;
    opt->var = DM_VAR_BETA;
    opt->corrector_steps = 0;
    opt->langevin_delta = DM_LANGEVIN_DEFAULT_DELTA;
    opt->pc_snr = 0.16; /* Song et al. 2021's value for VP models */
    opt->seed = 0;
    opt->stream = 0;
    opt->clip_x0 = 0;
    opt->ddim_clipped_eps = 0;
    opt->x_T = NULL;
    opt->noise = NULL;
    opt->scheduler = NULL;
    opt->observe = NULL;
    opt->observe_ctx = NULL;
    opt->chunk_first = 0;
    opt->chunk_step = 1;
}

static const char *const sampler_names[] = {"ancestral", "ddim", "langevin", "pc", "dpmpp-2m"};
#define SAMPLER_COUNT (int)(sizeof sampler_names / sizeof sampler_names[0])

const char *dm_sampler_name(dm_sampler_kind k) {
    if ((int)k < 0 || (int)k >= SAMPLER_COUNT) return "unknown";
    return sampler_names[k];
}

dm_status dm_sampler_parse(const char *name, dm_sampler_kind *k, dm_error *err) {
    for (int j = 0; name && j < SAMPLER_COUNT; j++) {
        if (strcmp(name, sampler_names[j]) == 0) {
            *k = (dm_sampler_kind)j;
            return DM_OK;
        }
    }
    return dm_error_set(err, DM_ERR_ARG,
                        "unknown sampler '%s' (allowed: ancestral, ddim, langevin, pc, dpmpp-2m)",
                        name ? name : "(null)");
}

/* ---- the state of one run */

dm_status dm_sample_run_init(dm_sample_run *r, const dm_schedule *s, dm_denoise_fn denoise,
                             void *ctx, float *x, int64_t B, int64_t dim,
                             const dm_sample_options *opt, dm_error *err) {
    memset(r, 0, sizeof *r);
    r->s = s;
    r->denoise = denoise;
    r->ctx = ctx;
    r->x = x;
    r->B = B;
    r->dim = dim;
    r->n = (size_t)B * (size_t)dim;
    r->opt = opt;
    r->err = err;
    dm_rng_init(&r->rng, opt->seed, opt->stream);
    r->eps = dm_alloc(r->n * sizeof(float));
    r->z = dm_alloc(r->n * sizeof(float));
    r->t = dm_alloc((size_t)B * sizeof(float));
    r->norm = dm_alloc(2 * (size_t)B * sizeof(double));
    /* the raw variance channel: a learned variance, or a DDPM scheduler's learned one */
    const int learned = opt->var == DM_VAR_LEARNED ||
                        (opt->scheduler && opt->scheduler->cls == DM_SCHEDULER_DDPM &&
                         opt->scheduler->variance_output);
    if (learned) r->var = dm_alloc(r->n * sizeof(float));
    if (!r->eps || !r->z || !r->t || !r->norm || (learned && !r->var)) {
        dm_sample_run_free(r);
        return dm_error_set(err, DM_ERR_NOMEM, "sample: cannot allocate buffers for B = %lld",
                            (long long)B);
    }
    return DM_OK;
}

void dm_sample_run_free(dm_sample_run *r) {
    dm_free(r->eps);
    dm_free(r->z);
    dm_free(r->var);
    dm_free(r->t);
    dm_free(r->norm);
    r->eps = r->z = r->var = r->t = NULL;
    r->norm = NULL;
}

dm_status dm_sample_denoise(dm_sample_run *r, int32_t t, int with_var) {
    for (int64_t b = 0; b < r->B; b++) r->t[b] = (float)t;
    dm_status st = r->denoise(r->ctx, r->eps, with_var ? r->var : NULL, r->x, r->t, r->B, r->err);
    /* keep the denoiser's own message; supply one only if it left none */
    if (st != DM_OK && r->err && r->err->status != st)
        dm_error_set(r->err, st, "sample: denoiser failed at step %d (%s)", (int)t,
                     dm_status_name(st));
    return st;
}

void dm_sample_start(dm_sample_run *r) {
    if (r->opt->x_T)
        memcpy(r->x, r->opt->x_T, r->n * sizeof(float));
    else
        dm_rng_normal(&r->rng, r->x, r->n);
}

void dm_sample_step_noise(dm_sample_run *r, int32_t k) {
    if (r->opt->noise)
        memcpy(r->z, r->opt->noise + (size_t)k * r->n, r->n * sizeof(float));
    else
        dm_rng_normal(&r->rng, r->z, r->n);
}

void dm_sample_add_noise(dm_sample_run *r, float c) {
    float *x = r->x;
    const float *z = r->z;
    const size_t n = r->n;
#pragma omp parallel for schedule(static) if (n >= DM_PARALLEL_MIN)
    for (size_t j = 0; j < n; j++) x[j] += c * z[j];
}

/* ---- ancestral sampling */

/* x <- the mean of q(x_{t-1} | x_t = x, x0_hat), x0_hat = (x - sqrt(1 - ab) eps) / sqrt(ab)
 * clipped to [-1, 1]. */
static void clipped_mean(const dm_schedule *s, int32_t i, float *x, const float *eps, int64_t n) {
    const dm_posterior q = dm_q_posterior(s, i);
    const double ab = s->alpha_bar[i];
    const float r_ab = (float)(1.0 / sqrt(ab)), r_ab1 = (float)sqrt(1.0 / ab - 1.0);
    const float c0 = (float)q.c_x0, ct = (float)q.c_xt;
#pragma omp parallel for simd schedule(static) if (parallel: n >= DM_PARALLEL_MIN)
    for (int64_t j = 0; j < n; j++) {
        float x0 = r_ab * x[j] - r_ab1 * eps[j];
        x0 = x0 < -1.0f ? -1.0f : x0 > 1.0f ? 1.0f : x0;
        x[j] = c0 * x0 + ct * x[j];
    }
}

dm_status dm_ancestral_step(dm_sample_run *r, const dm_schedule *sched, int32_t k, int32_t t) {
    const int learned = r->opt->var == DM_VAR_LEARNED;
    dm_status st = dm_sample_denoise(r, t, learned);
    if (st != DM_OK) return st;
    if (r->opt->clip_x0)
        clipped_mean(sched, k, r->x, r->eps, (int64_t)r->n);
    else
        dm_p_mean_from_eps(sched, k, r->x, r->x, r->eps, (int64_t)r->n);
    if (k == 0) return DM_OK; /* z = 0 at the last step: x_0 is the mean itself */
    dm_sample_step_noise(r, sched->T - 1 - k);
    if (!learned) {
        dm_sample_add_noise(r, (float)sqrt(dm_reverse_variance(sched, k, r->opt->var)));
        return DM_OK;
    }
    /* improved DDPM: the model interpolates log sigma^2 between log beta and log beta_tilde of
     * the schedule being sampled (clipped beta_tilde, so the log is finite at every k) */
    const double lb = log(sched->beta[k]), lbt = log(dm_schedule_beta_tilde_clipped(sched, k));
    float *x = r->x;
    const float *z = r->z, *v = r->var;
    const size_t n = r->n;
#pragma omp parallel for schedule(static) if (n >= DM_PARALLEL_MIN)
    for (size_t j = 0; j < n; j++)
        x[j] += (float)exp(0.5 * dm_learned_log_var((double)v[j], lb, lbt)) * z[j];
    return DM_OK;
}

/* One stream: x_T first, then B*dim normals per step k = S-1 .. 1, so a run is fixed by the
 * seed alone. */
dm_status dm_sample_ancestral_on(dm_sample_run *r, const dm_schedule *sched,
                                 const int32_t *tmap) {
    dm_sample_start(r);
    dm_sample_observe(r, r->s->T);
    for (int32_t k = sched->T - 1; k >= 0; k--) {
        const int32_t t = tmap ? tmap[k] : k;
        dm_status st = dm_ancestral_step(r, sched, k, t);
        if (st != DM_OK) return st;
        dm_sample_observe(r, t);
    }
    return DM_OK;
}

/* ---- validation and dispatch */

/* What every entry point needs: a schedule, the pointers, sizes, and a known variance. */
static dm_status check_common(const dm_schedule *s, dm_denoise_fn denoise, const float *x,
                              int64_t B, int64_t dim, const dm_sample_options *opt,
                              dm_error *err) {
    if (!s || !s->beta || s->T < 1)
        return dm_error_set(err, DM_ERR_ARG, "sample: no schedule (initialise it first)");
    if (!denoise || !x || !opt)
        return dm_error_set(err, DM_ERR_ARG, "sample: %s is NULL",
                            !denoise ? "denoise" : !x ? "x" : "options");
    if (B < 1 || dim < 1)
        return dm_error_set(err, DM_ERR_ARG, "sample: B = %lld, dim = %lld; both must be >= 1",
                            (long long)B, (long long)dim);
    /* the largest buffers: B * dim floats, 2 B doubles */
    if ((uint64_t)B > SIZE_MAX / (2 * sizeof(double)) / (uint64_t)dim)
        return dm_error_set(err, DM_ERR_ARG, "sample: B * dim = %lld * %lld is too large",
                            (long long)B, (long long)dim);
    if (opt->var != DM_VAR_BETA && opt->var != DM_VAR_BETA_TILDE && opt->var != DM_VAR_LEARNED)
        return dm_error_set(err, DM_ERR_ARG,
                            "sample: unknown reverse variance %d (allowed: beta, beta-tilde, "
                            "learned)",
                            (int)opt->var);
    return DM_OK;
}

/* The options only dm_sample reads. Every field is checked whatever the sampler, so a bad value
 * is reported even where the chosen sampler would ignore it. */
static dm_status check_options(const dm_schedule *s, const dm_sample_options *opt,
                               dm_error *err) {
    if ((int)opt->sampler < 0 || (int)opt->sampler >= SAMPLER_COUNT)
        return dm_error_set(err, DM_ERR_ARG,
                            "sample: unknown sampler %d (allowed: ancestral, ddim, langevin, pc, dpmpp-2m)",
                            (int)opt->sampler);
    if (opt->steps < 0 || opt->steps > s->T)
        return dm_error_set(err, DM_ERR_ARG,
                            "sample: steps = %d but the schedule has T = %d steps; allowed "
                            "1..%d, 0 = all",
                            (int)opt->steps, (int)s->T, (int)s->T);
    /* written so that NaN fails too */
    if (!(opt->eta >= 0.0 && opt->eta <= 1.0))
        return dm_error_set(err, DM_ERR_ARG,
                            "sample: eta = %g; allowed 0 (deterministic DDIM) .. 1 (DDPM-like)",
                            opt->eta);
    if (opt->corrector_steps < 0)
        return dm_error_set(err, DM_ERR_ARG,
                            "sample: corrector_steps = %d; allowed >= 1, 0 = the sampler's "
                            "default",
                            (int)opt->corrector_steps);
    if (!(opt->langevin_delta > 0.0 && isfinite(opt->langevin_delta)))
        return dm_error_set(err, DM_ERR_ARG,
                            "sample: langevin_delta = %g; allowed a finite value > 0 (default "
                            "%g)",
                            opt->langevin_delta, DM_LANGEVIN_DEFAULT_DELTA);
    if (opt->noise && (opt->sampler == DM_SAMPLER_LANGEVIN || opt->sampler == DM_SAMPLER_PC) &&
        !opt->scheduler)
        return dm_error_set(err, DM_ERR_ARG, "sample: given noise is taken by ancestral, ddim "
                            "and the diffusers schedulers, not by %s (its corrector draws "
                            "several times per level)", dm_sampler_name(opt->sampler));
    if (opt->scheduler) {
        const dm_scheduler *sc = opt->scheduler;
        if (!sc->betas || sc->T != s->T)
            return dm_error_set(err, DM_ERR_ARG, "sample: the scheduler (%s, T = %d) is not "
                                "the schedule's (T = %d): sample with dm_scheduler_schedule's",
                                dm_scheduler_class_name(sc->cls), (int)sc->T, (int)s->T);
        if (opt->var == DM_VAR_LEARNED && !sc->variance_output)
            return dm_error_set(err, DM_ERR_ARG, "sample: a learned variance with %s, whose "
                                "variance_type has none", dm_scheduler_class_name(sc->cls));
    }
    if (!(opt->pc_snr > 0.0 && isfinite(opt->pc_snr)))
        return dm_error_set(err, DM_ERR_ARG,
                            "sample: pc_snr = %g; allowed a finite value > 0 (default 0.16)",
                            opt->pc_snr);
    return DM_OK;
}

dm_status dm_sample_ancestral(const dm_schedule *s, dm_denoise_fn denoise, void *ctx, float *x,
                              int64_t B, int64_t dim, const dm_sample_options *opt, dm_error *err) {
    dm_status st = check_common(s, denoise, x, B, dim, opt, err);
    if (st != DM_OK) return st;
    dm_sample_run r;
    st = dm_sample_run_init(&r, s, denoise, ctx, x, B, dim, opt, err);
    if (st != DM_OK) return st;
    st = dm_sample_ancestral_on(&r, s, NULL);
    dm_sample_run_free(&r);
    return st;
}

/* The network levels of a dm_sample run. */
static int32_t sample_levels(const dm_schedule *s, const dm_sample_options *opt) {
    if (opt->steps > 0) return opt->steps;
    if (opt->scheduler) return opt->scheduler->default_steps;
    if (opt->sampler == DM_SAMPLER_LANGEVIN)
        return s->T < DM_LANGEVIN_DEFAULT_LEVELS ? s->T : DM_LANGEVIN_DEFAULT_LEVELS;
    return s->T;
}

int64_t dm_sample_evaluations(const dm_schedule *s, const dm_sample_options *opt) {
    const int64_t S = sample_levels(s, opt);
    if (opt->scheduler) return S;
    switch (opt->sampler) {
    case DM_SAMPLER_LANGEVIN:
        /* and one call at the end removing the last level's noise */
        return S * (opt->corrector_steps ? opt->corrector_steps : DM_LANGEVIN_DEFAULT_STEPS) + 1;
    case DM_SAMPLER_PC:
        return S * (1 + (opt->corrector_steps ? opt->corrector_steps : DM_PC_DEFAULT_STEPS));
    default:
        return S;
    }
}

dm_status dm_sample(const dm_schedule *s, dm_denoise_fn denoise, void *ctx, float *x, int64_t B,
                    int64_t dim, const dm_sample_options *opt, dm_error *err) {
    dm_status st = check_common(s, denoise, x, B, dim, opt, err);
    if (st == DM_OK) st = check_options(s, opt, err);
    if (st != DM_OK) return st;

    const int32_t T = s->T;
    const dm_sampler_kind kind = opt->sampler;
    const int32_t S = sample_levels(s, opt);
    if (opt->scheduler) {
        /* diffusers' own loop: its timesteps, steps and noise */
        dm_sample_run r;
        if ((st = dm_sample_run_init(&r, s, denoise, ctx, x, B, dim, opt, err))) return st;
        st = dm_sample_scheduler_on(&r, S);
        dm_sample_run_free(&r);
        return st;
    }
    /* ancestral and PC on a subset sample the respaced schedule; S == T is the full run */
    const int respace = (kind == DM_SAMPLER_ANCESTRAL || kind == DM_SAMPLER_PC) && S < T;

    dm_schedule sub = {0};
    dm_sample_run r;
    int32_t *levels = dm_alloc((size_t)S * sizeof(int32_t)); /* (S) decreasing */
    int32_t *tmap = dm_alloc((size_t)S * sizeof(int32_t));   /* (S) increasing */
    if (!levels || !tmap) {
        dm_free(levels);
        dm_free(tmap);
        return dm_error_set(err, DM_ERR_NOMEM, "sample: cannot allocate %d levels", (int)S);
    }
    st = dm_timesteps(T, S, levels, err);
    if (st == DM_OK && respace) {
        for (int32_t k = 0; k < S; k++) tmap[k] = levels[S - 1 - k];
        st = dm_schedule_respace(&sub, s, tmap, S, err);
    }
    if (st == DM_OK) st = dm_sample_run_init(&r, s, denoise, ctx, x, B, dim, opt, err);
    if (st != DM_OK) goto done;

    const dm_schedule *sched = respace ? &sub : s;
    const int32_t *map = respace ? tmap : NULL;
    switch (kind) {
    case DM_SAMPLER_ANCESTRAL:
        st = dm_sample_ancestral_on(&r, sched, map);
        break;
    case DM_SAMPLER_DDIM:
        st = dm_sample_ddim_on(&r, levels, S);
        break;
    case DM_SAMPLER_LANGEVIN:
        st = dm_sample_langevin_on(&r, levels, S,
                                   opt->corrector_steps ? opt->corrector_steps
                                                        : DM_LANGEVIN_DEFAULT_STEPS);
        break;
    case DM_SAMPLER_PC:
        st = dm_sample_pc_on(&r, sched, map,
                             opt->corrector_steps ? opt->corrector_steps : DM_PC_DEFAULT_STEPS);
        break;
    case DM_SAMPLER_DPMPP_2M:
        st = dm_sample_dpmpp2m_on(&r, levels, S);
        break;
    }
    dm_sample_run_free(&r);
done:
    dm_schedule_free(&sub);
    dm_free(levels);
    dm_free(tmap);
    return st;
}
