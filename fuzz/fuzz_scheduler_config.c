/* diffusers' scheduler_config.json (dm_scheduler_read: src/diffusion/scheduler_config.c, read by
 * dm_json_read_python in src/io/json_file.c, which turns Python's Infinity, -Infinity and NaN
 * into JSON first), as a pipeline folder's scheduler/scheduler_config.json and
 * --scheduler-config FILE are read. Each input is read with and without a dm_error (the API
 * allows NULL) and the verdict must not change; a refusal says why and leaves no betas behind.
 * An accepted scheduler must be one the samplers can run: a known class, T in 1..100000, every
 * beta in (0, 1), default_steps in 1..T, DPM-Solver's order 1 or 2. Then dm_scheduler_schedule
 * (a schedule it gives has alpha_bar in (0, 1), strictly decreasing, over the same T) and
 * dm_scheduler_timesteps for S = 1, default_steps, T and one S in 1..T taken from the input's
 * last two bytes (cJSON ignores what follows the object): timesteps it gives decrease strictly
 * within 0..T-1; S = 0 and T + 1 are refused. Every refusal says why, and each call gives the
 * same verdict without a dm_error. */
#include "fuzz_util.h"

#include "diffusion.h"

#define MAX_T 100000 /* scheduler_config.c's bound on num_train_timesteps */

static void check_timesteps(const dm_scheduler *sc, int32_t S, int32_t *out) {
    dm_error err = {0};
    dm_status st = dm_scheduler_timesteps(sc, S, out, &err);
    if (st && !err.msg[0]) abort();
    if (S < 1 || S > sc->T) {
        if (!st) abort(); /* a number of steps outside 1..T accepted */
        return;
    }
    if (!st)
        for (int32_t k = 0; k < S; k++)
            if (out[k] < 0 || out[k] >= sc->T || (k > 0 && out[k] >= out[k - 1])) abort();
    if ((dm_scheduler_timesteps(sc, S, out, NULL) == DM_OK) != (st == DM_OK)) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fz_memfd_path(0, data, size);
    dm_error err = {0};
    dm_scheduler sc;
    dm_status st = dm_scheduler_read(&sc, path, &err);
    if (st && (!err.msg[0] || sc.betas)) abort(); /* a refusal says why, keeps nothing */
    dm_scheduler again;
    dm_status st2 = dm_scheduler_read(&again, path, NULL);
    if ((st2 == DM_OK) != (st == DM_OK)) abort();
    if (!st2) dm_scheduler_free(&again);
    if (st) return 0;

    if ((unsigned)sc.cls > DM_SCHEDULER_DPMSOLVER || sc.T < 1 || sc.T > MAX_T || !sc.betas ||
        sc.default_steps < 1 || sc.default_steps > sc.T ||
        (unsigned)sc.spacing > DM_SPACING_LINSPACE ||
        (unsigned)sc.variance > DM_DDPM_LEARNED_RANGE || sc.steps_offset < 0 ||
        (sc.cls == DM_SCHEDULER_DPMSOLVER && sc.solver_order != 1 && sc.solver_order != 2))
        abort();
    for (int32_t i = 0; i < sc.T; i++)
        if (!(sc.betas[i] > 0 && sc.betas[i] < 1)) abort();

    dm_schedule s = {0};
    memset(&err, 0, sizeof err);
    st = dm_scheduler_schedule(&sc, &s, &err);
    if (st && !err.msg[0]) abort();
    if (!st) {
        if (s.T != sc.T) abort();
        for (int32_t i = 0; i < s.T; i++) {
            double prev = i ? s.alpha_bar[i - 1] : 1;
            if (!(s.alpha_bar[i] > 0 && s.alpha_bar[i] < prev)) abort();
        }
        dm_schedule_free(&s);
    }
    dm_schedule again_s = {0};
    st2 = dm_scheduler_schedule(&sc, &again_s, NULL);
    if ((st2 == DM_OK) != (st == DM_OK)) abort();
    if (!st2) dm_schedule_free(&again_s);

    int32_t *out = malloc((size_t)(sc.T + 1) * sizeof(int32_t));
    if (!out) abort();
    const uint32_t tail = size >= 2 ? (uint32_t)data[size - 2] << 8 | data[size - 1] : 0;
    const int32_t steps[] = {1, sc.default_steps, sc.T, 1 + (int32_t)(tail % (uint32_t)sc.T), 0,
                             sc.T + 1};
    for (size_t k = 0; k < sizeof steps / sizeof steps[0]; k++) check_timesteps(&sc, steps[k], out);
    free(out);
    dm_scheduler_free(&sc);
    if (sc.betas) abort();
    return 0;
}
