/* IDX files (dm_idx_load), raw or gzipped: the input is read as an image file (magic 0x803,
 * three sizes) and as the label file beside a valid 5-image file (magic 0x801, one size). An
 * accepted set must have the sizes its header gave and only [-1, 1] pixels. */
#include "fuzz_util.h"

#include "core/core.h"

/* 5 images of 3 x 4 pixels, raw IDX */
static const uint8_t images5[16 + 60] = {0, 0, 8, 3, 0, 0, 0, 5, 0, 0, 0, 3, 0, 0, 0, 4};

static void check(const dm_image_set *s) {
    if (s->data.n < 1 || s->c != 1 || s->h < 1 || s->w < 1 || s->data.dim != s->h * s->w) abort();
    for (int64_t i = 0; i < s->data.n * s->data.dim; i++)
        if (!(s->data.x[i] >= -1 && s->data.x[i] <= 1)) abort();
}

static const char *valid;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    valid = fz_memfd_path(1, images5, sizeof images5);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fz_memfd_path(0, data, size);
    dm_error err = {0};
    dm_image_set s;
    if (dm_idx_load(&s, path, NULL, &err) == DM_OK) {
        check(&s);
        dm_image_set_free(&s);
    } else if (!err.msg[0] || s.data.x) {
        abort(); /* a refusal says why and leaves nothing allocated */
    }
    err.msg[0] = '\0';
    if (dm_idx_load(&s, valid, path, &err) == DM_OK) {
        check(&s);
        if (!s.data.labels || s.data.num_classes < 1 || s.data.num_classes > 256) abort();
        for (int64_t i = 0; i < s.data.n; i++)
            if (s.data.labels[i] < 0 || s.data.labels[i] >= s.data.num_classes) abort();
        dm_image_set_free(&s);
    } else if (!err.msg[0] || s.data.x) {
        abort();
    }
    return 0;
}
