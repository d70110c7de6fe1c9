/* diffusers model folders for UNet2DModel: config.json + diffusion_pytorch_model.safetensors,
 * the layout UNet2DModel.from_pretrained reads and save_pretrained writes. */
#include "diffusion/checkpoint.h"
#include "models/unet.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

dm_status dm_unet_load_diffusers(dm_model **out, dm_unet_config *cfg_out, const char *dir,
                                 dm_error *err) {
    *out = NULL;
    char path[4200];
    dm_unet_config cfg;
    snprintf(path, sizeof path, "%s/" DM_DIFFUSERS_CONFIG, dir);
    dm_status st = dm_unet_config_read(&cfg, path, err);
    if (st) return st;
    /* the weights' size first: a config of vast channels is refused before it is allocated */
    snprintf(path, sizeof path, "%s/" DM_DIFFUSERS_WEIGHTS, dir);
    if ((st = dm_weights_count_check(path, dm_unet_num_params(&cfg), err))) return st;
    snprintf(path, sizeof path, "%s/" DM_DIFFUSERS_CONFIG, dir);
    dm_model *m;
    if ((st = dm_unet_create(&m, &cfg, 0, err))) {
        dm_error_prefix(err, "%s", path);
        return st; /* not dm_error_prefix's value: DM_OK when err is NULL */
    }
    snprintf(path, sizeof path, "%s/" DM_DIFFUSERS_WEIGHTS, dir);
    if ((st = dm_model_weights_load(m, path, err))) {
        dm_model_free(m);
        return st;
    }
    if (cfg_out) *cfg_out = cfg;
    *out = m;
    return DM_OK;
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
