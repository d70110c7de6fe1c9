/* diffusers model folders for UNet2DModel: config.json and the weights in whichever form
 * diffusers 0.31 writes and UNet2DModel.from_pretrained(dir, variant=...) reads (its default
 * use_safetensors=None), chosen by its rules (models/modeling_utils.py from_pretrained,
 * models/model_loading_utils.py _fetch_index_file and _fetch_index_file_legacy,
 * utils/hub_utils.py _add_variant and _get_model_file), first match wins:
 *   1. the shard index diffusion_pytorch_model.safetensors.index.json, with a variant V
 *      diffusion_pytorch_model.safetensors.index.V.json (_add_variant puts V before the last
 *      extension); with a variant and no such index, the legacy name
 *      diffusion_pytorch_model.safetensors.V.index.json. An index wins over a single file
 *      beside it, as in diffusers (is_sharded is decided first).
 *   2. diffusion_pytorch_model.safetensors (with V: diffusion_pytorch_model.V.safetensors).
 *   3. diffusers falls back to the pickle diffusion_pytorch_model.bin (.V.bin); it is refused
 *      here with how to convert it, as is a pickle shard index (.bin.index.json).
 * There is no fallback from a variant to the files without one: diffusers 0.31's model
 * from_pretrained fails with "no file named diffusion_pytorch_model.V.bin" there, and so does
 * this loader (saying that the files without the variant exist, when they do).
 * Tensors stored as F16 or BF16 are converted to float32 exactly. The attention names of
 * diffusers before 0.17 (query, key, value, proj_attn) are read as to_q, to_k, to_v,
 * to_out.0, as modeling_utils.py _convert_deprecated_attention_blocks does for every attention
 * block of a UNet2DModel (all are _from_deprecated_attn_block).
 * A shard set must be consistent: every shard the index names present, every tensor the index
 * lists held by the shard it names, and no shard holding a tensor the index does not assign to
 * it (diffusers, through accelerate, loads every tensor of every listed shard, so such a tensor
 * would silently replace another's value or be dropped: refused, naming both files). Shards
 * the index does not name are ignored, as diffusers ignores them. */
#include "diffusion/checkpoint.h"
#include "io/json_file.h"
#include "io/safetensors.h"
#include "models/unet.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define WEIGHTS_PICKLE "diffusion_pytorch_model.bin"
#define WEIGHTS_INDEX "diffusion_pytorch_model.safetensors.index.json"
#define WEIGHTS_PICKLE_INDEX "diffusion_pytorch_model.bin.index.json"
/* an index lists one shard per tensor at most: its size is bounded by the model's */
#define INDEX_MAX_BYTES ((size_t)16 << 20)
#define PATH_CAP 4400

/* os.path.isfile: a regular file, through symlinks */
static bool is_file(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* diffusers' _add_variant: "a.b.json" with variant V is "a.b.V.json" (V before the last
 * extension); variant NULL leaves the name as it is. */
static void add_variant(char *out, size_t cap, const char *name, const char *variant) {
    const char *dot = strrchr(name, '.');
    if (!variant || !dot) {
        snprintf(out, cap, "%s", name);
        return;
    }
    snprintf(out, cap, "%.*s.%s%s", (int)(dot - name), name, variant, dot);
}

/* dir/name, refused when it does not fit */
static dm_status join(char *out, const char *dir, const char *name, dm_error *err) {
    if ((size_t)snprintf(out, PATH_CAP, "%s/%s", dir, name) >= PATH_CAP)
        return dm_error_set(err, DM_ERR_ARG, "%s/%s: path too long", dir, name);
    return DM_OK;
}

/* The name of diffusers before 0.17 for an attention tensor: PATH.to_q.weight is
 * PATH.query.weight (to_k: key, to_v: value, to_out.0: proj_attn; weights and biases). */
static const char *legacy_attention_name(const char *name, char *buf, size_t cap) {
    static const char *const now[] = {"to_q", "to_k", "to_v", "to_out.0"};
    static const char *const before[] = {"query", "key", "value", "proj_attn"};
    const char *leaf = strrchr(name, '.');
    if (!leaf || (strcmp(leaf, ".weight") != 0 && strcmp(leaf, ".bias") != 0)) return NULL;
    for (int k = 0; k < 4; k++) {
        const size_t n = strlen(now[k]);
        const size_t module_end = (size_t)(leaf - name); /* PATH.to_q */
        if (module_end < n + 2 || name[module_end - n - 1] != '.' ||
            strncmp(name + module_end - n, now[k], n) != 0)
            continue;
        const int path_len = (int)(module_end - n - 1);
        if ((size_t)snprintf(buf, cap, "%.*s.%s%s", path_len, name, before[k], leaf) >= cap)
            return NULL;
        return buf;
    }
    return NULL;
}

