/* UNet2DModel folders in every weight format diffusers 0.31 writes
 * (tests/fixtures/diffusers-pipelines/weights-*, made by diffusers 0.31.0 itself), loaded by
 * dm_unet_load_diffusers_variant and run on weights-reference's x and timesteps:
 *   - float32: diffusers' output out.npy; the fp16 variant: out_fp16_weights.npy (float32
 *     arithmetic on the weights as that file rounds them); each to 1e-5 of the largest value;
 *   - bfloat16, shards, legacy attention names. What the fixture files hold (checked here bit
 *     for bit): weights-bf16 stores the fp16 variant's values rounded to bfloat16 (f32 -> f16 ->
 *     bf16: the generator converted its float16 model), not weights-f32's rounded once, which
 *     is what out_bf16_weights.npy was computed from (that file's output misses it by 4e-3);
 *     weights-sharded and weights-legacy-attention-names store those same bfloat16 values as
 *     float32 (the generator's model after the bfloat16 round trip), so they miss out.npy by
 *     5e-3. So: out_bf16_weights.npy is matched to 1e-5 by weights-f32 rounded to bfloat16
 *     (nearest even) here; weights-bf16 decodes to exactly bf16(fp16 variant) for every
 *     parameter; the shards and the legacy-named file load bit-identical parameters to
 *     weights-bf16, and so the same output;
 *   - F16 and BF16 conversion exact for all 65536 bit patterns (subnormals, infinities, NaN);
 *   - which file is chosen: an index over a single file, a variant's file and not the plain
 *     one, no fallback from a missing variant to the plain file, the variant shard index and
 *     its legacy name, the variant pickle;
 *   - refusals, each checked for its status and for naming the file: a pickle (with how to
 *     convert it), a missing shard, an index naming a tensor no shard holds, a tensor in two
 *     shards, a shard holding a tensor its index puts elsewhere or does not list, NaN and Inf
 *     (naming the tensor), a folder with neither config.json nor weights, shard files outside
 *     the folder, and the parameter count summed over shards before the model is allocated.
 * A missing fixture fails the test. */
#include "diffusion/checkpoint.h"
#include "fixture_npy.h"
#include "io/safetensors.h"

#include <omp.h>
#include <sys/stat.h>

#define PIPES DM_SOURCE_DIR "/tests/fixtures/diffusers-pipelines"
#define REF PIPES "/weights-reference"
#define SHARD(k) "diffusion_pytorch_model-0000" #k "-of-00004.safetensors"
#define INDEX "diffusion_pytorch_model.safetensors.index.json"
#define SINGLE "diffusion_pytorch_model.safetensors"

enum { B = 2, DIM = 1 * 8 * 8 };

/* a fixture file that must exist (not a skip: a failure) */
static void need(const char *path) {
    struct stat sb;
    if (stat(path, &sb) != 0) {
        fprintf(stderr, "FAIL fixture missing: %s (restore it with git checkout -- "
                "tests/fixtures)\n", path);
        exit(1);
    }
}

static float x_in[B * DIM], t_in[B];
static double *want_f32, *want_fp16, *want_bf16;
/* the output of weights-bf16 (and of the shards and legacy names, which hold its values) */
static double want_bf16_file[B * DIM];

/* float32 to bfloat16, round to nearest even (finite values) */
static float round_bf16(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
    memcpy(&x, &u, 4);
    return x;
}

/* dir's model (exits on failure: the checks after it need one) */
static dm_model *load(const char *dir, const char *variant) {
    dm_model *m = NULL;
    dm_error err = {0};
    if (dm_unet_load_diffusers_variant(&m, NULL, dir, variant, &err)) {
        fprintf(stderr, "FAIL %s (%s): %s\n", dir, variant ? variant : "no variant", err.msg);
        exit(1);
    }
    return m;
}

static void forward(dm_model *m, double *out) {
    float o[B * DIM];
    dm_error err = {0};
    CHECK(dm_model_forward(m, o, x_in, t_in, B, 0, &err) == DM_OK, "%s", err.msg);
    for (int i = 0; i < B * DIM; i++) out[i] = o[i];
}

