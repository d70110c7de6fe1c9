/* The UNet against diffusers' own UNet2DModel (tests/fixtures/diffusers-unet-tiny): outputs,
 * input gradient and every parameter gradient; directional finite differences on the paths the
 * fixtures do not cover; configs, presets, sizes and diffusers folders. */
#include "diffusion/checkpoint.h"
#include "io/npy.h"
#include "io/safetensors.h"
#include "models/model.h"
#include "models/unet.h"
#include "test_util.h"

#include <omp.h>

#define FIXTURES DM_SOURCE_DIR "/tests/fixtures/diffusers-unet-tiny"

static int fixtures_present(void) {
    return access(FIXTURES "/tiny_uncond/config.json", R_OK) == 0 &&
           access(FIXTURES "/tiny_class/config.json", R_OK) == 0;
}

/* Reads a float64 (or float32) NPY of n values as doubles. */
static double *read_npy_f64(const char *dir, const char *file, int64_t n) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    dm_npy a;
    dm_error err = {0};
    if (dm_npy_read(&a, path, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
    if (dm_npy_numel(&a) != n) {
        fprintf(stderr, "%s: %lld values, expected %lld\n", path, (long long)dm_npy_numel(&a),
                (long long)n);
        exit(1);
    }
    double *out = malloc((size_t)n * sizeof *out);
    for (int64_t i = 0; i < n; i++) {
        switch (a.dtype) {
        case DM_DTYPE_F64: out[i] = ((const double *)a.data)[i]; break;
        case DM_DTYPE_F32: out[i] = ((const float *)a.data)[i]; break;
        case DM_DTYPE_I64: out[i] = (double)((const int64_t *)a.data)[i]; break;
        default: fprintf(stderr, "%s: unexpected dtype\n", path); exit(1);
        }
    }
    dm_npy_free(&a);
    return out;
}

static float *to_float(const double *x, int64_t n) {
    float *out = malloc((size_t)n * sizeof *out);
    for (int64_t i = 0; i < n; i++) out[i] = (float)x[i];
    return out;
}

/* Tolerance for comparing with a float64 reference: 1e-4 relative to each value, plus an
 * absolute floor of 1e-4 times the array's largest magnitude for values near zero. */
static double abs_floor(const double *want, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) m = fmax(m, fabs(want[i]));
    return 1e-4 * m;
}

