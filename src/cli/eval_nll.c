#include "eval_nll.h"

#include "common.h"
#include "images.h"
#include "progress.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void show_progress(void *ctx, int64_t done, int64_t total) {
    (void)total;
    cli_progress_update(ctx, done, NULL);
}

/* The held-out examples: for an image model the Fashion-MNIST test split unless --data names
 * other images; for points a fresh draw of a built-in set or a file. */
static dm_status load_heldout(dm_dataset *ds, const cli_nll_args *a, const dm_pipeline *p,
                              dm_error *err) {
    int64_t c, h, w;
    if (dm_model_image_shape(dm_pipeline_model(p), &c, &h, &w)) {
        const char *name = a->data && cli_is_image_data(a->data) ? a->data : "fashion-mnist-test";
        dm_image_set set;
        dm_status st = cli_load_images(&set, name, c, h, 0, err);
        if (st) return st;
        *ds = set.data;
        set.data.x = NULL; /* *ds owns the pixels and labels now */
        set.data.labels = NULL;
        dm_image_set_free(&set);
    } else {
        const char *name = a->data ? a->data : "swissroll";
        const int64_t n = a->n > 0 ? a->n : 10000;
        dm_status st = cli_load_data(ds, name, n, CLI_HELDOUT_SEED_A(a->seed), err);
        if (st) return st;
    }
    if (a->n > 0 && a->n < ds->n) ds->n = a->n; /* the first n */
    return DM_OK;
}

static void show_ode_progress(void *ctx, int64_t done, int64_t total) {
    (void)total;
    cli_progress_update(ctx, done, NULL);
}

/* The ODE likelihood of p on ds into r; o filled with what was used. */
static dm_status ode_nll(dm_pipeline *p, const dm_dataset *ds, const cli_nll_args *a,
                         dm_ode_nll_options *o, dm_ode_nll_report *r, double *seconds,
                         double *per_example, dm_error *err) {
    dm_ode_nll_options_default(o);
    const int images = dm_model_image_shape(dm_pipeline_model(p), NULL, NULL, NULL);
    const int32_t probes = a->hutchinson > 0 ? a->hutchinson : images ? 1 : 0;
    if (probes > 0) {
        dm_status st = dm_trace_kind_parse(a->probe, &o->trace, err);
        if (st) return st;
        if (o->trace == DM_TRACE_EXACT)
            return dm_error_set(err, DM_ERR_ARG, "--probe exact: the probes are rademacher or "
                                "gaussian (the exact trace is the default without --hutchinson)");
        o->probes = probes;
    }
    o->rtol = a->ode_rtol;
    o->atol = a->ode_atol;
    o->seed = a->seed;
    o->batch = a->batch;
    o->per_example = per_example;
    cli_progress bar;
    cli_progress_start(&bar, "ode nll", "examples", ds->n, a->quiet || a->json);
    o->progress = show_ode_progress;
    o->progress_ctx = &bar;
    const double t0 = cli_now();
    /* vp: the SDE the model's schedule discretises (NULL); another is handed on, and refused
     * with the library's message naming what is allowed */
    dm_sde sde;
    dm_sde_kind kind;
    dm_status st = dm_sde_kind_parse(a->sde, &kind, err);
    if (st) {
        cli_progress_finish(&bar);
        return st;
    }
    dm_sde_default(&sde, kind);
    st = dm_pipeline_ode_nll(p, kind == DM_SDE_VP ? NULL : &sde, ds, o, r, err);
    cli_progress_finish(&bar);
    *seconds = cli_now() - t0;
    return st;
}

static void ode_json(cJSON *j, const dm_ode_nll_options *o, const dm_ode_nll_report *r,
                     double seconds) {
    cJSON_AddStringToObject(j, "ode_trace", dm_trace_kind_name(o->trace));
    cJSON_AddNumberToObject(j, "ode_probes", r->probes);
    cJSON_AddStringToObject(j, "ode_products", r->vjp ? "backward" : "finite-differences");
    cJSON_AddNumberToObject(j, "ode_rtol", o->rtol);
    cJSON_AddNumberToObject(j, "ode_atol", o->atol);
    cJSON_AddNumberToObject(j, "ode_nats", r->nll);
    cJSON_AddNumberToObject(j, "ode_nats_se", r->nll_se);
    cJSON_AddNumberToObject(j, "ode_bits_per_dim", r->bpd);
    cJSON_AddNumberToObject(j, "ode_bits_per_dim_se", r->bpd_se);
    cJSON_AddNumberToObject(j, "ode_prior_logp_nats", r->prior_logp);
    cJSON_AddNumberToObject(j, "ode_delta_nats", r->delta);
    cJSON_AddNumberToObject(j, "ode_log_det_nats", r->log_det);
    cJSON_AddNumberToObject(j, "ode_score_evals", (double)r->score_evals);
    cJSON_AddNumberToObject(j, "ode_seconds", seconds);
}

