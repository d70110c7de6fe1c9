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
        return dm_error_set(err, DM_ERR_ARG, "in_channels and out_channels must be 1..64");
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
        return dm_error_set(err, DM_ERR_ARG, "norm_num_groups must be >= 1");
    if (c->attention_head_dim < 0) /* the head count is channels / attention_head_dim */
        return dm_error_set(err, DM_ERR_ARG, "attention_head_dim must be >= 1 (or null)");
    if (c->attn_norm_num_groups < 0)
        return dm_error_set(err, DM_ERR_ARG, "attn_norm_num_groups must be >= 1 (or null)");
    if (!(c->norm_eps > 0 && c->norm_eps < 1))
        return dm_error_set(err, DM_ERR_ARG, "norm_eps must be in (0, 1)");
    if (!(c->dropout >= 0 && c->dropout < 1))
        return dm_error_set(err, DM_ERR_ARG, "dropout must be in [0, 1)");
    if (c->downsample_padding != 0 && c->downsample_padding != 1)
        return dm_error_set(err, DM_ERR_ARG, "downsample_padding must be 0 or 1");
    if (c->num_class_embeds < 0 || c->num_class_embeds > 1000000)
        return dm_error_set(err, DM_ERR_ARG, "num_class_embeds must be 0..1000000");
    if (c->classifier_classes < 0 || c->classifier_classes > 1000000)
        return dm_error_set(err, DM_ERR_ARG, "classifier_classes must be 0..1000000");
    if (!isfinite(c->freq_shift)) return dm_error_set(err, DM_ERR_ARG, "freq_shift not finite");
    const int64_t attn_groups = c->attn_norm_num_groups ? c->attn_norm_num_groups
                                                        : c->norm_num_groups;
    for (int i = 0; i < c->levels; i++) {
        const int64_t ch = c->block_out_channels[i];
        if (ch < 1 || ch > 8192)
            return dm_error_set(err, DM_ERR_ARG, "block_out_channels[%d] = %lld: must be 1..8192",
                                i, (long long)ch);
        /* every GroupNorm sees block channels or sums of them, so this covers them all */
        if (ch % c->norm_num_groups)
            return dm_error_set(err, DM_ERR_ARG,
                                "block_out_channels[%d] = %lld does not divide into "
                                "norm_num_groups = %lld",
                                i, (long long)ch, (long long)c->norm_num_groups);
        const bool attn = c->down_attention[i] || c->up_attention[c->levels - 1 - i] ||
                          (i == c->levels - 1 && c->add_attention);
        if (attn && c->attention_head_dim && ch % c->attention_head_dim)
            return dm_error_set(err, DM_ERR_ARG,
                                "attention_head_dim %lld does not divide the %lld channels of an "
                                "attention block",
                                (long long)c->attention_head_dim, (long long)ch);
        if (attn && ch % attn_groups)
            return dm_error_set(err, DM_ERR_ARG,
                                "attention norm groups %lld do not divide the %lld channels of an "
                                "attention block",
                                (long long)attn_groups, (long long)ch);
    }
    return DM_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* config.json                                                                              */

typedef struct {
    const cJSON *root;
    const char *path;
    dm_error *err;
} json_ctx;

static const cJSON *item(const json_ctx *j, const char *key) {
    return cJSON_GetObjectItemCaseSensitive(j->root, key);
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

/* An integer field; absent or null keeps *out (the default); null_value is stored for null when
 * null is allowed (null_value >= 0). */
static dm_status get_int(const json_ctx *j, const char *key, int64_t *out, int64_t null_value) {
    const cJSON *v = item(j, key);
    if (!v) return DM_OK;
    if (cJSON_IsNull(v) && null_value >= 0) {
        *out = null_value;
        return DM_OK;
    }
    if (!json_int(v, out))
        return dm_error_set(j->err, DM_ERR_FORMAT, "%s: \"%s\" must be an integer%s", j->path,
                            key, null_value >= 0 ? " or null" : "");
    return DM_OK;
}

static dm_status get_double(const json_ctx *j, const char *key, double *out) {
    const cJSON *v = item(j, key);
    if (!v) return DM_OK;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return dm_error_set(j->err, DM_ERR_FORMAT, "%s: \"%s\" must be a number", j->path, key);
    *out = v->valuedouble;
    return DM_OK;
}

static dm_status get_bool(const json_ctx *j, const char *key, int32_t *out) {
    const cJSON *v = item(j, key);
    if (!v) return DM_OK;
    if (!cJSON_IsBool(v))
        return dm_error_set(j->err, DM_ERR_FORMAT, "%s: \"%s\" must be true or false", j->path,
                            key);
    *out = cJSON_IsTrue(v);
    return DM_OK;
}

/* A string field that, when present, must have one of the supported values (NULL-terminated);
 * allow_null accepts JSON null too. */
static dm_status require_string(const json_ctx *j, const char *key, const char *const *allowed,
                                bool allow_null) {
    const cJSON *v = item(j, key);
    if (!v || (allow_null && cJSON_IsNull(v))) return DM_OK;
    if (cJSON_IsString(v))
        for (int i = 0; allowed[i]; i++)
            if (strcmp(v->valuestring, allowed[i]) == 0) return DM_OK;
    return dm_error_set(j->err, DM_ERR_FORMAT, "%s: \"%s\" = %s is not supported (only \"%s\"%s)",
                        j->path, key, cJSON_IsString(v) ? v->valuestring : "(not a string)",
                        allowed[0], allow_null ? " or null" : "");
}

/* down_block_types / up_block_types: each entry one of the two names; attention flags out. */
static dm_status get_block_types(const json_ctx *j, const char *key, const char *plain,
                                 const char *attn, int32_t *flags, int32_t levels) {
    const cJSON *arr = item(j, key);
    if (!arr) return DM_OK;
    if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) != levels)
        return dm_error_set(j->err, DM_ERR_FORMAT,
                            "%s: \"%s\" must list %d block types, one per block_out_channels",
                            j->path, key, (int)levels);
    int i = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, arr) {
        if (cJSON_IsString(v) && strcmp(v->valuestring, plain) == 0)
            flags[i] = 0;
        else if (cJSON_IsString(v) && strcmp(v->valuestring, attn) == 0)
            flags[i] = 1;
        else
            return dm_error_set(j->err, DM_ERR_FORMAT,
                                "%s: \"%s\"[%d] = %s is not supported (only \"%s\" or \"%s\")",
                                j->path, key, i,
                                cJSON_IsString(v) ? v->valuestring : "(not a string)", plain,
                                attn);
        i++;
    }
    return DM_OK;
}

