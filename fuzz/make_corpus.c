/* Writes the seed corpus of every harness into OUT/<harness>/ (scripts/fuzz.sh --make-corpus):
 * valid files from the project's own writers (safetensors, NPY, CSV, checkpoint and UNet
 * configs, PNG through libpng) and by hand where the project has no writer (IDX raw and gzipped,
 * PNG variants through libpng, JPEG through stb_image_write), plus a few near-valid files that
 * a parser must refuse. Everything is small: the whole corpus stays well under 300 KB.
 * Files added by hand from long runs (named found-*) are not written here. */
#include "core/core.h"
#include "data/image_cache.h"
#include "diffusion/checkpoint.h"
#include "io/npy.h"
#include "io/safetensors.h"
#include "models/model.h"

#include "fuzz_run.h"

#include <cJSON.h>
#include <errno.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb_image_write.h>

static const char *out_dir;
static char dir[512]; /* OUT/<harness> */

static void fail(const char *what, const dm_error *err) {
    fprintf(stderr, "make_corpus: %s: %s\n", what, err ? err->msg : strerror(errno));
    exit(1);
}

static void enter(const char *harness) {
    snprintf(dir, sizeof dir, "%s/%s", out_dir, harness);
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) fail(dir, NULL);
}

/* DIR/name, in one of four rotating buffers */
static const char *at(const char *name) {
    static char buf[4][600];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

static void put(const char *name, const void *data, size_t size) {
    FILE *f = fopen(at(name), "wb");
    if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0) fail(at(name), NULL);
}

static void put_str(const char *name, const char *text) { put(name, text, strlen(text)); }

static void put_gz(const char *name, const void *data, size_t size) {
    gzFile f = gzopen(at(name), "wb9");
    if (!f || gzwrite(f, data, (unsigned)size) != (int)size || gzclose(f) != Z_OK)
        fail(at(name), NULL);
}

/* The first size bytes of a file just written, under another name. */
static void put_prefix(const char *name, const char *from, size_t size) {
    char buf[65536];
    FILE *f = fopen(at(from), "rb");
    size_t got = f ? fread(buf, 1, sizeof buf, f) : 0;
    if (f) fclose(f);
    if (got < size) fail(from, NULL);
    put(name, buf, size);
}

/* ---------------------------------------------------------------------------------------- */

static void safetensors_corpus(void) {
    enter("safetensors");
    dm_error err = {0};
    /* the harness's MLP, weights as a checkpoint's model.safetensors holds them */
    dm_mlp_config cfg;
    dm_mlp_config_default(&cfg);
    cfg.hidden = 4, cfg.temb_dim = 4, cfg.layers = 1;
    dm_model *m;
    if (dm_mlp_create(&m, &cfg, 1, &err) || dm_model_weights_save(m, m->params, at("mlp.safetensors"), &err))
        fail("mlp", &err);
    /* the same with one tensor stored as F64 (read_f32 converts it) */
    dm_st_tensor ts[16];
    double f64[64];
    int n = m->n_tensors < 16 ? m->n_tensors : 16;
    for (int i = 0; i < n; i++) {
        const dm_param_tensor *p = &m->tensors[i];
        ts[i] = (dm_st_tensor){.name = p->name, .dtype = DM_DTYPE_F32, .ndim = p->ndim,
                               .data = m->params + p->offset};
        for (int d = 0; d < p->ndim; d++) ts[i].shape[d] = p->shape[d];
    }
    for (int i = 0; i < n; i++) {
        if (ts[i].ndim == 1 && ts[i].shape[0] <= 64) {
            for (int64_t k = 0; k < ts[i].shape[0]; k++) f64[k] = ((const float *)ts[i].data)[k];
            ts[i].dtype = DM_DTYPE_F64;
            ts[i].data = f64;
            break;
        }
    }
    if (dm_safetensors_write(at("mlp_f64.safetensors"), ts, n, NULL, 0, &err)) fail("f64", &err);
    dm_model_free(m);

    float a[6] = {1.5f, -2.25f, 3, 1e-30f, -0.0f, 3.4e38f};
    double b[2] = {0.1, -1e300};
    int64_t c[2] = {INT64_MIN, 7};
    int32_t d[3] = {-1, 0, 1};
    uint8_t e[5] = {0, 1, 127, 128, 255};
    dm_st_tensor all[] = {
        {.name = "conv.weight", .dtype = DM_DTYPE_F32, .ndim = 2, .shape = {2, 3}, .data = a},
        {.name = "b", .dtype = DM_DTYPE_F64, .ndim = 1, .shape = {2}, .data = b},
        {.name = "c", .dtype = DM_DTYPE_I64, .ndim = 1, .shape = {2}, .data = c},
        {.name = "d", .dtype = DM_DTYPE_I32, .ndim = 2, .shape = {3, 1}, .data = d},
        {.name = "e", .dtype = DM_DTYPE_U8, .ndim = 1, .shape = {5}, .data = e},
    };
    const char *meta[] = {"format", "pt", "step", "12"};
    if (dm_safetensors_write(at("dtypes.safetensors"), all, 5, meta, 2, &err)) fail("dtypes", &err);
    dm_st_tensor odd[] = {
        {.name = "scalar", .dtype = DM_DTYPE_F32, .ndim = 0, .data = a},
        {.name = "empty", .dtype = DM_DTYPE_F32, .ndim = 2, .shape = {0, 4}, .data = NULL},
        {.name = "none", .dtype = DM_DTYPE_U8, .ndim = 1, .shape = {0}, .data = NULL},
    };
    if (dm_safetensors_write(at("scalar_empty.safetensors"), odd, 3, NULL, 0, &err))
        fail("odd", &err);
    if (dm_safetensors_write(at("none.safetensors"), NULL, 0, meta, 1, &err)) fail("none", &err);

    /* near-valid, by hand: an 8-byte little-endian length, the header, the data */
    static const char *const near[][2] = {
        {"near_overlap.safetensors",
         "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}"},
        {"near_past_end.safetensors",
         "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}"},
        {"near_huge.safetensors",
         "{\"a\":{\"dtype\":\"F32\",\"shape\":[1099511627776],\"data_offsets\":[0,16]}}"},
    };
    for (size_t i = 0; i < sizeof near / sizeof near[0]; i++) {
        char buf[512];
        size_t len = strlen(near[i][1]);
        for (int k = 0; k < 8; k++) buf[k] = (char)((uint64_t)len >> (8 * k));
        memcpy(buf + 8, near[i][1], len);
        memset(buf + 8 + len, 0x3f, 12);
        put(near[i][0], buf, 8 + len + 12);
    }
}