/* The open weights files: one, or the shards an index names. */
typedef struct {
    int n;
    dm_safetensors **files;
} weight_files;

static void weight_files_close(weight_files *w) {
    for (int i = 0; i < w->n; i++) dm_safetensors_close(w->files[i]);
    free(w->files);
    w->files = NULL;
    w->n = 0;
}

/* index's weight_map read and each shard it names opened, then checked against each other. */
static dm_status open_shards(weight_files *w, const char *dir, const char *index,
                             dm_error *err) {
    cJSON *root = NULL;
    dm_status st = dm_json_read(&root, index, INDEX_MAX_BYTES, err);
    if (st) return st;
    const cJSON *map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    const int n_map = cJSON_IsObject(map) ? cJSON_GetArraySize(map) : 0;
    const char **shards = calloc(n_map ? (size_t)n_map : 1, sizeof *shards);
    int n_shards = 0;
    char path[PATH_CAP];
    if (!shards) {
        st = dm_error_set(err, DM_ERR_NOMEM, "%s: out of memory", index);
        goto done;
    }
    if (!cJSON_IsObject(map) || n_map == 0) {
        st = dm_error_set(err, DM_ERR_FORMAT,
                          "%s: no \"weight_map\" object of tensor names and shard files", index);
        goto done;
    }
    /* the shard files, each once, in the order the index first names them */
    const cJSON *e;
    cJSON_ArrayForEach(e, map) {
        const char *f = cJSON_IsString(e) ? e->valuestring : NULL;
        if (!f || !f[0] || strchr(f, '/') || strcmp(f, ".") == 0 || strcmp(f, "..") == 0) {
            st = dm_error_set(err, DM_ERR_FORMAT,
                              "%s: weight_map[\"%s\"] is not the name of a file in the folder",
                              index, e->string);
            goto done;
        }
        int k = 0;
        while (k < n_shards && strcmp(shards[k], f) != 0) k++;
        if (k == n_shards) shards[n_shards++] = f;
    }
    /* all present before any is read, as diffusers' _check_if_shards_exist_locally */
    for (int k = 0; k < n_shards; k++) {
        if ((st = join(path, dir, shards[k], err))) goto done;
        if (!is_file(path)) {
            st = dm_error_set(err, DM_ERR_IO,
                              "%s: shard missing (or not a regular file), which the index %s "
                              "names",
                              path, index);
            goto done;
        }
    }
    w->files = calloc((size_t)n_map, sizeof *w->files); /* n_shards <= n_map, n_map > 0 */
    if (!w->files) {
        st = dm_error_set(err, DM_ERR_NOMEM, "%s: out of memory", index);
        goto done;
    }
    for (int k = 0; k < n_shards; k++) {
        if ((st = join(path, dir, shards[k], err))) goto done;
        if ((st = dm_safetensors_open(&w->files[k], path, err))) goto done;
        w->n++;
    }
    /* a tensor in two shards */
    for (int k = 0; k < n_shards; k++)
        for (int i = 0; i < dm_safetensors_count(w->files[k]); i++) {
            const char *name = dm_safetensors_at(w->files[k], i)->name;
            for (int j = k + 1; j < n_shards; j++)
                if (dm_safetensors_get(w->files[j], name)) {
                    st = dm_error_set(err, DM_ERR_FORMAT,
                                      "tensor '%s' is held by two shards, %s and %s (index %s)",
                                      name, dm_safetensors_path(w->files[k]),
                                      dm_safetensors_path(w->files[j]), index);
                    goto done;
                }
        }
    /* every tensor the index lists, in the shard it names */
    cJSON_ArrayForEach(e, map) {
        int k = 0;
        while (strcmp(shards[k], e->valuestring) != 0) k++;
        if (dm_safetensors_get(w->files[k], e->string)) continue;
        int other = 0;
        while (other < n_shards && !dm_safetensors_get(w->files[other], e->string)) other++;
        if (other < n_shards)
            st = dm_error_set(err, DM_ERR_FORMAT,
                              "%s: the index puts tensor '%s' in %s, but %s holds it instead",
                              index, e->string, dm_safetensors_path(w->files[k]),
                              dm_safetensors_path(w->files[other]));
        else
            st = dm_error_set(err, DM_ERR_FORMAT,
                              "%s: the index puts tensor '%s' in %s, which does not hold it "
                              "(nor does any other shard)",
                              index, e->string, dm_safetensors_path(w->files[k]));
        goto done;
    }
    /* and no shard holds a tensor the index does not assign to it */
    for (int k = 0; k < n_shards; k++)
        for (int i = 0; i < dm_safetensors_count(w->files[k]); i++) {
            const char *name = dm_safetensors_at(w->files[k], i)->name;
            const cJSON *to = cJSON_GetObjectItemCaseSensitive(map, name);
            if (to && strcmp(to->valuestring, shards[k]) == 0) continue;
            if (to)
                st = dm_error_set(err, DM_ERR_FORMAT,
                                  "%s: holds tensor '%s', which the index %s assigns to %s",
                                  dm_safetensors_path(w->files[k]), name, index, to->valuestring);
            else
                st = dm_error_set(err, DM_ERR_FORMAT,
                                  "%s: holds tensor '%s', which the index %s does not list "
                                  "(refused: its value would be loaded or dropped unseen)",
                                  dm_safetensors_path(w->files[k]), name, index);
            goto done;
        }
done:
    if (st) weight_files_close(w);
    free(shards);
    cJSON_Delete(root);
    return st;
}

