/* UNet2DModel configuration: presets, validation, and diffusers' config.json read and write. */
#include "core/core.h"
#include "io/json_file.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const dm_unet_preset_names[] = {"unet-28",       "cifar-ddpm",      "tiny",
                                            "classifier-28", "classifier-tiny", NULL};

/* Fields of diffusers' UNet2DModel defaults that no preset changes. */
static void common_defaults(dm_unet_config *c) {
    memset(c, 0, sizeof *c);
    c->norm_eps = 1e-5;
    c->add_attention = 1;
    c->flip_sin_to_cos = 1;
    c->freq_shift = 0;
    c->downsample_padding = 1;
}

void dm_unet_config_default(dm_unet_config *c) {
    common_defaults(c);
    c->sample_size = 28;
    c->in_channels = c->out_channels = 1;
    c->levels = 3;
    c->block_out_channels[0] = 32, c->block_out_channels[1] = 64, c->block_out_channels[2] = 64;
    c->down_attention[1] = 1; /* DownBlock2D, AttnDownBlock2D, DownBlock2D */
    c->up_attention[1] = 1;   /* UpBlock2D, AttnUpBlock2D, UpBlock2D */
    c->layers_per_block = 2;
    c->norm_num_groups = 8;
    c->attention_head_dim = 8;
}

dm_status dm_unet_preset(dm_unet_config *c, const char *name, dm_error *err) {
    if (!name) return dm_error_set(err, DM_ERR_ARG, "no UNet preset named");
    if (strcmp(name, "unet-28") == 0) {
        dm_unet_config_default(c);
    } else if (strcmp(name, "cifar-ddpm") == 0) {
        /* Ho et al.'s CIFAR-10 model as diffusers' google/ddpm-cifar10-32 configures it */
        common_defaults(c);
        c->sample_size = 32;
        c->in_channels = c->out_channels = 3;
        c->levels = 4;
        c->block_out_channels[0] = 128;
        c->block_out_channels[1] = c->block_out_channels[2] = c->block_out_channels[3] = 256;
        c->down_attention[1] = 1; /* Down, AttnDown, Down, Down */
        c->up_attention[2] = 1;   /* Up, Up, AttnUp, Up */
        c->layers_per_block = 2;
        c->norm_num_groups = 32;
        c->norm_eps = 1e-6;
        c->attention_head_dim = 0; /* one head */
        c->flip_sin_to_cos = 0;
        c->freq_shift = 1;
        c->downsample_padding = 0;
        c->dropout = 0.1;
    } else if (strcmp(name, "tiny") == 0) {
        /* the shape of the diffusers fixtures in shared/fixtures/diffusers-unet-tiny */
        common_defaults(c);
        c->sample_size = 8;
        c->in_channels = c->out_channels = 1;
        c->levels = 2;
        c->block_out_channels[0] = 8, c->block_out_channels[1] = 16;
        c->down_attention[1] = 1; /* DownBlock2D, AttnDownBlock2D */
        c->up_attention[0] = 1;   /* AttnUpBlock2D, UpBlock2D */
        c->layers_per_block = 1;
        c->norm_num_groups = 4;
        c->attention_head_dim = 4;
    } else if (strcmp(name, "classifier-28") == 0) {
        /* the encoder of a UNet as Dhariwal & Nichol's noisy classifiers, sized for 28x28:
         * 1 resnet a level (32, 64, 128), attention only in the mid block at 7x7 */
        common_defaults(c);
        c->sample_size = 28;
        c->in_channels = c->out_channels = 1;
        c->levels = 3;
        c->block_out_channels[0] = 32, c->block_out_channels[1] = 64;
        c->block_out_channels[2] = 128;
        c->layers_per_block = 1;
        c->norm_num_groups = 8;
        c->attention_head_dim = 32;
        c->classifier_classes = 10;
    } else if (strcmp(name, "classifier-tiny") == 0) {
        common_defaults(c);
        c->sample_size = 8;
        c->in_channels = c->out_channels = 1;
        c->levels = 2;
        c->block_out_channels[0] = 8, c->block_out_channels[1] = 16;
        c->down_attention[1] = 1;
        c->layers_per_block = 1;
        c->norm_num_groups = 4;
        c->attention_head_dim = 4;
        c->classifier_classes = 4;
    } else {
        return dm_error_set(err, DM_ERR_ARG,
                            "unknown UNet preset \"%s\" (known: unet-28, cifar-ddpm, tiny, "
                            "classifier-28, classifier-tiny)",
                            name);
    }
    return DM_OK;
}

