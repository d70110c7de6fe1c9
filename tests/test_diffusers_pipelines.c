/* diffusers pipelines run as diffusers runs them (tests/fixtures/diffusers-pipelines, made by
 * diffusers 0.31.0 itself): every DDPMScheduler.step case (prediction_type x variance_type x
 * beta_schedule at five timesteps) from the library's scheduler_config.json reader and step;
 * whole trajectories from diffusers' x_T through dm_pipeline_load / dm_pipeline_sample with
 * the folder's own scheduler (DDIMPipeline with Stable Diffusion's settings, DPM-Solver++(2M),
 * DDIM on cosine with eta 1 and diffusers' recorded noise); the timesteps of every spacing; and
 * the configs and folders diffusion.c refuses, each with its key or file named. Tolerance: 1e-4
 * of the largest reference value (the untrained UNets' trajectories grow to ~50 and ~540). A
 * missing fixture fails the test. */
#include "diffusion/checkpoint.h"
#include "diffusion/sampler_impl.h"
#include "fixture_npy.h"

#include <omp.h>

#define PIPES DM_SOURCE_DIR "/tests/fixtures/diffusers-pipelines"
#define STEPS PIPES "/ddpm-steps-reference"

/* Writes text to tu_tmpdir()/name and returns the path. */
static const char *write_file(const char *name, const char *text) {
    const char *path = tu_tmp_path(name);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL, "cannot write %s", path);
    if (f) {
        fputs(text, f);
        fclose(f);
    }
    return path;
}

/* The fixtures' DPM-Solver and cosine DDIM configs were saved without "_class_name" (which
 * diffusion.c requires): a copy with the class named. */
static const char *with_class(const char *path, const char *cls) {
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL, "FAIL reference fixture missing: %s", path);
    if (!f) exit(1);
    static char text[1 << 16];
    const size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = 0;
    const char *brace = strchr(text, '{');
    CHECK(brace != NULL, "%s: no JSON object", path);
    static char out[(1 << 16) + 128];
    snprintf(out, sizeof out, "{\"_class_name\": \"%s\",%s", cls, brace ? brace + 1 : "");
    return write_file("with_class.json", out);
}

/* ---- DDPMScheduler.step, all 24 cases */

static void test_ddpm_steps(void) {
    static const char *const preds[] = {"epsilon", "v_prediction", "sample"};
    static const dm_prediction pred_kind[] = {DM_PRED_EPS, DM_PRED_V, DM_PRED_X0};
    static const char *const vars[] = {"fixed_small", "fixed_large", "fixed_small_log",
                                       "learned_range"};
    static const char *const scheds[] = {"linear", "squaredcos_cap_v2"};
    enum { B = 2, D = 16, NT = 5 };
    double *sample = read_npy(STEPS "/sample.npy", B * D);
    double *mo = read_npy(STEPS "/model_output.npy", B * D);
    double *mol = read_npy(STEPS "/model_output_learned.npy", 2 * B * D);
    double *noise = read_npy(STEPS "/noise.npy", B * D);
    double *ts = read_npy(STEPS "/timesteps.npy", NT);
    int cases = 0;
    double worst = 0;
    for (int p = 0; p < 3; p++)
        for (int v = 0; v < 4; v++)
            for (int sch = 0; sch < 2; sch++) {
                char name[128], path[256], json[512];
                snprintf(name, sizeof name, "%s_%s_%s", preds[p], vars[v], scheds[sch]);
                snprintf(path, sizeof path, STEPS "/%s_prev.npy", name);
                double *want = read_npy(path, NT * B * D);
                snprintf(json, sizeof json,
                         "{\"_class_name\": \"DDPMScheduler\", \"beta_schedule\": \"%s\", "
                         "\"clip_sample\": true, \"prediction_type\": \"%s\", "
                         "\"variance_type\": \"%s\", \"trained_betas\": null}",
                         scheds[sch], preds[p], vars[v]);
                dm_scheduler sc;
                dm_schedule s = {0};
                dm_error err = {0};
                CHECK(dm_scheduler_read(&sc, write_file("scheduler_config.json", json), &err) ==
                          DM_OK, "%s: %s", name, err.msg);
                CHECK(dm_scheduler_schedule(&sc, &s, &err) == DM_OK, "%s: %s", name, err.msg);
                const int learned = v == 3;
                for (int k = 0; k < NT && s.alpha_bar; k++) {
                    const int32_t t = (int32_t)ts[k];
                    float x[B * D], out[B * D], eps[B * D], var[B * D], z[B * D];
                    for (int b = 0; b < B; b++)
                        for (int j = 0; j < D; j++) {
                            x[b * D + j] = (float)sample[b * D + j];
                            z[b * D + j] = (float)noise[b * D + j];
                            /* learned: channel 0 the prediction, channel 1 the variance */
                            out[b * D + j] = (float)(learned ? mol[b * 2 * D + j] : mo[b * D + j]);
                            var[b * D + j] = learned ? (float)mol[b * 2 * D + D + j] : 0.0f;
                        }
                    dm_prediction_convert(pred_kind[p], DM_PRED_EPS, s.alpha_bar[t], x, out, eps,
                                          B * D);
                    /* diffusers' default num_inference_steps: all T, so prev = t - 1 */
                    CHECK(dm_scheduler_step(&sc, &s, sc.T, t, x, eps, learned ? var : NULL, z, 0.0,
                                            0, B, D, &err) == DM_OK,
                          "%s: %s", name, err.msg);
                    const double *w = want + k * B * D;
                    const double tol = 1e-4 * fmax(max_abs(w, B * D), 1.0);
                    const double d = max_diff(x, w, B * D);
                    worst = fmax(worst, d / fmax(max_abs(w, B * D), 1.0));
                    CHECK(d <= tol, "%s at t = %d: max difference %.3g from diffusers (allowed "
                          "%.3g)", name, (int)t, d, tol);
                }
                cases++;
                dm_schedule_free(&s);
                dm_scheduler_free(&sc);
                free(want);
            }
    printf("  DDPMScheduler.step: %d cases x 5 timesteps, largest difference %.3g of the "
           "largest value\n", cases, worst);
    CHECK(cases == 24, "%d cases", cases);
    free(sample), free(mo), free(mol), free(noise), free(ts);
}