/* how many parameters of a and b differ in their bits */
static size_t bits_differ(dm_model *a, dm_model *b) {
    if (dm_model_num_params(a) != dm_model_num_params(b)) return (size_t)-1;
    return memcmp(dm_model_params(a), dm_model_params(b),
                  dm_model_num_params(a) * sizeof(float))
               ? 1
               : 0;
}

/* Loads dir (variant may be NULL) and returns its output on the reference input, largest
 * difference from want relative to want's largest value; INFINITY when it does not load. */
static double miss(const char *dir, const char *variant, const double *want) {
    dm_model *m = NULL;
    dm_error err = {0};
    CHECK(dm_unet_load_diffusers_variant(&m, NULL, dir, variant, &err) == DM_OK, "%s (%s): %s",
          dir, variant ? variant : "no variant", err.msg);
    if (!m) return INFINITY;
    float out[B * DIM];
    double d = INFINITY;
    if (dm_model_forward(m, out, x_in, t_in, B, 0, &err) == DM_OK) {
        d = 0;
        for (int i = 0; i < B * DIM; i++) {
            const double e = fabs((double)out[i] - want[i]);
            d = isnan(e) ? INFINITY : fmax(d, e);
        }
        d /= max_abs(want, B * DIM);
    } else {
        CHECK(0, "forward of %s: %s", dir, err.msg);
    }
    dm_model_free(m);
    return d;
}

#define TOL 1e-5

static void expect_matches(const char *what, const char *dir, const char *variant,
                           const double *want) {
    const double d = miss(dir, variant, want);
    CHECK(d <= TOL, "%s: output off by %.3g of the largest value (tolerance %.0e)", what, d, TOL);
    printf("  %-52s %.2e of the largest value\n", what, d);
}

/* The load of dir fails with status and a message holding each of the non-NULL needles. */
static void expect_refused(const char *what, const char *dir, const char *variant,
                           dm_status status, const char *n1, const char *n2, const char *n3) {
    dm_model *m = NULL;
    dm_error err = {0};
    const dm_status got = dm_unet_load_diffusers_variant(&m, NULL, dir, variant, &err);
    CHECK(got == status, "%s: status %s, expected %s (%s)", what, dm_status_name(got),
          dm_status_name(status), err.msg);
    CHECK(m == NULL, "%s: a model returned on failure", what);
    const char *needles[3] = {n1, n2, n3};
    for (int k = 0; k < 3; k++)
        if (needles[k])
            CHECK(strstr(err.msg, needles[k]) != NULL, "%s: the message should name '%s': %s",
                  what, needles[k], err.msg);
    printf("  refused: %-43s %s\n", what, err.msg);
    dm_model_free(m);
}

/* ---- files in the scratch folder */

static char scratch[64];

static const char *tmp(const char *name) { return tu_tmp_path(name); }

static void clear_scratch(void) {
    DIR *dir = opendir(scratch);
    if (!dir) return;
    struct dirent *e;
    while ((e = readdir(dir)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) remove(tmp(e->d_name));
    closedir(dir);
}

static char *slurp(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "FAIL cannot read %s\n", path);
        exit(1);
    }
    fseek(f, 0, SEEK_END);
    const long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
        fprintf(stderr, "FAIL short read of %s\n", path);
        exit(1);
    }
    fclose(f);
    buf[n] = 0;
    if (size) *size = (size_t)n;
    return buf;
}

static void spit(const char *path, const char *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, n, f) != n || fclose(f) != 0) {
        fprintf(stderr, "FAIL cannot write %s\n", path);
        exit(1);
    }
}

static void copy(const char *src, const char *dst_name) {
    size_t n;
    char *buf = slurp(src, &n);
    spit(tmp(dst_name), buf, n);
    free(buf);
}

