/* diffusion sample: draw points from a trained model; optional scatter plot and reverse strip. */
#include "common.h"
#include "parallel.h"
#include "progress.h"
#include "sample_images.h"
#include "sample_sde.h"
#include "sample_split.h"
#include "snapshots.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    cli_progress bar;
    int64_t T, base, last; /* a chunk's steps done start again from 0: base counts the chunks */
} point_progress;

static void show_progress(void *ctx, int64_t done) {
    point_progress *pp = ctx;
    if (done < pp->last) pp->base += pp->T;
    pp->last = done;
    cli_progress_update(&pp->bar, pp->base + done, NULL);
}

/* The discrete samplers' options have no meaning for the SDE samplers: the first one given is
 * refused (2), for --sde-sampler or (sde_kind set) for a model trained on that SDE, which has
 * no discrete chain. */
static int discrete_flag_refused(int argc, char **argv, const char *sde_kind) {
    static const char *const discrete[] = {"--sampler", "--scheduler-config", "--eta",
                                           "--glide-clip", "--var", "--langevin-delta",
                                           "--no-clip", "--class", "--guidance",
                                           "--guide-classifier", "--classifier-scale",
                                           "--strip", "--each"};
    for (size_t i = 0; i < sizeof discrete / sizeof discrete[0]; i++) {
        if (!cli_given(argc, argv, discrete[i])) continue;
        if (sde_kind)
            fprintf(stderr, "error: %s does not apply to this model: trained in continuous time "
                    "on the %s SDE, it has no discrete chain and samples with --sde-sampler "
                    "(euler-maruyama, reverse-diffusion (the default), pc, ode-euler, ode-heun, "
                    "ode-rk4, ode-rk45), which takes --steps, --corrector-steps, --pc-snr, "
                    "--ode-rtol, --ode-atol and --seed\n", discrete[i], sde_kind);
        else
            fprintf(stderr, "error: %s does not apply to --sde-sampler (which takes --steps, "
                    "--corrector-steps, --pc-snr, --ode-rtol, --ode-atol and --seed)\n",
                    discrete[i]);
        return 1;
    }
    return 0;
}