/* At t = 0 DDPMScheduler.step returns its processed x_0 itself (alpha_bar_prev = 1, no noise),
 * so thresholding and clip_sample_range can be read off against closed forms: |x_0| of
 * (0.5, 1, 2, 3, 4) has its 0.5 quantile at 2, so x_0 is clamped to [-2, 2] and halved; with
 * ratio 0.995 the quantile is 3 + 0.98 (4 - 3) = 3.98 but sample_max_value 3 caps it at 3. */
static void test_thresholding(void) {
    static const struct {
        const char *json;
        float want[5];
    } cases[] = {
        {"{\"_class_name\": \"DDPMScheduler\", \"thresholding\": true, "
         "\"dynamic_thresholding_ratio\": 0.5, \"sample_max_value\": 10}",
         {0.25f, -0.5f, 1.0f, -1.0f, 1.0f}},
        {"{\"_class_name\": \"DDPMScheduler\", \"thresholding\": true, "
         "\"sample_max_value\": 3}",
         {0.5f / 3, -1.0f / 3, 2.0f / 3, -1.0f, 1.0f}},
        {"{\"_class_name\": \"DDPMScheduler\", \"clip_sample_range\": 1.5}",
         {0.5f, -1.0f, 1.5f, -1.5f, 1.5f}},
        {"{\"_class_name\": \"DDPMScheduler\", \"clip_sample\": false}",
         {0.5f, -1.0f, 2.0f, -3.0f, 4.0f}},
    };
    const float x0[5] = {0.5f, -1.0f, 2.0f, -3.0f, 4.0f};
    for (int c = 0; c < 4; c++) {
        dm_scheduler sc;
        dm_schedule s = {0};
        dm_error err = {0};
        CHECK(dm_scheduler_read(&sc, write_file("t.json", cases[c].json), &err) == DM_OK, "%s",
              err.msg);
        CHECK(dm_scheduler_schedule(&sc, &s, &err) == DM_OK, "%s", err.msg);
        if (!s.alpha_bar) continue;
        float x[5], eps[5] = {0};
        for (int j = 0; j < 5; j++) x[j] = (float)(sqrt(s.alpha_bar[0]) * x0[j]);
        CHECK(dm_scheduler_step(&sc, &s, sc.T, 0, x, eps, NULL, NULL, 0, 0, 1, 5, &err) == DM_OK,
              "%s", err.msg);
        for (int j = 0; j < 5; j++)
            CHECK(fabsf(x[j] - cases[c].want[j]) < 1e-6f, "case %d value %d: %g, expected %g", c,
                  j, x[j], cases[c].want[j]);
        dm_schedule_free(&s);
        dm_scheduler_free(&sc);
    }
}

/* ---- whole trajectories through the pipeline */

enum { TB = 2, TD = 3 * 16 * 16 };

typedef struct {
    float *states; /* (steps + 1, TB, TD) */
    int count, cap;
} recorder;

static void record(void *ctx, int32_t i, const float *x, int64_t B, int64_t dim) {
    (void)i;
    recorder *r = ctx;
    if (r->count < r->cap) memcpy(r->states + (size_t)r->count * B * dim, x, (size_t)(B * dim) * sizeof(float));
    r->count++;
}