/* ---------------------------------------------------------------------------------------- */

/* cJSON text of a file just written; the caller frees with cJSON_Delete */
static cJSON *load_json(const char *name) {
    char buf[65536];
    FILE *f = fopen(at(name), "rb");
    size_t got = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f) fclose(f);
    buf[got] = '\0';
    cJSON *root = cJSON_Parse(buf);
    if (!root) fail(name, NULL);
    return root;
}

static void save_json(const char *name, cJSON *root) {
    char *text = cJSON_Print(root);
    put_str(name, text);
    cJSON_free(text);
    cJSON_Delete(root);
}

static void ckpt_config_corpus(void) {
    enter("ckpt_config");
    dm_error err = {0};
    dm_checkpoint_config c;
    memset(&c, 0, sizeof c);
    dm_train_config_default(&c.train);
    c.norm.dim = 2;
    c.norm.mean[0] = 0.5, c.norm.mean[1] = -1;
    c.norm.std[0] = 2, c.norm.std[1] = 0.25;
    c.step = 800, c.data_n = 1000, c.data_hash = 0x0123456789abcdefull;
    if (dm_checkpoint_config_write(at("mlp.json"), &c, &err)) fail("mlp.json", &err);
    c.train.prediction = DM_PRED_V, c.train.loss = DM_LOSS_HYBRID, c.train.var = DM_VAR_LEARNED;
    c.train.timesteps = DM_TIME_IMPORTANCE, c.train.schedule.kind = DM_SCHEDULE_COSINE;
    c.train.mlp.out_dim = 4;
    if (dm_checkpoint_config_write(at("mlp_hybrid.json"), &c, &err)) fail("hybrid", &err);
    /* trained in continuous time: the "sde" object */
    dm_train_config_default(&c.train);
    c.train.sde_training = 1;
    dm_sde_default(&c.train.sde, DM_SDE_VE);
    c.train.sde.sigma_max = 7.25;
    if (dm_checkpoint_config_write(at("mlp_sde_ve.json"), &c, &err)) fail("sde", &err);
    memset(&c, 0, sizeof c);
    dm_train_config_default(&c.train);
    c.train.arch = DM_ARCH_UNET;
    if (dm_checkpoint_config_write(at("unet.json"), &c, &err)) fail("unet.json", &err);

    /* a config from before the design-space options: no "objective", no "out_dim" */
    cJSON *root = load_json("mlp.json");
    cJSON_DeleteItemFromObject(root, "objective");
    cJSON_DeleteItemFromObject(cJSON_GetObjectItem(root, "model"), "out_dim");
    save_json("legacy.json", root);
    /* near-valid: T = 0, a wrong prediction name, a mean array of the wrong length */
    root = load_json("mlp.json");
    cJSON_ReplaceItemInObject(cJSON_GetObjectItem(root, "schedule"), "T", cJSON_CreateNumber(0));
    save_json("near_T0.json", root);
    root = load_json("mlp.json");
    cJSON_ReplaceItemInObject(root, "prediction", cJSON_CreateString("eps"));
    save_json("near_prediction.json", root);
    root = load_json("mlp.json");
    cJSON_ReplaceItemInObject(cJSON_GetObjectItem(cJSON_GetObjectItem(root, "objective"), "loss")
                                  ? cJSON_GetObjectItem(root, "objective")
                                  : root,
                              "loss", cJSON_CreateString("l2"));
    save_json("near_loss.json", root);
    /* near-valid: an SDE whose sigma_min is above its sigma_max */
    root = load_json("mlp_sde_ve.json");
    cJSON_ReplaceItemInObject(cJSON_GetObjectItem(root, "sde"), "sigma_min",
                              cJSON_CreateNumber(9));
    save_json("near_sde_sigma.json", root);
}

