/* Our checkpoint config.json (dm_checkpoint_config_read): cJSON, then every field checked and
 * named choices parsed. The input is DIR/config.json; DIR/unet/config.json holds a valid
 * diffusers UNet config, so "model": {"type": "unet"} reaches the UNet reader as in a real
 * checkpoint folder. A config the reader accepts must be one the rest of the library can use:
 * enums in range, T in range, a valid UNet config. Each input is read twice, with and without a
 * dm_error (the API allows NULL), and the verdict must not change. */
#include "fuzz_util.h"

#include "diffusion/checkpoint.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    dm_unet_config cfg;
    const char *unet = fz_dir_path("unet/config.json");
    if (dm_unet_preset(&cfg, "tiny", NULL) || dm_unet_config_write(&cfg, unet, NULL)) abort();
    fz_remember(unet);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fz_dir_file("config.json", data, size);
    dm_error err = {0};
    dm_checkpoint_config c;
    dm_status st = dm_checkpoint_config_read(path, &c, &err);
    if (st && !err.msg[0]) abort(); /* a refusal says why */
    if (dm_checkpoint_config_read(path, &c, NULL) != st) abort();
    if (st) return 0;
    const dm_train_config *t = &c.train;
    if ((unsigned)t->prediction > DM_PRED_SCORE || (unsigned)t->loss > DM_LOSS_VDM_CONTINUOUS ||
        (unsigned)t->var > DM_VAR_LEARNED || (unsigned)t->timesteps > DM_TIME_IMPORTANCE ||
        (unsigned)t->schedule.kind > DM_SCHEDULE_LEARNED)
        abort(); /* a choice accepted without being parsed */
    if (t->schedule.T < 1 || t->schedule.T > 100000 || c.norm.dim < 0 || c.norm.dim > DM_MAX_DIM)
        abort();
    if (t->arch == DM_ARCH_UNET && dm_unet_config_validate(&t->unet, NULL) != DM_OK) abort();
    return 0;
}
