/* A small training run saved as a checkpoint folder, for the harnesses that fuzz what resuming
 * or sampling reads from one (fuzz_train_state, fuzz_schedule) and for their seeds
 * (fuzz/make_corpus.c): a 2-D MLP (4 hidden units, one layer) on 64 points of "moons", T = 10,
 * one optimiser step, saved by dm_trainer_save. learned: the VDM loss in continuous time with
 * the learned schedule (schedule.safetensors and schedule_state.safetensors beside the rest).
 *
 * fz_small_unet() is fuzz_unet_weights' network. fz_rm_tree() removes a folder and everything in it without following symlinks (the harnesses
 * whose parsers write more than fz_dir_file() knows of, and fuzz_image_walk's trees). */
#pragma once

#include "diffusion.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>

/* The points every run trains on and resumes with (the checkpoint's data hash must match). */
static inline void fz_run_data(dm_dataset *d) {
    if (dm_toy2d_generate(d, "moons", 64, 7, NULL)) abort();
}

static inline void fz_run_config(dm_train_config *c, int learned) {
    dm_train_config_default(c);
    c->mlp.hidden = 4, c->mlp.temb_dim = 4, c->mlp.layers = 1;
    c->schedule.T = 10;
    c->steps = 2, c->batch = 8, c->seed = 3;
    if (learned) {
        c->loss = DM_LOSS_VDM_CONTINUOUS;
        c->schedule.kind = DM_SCHEDULE_LEARNED;
    }
}

/* Trains one step and saves the checkpoint into dir (made if missing); aborts on failure. */
static inline void fz_run_make(const char *dir, int learned) {
    dm_dataset d;
    fz_run_data(&d);
    dm_train_config c;
    fz_run_config(&c, learned);
    dm_trainer *tr = NULL;
    dm_error err = {0};
    if (dm_trainer_create(&tr, &c, &d, &err) || dm_trainer_step(tr, NULL, &err) ||
        dm_trainer_save(tr, dir, &err)) {
        fprintf(stderr, "fuzz_run: %s\n", err.msg);
        abort();
    }
    dm_trainer_free(tr);
    dm_dataset_free(&d);
}

/* The UNet of fuzz_unet_weights and of its seeds: the "tiny" preset (8 x 8, an attention level)
 * with 4 and 8 channels. */
static inline void fz_small_unet(dm_unet_config *c) {
    if (dm_unet_preset(c, "tiny", NULL)) abort();
    c->block_out_channels[0] = 4, c->block_out_channels[1] = 8;
    c->norm_num_groups = 2;
}

static inline int fz_rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *f) {
    (void)sb, (void)flag, (void)f;
    remove(path);
    return 0;
}

/* Removes path and everything under it (symlinks themselves, never their targets). */
static inline void fz_rm_tree(const char *path) {
    nftw(path, fz_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}