dm_status dm_unet_config_validate(const dm_unet_config *c, dm_error *err) {
    if (c->levels < 1 || c->levels > DM_UNET_MAX_LEVELS)
        return dm_error_set(err, DM_ERR_ARG, "block_out_channels: %d entries, must be 1..%d",
                            (int)c->levels, DM_UNET_MAX_LEVELS);
    if (c->in_channels < 1 || c->in_channels > 64 || c->out_channels < 1 || c->out_channels > 64)
        return dm_error_set(err, DM_ERR_ARG,
                            "in_channels %lld, out_channels %lld: each must be 1..64",
                            (long long)c->in_channels, (long long)c->out_channels);
    const int64_t step = (int64_t)1 << (c->levels - 1);
    if (c->sample_size < 1 || c->sample_size > 4096 || c->sample_size % step)
        return dm_error_set(err, DM_ERR_ARG,
                            "sample_size %lld: must be 1..4096 and divisible by %lld (halved %d "
                            "times)",
                            (long long)c->sample_size, (long long)step, (int)c->levels - 1);
    if (c->layers_per_block < 1 || c->layers_per_block > 8)
        return dm_error_set(err, DM_ERR_ARG, "layers_per_block %lld: must be 1..8",
                            (long long)c->layers_per_block);
    if (c->norm_num_groups < 1)
        return dm_error_set(err, DM_ERR_ARG, "norm_num_groups %lld: must be >= 1",
                            (long long)c->norm_num_groups);
    if (c->attention_head_dim < 0) /* the head count is channels / attention_head_dim */
        return dm_error_set(err, DM_ERR_ARG, "attention_head_dim %lld: must be >= 1 (or null)",
                            (long long)c->attention_head_dim);
    if (c->attn_norm_num_groups < 0)
        return dm_error_set(err, DM_ERR_ARG, "attn_norm_num_groups %lld: must be >= 1 (or null)",
                            (long long)c->attn_norm_num_groups);
    if (!(c->norm_eps > 0 && c->norm_eps < 1))
        return dm_error_set(err, DM_ERR_ARG, "norm_eps %g: must be in (0, 1)", c->norm_eps);
    if (!(c->dropout >= 0 && c->dropout < 1))
        return dm_error_set(err, DM_ERR_ARG, "dropout %g: must be in [0, 1)", c->dropout);
    if (c->downsample_padding != 0 && c->downsample_padding != 1)
        return dm_error_set(err, DM_ERR_ARG, "downsample_padding %d: must be 0 or 1",
                            (int)c->downsample_padding);
    if (c->num_class_embeds < 0 || c->num_class_embeds > 1000000)
        return dm_error_set(err, DM_ERR_ARG, "num_class_embeds %lld: must be 0..1000000",
                            (long long)c->num_class_embeds);
    if (c->classifier_classes < 0 || c->classifier_classes > 1000000)
        return dm_error_set(err, DM_ERR_ARG, "classifier_classes %lld: must be 0..1000000",
                            (long long)c->classifier_classes);
    if (c->fourier_features != 0 && c->fourier_features != 1)
        return dm_error_set(err, DM_ERR_ARG, "fourier_features %d: must be 0 or 1",
                            (int)c->fourier_features);
    if (c->fourier_features && c->classifier_classes)
        return dm_error_set(err, DM_ERR_ARG, "fourier_features: the encoder classifier has none "
                            "(only the diffusion UNet, our FourierUNet2DModel)");
    if (!isfinite(c->freq_shift))
        return dm_error_set(err, DM_ERR_ARG, "freq_shift %g: not finite", c->freq_shift);
    /* diffusers passes attn_norm_num_groups to the mid block's attention only (null there:
     * norm_num_groups, with resnet_time_scale_shift "default"); the down and up blocks'
     * attentions always use norm_num_groups */
    const int64_t mid_groups = c->attn_norm_num_groups ? c->attn_norm_num_groups
                                                       : c->norm_num_groups;
    for (int i = 0; i < c->levels; i++) {
        const int64_t ch = c->block_out_channels[i];
        if (ch < 1 || ch > 8192)
            return dm_error_set(err, DM_ERR_ARG, "block_out_channels[%d] = %lld: must be 1..8192",
                                i, (long long)ch);
        /* every GroupNorm but the mid attention's sees block channels or sums of them, so this
         * covers them all */
        if (ch % c->norm_num_groups)
            return dm_error_set(err, DM_ERR_ARG,
                                "block_out_channels[%d] = %lld does not divide into "
                                "norm_num_groups = %lld",
                                i, (long long)ch, (long long)c->norm_num_groups);
        const bool mid_attn = i == c->levels - 1 && c->add_attention;
        const bool attn = c->down_attention[i] || c->up_attention[c->levels - 1 - i] || mid_attn;
        if (attn && c->attention_head_dim && ch % c->attention_head_dim)
            return dm_error_set(err, DM_ERR_ARG,
                                "attention_head_dim %lld does not divide the %lld channels of an "
                                "attention block",
                                (long long)c->attention_head_dim, (long long)ch);
        if (mid_attn && ch % mid_groups)
            return dm_error_set(err, DM_ERR_ARG,
                                "attn_norm_num_groups %lld does not divide the %lld channels of "
                                "the mid block's attention",
                                (long long)mid_groups, (long long)ch);
    }
    return DM_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* config.json                                                                              */
/*
 * Every key of diffusers 0.31's UNet2DModel.__init__ is honoured as diffusers honours it or
 * refused with the key, its value and the file named; keys starting with "_" are metadata, as
 * in diffusers' ConfigMixin (which drops them), except "_class_name" (checked) and
 * "_use_default_values" (keys listed there are read as absent, as diffusers reads them). A key
 * UNet2DModel does not take is refused by name: diffusers would warn and ignore it. docs/
 * unet-config.md has the table. */

/* UNet2DModel.__init__'s parameters in diffusers 0.31.0 */
static const char *const unet2d_keys[] = {
    "sample_size",         "in_channels",        "out_channels",     "center_input_sample",
    "time_embedding_type", "freq_shift",         "flip_sin_to_cos",  "down_block_types",
    "up_block_types",      "block_out_channels", "layers_per_block", "mid_block_scale_factor",
    "downsample_padding",  "downsample_type",    "upsample_type",    "dropout",
    "act_fn",              "attention_head_dim", "norm_num_groups",  "attn_norm_num_groups",
    "norm_eps",            "resnet_time_scale_shift", "add_attention", "class_embed_type",
    "num_class_embeds",    "num_train_timesteps", NULL};

typedef struct {
    const cJSON *root;
    const cJSON *use_defaults; /* "_use_default_values": keys read as absent; or NULL */
    const char *path;
    dm_error *err;
} json_ctx;

static const cJSON *item(const json_ctx *j, const char *key) {
    const cJSON *d;
    if (j->use_defaults)
        cJSON_ArrayForEach(d, j->use_defaults) {
            if (cJSON_IsString(d) && strcmp(d->valuestring, key) == 0) return NULL;
        }
    return cJSON_GetObjectItemCaseSensitive(j->root, key);
}

/* A JSON value as a short text for messages. */
static const char *describe(const cJSON *v, char *buf, size_t n) {
    if (!v) {
        snprintf(buf, n, "(absent)");
    } else if (cJSON_IsString(v)) {
        snprintf(buf, n, "\"%.60s\"%s", v->valuestring, strlen(v->valuestring) > 60 ? "..." : "");
    } else if (cJSON_IsNumber(v)) {
        snprintf(buf, n, "%.9g", v->valuedouble);
    } else if (cJSON_IsBool(v)) {
        snprintf(buf, n, "%s", cJSON_IsTrue(v) ? "true" : "false");
    } else if (cJSON_IsNull(v)) {
        snprintf(buf, n, "null");
    } else if (cJSON_IsArray(v)) {
        /* [a, b, ...]: the first few entries */
        size_t len = (size_t)snprintf(buf, n, "[");
        const cJSON *e;
        int k = 0;
        cJSON_ArrayForEach(e, v) {
            char one[80];
            if (len + 8 >= n || k == 4) {
                len += (size_t)snprintf(buf + len, n - len, "%s...", k ? ", " : "");
                break;
            }
            if (cJSON_IsArray(e) || cJSON_IsObject(e))
                snprintf(one, sizeof one, "%s", cJSON_IsArray(e) ? "[...]" : "{...}");
            else
                describe(e, one, sizeof one);
            len += (size_t)snprintf(buf + len, n - len, "%s%s", k++ ? ", " : "", one);
            if (len >= n) break;
        }
        if (len < n) snprintf(buf + len, n - len, "]");
    } else {
        snprintf(buf, n, "an object");
    }
    return buf;
}

/* DM_ERR_FORMAT: path: "key" = value <what> */
static dm_status refuse(const json_ctx *j, const char *key, const cJSON *v, const char *what) {
    char buf[96];
    return dm_error_set(j->err, DM_ERR_FORMAT, "%s: \"%s\" = %s %s", j->path, key,
                        describe(v, buf, sizeof buf), what);
}

/* A JSON number that is a whole number of at most 1e9 in magnitude (every field here is far
 * smaller; casting a larger double to int64_t is undefined behaviour). */
static bool json_int(const cJSON *v, int64_t *out) {
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) ||
        fabs(v->valuedouble) > 1e9)
        return false;
    *out = (int64_t)v->valuedouble;
    return true;
}

