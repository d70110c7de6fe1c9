/* The training state read on resume (dm_trainer_resume: train_state.safetensors, through
 * src/io/safetensors.c and the reader in src/diffusion/trainer.c): params, Adam moments, the
 * loss history, the step and random-stream offsets as metadata, the timestep history. The input
 * replaces train_state.safetensors in a valid checkpoint folder (fuzz/fuzz_run.h: a 2-D MLP
 * after one step), so config.json and model.safetensors are as a real run left them. Each input
 * is resumed twice, with and without a dm_error, and the verdict must not change; a resumed
 * trainer must be at the checkpoint's step and able to take the next step. */
#include "fuzz_util.h"
#include "fuzz_run.h"

#include "diffusion/checkpoint.h"

static char run[600];
static dm_dataset data;

static void cleanup(void) { fz_rm_tree(run); }

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    snprintf(run, sizeof run, "%s/run", fz_tmpdir());
    atexit(cleanup); /* before fz_tmpdir's own cleanup, which removes the folder itself */
    fz_run_make(run, 0);
    fz_run_data(&data);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *bytes, size_t size) {
    char path[700];
    snprintf(path, sizeof path, "%s/" DM_CKPT_STATE, run);
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) fz_die(path);
    fz_fill(fd, bytes, size);
    close(fd);
    dm_error err = {0};
    dm_trainer *tr = NULL;
    dm_status st = dm_trainer_resume(&tr, run, &data, 0, &err);
    if (st && (!err.msg[0] || tr)) abort(); /* a refusal says why and hands out nothing */
    dm_trainer *again = NULL;
    if (dm_trainer_resume(&again, run, &data, 0, NULL) != st) abort();
    dm_trainer_free(again);
    if (st) return 0;
    if (dm_trainer_step_count(tr) != 1) abort();
    /* the state read must be usable: one more step trains or refuses cleanly */
    dm_error step_err = {0};
    if (dm_trainer_step(tr, NULL, &step_err) && !step_err.msg[0]) abort();
    dm_trainer_free(tr);
    return 0;
}
