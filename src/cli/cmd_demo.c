/* diffusion demo: the whole loop on a built-in 2-D set in about a minute: train, sample, draw
 * the three pictures, and report sample quality against held-out data. */
#include "common.h"
#include "run_folder.h"
#include "progress.h"
#include "snapshots.h"

#include <stdio.h>
#include <string.h>

static void show_progress(void *ctx, int64_t done) { cli_progress_update(ctx, done, NULL); }

int cmd_demo(int argc, char **argv) {
    dm_train_config cfg;
    dm_train_config_default(&cfg);
    const char *out = "out/demo", *data = "swissroll";
    int64_t n_samples = 10000, n_data = 100000;
    int threads = 0, json = 0, quiet = 0;
    cli_option opts[] = {
        {"--out", OPT_STRING, &out, "DIR", "folder for the checkpoint, samples and pictures"},
        {"--data", OPT_STRING, &data, "NAME", "built-in 2-D set"},
        {"--steps", OPT_I64, &cfg.steps, "N", "training steps"},
        {"--batch", OPT_I64, &cfg.batch, "N", "examples per step"},
        {"--n", OPT_I64, &n_samples, "N", "samples drawn and compared with held-out data"},
        {"--seed", OPT_U64, &cfg.seed, "N", "seed of every random draw"},
        {"--threads", OPT_INT, &threads, "N", "threads (0 = every CPU this process may use, or OMP_NUM_THREADS)"},
        {"--quiet", OPT_FLAG, &quiet, NULL, "no progress bars"},
        {"--json", OPT_FLAG, &json, NULL, "print the result as one JSON line"},
    };
    cli_command cmd = {"diffusion demo [options]",
                       "Trains the 2-D MLP on a built-in set, draws samples, writes samples.png "
                       "(samples over held-out data),\nreverse.png (the reverse process from x_T "
                       "to x_0) and loss.png to DIR, and compares the samples with\nheld-out data "
                       "(MMD and sliced Wasserstein beside their data-to-data floors).",
                       opts, (int)(sizeof opts / sizeof opts[0])};
    int rc = cli_parse(&cmd, argc, argv);
    if (rc) return rc == CLI_HELP ? 0 : 2;
    if (!cli_is_builtin(data)) {
        fprintf(stderr, "error: --data %s: the demo uses a built-in set (%s)\n", cli_safe(data),
                cli_builtin_list());
        return 2;
    }
    if (n_samples < 2) {
        fprintf(stderr, "error: --n must be >= 2\n");
        return 2;
    }
    cli_set_threads(threads);
    quiet = quiet || json;

    dm_error err = {0};
    char ckpt[4200], path[4300];
    dm_dataset train = {0}, samples = {0}, ref_a = {0}, ref_b = {0};
    dm_trainer *tr = NULL;
    dm_pipeline *p = NULL;
    cli_snapshots snaps = {0};
    int status = 1;
    if (cli_make_dirs(out, &err) ||
        dm_toy2d_generate(&train, data, n_data, cfg.seed, &err))
        goto done;
    snprintf(ckpt, sizeof ckpt, "%s/checkpoint", out);
    if (!quiet)
        fprintf(stderr, "demo: %s, %lld training points, %lld steps of batch %lld, %d threads\n",
                cli_safe(data), (long long)n_data, (long long)cfg.steps, (long long)cfg.batch,
                dm_get_num_threads());
    double train_s;
    if (dm_trainer_create(&tr, &cfg, &train, &err) ||
        cli_run_training(tr, &(cli_run_folder){.dir = out, .fresh = 1}, 0, quiet, NULL, 0, 0,
                         &train_s, &err))
        goto done;
    snprintf(path, sizeof path, "%s/loss.png", out);
    if (dm_plot_loss(path, dm_trainer_loss_history(tr), dm_trainer_step_count(tr), &err)) goto done;

    /* sample from the checkpoint just written, as a user would */
    if (dm_pipeline_load(&p, ckpt, &err) || dm_dataset_init(&samples, n_samples, train.dim, &err))
        goto done;
    const int32_t T = dm_pipeline_schedule(p)->T;
    if (!cli_snapshots_init(&snaps, dm_pipeline_schedule(p), n_samples < 2000 ? n_samples : 2000, train.dim,
                            dm_pipeline_normalizer(p))) {
        dm_error_set(&err, DM_ERR_NOMEM, "out of memory");
        goto done;
    }
    cli_progress bar;
    cli_progress_start(&bar, "sample", "steps", T, quiet);
    snaps.progress = show_progress;
    snaps.progress_ctx = &bar;
    dm_sample_options so;
    dm_sample_options_default(&so);
    so.seed = cfg.seed;
    so.observe = cli_snapshots_observe;
    so.observe_ctx = &snaps;
    double t0 = cli_now();
    if (dm_pipeline_sample(p, samples.x, n_samples, &so, &err)) goto done;
    double sample_s = cli_now() - t0;
    cli_progress_finish(&bar);

    if (dm_toy2d_generate(&ref_a, data, n_samples, CLI_HELDOUT_SEED_A(cfg.seed), &err) ||
        dm_toy2d_generate(&ref_b, data, n_samples, CLI_HELDOUT_SEED_B(cfg.seed), &err))
        goto done;
    snprintf(path, sizeof path, "%s/samples.csv", out);
    if (dm_dataset_save(&samples, path, &err)) goto done;
    snprintf(path, sizeof path, "%s/samples.png", out);
    char title[128];
    snprintf(title, sizeof title, "%s: %lld samples (blue) over held-out data (grey)", data,
             (long long)n_samples);
    if (dm_plot_scatter(path, ref_a.x, ref_a.n, samples.x, samples.n, samples.dim, title, &err))
        goto done;
    snprintf(path, sizeof path, "%s/reverse.png", out);
    if (cli_snapshots_plot(&snaps, path, &err)) goto done;

    dm_eval_report r;
    if (dm_eval_compare(&r, &samples, &ref_a, &ref_b, cfg.seed, &err)) goto done;
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "data", data);
        cJSON_AddNumberToObject(o, "steps", (double)cfg.steps);
        cJSON_AddNumberToObject(o, "train_seconds", train_s);
        cJSON_AddNumberToObject(o, "sample_seconds", sample_s);
        cJSON_AddNumberToObject(o, "n", (double)r.n);
        cJSON_AddNumberToObject(o, "mmd", r.mmd);
        cJSON_AddNumberToObject(o, "mmd_floor", r.mmd_floor);
        cJSON_AddNumberToObject(o, "swd", r.swd);
        cJSON_AddNumberToObject(o, "swd_floor", r.swd_floor);
        cJSON_AddStringToObject(o, "out", out);
        cli_print_json(o);
    } else {
        printf("%s: trained %lld steps in %.1f s, drew %lld samples x %d steps in %.1f s\n", cli_safe(data),
               (long long)cfg.steps, train_s, (long long)n_samples, T, sample_s);
        printf("quality against held-out data (n = %lld, standardised units):\n", (long long)r.n);
        printf("  %-22s %10s %12s %8s\n", "", "samples", "data floor", "ratio");
        printf("  %-22s %10.5f %12.5f %8.2f\n", "MMD (RBF, median bw)", r.mmd, r.mmd_floor,
               r.mmd / r.mmd_floor);
        printf("  %-22s %10.5f %12.5f %8.2f\n", "sliced Wasserstein-2", r.swd, r.swd_floor,
               r.swd / r.swd_floor);
        printf("pictures: %s/samples.png, %s/reverse.png, %s/loss.png; checkpoint: %s\n",
               cli_safe(out), cli_safe(out), cli_safe(out), cli_safe(ckpt));
    }
    status = 0;
done:
    if (status) cli_fail(&err);
    cli_snapshots_free(&snaps);
    dm_trainer_free(tr);
    dm_pipeline_free(p);
    dm_dataset_free(&train);
    dm_dataset_free(&samples);
    dm_dataset_free(&ref_a);
    dm_dataset_free(&ref_b);
    return status;
}
