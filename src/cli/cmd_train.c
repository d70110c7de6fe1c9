/* diffusion train: fit a model to a built-in 2-D set, the user's N x D data, Fashion-MNIST or
 * the user's images. */
#include "common.h"
#include "images.h"
#include "init_from.h"
#include "parallel.h"
#include "previews.h"
#include "progress.h"
#include "resume_flags.h"
#include "run_folder.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* Mean of the finite values (a skipped step's loss is NaN); NaN when there are none. */
static double cli_finite_mean(const float *v, int64_t n) {
    double s = 0;
    int64_t k = 0;
    for (int64_t i = 0; i < n; i++)
        if (isfinite(v[i])) s += v[i], k++;
    return k ? s / (double)k : NAN;
}

double cli_recent_loss(const dm_trainer *tr, int64_t k) {
    int64_t n = dm_trainer_step_count(tr);
    if (n == 0) return 0;
    if (k > n) k = n;
    const float *h = dm_trainer_loss_history(tr);
    return cli_finite_mean(h + n - k, k);
}

static void append_message(dm_error *err, const char *fmt, ...) {
    const size_t len = strlen(err->msg);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg + len, sizeof err->msg - len, fmt, ap);
    va_end(ap);
}

/* One JSON line: the mean loss since the last line, throughput, time, and the learning rate
 * of the step named. */
static void log_line(FILE *log, const dm_trainer *tr, int64_t step, int64_t steps_since,
                     double seconds_since, double elapsed, double lr) {
    const double mean = cli_finite_mean(dm_trainer_loss_history(tr) + step - steps_since,
                                        steps_since);
    const double batch = (double)dm_trainer_config(tr)->batch;
    char loss[32] = "null"; /* JSON has no NaN: every step of the stretch was skipped */
    if (isfinite(mean)) snprintf(loss, sizeof loss, "%.6g", mean);
    fprintf(log,
            "{\"step\": %lld, \"loss\": %s, \"steps_per_s\": %.4g, \"examples_per_s\": %.4g, "
            "\"elapsed_s\": %.2f, \"lr\": %.17g}\n",
            (long long)step, loss, (double)steps_since / seconds_since,
            batch * (double)steps_since / seconds_since, elapsed, lr);
    fflush(log);
}

/* Over MPI (parallel.h) rank 0 alone writes the checkpoint, and every rank learns whether it
 * could, so that all stop together. */
static int train_interrupted; /* the run stopped on Ctrl-C (rank 0's, on every rank) */
static dm_status save_checkpoint(dm_trainer *tr, cli_run_folder *rf, dm_error *err) {
    dm_status st = cli_parallel_is_root() ? cli_run_folder_save(rf, tr, err) : DM_OK;
    if (cli_parallel_size() > 1 && (st = (dm_status)cli_parallel_bcast_int((int)st)) &&
        !cli_parallel_is_root())
        dm_error_set(err, st, "rank 0 could not write the checkpoint");
    return st;
}

dm_status cli_run_training(dm_trainer *tr, cli_run_folder *rf, int64_t every, int quiet,
                           FILE *log, int64_t log_every, double time_limit_s, double *seconds,
                           dm_error *err) {
    const int64_t total = dm_trainer_config(tr)->steps;
    const int root = cli_parallel_is_root(), ranks = cli_parallel_size();
    const int64_t check_every = ranks > 1 ? cli_parallel_check_every() : 0;
    cli_progress bar;
    cli_progress_start(&bar, "train", "steps", total, quiet || !root);
    cli_catch_interrupt();
    dm_status st = DM_OK;
    int64_t logged_step = dm_trainer_step_count(tr);
    double logged_t = cli_now();
    int64_t saved_step = dm_trainer_step_count(tr); /* of the checkpoint on disk, if any */
    char saved_dir[4200];
    if (rf->resumed_from) snprintf(saved_dir, sizeof saved_dir, "%s", rf->resumed_from);
    while (dm_trainer_step_count(tr) < total) {
        double loss;
        const double lr = dm_trainer_lr(tr); /* the one this step uses */
        if ((st = dm_trainer_step(tr, &loss, err))) {
            if (st == DM_ERR_NUMERIC && saved_step > 0)
                append_message(err, "; the checkpoint of step %lld in %s is intact (resume "
                                "with --resume; --skip-nonfinite skips such steps)",
                                (long long)saved_step, saved_dir);
            else if (st == DM_ERR_NUMERIC)
                append_message(err, "; nothing was saved (--skip-nonfinite skips such steps)");
            break;
        }
        int64_t step = dm_trainer_step_count(tr);
        if (isnan(loss) && root) {
            cli_progress_clear(&bar);
            fprintf(stderr, "warning: step %lld: the loss or gradient is not finite; step "
                    "skipped, weights unchanged\n", (long long)step);
        }
        if (log && log_every > 0 && (step % log_every == 0 || step == total)) {
            const double now = cli_now();
            log_line(log, tr, step, step - logged_step, now - logged_t, now - bar.t0, lr);
            logged_step = step;
            logged_t = now;
        }
        if (rf->preview_every > 0 && step % rf->preview_every == 0) {
            /* rank 0 draws it; every rank learns whether that worked, to stop together */
            if (root) st = cli_preview_write(tr, rf->dir, rf->preview_steps, err);
            if (ranks > 1 && (st = (dm_status)cli_parallel_bcast_int((int)st)) && !root)
                dm_error_set(err, st, "rank 0 could not write the preview");
            if (st) break;
        }
        char extra[64];
        snprintf(extra, sizeof extra, "loss %.4f", cli_recent_loss(tr, 100));
        cli_progress_update(&bar, step, extra);
        if (check_every > 0 && step % check_every == 0 && !cli_parallel_same_weights(tr)) {
            st = dm_error_set(err, DM_ERR_NUMERIC, "step %lld: the weights differ between the "
                              "ranks (DIFFUSION_MPI_CHECK)", (long long)step);
            break;
        }
        /* 1: Ctrl-C, 2: the time limit; over MPI rank 0 decides for every rank */
        int stop = cli_interrupted() ? 1
                   : time_limit_s > 0 && cli_now() - bar.t0 >= time_limit_s ? 2 : 0;
        if (ranks > 1) stop = cli_parallel_bcast_int(stop);
        if (stop == 1) {
            cli_progress_finish(&bar);
            train_interrupted = 1;
            if ((st = save_checkpoint(tr, rf, err))) return st;
            return dm_error_set(err, DM_ERR_IO,
                                "interrupted at step %lld; checkpoint saved in %s (resume with "
                                "--resume)",
                                (long long)step, rf->last);
        }
        if (stop == 2) break; /* saved below */
        if (every > 0 && step % every == 0 && step < total) {
            if ((st = save_checkpoint(tr, rf, err))) break;
            saved_step = step;
            snprintf(saved_dir, sizeof saved_dir, "%s", rf->last);
        }
    }
    cli_progress_finish(&bar);
    *seconds = cli_now() - bar.t0;
    if (st) return st;
    return save_checkpoint(tr, rf, err);
}