static void check_fixture(const char *name, int class_cond) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/%s", FIXTURES, name);
    dm_error err = {0};
    dm_model *m = NULL;
    dm_unet_config cfg;
    CHECK(dm_unet_load_diffusers(&m, &cfg, dir, &err) == DM_OK, "%s: %s", name, err.msg);
    if (!m) return;
    CHECK(cfg.num_class_embeds == (class_cond ? 3 : 0), "%s: num_class_embeds", name);
    CHECK(dm_model_num_params(m) == (class_cond ? 45065u : 44969u), "%s: %zu parameters", name,
          dm_model_num_params(m));
    const int64_t B = 2, dim = dm_model_dim(m), n = B * dim;
    CHECK(dim == 64, "%s: dim %lld", name, (long long)dim);

    double *x = read_npy_f64(dir, "x.npy", n);
    double *ts = read_npy_f64(dir, "timesteps.npy", B);
    double *want_out = read_npy_f64(dir, "out_f64.npy", n);
    double *G = read_npy_f64(dir, "G.npy", n);
    double *want_dx = read_npy_f64(dir, "grad_x_f64.npy", n);
    float *xf = to_float(x, n), *tf = to_float(ts, B), *Gf = to_float(G, n);
    int32_t labels[2] = {0, 0};
    if (class_cond) {
        double *lab = read_npy_f64(dir, "class_labels.npy", B);
        labels[0] = (int32_t)lab[0], labels[1] = (int32_t)lab[1];
        free(lab);
    }
    float *out = calloc((size_t)n, sizeof *out), *dx = calloc((size_t)n, sizeof *dx);
    CHECK(dm_model_forward_cond(m, out, xf, tf, class_cond ? labels : NULL, B, 1, &err) == DM_OK,
          "%s forward: %s", name, err.msg);
    char what[256];
    snprintf(what, sizeof what, "%s output", name);
    tu_check_array(what, out, want_out, (size_t)n, abs_floor(want_out, n), 1e-4);

    memset(dm_model_grads(m), 0, dm_model_num_params(m) * sizeof(float));
    dm_model_backward_input(m, Gf, dx, B);
    snprintf(what, sizeof what, "%s grad_x", name);
    tu_check_array(what, dx, want_dx, (size_t)n, abs_floor(want_dx, n), 1e-4);

    /* every parameter gradient, by name */
    char path[1024];
    snprintf(path, sizeof path, "%s/grads_f64.safetensors", dir);
    dm_safetensors *sf = NULL;
    CHECK(dm_safetensors_open(&sf, path, &err) == DM_OK, "%s", err.msg);
    if (sf) {
        CHECK(dm_safetensors_count(sf) == dm_model_tensor_count(m), "%s: %d gradient tensors",
              name, dm_safetensors_count(sf));
        int compared = 0;
        for (int i = 0; i < dm_model_tensor_count(m); i++) {
            const char *tname;
            int64_t shape[4];
            int ndim;
            size_t off;
            dm_model_tensor_info(m, i, &tname, shape, &ndim, &off);
            const dm_st_tensor *t = dm_safetensors_get(sf, tname);
            CHECK(t != NULL, "%s: no gradient for %s", name, tname);
            if (!t || t->dtype != DM_DTYPE_F64) continue;
            int64_t numel = 1;
            for (int d = 0; d < t->ndim; d++) numel *= t->shape[d];
            double *want = malloc((size_t)numel * sizeof *want);
            memcpy(want, t->data, (size_t)numel * sizeof *want);
            /* the to_k biases' gradients are zero in exact arithmetic: absolute tolerance only */
            const bool exact_zero = strstr(tname, "to_k.bias") != NULL;
            snprintf(what, sizeof what, "%s grad %s", name, tname);
            tu_check_array(what, dm_model_grads(m) + off, want, (size_t)numel,
                           exact_zero ? 1e-6 : abs_floor(want, numel), exact_zero ? 0 : 1e-4);
            compared++;
            free(want);
        }
        CHECK(compared == dm_model_tensor_count(m), "%s: compared %d tensors", name, compared);
        dm_safetensors_close(sf);
    }

    /* the same forward at inference (no saved attention probabilities) */
    float *out2 = calloc((size_t)n, sizeof *out2);
    CHECK(dm_model_forward_cond(m, out2, xf, tf, class_cond ? labels : NULL, B, 0, &err) == DM_OK,
          "%s", err.msg);
    CHECK(memcmp(out, out2, (size_t)n * sizeof *out) == 0, "%s: inference forward differs", name);
    if (class_cond)
        CHECK(dm_model_forward(m, out2, xf, tf, B, 0, &err) == DM_ERR_ARG,
              "%s: a class model without labels must be refused", name);
    free(out2);
    free(x), free(ts), free(want_out), free(G), free(want_dx), free(xf), free(tf), free(Gf);
    free(out), free(dx);
    dm_model_free(m);
}

/* L(theta, x) = sum(out * G). Checks <grad, v> against (L(theta + h v) - L(theta - h v)) / 2h
 * for a random direction v over the parameters, and the same for the input. */
