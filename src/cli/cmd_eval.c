/* diffusion eval: MMD and sliced Wasserstein of samples against held-out data, each beside the
 * same figure between two independent draws of the data (the floor). */
#include "common.h"
#include "eval_images.h"
#include "eval_nll.h"
#include "eval_steps.h"
#include "parallel.h"
#include "sample_split.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Two disjoint random subsets of n rows each from ds. */
static dm_status two_draws(const dm_dataset *ds, int64_t n, uint64_t seed, dm_dataset *a,
                           dm_dataset *b, dm_error *err) {
    int32_t *perm = malloc((size_t)ds->n * sizeof *perm);
    if (!perm) return dm_error_set(err, DM_ERR_NOMEM, "out of memory");
    cli_partial_shuffle(perm, ds->n, 2 * n, seed, 5);
    dm_status st;
    if ((st = dm_dataset_init(a, n, ds->dim, err)) || (st = dm_dataset_init(b, n, ds->dim, err))) {
        free(perm);
        return st;
    }
    size_t row = (size_t)ds->dim * sizeof(float);
    for (int64_t i = 0; i < n; i++) {
        memcpy(a->x + i * ds->dim, ds->x + (int64_t)perm[i] * ds->dim, row);
        memcpy(b->x + i * ds->dim, ds->x + (int64_t)perm[n + i] * ds->dim, row);
    }
    free(perm);
    return DM_OK;
}

