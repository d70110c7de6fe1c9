/* diffusion eval --metric steps: for each sampler and step count, n samples judged by MMD and
 * sliced Wasserstein against held-out data (each as a ratio to its floor, the same figure between
 * two draws of the data), so the cost of a sampler can be weighed against its quality. */
#include "eval_steps.h"

#include "common.h"
#include "progress.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SAMPLERS 8
#define MAX_STEPS 32

/* Splits a comma-separated list into at most cap items (in place, into buf). */
static int split_list(char *buf, char **items, int cap) {
    int n = 0;
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        if (n == cap) return -1;
        items[n++] = tok;
    }
    return n;
}

int cli_eval_steps(const cli_steps_args *a) {
    dm_error err = {0};
    char sbuf[256], tbuf[512];
    char *snames[MAX_SAMPLERS], *tnames[MAX_STEPS];
    snprintf(sbuf, sizeof sbuf, "%s", a->samplers);
    snprintf(tbuf, sizeof tbuf, "%s", a->steps);
    const int ns = split_list(sbuf, snames, MAX_SAMPLERS), nt = split_list(tbuf, tnames, MAX_STEPS);
    if (ns < 1 || nt < 1) {
        fprintf(stderr, "error: --samplers and --steps-list take 1..%d and 1..%d comma-separated "
                        "items\n", MAX_SAMPLERS, MAX_STEPS);
        return 2;
    }
    dm_sampler_kind kinds[MAX_SAMPLERS];
    double steps[MAX_STEPS];
    const int32_t T = dm_pipeline_schedule(a->p)->T;
    for (int s = 0; s < ns; s++)
        if (dm_sampler_parse(snames[s], &kinds[s], &err)) return cli_fail(&err);
    for (int k = 0; k < nt; k++) {
        char *end;
        long v = strtol(tnames[k], &end, 10);
        if (*end || v < 1 || v > T) {
            fprintf(stderr, "error: --steps-list: '%s' is not a step count in 1..%d (T)\n",
                    tnames[k], (int)T);
            return 2;
        }
        steps[k] = (double)v;
    }
    double *ratio = malloc((size_t)(ns * nt) * sizeof *ratio);
    dm_dataset samples = {0};
    cJSON *rows = a->json ? cJSON_CreateArray() : NULL;
    int status = 1;
    if (!ratio || dm_dataset_init(&samples, a->n, dm_pipeline_dim(a->p), &err)) {
        if (!ratio) dm_error_set(&err, DM_ERR_NOMEM, "out of memory");
        goto done;
    }
    if (!a->json)
        printf("%-10s %6s %12s %10s %10s %10s\n", "sampler", "steps", "evaluations", "MMD ratio",
               "SWD ratio", "seconds");
    for (int s = 0; s < ns; s++)
        for (int k = 0; k < nt; k++) {
            dm_sample_options so;
            dm_sample_options_default(&so);
            so.sampler = kinds[s];
            so.steps = (int32_t)steps[k];
            so.seed = a->seed;
            const double t0 = cli_now();
            if (dm_pipeline_sample(a->p, samples.x, a->n, &so, &err)) goto done;
            const double seconds = cli_now() - t0;
            dm_eval_report r;
            if (dm_eval_compare(&r, &samples, a->ref_a, a->ref_b, a->seed, &err)) goto done;
            const int64_t evals = dm_sample_evaluations(dm_pipeline_schedule(a->p), &so);
            ratio[s * nt + k] = r.mmd / r.mmd_floor;
            if (rows) {
                cJSON *o = cJSON_CreateObject();
                cJSON_AddStringToObject(o, "sampler", snames[s]);
                cJSON_AddNumberToObject(o, "steps", steps[k]);
                cJSON_AddNumberToObject(o, "network_evaluations", (double)evals);
                cJSON_AddNumberToObject(o, "mmd", r.mmd);
                cJSON_AddNumberToObject(o, "mmd_floor", r.mmd_floor);
                cJSON_AddNumberToObject(o, "mmd_ratio", r.mmd / r.mmd_floor);
                cJSON_AddNumberToObject(o, "swd_ratio", r.swd / r.swd_floor);
                cJSON_AddNumberToObject(o, "seconds", seconds);
                cJSON_AddItemToArray(rows, o);
            } else {
                printf("%-10s %6d %12lld %10.3f %10.3f %10.2f\n", snames[s], (int)steps[k],
                       (long long)evals, r.mmd / r.mmd_floor, r.swd / r.swd_floor, seconds);
                fflush(stdout);
            }
        }
    if (a->plot &&
        dm_plot_curves(a->plot, steps, nt, ratio, (const char *const *)snames, ns,
                       "sampling steps (network evaluations for ancestral, ddim, dpmpp-2m)",
                       "MMD / floor (1 = as close as two draws of the data)", 1.0, &err))
        goto done;
    if (rows) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "n", (double)a->n);
        cJSON_AddItemToObject(o, "runs", rows);
        rows = NULL;
        cli_print_json(o);
    } else if (a->plot) {
        printf("plot: %s\n", a->plot);
    }
    status = 0;
done:
    if (status) cli_fail(&err);
    cJSON_Delete(rows);
    free(ratio);
    dm_dataset_free(&samples);
    return status;
}