/* A classifier folder's config.json as dm_classifier_train writes it, noisy and clean, and
 * near-valid variations. */
static void classifier_config_corpus(void) {
    enter("classifier_config");
    const char *clean =
        "{\n\t\"format\":\t\"diffusion.c classifier\",\n\t\"version\":\t1,\n\t\"kind\":\t\"clean\",\n"
        "\t\"num_classes\":\t4,\n\t\"network\":\t\"classifier/config.json\",\n\t\"schedule\":\t{\n"
        "\t\t\"kind\":\t\"linear\",\n\t\t\"T\":\t1000,\n\t\t\"beta_start\":\t0.0001,\n"
        "\t\t\"beta_end\":\t0.02,\n\t\t\"cosine_s\":\t0.008,\n\t\t\"gamma_min\":\t-10,\n"
        "\t\t\"gamma_max\":\t10\n\t},\n\t\"training\":\t{\n\t\t\"step\":\t20,\n\t\t\"steps\":\t20,\n"
        "\t\t\"batch\":\t128,\n\t\t\"seed\":\t0,\n\t\t\"hflip\":\tfalse,\n\t\t\"lr\":\t0.001\n\t}\n}\n";
    put_str("clean.json", clean);
    cJSON *root = load_json("clean.json");
    cJSON_ReplaceItemInObject(root, "kind", cJSON_CreateString("noisy"));
    cJSON_ReplaceItemInObject(cJSON_GetObjectItem(root, "schedule"), "kind",
                              cJSON_CreateString("cosine"));
    save_json("noisy.json", root);
    root = load_json("clean.json");
    cJSON_ReplaceItemInObject(root, "kind", cJSON_CreateString("blurry"));
    save_json("near_kind.json", root);
    root = load_json("clean.json");
    cJSON_ReplaceItemInObject(root, "num_classes", cJSON_CreateNumber(10));
    save_json("near_classes.json", root);
    root = load_json("clean.json");
    cJSON_ReplaceItemInObject(cJSON_GetObjectItem(root, "schedule"), "T", cJSON_CreateNumber(0));
    save_json("near_T0.json", root);
}

static void unet_config_corpus(void) {
    enter("unet_config");
    dm_error err = {0};
    for (int i = 0; dm_unet_preset_names[i]; i++) {
        dm_unet_config cfg;
        char name[64];
        snprintf(name, sizeof name, "%s.json", dm_unet_preset_names[i]);
        if (dm_unet_preset(&cfg, dm_unet_preset_names[i], &err) ||
            dm_unet_config_write(&cfg, at(name), &err))
            fail(name, &err);
    }
    /* diffusers' spellings the reader takes: sample_size as [h, w], nulls, class labels */
    cJSON *root = load_json("tiny.json");
    cJSON *size = cJSON_CreateArray();
    cJSON_AddItemToArray(size, cJSON_CreateNumber(8));
    cJSON_AddItemToArray(size, cJSON_CreateNumber(8));
    cJSON_ReplaceItemInObject(root, "sample_size", size);
    cJSON_ReplaceItemInObject(root, "num_class_embeds", cJSON_CreateNumber(10));
    cJSON_ReplaceItemInObject(root, "attention_head_dim", cJSON_CreateNull());
    save_json("tiny_variants.json", root);
    /* a minimal file: everything else from diffusers' defaults */
    put_str("minimal.json", "{\"sample_size\": 32, \"block_out_channels\": [32, 64], "
                            "\"down_block_types\": [\"DownBlock2D\", \"AttnDownBlock2D\"], "
                            "\"up_block_types\": [\"AttnUpBlock2D\", \"UpBlock2D\"]}");
    /* near-valid: groups that do not divide, an unsupported block type */
    root = load_json("tiny.json");
    cJSON_ReplaceItemInObject(root, "norm_num_groups", cJSON_CreateNumber(3));
    save_json("near_groups.json", root);
    root = load_json("tiny.json");
    cJSON_ReplaceItemInObject(root, "time_embedding_type", cJSON_CreateString("fourier"));
    save_json("near_fourier.json", root);
}

/* ---------------------------------------------------------------------------------------- */

/* big-endian IDX: magic, sizes, data */
static size_t idx_bytes(uint8_t *out, uint32_t magic, const uint32_t *dims, int ndim,
                        const uint8_t *data, size_t n) {
    size_t k = 0;
    for (int b = 3; b >= 0; b--) out[k++] = (uint8_t)(magic >> (8 * b));
    for (int d = 0; d < ndim; d++)
        for (int b = 3; b >= 0; b--) out[k++] = (uint8_t)(dims[d] >> (8 * b));
    memcpy(out + k, data, n);
    return k + n;
}

