/* The learned schedule (schedule.safetensors of a run trained with the VDM loss in continuous
 * time and the learned schedule): read when resuming (dm_trainer_resume, beside
 * schedule_state.safetensors) and when sampling (dm_checkpoint_schedule: the gamma network's
 * size from the tensor's shape, then discretised to T steps). The input replaces
 * schedule.safetensors in a valid checkpoint folder (fuzz/fuzz_run.h). An accepted schedule
 * must be a schedule: alpha_bar in (0, 1) and decreasing, beta in (0, 1]. */
#include "fuzz_util.h"
#include "fuzz_run.h"

#include "diffusion/checkpoint.h"

static char run[600];
static dm_dataset data;
static dm_checkpoint_config config;

static void cleanup(void) { fz_rm_tree(run); }

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    snprintf(run, sizeof run, "%s/run", fz_tmpdir());
    atexit(cleanup);
    fz_run_make(run, 1);
    fz_run_data(&data);
    char path[700];
    snprintf(path, sizeof path, "%s/" DM_CKPT_CONFIG, run);
    if (dm_checkpoint_config_read(path, &config, NULL) ||
        config.train.schedule.kind != DM_SCHEDULE_LEARNED)
        abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *bytes, size_t size) {
    char path[700];
    snprintf(path, sizeof path, "%s/" DM_CKPT_SCHEDULE, run);
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) fz_die(path);
    fz_fill(fd, bytes, size);
    close(fd);

    dm_error err = {0};
    dm_schedule s = {0};
    dm_status st = dm_checkpoint_schedule(&s, run, &config.train, &err);
    if (st && !err.msg[0]) abort();
    dm_schedule again = {0};
    dm_status st2 = dm_checkpoint_schedule(&again, run, &config.train, NULL);
    if ((st2 == DM_OK) != (st == DM_OK)) abort();
    if (!st2) dm_schedule_free(&again);
    if (!st) {
        if (s.T != config.train.schedule.T) abort();
        for (int32_t i = 0; i < s.T; i++) {
            double prev = i ? s.alpha_bar[i - 1] : 1;
            if (!(s.alpha_bar[i] > 0 && s.alpha_bar[i] < 1 && s.alpha_bar[i] <= prev) ||
                !(s.beta[i] > 0 && s.beta[i] <= 1))
                abort();
        }
        dm_schedule_free(&s);
    }

    dm_trainer *tr = NULL;
    memset(&err, 0, sizeof err);
    st = dm_trainer_resume(&tr, run, &data, 0, &err);
    if (st && (!err.msg[0] || tr)) abort();
    if (!st) {
        if (dm_trainer_step_count(tr) != 1) abort();
        dm_trainer_free(tr);
    }
    return 0;
}