/* Samples TB images from x_T with the pipeline's own scheduler (S steps, eta, noise) and
 * compares every state with traj (S + 1 states) and the timesteps with ts. */
static void check_trajectory(const char *what, dm_pipeline *p, const char *ref, int S, double eta,
                             int with_noise) {
    char path[512];
    snprintf(path, sizeof path, "%s/x_T.npy", ref);
    double *xT = read_npy(path, TB * TD);
    snprintf(path, sizeof path, "%s/traj.npy", ref);
    double *traj = read_npy(path, (int64_t)(S + 1) * TB * TD);
    snprintf(path, sizeof path, "%s/timesteps.npy", ref);
    double *ts = read_npy(path, S);
    float *noise = NULL;
    if (with_noise) {
        snprintf(path, sizeof path, "%s/noise.npy", ref);
        double *nz = read_npy(path, (int64_t)S * TB * TD);
        noise = to_float(nz, (int64_t)S * TB * TD);
        free(nz);
    }
    dm_error err = {0};
    const dm_scheduler *sc = dm_pipeline_scheduler(p);
    CHECK(sc != NULL, "%s: the folder has no scheduler", what);
    int32_t got_ts[64];
    CHECK(sc && dm_scheduler_timesteps(sc, S, got_ts, &err) == DM_OK, "%s: %s", what, err.msg);
    for (int k = 0; sc && k < S; k++)
        CHECK(got_ts[k] == (int32_t)ts[k], "%s: timestep %d is %d, diffusers' %d", what, k,
              (int)got_ts[k], (int)ts[k]);
    float *x_T = to_float(xT, TB * TD), *x = calloc(TB * TD, sizeof(float));
    recorder rec = {calloc((size_t)(S + 1) * TB * TD, sizeof(float)), 0, S + 1};
    dm_sample_options so;
    dm_sample_options_default(&so);
    so.scheduler = sc;
    so.steps = S;
    so.eta = eta;
    so.x_T = x_T;
    so.noise = noise;
    so.observe = record;
    so.observe_ctx = &rec;
    CHECK(dm_pipeline_sample(p, x, TB, &so, &err) == DM_OK, "%s: %s", what, err.msg);
    CHECK(rec.count == S + 1, "%s: %d states observed, expected %d", what, rec.count, S + 1);
    const double scale = max_abs(traj, (int64_t)(S + 1) * TB * TD);
    double worst = 0;
    for (int k = 0; k <= S && k < rec.count; k++)
        worst = fmax(worst, max_diff(rec.states + (size_t)k * TB * TD, traj + (size_t)k * TB * TD, TB * TD));
    printf("  %s: %d steps, largest value %.4g, largest difference %.3g (%.2g of it)\n", what, S,
           scale, worst, worst / scale);
    CHECK(worst <= 1e-4 * scale, "%s: trajectory %.3g from diffusers' (allowed %.3g)", what, worst,
          1e-4 * scale);
    CHECK(max_diff(x, traj + (size_t)S * TB * TD, TB * TD) <= 1e-4 * scale,
          "%s: the returned samples are not the last state", what);
    free(xT), free(traj), free(ts), free(noise), free(x_T), free(x), free(rec.states);
}

static void test_trajectories(void) {
    dm_pipeline *p = NULL;
    dm_error err = {0};
    /* a DDIMPipeline folder as diffusers saved it: its own scheduler and settings */
    CHECK(dm_pipeline_load(&p, PIPES "/ddim-trailing", &err) == DM_OK, "%s", err.msg);
    if (p) {
        const dm_scheduler *sc = dm_pipeline_scheduler(p);
        CHECK(sc && sc->cls == DM_SCHEDULER_DDIM && sc->spacing == DM_SPACING_TRAILING &&
                  sc->steps_offset == 1 && !sc->set_alpha_to_one && !sc->clip_sample &&
                  sc->default_steps == 50,
              "ddim-trailing's scheduler read wrongly");
        check_trajectory("DDIMPipeline, trailing, 25 steps", p, PIPES "/ddim-trailing-reference",
                         25, 0.0, 0);
        dm_pipeline_free(p);
    }
    /* the DDPMPipeline folder with other schedulers' configs */
    p = NULL;
    CHECK(dm_pipeline_load_diffusers(&p, PIPES "/ddpm-cifar-flags",
                                     with_class(PIPES "/dpmsolver-2m-reference/scheduler_config.json",
                                                "DPMSolverMultistepScheduler"), NULL,
                                     &err) == DM_OK, "%s", err.msg);
    if (p) {
        check_trajectory("DPM-Solver++(2M), 20 steps", p, PIPES "/dpmsolver-2m-reference", 20,
                         0.0, 0);
        dm_pipeline_free(p);
    }
    p = NULL;
    CHECK(dm_pipeline_load_diffusers(&p, PIPES "/ddpm-cifar-flags",
                                     with_class(PIPES "/ddim-cosine-eta1-reference/scheduler_config.json",
                                                "DDIMScheduler"),
                                     NULL, &err) == DM_OK, "%s", err.msg);
    if (p) {
        check_trajectory("DDIM cosine, eta 1, given noise", p, PIPES "/ddim-cosine-eta1-reference",
                         10, 1.0, 1);
        dm_pipeline_free(p);
    }
    /* the DDPMPipeline folder itself: DDPMScheduler with the checkpoint's settings */
    p = NULL;
    CHECK(dm_pipeline_load(&p, PIPES "/ddpm-cifar-flags", &err) == DM_OK, "%s", err.msg);
    if (p) {
        const dm_scheduler *sc = dm_pipeline_scheduler(p);
        CHECK(sc && sc->cls == DM_SCHEDULER_DDPM && sc->variance == DM_DDPM_FIXED_LARGE &&
                  sc->clip_sample && sc->default_steps == 1000 &&
                  dm_pipeline_train_config(p)->var == DM_VAR_BETA,
              "ddpm-cifar-flags' scheduler read wrongly");
        dm_pipeline_free(p);
    }
}