static void ode_print(const dm_ode_nll_options *o, const dm_ode_nll_report *r, int images,
                      double seconds) {
    const double ln2 = log(2.0);
    printf("negative log-likelihood through the probability-flow ODE (VP SDE, RK45 rtol %g atol "
           "%g, %s), %lld examples of dimension %lld:\n",
           o->rtol, o->atol,
           o->trace == DM_TRACE_EXACT ? "exact trace" : dm_trace_kind_name(o->trace),
           (long long)r->n, (long long)r->dim);
    if (o->trace != DM_TRACE_EXACT)
        printf("  (Hutchinson: %d %s probe(s) per example)\n", (int)r->probes,
               dm_trace_kind_name(o->trace));
    printf("  %-28s %12.4f +- %.4f nats per example (%.4f bits)\n", "total", r->nll, r->nll_se,
           r->nll / ln2);
    printf("  %-28s %12.5f +- %.5f%s\n", "bits per dimension", r->bpd, r->bpd_se,
           images ? " (dequantised, pixel values in [0, 256))" : "");
    printf("  %-28s %12.4f nats\n", "log p_1(x(1)) (prior)", r->prior_logp);
    printf("  %-28s %12.4f nats\n", "integral of div (delta)", r->delta);
    if (r->log_det != 0)
        printf("  %-28s %12.4f nats (%s)\n", "log-det to data units", r->log_det,
               images ? "[-1, 1] to [0, 256)" : "the model's standardisation");
    printf("  (%lld score evaluations, products by %s, %.1f s)\n", (long long)r->score_evals,
           r->vjp ? "the backward pass" : "finite differences", seconds);
}

