/* The library's DPM-Solver++(2M) against diffusers' own DPMSolverMultistepScheduler
 * (tests/fixtures/diffusers-pipelines, made by diffusers 0.31.0): the ddpm-cifar-flags UNet,
 * loaded by the library, first against diffusers' output of that UNet (its config's flags
 * flip_sin_to_cos false, freq_shift 1, downsample_padding 0 and attention_head_dim null each
 * matter: the same weights with any one flag flipped miss the reference), then 20 steps of
 * dm_sample_dpmpp2m_levels on diffusers' timesteps from diffusers' x_T against its whole
 * trajectory (dpmsolver++, order 2, linear betas, linspace spacing, lower_order_final, final
 * sigma 0). A missing fixture fails the test. */
#include "diffusion/sampler_impl.h"
#include "fixture_npy.h"

#include <omp.h>

#define PIPES DM_SOURCE_DIR "/tests/fixtures/diffusers-pipelines"

enum { RB = 3, DIM = 3 * 16 * 16 };

/* The UNet of dir at the reference input: its largest difference from out_f64.npy. */
static double unet_miss(const char *dir, const double *x, const double *ts, const double *want,
                        dm_unet_config *cfg_out, size_t *params) {
    dm_model *m = NULL;
    dm_unet_config cfg;
    dm_error err = {0};
    CHECK(dm_unet_load_diffusers(&m, &cfg, dir, &err) == DM_OK, "%s: %s", dir, err.msg);
    if (!m) return INFINITY;
    if (cfg_out) *cfg_out = cfg;
    if (params) *params = dm_model_num_params(m);
    float *xf = to_float(x, RB * DIM), *tf = to_float(ts, RB);
    float *out = calloc(RB * DIM, sizeof *out);
    CHECK(dm_model_forward(m, out, xf, tf, RB, 0, &err) == DM_OK, "%s: %s", dir, err.msg);
    const double d = max_diff(out, want, RB * DIM);
    free(xf), free(tf), free(out);
    dm_model_free(m);
    return d;
}

/* Copies the unet folder into the scratch folder with one config.json value replaced. */
static int copy_with(const char *key, const char *value) {
    const char *src[2] = {PIPES "/ddpm-cifar-flags/unet/config.json",
                          PIPES "/ddpm-cifar-flags/unet/diffusion_pytorch_model.safetensors"};
    const char *dst[2] = {tu_tmp_path("config.json"),
                          tu_tmp_path("diffusion_pytorch_model.safetensors")};
    for (int f = 0; f < 2; f++) {
        FILE *in = fopen(src[f], "rb");
        if (!in) return -1;
        fseek(in, 0, SEEK_END);
        const long size = ftell(in);
        fseek(in, 0, SEEK_SET);
        char *buf = malloc((size_t)size + 1);
        const size_t got = fread(buf, 1, (size_t)size, in);
        fclose(in);
        if (got != (size_t)size) return free(buf), -1;
        buf[size] = 0;
        FILE *out = fopen(dst[f], "wb");
        if (!out) return free(buf), -1;
        if (f == 0) {
            /* "key": <value up to the comma or newline> */
            char pat[64];
            snprintf(pat, sizeof pat, "\"%s\": ", key);
            char *at = strstr(buf, pat);
            if (!at) return fclose(out), free(buf), -1;
            at += strlen(pat);
            char *end = at + strcspn(at, ",\n");
            fwrite(buf, 1, (size_t)(at - buf), out);
            fputs(value, out);
            fputs(end, out);
        } else {
            fwrite(buf, 1, (size_t)size, out);
        }
        free(buf);
        if (fclose(out)) return -1;
    }
    return 0;
}