/* An integer field; absent keeps *out (the default); null_value is stored for null when null is
 * allowed (null_value >= 0). */
static dm_status get_int(const json_ctx *j, const char *key, int64_t *out, int64_t null_value) {
    const cJSON *v = item(j, key);
    if (!v) return DM_OK;
    if (cJSON_IsNull(v) && null_value >= 0) {
        *out = null_value;
        return DM_OK;
    }
    if (!json_int(v, out))
        return refuse(j, key, v,
                      null_value >= 0 ? "must be an integer or null" : "must be an integer");
    return DM_OK;
}

static dm_status get_double(const json_ctx *j, const char *key, double *out) {
    const cJSON *v = item(j, key);
    if (!v) return DM_OK;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return refuse(j, key, v, "must be a finite number");
    *out = v->valuedouble;
    return DM_OK;
}

static dm_status get_bool(const json_ctx *j, const char *key, int32_t *out) {
    const cJSON *v = item(j, key);
    if (!v) return DM_OK;
    if (!cJSON_IsBool(v)) return refuse(j, key, v, "must be true or false");
    *out = cJSON_IsTrue(v);
    return DM_OK;
}

static bool is_string(const cJSON *v, const char *s) {
    return cJSON_IsString(v) && strcmp(v->valuestring, s) == 0;
}

