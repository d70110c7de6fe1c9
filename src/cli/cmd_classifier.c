/* diffusion train-classifier: an image classifier for evaluation (clean images) or for
 * classifier guidance (noisy images on a diffusion model's schedule). */
#include "common.h"
#include "images.h"
#include "progress.h"

#include <stdio.h>
#include <string.h>

typedef struct {
    cli_progress bar;
    double loss_avg;
} train_progress;

static int on_step(void *ctx, int64_t step, int64_t steps, double loss) {
    train_progress *p = ctx;
    (void)steps;
    p->loss_avg = step == 1 ? loss : 0.98 * p->loss_avg + 0.02 * loss;
    char extra[64];
    snprintf(extra, sizeof extra, "loss %.4f", p->loss_avg);
    cli_progress_update(&p->bar, step, extra);
    return cli_interrupted(); /* Ctrl-C: stop and save what there is */
}

int cmd_train_classifier(int argc, char **argv) {
    dm_classifier_config cfg;
    dm_classifier_config_default(&cfg);
    const char *data = "fashion-mnist", *test = NULL, *out = "runs/classifier";
    const char *model = "classifier-28", *like = NULL, *schedule = "linear";
    int threads = 0, quiet = 0, json = 0, T = cfg.schedule.T;
    cli_option opts[] = {
        {"--data", OPT_STRING, &data, "NAME|PATH", "labelled images: fashion-mnist, a folder with one subfolder per class, an IDX file with labels"},
        {"--test-data", OPT_STRING, &test, "NAME|PATH", "labelled images for the test accuracy (default: fashion-mnist-test for fashion-mnist; none otherwise)"},
        {"--out", OPT_STRING, &out, "DIR", "classifier folder (config.json, classifier/, model.safetensors)"},
        {"--model", OPT_STRING, &model, "NAME|JSON", "the network: classifier-28, classifier-tiny or a config.json with classifier_classes"},
        {"--noisy", OPT_FLAG, &cfg.noisy, NULL, "train on noisy x_t at t ~ U{1..T} (a classifier for guidance); default: clean images (an evaluation classifier)"},
        {"--like", OPT_STRING, &like, "CHECKPOINT", "with --noisy: take the noise schedule of this diffusion model"},
        {"--schedule", OPT_STRING, &schedule, "NAME", "with --noisy: linear, cosine or logsnr"},
        {"--T", OPT_INT, &T, "N", "with --noisy: diffusion steps"},
        {"--steps", OPT_I64, &cfg.steps, "N", "optimiser steps"},
        {"--batch", OPT_I64, &cfg.batch, "N", "images per step"},
        {"--lr", OPT_DOUBLE, &cfg.optim.lr, "X", "peak learning rate (Adam)"},
        {"--hflip", OPT_FLAG, &cfg.hflip, NULL, "mirror each drawn image with probability 1/2"},
        {"--seed", OPT_U64, &cfg.seed, "N", "seed of every random draw"},
        {"--threads", OPT_INT, &threads, "N", "threads (0 = every CPU this process may use, or OMP_NUM_THREADS)"},
        {"--quiet", OPT_FLAG, &quiet, NULL, "no progress bar"},
        {"--json", OPT_FLAG, &json, NULL, "print the result as one JSON line"},
    };
    cli_command cmd = {"diffusion train-classifier [options]",
                       "Trains an image classifier (a UNet encoder with a pooled linear head; "
                       "cross-entropy, Adam, EMA weights)\non clean images, to evaluate samples "
                       "(eval --metric accuracy|fid|prec-recall --classifier DIR), or with "
                       "--noisy\non x_t of a diffusion schedule, for classifier guidance (sample "
                       "--guide-classifier DIR). Ctrl-C stops\nand saves.",
                       opts, (int)(sizeof opts / sizeof opts[0])};
    int rc = cli_parse(&cmd, argc, argv);
    if (rc) return rc == CLI_HELP ? 0 : 2;
    dm_error err = {0};
    const int custom_schedule = cli_given(argc, argv, "--schedule") ||
                                cli_given(argc, argv, "--T") || like;
    if (!cfg.noisy && custom_schedule) {
        fprintf(stderr, "error: --like, --schedule and --T choose the noise of a --noisy "
                        "classifier; an evaluation classifier sees clean images\n");
        return 2;
    }
    if (like) {
        dm_pipeline *p;
        if (dm_pipeline_load(&p, like, &err)) return cli_fail(&err);
        cfg.schedule = dm_pipeline_train_config(p)->schedule;
        dm_pipeline_free(p);
    } else {
        cfg.schedule.T = T;
        if (dm_schedule_kind_parse(schedule, &cfg.schedule.kind, &err)) return cli_fail(&err);
    }
    if (cli_unet_config(&cfg.net, model, &err)) return cli_fail(&err);
    if (!cfg.net.classifier_classes) {
        fprintf(stderr, "error: --model %s is a UNet, not a classifier: use classifier-28 or a "
                        "config with classifier_classes\n", cli_safe(model));
        return 2;
    }
    cli_set_threads(threads);
    dm_image_set set;
    if (cli_load_images(&set, data, cfg.net.in_channels, cfg.net.sample_size, 0, &err))
        return cli_fail(&err);
    if (!set.data.labels) {
        dm_image_set_free(&set);
        fprintf(stderr, "error: %s has no labels; a classifier needs labelled images "
                        "(fashion-mnist, or a folder with one subfolder per class)\n", cli_safe(data));
        return 2;
    }
    if (set.data.num_classes != cfg.net.classifier_classes) {
        fprintf(stderr, "note: %s has %d classes; the classifier gets %d outputs instead of "
                        "%s's %lld\n", cli_safe(data), (int)set.data.num_classes,
                (int)set.data.num_classes, cli_safe(model), (long long)cfg.net.classifier_classes);
        cfg.net.classifier_classes = set.data.num_classes;
    }
    if (cli_make_dirs(out, &err)) {
        dm_image_set_free(&set);
        return cli_fail(&err);
    }
    train_progress prog = {0};
    cli_progress_start(&prog.bar, cfg.noisy ? "noisy classifier" : "classifier", "steps",
                       cfg.steps, quiet || json);
    cli_catch_interrupt();
    int64_t done = 0;
    dm_status st = dm_classifier_train(&cfg, &set.data, out, on_step, &prog, &done, &err);
    cli_progress_finish(&prog.bar);
    const double seconds = cli_now() - prog.bar.t0;
    dm_image_set_free(&set);
    if (st) return cli_fail(&err);

    /* the test accuracy on clean images (t = 0) */
    if (!test && strcmp(data, "fashion-mnist") == 0) test = "fashion-mnist-test";
    double acc = -1;
    if (test) {
        dm_classifier *c;
        if (dm_classifier_load(&c, out, &err)) return cli_fail(&err);
        dm_image_set ts;
        st = cli_load_images(&ts, test, cfg.net.in_channels, cfg.net.sample_size, 0, &err);
        if (!st) {
            st = dm_classifier_accuracy(c, &ts.data, NULL, &acc, &err);
            dm_image_set_free(&ts);
        }
        dm_classifier_free(c);
        if (st) return cli_fail(&err);
    }
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "classifier", out);
        cJSON_AddStringToObject(o, "kind", cfg.noisy ? "noisy" : "clean");
        cJSON_AddNumberToObject(o, "steps", (double)done);
        cJSON_AddNumberToObject(o, "seconds", seconds);
        if (acc >= 0) cJSON_AddNumberToObject(o, "test_accuracy", acc);
        cli_print_json(o);
    } else {
        printf("trained a %s classifier for %lld steps in %.1f s; saved to %s\n",
               cfg.noisy ? "noisy" : "clean", (long long)done, seconds, cli_safe(out));
        if (acc >= 0)
            printf("test accuracy on %s (clean images): %.4f\n", cli_safe(test), acc);
    }
    return 0;
}
