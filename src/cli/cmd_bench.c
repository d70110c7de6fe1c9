/* diffusion bench: training and sampling speed of the 2-D MLP beside the machine's sgemm rate,
 * measured in the same run. Median of timed iterations after a warm-up. */
#include "bench_util.h"
#include "common.h"
#include "progress.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>


/* Median seconds per training step at this batch. */
static dm_status time_training(const dm_dataset *data, int64_t batch, int warmup, int iters,
                               double *median_s, dm_error *err) {
    dm_train_config cfg;
    dm_train_config_default(&cfg);
    cfg.batch = batch;
    cfg.steps = warmup + iters;
    dm_trainer *tr;
    dm_status st = dm_trainer_create(&tr, &cfg, data, err);
    if (st) return st;
    double *t = malloc((size_t)iters * sizeof *t);
    for (int i = 0; !st && i < warmup; i++) st = dm_trainer_step(tr, NULL, err);
    for (int i = 0; !st && i < iters; i++) {
        double t0 = cli_now();
        st = dm_trainer_step(tr, NULL, err);
        t[i] = cli_now() - t0;
    }
    if (!st) *median_s = cli_median(t, iters);
    free(t);
    dm_trainer_free(tr);
    return st;
}

static dm_status denoise(void *ctx, float *eps, float *var_frac, const float *x, const float *t,
                         int64_t B, dm_error *err) {
    return dm_model_forward((dm_model *)ctx, eps, x, t, B, 0, err);
}

int cmd_bench(int argc, char **argv) {
    int threads = 0, json = 0, sample_steps = 1000;
    int64_t sgemm_n = 4096, sample_points = 10000;
    cli_option opts[] = {
        {"--threads", OPT_INT, &threads, "N", "threads (0 = every CPU this process may use, or OMP_NUM_THREADS)"},
        {"--sgemm-n", OPT_I64, &sgemm_n, "N", "matrix size of the sgemm ceiling measurement"},
        {"--sample-points", OPT_I64, &sample_points, "N", "points sampled in the sampling case"},
        {"--sample-steps", OPT_INT, &sample_steps, "N", "diffusion steps of the sampling case"},
        {"--json", OPT_FLAG, &json, NULL, "print the results as one JSON line"},
    };
    cli_command cmd = {
        "diffusion bench [mlp] [options]   (diffusion bench unet --help: the UNet cases)",
        "Measures the 2-D MLP (231,426 parameters, the PyTorch reference's mlp2d): training\n"
        "steps/s at batch 64 and 1024 (forward + backward + Adam + EMA, data and noise drawn each\n"
        "step), achieved GFLOP/s (3 x 2 x multiply-accumulates per example), sampling time for\n"
        "N points x T steps, and the BLAS sgemm rate measured in the same run.",
        opts, (int)(sizeof opts / sizeof opts[0])};
    if (argc > 0 && strcmp(argv[0], "unet") == 0) return cmd_bench_unet(argc - 1, argv + 1);
    if (argc > 0 && strcmp(argv[0], "mlp") == 0) argc--, argv++;
    int rc = cli_parse(&cmd, argc, argv);
    if (rc) return rc == CLI_HELP ? 0 : 2;
    if (sgemm_n < 64 || sample_points < 1 || sample_steps < 1) {
        fprintf(stderr, "error: --sgemm-n >= 64, --sample-points >= 1, --sample-steps >= 1\n");
        return 2;
    }
    cli_set_threads(threads);
    dm_error err = {0};

    double sgemm = dm_sgemm_gflops(sgemm_n, 5);
    dm_dataset data = {0};
    if (dm_toy2d_generate(&data, "8gaussians", 100000, 0, &err)) return cli_fail(&err);
    dm_mlp_config mc;
    dm_mlp_config_default(&mc);
    const double train_flop = 6.0 * dm_mlp_macs_per_example(&mc);
    const int64_t batches[2] = {64, 1024};
    double step_s[2];
    for (int k = 0; k < 2; k++)
        /* batch 64 steps take a third of a millisecond: a longer warm-up and more of them,
         * or the figure moves with how busy the CPU was just before (1700 to 2900 steps/s) */
        if (time_training(&data, batches[k], batches[k] < 256 ? 500 : 20,
                          batches[k] < 256 ? 3000 : 100, &step_s[k], &err)) {
            dm_dataset_free(&data);
            return cli_fail(&err);
        }
    dm_dataset_free(&data);

    /* sampling: ancestral, linear schedule, an untrained model (speed does not depend on it) */
    dm_model *m;
    dm_schedule s;
    dm_schedule_config sc;
    dm_schedule_config_default(&sc);
    sc.T = sample_steps;
    float *x = malloc((size_t)(sample_points * mc.dim) * sizeof *x);
    if (!x || dm_mlp_create(&m, &mc, 0, &err)) return cli_fail(&err);
    if (dm_schedule_init(&s, &sc, &err)) return cli_fail(&err);
    dm_sample_options so;
    dm_sample_options_default(&so);
    double t0 = cli_now();
    dm_status st = dm_sample_ancestral(&s, denoise, m, x, sample_points, mc.dim, &so, &err);
    double sample_s = cli_now() - t0;
    dm_schedule_free(&s);
    dm_model_free(m);
    free(x);
    if (st) return cli_fail(&err);

    double rss = cli_peak_rss_mib();
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "threads", dm_get_num_threads());
        cJSON_AddNumberToObject(o, "sgemm_gflops", sgemm);
        for (int k = 0; k < 2; k++) {
            char key[64];
            snprintf(key, sizeof key, "mlp_train_b%lld_steps_per_s", (long long)batches[k]);
            cJSON_AddNumberToObject(o, key, 1.0 / step_s[k]);
            snprintf(key, sizeof key, "mlp_train_b%lld_gflops", (long long)batches[k]);
            cJSON_AddNumberToObject(o, key, train_flop * (double)batches[k] / step_s[k] * 1e-9);
        }
        cJSON_AddNumberToObject(o, "mlp_sample_points", (double)sample_points);
        cJSON_AddNumberToObject(o, "mlp_sample_steps", sample_steps);
        cJSON_AddNumberToObject(o, "mlp_sample_seconds", sample_s);
        cJSON_AddNumberToObject(o, "peak_rss_mib", rss);
        cli_print_json(o);
    } else {
        printf("threads %d; sgemm %lld x %lld: %.1f GFLOP/s\n", dm_get_num_threads(),
               (long long)sgemm_n, (long long)sgemm_n, sgemm);
        for (int k = 0; k < 2; k++) {
            double gf = train_flop * (double)batches[k] / step_s[k] * 1e-9;
            printf("mlp training, batch %4lld: %8.1f steps/s  %6.1f GFLOP/s  (%.0f%% of sgemm)\n",
                   (long long)batches[k], 1.0 / step_s[k], gf, 100.0 * gf / sgemm);
        }
        printf("mlp sampling, %lld points x %d steps: %.2f s\n", (long long)sample_points,
               sample_steps, sample_s);
        printf("peak RSS %.0f MiB\n", rss);
    }
    return 0;
}