/* the scratch folder as the sharded fixture: config, index and four shards */
static void scratch_sharded(void) {
    clear_scratch();
    copy(PIPES "/weights-sharded/config.json", "config.json");
    copy(PIPES "/weights-sharded/" INDEX, INDEX);
    copy(PIPES "/weights-sharded/" SHARD(1), SHARD(1));
    copy(PIPES "/weights-sharded/" SHARD(2), SHARD(2));
    copy(PIPES "/weights-sharded/" SHARD(3), SHARD(3));
    copy(PIPES "/weights-sharded/" SHARD(4), SHARD(4));
}

/* Replaces the first `from` in the scratch file name by `to`. */
static void edit(const char *name, const char *from, const char *to) {
    char path[512];
    snprintf(path, sizeof path, "%s", tmp(name));
    size_t n;
    char *buf = slurp(path, &n);
    char *at = strstr(buf, from);
    if (!at) {
        fprintf(stderr, "FAIL '%s' not in %s\n", from, path);
        exit(1);
    }
    FILE *f = fopen(path, "wb");
    fwrite(buf, 1, (size_t)(at - buf), f);
    fputs(to, f);
    fputs(at + strlen(from), f);
    fclose(f);
    free(buf);
}

/* Rewrites safetensors file dst_name (in the scratch folder) from src: its tensors without
 * `drop` (may be NULL), then `add` (may be NULL) taken from the file add_from. */
static void rewrite(const char *src, const char *dst_name, const char *drop, const char *add,
                    const char *add_from) {
    dm_error err = {0};
    dm_safetensors *a = NULL, *b = NULL;
    if (dm_safetensors_open(&a, src, &err) ||
        (add && dm_safetensors_open(&b, add_from, &err))) {
        fprintf(stderr, "FAIL %s\n", err.msg);
        exit(1);
    }
    const int n = dm_safetensors_count(a);
    dm_st_tensor *ts = calloc((size_t)n + 1, sizeof *ts);
    int k = 0;
    for (int i = 0; i < n; i++) {
        const dm_st_tensor *t = dm_safetensors_at(a, i);
        if (!drop || strcmp(t->name, drop) != 0) ts[k++] = *t;
    }
    if (add) {
        const dm_st_tensor *t = dm_safetensors_get(b, add);
        if (!t) {
            fprintf(stderr, "FAIL no %s in %s\n", add, add_from);
            exit(1);
        }
        ts[k++] = *t;
    }
    const char *meta[] = {"format", "pt"};
    if (dm_safetensors_write(tmp(dst_name), ts, k, meta, 1, &err)) {
        fprintf(stderr, "FAIL %s\n", err.msg);
        exit(1);
    }
    free(ts);
    dm_safetensors_close(a);
    dm_safetensors_close(b);
}

/* ---- F16 / BF16 */