/* ASCII case-insensitive equality (diffusers' get_activation lower-cases the name) */
static bool same_lower(const char *a, const char *b) {
    for (; *a && *b; a++, b++) {
        const char ca = *a >= 'A' && *a <= 'Z' ? (char)(*a - 'A' + 'a') : *a;
        if (ca != *b) return false;
    }
    return *a == *b;
}

/* down_block_types / up_block_types: each entry one of the two names, or either with diffusers'
 * "UNetRes" prefix (get_down_block / get_up_block strip it); attention flags out. */
static dm_status get_block_types(const json_ctx *j, const char *key, const char *plain,
                                 const char *attn, int32_t *flags, int32_t levels) {
    const cJSON *arr = item(j, key);
    if (!arr) return DM_OK;
    if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) != levels) {
        char what[96];
        snprintf(what, sizeof what, "must list %d block types, one per block_out_channels entry",
                 (int)levels);
        return refuse(j, key, arr, what);
    }
    int i = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, arr) {
        const char *name = cJSON_IsString(v) ? v->valuestring : "";
        if (strncmp(name, "UNetRes", 7) == 0) name += 7;
        if (cJSON_IsString(v) && strcmp(name, plain) == 0)
            flags[i] = 0;
        else if (cJSON_IsString(v) && strcmp(name, attn) == 0)
            flags[i] = 1;
        else {
            char buf[96], k[64];
            snprintf(k, sizeof k, "%s[%d]", key, i);
            snprintf(buf, sizeof buf, "is not supported (only \"%s\" or \"%s\")", plain, attn);
            return refuse(j, k, v, buf);
        }
        i++;
    }
    return DM_OK;
}

