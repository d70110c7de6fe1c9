/* diffusers' UNet2DModel config.json (dm_unet_config_read), as --model FILE.json and
 * dm_unet_load_diffusers read it. An accepted config must pass dm_unet_config_validate (the
 * UNet is built from it); each input is read with and without a dm_error (NULL is allowed) and
 * the verdict must not change. */
#include "fuzz_util.h"

#include "core/core.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fz_memfd_path(0, data, size);
    dm_error err = {0};
    dm_unet_config cfg;
    dm_status st = dm_unet_config_read(&cfg, path, &err);
    if (st && !err.msg[0]) abort(); /* a refusal says why */
    if (!st && dm_unet_config_validate(&cfg, NULL) != DM_OK) abort();
    if (dm_unet_config_read(&cfg, path, NULL) != st) abort();
    return 0;
}
