/* Arenas and aligned allocation. */
#include "core.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void *dm_alloc(size_t bytes) {
    if (bytes > SIZE_MAX - DM_ALIGN) return NULL; /* the rounding below would wrap */
    size_t rounded = (bytes + DM_ALIGN - 1) / DM_ALIGN * DM_ALIGN;
    if (rounded == 0) rounded = DM_ALIGN;
    void *p = aligned_alloc(DM_ALIGN, rounded);
    if (p) memset(p, 0, rounded);
    return p;
}

void dm_free(void *p) { free(p); }

dm_status dm_arena_init(dm_arena *a, size_t bytes, dm_error *err) {
    a->base = NULL;
    a->size = a->used = 0;
    dm_status st = dm_memory_check(bytes, err);
    if (st) return st;
    a->base = dm_alloc(bytes);
    a->size = bytes;
    a->used = 0;
    if (!a->base)
        return dm_error_set(err, DM_ERR_NOMEM, "cannot allocate %.1f MiB",
                            (double)bytes / (1 << 20));
    return DM_OK;
}

float *dm_arena_floats(dm_arena *a, size_t n) {
    size_t bytes = dm_arena_piece_bytes(n);
    assert(a->used + bytes <= a->size && "arena too small: size it with dm_arena_piece_bytes");
    float *p = (float *)(a->base + a->used);
    a->used += bytes;
    return p;
}

void dm_arena_free(dm_arena *a) {
    dm_free(a->base);
    a->base = NULL;
    a->size = a->used = 0;
}

bool dm_all_finite(const float *x, size_t n) {
    int bad = 0;
#pragma omp parallel for reduction(| : bad) if (n >= DM_PARALLEL_MIN)
    for (size_t i = 0; i < n; i++) bad |= !isfinite(x[i]);
    return !bad;
}