/* downsample_type / upsample_type: diffusers passes them to AttnDownBlock2D / AttnUpBlock2D
 * only, where they pick the resampler of a block that resamples ("conv", or "conv" for null;
 * "resnet" a ResnetBlock2D). DownBlock2D and UpBlock2D always resample by convolution. So
 * "resnet" is refused where an attention block resamples and has no effect elsewhere. */
static dm_status check_resample_type(const json_ctx *j, const char *key, const int32_t *attn,
                                     int32_t levels, const char *block) {
    const cJSON *v = item(j, key);
    if (!v || cJSON_IsNull(v) || is_string(v, "conv")) return DM_OK;
    if (!is_string(v, "resnet"))
        return refuse(j, key, v, "is not supported (only \"conv\", or \"resnet\" where no "
                                 "attention block resamples)");
    for (int i = 0; i < levels - 1; i++) /* the last block does not resample */
        if (attn[i]) {
            char what[160];
            snprintf(what, sizeof what,
                     "is not supported: %s_blocks.%d is an %s, whose resampler would be a "
                     "ResnetBlock2D (only \"conv\")",
                     block, i, strcmp(block, "down") == 0 ? "AttnDownBlock2D" : "AttnUpBlock2D");
            return refuse(j, key, v, what);
        }
    return DM_OK;
}

