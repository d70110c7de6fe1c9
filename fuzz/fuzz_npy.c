/* NumPy .npy files: the header alone (dm_npy_read_header), the whole array (dm_npy_read), an
 * image set (dm_image_npy_load) and a point set (dm_dataset_load on a ".npy" name). Whatever is
 * accepted must hold the bytes its header describes (ASan checks the reads) and, for image and
 * point sets, only finite values of the right ranges. */
#include "fuzz_util.h"

#include "core/core.h"
#include "io/npy.h"

#include <math.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fz_memfd_path(0, data, size);
    dm_error err = {0};
    dm_npy arr;
    dm_status head = dm_npy_read_header(&arr, path, &err);
    if (head && !err.msg[0]) abort();
    err.msg[0] = '\0';
    dm_status st = dm_npy_read(&arr, path, &err);
    if (st == DM_OK) {
        if (head) abort(); /* a file whose header was refused cannot load */
        int64_t numel = dm_npy_numel(&arr);
        if (numel < 0 || (uint64_t)numel * dm_dtype_size(arr.dtype) > size) abort();
        volatile uint8_t sum = 0;
        const uint8_t *p = arr.data;
        for (uint64_t b = 0; b < (uint64_t)numel * dm_dtype_size(arr.dtype); b++) sum += p[b];
        (void)sum;
        dm_npy_free(&arr);
    } else if (!err.msg[0] || arr.data) {
        abort();
    }

    dm_image_set s;
    err.msg[0] = '\0';
    if (dm_image_npy_load(&s, path, &err) == DM_OK) {
        if (s.data.n < 1 || (s.c != 1 && s.c != 3) || s.data.dim != s.c * s.h * s.w) abort();
        for (int64_t i = 0; i < s.data.n * s.data.dim; i++)
            if (!(fabsf(s.data.x[i]) <= 1.001f)) abort();
        dm_image_set_free(&s);
    } else if (!err.msg[0] || s.data.x) {
        abort();
    }

    dm_dataset ds;
    err.msg[0] = '\0';
    if (dm_dataset_load(&ds, fz_dir_file("points.npy", data, size), &err) == DM_OK) {
        if (ds.n < 1 || ds.dim < 1 || ds.dim > DM_MAX_DIM) abort();
        for (int64_t i = 0; i < ds.n * ds.dim; i++)
            if (!isfinite(ds.x[i])) abort();
        dm_dataset_free(&ds);
    } else if (!err.msg[0] || ds.x) {
        abort();
    }
    return 0;
}