/* ---- the native DDIM's clipping is diffusers' */

/* diffusion.c's own DDIM with clip_x0 on the levels of a trailing DDIMScheduler (where diffusers'
 * prev = t - T / S is the next level) equals the scheduler's loop with clip_sample, which keeps
 * the network's eps in the direction term (use_clipped_model_output False); GLIDE's form
 * (ddim_clipped_eps) does not, on the untrained UNet whose x_0 estimates leave [-1, 1]. */
static void test_native_ddim_clip(void) {
    enum { S = 10 };
    dm_pipeline *p = NULL;
    dm_error err = {0};
    const char *cfg = write_file("ddim_clip.json", "{\"_class_name\": \"DDIMScheduler\", "
                                 "\"timestep_spacing\": \"trailing\", \"clip_sample\": true}");
    CHECK(dm_pipeline_load_diffusers(&p, PIPES "/ddpm-cifar-flags", cfg, NULL, &err) == DM_OK, "%s",
          err.msg);
    if (!p) return;
    double *xT = read_npy(PIPES "/ddim-trailing-reference/x_T.npy", TB * TD);
    float *x_T = to_float(xT, TB * TD), *a = calloc(TB * TD, 4), *b = calloc(TB * TD, 4),
          *c = calloc(TB * TD, 4);
    int32_t levels[S];
    const dm_scheduler *sc = dm_pipeline_scheduler(p);
    CHECK(dm_scheduler_timesteps(sc, S, levels, &err) == DM_OK, "%s", err.msg);
    dm_sample_options so;
    dm_sample_options_default(&so);
    so.x_T = x_T;
    so.steps = S;
    so.scheduler = sc;
    CHECK(dm_sample(dm_pipeline_schedule(p), dm_pipeline_denoise, p, a, TB, TD, &so, &err) ==
              DM_OK, "%s", err.msg);
    so.scheduler = NULL;
    so.clip_x0 = 1;
    float *outs[2] = {b, c};
    for (int glide = 0; glide < 2; glide++) {
        so.ddim_clipped_eps = glide;
        dm_sample_run r;
        CHECK(dm_sample_run_init(&r, dm_pipeline_schedule(p), dm_pipeline_denoise, p, outs[glide],
                                 TB, TD, &so, &err) == DM_OK, "%s", err.msg);
        CHECK(dm_sample_ddim_on(&r, levels, S) == DM_OK, "%s", err.msg);
        dm_sample_run_free(&r);
    }
    double ad[TB * TD];
    for (int i = 0; i < TB * TD; i++) ad[i] = a[i];
    const double scale = max_abs(ad, TB * TD), same = max_diff(b, ad, TB * TD),
                 glide = max_diff(c, ad, TB * TD);
    printf("  native DDIM with clipping: %.3g from the DDIMScheduler loop (GLIDE's form: %.3g; "
           "largest value %.3g)\n", same, glide, scale);
    /* the native update forms x_0 in float32 with 1 / sqrt(alpha_bar) up to ~160 (the
     * scheduler in double): measured 3e-4 of the largest value, against 2 for GLIDE's form */
    CHECK(same <= 1e-3 * scale, "native DDIM with clip_x0 is %.3g from diffusers' form", same);
    CHECK(glide > 0.1 * scale, "GLIDE's form is only %.3g from diffusers': clipping never acted",
          glide);
    free(xT), free(x_T), free(a), free(b), free(c);
    dm_pipeline_free(p);
}