static void test_unet_flags(void) {
#define REF PIPES "/ddpm-cifar-flags-reference"
    double *x = read_npy(REF "/x.npy", RB * DIM), *ts = read_npy(REF "/timesteps.npy", RB);
    double *want = read_npy(REF "/out_f64.npy", RB * DIM);
    dm_unet_config cfg;
    size_t params = 0;
    const double d = unet_miss(PIPES "/ddpm-cifar-flags/unet", x, ts, want, &cfg, &params);
    /* float32 through a whole network: diffusers' own float32 run is 1.5e-6 from its float64
     * one (REPORT.json) on outputs up to 1.75; 1e-5 of the largest output (measured 2.3e-6
     * here) leaves room for another summation order */
    const double tol = 1e-5 * max_abs(want, RB * DIM);
    printf("  ddpm-cifar-flags unet: largest output %.3g, max difference from diffusers %.3g "
           "(allowed %.3g)\n", max_abs(want, RB * DIM), d, tol);
    CHECK(d <= tol, "ddpm-cifar-flags unet output: max difference %.3g from diffusers (allowed "
          "%.3g)", d, tol);
    CHECK(params == 565315, "ddpm-cifar-flags unet: %zu parameters, diffusers has 565,315", params);
    CHECK(cfg.flip_sin_to_cos == 0 && cfg.freq_shift == 1 && cfg.downsample_padding == 0 &&
              cfg.attention_head_dim == 0 && cfg.norm_eps == 1e-6,
          "config read as flip_sin_to_cos %d, freq_shift %g, downsample_padding %d, "
          "attention_head_dim %lld, norm_eps %g", cfg.flip_sin_to_cos, cfg.freq_shift,
          cfg.downsample_padding, (long long)cfg.attention_head_dim, cfg.norm_eps);
    /* each flag changes the output: the same weights with one flag flipped miss the reference
     * by far more than the tolerance (attention_head_dim 8: 4 heads over 32 channels) */
    const struct {
        const char *key, *value;
    } flips[] = {{"flip_sin_to_cos", "true"},
                 {"freq_shift", "0"},
                 {"downsample_padding", "1"},
                 {"attention_head_dim", "8"}};
    CHECK(tu_tmpdir_make("diffusers_samplers") == 0, "scratch folder");
    for (size_t k = 0; k < sizeof flips / sizeof flips[0]; k++) {
        CHECK(copy_with(flips[k].key, flips[k].value) == 0, "copy with %s", flips[k].key);
        const double miss = unet_miss(tu_tmpdir(), x, ts, want, NULL, NULL);
        printf("  %s = %s: max difference %.3g\n", flips[k].key, flips[k].value, miss);
        CHECK(miss > 100 * tol, "%s = %s: output within %.3g of the reference; the flag would "
              "not be checked", flips[k].key, flips[k].value, miss);
    }
    CHECK(tu_tmpdir_remove() == 0, "scratch folder removed");
    free(x), free(ts), free(want);
}

/* ---- the sampler */

typedef struct {
    dm_model *m;
    int calls;
} unet_ctx;

static dm_status unet_denoise(void *vctx, float *eps_hat, float *var_out, const float *x,
                              const float *t, int64_t B, dm_error *err) {
    unet_ctx *c = vctx;
    if (var_out) return dm_error_set(err, DM_ERR_ARG, "this unet has no variance output");
    c->calls++;
    return dm_model_forward(c->m, eps_hat, x, t, B, 0, err);
}

enum { SB = 2, STEPS = 20 };

typedef struct {
    float *traj; /* (STEPS + 1, SB, DIM) */
    int seen;
    int32_t idx[STEPS + 1];
} recorder;

static void record(void *vctx, int32_t i, const float *x, int64_t B, int64_t dim) {
    recorder *r = vctx;
    if (r->seen <= STEPS) {
        memcpy(r->traj + (size_t)r->seen * SB * DIM, x, (size_t)(B * dim) * sizeof(float));
        r->idx[r->seen] = i;
    }
    r->seen++;
}