/* Holds an exclusive lock on DIR/.lock for the life of the process (released by the kernel
 * when it ends, however it ends), so a second trainer on the same run folder is refused before
 * it touches the checkpoint. */
static dm_status lock_run_folder(const char *dir, dm_error *err) {
    char path[4200];
    snprintf(path, sizeof path, "%s/.lock", dir);
    const int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return dm_error_set(err, DM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        const int e = errno;
        close(fd);
        if (e == EWOULDBLOCK)
            return dm_error_set(err, DM_ERR_IO, "%s is in use by another training run (its "
                                "lock %s is held); wait for it to end or choose another --out",
                                dir, path);
        return dm_error_set(err, DM_ERR_IO, "%s: cannot lock: %s", path, strerror(e));
    }
    return DM_OK; /* fd stays open: the lock lasts until exit */
}

/* One line of DIR/sessions.jsonl per start, new or resumed: the settings that may change on
 * --resume without changing the run, as this session applies them (config.json records the
 * rest). */
static dm_status record_session(const char *dir, const dm_trainer *tr, const char *resumed_from,
                                int64_t every, int64_t total_limit, int64_t log_every,
                                double time_limit, int64_t preview_every,
                                const char *precision, dm_error *err) {
    char path[4300];
    snprintf(path, sizeof path, "%s/sessions.jsonl", dir);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "step", (double)dm_trainer_step_count(tr));
    if (resumed_from) cJSON_AddStringToObject(o, "resumed_from", resumed_from);
    else cJSON_AddNullToObject(o, "resumed_from");
    cJSON_AddNumberToObject(o, "steps", (double)dm_trainer_config(tr)->steps);
    cJSON_AddNumberToObject(o, "lr", dm_trainer_config(tr)->optim.lr);
    cJSON_AddNumberToObject(o, "checkpoint_every", (double)every);
    cJSON_AddNumberToObject(o, "checkpoints_total_limit", (double)total_limit);
    cJSON_AddNumberToObject(o, "log_every", (double)log_every);
    if (time_limit > 0) cJSON_AddNumberToObject(o, "time_limit_min", time_limit);
    else cJSON_AddNullToObject(o, "time_limit_min");
    cJSON_AddNumberToObject(o, "preview_every", (double)preview_every);
    cJSON_AddNumberToObject(o, "threads", dm_get_num_threads());
    cJSON_AddStringToObject(o, "precision", precision);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    FILE *f = s ? fopen(path, "a") : NULL;
    const int ok = f && fprintf(f, "%s\n", s) > 0;
    free(s);
    if (f && fclose(f) != 0) return dm_error_set(err, DM_ERR_IO, "%s: cannot write", path);
    if (!ok) return dm_error_set(err, DM_ERR_IO, "%s: cannot write", path);
    return DM_OK;
}

/* The trainer and its data: a uint8 set is read by reference, so it lives until the trainer
 * goes. */
static void free_run(dm_trainer *tr, dm_dataset *ds) {
    dm_trainer_free(tr);
    dm_dataset_free(ds);
}

/* Previews sample the trainer's own schedule and draw 2-D points or images: 1 (after the
 * message) when this run cannot have them. */
static int preview_refused(const dm_train_config *c, int steps) {
    const char *why = NULL;
    char buf[160];
    if (c->schedule.kind == DM_SCHEDULE_LEARNED)
        why = "a learned schedule is sampled from a saved checkpoint (diffusion sample --model "
              "DIR/checkpoint-N)";
    else if (c->arch == DM_ARCH_MLP && c->mlp.dim < 2)
        why = "previews draw images or 2-D points; these data have 1 dimension";
    else if (c->sde_training && c->num_classes && c->p_uncond <= 0)
        why = "a continuous-time model's previews use the null label, and --p-uncond 0 trains "
              "none";
    else if (steps > c->schedule.T) {
        snprintf(buf, sizeof buf, "--preview-steps %d is more than the schedule's T = %d", steps,
                 (int)c->schedule.T);
        why = buf;
    }
    if (why) fprintf(stderr, "error: --preview-every: %s\n", why);
    return why != NULL;
}

/* --sde and the flags of its processes into cfg; the discrete chain's flags, and another
 * process's, refused with it. Returns 2 (after the message) on a refusal. */
