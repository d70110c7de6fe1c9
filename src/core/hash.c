/* FNV-1a, 64-bit: the content hashes of training data and checkpoints. */
#include "core/core.h"

uint64_t dm_fnv1a_add(uint64_t h, const void *data, size_t bytes) {
    const unsigned char *p = data;
    for (size_t i = 0; i < bytes; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

uint64_t dm_fnv1a(const void *data, size_t bytes) {
    return dm_fnv1a_add(DM_FNV1A_START, data, bytes);
}