static void idx_corpus(void) {
    enter("idx");
    uint8_t pixels[5 * 3 * 4], labels[5] = {0, 3, 1, 2, 3}, buf[256];
    for (size_t i = 0; i < sizeof pixels; i++) pixels[i] = (uint8_t)(i * 37 + 11);
    const uint32_t dims[3] = {5, 3, 4}, ldims[1] = {5}, huge[3] = {1000000, 28, 28};
    size_t n = idx_bytes(buf, 0x803, dims, 3, pixels, sizeof pixels);
    put("images.idx", buf, n);
    put_gz("images.idx.gz", buf, n);
    put("near_truncated.idx", buf, n - 7);
    put("near_huge.idx", buf, idx_bytes(buf, 0x803, huge, 3, pixels, sizeof pixels));
    n = idx_bytes(buf, 0x801, ldims, 1, labels, sizeof labels);
    put("labels.idx", buf, n);
    put_gz("labels.idx.gz", buf, n);
}

/* ---------------------------------------------------------------------------------------- */

/* A version 2.0 header (4-byte length), by hand: numpy writes it for headers over 64 KiB. */
static void npy_v2(const char *name) {
    const char *dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }";
    char buf[256];
    size_t hlen = (12 + strlen(dict) + 1 + 63) / 64 * 64 - 12;
    memcpy(buf, "\x93NUMPY\x02\x00", 8);
    for (int b = 0; b < 4; b++) buf[8 + b] = (char)(hlen >> (8 * b));
    memset(buf + 12, ' ', hlen);
    memcpy(buf + 12, dict, strlen(dict));
    buf[12 + hlen - 1] = '\n';
    const float v[4] = {1, -1, 0.5f, 0};
    memcpy(buf + 12 + hlen, v, sizeof v);
    put(name, buf, 12 + hlen + sizeof v);
}

static void npy_corpus(void) {
    enter("npy");
    dm_error err = {0};
    float pts[20];
    for (int i = 0; i < 20; i++) pts[i] = (float)(i - 10) / 3;
    double pts8[18];
    for (int i = 0; i < 18; i++) pts8[i] = i * 0.25 - 2;
    uint8_t img8[2 * 4 * 4];
    for (int i = 0; i < 32; i++) img8[i] = (uint8_t)(i * 8);
    float imgf[2 * 3 * 2 * 2];
    for (int i = 0; i < 24; i++) imgf[i] = (float)i / 12 - 1;
    int32_t i4[3] = {-1, 0, 1};
    int64_t i8[4] = {1, 2, 3, 4};
    struct {
        const char *name;
        dm_dtype dtype;
        const void *data;
        int ndim;
        int64_t shape[4];
    } arrays[] = {
        {"points_f4.npy", DM_DTYPE_F32, pts, 2, {10, 2}},
        {"points_f8.npy", DM_DTYPE_F64, pts8, 2, {6, 3}},
        {"images_u8.npy", DM_DTYPE_U8, img8, 4, {2, 1, 4, 4}},
        {"images_u8_nhw.npy", DM_DTYPE_U8, img8, 3, {2, 4, 4}},
        {"images_f4.npy", DM_DTYPE_F32, imgf, 4, {2, 3, 2, 2}},
        {"ints_i4.npy", DM_DTYPE_I32, i4, 1, {3}},
        {"ints_i8.npy", DM_DTYPE_I64, i8, 2, {2, 2}},
        {"scalar.npy", DM_DTYPE_F32, pts, 0, {0}},
        {"empty.npy", DM_DTYPE_F32, pts, 2, {0, 2}},
    };
    for (size_t i = 0; i < sizeof arrays / sizeof arrays[0]; i++)
        if (dm_npy_write(at(arrays[i].name), arrays[i].dtype, arrays[i].data, arrays[i].shape,
                         arrays[i].ndim, &err))
            fail(arrays[i].name, &err);
    npy_v2("points_v2.npy");
    put_prefix("near_truncated.npy", "points_f4.npy", 64 + 4 * 20 - 3);
    const char *fortran = "{'descr': '<f4', 'fortran_order': True, 'shape': (0,), }\n";
    char buf[128];
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    buf[8] = (char)strlen(fortran), buf[9] = 0;
    memcpy(buf + 10, fortran, strlen(fortran));
    put("near_fortran.npy", buf, 10 + strlen(fortran));
}

/* ---------------------------------------------------------------------------------------- */

static void csv_corpus(void) {
    enter("csv");
    dm_error err = {0};
    dm_dataset ds;
    if (dm_dataset_init(&ds, 6, 2, &err)) fail("csv", &err);
    for (int i = 0; i < 12; i++) ds.x[i] = (float)(i * 0.7 - 3.1);
    if (dm_dataset_save(&ds, at("written.csv"), &err)) fail("written.csv", &err);
    dm_dataset_free(&ds);
    put_str("header.csv", "x,y\n0.5,1\n-2,3e-2\n1e10, -0\n");
    put_str("spaces.csv", "# whitespace separated\n1 2 3\n\t4\t5\t6\n\n7   8 9\r\n");
    put_str("bom_comments.csv", "\xEF\xBB\xBF# a comment\nx y\n# another\n0x1p3 .5\n-1.e2 +2\n");
    put_str("one_column.csv", "value\n1\n2\n3\n");
    put_str("near_nan.csv", "1,2\n3,nan\n");
    put_str("near_ragged.csv", "1,2\n3,4,5\n");
    put_str("near_range.csv", "1,3.5e38\n");
}