static dm_status parse_unet_json(const json_ctx *j0, dm_unet_config *c) {
    dm_status st;
    json_ctx jc = *j0;
    const json_ctx *j = &jc;

    /* metadata: the class, and the keys diffusers reads as absent */
    const cJSON *cls = cJSON_GetObjectItemCaseSensitive(j->root, "_class_name");
    const bool encoder = is_string(cls, "EncoderClassifier");
    const bool fourier = is_string(cls, "FourierUNet2DModel");
    if (cls && !is_string(cls, "UNet2DModel") && !encoder && !fourier)
        return refuse(j, "_class_name", cls,
                      "is not supported (only \"UNet2DModel\", or our \"EncoderClassifier\" or "
                      "\"FourierUNet2DModel\")");
    const cJSON *defaults = cJSON_GetObjectItemCaseSensitive(j->root, "_use_default_values");
    if (defaults) {
        const cJSON *d;
        bool strings = cJSON_IsArray(defaults);
        cJSON_ArrayForEach(d, defaults) strings = strings && cJSON_IsString(d);
        if (!strings) return refuse(j, "_use_default_values", defaults, "must be a list of keys");
        jc.use_defaults = defaults;
    }
    /* every other key is one UNet2DModel takes (or ours) */
    const cJSON *kv;
    cJSON_ArrayForEach(kv, j->root) {
        const char *k = kv->string;
        bool known = k[0] == '_' || strcmp(k, "mid_block_type") == 0 ||
                     (strcmp(k, "classifier_classes") == 0 && !is_string(cls, "UNet2DModel"));
        for (int i = 0; !known && unet2d_keys[i]; i++) known = strcmp(k, unet2d_keys[i]) == 0;
        if (!known)
            return dm_error_set(j->err, DM_ERR_FORMAT,
                                "%s: \"%.100s\" is not a key of diffusers 0.31's UNet2DModel: "
                                "diffusers would ignore it, refused rather than ignored%s",
                                j->path, k,
                                strcmp(k, "classifier_classes") == 0
                                    ? " (an encoder classifier's config has \"_class_name\": "
                                      "\"EncoderClassifier\")"
                                    : "");
    }

    const cJSON *v;
    /* diffusers' get_activation lower-cases the name; "silu" and "swish" are both nn.SiLU. It is
     * the resnets' activation only (the time MLP and conv_act are always SiLU). */
    if ((v = item(j, "act_fn")) &&
        !(cJSON_IsString(v) &&
          (same_lower(v->valuestring, "silu") || same_lower(v->valuestring, "swish"))))
        return refuse(j, "act_fn", v,
                      "is not supported (only \"silu\" or its alias \"swish\", in any case)");
    if ((v = item(j, "time_embedding_type")) && !is_string(v, "positional"))
        return refuse(j, "time_embedding_type", v, "is not supported (only \"positional\")");
    if ((v = item(j, "resnet_time_scale_shift")) && !is_string(v, "default"))
        return refuse(j, "resnet_time_scale_shift", v,
                      "is not supported (only \"default\": the time embedding added after "
                      "conv1)");
    if ((v = item(j, "class_embed_type")) && !cJSON_IsNull(v))
        return refuse(j, "class_embed_type", v,
                      "is not supported (only null: a class embedding table of "
                      "num_class_embeds rows)");
    /* a key of diffusers >= 0.33 (null there: no mid block); 0.31 ignores it and always builds
     * UNetMidBlock2D, which newer versions build for any name */
    if ((v = item(j, "mid_block_type")) && !is_string(v, "UNetMidBlock2D"))
        return refuse(j, "mid_block_type", v,
                      "is not supported (only \"UNetMidBlock2D\"; null, no mid block, is a "
                      "diffusers >= 0.33 setting)");
    double mid_scale = 1;
    if ((st = get_double(j, "mid_block_scale_factor", &mid_scale))) return st;
    if (mid_scale != 1)
        return refuse(j, "mid_block_scale_factor", item(j, "mid_block_scale_factor"),
                      "is not supported (only 1)");
    /* sizes only diffusers' "learned" time embedding (refused above): no effect otherwise */
    int64_t train_steps = 1;
    if ((st = get_int(j, "num_train_timesteps", &train_steps, 1))) return st;
    if (train_steps < 1)
        return refuse(j, "num_train_timesteps", item(j, "num_train_timesteps"),
                      "must be >= 1 or null");

    /* diffusers' defaults for keys the file leaves out */
    common_defaults(c);
    c->in_channels = c->out_channels = 3;
    c->levels = 4;
    const int64_t boc_default[4] = {224, 448, 672, 896};
    for (int i = 0; i < 4; i++) c->block_out_channels[i] = boc_default[i];
    /* down ("DownBlock2D", "AttnDownBlock2D" x 3), up ("AttnUpBlock2D" x 3, "UpBlock2D") */
    c->down_attention[1] = c->down_attention[2] = c->down_attention[3] = 1;
    c->up_attention[0] = c->up_attention[1] = c->up_attention[2] = 1;
    c->layers_per_block = 2;
    c->norm_num_groups = 32;
    c->attention_head_dim = 8;

    const cJSON *size = item(j, "sample_size");
    int64_t side[2];
    /* [h, w] must be two equal integers: the cast of an unchecked double was undefined
     * behaviour for 1e300 (found by fuzzing) */
    if (cJSON_IsArray(size) && cJSON_GetArraySize(size) == 2 &&
        json_int(cJSON_GetArrayItem(size, 0), &side[0]) &&
        json_int(cJSON_GetArrayItem(size, 1), &side[1]) && side[0] == side[1]) {
        c->sample_size = side[0];
    } else if (!json_int(size, &c->sample_size)) {
        /* diffusers' default, null, leaves the size to the pipeline; ours is fixed */
        return refuse(j, "sample_size", size,
                      "is not supported (only an integer or [n, n]: square images of a size "
                      "the model is built for)");
    }
    const cJSON *boc = item(j, "block_out_channels");
    if (boc) {
        int n = cJSON_IsArray(boc) ? cJSON_GetArraySize(boc) : -1;
        if (n < 1 || n > DM_UNET_MAX_LEVELS)
            return dm_error_set(j->err, DM_ERR_FORMAT,
                                "%s: \"block_out_channels\" must be a list of 1..%d integers",
                                j->path, DM_UNET_MAX_LEVELS);
        c->levels = n;
        memset(c->block_out_channels, 0, sizeof c->block_out_channels);
        for (int i = 0; i < n; i++) {
            /* bounded before the cast: [1e30] was undefined behaviour (found by fuzzing) */
            if (!json_int(cJSON_GetArrayItem(boc, i), &c->block_out_channels[i]))
                return dm_error_set(j->err, DM_ERR_FORMAT,
                                    "%s: \"block_out_channels\"[%d] is not an integer", j->path, i);
        }
    }
    /* diffusers' default block types have 4 entries; other level counts without the lists would
     * be refused by diffusers (lengths differ). We build plain blocks there (an extension for
     * hand-written configs), never diffusers' 4-level pattern cut short. */
    if (c->levels != 4) {
        memset(c->down_attention, 0, sizeof c->down_attention);
        memset(c->up_attention, 0, sizeof c->up_attention);
    }
    int64_t attn_groups = 0, head_dim = c->attention_head_dim, classes = 0, padding = 1;
    if ((st = get_block_types(j, "down_block_types", "DownBlock2D", "AttnDownBlock2D",
                              c->down_attention, c->levels)) ||
        (st = get_block_types(j, "up_block_types", "UpBlock2D", "AttnUpBlock2D", c->up_attention,
                              c->levels)) ||
        (st = check_resample_type(j, "downsample_type", c->down_attention, c->levels, "down")) ||
        (st = check_resample_type(j, "upsample_type", c->up_attention, c->levels, "up")) ||
        (st = get_int(j, "in_channels", &c->in_channels, -1)) ||
        (st = get_int(j, "out_channels", &c->out_channels, -1)) ||
        (st = get_int(j, "layers_per_block", &c->layers_per_block, -1)) ||
        (st = get_int(j, "norm_num_groups", &c->norm_num_groups, -1)) ||
        (st = get_int(j, "attn_norm_num_groups", &attn_groups, 0)) ||
        (st = get_int(j, "attention_head_dim", &head_dim, 0)) ||
        (st = get_int(j, "num_class_embeds", &classes, 0)) ||
        (st = get_int(j, "classifier_classes", &c->classifier_classes, 0)) ||
        (st = get_int(j, "downsample_padding", &padding, -1)) ||
        (st = get_double(j, "norm_eps", &c->norm_eps)) ||
        (st = get_double(j, "freq_shift", &c->freq_shift)) ||
        (st = get_double(j, "dropout", &c->dropout)) ||
        (st = get_bool(j, "add_attention", &c->add_attention)) ||
        (st = get_bool(j, "flip_sin_to_cos", &c->flip_sin_to_cos)) ||
        (st = get_bool(j, "center_input_sample", &c->center_input_sample)))
        return st;
    /* null is no class embedding; 0 would be diffusers' table of no rows, which no label fits */
    if ((v = item(j, "num_class_embeds")) && !cJSON_IsNull(v) && classes < 1)
        return refuse(j, "num_class_embeds", v, "must be >= 1 or null");
    if ((v = item(j, "attn_norm_num_groups")) && !cJSON_IsNull(v) && attn_groups < 1)
        return refuse(j, "attn_norm_num_groups", v, "must be >= 1 or null");
    if ((v = item(j, "attention_head_dim")) && !cJSON_IsNull(v) && head_dim < 1)
        return refuse(j, "attention_head_dim", v, "must be >= 1 or null");
    if (encoder && c->classifier_classes < 1)
        return dm_error_set(j->err, DM_ERR_FORMAT,
                            "%s: an EncoderClassifier needs \"classifier_classes\"", j->path);
    c->attn_norm_num_groups = attn_groups;
    c->attention_head_dim = head_dim;
    c->num_class_embeds = classes;
    c->downsample_padding = (int32_t)padding;
    c->fourier_features = fourier; /* our variant: the class says it, no key of its own */
    if ((st = dm_unet_config_validate(c, j->err))) {
        /* not `return dm_error_prefix(...)`: that returns DM_OK when err is NULL, and an invalid
         * config was accepted (found by fuzzing) */
        dm_error_prefix(j->err, "%s", j->path);
        return st;
    }
    return DM_OK;
}