static void directional_check(const char *what, const dm_unet_config *cfg) {
    dm_error err = {0};
    dm_model *m = NULL;
    CHECK(dm_unet_create(&m, cfg, 7, &err) == DM_OK, "%s: %s", what, err.msg);
    if (!m) return;
    /* n inputs, no outputs (a classifier's logits are fewer than its inputs) */
    const int64_t B = 2, dim = dm_model_dim(m), n = B * dim, no = B * dm_model_out_dim(m);
    const size_t P = dm_model_num_params(m);
    float *x = malloc((size_t)n * sizeof *x), *G = malloc((size_t)no * sizeof *G);
    float *out = malloc((size_t)no * sizeof *out), *dx = calloc((size_t)n, sizeof *dx);
    float *vp = malloc(P * sizeof *vp), *vx = malloc((size_t)n * sizeof *vx);
    float *theta = malloc(P * sizeof *theta), *xp = malloc((size_t)n * sizeof *xp);
    dm_rng rng;
    dm_rng_init(&rng, 11, 0);
    dm_rng_normal(&rng, x, (size_t)n);
    dm_rng_normal(&rng, G, (size_t)no);
    dm_rng_normal(&rng, vp, P);
    dm_rng_normal(&rng, vx, (size_t)n);
    /* Fourier features turn x into sin(2^7 2 pi x): a step must stay far below a period, and
     * x small enough that float resolves such a step */
    if (cfg->fourier_features)
        for (int64_t i = 0; i < n; i++) x[i] *= 0.05f;
    /* unit-length directions, so that the step h stays in the linear regime */
    double nv = 0, nx = 0;
    for (size_t i = 0; i < P; i++) nv += (double)vp[i] * vp[i];
    for (int64_t i = 0; i < n; i++) nx += (double)vx[i] * vx[i];
    for (size_t i = 0; i < P; i++) vp[i] = (float)(vp[i] / sqrt(nv));
    for (int64_t i = 0; i < n; i++) vx[i] = (float)(vx[i] / sqrt(nx));
    /* GroupNorm weights of 1 and biases of 0 leave paths untested: perturb every parameter */
    float *p = dm_model_params(m);
    for (size_t i = 0; i < P; i++) p[i] += 0.1f * sqrtf((float)P) * vp[(i * 7919) % P];
    memcpy(theta, p, P * sizeof *theta);
    const float t[2] = {5, 600};
    int32_t labels[2] = {1, 0};
    const int32_t *lab = cfg->num_class_embeds ? labels : NULL;

    CHECK(dm_model_forward_cond(m, out, x, t, lab, B, 1, &err) == DM_OK, "%s", err.msg);
    memset(dm_model_grads(m), 0, P * sizeof(float));
    dm_model_backward_input(m, G, dx, B);
    double gv = 0, gx = 0;
    for (size_t i = 0; i < P; i++) gv += (double)dm_model_grads(m)[i] * vp[i];
    for (int64_t i = 0; i < n; i++) gx += (double)dx[i] * vx[i];

    const double h = 1e-2, hx = cfg->fourier_features ? 1e-4 : h;
    double L[2], Lx[2];
    for (int s = 0; s < 2; s++) {
        const double sign = s ? -1 : 1;
        for (size_t i = 0; i < P; i++) p[i] = theta[i] + (float)(sign * h) * vp[i];
        dm_model_forward_cond(m, out, x, t, lab, B, 0, &err);
        L[s] = 0;
        for (int64_t i = 0; i < no; i++) L[s] += (double)out[i] * G[i];
        memcpy(p, theta, P * sizeof *p);
        for (int64_t i = 0; i < n; i++) xp[i] = x[i] + (float)(sign * hx) * vx[i];
        dm_model_forward_cond(m, out, xp, t, lab, B, 0, &err);
        Lx[s] = 0;
        for (int64_t i = 0; i < no; i++) Lx[s] += (double)out[i] * G[i];
    }
    const double fd = (L[0] - L[1]) / (2 * h), fdx = (Lx[0] - Lx[1]) / (2 * hx);
    char label[256];
    snprintf(label, sizeof label, "%s: parameter directional derivative", what);
    CHECK_CLOSE(gv, fd, 1e-3 * fabs(fd) + 1e-3, 2e-3, label);
    snprintf(label, sizeof label, "%s: input directional derivative", what);
    CHECK_CLOSE(gx, fdx, 1e-3 * fabs(fdx) + 1e-3, 2e-3, label);
    free(x), free(G), free(out), free(dx), free(vp), free(vx), free(theta), free(xp);
    dm_model_free(m);
}

