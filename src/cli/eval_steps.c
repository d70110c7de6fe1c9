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

/* Splits the comma-separated list s of flag into 1..cap items, in place in *buf (a copy the
 * caller frees; never truncated, however long s is). 0 and a message on stderr for an empty
 * list or item, or more than cap items. */
static int split_list(const char *flag, const char *s, char **buf, char **items, int cap) {
    if (!(*buf = strdup(s))) {
        fprintf(stderr, "error: out of memory\n");
        return 0;
    }
    int n = 0;
    for (char *tok = *buf;; n++) {
        char *comma = strchr(tok, ',');
        if (comma) *comma = '\0';
        if (!*tok) {
            fprintf(stderr, "error: %s: an empty item in '%s'\n", flag, cli_safe(s));
            return 0;
        }
        if (n == cap) {
            fprintf(stderr, "error: %s takes at most %d comma-separated items\n", flag, cap);
            return 0;
        }
        items[n] = tok;
        if (!comma) return n + 1;
        tok = comma + 1;
    }
}

static int eval_steps_run(const cli_steps_args *a, char *const *snames, int ns,
                          char *const *tnames, int nt) {
    dm_error err = {0};
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
                    cli_safe(tnames[k]), (int)T);
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
        printf("plot: %s\n", cli_safe(a->plot));
    }
    status = 0;
done:
    if (status) cli_fail(&err);
    cJSON_Delete(rows);
    free(ratio);
    dm_dataset_free(&samples);
    return status;
}

int cli_eval_steps(const cli_steps_args *a) {
    char *sbuf = NULL, *tbuf = NULL;
    char *snames[MAX_SAMPLERS], *tnames[MAX_STEPS];
    const int ns = split_list("--samplers", a->samplers, &sbuf, snames, MAX_SAMPLERS);
    const int nt = ns ? split_list("--steps-list", a->steps, &tbuf, tnames, MAX_STEPS) : 0;
    const int status = ns && nt ? eval_steps_run(a, snames, ns, tnames, nt) : 2;
    free(sbuf);
    free(tbuf);
    return status;
}