/* ---- a given x_T over several chunks */

/* dm_pipeline_sample draws images 256 at a time: with a given x_T each chunk must start from
 * its own rows. 300 images of the tiny UNet, deterministic DDIM: the last 44 equal a run of
 * those 44 rows alone; given noise for more than one chunk is refused. */
static void test_x_T_chunks(void) {
    enum { N = 300, D = 64, TAIL = N - DM_PIPELINE_IMAGE_CHUNK };
    dm_pipeline *p = NULL;
    dm_error err = {0};
    const char *cfg = write_file("ddim3.json", "{\"_class_name\": \"DDIMScheduler\"}");
    CHECK(dm_pipeline_load_diffusers(&p, PIPES "/weights-f32", cfg, NULL, &err) == DM_OK, "%s",
          err.msg);
    if (!p) return;
    float *x_T = malloc(N * D * sizeof(float)), *all = malloc(N * D * sizeof(float)),
          *tail = malloc(TAIL * D * sizeof(float));
    for (int i = 0; i < N * D; i++) x_T[i] = (float)sin(1.7 * i + 0.3);
    dm_sample_options so;
    dm_sample_options_default(&so);
    so.scheduler = dm_pipeline_scheduler(p);
    so.steps = 3;
    so.x_T = x_T;
    CHECK(dm_pipeline_sample(p, all, N, &so, &err) == DM_OK, "%s", err.msg);
    so.x_T = x_T + DM_PIPELINE_IMAGE_CHUNK * D;
    CHECK(dm_pipeline_sample(p, tail, TAIL, &so, &err) == DM_OK, "%s", err.msg);
    double want[TAIL * D];
    for (int i = 0; i < TAIL * D; i++) want[i] = tail[i];
    const double d = max_diff(all + DM_PIPELINE_IMAGE_CHUNK * D, want, TAIL * D);
    CHECK(d <= 1e-5, "the second chunk's images are %.3g from the same x_T run alone", d);
    /* the second chunk alone (chunk_first 1, chunk_step 2: rank 1 of 2) has the bits of the
     * call for all, and the first chunk's rows are left as they were */
    float *half = malloc(N * D * sizeof(float));
    for (int i = 0; i < N * D; i++) half[i] = 7.0f;
    so.x_T = x_T;
    so.chunk_first = 1;
    so.chunk_step = 2;
    CHECK(dm_pipeline_sample(p, half, N, &so, &err) == DM_OK, "%s", err.msg);
    CHECK(memcmp(half + DM_PIPELINE_IMAGE_CHUNK * D, all + DM_PIPELINE_IMAGE_CHUNK * D,
                 TAIL * D * sizeof(float)) == 0,
          "chunk 1 drawn alone differs from the call for all chunks");
    int untouched = 1;
    for (int i = 0; i < DM_PIPELINE_IMAGE_CHUNK * D; i++) untouched &= half[i] == 7.0f;
    CHECK(untouched, "chunk 0's rows were written by a call for chunk 1 only");
    so.chunk_step = -1;
    CHECK(dm_pipeline_sample(p, half, N, &so, &err) == DM_ERR_ARG && strstr(err.msg, "chunk_step"),
          "a negative chunk_step: %s", err.msg);
    so.chunk_first = 0;
    so.chunk_step = 1;
    free(half);
    so.noise = x_T; /* any values: the call must be refused before it reads them */
    CHECK(dm_pipeline_sample(p, all, N, &so, &err) != DM_OK && strstr(err.msg, "noise"),
          "given noise over two chunks accepted: %s", err.msg);
    free(x_T), free(all), free(tail);
    dm_pipeline_free(p);
}

/* ---- timesteps of each spacing, against numpy's arithmetic done by hand */

