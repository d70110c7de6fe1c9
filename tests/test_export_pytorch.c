/* What diffusion.c writes, checked from outside with PyTorch (tests/reference/check_export.py,
 * run by Debian's /usr/bin/python3 with python3-torch, which scripts/install-deps.sh installs):
 * a checkpoint trained for one step loads with load_state_dict(strict=True) into a PyTorch
 * UNet2DModel written independently of the C code (tests/reference/unet2d.py, first checked
 * against diffusers' own outputs) and gives the library's output; its scheduler_config.json, read as diffusers' DDPMScheduler reads
 * it, gives the library's alpha_bar, and its beta_schedule does not contradict its trained_betas.
 * Three models: the tiny fixture UNet on a linear schedule (T = 1000), google/ddpm-cifar10-32's
 * flags (one head, Ho's time embedding and padding) on the cosine schedule with T = 100, and a
 * class-conditional tiny UNet (3 classes and the null label's row). Without
 * Python and PyTorch the test fails, it does not skip. */
#include "io/npy.h"
#include "test_util.h"

#include <omp.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define PIPES DM_SOURCE_DIR "/tests/fixtures/diffusers-pipelines"

static void check_export(const char *name, const char *unet_config, dm_schedule_kind kind,
                         int32_t T, int32_t classes) {
    dm_error err = {0};
    dm_train_config cfg;
    dm_train_config_default(&cfg);
    cfg.arch = DM_ARCH_UNET;
    CHECK(dm_unet_config_read(&cfg.unet, unet_config, &err) == DM_OK, "%s: %s", name, err.msg);
    cfg.schedule.kind = kind;
    cfg.schedule.T = T;
    cfg.steps = 1;
    cfg.batch = 2;
    cfg.num_classes = classes;
    cfg.p_uncond = classes ? 0.2 : 0;
    const int64_t C = cfg.unet.in_channels, S = cfg.unet.sample_size, D = C * S * S;
    dm_dataset data = {0};
    CHECK(dm_dataset_init(&data, 4, D, &err) == DM_OK, "%s", err.msg);
    for (int64_t i = 0; i < 4 * D; i++) data.x[i] = (float)((i * 53 % 200) / 100.0 - 1.0);
    if (classes) {
        CHECK(dm_dataset_add_labels(&data, classes, &err) == DM_OK, "%s", err.msg);
        for (int i = 0; i < 4; i++) data.labels[i] = i % classes;
    }
    dm_trainer *tr = NULL;
    char ckpt[512], probe[512], path[700];
    snprintf(ckpt, sizeof ckpt, "%s/%s", tu_tmpdir(), name);
    snprintf(probe, sizeof probe, "%s/%s-probe", tu_tmpdir(), name);
    CHECK(dm_trainer_create(&tr, &cfg, &data, &err) == DM_OK, "%s: %s", name, err.msg);
    CHECK(tr && dm_trainer_step(tr, NULL, &err) == DM_OK, "%s: %s", name, err.msg);
    CHECK(tr && dm_trainer_save(tr, ckpt, &err) == DM_OK, "%s: %s", name, err.msg);
    dm_trainer_free(tr);
    dm_dataset_free(&data);
    dm_pipeline *p = NULL;
    CHECK(dm_pipeline_load(&p, ckpt, &err) == DM_OK, "%s: %s", name, err.msg);
    if (!p) return;
    /* the probe: two inputs, the library's output on them, its schedule */
    enum { B = 2 };
    float *x = malloc((size_t)(B * D) * sizeof(float)), *out = malloc((size_t)(B * D) * sizeof(float));
    for (int64_t i = 0; i < B * D; i++) x[i] = (float)sin(0.37 * (double)i);
    const float tf[B] = {3.0f, (float)(T - 7)};
    const int64_t ti[B] = {3, T - 7};
    const int32_t y[B] = {classes - 1, classes}; /* a class and the null label */
    CHECK(dm_model_forward_cond((dm_model *)dm_pipeline_model(p), out, x, tf, classes ? y : NULL,
                                B, 0, &err) == DM_OK, "%s", err.msg);
    CHECK(mkdir(probe, 0755) == 0, "cannot create %s", probe);
    const int64_t xshape[4] = {B, C, S, S}, tshape[1] = {B}, abshape[1] = {T};
    snprintf(path, sizeof path, "%s/x.npy", probe);
    CHECK(dm_npy_write_f32(path, x, xshape, 4, &err) == DM_OK, "%s", err.msg);
    snprintf(path, sizeof path, "%s/out.npy", probe);
    CHECK(dm_npy_write_f32(path, out, xshape, 4, &err) == DM_OK, "%s", err.msg);
    snprintf(path, sizeof path, "%s/t.npy", probe);
    CHECK(dm_npy_write(path, DM_DTYPE_I64, ti, tshape, 1, &err) == DM_OK, "%s", err.msg);
    if (classes) {
        const int64_t yi[B] = {y[0], y[1]};
        snprintf(path, sizeof path, "%s/y.npy", probe);
        CHECK(dm_npy_write(path, DM_DTYPE_I64, yi, tshape, 1, &err) == DM_OK, "%s", err.msg);
    }
    snprintf(path, sizeof path, "%s/alpha_bar.npy", probe);
    CHECK(dm_npy_write(path, DM_DTYPE_F64, dm_pipeline_schedule(p)->alpha_bar, abshape, 1, &err) ==
              DM_OK, "%s", err.msg);
    dm_pipeline_free(p);
    free(x), free(out);
    char cmd[2200];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s/tests/reference/check_export.py' '%s' '%s'",
             DM_SOURCE_DIR, ckpt, probe);
    printf("%s:\n", name);
    fflush(stdout);
    const int rc = system(cmd);
    CHECK(rc != -1 && WIFEXITED(rc) && WEXITSTATUS(rc) == 0,
          "%s: check_export.py failed (exit %d); it needs Debian's /usr/bin/python3 with "
          "python3-torch and python3-numpy (bash scripts/install-deps.sh installs them)", name,
          rc != -1 && WIFEXITED(rc) ? WEXITSTATUS(rc) : -1);
    snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s'", ckpt, probe);
    CHECK(system(cmd) == 0, "cannot remove %s", ckpt);
}

int main(void) {
    omp_set_num_threads(2);
    if (tu_tmpdir_make("export_pytorch")) return 1;
    check_export("tiny-linear", PIPES "/weights-f32/config.json", DM_SCHEDULE_LINEAR, 1000, 0);
    check_export("cifar-flags-cosine", PIPES "/ddpm-cifar-flags/unet/config.json",
                 DM_SCHEDULE_COSINE, 100, 0);
    check_export("tiny-class", PIPES "/weights-f32/config.json", DM_SCHEDULE_LINEAR, 1000, 3);
    tu_tmpdir_remove();
    return tu_finish("test_export_pytorch");
}