static void test_half_conversion(void) {
    static uint16_t bits[65536];
    static float got_h[65536], got_b[65536];
    for (int i = 0; i < 65536; i++) bits[i] = (uint16_t)i;
    const dm_st_tensor ts[2] = {
        {.name = "h", .dtype = DM_DTYPE_F16, .ndim = 1, .shape = {65536}, .data = bits},
        {.name = "b", .dtype = DM_DTYPE_BF16, .ndim = 1, .shape = {65536}, .data = bits},
    };
    dm_error err = {0};
    dm_safetensors *sf = NULL;
    const char *path = tmp("halves.safetensors");
    CHECK(dm_safetensors_write(path, ts, 2, NULL, 0, &err) == DM_OK, "%s", err.msg);
    CHECK(dm_safetensors_open(&sf, path, &err) == DM_OK, "%s", err.msg);
    if (!sf) return;
    CHECK(dm_safetensors_get(sf, "h")->dtype == DM_DTYPE_F16, "F16 read back as another dtype");
    CHECK(dm_safetensors_get(sf, "b")->dtype == DM_DTYPE_BF16, "BF16 read back as another dtype");
    const int64_t n = 65536;
    CHECK(dm_safetensors_read_f32(sf, "h", got_h, &n, 1, &err) == DM_OK, "%s", err.msg);
    CHECK(dm_safetensors_read_f32(sf, "b", got_b, &n, 1, &err) == DM_OK, "%s", err.msg);
    dm_safetensors_close(sf);
    int bad_h = 0, bad_b = 0;
    for (int i = 0; i < 65536; i++) {
        /* half: sign, 5 exponent bits (bias 15), 10 mantissa bits */
        const int sign = i >> 15, exp = (i >> 10) & 31, man = i & 1023;
        double want;
        if (exp == 31) want = man ? NAN : INFINITY;
        else if (exp == 0) want = ldexp(man, -24);
        else want = ldexp(1024 + man, exp - 25);
        if (sign) want = -want;
        const float g = got_h[i];
        const bool ok = isnan(want) ? isnan(g) && (signbit(g) != 0) == sign
                                    : (double)g == want && (signbit(g) != 0) == sign;
        if (!ok && bad_h++ < 5) CHECK(0, "F16 0x%04x: got %.9g, want %.9g", i, g, want);
        /* bfloat16: the upper half of a float32, so the bits say the value */
        uint32_t u;
        memcpy(&u, &got_b[i], 4);
        const uint32_t wu = (uint32_t)i << 16;
        float wf;
        memcpy(&wf, &wu, 4);
        const bool ok_b = isnan(wf) ? isnan(got_b[i]) && (u >> 31) == (wu >> 31) : u == wu;
        if (!ok_b && bad_b++ < 5) CHECK(0, "BF16 0x%04x: got bits 0x%08x, want 0x%08x", i, u, wu);
    }
    CHECK(bad_h == 0, "%d of 65536 F16 patterns converted wrongly", bad_h);
    CHECK(bad_b == 0, "%d of 65536 BF16 patterns converted wrongly", bad_b);
    /* landmarks */
    CHECK(got_h[0x3c00] == 1.0f && got_h[0x7bff] == 65504.0f, "F16 1 and 65504");
    CHECK(got_h[0x0001] == 0x1p-24f && got_h[0x03ff] == 1023 * 0x1p-24f &&
              got_h[0x0400] == 0x1p-14f,
          "F16 subnormals: %.9g %.9g", got_h[0x0001], got_h[0x03ff]);
    CHECK(isinf(got_h[0xfc00]) && got_h[0xfc00] < 0 && isnan(got_h[0x7e00]) &&
              got_h[0x8000] == 0 && signbit(got_h[0x8000]),
          "F16 -inf, NaN, -0");
    CHECK(got_b[0x3f80] == 1.0f && got_b[0x0001] == 0x1p-133f && isinf(got_b[0x7f80]) &&
              isnan(got_b[0x7fc0]),
          "BF16 1, smallest subnormal, inf, NaN");
    CHECK(dm_f16_to_f32(0xc000) == -2.0f && dm_bf16_to_f32(0xc000) == -2.0f, "-2");
    remove(path);
}

/* ---- every format diffusers writes */