static void test_dpmpp_2m(void) {
#define DPM PIPES "/dpmsolver-2m-reference"
    double *ts = read_npy(DPM "/timesteps.npy", STEPS);
    double *xT = read_npy(DPM "/x_T.npy", SB * DIM);
    double *traj = read_npy(DPM "/traj.npy", (STEPS + 1) * SB * DIM);
    dm_model *m = NULL;
    dm_error err = {0};
    CHECK(dm_unet_load_diffusers(&m, NULL, PIPES "/ddpm-cifar-flags/unet", &err) == DM_OK, "%s",
          err.msg);
    if (!m) return;
    /* diffusers' scheduler: linear betas 1e-4..0.02 over 1000 steps, the library's defaults */
    dm_schedule_config scfg;
    dm_schedule_config_default(&scfg);
    scfg.kind = DM_SCHEDULE_LINEAR;
    scfg.T = 1000;
    scfg.beta_start = 1e-4;
    scfg.beta_end = 0.02;
    dm_schedule s;
    CHECK(dm_schedule_init(&s, &scfg, &err) == DM_OK, "%s", err.msg);
    int32_t levels[STEPS];
    for (int k = 0; k < STEPS; k++) levels[k] = (int32_t)ts[k];
    /* diffusers' linspace spacing: round(linspace(0, 999, 21))[::-1][:20], not dm_timesteps */
    CHECK(levels[0] == 999 && levels[1] == 949 && levels[10] == 500 && levels[19] == 50,
          "diffusers' timesteps read as %d, %d, .., %d, .., %d", (int)levels[0], (int)levels[1],
          (int)levels[10], (int)levels[19]);
    float *x = to_float(xT, SB * DIM);
    recorder rec = {calloc((size_t)(STEPS + 1) * SB * DIM, sizeof(float)), 0, {0}};
    dm_sample_options opt;
    dm_sample_options_default(&opt);
    opt.observe = record;
    opt.observe_ctx = &rec;
    unet_ctx c = {m, 0};
    CHECK(dm_sample_dpmpp2m_levels(&s, unet_denoise, &c, x, SB, DIM, levels, STEPS, &opt, &err) ==
              DM_OK,
          "%s", err.msg);
    CHECK(c.calls == STEPS && rec.seen == STEPS + 1, "%d unet calls, %d states", c.calls,
          rec.seen);
    /* Each state against diffusers', relative to the trajectory's largest value (~540: the
     * untrained unet drives x far out). Both run the unet in float32; diffusers also keeps its
     * alphas_cumprod and sigmas in float32 (about 1e-7 relative of the coefficients), the
     * library in double. 1e-5 of the largest value allows those roundings amplified over 20
     * steps (measured 8e-7 of it); a step taken at the wrong order moves the states by far
     * more. */
    const double scale = max_abs(traj, (STEPS + 1) * SB * DIM), tol = 1e-5 * scale;
    double worst = 0;
    int worst_k = 0;
    for (int k = 0; k <= STEPS && k < rec.seen; k++) {
        const double d = max_diff(rec.traj + (size_t)k * SB * DIM, traj + (size_t)k * SB * DIM,
                                  SB * DIM);
        if (d > worst) worst = d, worst_k = k;
        if (getenv("DM_TEST_VERBOSE"))
            printf("  state %2d (level %4d): max difference %.3g\n", k, (int)rec.idx[k], d);
    }
    printf("  dpmpp-2m, 20 steps: largest value %.4g, max difference from diffusers %.3g at "
           "state %d (allowed %.3g)\n", scale, worst, worst_k, tol);
    CHECK(worst <= tol, "dpmpp-2m trajectory: state %d is %.3g from diffusers' (allowed %.3g = "
          "1e-5 of the largest value %.4g)", worst_k, worst, tol, scale);
    const double fin = max_diff(x, traj + (size_t)STEPS * SB * DIM, SB * DIM);
    CHECK(fin <= tol, "dpmpp-2m output: %.3g from diffusers' x_0 (allowed %.3g)", fin, tol);
    free(rec.traj), free(x), free(ts), free(xT), free(traj);
    dm_schedule_free(&s);
    dm_model_free(m);
}

int main(void) {
    omp_set_num_threads(2);
    test_unet_flags();
    test_dpmpp_2m();
    return tu_finish("test_diffusers_samplers");
}