/* ---------------------------------------------------------------------------------------- */

/* A PNG through libpng with the given colour type, bit depth and interlace. */
static void png_variant(const char *name, int w, int h, int color, int depth, int interlace) {
    FILE *f = fopen(at(name), "wb");
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!f || !info || setjmp(png_jmpbuf(png))) fail(name, NULL);
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, depth, color, interlace,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (color == PNG_COLOR_TYPE_PALETTE) {
        png_color pal[4] = {{0, 0, 0}, {255, 0, 0}, {0, 255, 0}, {20, 40, 250}};
        png_byte trans[2] = {0, 128};
        png_set_PLTE(png, info, pal, 4);
        png_set_tRNS(png, info, trans, 2, NULL);
    }
    png_write_info(png, info);
    int channels = color == PNG_COLOR_TYPE_RGB         ? 3
                   : color == PNG_COLOR_TYPE_RGB_ALPHA  ? 4
                   : color == PNG_COLOR_TYPE_GRAY_ALPHA ? 2
                                                        : 1;
    size_t row_bytes = ((size_t)w * (size_t)channels * (size_t)depth + 7) / 8;
    png_byte rows[16][128];
    png_bytep ptrs[16];
    for (int y = 0; y < h; y++) {
        for (size_t x = 0; x < row_bytes; x++) rows[y][x] = (png_byte)(x * 29 + (size_t)y * 71);
        ptrs[y] = rows[y];
    }
    png_write_image(png, ptrs);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    fclose(f);
}

static void stbi_put(void *ctx, void *data, int size) { fwrite(data, 1, (size_t)size, ctx); }

static void jpeg(const char *name, int w, int h, int comp, int quality) {
    uint8_t px[16 * 16 * 3];
    for (int i = 0; i < w * h * comp; i++) px[i] = (uint8_t)(i * 13 + (i / (w * comp)) * 40);
    FILE *f = fopen(at(name), "wb");
    if (!f || !stbi_write_jpg_to_func(stbi_put, f, w, h, comp, px, quality) || fclose(f))
        fail(name, NULL);
}

/* JPEG segment FF m, length, payload at out; returns its bytes. */
static size_t jseg(uint8_t *out, int m, const void *payload, size_t len) {
    out[0] = 0xFF, out[1] = (uint8_t)m, out[2] = (uint8_t)((len + 2) >> 8);
    out[3] = (uint8_t)(len + 2);
    memcpy(out + 4, payload, len);
    return 4 + len;
}

/* Grey 8-bit JPEGs by hand, every block 0 (DC code "0", end of block "0"): stb_image_write
 * makes only baseline files without restarts. kind 0: progressive 16 x 16 (a DC scan, then an
 * AC scan whose table is defined after the first scan); kind 1: baseline 16 x 16 with a restart
 * marker after every block. */
static void hand_jpeg(const char *name, int kind) {
    uint8_t out[512], p[80];
    size_t n = 0;
    out[n++] = 0xFF, out[n++] = 0xD8;
    p[0] = 0;
    memset(p + 1, 1, 64);
    n += jseg(out + n, 0xDB, p, 65);
    const uint8_t sof[] = {8, 0, 16, 0, 16, 1, 1, 0x11, 0};
    n += jseg(out + n, kind == 0 ? 0xC2 : 0xC0, sof, sizeof sof);
    const uint8_t dc[17] = {0x00, 1}, ac[17] = {0x10, 1}; /* one 1-bit code: symbol 0 */
    uint8_t table[18] = {0};
    memcpy(table, dc, 17);
    n += jseg(out + n, 0xC4, table, 18);
    if (kind == 0) {
        const uint8_t dc_scan[] = {1, 1, 0x00, 0, 0, 0}, ac_scan[] = {1, 1, 0x00, 1, 63, 0};
        n += jseg(out + n, 0xDA, dc_scan, sizeof dc_scan);
        out[n++] = 0x0F; /* four blocks: DC "0" each, then padding */
        memcpy(table, ac, 17);
        n += jseg(out + n, 0xC4, table, 18);
        n += jseg(out + n, 0xDA, ac_scan, sizeof ac_scan);
        out[n++] = 0x0F; /* four end-of-block codes */
    } else {
        memcpy(table, ac, 17);
        n += jseg(out + n, 0xC4, table, 18);
        const uint8_t dri[] = {0, 1}, scan[] = {1, 1, 0x00, 0, 63, 0};
        n += jseg(out + n, 0xDD, dri, sizeof dri);
        n += jseg(out + n, 0xDA, scan, sizeof scan);
        for (int b = 0; b < 4; b++) { /* a block ("00"), then RST0..RST2 between blocks */
            out[n++] = 0x3F;
            if (b < 3) out[n++] = 0xFF, out[n++] = (uint8_t)(0xD0 + b);
        }
    }
    out[n++] = 0xFF, out[n++] = 0xD9;
    put(name, out, n);
}

