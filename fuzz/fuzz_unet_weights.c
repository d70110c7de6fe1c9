/* The UNet weights loader: dm_unet_load_diffusers on a diffusers model folder (config.json and
 * diffusion_pytorch_model.safetensors: every tensor by its state_dict name, shapes checked
 * against the network the config describes, through src/io/safetensors.c and
 * dm_model_weights_load). The config is a valid small UNet (2 levels of 4 and 8 channels, an
 * attention level, 8 x 8); the input is the weights file. An accepted file must give the
 * network the config describes (the loader takes any floats, finite or not). Each input is
 * loaded twice, with and without a dm_error, and the verdict must not change. */
#include "fuzz_util.h"
#include "fuzz_run.h"

#include "diffusion/checkpoint.h"
#include "models/model.h"

static dm_unet_config want;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    fz_small_unet(&want);
    const char *cfg = fz_dir_path("unet/config.json");
    if (dm_unet_config_write(&want, cfg, NULL)) abort();
    fz_remember(cfg);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fz_dir_file("unet/diffusion_pytorch_model.safetensors", data, size);
    char dir[600];
    snprintf(dir, sizeof dir, "%s/unet", fz_tmpdir());
    dm_error err = {0};
    dm_model *m = NULL;
    dm_unet_config got;
    dm_status st = dm_unet_load_diffusers(&m, &got, dir, &err);
    if (st && (!err.msg[0] || m)) abort();
    dm_model *again = NULL;
    if (dm_unet_load_diffusers(&again, NULL, dir, NULL) != st) abort();
    dm_model_free(again);
    if (st) return 0;
    if (got.block_out_channels[1] != want.block_out_channels[1] || !dm_unet_get_config(m))
        abort();
    dm_model_free(m);
    return 0;
}