static int eval_main(int argc, char **argv) {
    const char *samples_path = NULL, *model = NULL, *data = "swissroll", *metric = "mmd";
    const char *var = "model", *samplers = "ancestral,ddim,dpmpp-2m", *plot = NULL;
    const char *steps_list = "5,10,20,50,100,200,1000";
    int64_t n = 10000, batch = 256;
    uint64_t seed = 0;
    int threads = 0, json = 0, exact = 0, t_draws = 1, quiet = 0;
    cli_image_eval_args img = {.sampler = "dpmpp-2m", .steps = 20, .k = 3, .classifier_scale = 1,
                               .scales = "0,0.5,1,2,3,5", .gammas = "0,1,3,10"};
    const char *precision = "fp32";
    const char *likelihood = "bound", *probe = "rademacher", *sde = "vp";
    int hutchinson = 0;
    double ode_rtol = 1e-5, ode_atol = 1e-5;
    cli_option opts[] = {
        {"--metric", OPT_STRING, &metric, "NAME", "mmd (points against data: MMD and sliced Wasserstein), nll (the variational bound), steps (mmd against sampling steps, per sampler); images with --classifier: accuracy, fid (FID-FMNIST), prec-recall, guidance (all three against guidance scales)"},
        {"--samples", OPT_STRING, &samples_path, "FILE", "samples to judge (.csv or .npy)"},
        {"--model", OPT_STRING, &model, "DIR", "or: draw the samples from this checkpoint"},
        {"--data", OPT_STRING, &data, "NAME|FILE", "held-out data: a built-in set (fresh draws) or a file"},
        {"--n", OPT_I64, &n, "N", "points per set"},
        {"--seed", OPT_U64, &seed, "N", "seed of the held-out draws and of sampling"},
        {"--exact", OPT_FLAG, &exact, NULL, "nll: sum all T terms per example (T network calls) instead of the unbiased estimate"},
        {"--t-draws", OPT_INT, &t_draws, "N", "nll estimate: timesteps drawn per example"},
        {"--var", OPT_STRING, &var, "NAME", "nll: reverse variance beta, beta-tilde or learned (default: the one the model was trained with)"},
        {"--batch", OPT_I64, &batch, "N", "nll: examples per network call (ode: per RK45 system)"},
        {"--likelihood", OPT_STRING, &likelihood, "bound|ode|both", "nll: the variational bound, the exact likelihood through the probability-flow ODE, or both"},
        {"--hutchinson", OPT_INT, &hutchinson, "N", "nll ode: Hutchinson's trace estimate with N probes per example (default: the exact trace for points, 1 probe for images)"},
        {"--probe", OPT_STRING, &probe, "NAME", "nll ode: Hutchinson's probes, rademacher or gaussian"},
        {"--ode-rtol", OPT_DOUBLE, &ode_rtol, "TOL", "nll ode: RK45 relative tolerance (> 0)"},
        {"--ode-atol", OPT_DOUBLE, &ode_atol, "TOL", "nll ode: RK45 absolute tolerance (> 0)"},
        {"--sde", OPT_STRING, &sde, "NAME", "nll ode: the SDE whose score the model is: vp (the one its linear schedule discretises; a discrete model is no sub-VP or VE score)"},
        {"--samplers", OPT_STRING, &samplers, "LIST", "steps: comma-separated samplers"},
        {"--steps-list", OPT_STRING, &steps_list, "LIST", "steps: comma-separated step counts"},
        {"--plot", OPT_STRING, &plot, "FILE", "steps: PNG of the MMD ratio against steps; guidance: accuracy and FID against the scale"},
        {"--classifier", OPT_STRING, &img.classifier, "DIR", "accuracy, fid, prec-recall, guidance: the evaluation classifier (train-classifier)"},
        {"--class", OPT_STRING, &img.class_arg, "K|all", "images: the classes drawn (default all, in turn), or those --samples were drawn for"},
        {"--guidance", OPT_DOUBLE, &img.cfg_scale, "W", "images: classifier-free guidance scale of the drawn samples"},
        {"--guide-classifier", OPT_STRING, &img.guide_classifier, "DIR", "images: a noisy classifier guiding the drawn samples"},
        {"--classifier-scale", OPT_DOUBLE, &img.classifier_scale, "G", "images: its scale gamma"},
        {"--scales", OPT_STRING, &img.scales, "LIST", "guidance: classifier-free scales w"},
        {"--gammas", OPT_STRING, &img.gammas, "LIST", "guidance: classifier-guidance scales (with --guide-classifier)"},
        {"--sampler", OPT_STRING, &img.sampler, "NAME", "images: the sampler of the drawn samples (scheduler: a diffusers folder's own)"},
        {"--steps", OPT_INT, &img.steps, "N", "images: its steps (0 = all T)"},
        {"--k", OPT_INT, &img.k, "N", "prec-recall: nearest neighbours of the manifold balls"},
        {"--real-data", OPT_STRING, &img.real, "NAME|PATH", "images: real images judged as the samples are, for the floor (default fashion-mnist, the training split)"},
        {"--threads", OPT_INT, &threads, "N", "threads (0 = every CPU this process may use, or OMP_NUM_THREADS)"},
        {"--precision", OPT_STRING, &precision, "fp32|bf16", CLI_PRECISION_HELP},
        {"--quiet", OPT_FLAG, &quiet, NULL, "no progress bar"},
        {"--json", OPT_FLAG, &json, NULL, "print the result as one JSON line"},
    };
    cli_command cmd = {
        "diffusion eval (--samples FILE | --model DIR) [options]",
        "--metric nll: the variational bound -log p(x) <= L_T + sum L_{t-1} + L_0 of --model on\n"
        "held-out data (images: the Fashion-MNIST test split unless --data names images; points:\n"
        "fresh draws of a built-in set or a file), in nats per example (data units) and bits per\n"
        "dimension, with its standard error and breakdown. By default an unbiased estimate (t\n"
        "drawn uniformly); --exact sums all T terms. --likelihood ode (or both): the exact\n"
        "likelihood through the probability-flow ODE of the VP SDE the model's linear schedule\n"
        "discretises (score_sde's likelihood: RK45 from t = 1e-3 to 1, the exact trace or\n"
        "--hutchinson N probes; images dequantised, bits per dimension of pixel values in\n"
        "[0, 256)).\n"
        "--metric steps: --metric mmd of --model's samples for each sampler of --samplers at each\n"
        "step count of --steps-list (a table, --plot draws it).\n"
        "--metric mmd (default): compares samples with held-out data. MMD: Gaussian kernel, bandwidth = median pairwise\n"
        "distance of the held-out draw (median heuristic), biased estimator, reported as the\n"
        "square root of MMD^2. SWD: sliced 2-Wasserstein over 256 random directions. Everything\n"
        "is computed after standardising with the held-out draw's mean and std. Each figure is\n"
        "shown beside its floor: the same figure between two independent draws of the data.\n"
        "For a built-in set both draws are fresh (seeds apart from training's); for a file they\n"
        "are two disjoint random subsets, so the file needs 2n rows (n is lowered otherwise).\n"
        "Under mpirun, --metric mmd --model draws the samples over the ranks (as diffusion\n"
        "sample does) and rank 0 reports what one process would; the rest runs as one process.",
        opts, (int)(sizeof opts / sizeof opts[0])};
    int rc = cli_parse(&cmd, argc, argv);
    if (rc) return rc == CLI_HELP ? 0 : 2;
    if (cli_set_precision(precision)) return 2;
    if (cli_parallel_size() > 1 && (strcmp(metric, "mmd") != 0 || !model || samples_path)) {
        /* the other metrics' work is not the pipeline's chunks of samples */
        fprintf(stderr, "error: under mpirun, eval splits only the drawing of --model's samples "
                "for --metric mmd; run --metric %s%s as one process (without mpirun)\n",
                cli_safe(metric), samples_path ? " --samples" : "");
        return 2;
    }
    if (strcmp(metric, "accuracy") == 0 || strcmp(metric, "fid") == 0 ||
        strcmp(metric, "prec-recall") == 0 || strcmp(metric, "guidance") == 0) {
        if (!img.classifier) {
            fprintf(stderr, "error: --metric %s needs --classifier DIR (an evaluation classifier: "
                            "diffusion train-classifier)\n", cli_safe(metric));
            return 2;
        }
        if (img.k < 1 || n < 1 || img.steps < 0) {
            fprintf(stderr, "error: --k and --n must be >= 1, --steps >= 0\n");
            return 2;
        }
        cli_set_threads(threads);
        img.metric = metric;
        img.model = model;
        img.samples = samples_path;
        img.data = cli_given(argc, argv, "--data") ? data : NULL;
        img.n = cli_given(argc, argv, "--n") ? n : 1000;
        img.seed = seed;
        img.json = json;
        img.plot = plot;
        return cli_eval_images(&img);
    }
    if (strcmp(metric, "nll") == 0) {
        if (!model || samples_path) {
            fprintf(stderr, "error: --metric nll needs --model DIR (and no --samples)\n");
            return 2;
        }
        if (batch < 1 || t_draws < 1 || (cli_given(argc, argv, "--n") && n < 1)) {
            fprintf(stderr, "error: --batch, --t-draws and --n must be >= 1\n");
            return 2;
        }
        const int want_bound = strcmp(likelihood, "bound") == 0 || strcmp(likelihood, "both") == 0;
        const int want_ode = strcmp(likelihood, "ode") == 0 || strcmp(likelihood, "both") == 0;
        if (!want_bound && !want_ode) {
            fprintf(stderr, "error: --likelihood %s: allowed bound, ode, both\n",
                    cli_safe(likelihood));
            return 2;
        }
        const char *ode_opts[] = {"--hutchinson", "--probe", "--ode-rtol", "--ode-atol", "--sde"};
        for (int k = 0; k < 5 && !want_ode; k++)
            if (cli_given(argc, argv, ode_opts[k])) {
                fprintf(stderr, "error: %s applies to the ODE likelihood: add --likelihood ode "
                                "or both\n", ode_opts[k]);
                return 2;
            }
        if (cli_given(argc, argv, "--hutchinson") && hutchinson < 1) {
            fprintf(stderr, "error: --hutchinson %d: the Hutchinson estimator needs N >= 1 "
                            "probes per example (leave it out for the exact trace)\n", hutchinson);
            return 2;
        }
        if (!(ode_rtol > 0 && isfinite(ode_rtol)) || !(ode_atol > 0 && isfinite(ode_atol))) {
            fprintf(stderr, "error: --ode-rtol %g, --ode-atol %g: both ODE tolerances must be "
                            "> 0 and finite (default 1e-5)\n", ode_rtol, ode_atol);
            return 2;
        }
        if (strcmp(probe, "rademacher") != 0 && strcmp(probe, "gaussian") != 0) {
            fprintf(stderr, "error: --probe %s: allowed rademacher, gaussian\n", cli_safe(probe));
            return 2;
        }
        cli_set_threads(threads);
        cli_nll_args a = {.model = model, .data = cli_given(argc, argv, "--data") ? data : NULL,
                          .n = cli_given(argc, argv, "--n") ? n : 0, .exact = exact,
                          .t_draws = t_draws, .var = var, .batch = batch, .seed = seed,
                          .bound = want_bound, .ode = want_ode, .hutchinson = hutchinson,
                          .probe = probe, .sde = sde, .ode_rtol = ode_rtol,
                          .ode_atol = ode_atol, .quiet = quiet, .json = json};
        return cli_eval_nll(&a);
    }
    const int sweep = strcmp(metric, "steps") == 0;
    if (strcmp(metric, "mmd") != 0 && !sweep) {
        fprintf(stderr, "error: --metric %s: allowed mmd, nll, steps, accuracy, fid, prec-recall, "
                        "guidance\n", cli_safe(metric));
        return 2;
    }
    if (sweep && (!model || samples_path)) {
        fprintf(stderr, "error: --metric steps needs --model DIR (and no --samples)\n");
        return 2;
    }
    if (!samples_path == !model) {
        fprintf(stderr, "error: give exactly one of --samples FILE and --model DIR\n");
        return 2;
    }
    if (n < 2) {
        fprintf(stderr, "error: --n must be >= 2\n");
        return 2;
    }
    cli_set_threads(threads);

    dm_error err = {0};
    dm_dataset samples = {0}, a = {0}, b = {0}, all = {0};
    dm_pipeline *p = NULL;
    int status = 1;
    if (samples_path) {
        if (dm_dataset_load(&samples, samples_path, &err)) goto done;
        if (samples.n < n) n = samples.n;
        samples.n = n; /* judge the first n */
    } else {
        dm_sample_options so;
        dm_sample_options_default(&so);
        so.seed = seed;
        if (dm_pipeline_load(&p, model, &err)) goto done;
        if (dm_model_image_shape(dm_pipeline_model(p), NULL, NULL, NULL)) {
            dm_error_set(&err, DM_ERR_ARG,
                         "%s: an image model; --metric mmd measures low-dimensional samples (for "
                         "images use --metric nll, fid, prec-recall or accuracy)",
                         model);
            goto done;
        }
        if (dm_dataset_init(&samples, n, dm_pipeline_dim(p), &err)) goto done;
        if (cli_parallel_size() > 1) {
            /* over MPI the ranks draw their chunks (sample_split.h); rank 0 judges them */
            if (cli_parallel_setup_done(0, cli_parallel_fingerprint_model(dm_pipeline_model(p)),
                                        "model", "sampling"))
                goto done_quietly; /* another rank failed, and said so */
            if (cli_sample_split(p, samples.x, n, &so, NULL, &err)) goto done;
            if (!cli_parallel_is_root()) {
                status = 0;
                goto done_quietly;
            }
        } else if (!sweep && dm_pipeline_sample(p, samples.x, n, &so, &err)) {
            goto done;
        }
    }
    if (cli_is_builtin(data)) {
        if (dm_toy2d_generate(&a, data, n, CLI_HELDOUT_SEED_A(seed), &err) ||
            dm_toy2d_generate(&b, data, n, CLI_HELDOUT_SEED_B(seed), &err))
            goto done;
    } else {
        if (cli_load_data(&all, data, 0, seed, &err)) goto done;
        if (all.n < 4) {
            dm_error_set(&err, DM_ERR_ARG, "%s: needs at least 4 rows", data);
            goto done;
        }
        if (2 * n > all.n) {
            fprintf(stderr, "note: %s has %lld rows; comparing %lld points per set\n", cli_safe(data),
                    (long long)all.n, (long long)(all.n / 2));
            n = all.n / 2;
            samples.n = n < samples.n ? n : samples.n;
            n = samples.n;
        }
        if (two_draws(&all, n, seed, &a, &b, &err)) goto done;
    }
    if (samples.dim != a.dim) {
        dm_error_set(&err, DM_ERR_MISMATCH, "samples have dimension %lld, the data %lld",
                     (long long)samples.dim, (long long)a.dim);
        goto done;
    }
    if (sweep) {
        cli_steps_args sa = {.p = p, .ref_a = &a, .ref_b = &b, .n = n, .samplers = samplers,
                             .steps = steps_list, .plot = plot, .seed = seed, .json = json};
        status = cli_eval_steps(&sa); /* prints its own errors */
        goto done_quietly;
    }
    dm_eval_report r;
    if (dm_eval_compare(&r, &samples, &a, &b, seed, &err)) goto done;
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "n", (double)r.n);
        cJSON_AddNumberToObject(o, "bandwidth", r.bandwidth);
        cJSON_AddNumberToObject(o, "mmd", r.mmd);
        cJSON_AddNumberToObject(o, "mmd_floor", r.mmd_floor);
        cJSON_AddNumberToObject(o, "mmd_ratio", r.mmd / r.mmd_floor);
        cJSON_AddNumberToObject(o, "swd", r.swd);
        cJSON_AddNumberToObject(o, "swd_floor", r.swd_floor);
        cJSON_AddNumberToObject(o, "swd_ratio", r.swd / r.swd_floor);
        cli_print_json(o);
    } else {
        printf("n = %lld per set, standardised units, MMD bandwidth %.4f (median heuristic)\n",
               (long long)r.n, r.bandwidth);
        printf("  %-28s %10s %10s %8s\n", "", "samples", "floor", "ratio");
        printf("  %-28s %10.5f %10.5f %8.2f\n", "MMD (RBF)", r.mmd, r.mmd_floor,
               r.mmd / r.mmd_floor);
        printf("  %-28s %10.5f %10.5f %8.2f\n", "sliced Wasserstein-2", r.swd, r.swd_floor,
               r.swd / r.swd_floor);
    }
    status = 0;
done:
    if (status) cli_sample_fail(&err);
done_quietly:
    dm_dataset_free(&samples);
    dm_dataset_free(&a);
    dm_dataset_free(&b);
    dm_dataset_free(&all);
    dm_pipeline_free(p);
    return status;
}

/* `mpirun -np N diffusion eval --metric mmd --model DIR`: the ranks draw the samples
 * (sample_split.h) and rank 0 judges them; without a launcher or MPI, one process as ever. */
int cmd_eval(int argc, char **argv) {
    int rc = cli_parallel_init("eval", argc, argv);
    if (rc) return cli_parallel_finalize(rc);
    rc = eval_main(argc, argv);
    if (!cli_parallel_setup_reported()) /* failed before sampling */
        cli_parallel_setup_done(rc != 0, 0, "model", "sampling");
    return cli_parallel_finalize(rc);
}
