/* Data sets held as uint8 pixels (issue 18): the conversions to and from the float form, and a
 * run trained from uint8 rows equals the run trained from their float form bit for bit (the
 * trainer converts each drawn row with the same v / 127.5 - 1). */
#include "diffusion.h"
#include "io/npy.h"
#include "test_util.h"

#include <stdint.h>
#include <string.h>

/* The documented map, written out independently of the library. */
static float level(uint8_t v) { return (float)v / 127.5f - 1.0f; }

/* A uint8 set of n rows of dim random bytes (every level 0..255 among them) and its float twin
 * built with level(); with labels 0..2 when labelled. */
static void make_sets(dm_dataset *u, dm_dataset *f, int64_t n, int64_t dim, int labelled) {
    dm_error err = {0};
    uint8_t *px;
    CHECK(dm_dataset_init_u8(u, n, dim, &px, &err) == DM_OK, "init_u8: %s", err.msg);
    CHECK(dm_dataset_init(f, n, dim, &err) == DM_OK, "init: %s", err.msg);
    dm_rng rng;
    dm_rng_init(&rng, 7, 0);
    int32_t *r = malloc((size_t)(n * dim) * sizeof *r);
    dm_rng_int(&rng, r, (size_t)(n * dim), 0, 256);
    for (int64_t i = 0; i < n * dim; i++) {
        px[i] = (uint8_t)(i < 256 ? i : r[i]);
        f->x[i] = level(px[i]);
    }
    free(r);
    if (labelled) {
        CHECK(dm_dataset_add_labels(u, 3, &err) == DM_OK, "%s", err.msg);
        CHECK(dm_dataset_add_labels(f, 3, &err) == DM_OK, "%s", err.msg);
        for (int64_t i = 0; i < n; i++) u->labels[i] = f->labels[i] = (int32_t)(i % 3);
    }
}

static void test_conversions(void) {
    dm_error err = {0};
    dm_dataset u, f;
    make_sets(&u, &f, 5, 64, 0);
    CHECK(u.x == NULL && u.u8 != NULL, "a uint8 set holds no floats");
    dm_dataset c = u; /* to_float replaces the pixels: work on a copy of them */
    uint8_t *px;
    CHECK(dm_dataset_init_u8(&c, u.n, u.dim, &px, &err) == DM_OK, "%s", err.msg);
    memcpy(px, u.u8, (size_t)(u.n * u.dim));
    CHECK(dm_dataset_to_float(&c, &err) == DM_OK, "to_float: %s", err.msg);
    CHECK(c.x && !c.u8 && memcmp(c.x, f.x, (size_t)(f.n * f.dim) * sizeof(float)) == 0,
          "dm_dataset_to_float differs from v / 127.5 - 1");
    CHECK(dm_dataset_to_u8(&c, &err) == DM_OK, "to_u8: %s", err.msg);
    CHECK(!c.x && c.u8 && memcmp(c.u8, u.u8, (size_t)(u.n * u.dim)) == 0,
          "float -> uint8 did not give the bytes back");
    dm_dataset_free(&c);
    /* a float value that is no pixel level stays float */
    f.x[3] += 1e-3f;
    CHECK(dm_dataset_to_u8(&f, &err) == DM_ERR_ARG && f.x && !f.u8,
          "a value off the pixel levels was not refused");
    /* functions that need floats refuse the uint8 form instead of reading NULL */
    dm_normalizer nz;
    CHECK(dm_normalizer_fit(&nz, &u, &err) == DM_ERR_ARG, "normaliser took uint8 data");
    dm_dataset_free(&u);
    dm_dataset_free(&f);
}

/* Trains cfg from the uint8 set and from its float twin; the loss histories and weights must
 * be equal bit for bit, and a checkpoint of the float run resumes on the uint8 set. */
static void same_run(const char *name, dm_train_config *cfg, dm_dataset *u, dm_dataset *f) {
    dm_error err = {0};
    dm_trainer *a = NULL, *b = NULL;
    CHECK(dm_trainer_create(&a, cfg, u, &err) == DM_OK, "%s uint8: %s", name, err.msg);
    CHECK(dm_trainer_create(&b, cfg, f, &err) == DM_OK, "%s float: %s", name, err.msg);
    if (!a || !b) return;
    for (int64_t s = 0; s < cfg->steps; s++) {
        CHECK(dm_trainer_step(a, NULL, &err) == DM_OK, "%s: %s", name, err.msg);
        CHECK(dm_trainer_step(b, NULL, &err) == DM_OK, "%s: %s", name, err.msg);
    }
    const float *la = dm_trainer_loss_history(a), *lb = dm_trainer_loss_history(b);
    CHECK(memcmp(la, lb, (size_t)cfg->steps * sizeof *la) == 0,
          "%s: losses differ (first step %.9g vs %.9g)", name, la[0], lb[0]);
    dm_model *ma = dm_trainer_model(a), *mb = dm_trainer_model(b);
    CHECK(memcmp(dm_model_params(ma), dm_model_params(mb),
                 dm_model_num_params(ma) * sizeof(float)) == 0,
          "%s: weights trained from uint8 and from float differ", name);
    char ckpt[512];
    snprintf(ckpt, sizeof ckpt, "%s/data_u8_%s", tu_tmpdir(), name);
    CHECK(dm_trainer_save(b, ckpt, &err) == DM_OK, "save: %s", err.msg);
    dm_trainer *r = NULL;
    CHECK(dm_trainer_resume(&r, ckpt, u, cfg->steps + 1, &err) == DM_OK,
          "%s: the float run's checkpoint does not resume on the uint8 set: %s", name, err.msg);
    if (r) CHECK(dm_trainer_step(r, NULL, &err) == DM_OK, "%s resumed: %s", name, err.msg);
    dm_trainer_free(r);
    dm_trainer_free(a);
    dm_trainer_free(b);
}

