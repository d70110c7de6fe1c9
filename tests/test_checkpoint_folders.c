/* The library side of a run folder's checkpoints (docs/training.md, "Checkpoints and
 * resuming"): checkpoint-N names, dm_checkpoint_find's lookup (never a sibling DIR.old),
 * dm_checkpoint_copy (hard links, swapped in whole), dm_checkpoint_remove (only checkpoint
 * files, links not followed), dm_trainer_pipeline (samples of the EMA weights equal to those of
 * a checkpoint saved at the same step) and dm_trainer_set_lr. */
#include "diffusion.h"
#include "test_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char root[256];

static int exists(const char *path) {
    struct stat sb;
    return lstat(path, &sb) == 0;
}

static ino_t inode(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 ? sb.st_ino : 0;
}

static int same_bytes(const char *a, const char *b) {
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    int same = fa && fb, ca = 0, cb = 0;
    while (same && (ca = fgetc(fa)) == (cb = fgetc(fb)) && ca != EOF) {}
    same = same && ca == cb;
    if (fa) fclose(fa);
    if (fb) fclose(fb);
    return same;
}

static void test_names(void) {
    static const struct {
        const char *name;
        int64_t step;
    } cases[] = {{"checkpoint-0", 0},       {"checkpoint-12", 12},    {"checkpoint-012", -1},
                 {"checkpoint-", -1},        {"checkpoint", -1},       {"checkpoint-1.tmp", -1},
                 {"checkpoint-1.old", -1},   {"checkpoint-+1", -1},    {"checkpoint--1", -1},
                 {"Checkpoint-1", -1},       {"checkpoint-1 ", -1},    {"xcheckpoint-1", -1},
                 {"checkpoint-999999999999999", 999999999999999},
                 {"checkpoint-1000000000000000", -1}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        CHECK(dm_checkpoint_name_step(cases[i].name) == cases[i].step, "%s: got %lld, want %lld",
              cases[i].name, (long long)dm_checkpoint_name_step(cases[i].name),
              (long long)cases[i].step);
}

static dm_status sample(dm_pipeline *p, float *x, int64_t n, dm_error *err) {
    dm_sample_options so;
    dm_sample_options_default(&so);
    so.sampler = DM_SAMPLER_DDIM;
    so.steps = 20;
    return dm_pipeline_sample(p, x, n, &so, err);
}

/* Trains a small MLP; saves checkpoints of steps 10 and 20 into root/run/checkpoint-N. */
static void test_pipeline_and_lr(const dm_dataset *data) {
    dm_error err = {0};
    dm_train_config cfg;
    dm_train_config_default(&cfg);
    cfg.mlp.hidden = 32;
    cfg.mlp.temb_dim = 16;
    cfg.mlp.layers = 2;
    cfg.batch = 64;
    cfg.steps = 40;
    cfg.schedule.T = 100;
    cfg.optim.warmup = 5;
    dm_trainer *a = NULL, *b = NULL;
    CHECK(dm_trainer_create(&a, &cfg, data, &err) == DM_OK, "%s", err.msg);
    CHECK(dm_trainer_create(&b, &cfg, data, &err) == DM_OK, "%s", err.msg);
    if (!a || !b) return;
    for (int i = 0; i < 20; i++) {
        CHECK(dm_trainer_step(a, NULL, &err) == DM_OK, "%s", err.msg);
        CHECK(dm_trainer_step(b, NULL, &err) == DM_OK, "%s", err.msg);
    }
    char dir[400];
    snprintf(dir, sizeof dir, "%s/run", root);
    mkdir(dir, 0755);
    snprintf(dir, sizeof dir, "%s/run/checkpoint-20", root);
    CHECK(dm_trainer_save(a, dir, &err) == DM_OK, "%s", err.msg);

    /* the trainer's pipeline samples as the checkpoint saved at the same step does, bit for bit */
    enum { N = 300 };
    float *x1 = malloc(N * 2 * sizeof *x1), *x2 = malloc(N * 2 * sizeof *x2);
    dm_pipeline *p1 = NULL, *p2 = NULL;
    CHECK(dm_trainer_pipeline(a, &p1, &err) == DM_OK, "%s", err.msg);
    CHECK(dm_pipeline_load(&p2, dir, &err) == DM_OK, "%s", err.msg);
    if (p1 && p2 && x1 && x2) {
        CHECK(sample(p1, x1, N, &err) == DM_OK, "%s", err.msg);
        CHECK(sample(p2, x2, N, &err) == DM_OK, "%s", err.msg);
        CHECK(memcmp(x1, x2, N * 2 * sizeof *x1) == 0,
              "dm_trainer_pipeline's samples differ from the saved checkpoint's: %g %g vs %g %g",
              x1[0], x1[1], x2[0], x2[1]);
    }
    dm_pipeline_free(p1);
    dm_pipeline_free(p2);
    free(x1);
    free(x2);

    /* making a pipeline changes nothing in the trainer: a and b go on equal */
    for (int i = 0; i < 10; i++) {
        CHECK(dm_trainer_step(a, NULL, &err) == DM_OK, "%s", err.msg);
        CHECK(dm_trainer_step(b, NULL, &err) == DM_OK, "%s", err.msg);
    }
    char da[400], db[400];
    snprintf(da, sizeof da, "%s/after_a", root);
    snprintf(db, sizeof db, "%s/after_b", root);
    CHECK(dm_trainer_save(a, da, &err) == DM_OK && dm_trainer_save(b, db, &err) == DM_OK, "%s",
          err.msg);
    static const char *const files[] = {"model.safetensors", "train_state.safetensors"};
    for (int i = 0; i < 2; i++) {
        char fa[500], fb[500];
        snprintf(fa, sizeof fa, "%s/%s", da, files[i]);
        snprintf(fb, sizeof fb, "%s/%s", db, files[i]);
        CHECK(same_bytes(fa, fb), "the trainer that made a pipeline went elsewhere: %s", files[i]);
    }

    /* another peak lr: the next step's lr follows (past the warm-up, constant: the lr itself) */
    CHECK(dm_trainer_set_lr(a, 5e-4, &err) == DM_OK, "%s", err.msg);
    CHECK(dm_trainer_lr(a) == 5e-4, "lr after set_lr: %.17g", dm_trainer_lr(a));
    CHECK(dm_trainer_config(a)->optim.lr == 5e-4, "the config's lr: %g",
          dm_trainer_config(a)->optim.lr);
    CHECK(dm_trainer_set_lr(a, 0, &err) == DM_ERR_ARG, "lr 0 accepted");
    CHECK(dm_trainer_set_lr(a, 1, &err) == DM_ERR_ARG, "lr 1 accepted");
    CHECK(dm_trainer_set_lr(a, NAN, &err) == DM_ERR_ARG, "lr NaN accepted");
    CHECK(dm_trainer_lr(a) == 5e-4, "a refused lr changed it: %g", dm_trainer_lr(a));
    /* the new lr is saved */
    snprintf(dir, sizeof dir, "%s/run/checkpoint-30", root);
    CHECK(dm_trainer_save(a, dir, &err) == DM_OK, "%s", err.msg);
    dm_trainer *c = NULL;
    CHECK(dm_trainer_resume(&c, dir, data, 0, &err) == DM_OK, "%s", err.msg);
    if (c) CHECK(dm_trainer_config(c)->optim.lr == 5e-4, "resumed lr %g", dm_trainer_config(c)->optim.lr);
    dm_trainer_free(c);
    dm_trainer_free(a);
    dm_trainer_free(b);

    /* polynomial: lr must stay above lr_end (diffusers' ValueError) */
    cfg.optim.lr_schedule = DM_LR_POLYNOMIAL;
    cfg.optim.lr_end = 1e-4;
    CHECK(dm_trainer_create(&a, &cfg, data, &err) == DM_OK, "%s", err.msg);
    if (a) {
        CHECK(dm_trainer_set_lr(a, 1e-4, &err) == DM_ERR_ARG, "polynomial lr = lr_end accepted");
        CHECK(dm_trainer_config(a)->optim.lr == cfg.optim.lr, "a refused lr changed the config");
    }
    dm_trainer_free(a);
}

/* root/run holds checkpoint-20 and checkpoint-30 (test_pipeline_and_lr). */
static void test_find_copy_remove(void) {
    dm_error err = {0};
    char run[300], out[700], path[700], want[700], a[800], b[800];
    snprintf(run, sizeof run, "%s/run", root);
    /* no run/checkpoint: the newest complete checkpoint-N */
    snprintf(want, sizeof want, "%s/checkpoint-30", run);
    CHECK(dm_checkpoint_find(run, out, sizeof out, &err) == DM_OK && strcmp(out, want) == 0,
          "newest numbered: %s (%s)", out, err.msg);
    /* an incomplete checkpoint-40 (no config.json: a removal cut short) is passed over */
    snprintf(path, sizeof path, "%s/checkpoint-40", run);
    mkdir(path, 0755);
    CHECK(dm_checkpoint_find(run, out, sizeof out, &err) == DM_OK && strcmp(out, want) == 0,
          "an incomplete checkpoint-40 taken: %s", out);
    rmdir(path);

    /* run/checkpoint: the same files as checkpoint-20, hard links */
    snprintf(path, sizeof path, "%s/checkpoint", run);
    snprintf(a, sizeof a, "%s/checkpoint-20", run);
    CHECK(dm_checkpoint_copy(a, path, &err) == DM_OK, "%s", err.msg);
    snprintf(a, sizeof a, "%s/checkpoint-20/model.safetensors", run);
    snprintf(b, sizeof b, "%s/checkpoint/model.safetensors", run);
    CHECK(inode(a) && inode(a) == inode(b), "checkpoint/model.safetensors is no hard link");
    CHECK(dm_checkpoint_find(run, out, sizeof out, &err) == DM_OK && strcmp(out, path) == 0,
          "run/checkpoint comes first: %s", out);
    /* replaced by checkpoint-30's, nothing left beside it */
    snprintf(a, sizeof a, "%s/checkpoint-30", run);
    CHECK(dm_checkpoint_copy(a, path, &err) == DM_OK, "%s", err.msg);
    snprintf(a, sizeof a, "%s/checkpoint-30/train_state.safetensors", run);
    snprintf(b, sizeof b, "%s/checkpoint/train_state.safetensors", run);
    CHECK(inode(a) && inode(a) == inode(b), "checkpoint is not checkpoint-30's files");
    snprintf(a, sizeof a, "%s/checkpoint.tmp", run);
    snprintf(b, sizeof b, "%s/checkpoint.old", run);
    CHECK(!exists(a) && !exists(b), "checkpoint.tmp or .old left");
    /* removing checkpoint-30 leaves checkpoint whole (its own names of the files) */
    snprintf(a, sizeof a, "%s/checkpoint-30", run);
    CHECK(dm_checkpoint_remove(a, &err) == DM_OK && !exists(a), "remove: %s", err.msg);
    dm_pipeline *p = NULL;
    CHECK(dm_pipeline_load(&p, run, &err) == DM_OK, "after removing checkpoint-30: %s", err.msg);
    dm_pipeline_free(p);
    CHECK(dm_checkpoint_copy(a, path, &err) == DM_ERR_IO, "a copy from a missing checkpoint");

    /* remove: a folder with a file of its own keeps it and says so; a link goes, not its target */
    snprintf(a, sizeof a, "%s/checkpoint-20/notes.txt", run);
    FILE *f = fopen(a, "w");
    if (f) fclose(f);
    snprintf(b, sizeof b, "%s/checkpoint-20", run);
    CHECK(dm_checkpoint_remove(b, &err) == DM_ERR_IO && strstr(err.msg, "not a checkpoint's"),
          "a folder with other files: %s", err.msg);
    CHECK(exists(a), "the user's file went");
    snprintf(a, sizeof a, "%s/link", run);
    CHECK(symlink(path, a) == 0, "symlink");
    CHECK(dm_checkpoint_remove(a, &err) == DM_OK && !exists(a), "link: %s", err.msg);
    snprintf(b, sizeof b, "%s/config.json", path);
    CHECK(exists(b), "removing a link removed its target's files");

    /* a sibling: root/a (no checkpoint) and root/a.old (one) -> not found, for a present and
     * for an absent root/b */
    snprintf(a, sizeof a, "%s/a", root);
    mkdir(a, 0755);
    snprintf(b, sizeof b, "%s/a.old", root);
    CHECK(dm_checkpoint_copy(path, b, &err) == DM_OK, "%s", err.msg);
    CHECK(dm_checkpoint_find(a, out, sizeof out, &err) == DM_ERR_IO &&
              strstr(err.msg, "no checkpoint here"),
          "runs/a.old taken for runs/a: %s", out);
    CHECK(dm_pipeline_load(&p, a, &err) == DM_ERR_IO, "dm_pipeline_load took a.old");
    snprintf(a, sizeof a, "%s/b", root);
    snprintf(b, sizeof b, "%s/b.old", root);
    CHECK(dm_checkpoint_copy(path, b, &err) == DM_OK, "%s", err.msg);
    CHECK(dm_checkpoint_find(a, out, sizeof out, &err) == DM_ERR_IO, "b.old taken for b: %s", out);
    /* a crash between the renames of checkpoint-7: checkpoint-7 gone, checkpoint-7.old whole */
    snprintf(a, sizeof a, "%s/checkpoint-7", run);
    snprintf(b, sizeof b, "%s/checkpoint-7.old", run);
    CHECK(dm_checkpoint_copy(path, b, &err) == DM_OK, "%s", err.msg);
    CHECK(dm_checkpoint_find(a, out, sizeof out, &err) == DM_OK && strcmp(out, b) == 0,
          "checkpoint-7.old after a cut swap: %s (%s)", out, err.msg);
}

int main(void) {
    dm_set_num_threads(2);
    snprintf(root, sizeof root, "/tmp/dm_test_ckpt_folders_XXXXXX");
    if (!mkdtemp(root)) return 1;
    dm_error err = {0};
    dm_dataset data;
    if (dm_toy2d_generate(&data, "moons", 1000, 1, &err)) {
        fprintf(stderr, "FAIL: toy data: %s\n", err.msg);
        return 1;
    }
    test_names();
    test_pipeline_and_lr(&data);
    test_find_copy_remove();
    dm_dataset_free(&data);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", root);
    return tu_finish("test_checkpoint_folders");
}
