#include "images.h"


#include <string.h>
#include <sys/stat.h>

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

static int is_dir(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static int is_idx(const char *name) {
    return strstr(name, "-ubyte") != NULL || strstr(name, ".idx") != NULL;
}

int cli_is_image_data(const char *name) {
    if (strcmp(name, "fashion-mnist") == 0 || strcmp(name, "fashion-mnist-test") == 0) return 1;
    if (is_dir(name) || is_idx(name)) return 1;
    if (ends_with(name, ".npy")) {
        int ndim;
        int64_t shape[8];
        if (dm_npy_shape(name, &ndim, shape, NULL)) return 0; /* the point loader reports it */
        return ndim == 3 || ndim == 4;
    }
    return 0;
}

/* The set to the model's c x size x size: with resize, images of another size (same channels)
 * are resized as torchvision's Resize + CenterCrop (in float: a uint8 set is converted first);
 * any other mismatch is an error, and the set is freed on every error. */
static dm_status fit_shape(dm_image_set *set, const char *name, int64_t c, int64_t size,
                           int resize, dm_error *err) {
    dm_status st = DM_OK;
    if (resize && set->c == c && (set->h != size || set->w != size) &&
        ((st = dm_dataset_to_float(&set->data, err)) ||
         (st = dm_image_set_resize(set, size, err)))) {
        dm_image_set_free(set);
        return st;
    }
    if (set->c != c || set->h != size || set->w != size) {
        dm_error_set(err, DM_ERR_MISMATCH,
                     "--data %s: images are %lldx%lldx%lld, the model takes %lldx%lldx%lld "
                     "(a folder is resized to fit; other sources must match, or give --resolution)",
                     name, (long long)set->c, (long long)set->h, (long long)set->w, (long long)c,
                     (long long)size, (long long)size);
        dm_image_set_free(set);
        return DM_ERR_MISMATCH;
    }
    return DM_OK;
}

static dm_status load_source(dm_image_set *set, const char *name, int64_t c, int64_t size,
                             dm_error *err) {
    if (strcmp(name, "fashion-mnist") == 0) return dm_fashion_mnist_load(set, NULL, "train", err);
    if (strcmp(name, "fashion-mnist-test") == 0)
        return dm_fashion_mnist_load(set, NULL, "test", err);
    if (is_dir(name)) {
        dm_image_folder_options o;
        dm_image_folder_options_default(&o);
        o.size = size;
        o.channels = c;
        return dm_image_folder_load(set, name, &o, err);
    }
    if (is_idx(name)) return dm_idx_load(set, name, NULL, err);
    return dm_image_npy_load(set, name, err);
}

dm_status cli_load_images(dm_image_set *set, const char *name, int64_t c, int64_t size,
                          int resize, dm_error *err) {
    dm_status st = load_source(set, name, c, size, err);
    if (st) return st;
    return fit_shape(set, name, c, size, resize, err);
}

dm_status cli_open_images(dm_image_set *set, const char *name, int64_t c, int64_t size,
                          int resize, const char *cache_dir, dm_image_cache_info *info,
                          dm_error *err) {
    memset(info, 0, sizeof *info);
    dm_status st;
    if (is_dir(name)) {
        dm_image_folder_options o;
        dm_image_folder_options_default(&o);
        o.size = size;
        o.channels = c;
        st = dm_image_folder_open(set, name, &o, cache_dir, info, err);
    } else if (!is_idx(name) && ends_with(name, ".npy")) {
        st = dm_image_npy_open(set, name, err);
    } else {
        /* IDX and Fashion-MNIST are small: loaded, then kept as bytes when they are pixels */
        st = load_source(set, name, c, size, err);
        if (!st && dm_dataset_to_u8(&set->data, NULL) == DM_ERR_NOMEM) {
            dm_image_set_free(set);
            st = dm_error_set(err, DM_ERR_NOMEM, "--data %s: out of memory", name);
        }
    }
    if (st) return st;
    /* resized images are floats between pixel levels: they stay float */
    return fit_shape(set, name, c, size, resize, err);
}

dm_status cli_unet_config(dm_unet_config *cfg, const char *name, dm_error *err) {
    if (ends_with(name, ".json")) return dm_unet_config_read(cfg, name, err);
    return dm_unet_preset(cfg, name, err);
}