/* How a model folder stores its weights, by diffusers' order of preference. */
typedef enum { W_NONE, W_SHARDED, W_SINGLE, W_PICKLE } weights_kind;

typedef struct {
    char config[PATH_CAP];
    char index[PATH_CAP], legacy_index[PATH_CAP], single[PATH_CAP], pickle[PATH_CAP],
        pickle_index[PATH_CAP];
    weights_kind kind;
    const char *path; /* the file found: an index, the single file or a pickle */
} folder_files;

static dm_status find_weights(folder_files *ff, const char *dir, const char *variant,
                              dm_error *err) {
    char name[512];
    dm_status st = join(ff->config, dir, DM_DIFFUSERS_CONFIG, err);
    add_variant(name, sizeof name, WEIGHTS_INDEX, variant);
    if (!st) st = join(ff->index, dir, name, err);
    /* the legacy variant index of diffusers before 0.31: the variant before ".index.json" */
    snprintf(name, sizeof name, "diffusion_pytorch_model.safetensors.%s.index.json",
             variant ? variant : "");
    if (!st) st = join(ff->legacy_index, dir, name, err);
    add_variant(name, sizeof name, DM_DIFFUSERS_WEIGHTS, variant);
    if (!st) st = join(ff->single, dir, name, err);
    add_variant(name, sizeof name, WEIGHTS_PICKLE, variant);
    if (!st) st = join(ff->pickle, dir, name, err);
    add_variant(name, sizeof name, WEIGHTS_PICKLE_INDEX, variant);
    if (!st) st = join(ff->pickle_index, dir, name, err);
    if (st) return st;
    ff->kind = W_NONE;
    ff->path = NULL;
    if (is_file(ff->index))
        ff->kind = W_SHARDED, ff->path = ff->index;
    else if (variant && is_file(ff->legacy_index))
        ff->kind = W_SHARDED, ff->path = ff->legacy_index;
    else if (is_file(ff->single))
        ff->kind = W_SINGLE, ff->path = ff->single;
    else if (is_file(ff->pickle))
        ff->kind = W_PICKLE, ff->path = ff->pickle;
    else if (is_file(ff->pickle_index))
        ff->kind = W_PICKLE, ff->path = ff->pickle_index;
    return DM_OK;
}

static dm_status refuse_pickle(const char *path, const char *dir, const char *variant,
                               dm_error *err) {
    char v[300] = "";
    if (variant) snprintf(v, sizeof v, ", variant=\"%s\"", variant);
    return dm_error_set(err, DM_ERR_FORMAT,
                        "%s: a PyTorch pickle, not read: unpickling runs whatever code the file "
                        "holds. Convert it to safetensors in Python: from diffusers import "
                        "UNet2DModel; UNet2DModel.from_pretrained(\"%s\"%s).save_pretrained("
                        "\"%s\"%s) (save_pretrained writes safetensors by default)",
                        path, dir, v, dir, v);
}