static void test_formats(void) {
    printf("formats (output vs diffusers' on weights-reference):\n");
    expect_matches("float32", PIPES "/weights-f32", NULL, want_f32);
    expect_matches("fp16 variant (variant \"fp16\")", PIPES "/weights-fp16-variant", "fp16",
                   want_fp16);
    /* the rounded weights matter: the fp16 output misses the float32 one */
    const double dh = miss(PIPES "/weights-fp16-variant", "fp16", want_f32);
    CHECK(dh > 10 * TOL, "the fp16 output should miss out.npy (%.3g): the references do not "
          "tell the formats apart", dh);

    /* out_bf16_weights.npy: weights-f32 rounded to bfloat16 */
    dm_model *f32 = load(PIPES "/weights-f32", NULL);
    float *p = dm_model_params(f32);
    for (size_t i = 0; i < dm_model_num_params(f32); i++) p[i] = round_bf16(p[i]);
    double out[B * DIM];
    forward(f32, out);
    double d = 0;
    for (int i = 0; i < B * DIM; i++) d = fmax(d, fabs(out[i] - want_bf16[i]));
    d /= max_abs(want_bf16, B * DIM);
    CHECK(d <= TOL, "weights-f32 rounded to bfloat16: off out_bf16_weights.npy by %.3g", d);
    printf("  %-52s %.2e of the largest value\n", "weights-f32 rounded to bf16 (out_bf16)", d);

    /* weights-bf16 decodes to the fp16 variant's values rounded to bfloat16, every one */
    dm_model *bf16 = load(PIPES "/weights-bf16", NULL);
    dm_model *fp16 = load(PIPES "/weights-fp16-variant", "fp16");
    size_t off = 0, off_f32 = 0;
    const float *pb = dm_model_params(bf16), *ph = dm_model_params(fp16);
    for (size_t i = 0; i < dm_model_num_params(bf16); i++) {
        off += memcmp(&(float){round_bf16(ph[i])}, &pb[i], 4) != 0;
        off_f32 += memcmp(&p[i], &pb[i], 4) != 0;
    }
    CHECK(off == 0, "weights-bf16: %zu of %zu parameters are not the fp16 variant's rounded to "
          "bfloat16", off, dm_model_num_params(bf16));
    printf("  %-52s %zu of %zu parameters differ (%zu from bf16(f32))\n",
           "weights-bf16 vs bf16(fp16 variant), bit for bit", off, dm_model_num_params(bf16),
           off_f32);
    forward(bf16, want_bf16_file);

    /* the shards and the legacy names: weights-bf16's values as float32, bit for bit */
    dm_model *sh = load(PIPES "/weights-sharded", NULL);
    dm_model *legacy = load(PIPES "/weights-legacy-attention-names", NULL);
    CHECK(bits_differ(sh, bf16) == 0, "the shards' parameters differ from weights-bf16's");
    CHECK(bits_differ(legacy, bf16) == 0, "the legacy-named parameters differ from weights-bf16's");
    expect_matches("four shards and their index (= weights-bf16)", PIPES "/weights-sharded", NULL,
                   want_bf16_file);
    expect_matches("legacy attention names (= weights-bf16)",
                   PIPES "/weights-legacy-attention-names", NULL, want_bf16_file);
    /* and the shards' output is not the float32 one: the checks tell the files apart */
    CHECK(miss(PIPES "/weights-sharded", NULL, want_f32) > 10 * TOL,
          "the shards' output should miss out.npy");
    dm_model_free(f32);
    dm_model_free(bf16);
    dm_model_free(fp16);
    dm_model_free(sh);
    dm_model_free(legacy);
    /* the old entry point is the same load without a variant */
    dm_model *m = NULL;
    dm_unet_config cfg;
    dm_error err = {0};
    CHECK(dm_unet_load_diffusers(&m, &cfg, PIPES "/weights-sharded", &err) == DM_OK, "%s",
          err.msg);
    CHECK(m && cfg.in_channels == 1 && cfg.sample_size == 8, "config of the sharded folder");
    dm_model_free(m);
}

/* ---- which file is read */