static void test_directional(void) {
    dm_unet_config c;
    dm_error err = {0};
    dm_unet_preset(&c, "tiny", &err);
    directional_check("tiny", &c);
    /* the paths the fixtures leave out: Ho's asymmetric downsample padding, one attention head,
     * the other time-embedding convention, input centring, three levels, a class embedding */
    c.downsample_padding = 0;
    c.attention_head_dim = 0;
    c.flip_sin_to_cos = 0;
    c.freq_shift = 1;
    c.center_input_sample = 1;
    c.levels = 3;
    c.block_out_channels[2] = 16;
    c.down_attention[2] = 0, c.up_attention[2] = 1;
    c.num_class_embeds = 2;
    c.attn_norm_num_groups = 2;
    directional_check("variant", &c);
    /* VDM's Fourier-feature input (our FourierUNet2DModel): its input gradient */
    dm_unet_preset(&c, "tiny", &err);
    c.fourier_features = 1;
    directional_check("tiny with Fourier features", &c);
    c.center_input_sample = 1;
    directional_check("tiny with Fourier features, centred input", &c);
    /* the encoder classifier: down path, mid block, pooled head */
    dm_unet_preset(&c, "classifier-tiny", &err);
    directional_check("classifier-tiny", &c);
    c.downsample_padding = 0;
    c.levels = 3;
    c.block_out_channels[2] = 16;
    c.add_attention = 0;
    directional_check("classifier variant", &c);
}

/* Inference lays out its activations differently (the blocks' inner activations share scratch
 * buffers): a fresh model's inference output must equal the training forward's, bit for bit. */
static void inference_matches_training(const char *what, const dm_unet_config *cfg) {
    dm_error err = {0};
    dm_model *mi = NULL, *mt = NULL;
    CHECK(dm_unet_create(&mi, cfg, 9, &err) == DM_OK && dm_unet_create(&mt, cfg, 9, &err) == DM_OK,
          "%s: %s", what, err.msg);
    if (!mi || !mt) {
        dm_model_free(mi), dm_model_free(mt);
        return;
    }
    const int64_t B = 3, n = B * dm_model_dim(mi), no = B * dm_model_out_dim(mi);
    float *x = malloc((size_t)n * sizeof *x), *oi = malloc((size_t)no * sizeof *oi);
    float *ot = malloc((size_t)no * sizeof *ot);
    dm_rng rng;
    dm_rng_init(&rng, 4, 0);
    dm_rng_normal(&rng, x, (size_t)n);
    const float t[3] = {3, 400, 999};
    const int32_t labels[3] = {1, 0, 1};
    const int32_t *lab = cfg->num_class_embeds ? labels : NULL;
    CHECK(dm_model_forward_cond(mi, oi, x, t, lab, B, 0, &err) == DM_OK, "%s", err.msg);
    CHECK(dm_model_forward_cond(mt, ot, x, t, lab, B, 1, &err) == DM_OK, "%s", err.msg);
    CHECK(memcmp(oi, ot, (size_t)no * sizeof *oi) == 0, "%s: inference equals training forward",
          what);
    free(x), free(oi), free(ot);
    dm_model_free(mi), dm_model_free(mt);
}