/* A uint8 NPY array is mapped, not read: the same pixels as dm_image_npy_load; a truncated
 * one is refused; a float array comes back as floats. */
static void test_npy_map(void) {
    dm_error err = {0};
    const int64_t n = 4, c = 3, h = 5, w = 6, numel = n * c * h * w;
    float *x = malloc((size_t)numel * sizeof *x);
    for (int64_t i = 0; i < numel; i++) x[i] = level((uint8_t)(i * 37));
    char path[600];
    snprintf(path, sizeof path, "%s/images.npy", tu_tmpdir());
    CHECK(dm_image_npy_save(path, x, n, c, h, w, &err) == DM_OK, "%s", err.msg);
    dm_image_set m, l;
    CHECK(dm_image_npy_open(&m, path, &err) == DM_OK, "open: %s", err.msg);
    CHECK(dm_image_npy_load(&l, path, &err) == DM_OK, "load: %s", err.msg);
    CHECK(!m.data.x && m.data.u8 && m.data.u8_map_bytes > (size_t)numel && m.data.n == n &&
              m.c == c && m.h == h && m.w == w,
          "uint8 NPY not mapped as (%lld, %lld, %lld, %lld)", (long long)m.data.n,
          (long long)m.c, (long long)m.h, (long long)m.w);
    int same = m.data.u8 != NULL && l.data.x != NULL;
    for (int64_t i = 0; same && i < numel; i++) same = level(m.data.u8[i]) == l.data.x[i];
    CHECK(same, "mapped pixels differ from the loaded ones");
    dm_image_set_free(&m);
    dm_image_set_free(&l);
    CHECK(truncate(path, 200) == 0, "truncate"); /* inside the data */
    CHECK(dm_image_npy_open(&m, path, &err) == DM_ERR_FORMAT && strstr(err.msg, "truncated"),
          "a truncated NPY was mapped: %s", err.msg);
    int64_t shape[4] = {n, c, h, w};
    CHECK(dm_npy_write_f32(path, x, shape, 4, &err) == DM_OK, "%s", err.msg);
    CHECK(dm_image_npy_open(&m, path, &err) == DM_OK && m.data.x && !m.data.u8,
          "a float NPY: %s", err.msg);
    dm_image_set_free(&m);
    free(x);
}

int main(void) {
    dm_set_num_threads(1);
    if (tu_tmpdir_make("test_data_u8")) return 1;
    test_conversions();
    test_npy_map();

    dm_error err = {0};
    dm_train_config cfg;
    dm_train_config_default(&cfg);
    cfg.arch = DM_ARCH_UNET;
    CHECK(dm_unet_preset(&cfg.unet, "tiny", &err) == DM_OK, "preset: %s", err.msg);
    cfg.hflip = 1; /* the flipped gather too */
    cfg.batch = 4;
    cfg.steps = 3;
    cfg.schedule.T = 50;
    cfg.seed = 5;
    cfg.num_classes = 3; /* labels follow the rows */
    dm_dataset u, f;
    make_sets(&u, &f, 10, 64, 1);
    same_run("unet", &cfg, &u, &f);
    /* a set with neither floats nor bytes is refused, not read */
    dm_dataset none = {.n = 10, .dim = 64, .labels = u.labels, .num_classes = 3};
    dm_trainer *tr = NULL;
    CHECK(dm_trainer_create(&tr, &cfg, &none, &err) == DM_ERR_ARG, "a set without values");
    dm_trainer_free(tr);
    dm_dataset_free(&u);
    dm_dataset_free(&f);

    /* the MLP standardises its data, so it converts a uint8 set to floats at creation */
    dm_train_config_default(&cfg);
    cfg.mlp.dim = 16;
    cfg.mlp.hidden = 32;
    cfg.mlp.temb_dim = 16;
    cfg.mlp.layers = 2;
    cfg.batch = 8;
    cfg.steps = 3;
    cfg.schedule.T = 50;
    make_sets(&u, &f, 20, 16, 0);
    same_run("mlp", &cfg, &u, &f);
    dm_dataset_free(&u);
    dm_dataset_free(&f);
    char cmd[128]; /* the checkpoints are folders */
    snprintf(cmd, sizeof cmd, "rm -rf %s", tu_tmpdir());
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tu_tmpdir());
    return tu_finish("test_data_u8");
}
