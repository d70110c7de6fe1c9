/* The image folder cache file (dm_image_cache_try, what dm_image_folder_open reads before it
 * trusts a cache): the input as a cache file, once as it is and, when it is as long as a header,
 * once sealed (dm_image_cache_seal writes the magic and both checks, and its own fingerprint is
 * the one expected), so the fields behind the checks are reached. A mapped cache must hold
 * exactly the bytes its header describes and labels within its classes; a refusal says why. */
#include "fuzz_util.h"

#include "core/core.h"
#include "data/image_cache.h"

#define HEADER 4096

static uint8_t *sealed;
static size_t sealed_cap;

static void check_read(const char *path, uint64_t fingerprint, size_t size) {
    dm_image_set s;
    dm_error err = {0};
    char reason[256] = "";
    bool mapped = false;
    dm_status st = dm_image_cache_try(&s, path, fingerprint, true, &mapped, reason,
                                      sizeof reason, &err);
    if (st) {
        if (!err.msg[0]) abort();
        return;
    }
    if (!mapped) {
        if (!reason[0]) abort(); /* an unusable cache says why it is rebuilt */
        return;
    }
    const uint64_t pixels = (uint64_t)s.data.n * (uint64_t)s.data.dim;
    const uint64_t labels = s.data.labels ? 4 * (uint64_t)s.data.n : 0;
    if (s.data.n < 1 || s.data.dim != s.c * s.h * s.w || HEADER + pixels + labels != size)
        abort();
    volatile uint8_t sum = 0;
    for (uint64_t i = 0; i < pixels; i++) sum += s.data.u8[i]; /* ASan checks the mapping */
    (void)sum;
    for (int64_t i = 0; s.data.labels && i < s.data.n; i++)
        if (s.data.labels[i] < 0 || s.data.labels[i] >= s.data.num_classes) abort();
    dm_image_set_free(&s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    check_read(fz_dir_file("as-is.u8", data, size), size >= 16 ? 0x1234 : 0, size);
    if (size < HEADER) return 0;
    if (size > sealed_cap) {
        free(sealed);
        if (!(sealed = malloc(size))) abort();
        sealed_cap = size;
    }
    memcpy(sealed, data, size);
    dm_image_cache_seal(sealed, size);
    check_read(fz_dir_file("sealed.u8", sealed, size), dm_image_cache_fingerprint(sealed), size);
    return 0;
}