dm_status dm_unet_config_read(dm_unet_config *c, const char *path, dm_error *err) {
    cJSON *root;
    /* Python's json writes Infinity and NaN: read, then refused by key */
    dm_status st = dm_json_read_python(&root, path, 1 << 20, err);
    if (st) return st;
    json_ctx j = {.root = root, .path = path, .err = err};
    st = parse_unet_json(&j, c);
    cJSON_Delete(root);
    return st;
}

/* Adds the config as diffusers' keys to obj. */
static void add_unet_json(cJSON *o, const dm_unet_config *c) {
    /* the encoder classifier is ours, not a diffusers class */
    cJSON_AddStringToObject(o, "_class_name", c->classifier_classes  ? "EncoderClassifier"
                                              : c->fourier_features ? "FourierUNet2DModel"
                                                                    : "UNet2DModel");
    if (c->classifier_classes)
        cJSON_AddNumberToObject(o, "classifier_classes", (double)c->classifier_classes);
    cJSON_AddStringToObject(o, "_diffusers_version", "0.31.0");
    cJSON_AddStringToObject(o, "act_fn", "silu");
    cJSON_AddBoolToObject(o, "add_attention", c->add_attention);
    if (c->attention_head_dim)
        cJSON_AddNumberToObject(o, "attention_head_dim", (double)c->attention_head_dim);
    else
        cJSON_AddNullToObject(o, "attention_head_dim");
    if (c->attn_norm_num_groups)
        cJSON_AddNumberToObject(o, "attn_norm_num_groups", (double)c->attn_norm_num_groups);
    else
        cJSON_AddNullToObject(o, "attn_norm_num_groups");
    cJSON *boc = cJSON_AddArrayToObject(o, "block_out_channels");
    cJSON *down = cJSON_CreateArray(), *up = cJSON_CreateArray();
    for (int i = 0; i < c->levels; i++) {
        cJSON_AddItemToArray(boc, cJSON_CreateNumber((double)c->block_out_channels[i]));
        cJSON_AddItemToArray(down, cJSON_CreateString(c->down_attention[i] ? "AttnDownBlock2D"
                                                                            : "DownBlock2D"));
        cJSON_AddItemToArray(up, cJSON_CreateString(c->up_attention[i] ? "AttnUpBlock2D"
                                                                        : "UpBlock2D"));
    }
    cJSON_AddBoolToObject(o, "center_input_sample", c->center_input_sample);
    cJSON_AddNullToObject(o, "class_embed_type");
    cJSON_AddItemToObject(o, "down_block_types", down);
    cJSON_AddNumberToObject(o, "downsample_padding", c->downsample_padding);
    cJSON_AddStringToObject(o, "downsample_type", "conv");
    cJSON_AddNumberToObject(o, "dropout", c->dropout);
    cJSON_AddBoolToObject(o, "flip_sin_to_cos", c->flip_sin_to_cos);
    cJSON_AddNumberToObject(o, "freq_shift", c->freq_shift);
    cJSON_AddNumberToObject(o, "in_channels", (double)c->in_channels);
    cJSON_AddNumberToObject(o, "layers_per_block", (double)c->layers_per_block);
    cJSON_AddNumberToObject(o, "mid_block_scale_factor", 1);
    cJSON_AddNumberToObject(o, "norm_eps", c->norm_eps);
    cJSON_AddNumberToObject(o, "norm_num_groups", (double)c->norm_num_groups);
    if (c->num_class_embeds)
        cJSON_AddNumberToObject(o, "num_class_embeds", (double)c->num_class_embeds);
    else
        cJSON_AddNullToObject(o, "num_class_embeds");
    cJSON_AddNullToObject(o, "num_train_timesteps");
    cJSON_AddNumberToObject(o, "out_channels", (double)c->out_channels);
    cJSON_AddStringToObject(o, "resnet_time_scale_shift", "default");
    cJSON_AddNumberToObject(o, "sample_size", (double)c->sample_size);
    cJSON_AddStringToObject(o, "time_embedding_type", "positional");
    cJSON_AddItemToObject(o, "up_block_types", up);
    cJSON_AddStringToObject(o, "upsample_type", "conv");
}

dm_status dm_unet_config_write(const dm_unet_config *c, const char *path, dm_error *err) {
    cJSON *root = cJSON_CreateObject();
    add_unet_json(root, c);
    dm_status st = dm_json_write(path, root, err);
    cJSON_Delete(root);
    return st;
}
