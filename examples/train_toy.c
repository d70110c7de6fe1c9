/* train_toy: train a diffusion model on a built-in 2-D set from C, with libdiffusion.
 *
 *   train_toy [SET] [STEPS] [CHECKPOINT_DIR]
 *
 * Draws 20,000 points of SET (default moons; also swissroll, 8gaussians, checkerboard, rings,
 * spiral), trains the time-conditioned MLP (64 wide: small and quick) for STEPS steps of batch
 * 256 (default 300) and reports the loss at the start and the end. With CHECKPOINT_DIR the
 * model is saved there, ready for `diffusion sample --model DIR` or sample_checkpoint. Exits
 * 1 if the loss did not fall. */
#include <diffusion.h>

#include <stdio.h>
#include <stdlib.h>

/* mean of loss[from .. to) */
static double mean(const float *loss, int64_t from, int64_t to) {
    double s = 0;
    for (int64_t i = from; i < to; i++) s += loss[i];
    return s / (double)(to - from);
}

int main(int argc, char **argv) {
    const char *set = argc > 1 ? argv[1] : "moons";
    const int64_t steps = argc > 2 ? atoll(argv[2]) : 300;
    const char *out = argc > 3 ? argv[3] : NULL;
    if (argc > 4 || steps < 20) {
        fprintf(stderr, "usage: %s [SET] [STEPS >= 20] [CHECKPOINT_DIR]\n", argv[0]);
        return 2;
    }
    dm_set_num_threads(2); /* a small model: more threads would only wait on each other */

    dm_error err = {0};
    dm_dataset data = {0};
    if (dm_toy2d_generate(&data, set, 20000, 42, &err)) {
        fprintf(stderr, "error: %s\n", err.msg);
        return 2;
    }
    dm_train_config cfg;
    dm_train_config_default(&cfg); /* the MLP, linear schedule, epsilon prediction, L_simple */
    cfg.mlp.hidden = 64;
    cfg.steps = steps;
    cfg.batch = 256;
    cfg.optim.lr = 2e-3;
    cfg.optim.warmup = 20;

    dm_trainer *tr = NULL;
    int status = 1;
    if (dm_trainer_create(&tr, &cfg, &data, &err)) goto done;
    while (dm_trainer_step_count(tr) < cfg.steps)
        if (dm_trainer_step(tr, NULL, &err)) goto done;

    const float *loss = dm_trainer_loss_history(tr);
    const int64_t k = steps / 5; /* the first and the last fifth of the steps */
    const double first = mean(loss, 0, k), last = mean(loss, steps - k, steps);
    printf("libdiffusion %s: %lld steps on %s: loss %.4f over the first %lld steps, %.4f over "
           "the last %lld\n",
           dm_version(), (long long)steps, set, first, (long long)k, last, (long long)k);
    if (out) {
        if (dm_trainer_save(tr, out, &err)) goto done;
        printf("saved the checkpoint to %s\n", out);
    }
    if (!(last < first)) {
        dm_error_set(&err, DM_ERR_NUMERIC, "the loss did not fall (%.4f -> %.4f)", first, last);
        goto done;
    }
    status = 0;
done:
    if (status) fprintf(stderr, "error: %s\n", err.msg);
    dm_trainer_free(tr);
    dm_dataset_free(&data);
    return status;
}
