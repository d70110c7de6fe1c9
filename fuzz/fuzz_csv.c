/* CSV/whitespace tables of points (dm_dataset_load on a ".csv" name, which runs dm_csv_read
 * and the finiteness check): separators, headers, comments, BOM, numbers. An accepted table must
 * be N x D with 1 <= D <= DM_MAX_DIM and finite values, and must survive dm_dataset_save and a
 * second load bit for bit. */
#include "fuzz_util.h"

#include "core/core.h"

#include <math.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    dm_error err = {0};
    dm_dataset ds;
    if (dm_dataset_load(&ds, fz_dir_file("points.csv", data, size), &err) != DM_OK) {
        if (!err.msg[0] || ds.x) abort(); /* a refusal says why and keeps nothing */
        return 0;
    }
    if (ds.n < 1 || ds.dim < 1 || ds.dim > DM_MAX_DIM) abort();
    for (int64_t i = 0; i < ds.n * ds.dim; i++)
        if (!isfinite(ds.x[i])) abort();
    if (ds.n <= 256) {
        const char *out = fz_dir_path("saved.csv");
        fz_remember(out);
        dm_dataset back;
        if (dm_dataset_save(&ds, out, &err) || dm_dataset_load(&back, out, &err)) abort();
        if (back.n != ds.n || back.dim != ds.dim ||
            memcmp(back.x, ds.x, (size_t)(ds.n * ds.dim) * sizeof(float)) != 0)
            abort();
        dm_dataset_free(&back);
    }
    dm_dataset_free(&ds);
    return 0;
}