static void test_inference_layout(void) {
    dm_unet_config c;
    dm_error err = {0};
    dm_unet_preset(&c, "tiny", &err);
    inference_matches_training("tiny", &c);
    c.downsample_padding = 0, c.attention_head_dim = 0, c.levels = 3;
    c.block_out_channels[2] = 16, c.down_attention[2] = 0, c.up_attention[2] = 1;
    c.num_class_embeds = 2;
    inference_matches_training("variant", &c);
    dm_unet_preset(&c, "classifier-tiny", &err);
    inference_matches_training("classifier-tiny", &c);
    dm_unet_preset(&c, "unet-28", &err);
    inference_matches_training("unet-28", &c);
}

/* The classifier's head against a naive recomputation from its pooled features, and its
 * features against the mean over pixels of the last block's normalised activations. */
static void test_classifier_head(void) {
    dm_error err = {0};
    dm_unet_config c;
    dm_unet_preset(&c, "classifier-tiny", &err);
    dm_model *m = NULL;
    CHECK(dm_unet_create(&m, &c, 3, &err) == DM_OK, "%s", err.msg);
    if (!m) return;
    CHECK(dm_model_out_dim(m) == 4 && dm_model_dim(m) == 64, "classifier-tiny: 64 in, 4 out");
    const int64_t B = 3;
    float x[3 * 64], t[3] = {0, 10, 999}, logits[3 * 4];
    dm_rng rng;
    dm_rng_init(&rng, 5, 0);
    dm_rng_normal(&rng, x, sizeof x / sizeof x[0]);
    CHECK(dm_model_forward(m, logits, x, t, B, 0, &err) == DM_OK, "%s", err.msg);
    int64_t fd = 0;
    const float *feat = dm_unet_classifier_features(m, &fd);
    CHECK(feat && fd == 16, "16 pooled features (got %lld)", (long long)fd);
    int wi = dm_model_find_tensor(m, "classifier.linear.weight");
    int bi = dm_model_find_tensor(m, "classifier.linear.bias");
    CHECK(wi >= 0 && bi >= 0, "the head's tensors are named classifier.linear.*");
    if (feat && wi >= 0 && bi >= 0) {
        const float *W = dm_model_params(m) + m->tensors[wi].offset;
        const float *bias = dm_model_params(m) + m->tensors[bi].offset;
        double worst = 0;
        for (int64_t b = 0; b < B; b++)
            for (int k = 0; k < 4; k++) {
                double z = bias[k];
                for (int64_t j = 0; j < 16; j++) z += (double)W[k * 16 + j] * feat[b * 16 + j];
                worst = fmax(worst, fabs(z - logits[b * 4 + k]));
            }
        CHECK(worst < 1e-5, "logits = W features + b (worst %g)", worst);
    }
    dm_model_free(m);
    dm_unet_preset(&c, "classifier-28", &err);
    CHECK(dm_unet_create(&m, &c, 0, &err) == DM_OK, "%s", err.msg);
    if (m) {
        CHECK(dm_model_out_dim(m) == 10 && dm_model_dim(m) == 784, "classifier-28: 784 -> 10");
        CHECK(dm_model_num_params(m) == 1094858u, "classifier-28 has %zu parameters (the docs "
              "say 1,094,858)", dm_model_num_params(m));
        dm_model_free(m);
    }
}