/* An image folder cache file (src/data/image_cache.c's layout: a 4096-byte header of
 * little-endian u64 fields, the pixels, the int32 labels), sealed as a build seals it. */
static void put_cache(const char *name, uint64_t n, uint64_t c, uint64_t h, uint64_t w,
                      uint64_t classes, const int32_t *labels, size_t cut) {
    const size_t pixels = (size_t)(n * c * h * w), size = 4096 + pixels + (classes ? 4 * n : 0);
    uint8_t *b = calloc(1, size);
    if (!b) fail("cache", NULL);
    const uint64_t fields[7] = {0xC0FFEE, n, c, h, w, classes, 0};
    for (int f = 0; f < 7; f++)
        for (int i = 0; i < 8; i++) b[8 + 8 * f + i] = (uint8_t)(fields[f] >> (8 * i));
    for (size_t i = 0; i < pixels; i++) b[4096 + i] = (uint8_t)(i * 29 + 3);
    for (uint64_t i = 0; classes && i < n; i++)
        for (int k = 0; k < 4; k++)
            b[4096 + pixels + 4 * i + k] = (uint8_t)((uint32_t)labels[i] >> (8 * k));
    dm_image_cache_seal(b, size);
    put(name, b, size - cut);
    free(b);
}

static void image_cache_corpus(void) {
    enter("image_cache");
    const int32_t labels[3] = {0, 2, 1}, bad[3] = {0, 5, 1};
    put_cache("labelled.u8", 3, 1, 4, 4, 3, labels, 0);
    put_cache("unlabelled.u8", 2, 1, 4, 4, 0, NULL, 0);
    put_cache("colour.u8", 2, 3, 2, 2, 0, NULL, 0);
    put_cache("near_bad_label.u8", 3, 1, 4, 4, 3, bad, 0);
    put_cache("near_truncated.u8", 3, 1, 4, 4, 3, labels, 5);
}

static void image_corpus(void) {
    enter("image");
    dm_error err = {0};
    float x[3 * 5 * 3];
    for (int i = 0; i < 45; i++) x[i] = (float)i / 22 - 1;
    if (dm_image_write_png(at("grey.png"), x, 1, 4, 4, 1, &err) ||
        dm_image_write_png(at("rgb.png"), x, 3, 5, 3, 1, &err))
        fail("png", &err);
    png_variant("palette.png", 6, 5, PNG_COLOR_TYPE_PALETTE, 2, PNG_INTERLACE_NONE);
    png_variant("grey_alpha.png", 3, 7, PNG_COLOR_TYPE_GRAY_ALPHA, 8, PNG_INTERLACE_NONE);
    png_variant("rgba.png", 5, 2, PNG_COLOR_TYPE_RGB_ALPHA, 8, PNG_INTERLACE_NONE);
    png_variant("rgb16.png", 3, 3, PNG_COLOR_TYPE_RGB, 16, PNG_INTERLACE_NONE);
    png_variant("interlaced.png", 9, 9, PNG_COLOR_TYPE_RGB, 8, PNG_INTERLACE_ADAM7);
    png_variant("bit1.png", 10, 4, PNG_COLOR_TYPE_GRAY, 1, PNG_INTERLACE_NONE);
    jpeg("grey.jpg", 8, 8, 1, 90);
    jpeg("rgb_420.jpg", 16, 12, 3, 50);
    jpeg("rgb_444.jpg", 5, 7, 3, 95);
    hand_jpeg("progressive.jpg", 0);
    hand_jpeg("restarts.jpg", 1);
    put_prefix("near_truncated.png", "rgb.png", 60);
}

/* ---------------------------------------------------------------------------------------- */

static void args_corpus(void) {
    enter("args");
    static const struct {
        const char *name, *argv;
        size_t len;
    } files[] = {
#define ARGV(name, s) {name, s, sizeof s - 1}
        ARGV("all_kinds", "--flag\0--int\0-3\0--steps=1e5\0--seed\00042\0--lr\0-2.5e-3\0--name\0"
                          "swissroll"),
        ARGV("help", "--steps\00010\0--help"),
        ARGV("names", "--prediction=v\0epsilon\0cosine\0hybrid\0beta-tilde\0importance\0ddim\0"
                      "unet-28\0moons"),
        ARGV("bad_value", "--int\0002147483648"),
        ARGV("missing_value", "--lr"),
        ARGV("flag_value", "--flag=1"),
        ARGV("unknown", "--nope\0x"),
#undef ARGV
    };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        put(files[i].name, files[i].argv, files[i].len);
}

/* ---------------------------------------------------------------------------------------- */

/* The file `name` of a run folder (fuzz_run.h) copied to DIR/as. */
static void copy_file(const char *from, const char *as) {
    static char buf[1 << 20];
    FILE *f = fopen(from, "rb");
    size_t got = f ? fread(buf, 1, sizeof buf, f) : 0;
    if (!f || got == sizeof buf) fail(from, NULL);
    fclose(f);
    put(as, buf, got);
}