static int cli_train_sde_flags(int argc, char **argv, const char *name, dm_train_config *cfg) {
    static const char *const process_flags[] = {"--beta-min", "--beta-max", "--sigma-min",
                                                "--sigma-max"};
    if (!name) {
        for (size_t i = 0; i < sizeof process_flags / sizeof process_flags[0]; i++)
            if (cli_given(argc, argv, process_flags[i])) {
                fprintf(stderr, "error: %s goes with --sde (vp, subvp: --beta-min/--beta-max; "
                        "ve: --sigma-min/--sigma-max)\n", process_flags[i]);
                return 2;
            }
        return 0;
    }
    dm_error err = {0};
    dm_sde given = cfg->sde;
    if (dm_sde_kind_parse(name, &cfg->sde.kind, &err)) {
        fprintf(stderr, "error: --sde: %s\n", err.msg);
        return 2;
    }
    /* the process's defaults, then what was given */
    dm_sde_default(&cfg->sde, cfg->sde.kind);
    const int ve = cfg->sde.kind == DM_SDE_VE;
    for (size_t i = 0; i < sizeof process_flags / sizeof process_flags[0]; i++) {
        const int ve_flag = i >= 2;
        if (cli_given(argc, argv, process_flags[i]) && ve_flag != ve) {
            fprintf(stderr, "error: %s does not apply to --sde %s (its flags: %s)\n",
                    process_flags[i], name, ve ? "--sigma-min, --sigma-max"
                                               : "--beta-min, --beta-max");
            return 2;
        }
    }
    if (cli_given(argc, argv, "--beta-min")) cfg->sde.beta_min = given.beta_min;
    if (cli_given(argc, argv, "--beta-max")) cfg->sde.beta_max = given.beta_max;
    if (cli_given(argc, argv, "--sigma-min")) cfg->sde.sigma_min = given.sigma_min;
    /* VE: sigma_max from the data unless given (0 asks the trainer for it) */
    cfg->sde.sigma_max = cli_given(argc, argv, "--sigma-max") ? given.sigma_max
                         : ve                                 ? 0
                                                              : cfg->sde.sigma_max;
    if (ve && cli_given(argc, argv, "--sigma-max") && !(given.sigma_max > 0)) {
        fprintf(stderr, "error: --sigma-max must be > 0 (leave it out for the data's largest "
                        "distance)\n");
        return 2;
    }
    static const char *const discrete_flags[] = {"--schedule", "--beta-start", "--beta-end",
                                                 "--gamma-min", "--gamma-max"};
    for (size_t i = 0; i < sizeof discrete_flags / sizeof discrete_flags[0]; i++)
        if (cli_given(argc, argv, discrete_flags[i])) {
            fprintf(stderr, "error: %s sets the discrete chain's noise levels; with --sde the "
                    "SDE's set them (%s)\n", discrete_flags[i],
                    ve ? "--sigma-min, --sigma-max" : "--beta-min, --beta-max");
            return 2;
        }
    cfg->sde_training = 1;
    return 0;
}