static int sample_main(int argc, char **argv) {
    dm_sample_options so;
    dm_sample_options_default(&so);
    const char *model = NULL, *out = "samples.csv", *plot = NULL, *strip = NULL, *data = NULL;
    const char *var = "model", *grid = "samples.png", *each = NULL, *npy = NULL;
    const char *sampler = NULL, *scheduler_config = NULL, *variant = NULL, *sde_sampler = NULL;
    dm_sde_sample_options sde_opt;
    dm_sde_sample_options_default(&sde_opt);
    int glide_clip = 0;
    int64_t n = 10000, n_data = 10000;
    int threads = 0, json = 0, quiet = 0, no_clip = 0, scale = 2;
    const char *class_arg = NULL, *guide_classifier = NULL;
    dm_guidance guide;
    dm_guidance_default(&guide);
    const char *precision = "fp32";
    cli_option opts[] = {
        {"--model", OPT_STRING, &model, "DIR", "checkpoint folder, training run folder, or a diffusers pipeline or UNet2DModel folder (required)"},
        {"--scheduler-config", OPT_STRING, &scheduler_config, "FILE", "diffusers folders: sample with this scheduler_config.json (DDPMScheduler, DDIMScheduler or DPMSolverMultistepScheduler) instead of the folder's"},
        {"--variant", OPT_STRING, &variant, "NAME", "diffusers folders: load diffusion_pytorch_model.NAME.safetensors (e.g. fp16)"},
        {"--n", OPT_I64, &n, "N", "number of samples (images: 64 unless given)"},
        {"--out", OPT_STRING, &out, "FILE", "points: samples in data units, .csv or .npy"},
        {"--grid", OPT_STRING, &grid, "PNG", "images: all samples in one grid"},
        {"--each", OPT_STRING, &each, "DIR", "images: also each sample as DIR/sample_NNNNN.png"},
        {"--npy", OPT_STRING, &npy, "FILE", "images: also all samples as uint8 NPY (n, c, h, w)"},
        {"--scale", OPT_INT, &scale, "N", "images: pixels per image pixel in the PNGs"},
        {"--no-clip", OPT_FLAG, &no_clip, NULL, "images: do not clip the predicted x_0 to [-1, 1] at each step"},
        {"--sampler", OPT_STRING, &sampler, "NAME", "scheduler (a diffusers folder's own scheduler, its default there), ancestral (the default otherwise), ddim, langevin (annealed Langevin on the score), pc (predictor-corrector) or dpmpp-2m (DPM-Solver++(2M), an ODE solver for 10-50 steps)"},
        {"--sde-sampler", OPT_STRING, &sde_sampler, "NAME", "a continuous-time sampler (score_sde) of the model's SDE (a model trained with train --sde) or of the VP SDE a discrete model's linear schedule discretises: euler-maruyama, reverse-diffusion, pc, ode-euler, ode-heun, ode-rk4 or ode-rk45 (the probability-flow ODE, adaptive); --steps is its grid (0 = its default); sub-VP and VE models use reverse-diffusion unless told"},
        {"--ode-rtol", OPT_DOUBLE, &sde_opt.rtol, "X", "--sde-sampler ode-rk45: relative tolerance (> 0)"},
        {"--ode-atol", OPT_DOUBLE, &sde_opt.atol, "X", "--sde-sampler ode-rk45: absolute tolerance (> 0)"},
        {"--steps", OPT_INT, &so.steps, "N", "network levels: a strided subset of the T steps (0 = all)"},
        {"--eta", OPT_DOUBLE, &so.eta, "X", "ddim (and a DDIM scheduler): noise, 0 (deterministic) to 1"},
        {"--glide-clip", OPT_FLAG, &glide_clip, NULL, "ddim with clipping: recompute eps from the clipped x_0 (GLIDE; diffusers' use_clipped_model_output) instead of keeping the network's"},
        {"--var", OPT_STRING, &var, "NAME", "reverse variance: beta, beta-tilde or learned (default: the one the model was trained with)"},
        {"--corrector-steps", OPT_INT, &so.corrector_steps, "N", "langevin, pc: Langevin steps per level (0 = the sampler's default)"},
        {"--langevin-delta", OPT_DOUBLE, &so.langevin_delta, "X", "langevin: step size at the lowest noise level"},
        {"--pc-snr", OPT_DOUBLE, &so.pc_snr, "X", "pc: the corrector's signal-to-noise ratio"},
        {"--seed", OPT_U64, &so.seed, "N", "seed of the sampling noise"},
        {"--class", OPT_STRING, &class_arg, "K|all", "class-conditional models (or a guiding classifier): draw class K, or 'all' to cycle through the classes (grid columns = classes)"},
        {"--guidance", OPT_DOUBLE, &guide.cfg_scale, "W", "classifier-free guidance scale: eps = (1 + W) eps(x, class) - W eps(x, null); 0 = none"},
        {"--guide-classifier", OPT_STRING, &guide_classifier, "DIR", "classifier guidance with a noisy classifier (train-classifier --noisy --like MODEL)"},
        {"--classifier-scale", OPT_DOUBLE, &guide.classifier_scale, "G", "classifier guidance scale gamma (with --guide-classifier; default 1)"},
        {"--plot", OPT_STRING, &plot, "PNG", "scatter plot of the samples (over --data if given)"},
        {"--data", OPT_STRING, &data, "NAME|FILE", "data drawn under the samples in --plot"},
        {"--n-data", OPT_I64, &n_data, "N", "points of a built-in --data set to draw"},
        {"--strip", OPT_STRING, &strip, "PNG", "snapshots of the reverse process from x_T to x_0 (images: 8 samples)"},
        {"--threads", OPT_INT, &threads, "N", "threads (0 = every CPU this process may use, or OMP_NUM_THREADS)"},
        {"--precision", OPT_STRING, &precision, "fp32|bf16", CLI_PRECISION_HELP},
        {"--quiet", OPT_FLAG, &quiet, NULL, "no progress bar"},
        {"--json", OPT_FLAG, &json, NULL, "print the result as one JSON line"},
    };
    cli_command cmd = {"diffusion sample --model DIR [options]",
                       "Draws samples from a trained model: ancestral sampling (Ho et al. "
                       "Algorithm 2) on all T steps\nor a strided subset, DDIM, annealed Langevin "
                       "dynamics or predictor-corrector.\nSamples are drawn in chunks (2048 "
                       "points, 256 images), each from its own noise stream;\nunder mpirun the "
                       "ranks draw whole chunks and rank 0 writes the files one process\nwould "
                       "write, whatever the rank count.",
                       opts, (int)(sizeof opts / sizeof opts[0])};
    int rc = cli_parse(&cmd, argc, argv);
    if (rc) return rc == CLI_HELP ? 0 : 2;
    if (!model) {
        fprintf(stderr, "error: --model DIR is required\n");
        return 2;
    }
    dm_error err = {0};
    if (sde_sampler) {
        if (discrete_flag_refused(argc, argv, NULL)) return 2;
        if (dm_sde_sampler_parse(sde_sampler, &sde_opt.sampler, &err)) return cli_fail(&err);
    } else if (cli_given(argc, argv, "--ode-rtol") || cli_given(argc, argv, "--ode-atol")) {
        fprintf(stderr, "error: --ode-rtol and --ode-atol go with --sde-sampler ode-rk45\n");
        return 2;
    }
    const int use_scheduler = sampler ? strcmp(sampler, "scheduler") == 0 : -1; /* -1: default */
    if ((use_scheduler == 0 && dm_sampler_parse(sampler, &so.sampler, &err)) ||
        (strcmp(var, "model") != 0 && dm_reverse_var_parse(var, &so.var, &err)))
        return cli_fail(&err);
    if (n < 1 || n > 100000000) {
        fprintf(stderr, "error: --n must be in 1..100000000\n");
        return 2;
    }
    if (scale < 1 || scale > 64) {
        fprintf(stderr, "error: --scale must be in 1..64\n");
        return 2;
    }
    if (cli_set_precision(precision)) return 2;
    cli_set_threads(threads);

    so.ddim_clipped_eps = glide_clip;
    dm_pipeline *p;
    if (scheduler_config || variant ? dm_pipeline_load_diffusers(&p, model, scheduler_config,
                                                                 variant, &err)
                                    : dm_pipeline_load(&p, model, &err))
        return cli_fail(&err);
    const dm_train_config *tc = dm_pipeline_train_config(p);
    if (!sde_sampler && tc->sde_training && tc->sde.kind != DM_SDE_VP) {
        /* no discrete chain: score_sde's reverse-diffusion predictor by default (its Langevin
         * corrector, tuned at snr 0.16 for images, spoilt 2-D VE samples: docs/continuous-time.md) */
        if (discrete_flag_refused(argc, argv, dm_sde_kind_name(tc->sde.kind))) {
            dm_pipeline_free(p);
            return 2;
        }
        sde_opt.sampler = DM_SDE_REVERSE_DIFFUSION;
        sde_sampler = dm_sde_sampler_name(sde_opt.sampler);
    }
    if (strcmp(var, "model") == 0) so.var = tc->var;
    /* a diffusers folder samples with its own scheduler unless another sampler is named */
    if (use_scheduler != 0) so.scheduler = dm_pipeline_scheduler(p);
    if (use_scheduler == 1 && !so.scheduler) {
        dm_pipeline_free(p);
        fprintf(stderr, "error: --sampler scheduler needs a diffusers folder (%s is a "
                "diffusion.c checkpoint): choose ancestral, ddim, langevin, pc or dpmpp-2m\n",
                cli_safe(model));
        return 2;
    }
    if (so.scheduler && (no_clip || glide_clip || cli_given(argc, argv, "--var"))) {
        dm_pipeline_free(p);
        fprintf(stderr, "error: --no-clip, --glide-clip and --var set diffusion.c's samplers; "
                "the folder's scheduler follows its scheduler_config.json (give --sampler to "
                "use another sampler, or --scheduler-config)\n");
        return 2;
    }
    const int image_model = dm_model_image_shape(dm_pipeline_model(p), NULL, NULL, NULL);
    if (image_model && !cli_given(argc, argv, "--n")) n = 64;
    if (sde_sampler) {
        sde_opt.steps = so.steps;
        sde_opt.seed = so.seed;
        if (cli_given(argc, argv, "--corrector-steps")) sde_opt.corrector_steps = so.corrector_steps;
        if (cli_given(argc, argv, "--pc-snr")) sde_opt.snr = so.pc_snr;
        dm_dataset background = {0};
        int status = 1;
        if (!image_model && plot && data &&
            cli_load_data(&background, data, n_data, CLI_HELDOUT_SEED_A(0), &err)) {
            cli_fail(&err);
        } else {
            cli_sde_sample_args a = {.n = n, .options = sde_opt, .out = out, .plot = plot,
                                     .background = background.x ? &background : NULL,
                                     .grid = grid, .npy = npy, .scale = scale,
                                     .quiet = quiet || json, .json = json};
            status = cli_sample_sde(p, &a, &err);
        }
        dm_dataset_free(&background);
        dm_pipeline_free(p);
        return status;
    }
    int32_t *labels = NULL;
    int classes = 0;
    if (guide_classifier && !cli_given(argc, argv, "--classifier-scale"))
        guide.classifier_scale = 1.0;
    if ((guide_classifier && dm_classifier_load(&guide.classifier, guide_classifier, &err)) ||
        (class_arg && cli_class_labels(&labels, &classes, class_arg, n, p, guide.classifier,
                                       &err))) {
        dm_classifier_free(guide.classifier);
        dm_pipeline_free(p);
        return cli_fail(&err);
    }
    guide.labels = labels;
    if (image_model) {
        so.clip_x0 = !no_clip;
        cli_image_sample_args a = {.n = n, .options = so, .guidance = &guide,
                                   .classes = class_arg && strcmp(class_arg, "all") == 0 ? classes : 0,
                                   .grid = grid, .each = each, .npy = npy, .strip = strip,
                                   .scale = scale, .quiet = quiet || json, .json = json};
        int status = cli_sample_images(p, &a, &err);
        free(labels);
        dm_classifier_free(guide.classifier);
        dm_pipeline_free(p);
        return status;
    }
    const int64_t D = dm_pipeline_dim(p);
    dm_dataset samples = {0}, background = {0};
    cli_snapshots snaps = {0};
    point_progress pp = {0};
    int status = 1;
    if (dm_dataset_init(&samples, n, D, &err)) goto done;
    if (plot && data && cli_load_data(&background, data, n_data, CLI_HELDOUT_SEED_A(0), &err))
        goto done;
    const int32_t T = dm_pipeline_schedule(p)->T;
    if (!cli_snapshots_init(&snaps, dm_pipeline_schedule(p), n < 2000 ? n : 2000, D, dm_pipeline_normalizer(p))) {
        dm_error_set(&err, DM_ERR_NOMEM, "out of memory");
        goto done;
    }
    if (cli_parallel_setup_done(0, cli_parallel_fingerprint_model(dm_pipeline_model(p)), "model",
                                "sampling")) {
        status = 1; /* another rank failed, and said so */
        err.msg[0] = 0;
        goto done;
    }
    pp.T = T;
    cli_progress_start(&pp.bar, "sample", "steps", cli_sample_chunks_here(p, n) * T,
                       quiet || json);
    snaps.progress = show_progress;
    snaps.progress_ctx = &pp;
    so.observe = cli_snapshots_observe;
    so.observe_ctx = &snaps;
    double t0 = cli_now();
    if (cli_sample_split(p, samples.x, n, &so, &guide, &err)) goto done;
    double seconds = cli_now() - t0;
    cli_progress_finish(&pp.bar);
    const int64_t evals = cli_guided_evaluations(p, &so, &guide);
    if (!cli_parallel_is_root()) { /* rank 0 writes and reports */
        status = 0;
        goto done;
    }
    if (dm_dataset_save(&samples, out, &err)) goto done;
    if (plot && dm_plot_scatter(plot, background.x, background.n, samples.x, n, D,
                                "samples over data", &err))
        goto done;
    if (strip && cli_snapshots_plot(&snaps, strip, &err)) goto done;
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "samples", (double)n);
        cJSON_AddNumberToObject(o, "network_evaluations", (double)evals);
        cJSON_AddNumberToObject(o, "seconds", seconds);
        cJSON_AddStringToObject(o, "out", out);
        if (cli_parallel_size() > 1) cJSON_AddNumberToObject(o, "ranks", cli_parallel_size());
        cli_print_json(o);
    } else {
        printf("drew %lld samples (%lld network evaluations each) in %.1f s%s; wrote "
               "%s%s%s%s%s\n", (long long)n, (long long)evals, seconds, cli_ranks_note(),
               cli_safe(out), plot ? ", " : "", plot ? cli_safe(plot) : "", strip ? ", " : "",
               strip ? cli_safe(strip) : "");
    }
    status = 0;
done:
    if (status && err.msg[0]) cli_sample_fail(&err);
    cli_snapshots_free(&snaps);
    dm_dataset_free(&samples);
    dm_dataset_free(&background);
    free(labels);
    dm_classifier_free(guide.classifier);
    dm_pipeline_free(p);
    return status;
}

/* `mpirun -np N diffusion sample ...`: every rank runs sample_main and draws its share of the
 * chunks (sample_split.h); without a launcher or MPI, one process as ever. */
int cmd_sample(int argc, char **argv) {
    int rc = cli_parallel_init("sample", argc, argv);
    if (rc) return cli_parallel_finalize(rc);
    rc = sample_main(argc, argv);
    if (!cli_parallel_setup_reported()) /* failed before sampling */
        cli_parallel_setup_done(rc != 0, 0, "model", "sampling");
    return cli_parallel_finalize(rc);
}