static void test_file_choice(void) {
    printf("file choice:\n");
    /* a variant's file beside the plain one: each picked by the variant asked for */
    clear_scratch();
    copy(PIPES "/weights-f32/config.json", "config.json");
    copy(PIPES "/weights-f32/" SINGLE, SINGLE);
    copy(PIPES "/weights-fp16-variant/diffusion_pytorch_model.fp16.safetensors",
         "diffusion_pytorch_model.fp16.safetensors");
    copy(PIPES "/weights-bf16/" SINGLE, "diffusion_pytorch_model.bf16.safetensors");
    expect_matches("no variant: the plain file", scratch, NULL, want_f32);
    expect_matches("variant fp16: diffusion_pytorch_model.fp16.safetensors", scratch, "fp16",
                   want_fp16);
    expect_matches("variant bf16: diffusion_pytorch_model.bf16.safetensors", scratch, "bf16",
                   want_bf16_file);
    /* no fallback from a missing variant to the plain file (diffusers 0.31 raises too) */
    expect_refused("variant ema, only other files", scratch, "ema", DM_ERR_IO,
                   "diffusion_pytorch_model.ema.safetensors", "without a variant", NULL);
    /* the variant's pickle is diffusers' fallback: refused as a pickle */
    copy(PIPES "/weights-pickle-bin/diffusion_pytorch_model.bin",
         "diffusion_pytorch_model.ema.bin");
    expect_refused("variant ema, only its pickle", scratch, "ema", DM_ERR_FORMAT,
                   "diffusion_pytorch_model.ema.bin", "variant=\"ema\"", "save_pretrained");
    expect_refused("variant with a slash", scratch, "../x", DM_ERR_ARG, "variant", NULL, NULL);
    expect_refused("empty variant", scratch, "", DM_ERR_ARG, "variant", NULL, NULL);

    /* the fp16 folder has no plain file: without the variant it has no weights */
    expect_refused("fp16-only folder loaded without a variant", PIPES "/weights-fp16-variant",
                   NULL, DM_ERR_IO, "weights-fp16-variant", SINGLE, NULL);

    /* an index wins over a single file beside it (diffusers decides is_sharded first): the
     * float32 single file is not read */
    scratch_sharded();
    copy(PIPES "/weights-f32/" SINGLE, SINGLE);
    expect_matches("shards and a single file: the shards", scratch, NULL, want_bf16_file);

    /* the variant index diffusers 0.31 writes: diffusion_pytorch_model.safetensors.index.V.json */
    scratch_sharded();
    rename(tmp(INDEX), tmp("diffusion_pytorch_model.safetensors.index.fp16.json"));
    expect_matches("variant index ...safetensors.index.fp16.json", scratch, "fp16",
                   want_bf16_file);
    expect_refused("variant index loaded without the variant", scratch, NULL, DM_ERR_IO,
                   SINGLE, NULL, NULL);
    /* and the legacy name of diffusers before 0.31: ...safetensors.fp16.index.json */
    rename(tmp("diffusion_pytorch_model.safetensors.index.fp16.json"),
           tmp("diffusion_pytorch_model.safetensors.fp16.index.json"));
    expect_matches("legacy variant index ...safetensors.fp16.index.json", scratch, "fp16",
                   want_bf16_file);
    /* both: the current name first (a broken current index is what is read) */
    spit(tmp("diffusion_pytorch_model.safetensors.index.fp16.json"), "{", 1);
    expect_refused("current and legacy variant index: the current", scratch, "fp16",
                   DM_ERR_FORMAT, "diffusion_pytorch_model.safetensors.index.fp16.json", NULL,
                   NULL);
}

/* ---- refusals */