static void test_presets_and_sizes(void) {
    dm_error err = {0};
    dm_unet_config c;
    dm_model *m = NULL;
    CHECK(dm_unet_preset(&c, "unet-28", &err) == DM_OK, "%s", err.msg);
    CHECK(dm_unet_create(&m, &c, 0, &err) == DM_OK, "%s", err.msg);
    if (m) {
        /* the PyTorch reference fmnist model: 1,623,169 parameters, 624,580,864 forward FLOPs */
        CHECK(dm_model_num_params(m) == 1623169u, "unet-28 has %zu parameters",
              dm_model_num_params(m));
        CHECK(dm_model_dim(m) == 784, "unet-28 dim %lld", (long long)dm_model_dim(m));
        dm_model_free(m);
    }
    CHECK_CLOSE(2 * dm_unet_macs_per_example(&c), 624580864.0, 0, 1e-9, "unet-28 forward FLOPs");
    CHECK(dm_unet_preset(&c, "cifar-ddpm", &err) == DM_OK, "%s", err.msg);
    CHECK(dm_unet_create(&m, &c, 0, &err) == DM_OK, "%s", err.msg);
    if (m) {
        CHECK(dm_model_num_params(m) == 35746307u, "cifar-ddpm has %zu parameters",
              dm_model_num_params(m));
        CHECK(dm_model_tensor_count(m) == 328, "cifar-ddpm has %d tensors",
              dm_model_tensor_count(m));
        dm_model_free(m);
    }
    CHECK(dm_unet_preset(&c, "unet-99", &err) == DM_ERR_ARG && strstr(err.msg, "unet-99"),
          "unknown preset: %s", err.msg);

    /* configs that cannot work are refused with the field named */
    dm_unet_config_default(&c);
    c.block_out_channels[1] = 36;
    CHECK(dm_unet_config_validate(&c, &err) == DM_ERR_ARG && strstr(err.msg, "norm_num_groups"),
          "36 channels in 8 groups: %s", err.msg);
    dm_unet_config_default(&c);
    c.sample_size = 30;
    CHECK(dm_unet_config_validate(&c, &err) == DM_ERR_ARG && strstr(err.msg, "sample_size"),
          "30 does not halve twice: %s", err.msg);
    dm_unet_config_default(&c);
    c.attention_head_dim = 12;
    CHECK(dm_unet_config_validate(&c, &err) == DM_ERR_ARG &&
              strstr(err.msg, "attention_head_dim"),
          "head dim 12 of 64 channels: %s", err.msg);
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

static void test_config_files(void) {
    dm_error err = {0};
    if (tu_tmpdir_make("unet")) exit(1);
    char path[512];
    snprintf(path, sizeof path, "%s", tu_tmp_path("config.json"));

    /* write then read gives the same config, for every preset */
    for (int i = 0; dm_unet_preset_names[i]; i++) {
        dm_unet_config a, b;
        dm_unet_preset(&a, dm_unet_preset_names[i], &err);
        a.num_class_embeds = i; /* and null vs a number */
        CHECK(dm_unet_config_write(&a, path, &err) == DM_OK, "%s", err.msg);
        CHECK(dm_unet_config_read(&b, path, &err) == DM_OK, "%s", err.msg);
        CHECK(memcmp(&a, &b, sizeof a) == 0, "%s: config differs after a round trip",
              dm_unet_preset_names[i]);
    }
    /* unsupported values and bad types name the key */
    write_text(path, "{\"sample_size\": 8, \"block_out_channels\": [8, 16], \"norm_num_groups\": "
                     "4, \"time_embedding_type\": \"fourier\"}");
    dm_unet_config c;
    CHECK(dm_unet_config_read(&c, path, &err) == DM_ERR_FORMAT &&
              strstr(err.msg, "time_embedding_type"),
          "fourier: %s", err.msg);
    write_text(path, "{\"sample_size\": 8, \"block_out_channels\": [8, 16], \"norm_num_groups\": "
                     "3, \"down_block_types\": [\"DownBlock2D\", \"DownBlock2D\"], "
                     "\"up_block_types\": [\"UpBlock2D\", \"UpBlock2D\"]}");
    CHECK(dm_unet_config_read(&c, path, &err) == DM_ERR_ARG && strstr(err.msg, "config.json") &&
              strstr(err.msg, "norm_num_groups"),
          "groups: %s", err.msg);
    write_text(path, "{\"sample_size\": 8, \"block_out_channels\": [8, 16], "
                     "\"down_block_types\": [\"CrossAttnDownBlock2D\", \"DownBlock2D\"]}");
    CHECK(dm_unet_config_read(&c, path, &err) == DM_ERR_FORMAT &&
              strstr(err.msg, "CrossAttnDownBlock2D") && strstr(err.msg, "down_block_types"),
          "block type: %s", err.msg);
    write_text(path, "{\"sample_size\": \"big\"}");
    CHECK(dm_unet_config_read(&c, path, &err) == DM_ERR_FORMAT && strstr(err.msg, "sample_size"),
          "sample_size: %s", err.msg);
    write_text(path, "not json");
    CHECK(dm_unet_config_read(&c, path, &err) == DM_ERR_FORMAT, "not json: %s", err.msg);

    /* a diffusers folder round trip, and weights that do not match their config */
    dm_unet_config tiny;
    dm_unet_preset(&tiny, "tiny", &err);
    dm_model *m = NULL, *m2 = NULL;
    dm_unet_create(&m, &tiny, 3, &err);
    char folder[512];
    snprintf(folder, sizeof folder, "%s", tu_tmp_path("model"));
    CHECK(dm_unet_save_diffusers(m, NULL, folder, &err) == DM_OK, "%s", err.msg);
    CHECK(dm_unet_load_diffusers(&m2, NULL, folder, &err) == DM_OK, "%s", err.msg);
    if (m && m2)
        CHECK(memcmp(dm_model_params(m), dm_model_params(m2),
                     dm_model_num_params(m) * sizeof(float)) == 0,
              "weights differ after a diffusers round trip");
    dm_model_free(m2);
    m2 = NULL;
    /* the config now says 3 levels: the same weights file no longer fits */
    tiny.levels = 3;
    tiny.block_out_channels[2] = 16;
    char cfg_path[1100];
    snprintf(cfg_path, sizeof cfg_path, "%s/config.json", folder);
    dm_unet_config_write(&tiny, cfg_path, &err);
    CHECK(dm_unet_load_diffusers(&m2, NULL, folder, &err) == DM_ERR_MISMATCH &&
              strstr(err.msg, "diffusion_pytorch_model.safetensors"),
          "mismatched weights: %s", err.msg);
    dm_model_free(m);
    dm_model_free(m2);
    remove(cfg_path);
    snprintf(cfg_path, sizeof cfg_path, "%s/diffusion_pytorch_model.safetensors", folder);
    remove(cfg_path);
    CHECK(tu_tmpdir_remove() == 0, "scratch folder left behind");
}

/* The Fourier-feature input against a plain 5-channel UNet (out_channels 5) with the same
 * weights, fed features computed here from VDM's Base2FourierFeatures(start=6, stop=8)
 * (vdm/model_vdm.py: repeat each channel per frequency, tile w = 2^n 2 pi, concatenate
 * [z, sin, cos]); its first output channel is the Fourier model's output. */
static void test_fourier_features(void) {
    dm_unet_config cf, cp;
    dm_error err = {0};
    dm_unet_preset(&cf, "tiny", &err);
    cf.in_channels = cf.out_channels = 1;
    cf.fourier_features = 1;
    cp = cf;
    cp.fourier_features = 0;
    cp.in_channels = cp.out_channels = 5;
    dm_model *mf = NULL, *mp = NULL;
    CHECK(dm_unet_create(&mf, &cf, 3, &err) == DM_OK, "%s", err.msg);
    CHECK(dm_unet_create(&mp, &cp, 4, &err) == DM_OK, "%s", err.msg);
    if (!mf || !mp) return;
    CHECK(dm_model_num_params(mp) > dm_model_num_params(mf), "conv_out differs");
    float *pf = dm_model_params(mf), *pp = dm_model_params(mp);
    memset(pp, 0, dm_model_num_params(mp) * sizeof *pp);
    int copied = 0;
    for (int i = 0; i < dm_model_tensor_count(mf); i++) {
        const char *name;
        int64_t shf[4], shp[4];
        int ndf, ndp;
        size_t of, op;
        dm_model_tensor_info(mf, i, &name, shf, &ndf, &of);
        for (int k = 0; k < dm_model_tensor_count(mp); k++) {
            const char *pname;
            dm_model_tensor_info(mp, k, &pname, shp, &ndp, &op);
            if (strcmp(name, pname) != 0) continue;
            int64_t nf = 1;
            for (int d = 0; d < ndf; d++) nf *= shf[d];
            /* conv_out: the Fourier model's one output channel is the plain one's first */
            memcpy(pp + op, pf + of, (size_t)nf * sizeof *pp);
            copied++;
        }
    }
    CHECK(copied == dm_model_tensor_count(mf), "%d of %d tensors matched by name", copied,
          dm_model_tensor_count(mf));
    enum { B = 2, HW = 64, F = 2 };
    float x[B * HW], feat[B * 5 * HW], outf[B * HW], outp[B * 5 * HW];
    dm_rng rng;
    dm_rng_init(&rng, 8, 0);
    dm_rng_uniform(&rng, x, B * HW);
    for (int i = 0; i < B * HW; i++) x[i] = 2 * x[i] - 1;
    for (int b = 0; b < B; b++) {
        float *h = feat + b * 5 * HW;
        memcpy(h, x + b * HW, HW * sizeof *h);
        for (int j = 0; j < F; j++) {
            const double w = pow(2.0, 6 + j) * 2 * M_PI;
            for (int k = 0; k < HW; k++) {
                h[(1 + j) * HW + k] = (float)sin(w * (double)x[b * HW + k]);
                h[(1 + F + j) * HW + k] = (float)cos(w * (double)x[b * HW + k]);
            }
        }
    }
    const float t[B] = {3, 700};
    CHECK(dm_model_forward(mf, outf, x, t, B, 0, &err) == DM_OK, "%s", err.msg);
    CHECK(dm_model_forward(mp, outp, feat, t, B, 0, &err) == DM_OK, "%s", err.msg);
    double worst = 0, scale = 0;
    for (int b = 0; b < B; b++)
        for (int k = 0; k < HW; k++) {
            worst = fmax(worst, fabs(outf[b * HW + k] - outp[b * 5 * HW + k]));
            scale = fmax(scale, fabs(outp[b * 5 * HW + k]));
        }
    CHECK(scale > 1e-3 && worst <= 1e-5 * scale, "Fourier UNet against features made here: "
          "%.3g off (outputs up to %.3g)", worst, scale);
    printf("  Fourier features against a plain 5-channel UNet: %.3g off (outputs up to %.3g)\n",
           worst, scale);
    /* the config file names our variant, and reads back */
    const char *path = "test_unet_fourier_config.json";
    CHECK(dm_unet_config_write(&cf, path, &err) == DM_OK, "%s", err.msg);
    dm_unet_config back;
    CHECK(dm_unet_config_read(&back, path, &err) == DM_OK && back.fourier_features == 1,
          "FourierUNet2DModel reads back with its features: %s", err.msg);
    FILE *f = fopen(path, "r");
    char text[8192] = {0};
    if (f) {
        CHECK(fread(text, 1, sizeof text - 1, f) > 0, "read %s", path);
        fclose(f);
    }
    CHECK(strstr(text, "\"FourierUNet2DModel\"") != NULL, "the class is ours: %s", text);
    remove(path);
    dm_model_free(mf);
    dm_model_free(mp);
}

int main(void) {
    /* the diffusers comparison is the UNet's only outside reference: a missing fixture fails */
    CHECK(fixtures_present(),
          "reference fixture missing: %s/{tiny_uncond,tiny_class} (tests/fixtures/ is part of "
          "the repository; restore it with git checkout -- tests/fixtures)",
          FIXTURES);
    check_fixture("tiny_uncond", 0);
    check_fixture("tiny_class", 1);
    test_directional();
    test_fourier_features();
    test_classifier_head();
    test_inference_layout();
    test_presets_and_sizes();
    test_config_files();
    return tu_finish("test_unet");
}