static void test_spacing(void) {
    dm_error err = {0};
    dm_scheduler sc;
    int32_t t[64];
    /* leading, steps_offset 1: arange(0, 50) * 20, reversed, + 1 */
    CHECK(dm_scheduler_read(&sc, write_file("c.json", "{\"_class_name\": \"DDIMScheduler\", "
                                            "\"steps_offset\": 1}"), &err) == DM_OK, "%s", err.msg);
    CHECK(dm_scheduler_timesteps(&sc, 50, t, &err) == DM_OK, "%s", err.msg);
    CHECK(t[0] == 981 && t[1] == 961 && t[49] == 1, "leading: %d %d .. %d", (int)t[0], (int)t[1],
          (int)t[49]);
    CHECK(sc.set_alpha_to_one && sc.clip_sample && sc.default_steps == 50, "DDIM defaults");
    dm_scheduler_free(&sc);
    /* trailing with 3 steps: round(arange(1000, 0, -333.33)) - 1 = 999, 666, 332 */
    CHECK(dm_scheduler_read(&sc, write_file("c.json", "{\"_class_name\": \"DDPMScheduler\", "
                                            "\"timestep_spacing\": \"trailing\"}"), &err) == DM_OK,
          "%s", err.msg);
    CHECK(dm_scheduler_timesteps(&sc, 3, t, &err) == DM_OK, "%s", err.msg);
    CHECK(t[0] == 999 && t[1] == 666 && t[2] == 332, "trailing: %d %d %d", (int)t[0], (int)t[1],
          (int)t[2]);
    dm_scheduler_free(&sc);
    /* DPM-Solver, leading: arange(0, 6) * (1000 // 6) reversed without the 0 = 830 .. 166 */
    CHECK(dm_scheduler_read(&sc, write_file("c.json", "{\"_class_name\": "
                                            "\"DPMSolverMultistepScheduler\", \"timestep_spacing\": "
                                            "\"leading\", \"lambda_min_clipped\": -Infinity}"),
                            &err) == DM_OK, "%s", err.msg);
    CHECK(dm_scheduler_timesteps(&sc, 5, t, &err) == DM_OK, "%s", err.msg);
    CHECK(t[0] == 830 && t[4] == 166, "DPM leading: %d .. %d", (int)t[0], (int)t[4]);
    CHECK(isinf(sc.lambda_min_clipped) && sc.lambda_min_clipped < 0, "-Infinity read as %g",
          sc.lambda_min_clipped);
    dm_scheduler_free(&sc);
    /* lambda_min_clipped -5.1 (diffusers' value for cosine) drops the last timesteps of cosine */
    CHECK(dm_scheduler_read(&sc, write_file("c.json", "{\"_class_name\": "
                                            "\"DPMSolverMultistepScheduler\", \"beta_schedule\": "
                                            "\"squaredcos_cap_v2\", \"lambda_min_clipped\": -5.1}"),
                            &err) == DM_OK, "%s", err.msg);
    CHECK(dm_scheduler_timesteps(&sc, 10, t, &err) == DM_OK, "%s", err.msg);
    dm_schedule s;
    CHECK(dm_scheduler_schedule(&sc, &s, &err) == DM_OK, "%s", err.msg);
    int32_t last = 0; /* timesteps whose lambda >= -5.1 */
    for (int i = 0; i < s.T; i++)
        if (0.5 * log(s.alpha_bar[i] / (1 - s.alpha_bar[i])) >= -5.1) last = i + 1;
    /* linspace(0, last - 1, 11).round()[::-1][:-1] */
    CHECK(last < 1000 && t[0] == last - 1 && t[1] == (int32_t)rint((last - 1) * 9.0 / 10.0),
          "lambda_min_clipped: timesteps %d, %d, last kept %d", (int)t[0], (int)t[1], (int)last);
    dm_schedule_free(&s);
    dm_scheduler_free(&sc);
}

/* ---- fine-tuning starts from the folder's weights */

/* A trainer built from the DDPMPipeline folder's description and given its UNet's weights
 * (dm_trainer_init_weights), saved before any step, loads back as a pipeline whose UNet gives
 * diffusers' own output on the reference input. */
static void test_init_weights(void) {
#define CIFAR_REF PIPES "/ddpm-cifar-flags-reference"
    enum { RB = 3 };
    dm_pipeline *src = NULL, *back = NULL;
    dm_error err = {0};
    CHECK(dm_pipeline_load(&src, PIPES "/ddpm-cifar-flags", &err) == DM_OK, "%s", err.msg);
    if (!src) return;
    dm_train_config cfg = *dm_pipeline_train_config(src);
    cfg.steps = 1;
    cfg.batch = 2;
    dm_dataset data = {0};
    CHECK(dm_dataset_init(&data, 4, TD, &err) == DM_OK, "%s", err.msg);
    for (int64_t i = 0; i < 4 * TD; i++) data.x[i] = (float)((i * 37 % 200) / 100.0 - 1.0);
    dm_trainer *tr = NULL;
    CHECK(dm_trainer_create(&tr, &cfg, &data, &err) == DM_OK, "%s", err.msg);
    CHECK(tr && dm_trainer_init_weights(tr, dm_pipeline_model(src), &err) == DM_OK, "%s", err.msg);
    const char *dir = tu_tmp_path("finetune");
    CHECK(tr && dm_trainer_save(tr, dir, &err) == DM_OK, "%s", err.msg);
    CHECK(dm_pipeline_load(&back, dir, &err) == DM_OK, "%s", err.msg);
    if (back) {
        double *x = read_npy(CIFAR_REF "/x.npy", RB * TD), *ts = read_npy(CIFAR_REF "/timesteps.npy", RB);
        double *want = read_npy(CIFAR_REF "/out_f64.npy", RB * TD);
        float *xf = to_float(x, RB * TD), *tf = to_float(ts, RB), *out = calloc(RB * TD, sizeof(float));
        CHECK(dm_model_forward((dm_model *)dm_pipeline_model(back), out, xf, tf, RB, 0, &err) == DM_OK, "%s",
              err.msg);
        const double d = max_diff(out, want, RB * TD), tol = 1e-5 * max_abs(want, RB * TD);
        printf("  fine-tuning start: the saved UNet is %.3g from diffusers' output (allowed %.3g)\n",
               d, tol);
        CHECK(d <= tol, "the UNet saved after dm_trainer_init_weights is %.3g from diffusers' "
              "output", d);
        /* and a step taken refuses new weights */
        CHECK(dm_trainer_step(tr, NULL, &err) == DM_OK, "%s", err.msg);
        CHECK(dm_trainer_init_weights(tr, dm_pipeline_model(src), &err) != DM_OK,
              "weights set after a step");
        free(x), free(ts), free(want), free(xf), free(tf), free(out);
    }
    /* the trainer's files, then its folder */
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0, "cannot remove %s", dir);
    dm_trainer_free(tr);
    dm_dataset_free(&data);
    dm_pipeline_free(src);
    dm_pipeline_free(back);
}