int cli_eval_nll(const cli_nll_args *a) {
    dm_error err = {0};
    dm_pipeline *p = NULL;
    dm_dataset ds = {0};
    double *per_bound = NULL, *per_ode = NULL; /* (n) each: for the paired difference */
    int status = 1;
    if (dm_pipeline_load(&p, a->model, &err) || load_heldout(&ds, a, p, &err)) goto done;
    const int images = dm_model_image_shape(dm_pipeline_model(p), NULL, NULL, NULL);
    dm_nll_options o;
    dm_nll_options_default(&o);
    dm_nll_report r;
    double seconds = 0;
    const double ln2 = log(2.0);
    const char *kind = a->exact ? "exact" : "estimate";
    const int64_t T = dm_pipeline_schedule(p)->T;
    /* a vdm-continuous image model reports VDM's continuous-time bound (dm_pipeline_nll) */
    const int vdm = images && dm_pipeline_train_config(p)->loss == DM_LOSS_VDM_CONTINUOUS;
    if (vdm && a->bound && a->exact) {
        dm_error_set(&err, DM_ERR_ARG, "--exact: a vdm-continuous image model's bound is VDM's "
                     "continuous-time one, an estimate over t (use --t-draws N)");
        goto done;
    }
    if (a->bound && a->ode) {
        per_bound = malloc((size_t)ds.n * sizeof(double));
        per_ode = malloc((size_t)ds.n * sizeof(double));
        if (!per_bound || !per_ode) {
            dm_error_set(&err, DM_ERR_NOMEM, "out of memory");
            goto done;
        }
    }
    if (a->bound) {
        o.per_example = per_bound;
        o.exact = a->exact;
        o.t_draws = a->t_draws;
        o.batch = a->batch;
        o.seed = a->seed;
        if (strcmp(a->var, "model") == 0)
            o.var = dm_pipeline_train_config(p)->var;
        else if (dm_reverse_var_parse(a->var, &o.var, &err))
            goto done;
        cli_progress bar;
        const int64_t chunks = (ds.n + a->batch - 1) / a->batch;
        const int64_t calls = vdm ? (ds.n * a->t_draws + a->batch - 1) / a->batch
                                  : chunks * (a->exact ? T : a->t_draws + 1);
        cli_progress_start(&bar, "nll", "calls", calls, a->quiet || a->json);
        o.progress = show_progress;
        o.progress_ctx = &bar;
        const double t0 = cli_now();
        dm_status st = dm_pipeline_nll(p, &ds, &o, &r, &err);
        cli_progress_finish(&bar);
        if (st) goto done;
        seconds = cli_now() - t0;
    }
    dm_ode_nll_options oo;
    dm_ode_nll_report ro;
    double ode_seconds = 0;
    if (a->ode && ode_nll(p, &ds, a, &oo, &ro, &ode_seconds, per_ode, &err)) goto done;
    /* both on the same points: the paired difference ODE - bound, whose standard error is
     * smaller than either's (the points' own spread cancels) */
    double diff = 0, diff_se = 0;
    if (per_bound && per_ode) {
        double s1 = 0, s2 = 0;
        for (int64_t b = 0; b < ds.n; b++) {
            const double d = per_ode[b] - (per_bound[b] + r.log_det);
            s1 += d, s2 += d * d;
        }
        diff = s1 / (double)ds.n;
        const double var = ds.n > 1 ? (s2 - s1 * s1 / (double)ds.n) / (double)(ds.n - 1) : 0;
        diff_se = sqrt(var > 0 ? var / (double)ds.n : 0);
    }
    if (a->json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "metric", "nll");
        cJSON_AddStringToObject(j, "likelihood", a->bound && a->ode ? "both" : a->ode ? "ode"
                                                                                      : "bound");
        cJSON_AddNumberToObject(j, "n", (double)(a->bound ? r.n : ro.n));
        cJSON_AddNumberToObject(j, "dim", (double)(a->bound ? r.dim : ro.dim));
        cJSON_AddNumberToObject(j, "T", (double)T);
        if (a->bound) {
            /* the bound's fields keep their names from before the ODE likelihood */
            cJSON_AddStringToObject(j, "method", kind);
            cJSON_AddStringToObject(j, "bound", vdm ? "vdm-continuous" : "discrete");
            cJSON_AddStringToObject(j, "variance", dm_reverse_var_name(o.var));
            cJSON_AddNumberToObject(j, "nats", r.total);
            cJSON_AddNumberToObject(j, "nats_se", r.total_se);
            cJSON_AddNumberToObject(j, "bits_per_dim", r.bpd);
            cJSON_AddNumberToObject(j, "bits_per_dim_se", r.bpd_se);
            cJSON_AddNumberToObject(j, "prior_nats", r.prior);
            cJSON_AddNumberToObject(j, "diffusion_nats", r.diffusion);
            cJSON_AddNumberToObject(j, "decoder_nats", r.decoder);
            cJSON_AddNumberToObject(j, "log_det_nats", r.log_det);
            cJSON_AddNumberToObject(j, "seconds", seconds);
        }
        if (a->ode) ode_json(j, &oo, &ro, ode_seconds);
        if (per_bound && per_ode) {
            cJSON_AddNumberToObject(j, "ode_minus_bound_nats", diff);
            cJSON_AddNumberToObject(j, "ode_minus_bound_nats_se", diff_se);
        }
        cli_print_json(j);
    } else {
        if (a->bound && vdm) {
            printf("negative log-likelihood bound (VDM's continuous-time bound, %d draw(s) of t "
                   "per example, discretised reconstruction on 256 levels), %lld examples of "
                   "dimension %lld:\n", (int)a->t_draws, (long long)r.n, (long long)r.dim);
            printf("  %-28s %12.4f +- %.4f nats per example (%.4f bits)\n", "total", r.total,
                   r.total_se, r.total / ln2);
            printf("  %-28s %12.5f +- %.5f (total nats / (dim ln 2), as VDM)\n",
                   "bits per dimension", r.bpd, r.bpd_se);
            printf("  %-28s %12.4f nats\n", "prior KL(q(z_1|x) || N(0,I))", r.prior);
            printf("  %-28s %12.4f nats\n", "diffusion (t in [0, 1])", r.diffusion);
            printf("  %-28s %12.4f nats\n", "reconstruction -log p(x|z_0)", r.decoder);
            printf("  (%.1f s)\n", seconds);
        } else if (a->bound) {
            printf("negative log-likelihood bound (%s over %s T = %lld steps), %lld examples of "
                   "dimension %lld, variance %s:\n",
                   kind, a->exact ? "all" : "L_0 and t drawn from the", (long long)T,
                   (long long)r.n, (long long)r.dim, dm_reverse_var_name(o.var));
            printf("  %-28s %12.4f +- %.4f nats per example (%.4f bits)\n", "total", r.total,
                   r.total_se, r.total / ln2);
            printf("  %-28s %12.5f +- %.5f\n", "bits per dimension", r.bpd, r.bpd_se);
            printf("  %-28s %12.4f nats\n", "L_T (prior)", r.prior);
            printf("  %-28s %12.4f nats\n", "sum of L_{t-1}, t = 2..T", r.diffusion);
            printf("  %-28s %12.4f nats\n", "L_0 (decoder)", r.decoder);
            if (r.log_det != 0)
                printf("  %-28s %12.4f nats (the model's standardisation)\n",
                       "log-det to data units", r.log_det);
            printf("  (%.1f s)\n", seconds);
        }
        if (a->ode) ode_print(&oo, &ro, images, ode_seconds);
        if (per_bound && per_ode)
            printf("ODE - bound on the same examples: %.4f +- %.4f nats (paired)\n", diff,
                   diff_se);
    }
    status = 0;
done:
    if (status) cli_fail(&err);
    free(per_bound);
    free(per_ode);
    dm_dataset_free(&ds);
    dm_pipeline_free(p);
    return status;
}