static dm_status parse_unet_json(const json_ctx *j, dm_unet_config *c) {
    dm_status st;
    static const char *const class_name[] = {"UNet2DModel", "EncoderClassifier", NULL};
    static const char *const silu[] = {"silu", NULL};
    static const char *const positional[] = {"positional", NULL};
    static const char *const default_shift[] = {"default", NULL};
    static const char *const conv[] = {"conv", NULL};
    static const char *const mid_block[] = {"UNetMidBlock2D", NULL};
    if ((st = require_string(j, "_class_name", class_name, false)) ||
        (st = require_string(j, "act_fn", silu, false)) ||
        (st = require_string(j, "time_embedding_type", positional, false)) ||
        (st = require_string(j, "resnet_time_scale_shift", default_shift, false)) ||
        (st = require_string(j, "downsample_type", conv, false)) ||
        (st = require_string(j, "upsample_type", conv, false)) ||
        (st = require_string(j, "mid_block_type", mid_block, true)))
        return st;
    const cJSON *class_type = item(j, "class_embed_type");
    if (class_type && !cJSON_IsNull(class_type))
        return dm_error_set(j->err, DM_ERR_FORMAT,
                            "%s: \"class_embed_type\" is not supported (only null: a class "
                            "embedding table from num_class_embeds)",
                            j->path);
    double mid_scale = 1;
    if ((st = get_double(j, "mid_block_scale_factor", &mid_scale))) return st;
    if (mid_scale != 1)
        return dm_error_set(j->err, DM_ERR_FORMAT,
                            "%s: \"mid_block_scale_factor\" other than 1 is not supported", j->path);

    /* diffusers' defaults for keys the file leaves out */
    common_defaults(c);
    c->in_channels = c->out_channels = 3;
    c->levels = 4;
    const int64_t boc_default[4] = {224, 448, 672, 896};
    for (int i = 0; i < 4; i++) c->block_out_channels[i] = boc_default[i];
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
    } else if (!cJSON_IsNumber(size)) {
        return dm_error_set(j->err, DM_ERR_FORMAT,
                            "%s: \"sample_size\" must be an integer (square images)", j->path);
    } else if ((st = get_int(j, "sample_size", &c->sample_size, -1))) {
        return st;
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
        memset(c->down_attention, 0, sizeof c->down_attention);
        memset(c->up_attention, 0, sizeof c->up_attention);
        for (int i = 0; i < n; i++) {
            /* bounded before the cast: [1e30] was undefined behaviour (found by fuzzing) */
            if (!json_int(cJSON_GetArrayItem(boc, i), &c->block_out_channels[i]))
                return dm_error_set(j->err, DM_ERR_FORMAT,
                                    "%s: \"block_out_channels\"[%d] is not an integer", j->path, i);
        }
    }
    int64_t attn_groups = 0, head_dim = c->attention_head_dim, classes = 0, padding = 1;
    if ((st = get_block_types(j, "down_block_types", "DownBlock2D", "AttnDownBlock2D",
                              c->down_attention, c->levels)) ||
        (st = get_block_types(j, "up_block_types", "UpBlock2D", "AttnUpBlock2D", c->up_attention,
                              c->levels)) ||
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
    c->attn_norm_num_groups = attn_groups;
    c->attention_head_dim = head_dim;
    c->num_class_embeds = classes;
    c->downsample_padding = (int32_t)padding;
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
    dm_status st = dm_json_read(&root, path, 1 << 20, err);
    if (st) return st;
    json_ctx j = {.root = root, .path = path, .err = err};
    st = parse_unet_json(&j, c);
    cJSON_Delete(root);
    return st;
}

/* Adds the config as diffusers' keys to obj. */
static void add_unet_json(cJSON *o, const dm_unet_config *c) {
    /* the encoder classifier is ours, not a diffusers class */
    cJSON_AddStringToObject(o, "_class_name",
                            c->classifier_classes ? "EncoderClassifier" : "UNet2DModel");
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