/* ---- what we write reads back as diffusers reads it */

/* Our checkpoints' scheduler_config.json for each schedule kind and a T other than 1000, read by
 * the diffusers reader (trained_betas in float32): the same alpha_bar to float32 precision. */
static void test_written_scheduler(void) {
    static const dm_schedule_kind kinds[] = {DM_SCHEDULE_LINEAR, DM_SCHEDULE_COSINE,
                                             DM_SCHEDULE_LOGSNR, DM_SCHEDULE_LINEAR};
    static const int32_t Ts[] = {1000, 1000, 200, 50};
    for (int c = 0; c < 4; c++) {
        dm_train_config cfg;
        dm_train_config_default(&cfg);
        cfg.arch = DM_ARCH_UNET;
        cfg.schedule.kind = kinds[c];
        cfg.schedule.T = Ts[c];
        cfg.prediction = c == 2 ? DM_PRED_V : DM_PRED_EPS;
        dm_schedule s = {0}, back = {0};
        dm_scheduler sc;
        dm_error err = {0};
        const char *dir = tu_tmpdir();
        char path[512];
        snprintf(path, sizeof path, "%s/scheduler/scheduler_config.json", dir);
        CHECK(dm_schedule_init(&s, &cfg.schedule, &err) == DM_OK, "%s", err.msg);
        CHECK(dm_checkpoint_write_diffusers_pipeline(dir, &s, &cfg, &err) == DM_OK, "%s", err.msg);
        CHECK(dm_scheduler_read(&sc, path, &err) == DM_OK, "%s: %s", dm_schedule_kind_name(kinds[c]),
              err.msg);
        CHECK(dm_scheduler_schedule(&sc, &back, &err) == DM_OK, "%s", err.msg);
        double worst = 0;
        for (int32_t i = 0; back.alpha_bar && i < s.T; i++)
            worst = fmax(worst, fabs(back.alpha_bar[i] / s.alpha_bar[i] - 1));
        CHECK(back.T == s.T && worst < 2e-5 && sc.prediction == cfg.prediction,
              "%s T = %d: alpha_bar read back %.3g off (relative), T %d, prediction %d",
              dm_schedule_kind_name(kinds[c]), (int)Ts[c], worst, (int)back.T, (int)sc.prediction);
        dm_scheduler_free(&sc);
        dm_schedule_free(&s);
        dm_schedule_free(&back);
        remove(path);
        snprintf(path, sizeof path, "%s/scheduler", dir);
        rmdir(path);
        remove(tu_tmp_path("model_index.json"));
    }
}

/* ---- refusals */

static void refused(const char *json, const char *must_name) {
    dm_scheduler sc;
    dm_error err = {0};
    const char *path = write_file("scheduler_config.json", json);
    const dm_status st = dm_scheduler_read(&sc, path, &err);
    CHECK(st != DM_OK, "accepted: %s", json);
    if (st == DM_OK) {
        dm_scheduler_free(&sc);
        return;
    }
    CHECK(strstr(err.msg, must_name) && strstr(err.msg, "scheduler_config.json"),
          "message for %s does not name \"%s\" and the file: %s", json, must_name, err.msg);
}

