#include "eval_nll.h"

#include "common.h"
#include "images.h"
#include "progress.h"

#include <math.h>
#include <stdio.h>
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
        dm_status st = cli_load_images(&set, name, c, h, err);
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

int cli_eval_nll(const cli_nll_args *a) {
    dm_error err = {0};
    dm_pipeline *p = NULL;
    dm_dataset ds = {0};
    int status = 1;
    if (dm_pipeline_load(&p, a->model, &err) || load_heldout(&ds, a, p, &err)) goto done;
    dm_nll_options o;
    dm_nll_options_default(&o);
    o.exact = a->exact;
    o.t_draws = a->t_draws;
    o.batch = a->batch;
    o.seed = a->seed;
    if (strcmp(a->var, "model") == 0)
        o.var = dm_pipeline_train_config(p)->var;
    else if (dm_reverse_var_parse(a->var, &o.var, &err))
        goto done;
    cli_progress bar;
    const int64_t T = dm_pipeline_schedule(p)->T;
    const int64_t chunks = (ds.n + a->batch - 1) / a->batch;
    cli_progress_start(&bar, "nll", "calls", chunks * (a->exact ? T : a->t_draws + 1),
                       a->quiet || a->json);
    o.progress = show_progress;
    o.progress_ctx = &bar;
    dm_nll_report r;
    const double t0 = cli_now();
    dm_status st = dm_pipeline_nll(p, &ds, &o, &r, &err);
    cli_progress_finish(&bar);
    if (st) goto done;
    const double seconds = cli_now() - t0, ln2 = log(2.0);
    const char *kind = a->exact ? "exact" : "estimate";
    if (a->json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "metric", "nll");
        cJSON_AddStringToObject(j, "method", kind);
        cJSON_AddNumberToObject(j, "n", (double)r.n);
        cJSON_AddNumberToObject(j, "dim", (double)r.dim);
        cJSON_AddNumberToObject(j, "T", (double)T);
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
        cli_print_json(j);
    } else {
        printf("negative log-likelihood bound (%s over %s T = %lld steps), %lld examples of "
               "dimension %lld, variance %s:\n",
               kind, a->exact ? "all" : "L_0 and t drawn from the", (long long)T, (long long)r.n,
               (long long)r.dim, dm_reverse_var_name(o.var));
        printf("  %-28s %12.4f +- %.4f nats per example (%.4f bits)\n", "total", r.total,
               r.total_se, r.total / ln2);
        printf("  %-28s %12.5f +- %.5f\n", "bits per dimension", r.bpd, r.bpd_se);
        printf("  %-28s %12.4f nats\n", "L_T (prior)", r.prior);
        printf("  %-28s %12.4f nats\n", "sum of L_{t-1}, t = 2..T", r.diffusion);
        printf("  %-28s %12.4f nats\n", "L_0 (decoder)", r.decoder);
        if (r.log_det != 0)
            printf("  %-28s %12.4f nats (the model's standardisation)\n", "log-det to data units",
                   r.log_det);
        printf("  (%.1f s)\n", seconds);
    }
    status = 0;
done:
    if (status) cli_fail(&err);
    dm_dataset_free(&ds);
    dm_pipeline_free(p);
    return status;
}
