/* A classifier folder's config.json (dm_classifier_load): cJSON, the kind, the schedule and the
 * class count checked against classifier/config.json. DIR/classifier/config.json and
 * DIR/model.safetensors hold a valid classifier-tiny, so an accepted config goes on to build
 * and load the network as a real folder would. An accepted config must be usable: a kind of
 * noisy or clean, T in range, classes as the network's. Each input is read twice, with and
 * without a dm_error, and the verdict must not change. */
#include "fuzz_util.h"

#include "diffusion/checkpoint.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    dm_unet_config cfg;
    dm_model *m = NULL; /* set before use: the first call fails only by aborting */
    const char *net = fz_dir_path("classifier/config.json");
    const char *weights = fz_dir_path("model.safetensors");
    if (dm_unet_preset(&cfg, "classifier-tiny", NULL) || dm_unet_config_write(&cfg, net, NULL) ||
        dm_unet_create(&m, &cfg, 0, NULL) || dm_model_weights_save(m, dm_model_params(m), weights, NULL))
        abort();
    dm_model_free(m);
    fz_remember(net);
    fz_remember(weights);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fz_dir_file("config.json", data, size);
    const char *dir = fz_tmpdir();
    dm_error err = {0};
    dm_classifier *c = NULL;
    dm_status st = dm_classifier_load(&c, dir, &err);
    if (st && !err.msg[0]) abort(); /* a refusal says why */
    dm_classifier *again = NULL;
    if (dm_classifier_load(&again, dir, NULL) != st) abort();
    dm_classifier_free(again);
    if (st) {
        if (c) abort(); /* nothing handed out on failure */
        return 0;
    }
    const dm_classifier_config *k = dm_classifier_get_config(c);
    if ((k->noisy != 0 && k->noisy != 1) || k->schedule.T < 1 || k->schedule.T > 100000 ||
        (unsigned)k->schedule.kind > DM_SCHEDULE_LEARNED || dm_classifier_num_classes(c) != 4)
        abort();
    dm_classifier_free(c);
    return 0;
}