static void test_refusals(void) {
    printf("refusals:\n");
    expect_refused("pickle", PIPES "/weights-pickle-bin", NULL, DM_ERR_FORMAT,
                   "weights-pickle-bin/diffusion_pytorch_model.bin", "runs",
                   "UNet2DModel.from_pretrained(");

    clear_scratch();
    expect_refused("neither config.json nor weights", scratch, NULL, DM_ERR_IO, scratch,
                   "config.json", SINGLE);
    copy(PIPES "/weights-f32/config.json", "config.json");
    expect_refused("config.json without weights", scratch, NULL, DM_ERR_IO, scratch, SINGLE,
                   NULL);
    remove(tmp("config.json"));
    copy(PIPES "/weights-f32/" SINGLE, SINGLE);
    expect_refused("weights without config.json", scratch, NULL, DM_ERR_IO, "config.json", NULL,
                   NULL);

    scratch_sharded();
    remove(tmp(SHARD(3)));
    expect_refused("missing shard", scratch, NULL, DM_ERR_IO, SHARD(3), INDEX, NULL);

    scratch_sharded();
    edit(INDEX, "\"weight_map\": {",
         "\"weight_map\": {\n    \"up_blocks.9.extra.weight\": \"" SHARD(2) "\",");
    expect_refused("index naming a tensor no shard holds", scratch, NULL, DM_ERR_FORMAT, INDEX,
                   "up_blocks.9.extra.weight", SHARD(2));

    /* conv_in.bias (shard 1) also written into shard 2 */
    scratch_sharded();
    rewrite(PIPES "/weights-sharded/" SHARD(2), SHARD(2), NULL, "conv_in.bias",
            PIPES "/weights-sharded/" SHARD(1));
    expect_refused("a tensor in two shards", scratch, NULL, DM_ERR_FORMAT, "conv_in.bias",
                   SHARD(1), SHARD(2));

    /* conv_in.bias moved from shard 1 to shard 2, the index unchanged */
    scratch_sharded();
    rewrite(PIPES "/weights-sharded/" SHARD(1), SHARD(1), "conv_in.bias", NULL, NULL);
    rewrite(PIPES "/weights-sharded/" SHARD(2), SHARD(2), NULL, "conv_in.bias",
            PIPES "/weights-sharded/" SHARD(1));
    expect_refused("a tensor in another shard than its index says", scratch, NULL,
                   DM_ERR_FORMAT, "conv_in.bias", SHARD(1), SHARD(2));

    /* a shard holding a tensor its index does not list (the tensor taken from the f32 file
     * under another name is not possible: the writer copies by name, so a real tensor of
     * shard 1 is dropped from the index instead) */
    scratch_sharded();
    edit(INDEX, "\"conv_in.bias\": \"" SHARD(1) "\",", "");
    expect_refused("a shard holding a tensor the index does not list", scratch, NULL,
                   DM_ERR_FORMAT, SHARD(1), "conv_in.bias", "does not list");

    scratch_sharded();
    edit(INDEX, "\"conv_in.bias\": \"" SHARD(1) "\"", "\"conv_in.bias\": \"../" SHARD(1) "\"");
    expect_refused("a shard named outside the folder", scratch, NULL, DM_ERR_FORMAT, INDEX,
                   "conv_in.bias", NULL);

    /* the parameter count over all shards, before the model is allocated: a tensor dropped
     * from shard 4 and the index (consistent, but short), then a config of vast channels */
    scratch_sharded();
    rewrite(PIPES "/weights-sharded/" SHARD(4), SHARD(4), "conv_out.bias", NULL, NULL);
    edit(INDEX, "\"conv_out.bias\": \"" SHARD(4) "\",", "");
    expect_refused("shards one tensor short (count over shards)", scratch, NULL,
                   DM_ERR_MISMATCH, INDEX, "refused before creating the model", NULL);
    scratch_sharded();
    edit("config.json", "\"block_out_channels\": [\n    8,\n    16\n  ]",
         "\"block_out_channels\": [\n    8,\n    8192\n  ]");
    expect_refused("shards and a config of 8192 channels", scratch, NULL, DM_ERR_MISMATCH,
                   INDEX, "refused before creating the model", NULL);

    /* NaN and Inf, naming the tensor and the file */
    {
        dm_error err = {0};
        dm_safetensors *sf = NULL;
        CHECK(dm_safetensors_open(&sf, PIPES "/weights-sharded/" SHARD(2), &err) == DM_OK, "%s",
              err.msg);
        if (!sf) return;
        const int n = dm_safetensors_count(sf);
        dm_st_tensor *ts = calloc((size_t)n, sizeof *ts);
        float *bad = NULL;
        const char *victim = NULL;
        for (int i = 0; i < n; i++) {
            ts[i] = *dm_safetensors_at(sf, i);
            if (!victim && ts[i].dtype == DM_DTYPE_F32 && ts[i].ndim == 1) {
                victim = ts[i].name;
                bad = malloc((size_t)ts[i].shape[0] * sizeof *bad);
                memcpy(bad, ts[i].data, (size_t)ts[i].shape[0] * sizeof *bad);
                bad[ts[i].shape[0] - 1] = NAN;
                ts[i].data = bad;
            }
        }
        scratch_sharded();
        CHECK(victim && dm_safetensors_write(tmp(SHARD(2)), ts, n, NULL, 0, &err) == DM_OK, "%s",
              err.msg);
        char quoted[200];
        snprintf(quoted, sizeof quoted, "'%s'", victim ? victim : "?");
        expect_refused("NaN in a shard", scratch, NULL, DM_ERR_NUMERIC, SHARD(2), quoted,
                       "NaN");
        free(bad);
        free(ts);
        dm_safetensors_close(sf);
    }
    {
        /* +Inf as F16 bits (0x7c00) in the fp16 variant, under a legacy attention name */
        dm_error err = {0};
        dm_safetensors *sf = NULL;
        CHECK(dm_safetensors_open(&sf,
                                  PIPES "/weights-fp16-variant/"
                                        "diffusion_pytorch_model.fp16.safetensors",
                                  &err) == DM_OK,
              "%s", err.msg);
        if (!sf) return;
        const int n = dm_safetensors_count(sf);
        dm_st_tensor *ts = calloc((size_t)n, sizeof *ts);
        uint16_t *bad = NULL;
        for (int i = 0; i < n; i++) {
            ts[i] = *dm_safetensors_at(sf, i);
            if (strcmp(ts[i].name, "mid_block.attentions.0.to_q.bias") == 0) {
                CHECK(ts[i].dtype == DM_DTYPE_F16, "the fp16 fixture holds F16");
                bad = malloc((size_t)ts[i].shape[0] * 2);
                memcpy(bad, ts[i].data, (size_t)ts[i].shape[0] * 2);
                bad[0] = 0x7c00;
                ts[i].data = bad;
                ts[i].name = "mid_block.attentions.0.query.bias";
            }
        }
        clear_scratch();
        copy(PIPES "/weights-fp16-variant/config.json", "config.json");
        CHECK(bad && dm_safetensors_write(tmp("diffusion_pytorch_model.fp16.safetensors"), ts, n,
                                          NULL, 0, &err) == DM_OK,
              "%s", err.msg);
        expect_refused("Inf in an F16 tensor", scratch, "fp16", DM_ERR_NUMERIC,
                       "diffusion_pytorch_model.fp16.safetensors",
                       "'mid_block.attentions.0.query.bias'", "Inf");
        free(bad);
        free(ts);
        dm_safetensors_close(sf);
    }
    /* a legacy name and today's name for one tensor: held twice */
    clear_scratch();
    copy(PIPES "/weights-legacy-attention-names/config.json", "config.json");
    rewrite(PIPES "/weights-legacy-attention-names/" SINGLE, SINGLE,
            "mid_block.attentions.0.key.bias", NULL, NULL);
    rewrite(tmp(SINGLE), "x.safetensors", NULL, "mid_block.attentions.0.to_k.bias",
            PIPES "/weights-bf16/" SINGLE);
    rename(tmp("x.safetensors"), tmp(SINGLE));
    expect_matches("legacy names, one tensor under today's (as BF16)", scratch, NULL,
                   want_bf16_file);
}

int main(void) {
    omp_set_num_threads(2);
    need(REF "/x.npy");
    need(PIPES "/weights-sharded/" INDEX);
    need(PIPES "/weights-pickle-bin/diffusion_pytorch_model.bin");
    double *x = read_npy(REF "/x.npy", B * DIM), *t = read_npy(REF "/timesteps.npy", B);
    for (int i = 0; i < B * DIM; i++) x_in[i] = (float)x[i];
    for (int i = 0; i < B; i++) t_in[i] = (float)t[i];
    want_f32 = read_npy(REF "/out.npy", B * DIM);
    want_fp16 = read_npy(REF "/out_fp16_weights.npy", B * DIM);
    want_bf16 = read_npy(REF "/out_bf16_weights.npy", B * DIM);
    if (tu_tmpdir_make("diffusers_weights")) return 1;
    snprintf(scratch, sizeof scratch, "%s", tu_tmpdir());

    test_half_conversion();
    test_formats();
    test_file_choice();
    test_refusals();

    clear_scratch();
    CHECK(tu_tmpdir_remove() == 0, "scratch folder left behind");
    free(x), free(t), free(want_f32), free(want_fp16), free(want_bf16);
    return tu_finish("test_diffusers_weights");
}
