/* diffusers' UNet2DModel config.json (diffusers 0.31.0) as dm_unet_config_read reads it: every
 * key honoured as diffusers honours it or refused naming the key, its value and the file
 * (docs/unet-config.md). Each case is tests/fixtures/diffusers-pipelines/weights-f32/config.json
 * (written by diffusers 0.31.0) with one or two values changed:
 * - refused values (other activations, time embeddings, class embedding types, scale_shift,
 *   resnet resamplers where diffusers would use them, mid_block_scale_factor != 1, keys
 *   UNet2DModel does not take, ...) name the key, the value and config.json;
 * - aliases and defaults ("swish" and any case of "silu", the "UNetRes" block prefix, null
 *   resample types, a key left out for its diffusers default, "_" metadata,
 *   _use_default_values) read as the same config as the canonical file;
 * - attn_norm_num_groups reaches the mid block's attention only, as in diffusers: given as
 *   norm_num_groups the output is diffusers' own (weights-reference), another value changes it,
 *   and the mid attention's output equals a hand computation of diffusers' Attention with a
 *   GroupNorm of attn_norm_num_groups groups, while the down block's attention keeps
 *   norm_num_groups. */
#include "fixture_npy.h"
#include "models/model.h"
#include "models/unet.h"

#include <cJSON.h>

#define PIPES DM_SOURCE_DIR "/tests/fixtures/diffusers-pipelines"
#define BASE PIPES "/weights-f32"

typedef struct {
    const char *key;
    const char *value; /* JSON text; NULL removes the key; a key the file lacks is added */
} edit;

static char *read_text(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "FAIL fixture missing: %s\n", path);
        exit(1);
    }
    fseek(f, 0, SEEK_END);
    const long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    const size_t got = fread(s, 1, (size_t)n, f);
    fclose(f);
    s[got] = 0;
    return s;
}

static void copy_file(const char *from, const char *to) {
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    if (!in || !out) {
        fprintf(stderr, "FAIL cannot copy %s to %s\n", from, to);
        exit(1);
    }
    char buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0) fwrite(buf, 1, n, out);
    fclose(in);
    if (fclose(out)) exit(1);
}

/* The weights-f32 config with the edits applied (up to 3, key NULL ends), written to the scratch
 * folder's config.json; returns its path. */
static const char *write_config(const edit *edits) {
    char *text = read_text(BASE "/config.json");
    cJSON *root = cJSON_Parse(text);
    free(text);
    if (!root) exit(1);
    for (int i = 0; i < 3 && edits[i].key; i++) {
        cJSON_DeleteItemFromObjectCaseSensitive(root, edits[i].key);
        if (!edits[i].value) continue;
        cJSON *v = cJSON_Parse(edits[i].value);
        if (!v) v = cJSON_CreateRaw(edits[i].value); /* Python's Infinity */
        cJSON_AddItemToObject(root, edits[i].key, v);
    }
    char *out = cJSON_Print(root);
    cJSON_Delete(root);
    const char *path = tu_tmp_path("config.json");
    FILE *f = fopen(path, "w");
    fputs(out, f);
    fclose(f);
    free(out);
    return path;
}

static void config_text(char *buf, size_t n, const edit *edits) {
    size_t len = 0;
    buf[0] = 0;
    for (int i = 0; i < 3 && edits[i].key && len < n; i++)
        len += (size_t)snprintf(buf + len, n - len, "%s%s = %s", i ? ", " : "", edits[i].key,
                                edits[i].value ? edits[i].value : "(removed)");
}

/* ---------------------------------------------------------------------------------------- */
/* refused                                                                                   */

typedef struct {
    edit edits[3];
    const char *key, *value; /* what the message must name (besides config.json) */
} refusal;