static void run_corpus(const char *harness, int learned, const char *file) {
    enter(harness);
    char run[600], path[700];
    snprintf(run, sizeof run, "%s/../.run-%s", dir, harness);
    fz_rm_tree(run);
    fz_run_make(run, learned);
    snprintf(path, sizeof path, "%s/%s", run, file);
    copy_file(path, "saved.safetensors");
    fz_rm_tree(run);
    FILE *f = fopen(at("saved.safetensors"), "rb");
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fclose(f);
    put_prefix("near_truncated.safetensors", "saved.safetensors", (size_t)n - 9);
}

static void unet_weights_corpus(void) {
    enter("unet_weights");
    dm_unet_config cfg;
    fz_small_unet(&cfg);
    dm_model *m;
    dm_error err = {0};
    if (dm_unet_create(&m, &cfg, 1, &err) ||
        dm_model_weights_save(m, dm_model_params(m), at("small.safetensors"), &err))
        fail("unet weights", &err);
    dm_model_free(m);
    FILE *f = fopen(at("small.safetensors"), "rb");
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fclose(f);
    put_prefix("near_truncated.safetensors", "small.safetensors", (size_t)n - 5);
}

static void eval_lists_corpus(void) {
    enter("eval_lists");
    put_str("steps_default", "5,10,20,50,100,200,1000");
    put_str("samplers", "ddpm,ddim,dpmpp-2m");
    put_str("scales", "0,0.5,1.5,3,7.5");
    put_str("class_all", "all");
    put_str("class_3", "3");
    put_str("near_class", "-1");
    put_str("near_scales", "1,,2,-0.5,inf");
    char many[200] = "";
    for (int i = 1; i <= 40; i++) snprintf(many + strlen(many), sizeof many - strlen(many), "%d,", i);
    put_str("near_many", many);
}

/* Trees for fuzz_image_walk (the format is in fuzz/fuzz_image_walk.c): options, then records
 * op, parent, arg, name length, name (bytes index "abAB.-_pngjpegPNGJPG": a=0 b=1 A=2 B=3 .=4
 * -=5 _=6 p=7 n=8 g=9 j=10 e=13 P=14 N=15 G=16 J=17). */
static void image_walk_corpus(void) {
    enter("image_walk");
#define T(name, s) put(name, s, sizeof s - 1)
    /* a.png, b.png (grey PNGs) at the top */
    T("flat", "\x00" "\x01\x00\x00\x05" "\x00\x04\x07\x08\x09" "\x01\x00\x00\x05" "\x01\x04\x07\x08\x09");
    /* class folders a and b, each with a grey JPEG and a grey PNG; resized to 8 */
    T("classes", "\x01" "\x00\x00\x00\x01" "\x00" "\x00\x00\x00\x01" "\x01"
                 "\x01\x01\x02\x05" "\x00\x04\x0a\x07\x09" "\x01\x01\x00\x05" "\x01\x04\x07\x08\x09"
                 "\x01\x02\x02\x05" "\x00\x04\x0a\x07\x09" "\x01\x02\x00\x05" "\x01\x04\x07\x08\x09");
    /* a.png, then b.png a link to itself */
    T("loop", "\x00" "\x01\x00\x00\x05" "\x00\x04\x07\x08\x09" "\x02\x00\x01\x05" "\x01\x04\x07\x08\x09");
    /* a.png, a FIFO b.png, a dangling link B.PNG, a hidden .png */
    T("fifo", "\x00" "\x01\x00\x00\x05" "\x00\x04\x07\x08\x09" "\x03\x00\x00\x05" "\x01\x04\x07\x08\x09"
              "\x02\x00\x04\x05" "\x03\x04\x0e\x0f\x10" "\x01\x00\x00\x04" "\x04\x07\x08\x09");
    /* RGB PNG and RGB JPEG, 3 channels, size 8, mirrored */
    T("colour", "\x0d" "\x01\x00\x01\x05" "\x00\x04\x07\x08\x09" "\x01\x00\x03\x05" "\x01\x04\x0a\x07\x09");
#undef T
}

/* diffusers' scheduler_config.json: the test fixtures diffusers itself wrote (DDIM with Stable
 * Diffusion's settings, DDPM with ddpm-cifar10-32's, DPM-Solver++ with Python's -Infinity), ours
 * (dm_checkpoint_write_diffusers_pipeline: trained_betas of T = 10), by hand the keys the
 * fixtures leave at their defaults, and near-valid files the reader must refuse. */