static dm_status refuse_no_weights(const folder_files *ff, const char *dir, const char *variant,
                                   dm_error *err) {
    if (!variant)
        return dm_error_set(err, DM_ERR_IO,
                            "%s: no weights: neither %s nor %s (nor a pickle %s) in the folder",
                            dir, DM_DIFFUSERS_WEIGHTS, WEIGHTS_INDEX, WEIGHTS_PICKLE);
    char plain[PATH_CAP], plain_index[PATH_CAP];
    join(plain, dir, DM_DIFFUSERS_WEIGHTS, NULL);
    join(plain_index, dir, WEIGHTS_INDEX, NULL);
    const bool has_plain = is_file(plain) || is_file(plain_index);
    return dm_error_set(err, DM_ERR_IO,
                        "%s: no weights for variant \"%s\": no file %s, %s or %s%s", dir, variant,
                        ff->single, ff->index, ff->legacy_index,
                        has_plain ? " (the folder holds weights without a variant: load it with "
                                    "no variant; diffusers does not fall back to them either)"
                                  : "");
}

dm_status dm_unet_load_diffusers_variant(dm_model **out, dm_unet_config *cfg_out,
                                         const char *dir, const char *variant, dm_error *err) {
    *out = NULL;
    if (variant && (!variant[0] || strchr(variant, '/') || strlen(variant) > 200))
        return dm_error_set(err, DM_ERR_ARG,
                            "%s: variant \"%s\" is not a name such as fp16 (no '/', 1 to 200 "
                            "characters)",
                            dir, variant);
    struct stat sb;
    if (stat(dir, &sb) != 0)
        return dm_error_set(err, DM_ERR_IO, "%s: cannot open folder: %s", dir, strerror(errno));
    if (!S_ISDIR(sb.st_mode))
        return dm_error_set(err, DM_ERR_IO, "%s: not a folder", dir);
    folder_files ff;
    dm_status st = find_weights(&ff, dir, variant, err);
    if (st) return st;
    if (ff.kind == W_NONE && !is_file(ff.config))
        return dm_error_set(err, DM_ERR_IO,
                            "%s: not a diffusers model folder: neither %s nor weights (%s or "
                            "its shard index)",
                            dir, DM_DIFFUSERS_CONFIG, strrchr(ff.single, '/') + 1);
    dm_unet_config cfg;
    if ((st = dm_unet_config_read(&cfg, ff.config, err))) return st;
    if (ff.kind == W_PICKLE) return refuse_pickle(ff.path, dir, variant, err);
    if (ff.kind == W_NONE) return refuse_no_weights(&ff, dir, variant, err);

    weight_files w = {0};
    if (ff.kind == W_SHARDED) {
        if ((st = open_shards(&w, dir, ff.path, err))) return st;
    } else {
        if (!(w.files = calloc(1, sizeof *w.files)))
            return dm_error_set(err, DM_ERR_NOMEM, "%s: out of memory", ff.path);
        if ((st = dm_safetensors_open(&w.files[0], ff.path, err))) {
            weight_files_close(&w);
            return st;
        }
        w.n = 1;
    }
    /* the weights' size first: a config of vast channels is refused before it is allocated */
    dm_model *m = NULL;
    st = dm_weights_count_check_files(w.files, w.n, ff.path, dm_unet_num_params(&cfg), err);
    if (!st && (st = dm_unet_create(&m, &cfg, 0, err))) {
        dm_error_prefix(err, "%s", ff.config);
        m = NULL;
    }
    if (!st) st = dm_model_weights_load_files(m, w.files, w.n, legacy_attention_name, ff.path, err);
    weight_files_close(&w);
    if (st) {
        dm_model_free(m);
        return st; /* not dm_error_prefix's value: DM_OK when err is NULL */
    }
    if (cfg_out) *cfg_out = cfg;
    *out = m;
    return DM_OK;
}

dm_status dm_unet_load_diffusers(dm_model **out, dm_unet_config *cfg_out, const char *dir,
                                 dm_error *err) {
    return dm_unet_load_diffusers_variant(out, cfg_out, dir, NULL, err);
}

dm_status dm_unet_save_diffusers(const dm_model *m, const float *weights, const char *dir,
                                 dm_error *err) {
    const dm_unet_config *cfg = dm_unet_get_config(m);
    if (!cfg) return dm_error_set(err, DM_ERR_ARG, "%s: only a UNet saves as a diffusers folder", dir);
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return dm_error_set(err, DM_ERR_IO, "%s: cannot create folder: %s", dir, strerror(errno));
    char path[4200];
    /* each file is replaced atomically; a crash between the two leaves shapes that disagree,
     * which the loader refuses */
    snprintf(path, sizeof path, "%s/" DM_DIFFUSERS_WEIGHTS, dir);
    dm_status st = dm_model_weights_save(m, weights ? weights : m->params, path, err);
    if (st) return st;
    snprintf(path, sizeof path, "%s/" DM_DIFFUSERS_CONFIG, dir);
    return dm_unet_config_write(cfg, path, err);
}