static void test_refusals(void) {
    static const refusal cases[] = {
        /* values diffusers implements and we do not */
        {{{"act_fn", "\"gelu\""}}, "act_fn", "\"gelu\""},
        {{{"act_fn", "\"mish\""}}, "act_fn", "\"mish\""},
        {{{"act_fn", "\"relu\""}}, "act_fn", "\"relu\""},
        {{{"time_embedding_type", "\"fourier\""}}, "time_embedding_type", "\"fourier\""},
        {{{"time_embedding_type", "\"learned\""}, {"num_train_timesteps", "1000"}},
         "time_embedding_type",
         "\"learned\""},
        {{{"class_embed_type", "\"timestep\""}}, "class_embed_type", "\"timestep\""},
        {{{"class_embed_type", "\"identity\""}}, "class_embed_type", "\"identity\""},
        {{{"resnet_time_scale_shift", "\"scale_shift\""}},
         "resnet_time_scale_shift",
         "\"scale_shift\""},
        {{{"mid_block_scale_factor", "2"}}, "mid_block_scale_factor", "2"},
        {{{"mid_block_scale_factor", "1.4142"}}, "mid_block_scale_factor", "1.4142"},
        /* up_blocks.0 is an AttnUpBlock2D that upsamples: diffusers would use a ResnetBlock2D */
        {{{"upsample_type", "\"resnet\""}}, "upsample_type", "up_blocks.0"},
        {{{"downsample_type", "\"resnet\""},
          {"down_block_types", "[\"AttnDownBlock2D\", \"DownBlock2D\"]"}},
         "downsample_type",
         "down_blocks.0"},
        {{{"mid_block_type", "null"}}, "mid_block_type", "null"},
        {{{"mid_block_type", "\"UNetMidBlock2DCrossAttn\""}},
         "mid_block_type",
         "\"UNetMidBlock2DCrossAttn\""},
        {{{"down_block_types", "[\"DownBlock2D\", \"CrossAttnDownBlock2D\"]"}},
         "down_block_types[1]",
         "\"CrossAttnDownBlock2D\""},
        {{{"up_block_types", "[\"AttnSkipUpBlock2D\", \"UpBlock2D\"]"}},
         "up_block_types[0]",
         "\"AttnSkipUpBlock2D\""},
        {{{"sample_size", "[8, 16]"}}, "sample_size", "[8, 16]"},
        {{{"sample_size", "null"}}, "sample_size", "null"},
        {{{"_class_name", "\"UNet2DConditionModel\""}}, "_class_name", "\"UNet2DConditionModel\""},
        /* values diffusers refuses too (or builds a model that cannot run) */
        {{{"resnet_time_scale_shift", "\"spatial\""}}, "resnet_time_scale_shift", "\"spatial\""},
        {{{"act_fn", "\"tanh\""}}, "act_fn", "\"tanh\""},
        {{{"downsample_type", "\"pool\""}}, "downsample_type", "\"pool\""},
        {{{"num_class_embeds", "0"}}, "num_class_embeds", "0"},
        {{{"attn_norm_num_groups", "3"}}, "attn_norm_num_groups", "3"}, /* 16 channels */
        {{{"attn_norm_num_groups", "32"}}, "attn_norm_num_groups", "32"},
        {{{"attn_norm_num_groups", "0"}}, "attn_norm_num_groups", "0"},
        {{{"attention_head_dim", "3"}}, "attention_head_dim", "3"},
        {{{"norm_num_groups", "null"}}, "norm_num_groups", "null"},
        {{{"norm_eps", "0"}}, "norm_eps", "0"},
        {{{"dropout", "Infinity"}}, "dropout", "inf"},
        {{{"downsample_padding", "2"}}, "downsample_padding", "2"},
        {{{"layers_per_block", "0"}}, "layers_per_block", "0"},
        {{{"num_train_timesteps", "0"}}, "num_train_timesteps", "0"},
        {{{"num_train_timesteps", "\"1000\""}}, "num_train_timesteps", "\"1000\""},
        {{{"center_input_sample", "1"}}, "center_input_sample", "1"},
        {{{"flip_sin_to_cos", "\"yes\""}}, "flip_sin_to_cos", "\"yes\""},
        {{{"act_fn", "null"}}, "act_fn", "null"},
        {{{"_use_default_values", "\"attention_head_dim\""}},
         "_use_default_values",
         "\"attention_head_dim\""},
        /* keys UNet2DModel does not take: diffusers would ignore them */
        {{{"resnet_eps", "1e-6"}}, "resnet_eps", "diffusers"},
        {{{"cross_attention_dim", "768"}}, "cross_attention_dim", "diffusers"},
        {{{"quantization_config", "{\"load_in_8bit\": true}"}}, "quantization_config", "diffusers"},
        {{{"classifier_classes", "10"}}, "classifier_classes", "EncoderClassifier"},
        {{{"_class_name", "\"EncoderClassifier\""}}, "classifier_classes", "EncoderClassifier"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const refusal *r = &cases[i];
        const char *path = write_config(r->edits);
        char what[256];
        config_text(what, sizeof what, r->edits);
        dm_unet_config c;
        dm_error err = {0};
        const dm_status st = dm_unet_config_read(&c, path, &err);
        CHECK(st != DM_OK, "%s: accepted", what);
        CHECK(strstr(err.msg, r->key) && strstr(err.msg, r->value) &&
                  strstr(err.msg, "config.json"),
              "%s: the message names %s, %s and the file: %s", what, r->key, r->value, err.msg);
        CHECK(dm_unet_config_read(&c, path, NULL) != DM_OK, "%s: accepted without a dm_error",
              what);
    }
}

/* ---------------------------------------------------------------------------------------- */
/* aliases and defaults                                                                      */

static dm_unet_config read_ok(const char *what, const char *path) {
    dm_unet_config c;
    dm_error err = {0};
    memset(&c, 0, sizeof c);
    CHECK(dm_unet_config_read(&c, path, &err) == DM_OK, "%s: %s", what, err.msg);
    return c;
}

static void test_aliases(void) {
    const edit none[1] = {{NULL, NULL}};
    const dm_unet_config base = read_ok("weights-f32", write_config(none));
    CHECK(base.levels == 2 && base.block_out_channels[1] == 16 && base.norm_num_groups == 4 &&
              base.attention_head_dim == 4 && base.down_attention[1] && base.up_attention[0] &&
              !base.down_attention[0] && !base.up_attention[1] && base.attn_norm_num_groups == 0,
          "weights-f32 read as its config says");
    /* the same config written another way */
    static const edit same[][3] = {
        {{"act_fn", "\"swish\""}},
        {{"act_fn", "\"SiLU\""}},
        {{"act_fn", "\"Swish\""}},
        {{"down_block_types", "[\"UNetResDownBlock2D\", \"UNetResAttnDownBlock2D\"]"},
         {"up_block_types", "[\"UNetResAttnUpBlock2D\", \"UNetResUpBlock2D\"]"}},
        {{"downsample_type", "null"}},
        {{"upsample_type", "null"}},
        /* the only AttnDownBlock2D is the last block, which does not downsample */
        {{"downsample_type", "\"resnet\""}},
        {{"mid_block_type", "\"UNetMidBlock2D\""}},
        {{"mid_block_scale_factor", "1.0"}},
        {{"num_train_timesteps", "1000"}}, /* sizes only the "learned" time embedding */
        {{"sample_size", "[8, 8]"}},
        {{"_name_or_path", "\"some/where\""}, {"_commit_hash", "null"}},
        /* keys diffusers reads as absent: the default, 32, would not divide 8 and 16 channels */
        {{"_use_default_values", "[\"norm_eps\", \"dropout\"]"}, {"norm_eps", "0.5"},
         {"dropout", "0.5"}},
        /* keys left out take diffusers' defaults, which are weights-f32's values */
        {{"act_fn", NULL}, {"add_attention", NULL}, {"attn_norm_num_groups", NULL}},
        {{"center_input_sample", NULL}, {"class_embed_type", NULL}, {"downsample_padding", NULL}},
        {{"downsample_type", NULL}, {"dropout", NULL}, {"flip_sin_to_cos", NULL}},
        {{"freq_shift", NULL}, {"mid_block_scale_factor", NULL}, {"norm_eps", NULL}},
        {{"num_class_embeds", NULL}, {"num_train_timesteps", NULL}, {"_class_name", NULL}},
        {{"resnet_time_scale_shift", NULL}, {"time_embedding_type", NULL},
         {"upsample_type", NULL}},
    };
    for (size_t i = 0; i < sizeof same / sizeof same[0]; i++) {
        char what[256];
        config_text(what, sizeof what, same[i]);
        const dm_unet_config c = read_ok(what, write_config(same[i]));
        CHECK(memcmp(&c, &base, sizeof c) == 0, "%s: not read as the canonical config", what);
    }
    /* _use_default_values: attention_head_dim reads as diffusers' default 8 */
    const edit head[2] = {{"_use_default_values", "[\"attention_head_dim\"]"}};
    dm_unet_config c = read_ok("_use_default_values", write_config(head));
    CHECK(c.attention_head_dim == 8, "attention_head_dim listed in _use_default_values: %lld, "
          "diffusers' default is 8", (long long)c.attention_head_dim);
    c.attention_head_dim = base.attention_head_dim;
    CHECK(memcmp(&c, &base, sizeof c) == 0, "_use_default_values changed another field");

    /* four levels without block types: diffusers' default types (attention at levels 1..3 down,
     * 0..2 up), not plain blocks */
    const edit four[3] = {{"block_out_channels", "[8, 16, 16, 16]"},
                          {"down_block_types", NULL},
                          {"up_block_types", NULL}};
    c = read_ok("four levels, default block types", write_config(four));
    CHECK(c.levels == 4 && !c.down_attention[0] && c.down_attention[1] && c.down_attention[2] &&
              c.down_attention[3] && c.up_attention[0] && c.up_attention[1] &&
              c.up_attention[2] && !c.up_attention[3],
          "four levels without block types: diffusers' default types");

    /* honoured values other than the fixture's */
    const edit noattn[2] = {{"add_attention", "false"}};
    c = read_ok("add_attention false", write_config(noattn));
    CHECK(c.add_attention == 0, "add_attention false read");
    dm_model *m = NULL;
    dm_error err = {0};
    CHECK(dm_unet_create(&m, &c, 1, &err) == DM_OK, "%s", err.msg);
    if (m) {
        CHECK(dm_model_find_tensor(m, "mid_block.attentions.0.to_q.weight") < 0 &&
                  dm_model_find_tensor(m, "down_blocks.1.attentions.0.to_q.weight") >= 0,
              "add_attention false: no attention in the mid block only");
        dm_model_free(m);
    }
    const edit centre[2] = {{"center_input_sample", "true"}};
    CHECK(read_ok("center_input_sample", write_config(centre)).center_input_sample == 1,
          "center_input_sample true read");
    const edit enc[3] = {{"_class_name", "\"EncoderClassifier\""}, {"classifier_classes", "4"}};
    CHECK(read_ok("EncoderClassifier", write_config(enc)).classifier_classes == 4,
          "an EncoderClassifier's classifier_classes read");
    /* attn_norm_num_groups that does not divide: no matter where diffusers builds no attention */
    const edit unused[3] = {{"add_attention", "false"}, {"attn_norm_num_groups", "3"}};
    CHECK(read_ok("attn_norm_num_groups 3 without mid attention", write_config(unused))
                  .attn_norm_num_groups == 3,
          "attn_norm_num_groups 3 read");
}

/* ---------------------------------------------------------------------------------------- */
/* attn_norm_num_groups                                                                      */

static const float *tensor(const dm_model *m, const char *block, const char *leaf) {
    char name[DM_TENSOR_NAME_MAX];
    snprintf(name, sizeof name, "%s.%s", block, leaf);
    const int i = dm_model_find_tensor(m, name);
    if (i < 0) {
        fprintf(stderr, "FAIL no tensor %s\n", name);
        exit(1);
    }
    return m->params + m->tensors[i].offset;
}

/* diffusers' Attention as UNet2DModel builds it (_from_deprecated_attn_block, residual
 * connection, rescale 1, one head per d channels) on one example x (C, N), its GroupNorm of G
 * groups with eps; into y (C, N), in double. */
static void attention_by_hand(double *y, const float *x, const dm_model *m, const char *block,
                              int64_t C, int64_t N, int64_t G, int64_t d, double eps) {
    const float *gw = tensor(m, block, "group_norm.weight"), *gb = tensor(m, block, "group_norm.bias");
    const float *W[4], *bias[4];
    static const char *const proj[4] = {"to_q", "to_k", "to_v", "to_out.0"};
    for (int k = 0; k < 4; k++) {
        char leaf[32];
        snprintf(leaf, sizeof leaf, "%s.weight", proj[k]);
        W[k] = tensor(m, block, leaf);
        snprintf(leaf, sizeof leaf, "%s.bias", proj[k]);
        bias[k] = tensor(m, block, leaf);
    }
    double *h = malloc((size_t)(C * N) * sizeof *h); /* normalised, (N, C) tokens */
    double *q = malloc((size_t)(C * N) * sizeof *q), *k = malloc((size_t)(C * N) * sizeof *k);
    double *v = malloc((size_t)(C * N) * sizeof *v), *o = malloc((size_t)(C * N) * sizeof *o);
    const int64_t cg = C / G;
    for (int64_t g = 0; g < G; g++) {
        double mean = 0, var = 0;
        for (int64_t c = g * cg; c < (g + 1) * cg; c++)
            for (int64_t n = 0; n < N; n++) mean += x[c * N + n];
        mean /= (double)(cg * N);
        for (int64_t c = g * cg; c < (g + 1) * cg; c++)
            for (int64_t n = 0; n < N; n++) var += (x[c * N + n] - mean) * (x[c * N + n] - mean);
        var /= (double)(cg * N); /* biased, as torch's GroupNorm */
        for (int64_t c = g * cg; c < (g + 1) * cg; c++)
            for (int64_t n = 0; n < N; n++)
                h[n * C + c] = (x[c * N + n] - mean) / sqrt(var + eps) * gw[c] + gb[c];
    }
    double *out[3] = {q, k, v};
    for (int p = 0; p < 3; p++)
        for (int64_t n = 0; n < N; n++)
            for (int64_t j = 0; j < C; j++) {
                double s = bias[p][j];
                for (int64_t i = 0; i < C; i++) s += (double)W[p][j * C + i] * h[n * C + i];
                out[p][n * C + j] = s;
            }
    const int64_t heads = C / d;
    double *row = malloc((size_t)N * sizeof *row);
    for (int64_t hd = 0; hd < heads; hd++)
        for (int64_t a = 0; a < N; a++) {
            double top = -INFINITY, sum = 0;
            for (int64_t b = 0; b < N; b++) {
                double s = 0;
                for (int64_t e = hd * d; e < (hd + 1) * d; e++) s += q[a * C + e] * k[b * C + e];
                row[b] = s / sqrt((double)d);
                top = fmax(top, row[b]);
            }
            for (int64_t b = 0; b < N; b++) sum += row[b] = exp(row[b] - top);
            for (int64_t e = hd * d; e < (hd + 1) * d; e++) {
                double s = 0;
                for (int64_t b = 0; b < N; b++) s += row[b] / sum * v[b * C + e];
                o[a * C + e] = s;
            }
        }
    for (int64_t n = 0; n < N; n++)
        for (int64_t j = 0; j < C; j++) {
            double s = bias[3][j];
            for (int64_t i = 0; i < C; i++) s += (double)W[3][j * C + i] * o[n * C + i];
            y[j * N + n] = x[j * N + n] + s; /* the residual */
        }
    free(h), free(q), free(k), free(v), free(o), free(row);
}

/* The largest difference between the block's output in the last forward (B examples) and the
 * hand computation with G groups. */
static double block_miss(const dm_model *m, const char *block, int64_t B, int64_t G) {
    const float *in = NULL;
    int64_t shape[3] = {0};
    const float *got = dm_unet_block_output(m, block, &in, shape);
    CHECK(got && in, "%s: no output from the last forward", block);
    if (!got || !in) return INFINITY;
    const dm_unet_config *cfg = dm_unet_get_config(m);
    const int64_t C = shape[0], N = shape[1] * shape[2];
    double *want = malloc((size_t)(C * N) * sizeof *want), worst = 0;
    for (int64_t b = 0; b < B; b++) {
        attention_by_hand(want, in + b * C * N, m, block, C, N, G, cfg->attention_head_dim,
                          cfg->norm_eps);
        for (int64_t i = 0; i < C * N; i++)
            worst = fmax(worst, fabs((double)got[b * C * N + i] - want[i]));
    }
    free(want);
    return worst;
}

enum { RB = 2, DIM = 64 };

/* weights-f32 with attn_norm_num_groups set to value: its output at weights-reference's input */
static dm_model *load_with_groups(const char *value, float *out) {
    const edit e[2] = {{"attn_norm_num_groups", value}};
    write_config(e);
    dm_model *m = NULL;
    dm_error err = {0};
    CHECK(dm_unet_load_diffusers(&m, NULL, tu_tmpdir(), &err) == DM_OK, "attn_norm_num_groups "
          "%s: %s", value, err.msg);
    if (!m) exit(1);
    double *x = read_npy(PIPES "/weights-reference/x.npy", RB * DIM);
    double *ts = read_npy(PIPES "/weights-reference/timesteps.npy", RB);
    float *xf = to_float(x, RB * DIM), *tf = to_float(ts, RB);
    CHECK(dm_model_forward(m, out, xf, tf, RB, 0, &err) == DM_OK, "%s", err.msg);
    free(x), free(ts), free(xf), free(tf);
    return m;
}

static void test_attn_norm_num_groups(void) {
    copy_file(BASE "/diffusion_pytorch_model.safetensors",
              tu_tmp_path("diffusion_pytorch_model.safetensors"));
    double *want = read_npy(PIPES "/weights-reference/out_f64.npy", RB * DIM);
    const double tol = 1e-5 * max_abs(want, RB * DIM);
    float out_null[RB * DIM], out4[RB * DIM], out2[RB * DIM], out16[RB * DIM];

    /* null and norm_num_groups itself (4): diffusers' own output, bit for bit the same model */
    dm_model *m_null = load_with_groups("null", out_null);
    dm_model *m4 = load_with_groups("4", out4);
    printf("  attn_norm_num_groups null: max difference from diffusers %.3g (allowed %.3g)\n",
           max_diff(out_null, want, RB * DIM), tol);
    CHECK(max_diff(out_null, want, RB * DIM) <= tol, "null: diffusers' output");
    CHECK(memcmp(out_null, out4, sizeof out4) == 0, "attn_norm_num_groups 4 (= norm_num_groups) "
          "is null's model");

    /* another group count changes the output */
    dm_model *m2 = load_with_groups("2", out2);
    dm_model *m16 = load_with_groups("16", out16);
    const double d2 = max_diff(out2, want, RB * DIM), d16 = max_diff(out16, want, RB * DIM);
    printf("  attn_norm_num_groups 2: %.3g from diffusers' null output; 16: %.3g\n", d2, d16);
    CHECK(d2 > 100 * tol && d16 > 100 * tol, "attn_norm_num_groups 2 and 16 change the output "
          "(%.3g, %.3g)", d2, d16);

    /* where: the mid block's attention normalises in attn_norm_num_groups groups, the down
     * block's in norm_num_groups, whatever attn_norm_num_groups says */
    const struct {
        const char *what;
        dm_model **m;
        int64_t mid_groups;
    } models[] = {{"null", &m_null, 4}, {"2", &m2, 2}, {"16", &m16, 16}};
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++) {
        const dm_model *m = *models[i].m; /* each keeps its own last forward's activations */
        const int64_t G = models[i].mid_groups, other = G == 4 ? 2 : 4;
        const double mid = block_miss(m, "mid_block.attentions.0", RB, G);
        const double mid_other = block_miss(m, "mid_block.attentions.0", RB, other);
        const double down = block_miss(m, "down_blocks.1.attentions.0", RB, 4);
        const double down_other = block_miss(m, "down_blocks.1.attentions.0", RB, G == 4 ? 2 : G);
        const double up = block_miss(m, "up_blocks.0.attentions.0", RB, 4);
        printf("  attn_norm_num_groups %s: mid attention %.3g from the hand computation with %lld "
               "groups (%.3g with %lld); down and up attentions %.3g, %.3g with 4 groups (%.3g "
               "with %lld)\n",
               models[i].what, mid, (long long)G, mid_other, (long long)other, down, up,
               down_other, (long long)(G == 4 ? 2 : G));
        CHECK(mid < 1e-5, "attn_norm_num_groups %s: the mid attention is diffusers' with %lld "
              "groups (max difference %.3g)", models[i].what, (long long)G, mid);
        CHECK(mid_other > 1e-3, "attn_norm_num_groups %s: the hand computation with %lld groups "
              "tells them apart (%.3g)", models[i].what, (long long)other, mid_other);
        CHECK(down < 1e-5 && up < 1e-5, "attn_norm_num_groups %s: the down and up blocks' "
              "attentions keep norm_num_groups (%.3g, %.3g)", models[i].what, down, up);
        CHECK(down_other > 1e-3, "attn_norm_num_groups %s: the down block's attention is not "
              "normalised in %lld groups (%.3g)", models[i].what, (long long)(G == 4 ? 2 : G),
              down_other);
    }
    dm_model_free(m_null), dm_model_free(m4), dm_model_free(m2), dm_model_free(m16);
    free(want);
}