static void scheduler_config_corpus(void) {
    enter("scheduler_config");
    copy_file("tests/fixtures/diffusers-pipelines/ddim-trailing/scheduler/scheduler_config.json",
              "ddim-trailing.json");
    copy_file("tests/fixtures/diffusers-pipelines/ddpm-cifar-flags/scheduler/"
              "scheduler_config.json", "ddpm-cifar-flags.json");
    copy_file("tests/sanitizers/dpmsolver-scheduler.json", "dpmsolver.json");
    char pipe[600], path[700];
    snprintf(pipe, sizeof pipe, "%s/../.pipe-scheduler_config", dir);
    fz_rm_tree(pipe);
    if (mkdir(pipe, 0755) != 0) fail(pipe, NULL);
    dm_train_config t;
    dm_train_config_default(&t);
    t.schedule.T = 10;
    dm_schedule s;
    dm_error err = {0};
    if (dm_schedule_init(&s, &t.schedule, &err) ||
        dm_checkpoint_write_diffusers_pipeline(pipe, &s, &t, &err))
        fail("diffusers pipeline", &err);
    dm_schedule_free(&s);
    snprintf(path, sizeof path, "%s/" DM_CKPT_SCHEDULER_CONFIG, pipe);
    copy_file(path, "ours-trained-betas-10.json");
    fz_rm_tree(pipe);
    put_str("ddpm-thresholding.json",
            "{\"_class_name\": \"DDPMScheduler\", \"num_train_timesteps\": 50, \"beta_schedule\": "
            "\"squaredcos_cap_v2\", \"prediction_type\": \"v_prediction\", \"variance_type\": "
            "\"learned_range\", \"thresholding\": true, \"dynamic_thresholding_ratio\": 0.9, "
            "\"sample_max_value\": 2.5, \"timestep_spacing\": \"trailing\"}\n");
    put_str("ddpm-sigmoid-trailing.json",
            "{\"_class_name\": \"DDPMScheduler\", \"num_train_timesteps\": 20, \"beta_schedule\": "
            "\"sigmoid\", \"beta_start\": 0.001, \"beta_end\": 0.2, \"variance_type\": "
            "\"fixed_small_log\", \"timestep_spacing\": \"trailing\", \"clip_sample\": false}\n");
    put_str("ddim-trained-betas-10.json",
            "{\"_class_name\": \"DDIMScheduler\", \"num_train_timesteps\": 10, \"trained_betas\": "
            "[0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.09, 0.1], \"set_alpha_to_one\": "
            "true, \"timestep_spacing\": \"linspace\", \"prediction_type\": \"sample\", "
            "\"clip_sample_range\": 2.0, \"steps_offset\": 0}\n");
    put_str("dpm-trailing-clipped.json",
            "{\"_class_name\": \"DPMSolverMultistepScheduler\", \"num_train_timesteps\": 100, "
            "\"beta_schedule\": \"scaled_linear\", \"beta_start\": 0.00085, \"beta_end\": 0.012, "
            "\"algorithm_type\": \"deis\", \"solver_type\": \"heun\", \"solver_order\": 1, "
            "\"final_sigmas_type\": \"sigma_min\", \"euler_at_final\": true, "
            "\"lambda_min_clipped\": -5.1, \"variance_type\": \"learned_range\", "
            "\"timestep_spacing\": \"trailing\", \"steps_offset\": 1}\n");
    put_str("dpm-python-tokens.json",
            "{\"_class_name\": \"DPMSolverMultistepScheduler\", \"_diffusers_version\": NaN, "
            "\"_use_default_values\": [Infinity, -Infinity, \"NaN\"], \"lambda_min_clipped\": "
            "-Infinity, \"timestep_spacing\": \"leading\"}\n");
    put_str("dpm-minimal.json", "{\"_class_name\": \"DPMSolverMultistepScheduler\"}");
    put_str("near_nan.json", "{\"_class_name\": \"DDPMScheduler\", \"beta_start\": NaN}\n");
    put_str("near_infinity.json",
            "{\"_class_name\": \"DDIMScheduler\", \"sample_max_value\": Infinity}\n");
    put_str("near_unknown_key.json", "{\"_class_name\": \"DDIMScheduler\", \"eta\": 0.0}\n");
    put_str("near_trained_betas.json",
            "{\"_class_name\": \"DDPMScheduler\", \"num_train_timesteps\": 10, \"trained_betas\": "
            "[0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.09]}\n");
    put_str("near_sigmoid_ddim.json",
            "{\"_class_name\": \"DDIMScheduler\", \"beta_schedule\": \"sigmoid\"}\n");
    put_str("near_order3.json",
            "{\"_class_name\": \"DPMSolverMultistepScheduler\", \"solver_order\": 3}\n");
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s OUT_DIR (e.g. fuzz/corpus)\n", argv[0]);
        return 2;
    }
    out_dir = argv[1];
    if (mkdir(out_dir, 0755) != 0 && errno != EEXIST) fail(out_dir, NULL);
    safetensors_corpus();
    ckpt_config_corpus();
    classifier_config_corpus();
    unet_config_corpus();
    idx_corpus();
    npy_corpus();
    csv_corpus();
    image_corpus();
    image_cache_corpus();
    args_corpus();
    run_corpus("train_state", 0, DM_CKPT_STATE);
    run_corpus("schedule", 1, DM_CKPT_SCHEDULE);
    unet_weights_corpus();
    eval_lists_corpus();
    image_walk_corpus();
    scheduler_config_corpus();
    return 0;
}