static void test_refusals(void) {
    refused("{\"_class_name\": \"EulerDiscreteScheduler\"}", "EulerDiscreteScheduler");
    refused("{\"_class_name\": \"DDPMScheduler\", \"variance_type\": \"fixed_large_log\"}",
            "fixed_large_log");
    refused("{\"_class_name\": \"DDPMScheduler\", \"karras\": 1}", "karras");
    refused("{\"_class_name\": \"DDPMScheduler\", \"set_alpha_to_one\": true}", "set_alpha_to_one");
    refused("{\"_class_name\": \"DDIMScheduler\", \"beta_schedule\": \"sigmoid\"}", "sigmoid");
    refused("{\"_class_name\": \"DDIMScheduler\", \"rescale_betas_zero_snr\": true}",
            "rescale_betas_zero_snr");
    refused("{\"_class_name\": \"DDIMScheduler\", \"timestep_spacing\": \"uniform\"}", "uniform");
    refused("{\"_class_name\": \"DDIMScheduler\", \"prediction_type\": \"score\"}", "score");
    refused("{\"_class_name\": \"DDIMScheduler\", \"clip_sample\": \"yes\"}", "clip_sample");
    refused("{\"_class_name\": \"DDIMScheduler\", \"trained_betas\": [0.1, 0.2]}", "trained_betas");
    refused("{\"_class_name\": \"DPMSolverMultistepScheduler\", \"use_karras_sigmas\": true}",
            "use_karras_sigmas");
    refused("{\"_class_name\": \"DPMSolverMultistepScheduler\", \"algorithm_type\": "
            "\"sde-dpmsolver++\"}", "sde-dpmsolver++");
    refused("{\"_class_name\": \"DPMSolverMultistepScheduler\", \"solver_order\": 3}",
            "solver_order");
    refused("{\"_class_name\": \"DPMSolverMultistepScheduler\", \"clip_sample\": true}",
            "clip_sample");
    refused("{\"_class_name\": \"DDPMScheduler\", \"num_train_timesteps\": NaN}",
            "num_train_timesteps");
    /* found by fuzz_scheduler_config: betas that float32 rounds to 0 or 1 */
    refused("{\"_class_name\": \"DDPMScheduler\", \"num_train_timesteps\": 2, "
            "\"trained_betas\": [0.01, 1e-50]}", "trained_betas[1]");
    refused("{\"_class_name\": \"DDIMScheduler\", \"num_train_timesteps\": 2, "
            "\"trained_betas\": [0.01, 0.99999999]}", "trained_betas[1]");
    /* Python's json refuses data after the object; so does every JSON reader here */
    refused("{\"_class_name\": \"DDPMScheduler\"} ]]junk", "after the JSON");
    /* folders */
    dm_pipeline *p = NULL;
    dm_error err = {0};
    write_file("model_index.json", "{\"_class_name\": \"StableDiffusionPipeline\", \"unet\": "
               "[\"diffusers\", \"UNet2DConditionModel\"]}");
    CHECK(dm_pipeline_load(&p, tu_tmpdir(), &err) != DM_OK && strstr(err.msg, "StableDiffusion"),
          "a text-to-image pipeline: %s", err.msg);
    dm_pipeline_free(p), p = NULL;
    write_file("model_index.json", "{\"_class_name\": \"DDPMPipeline\", \"unet\": [\"diffusers\", "
               "\"UNet2DModel\"], \"scheduler\": [\"diffusers\", \"DDPMScheduler\"]}");
    CHECK(dm_pipeline_load(&p, tu_tmpdir(), &err) != DM_OK && strstr(err.msg, "scheduler"),
          "a pipeline without its scheduler folder: %s", err.msg);
    dm_pipeline_free(p), p = NULL;
    CHECK(dm_pipeline_load_diffusers(&p, "/nonexistent-folder", NULL, NULL, &err) != DM_OK &&
              strstr(err.msg, "nonexistent-folder"),
          "a missing folder: %s", err.msg);
    dm_pipeline_free(p), p = NULL;
    /* a learned-variance scheduler with a UNet that has no variance channel */
    const char *cfg = write_file("learned.json", "{\"_class_name\": \"DDPMScheduler\", "
                                 "\"variance_type\": \"learned_range\"}");
    CHECK(dm_pipeline_load_diffusers(&p, PIPES "/ddpm-cifar-flags", cfg, NULL, &err) != DM_OK &&
              strstr(err.msg, "output"),
          "learned variance with 3 output channels: %s", err.msg);
    dm_pipeline_free(p);
}

int main(void) {
    omp_set_num_threads(2);
    if (tu_tmpdir_make("diffusers_pipelines")) return 1;
    test_ddpm_steps();
    test_thresholding();
    test_spacing();
    test_refusals();
    test_trajectories();
    test_native_ddim_clip();
    test_x_T_chunks();
    test_init_weights();
    test_written_scheduler();
    tu_tmpdir_remove();
    return tu_finish("test_diffusers_pipelines");
}