/* Groups that divide the mid block's channels but not an attention block's elsewhere: valid, as
 * in diffusers, where attn_norm_num_groups reaches the mid block only (12 channels at level 0
 * with attention, 16 in the mid block, attn_norm_num_groups 8). */
static void test_mid_only_groups(void) {
    dm_unet_config c;
    dm_error err = {0};
    dm_unet_preset(&c, "tiny", &err);
    c.block_out_channels[0] = 12;
    c.down_attention[0] = 1, c.down_attention[1] = 0;
    c.up_attention[0] = 0, c.up_attention[1] = 1;
    c.attn_norm_num_groups = 8;
    CHECK(dm_unet_config_validate(&c, &err) == DM_OK, "8 attention groups, 12-channel attention "
          "block outside the mid block: %s", err.msg);
    dm_model *m = NULL;
    CHECK(dm_unet_create(&m, &c, 7, &err) == DM_OK, "%s", err.msg);
    if (!m) return;
    /* GroupNorm weights away from 1 and 0, so that a wrong group count shows */
    dm_rng rng;
    dm_rng_init(&rng, 3, 0);
    for (int i = 0; i < m->n_tensors; i++)
        if (strstr(m->tensors[i].name, "group_norm")) {
            const dm_param_tensor *t = &m->tensors[i];
            float *v = m->params + t->offset;
            dm_rng_normal(&rng, v, (size_t)t->shape[0]);
        }
    float x[2 * 64], t[2] = {5, 800}, out[2 * 64];
    dm_rng_normal(&rng, x, 2 * 64);
    CHECK(dm_model_forward(m, out, x, t, 2, 0, &err) == DM_OK, "%s", err.msg);
    const double mid = block_miss(m, "mid_block.attentions.0", 2, 8);
    const double down = block_miss(m, "down_blocks.0.attentions.0", 2, 4);
    const double up = block_miss(m, "up_blocks.1.attentions.0", 2, 4);
    printf("  12-channel attentions with 4 groups: %.3g (down), %.3g (up); mid with 8: %.3g\n",
           down, up, mid);
    CHECK(mid < 1e-5 && down < 1e-5 && up < 1e-5, "attention blocks by hand: mid %.3g, down %.3g, "
          "up %.3g", mid, down, up);
    dm_model_free(m);
    /* groups that do not divide the mid block's 16 channels are refused */
    c.attn_norm_num_groups = 6;
    CHECK(dm_unet_config_validate(&c, &err) == DM_ERR_ARG &&
              strstr(err.msg, "attn_norm_num_groups 6"),
          "6 groups of 16 mid-block channels: %s", err.msg);
}

int main(void) {
    if (tu_tmpdir_make("unet_config")) return 1;
    test_refusals();
    test_aliases();
    test_attn_norm_num_groups();
    test_mid_only_groups();
    CHECK(tu_tmpdir_remove() == 0, "scratch folder removed");
    return tu_finish("test_unet_config");
}
