/* diffusion bench unet: training and sampling throughput of a UNet preset (the same cases as
 * the PyTorch reference's unet_train and unet_infer: random images in [-1, 1], linear schedule,
 * Adam), beside the machine's sgemm rate, in one run. Median of timed iterations. */
#include "bench_util.h"
#include "common.h"
#include "progress.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>


/* Profiling of the timed iterations only: reset and enable at the first, read at the end. */
static void profile_start(int on) {
    dm_profile_reset();
    dm_profile_enable(on);
}

static void profile_stop(double *seconds) {
    dm_profile_enable(0);
    for (int k = 0; k < DM_PROFILE_COUNT; k++) seconds[k] = dm_profile_seconds(k);
}

static void profile_json(cJSON *o, const char *key, const double *seconds, double total,
                         int iters) {
    cJSON *p = cJSON_AddObjectToObject(o, key);
    double rest = total;
    for (int k = 0; k < DM_PROFILE_COUNT; k++) {
        cJSON_AddNumberToObject(p, dm_profile_name(k), 1e3 * seconds[k] / iters);
        rest -= seconds[k];
    }
    cJSON_AddNumberToObject(p, "the rest", 1e3 * rest / iters);
}

int cmd_bench_unet(int argc, char **argv) {
    const char *preset = "unet-28", *conv = "auto";
    int threads = 0, json = 0, iters = 5, warmup = 2, profile = 0;
    int64_t batch = 128, infer_batch = 64, sgemm_n = 2048;
    const char *precision = "fp32";
    cli_option opts[] = {
        {"--model", OPT_STRING, &preset, "NAME", "UNet preset: unet-28, cifar-ddpm, tiny"},
        {"--batch", OPT_I64, &batch, "N", "training batch"},
        {"--infer-batch", OPT_I64, &infer_batch, "N", "batch of the sampling (forward) case"},
        {"--iters", OPT_INT, &iters, "N", "timed iterations of each case"},
        {"--warmup", OPT_INT, &warmup, "N", "untimed iterations first"},
        {"--threads", OPT_INT, &threads, "N", "threads (0 = every CPU this process may use, or OMP_NUM_THREADS)"},
        {"--precision", OPT_STRING, &precision, "fp32|bf16", CLI_PRECISION_HELP},
        {"--sgemm-n", OPT_I64, &sgemm_n, "N", "matrix size of the sgemm ceiling measurement"},
        {"--conv", OPT_STRING, &conv, "auto|im2col", "convolutions: oneDNN where built with it (auto), or always im2col + sgemm"},
        {"--profile", OPT_FLAG, &profile, NULL, "also the time per layer type in the timed iterations (conv forward and backward, attention, norms, linear, elementwise, optimiser, the rest)"},
        {"--json", OPT_FLAG, &json, NULL, "print the results as one JSON line"},
    };
    cli_command cmd = {
        "diffusion bench unet [options]",
        "Measures a UNet preset: training images/s (forward + backward + Adam + EMA at --batch),\n"
        "sampling throughput (network evaluations x batch per second at --infer-batch), the\n"
        "achieved GFLOP/s (2 x multiply-accumulates; 3x that for training), the peak RSS after\n"
        "training, and the BLAS sgemm rate in the same run.",
        opts, (int)(sizeof opts / sizeof opts[0])};
    int rc = cli_parse(&cmd, argc, argv);
    if (rc) return rc == CLI_HELP ? 0 : 2;
    if (batch < 1 || infer_batch < 1 || iters < 1 || warmup < 0 || sgemm_n < 64) {
        fprintf(stderr, "error: --batch, --infer-batch, --iters >= 1; --warmup >= 0\n");
        return 2;
    }
    if (strcmp(conv, "auto") != 0 && strcmp(conv, "im2col") != 0) {
        fprintf(stderr, "error: --conv is auto or im2col, not \"%s\"\n", cli_safe(conv));
        return 2;
    }
    dm_set_conv_backend(strcmp(conv, "auto") == 0 ? DM_CONV_AUTO : DM_CONV_IM2COL);
    if (cli_set_precision(precision)) return 2;
    cli_set_threads(threads);
    dm_error err = {0};
    dm_train_config cfg;
    dm_train_config_default(&cfg);
    cfg.arch = DM_ARCH_UNET;
    if (dm_unet_preset(&cfg.unet, preset, &err)) return cli_fail(&err);
    cfg.batch = batch;
    cfg.steps = warmup + iters;
    cfg.optim.lr = 2e-4;
    const double fwd_flop = 2.0 * dm_unet_macs_per_example(&cfg.unet);
    /* what runs the first level's 3x3 convolutions, the bulk of the FLOPs */
    const int64_t side = cfg.unet.sample_size;
    const char *conv_impl = dm_conv_impl_name(cfg.unet.block_out_channels[0], side, side, batch);

    /* random images: the speed does not depend on the data */
    const int64_t n_img = batch > 256 ? batch : 256;
    const int64_t dim = dm_train_config_dim(&cfg);
    dm_dataset data;
    if (dm_dataset_init(&data, n_img, dim, &err)) return cli_fail(&err);
    dm_rng rng;
    dm_rng_init(&rng, 0, 0);
    dm_rng_uniform(&rng, data.x, (size_t)(n_img * dim));
    for (int64_t i = 0; i < n_img * dim; i++) data.x[i] = 2.0f * data.x[i] - 1.0f;

    double *t = malloc((size_t)iters * sizeof *t);
    if (!t) {
        dm_dataset_free(&data);
        dm_error_set(&err, DM_ERR_NOMEM, "out of memory");
        return cli_fail(&err);
    }
    dm_trainer *tr;
    dm_status st = dm_trainer_create(&tr, &cfg, &data, &err);
    dm_dataset_free(&data); /* the trainer keeps its own copy */
    if (st) return cli_fail(&err);
    cli_progress bar;
    cli_progress_start(&bar, "train", "steps", warmup + iters, json);
    double train_prof[DM_PROFILE_COUNT], infer_prof[DM_PROFILE_COUNT], total = 0;
    for (int i = 0; !st && i < warmup + iters; i++) {
        if (i == warmup) profile_start(profile);
        double t0 = cli_now();
        st = dm_trainer_step(tr, NULL, &err);
        if (i >= warmup) t[i - warmup] = cli_now() - t0, total += t[i - warmup];
        cli_progress_update(&bar, i + 1, NULL);
    }
    cli_progress_finish(&bar);
    profile_stop(train_prof);
    const double train_total = total;
    dm_trainer_free(tr);
    if (st) return cli_fail(&err);
    const double train_s = cli_median(t, iters);
    const double rss = cli_peak_rss_mib();

    /* sampling: network evaluations at one shared timestep, as a sampler makes them */
    dm_model *m;
    if (dm_unet_create(&m, &cfg.unet, 0, &err)) return cli_fail(&err);
    const double params = (double)dm_model_num_params(m); /* float32 gradients: 4 bytes each */
    float *x = malloc((size_t)(infer_batch * dim) * sizeof *x);
    float *eps = malloc((size_t)(infer_batch * dim) * sizeof *eps);
    float *ts = malloc((size_t)infer_batch * sizeof *ts);
    if (!x || !eps || !ts) {
        dm_error_set(&err, DM_ERR_NOMEM, "out of memory for batch %lld", (long long)infer_batch);
        st = err.status;
    }
    if (!st) dm_rng_normal(&rng, x, (size_t)(infer_batch * dim));
    for (int64_t b = 0; !st && b < infer_batch; b++) ts[b] = 500;
    cli_progress_start(&bar, "sample", "evals", warmup + iters, json);
    total = 0;
    for (int i = 0; !st && i < warmup + iters; i++) {
        if (i == warmup) profile_start(profile);
        double t0 = cli_now();
        st = dm_model_forward(m, eps, x, ts, infer_batch, 0, &err);
        if (i >= warmup) t[i - warmup] = cli_now() - t0, total += t[i - warmup];
        cli_progress_update(&bar, i + 1, NULL);
    }
    cli_progress_finish(&bar);
    profile_stop(infer_prof);
    const double infer_total = total;
    dm_model_free(m);
    free(x), free(eps), free(ts);
    if (st) return cli_fail(&err);
    const double infer_s = cli_median(t, iters);
    free(t);
    const double sgemm = dm_sgemm_gflops(sgemm_n, 3);

    const double train_ips = (double)batch / train_s, infer_ips = (double)infer_batch / infer_s;
    const double train_gf = 3.0 * fwd_flop * train_ips * 1e-9;
    const double infer_gf = fwd_flop * infer_ips * 1e-9;
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "model", preset);
        cJSON_AddNumberToObject(o, "params", params);
        cJSON_AddNumberToObject(o, "threads", dm_get_num_threads());
        cJSON_AddStringToObject(o, "conv", conv_impl);
        cJSON_AddStringToObject(o, "precision", precision);
        cJSON_AddNumberToObject(o, "sgemm_gflops", sgemm);
        cJSON_AddNumberToObject(o, "train_batch", (double)batch);
        cJSON_AddNumberToObject(o, "train_images_per_s", train_ips);
        cJSON_AddNumberToObject(o, "train_gflops", train_gf);
        cJSON_AddNumberToObject(o, "train_peak_rss_mib", rss);
        cJSON_AddNumberToObject(o, "infer_batch", (double)infer_batch);
        cJSON_AddNumberToObject(o, "infer_images_per_s", infer_ips);
        cJSON_AddNumberToObject(o, "infer_gflops", infer_gf);
        if (profile) {
            profile_json(o, "train_profile_ms_per_step", train_prof, train_total, iters);
            profile_json(o, "infer_profile_ms_per_evaluation", infer_prof, infer_total, iters);
        }
        cli_print_json(o);
    } else {
        printf("%s, threads %d, convolutions %s; sgemm %lld: %.1f GFLOP/s\n", preset,
               dm_get_num_threads(), conv_impl, (long long)sgemm_n, sgemm);
        printf("training, batch %lld: %.1f images/s (%.2f s/step), %.1f GFLOP/s; peak RSS %.0f "
               "MiB\n",
               (long long)batch, train_ips, train_s, train_gf, rss);
        printf("sampling, batch %lld: %.1f images/s (%.3f s/evaluation), %.1f GFLOP/s\n",
               (long long)infer_batch, infer_ips, infer_s, infer_gf);
        if (profile) {
            printf("\ntime per layer type, mean over the %d timed iterations:\n", iters);
            printf("  %-14s %12s %7s %14s %7s\n", "", "train ms/step", "share",
                   "sample ms/eval", "share");
            double tr_rest = train_total, in_rest = infer_total;
            for (int k = 0; k < DM_PROFILE_COUNT; k++) {
                tr_rest -= train_prof[k], in_rest -= infer_prof[k];
                printf("  %-14s %12.1f %6.1f%% %14.1f %6.1f%%\n", dm_profile_name(k),
                       1e3 * train_prof[k] / iters, 100 * train_prof[k] / train_total,
                       1e3 * infer_prof[k] / iters, 100 * infer_prof[k] / infer_total);
            }
            printf("  %-14s %12.1f %6.1f%% %14.1f %6.1f%%\n", "the rest", 1e3 * tr_rest / iters,
                   100 * tr_rest / train_total, 1e3 * in_rest / iters,
                   100 * in_rest / infer_total);
        }
    }
    return 0;
}