static int train_main(int argc, char **argv) {
    dm_train_config cfg;
    dm_train_config_default(&cfg);
    const char *data = "swissroll", *out = NULL, *schedule = "linear", *model = NULL;
    const char *prediction = "epsilon", *loss_name = "simple", *var = "beta";
    const char *t_sampling = "uniform", *init_from = NULL, *variant = NULL;
    const char *lr_scheduler = "constant_with_warmup", *resume_from = NULL;
    int64_t n_data = 100000, every = 1000, log_every = 50, total_limit = 0, preview_every = 0;
    int preview_steps = CLI_PREVIEW_STEPS;
    int threads = 0, resume = 0, json = 0, quiet = 0, no_normalize = 0, T = cfg.schedule.T;
    int skip_nonfinite = 0, conditional = 0, center_crop = 0, random_crop = 0;
    int64_t resolution = 0;
    int64_t inject_nan_step = 0;
    double time_limit = 0;
    const char *precision = "fp32", *cache_dir = NULL, *sde = NULL;
    cli_option opts[] = {
        {"--data", OPT_STRING, &data, "NAME|PATH", "a built-in 2-D set, a CSV/NPY file of N x D points, fashion-mnist, a folder of PNG/JPEG images, an IDX file or an NPY array of images"},
        {"--model", OPT_STRING, &model, "NAME|JSON", "mlp (points), a UNet preset (unet-28, cifar-ddpm, tiny) or a diffusers config.json; images default to unet-28"},
        {"--init-from", OPT_STRING, &init_from, "DIR", "fine-tune a diffusers pipeline or UNet2DModel folder: its UNet (architecture and weights) and its scheduler's schedule, prediction and variance"},
        {"--variant", OPT_STRING, &variant, "NAME", "with --init-from: load diffusion_pytorch_model.NAME.safetensors (e.g. fp16)"},
        {"--n-data", OPT_I64, &n_data, "N", "points drawn for a built-in set"},
        {"--cache-dir", OPT_STRING, &cache_dir, "DIR", "an image folder is decoded once into a uint8 cache file here, memory-mapped on later runs and rebuilt when the folder changes (default: DATA/.diffusion-cache)"},
        {"--out", OPT_STRING, &out, "DIR", "run folder: checkpoint-N/ (every --checkpoint-every steps and at the end), checkpoint (the newest), loss.png, log.jsonl, sessions.jsonl (default: runs/<data>)"},
        {"--steps", OPT_I64, &cfg.steps, "N", "optimiser steps"},
        {"--batch", OPT_I64, &cfg.batch, "N", "examples per optimiser step (with --grad-accum, the effective batch)"},
        {"--grad-accum", OPT_I64, &cfg.grad_accum, "N", "gradient accumulation: run each step's batch as N micro-batches of batch/N (less memory, the same step); diffusers' --train_batch_size b --gradient_accumulation_steps N is --batch b*N --grad-accum N"},
        {"--lr", OPT_DOUBLE, &cfg.optim.lr, "X", "peak learning rate (Adam)"},
        {"--warmup", OPT_I64, &cfg.optim.warmup, "N", "linear learning-rate warm-up steps"},
        {"--lr-scheduler", OPT_STRING, &lr_scheduler, "NAME", "learning rate after the warm-up, diffusers' names: constant_with_warmup (lr), constant (lr, no warm-up), linear, cosine (decay to 0 at --steps), cosine_with_restarts, polynomial"},
        {"--lr-num-cycles", OPT_INT, &cfg.optim.lr_num_cycles, "N", "cosine_with_restarts: number of cosine cycles (hard restarts)"},
        {"--lr-power", OPT_DOUBLE, &cfg.optim.lr_power, "X", "polynomial: power of the decay"},
        {"--lr-end", OPT_DOUBLE, &cfg.optim.lr_end, "X", "polynomial: learning rate at the last step (< --lr)"},
        {"--weight-decay", OPT_DOUBLE, &cfg.optim.weight_decay, "X", "decoupled weight decay (AdamW); 0 = Adam"},
        {"--clip", OPT_DOUBLE, &cfg.optim.grad_clip, "X", "clip the global gradient norm; 0 = off"},
        {"--ema", OPT_DOUBLE, &cfg.optim.ema_decay, "X", "EMA decay of the weights used for sampling; 0 = off"},
        {"--hidden", OPT_I64, &cfg.mlp.hidden, "N", "MLP width"},
        {"--layers", OPT_I64, &cfg.mlp.layers, "N", "MLP hidden layers"},
        {"--temb-dim", OPT_I64, &cfg.mlp.temb_dim, "N", "sinusoidal timestep embedding size"},
        {"--schedule", OPT_STRING, &schedule, "NAME", "noise schedule: linear, cosine, logsnr, learned (VDM's, with --loss vdm-continuous)"},
        {"--T", OPT_INT, &T, "N", "diffusion steps"},
        {"--beta-start", OPT_DOUBLE, &cfg.schedule.beta_start, "X", "linear schedule: first beta"},
        {"--beta-end", OPT_DOUBLE, &cfg.schedule.beta_end, "X", "linear schedule: last beta"},
        {"--gamma-min", OPT_DOUBLE, &cfg.schedule.gamma_min, "X", "logsnr / learned schedule: -log SNR at the start (learned: its initial value)"},
        {"--gamma-max", OPT_DOUBLE, &cfg.schedule.gamma_max, "X", "logsnr / learned schedule: -log SNR at the end"},
        {"--sde", OPT_STRING, &sde, "NAME", "train in continuous time on an SDE (score_sde's denoising score matching, NCSN's std^2 weighting): vp, subvp or ve; such a model samples with diffusion sample --sde-sampler (a vp one also with the discrete samplers)"},
        {"--beta-min", OPT_DOUBLE, &cfg.sde.beta_min, "X", "--sde vp, subvp: beta(0)"},
        {"--beta-max", OPT_DOUBLE, &cfg.sde.beta_max, "X", "--sde vp, subvp: beta(1)"},
        {"--sigma-min", OPT_DOUBLE, &cfg.sde.sigma_min, "X", "--sde ve: sigma(0)"},
        {"--sigma-max", OPT_DOUBLE, &cfg.sde.sigma_max, "X", "--sde ve: sigma(1); default: the largest distance between two training examples as the network sees them (Song & Ermon), over at most " CLI_STR(DM_SDE_SIGMA_MAX_POINTS) " of them"},
        {"--prediction", OPT_STRING, &prediction, "NAME", "what the network predicts: epsilon, x0, v, score"},
        {"--loss", OPT_STRING, &loss_name, "NAME", "simple (MSE of the prediction), vlb (the bound's weights), vdm (SNR-difference weights), hybrid (simple + lambda vlb; needs --var learned), vdm-continuous (VDM's continuous-time bound; schedule logsnr or learned; images: the discretised reconstruction on 256 levels and a UNet with VDM's Fourier-feature input)"},
        {"--var", OPT_STRING, &var, "NAME", "reverse variance: beta, beta-tilde (used by --loss vlb) or learned (a second output, trained by --loss hybrid or vlb)"},
        {"--t-sampling", OPT_STRING, &t_sampling, "NAME", "timestep draws: uniform or importance (by each t's recent loss, improved DDPM)"},
        {"--hybrid-lambda", OPT_DOUBLE, &cfg.hybrid_lambda, "X", "weight of the bound in --loss hybrid"},
        {"--no-normalize", OPT_FLAG, &no_normalize, NULL, "train on the data as they are (no standardisation)"},
        {"--hflip", OPT_FLAG, &cfg.hflip, NULL, "images: mirror each drawn image with probability 1/2"},
        {"--random-flip", OPT_FLAG, &cfg.hflip, NULL, "the same as --hflip (diffusers' --random_flip)"},
        {"--resolution", OPT_I64, &resolution, "R", "images: the model's size R x R; on load each image's shorter side is resized to R (bilinear, antialiased as torchvision's default) and the centre R x R kept (diffusers' --resolution; a folder keeps its own filter: centre square, area-averaged); default: the model's sample_size"},
        {"--center-crop", OPT_FLAG, &center_crop, NULL, "images: keep the centre R x R after the resize (the default; diffusers' --center_crop)"},
        {"--random-crop", OPT_FLAG, &random_crop, NULL, "images: a random R x R crop per draw (not supported yet: refused)"},
        {"--conditional", OPT_FLAG, &conditional, NULL, "class-conditional model on labelled data (fashion-mnist, class subfolders, moons, 8gaussians, rings, spiral), for --class and --guidance when sampling"},
        {"--p-uncond", OPT_DOUBLE, &cfg.p_uncond, "P", "with --conditional: probability that a label is dropped to the null label (classifier-free guidance)"},
        {"--seed", OPT_U64, &cfg.seed, "N", "seed of every random draw (data, init, batches, noise)"},
        {"--threads", OPT_INT, &threads, "N", "threads (0 = every CPU this process may use, or OMP_NUM_THREADS)"},
        {"--precision", OPT_STRING, &precision, "fp32|bf16", CLI_PRECISION_HELP},
        {"--checkpoint-every", OPT_I64, &every, "N", "steps between checkpoints DIR/checkpoint-N (0 = only at the end)"},
        {"--checkpoints-total-limit", OPT_I64, &total_limit, "K", "keep only the newest K checkpoint-N folders (the oldest goes once the new one is complete; default: all)"},
        {"--preview-every", OPT_I64, &preview_every, "N", "every N steps a picture of samples from the EMA weights with the same starting noise each time: DIR/previews/step-N.png (images: a grid; points: a scatter plot); 0 = none"},
        {"--preview-steps", OPT_INT, &preview_steps, "S", "network evaluations per preview (DDIM, eta 0; with --sde the probability-flow ODE, Heun, S/2 steps)"},
        {"--log-every", OPT_I64, &log_every, "N", "steps between lines of DIR/log.jsonl (0 = no log)"},
        {"--resume", OPT_FLAG, &resume, NULL, "continue the run in --out from its newest checkpoint (--lr, --steps, --checkpoint-every, --log-every, --time-limit, --threads may change, recorded in DIR/sessions.jsonl; the flags that fix the model, data, schedule and objective may only repeat the run's values)"},
        {"--resume-from", OPT_STRING, &resume_from, "NAME", "continue the run in --out from checkpoint-N (NAME: checkpoint-N, N or a path to it); log.jsonl drops the lines after step N"},
        {"--time-limit", OPT_DOUBLE, &time_limit, "MINUTES", "train for this wall-clock time at most, then save and stop (resume with --resume); default: no limit"},
        {"--skip-nonfinite", OPT_FLAG, &skip_nonfinite, NULL, "skip a step whose loss or gradient is NaN or Inf (weights unchanged) instead of stopping"},
        {"--inject-nan-step", OPT_I64, &inject_nan_step, "N", "testing: poison step N's input with a NaN (0 = never)"},
        {"--quiet", OPT_FLAG, &quiet, NULL, "no progress bar"},
        {"--json", OPT_FLAG, &json, NULL, "print the result as one JSON line"},
    };
    cli_command cmd = {"diffusion train [options]",
                       "Trains a DDPM (by default epsilon-prediction with L_simple; Adam, EMA): "
                       "the MLP on low-dimensional points,\na UNet on images. Checkpoints go "
                       "to "
                       "DIR/checkpoint-N, DIR/checkpoint the newest (for a UNet also a diffusers "
                       "folder: unet/, scheduler/,\nmodel_index.json), the loss curve to DIR/loss.png, loss and throughput "
                       "to DIR/log.jsonl. For images the defaults become\nbatch " 
                       CLI_STR(CLI_IMAGE_BATCH) ", lr " CLI_STR(CLI_IMAGE_LR) " and warm-up "
                       CLI_STR(CLI_IMAGE_WARMUP) " unless given.",
                       opts, (int)(sizeof opts / sizeof opts[0])};
    int rc = cli_parse(&cmd, argc, argv);
    if (rc) return rc == CLI_HELP ? 0 : 2;

    dm_error err = {0};
    char outbuf[4096], ckpt[4200], path[4300];
    if (!out) {
        const char *base = strrchr(data, '/') ? strrchr(data, '/') + 1 : data;
        snprintf(outbuf, sizeof outbuf, "runs/%.*s", (int)strcspn(base, "."), base);
        out = outbuf;
    }
    cfg.normalize = !no_normalize;
    cfg.schedule.T = T;
    if (dm_schedule_kind_parse(schedule, &cfg.schedule.kind, &err) ||
        dm_prediction_parse(prediction, &cfg.prediction, &err) ||
        dm_loss_kind_parse(loss_name, &cfg.loss, &err) ||
        dm_reverse_var_parse(var, &cfg.var, &err) ||
        dm_time_sampling_parse(t_sampling, &cfg.timesteps, &err) ||
        dm_lr_schedule_parse(lr_scheduler, &cfg.optim.lr_schedule, &err))
        return cli_fail(&err);
    /* a schedule's own flags with another schedule would be ignored (diffusers ignores them):
     * refused instead */
    static const struct {
        const char *flag;
        dm_lr_schedule only;
    } lr_flags[] = {{"--lr-num-cycles", DM_LR_COSINE_WITH_RESTARTS},
                    {"--lr-power", DM_LR_POLYNOMIAL},
                    {"--lr-end", DM_LR_POLYNOMIAL}};
    for (size_t i = 0; i < sizeof lr_flags / sizeof lr_flags[0]; i++)
        if (cli_given(argc, argv, lr_flags[i].flag) && cfg.optim.lr_schedule != lr_flags[i].only) {
            fprintf(stderr, "error: %s applies to --lr-scheduler %s only (got %s)\n",
                    lr_flags[i].flag, dm_lr_schedule_name(lr_flags[i].only),
                    dm_lr_schedule_name(cfg.optim.lr_schedule));
            return 2;
        }
    if (cfg.optim.lr_schedule == DM_LR_CONSTANT) {
        if (cli_given(argc, argv, "--warmup")) {
            fprintf(stderr, "error: --lr-scheduler constant has no warm-up (as diffusers'); for "
                            "a warm-up use constant_with_warmup\n");
            return 2;
        }
        cfg.optim.warmup = 0; /* recorded as what the run does */
    }
    if (cli_train_sde_flags(argc, argv, sde, &cfg)) return 2;
    if (n_data < 1) {
        fprintf(stderr, "error: --n-data must be >= 1\n");
        return 2;
    }
    if (log_every < 0) {
        fprintf(stderr, "error: --log-every must be >= 0\n");
        return 2;
    }
    if (cli_given(argc, argv, "--time-limit") && !(time_limit > 0 && time_limit <= 1e7)) {
        fprintf(stderr, "error: --time-limit must be more than 0 and at most 10000000 minutes "
                        "(leave it out for no limit)\n");
        return 2;
    }
    if (cli_given(argc, argv, "--checkpoints-total-limit") && total_limit < 1) {
        fprintf(stderr, "error: --checkpoints-total-limit must be at least 1 (got %lld; leave it "
                        "out to keep every checkpoint)\n", (long long)total_limit);
        return 2;
    }
    if (resume_from) resume = 1; /* --resume-from names the checkpoint --resume starts from */
    if (cli_given(argc, argv, "--preview-steps") && !preview_every) {
        fprintf(stderr, "error: --preview-steps goes with --preview-every N\n");
        return 2;
    }
    if (preview_steps < 1 || preview_steps > 100000) {
        fprintf(stderr, "error: --preview-steps must be in 1..100000 (got %d)\n", preview_steps);
        return 2;
    }
    if (cli_given(argc, argv, "--resolution") && (resolution < 1 || resolution > 4096)) {
        fprintf(stderr, "error: --resolution must be in 1..4096 (got %lld)\n",
                (long long)resolution);
        return 2;
    }
    if (center_crop && random_crop) {
        fprintf(stderr, "error: --center-crop and --random-crop exclude each other\n");
        return 2;
    }
    if (random_crop) {
        /* the trainer draws whole stored images; a crop per draw would need it to keep them
         * larger than R */
        fprintf(stderr, "error: --random-crop is not supported yet; --center-crop (the default) "
                        "crops the centre once on load\n");
        return 2;
    }
    if (cli_set_precision(precision)) return 2;
    cli_set_threads(threads);

    dm_pipeline *init = NULL;
    if (init_from) {
        /* the folder fixes these; a flag that would change them is refused, not ignored */
        static const char *const fixed[] = {"--model", "--schedule", "--T", "--beta-start",
                                            "--beta-end", "--gamma-min", "--gamma-max",
                                            "--prediction", "--var", "--conditional",
                                            "--sde", "--resume", "--resume-from"};
        for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
            if (cli_given(argc, argv, fixed[i])) {
                fprintf(stderr, "error: %s with --init-from: the diffusers folder sets the "
                        "model, schedule, prediction and variance (and a fine-tuning run "
                        "resumes with --resume alone)\n", fixed[i]);
                return 2;
            }
        if (cli_init_from(&init, &cfg, init_from, variant, &err)) return cli_fail(&err);
    } else if (variant) {
        fprintf(stderr, "error: --variant goes with --init-from\n");
        return 2;
    }

    const int images = init || (model && strcmp(model, "mlp") != 0) || cli_is_image_data(data);
    dm_dataset ds = {0};
    if (images) {
        cfg.arch = DM_ARCH_UNET;
        if (!init && cli_unet_config(&cfg.unet, model ? model : "unet-28", &err))
            return cli_fail(&err);
        /* VDM on images: VDM's Fourier-feature input (our FourierUNet2DModel variant), recorded
         * in unet/config.json; a fine-tuned diffusers UNet keeps its own input */
        if (!init && cfg.loss == DM_LOSS_VDM_CONTINUOUS && cfg.unet.classifier_classes == 0)
            cfg.unet.fourier_features = 1;
        if (resolution && init && resolution != cfg.unet.sample_size) {
            dm_pipeline_free(init);
            fprintf(stderr, "error: --resolution %lld with --init-from: the model in %s takes "
                    "%lld (leave --resolution out)\n", (long long)resolution, init_from,
                    (long long)cfg.unet.sample_size);
            return 2;
        }
        if (resolution) { /* recorded in the model's config */
            cfg.unet.sample_size = resolution;
            if (dm_unet_config_validate(&cfg.unet, &err)) {
                dm_error_prefix(&err, "--resolution %lld", (long long)resolution);
                return cli_fail(&err);
            }
        }
        if (resume && !init) {
            /* the data are loaded at the run's size (its unet/config.json), so --resolution
             * need not be repeated; another one is refused before anything is loaded */
            char found[4200], unet_json[4300];
            dm_error ignored = {0};
            dm_unet_config run_unet;
            if (!cli_run_folder_find(out, resume_from, found, sizeof found, &ignored) &&
                snprintf(unet_json, sizeof unet_json, "%s/unet/config.json", found) > 0 &&
                !dm_unet_config_read(&run_unet, unet_json, &ignored)) {
                if (resolution && resolution != run_unet.sample_size) {
                    fprintf(stderr, "error: --resume cannot change this flag: --resolution %lld "
                            "(the run has %lld); these are fixed for a run (leave them out, or "
                            "start a new run with another --out)\n", (long long)resolution,
                            (long long)run_unet.sample_size);
                    return 2;
                }
                cfg.unet.sample_size = run_unet.sample_size;
                if (!model) cfg.unet.in_channels = run_unet.in_channels;
            }
        }
        /* the MLP's defaults do not suit a UNet; keep what the user gave */
        if (!cli_given(argc, argv, "--batch")) cfg.batch = CLI_IMAGE_BATCH;
        if (!cli_given(argc, argv, "--lr")) cfg.optim.lr = CLI_IMAGE_LR;
        /* VDM's own image settings (its CIFAR-10 config): gamma from -13.3 to 5 */
        if (cfg.loss == DM_LOSS_VDM_CONTINUOUS && !cli_given(argc, argv, "--gamma-min"))
            cfg.schedule.gamma_min = -13.3;
        if (cfg.loss == DM_LOSS_VDM_CONTINUOUS && !cli_given(argc, argv, "--gamma-max"))
            cfg.schedule.gamma_max = 5.0;
        if (!cli_given(argc, argv, "--warmup") && cfg.optim.lr_schedule != DM_LR_CONSTANT)
            cfg.optim.warmup = CLI_IMAGE_WARMUP;
        dm_image_set set;
        dm_image_cache_info cache;
        if (cli_open_images(&set, data, cfg.unet.in_channels, cfg.unet.sample_size,
                            resolution > 0 ? 1 : resume, cache_dir, &cache, &err)) {
            dm_pipeline_free(init);
            return cli_fail(&err);
        }
        if (cache.built && !json && !quiet && cli_parallel_is_root())
            fprintf(stderr, "image cache: decoded %lld images into %s in %.1f s (%s)\n",
                    (long long)set.data.n, cli_safe(cache.path), cache.build_seconds,
                    cache.reason);
        ds = set.data; /* the trainer takes rows of c * h * w, with the labels */
    } else {
        static const char *const image_only[] = {"--resolution", "--center-crop"};
        for (size_t i = 0; i < sizeof image_only / sizeof image_only[0]; i++)
            if (cli_given(argc, argv, image_only[i])) {
                fprintf(stderr, "error: %s applies to image data (fashion-mnist, an image "
                        "folder, an IDX file or an NPY array of images); %s holds points\n",
                        image_only[i], data);
                return 2;
            }
        if (cli_load_data(&ds, data, n_data, cfg.seed, &err)) return cli_fail(&err);
        cfg.mlp.dim = ds.dim;
    }
    if (conditional && !ds.labels) {
        dm_dataset_free(&ds);
        dm_pipeline_free(init);
        fprintf(stderr, "error: --conditional needs labelled data: fashion-mnist, an image folder "
                        "with one subfolder per class, or a built-in set with classes (moons, "
                        "8gaussians, rings, spiral); %s has no labels\n", data);
        return 2;
    }
    if (!conditional && cli_given(argc, argv, "--p-uncond")) {
        dm_dataset_free(&ds);
        dm_pipeline_free(init);
        fprintf(stderr, "error: --p-uncond applies to class-conditional training: add "
                        "--conditional\n");
        return 2;
    }
    cfg.num_classes = conditional ? ds.num_classes : 0;
    /* bad options (a schedule shorter than its warm-up, accumulation that does not divide the
     * batch) are refused before the run folder is made or touched */
    if (!resume && (dm_train_config_check(&cfg, &err) ||
                    dm_train_config_check_parallel(&cfg, cli_parallel_size(), &err))) {
        dm_dataset_free(&ds);
        dm_pipeline_free(init);
        return cli_fail(&err);
    }
    if (preview_every && !resume && preview_refused(&cfg, preview_steps)) {
        dm_dataset_free(&ds);
        dm_pipeline_free(init);
        return 2;
    }
    /* a resume finds its checkpoint before the run folder is made or locked (a missing one
     * leaves nothing behind), and again under the lock; over MPI rank 0 alone writes: the run
     * folder, its lock, the checkpoints, the log */
    const int root = cli_parallel_is_root();
    struct stat before;
    const int new_folder = root && !resume && stat(out, &before) != 0;
    if ((resume && cli_run_folder_find(out, resume_from, ckpt, sizeof ckpt, &err)) ||
        (root && (cli_make_dirs(out, &err) || lock_run_folder(out, &err))) ||
        (resume && cli_run_folder_find(out, resume_from, ckpt, sizeof ckpt, &err))) {
        dm_dataset_free(&ds);
        dm_pipeline_free(init);
        return cli_fail(&err);
    }
    if (!resume && root) {
        char listing[512];
        cli_checkpoint_list_text(out, listing, sizeof listing);
        if (strcmp(listing, "no checkpoints") != 0 && !json)
            fprintf(stderr, "note: %s holds an earlier run's checkpoints (%s); this new run "
                    "replaces them at its first checkpoint (--resume continues that run)\n",
                    cli_safe(out), listing);
    }

    dm_trainer *tr = NULL;
    /* on resume the checkpoint's step target stands unless --steps was given */
    const int64_t resume_steps = cli_given(argc, argv, "--steps") ? cfg.steps : 0;
    dm_status st = resume ? dm_trainer_resume(&tr, ckpt, &ds, resume_steps, &err)
                          : dm_trainer_create(&tr, &cfg, &ds, &err);
    const uint64_t data_fingerprint = cli_parallel_fingerprint(&ds);
    if (st) dm_dataset_free(&ds);
    if (!st && init) st = dm_trainer_init_weights(tr, dm_pipeline_model(init), &err);
    if (!st)
        st = dm_trainer_set_data_parallel(tr, cli_parallel_rank(), cli_parallel_size(),
                                          cli_parallel_allreduce, NULL, &err);
    dm_pipeline_free(init);
    if (st == DM_ERR_MISMATCH && resume && strstr(err.msg, "these data differ"))
        append_message(&err, images ? "; give the run's --data, --model and --resolution"
                                    : "; give the run's --data, --n-data and --seed");
    if (!st && resume) {
        /* the flags that fix the run must hold its values; a new --lr applies from here on */
        if ((rc = cli_resume_check_flags(argc, argv, &cfg, dm_trainer_config(tr)))) {
            free_run(tr, &ds);
            return rc;
        }
        if (preview_every && preview_refused(dm_trainer_config(tr), preview_steps)) {
            free_run(tr, &ds);
            return 2;
        }
        if (cli_given(argc, argv, "--lr")) st = dm_trainer_set_lr(tr, cfg.optim.lr, &err);
        /* the log goes on from the step resumed from: later lines (of a checkpoint further on,
         * or written after the last checkpoint before a kill) go */
        snprintf(path, sizeof path, "%s/log.jsonl", out);
        if (!st && root) st = cli_log_truncate(path, dm_trainer_step_count(tr), &err);
        if (!st && !json && root)
            fprintf(stderr, "resuming from %s at step %lld of %lld\n", cli_safe(ckpt),
                    (long long)dm_trainer_step_count(tr),
                    (long long)dm_trainer_config(tr)->steps);
    }
    if (st) {
        free_run(tr, &ds);
        if (new_folder) { /* refused by the trainer (its checks of the data): no run is left */
            snprintf(path, sizeof path, "%s/.lock", out);
            unlink(path);
            rmdir(out);
        }
        return cli_fail(&err);
    }
    cli_run_folder rf = {.dir = out, .limit = total_limit, .fresh = !resume,
                         .resumed_from = resume ? ckpt : NULL,
                         .start_step = dm_trainer_step_count(tr),
                         .preview_every = preview_every, .preview_steps = preview_steps};
    dm_trainer_set_skip_nonfinite(tr, skip_nonfinite);
    dm_trainer_inject_nan(tr, inject_nan_step);
    int64_t start = dm_trainer_step_count(tr);
    double seconds = 0;
    FILE *log = NULL;
    if (log_every > 0 && root) {
        snprintf(path, sizeof path, "%s/log.jsonl", out);
        /* a resumed run continues the log; a new run starts it afresh */
        if (!(log = fopen(path, resume ? "a" : "w"))) {
            dm_error_set(&err, DM_ERR_IO, "%s: cannot open for writing", path);
            free_run(tr, &ds);
            return cli_fail(&err);
        }
    }
    /* rank 0 alone records the session; its failure, like any rank's, stops every rank here */
    const int unrecorded = root && record_session(out, tr, rf.resumed_from, every, total_limit,
                                                  log_every, time_limit, preview_every,
                                                  precision, &err);
    if (unrecorded) cli_fail(&err);
    if (cli_parallel_setup_done(unrecorded, data_fingerprint, "training data", "training")) {
        if (log) fclose(log);
        free_run(tr, &ds);
        return 1;
    }
    st = cli_run_training(tr, &rf, every, quiet || json, log, log_every, 60.0 * time_limit,
                          &seconds, &err);
    if (log) fclose(log);
    if (!cli_parallel_is_root()) { /* rank 0 reports for the job */
        free_run(tr, &ds);
        return st ? (train_interrupted ? 130 : 1) : 0;
    }
    if (st) {
        free_run(tr, &ds);
        if (train_interrupted) {
            /* Ctrl-C: the checkpoint is saved; the shell's convention for SIGINT */
            fprintf(stderr, "%s\n", cli_safe(err.msg));
            return 130;
        }
        return cli_fail(&err);
    }
    if (dm_trainer_step_count(tr) < dm_trainer_config(tr)->steps && !json)
        printf("stopped at the time limit (%g minutes) at step %lld of %lld; checkpoint saved "
               "(continue with --resume)\n", time_limit, (long long)dm_trainer_step_count(tr),
               (long long)dm_trainer_config(tr)->steps);
    int64_t steps = dm_trainer_step_count(tr);
    snprintf(path, sizeof path, "%s/loss.png", out);
    const dm_status plotted = dm_plot_loss(path, dm_trainer_loss_history(tr), steps, &err);
    if (plotted == DM_ERR_UNSUPPORTED) { /* a build without plots: the run is still whole */
        if (!quiet && !json) fprintf(stderr, "note: no loss.png (%s)\n", cli_safe(err.msg));
    } else if (plotted) {
        free_run(tr, &ds);
        return cli_fail(&err);
    }
    double rate = seconds > 0 ? (double)(steps - start) / seconds : 0;
    double loss = cli_recent_loss(tr, 100);
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "checkpoint", rf.last);
        cJSON_AddNumberToObject(o, "steps", (double)steps);
        cJSON_AddNumberToObject(o, "steps_this_run", (double)(steps - start));
        cJSON_AddNumberToObject(o, "seconds", seconds);
        cJSON_AddNumberToObject(o, "steps_per_s", rate);
        cJSON_AddNumberToObject(o, "loss_last100", loss);
        cJSON_AddNumberToObject(o, "skipped_steps", (double)dm_trainer_skipped_steps(tr));
        if (cli_parallel_size() > 1) {
            cJSON_AddNumberToObject(o, "ranks", cli_parallel_size());
            cJSON_AddNumberToObject(o, "allreduce_s", cli_parallel_allreduce_seconds());
        }
        cli_print_json(o);
    } else {
        printf("trained %lld steps in %.1f s (%.1f steps/s); loss %.4f (mean of the last 100); "
               "checkpoint %s; loss curve %s\n",
               (long long)(steps - start), seconds, rate, loss, cli_safe(rf.last),
               cli_safe(path));
        if (cli_parallel_size() > 1)
            printf("data-parallel over %d ranks: %.2f s of it in the gradient allreduce\n",
                   cli_parallel_size(), cli_parallel_allreduce_seconds());
    }
    if (dm_trainer_skipped_steps(tr) > 0 && !json)
        printf("skipped %lld steps whose loss or gradient was not finite\n",
               (long long)dm_trainer_skipped_steps(tr));
    free_run(tr, &ds);
    return 0;
}

/* `mpirun -np N diffusion train ...`: every rank runs train_main (parallel.h); without a launcher
 * or MPI, one process as ever. */
int cmd_train(int argc, char **argv) {
    int rc = cli_parallel_init("train", argc, argv);
    if (rc) return cli_parallel_finalize(rc);
    if (cli_parallel_check_every() < 0) {
        fprintf(stderr, "error: DIFFUSION_MPI_CHECK must be a number of steps (0 = no check)\n");
        rc = 2;
    } else {
        rc = train_main(argc, argv);
    }
    if (!cli_parallel_setup_reported()) /* failed early */
        cli_parallel_setup_done(rc != 0, 0, "training data", "training");
    return cli_parallel_finalize(rc);
}
