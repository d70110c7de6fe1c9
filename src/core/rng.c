/* Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011).
 * Counter = (block lo, block hi, stream lo, stream hi), key = seed: any element of any stream
 * can be computed on its own, so parallel fills do not depend on the thread count. */
#include "diffusion.h"

#include <math.h>

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

void dm_rng_block(uint64_t seed, uint64_t stream, uint64_t block, uint32_t out[4]) {
    uint32_t c0 = (uint32_t)block, c1 = (uint32_t)(block >> 32);
    uint32_t c2 = (uint32_t)stream, c3 = (uint32_t)(stream >> 32);
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    for (int round = 0; round < 10; round++) {
        uint64_t p0 = (uint64_t)PHILOX_M0 * c0, p1 = (uint64_t)PHILOX_M1 * c2;
        uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
        uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
        c0 = hi1 ^ c1 ^ k0;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ k1;
        c3 = lo0;
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

void dm_rng_init(dm_rng *rng, uint64_t seed, uint64_t stream) {
    rng->seed = seed;
    rng->stream = stream;
    rng->offset = 0;
}

/* A 32-bit word to a double strictly inside (0, 1). */
static inline double u32_to_open01(uint32_t w) { return ((double)w + 0.5) * (1.0 / 4294967296.0); }

/* Fills below split n elements into 4-element blocks; OpenMP only pays for large fills. */
#define DM_RNG_PARALLEL_MIN 65536

void dm_rng_uniform(dm_rng *rng, float *out, size_t n) {
    const uint64_t base = rng->offset, seed = rng->seed, stream = rng->stream;
    const int64_t blocks = (int64_t)((n + 3) / 4);
#pragma omp parallel for schedule(static) if (n >= DM_RNG_PARALLEL_MIN)
    for (int64_t b = 0; b < blocks; b++) {
        uint32_t w[4];
        dm_rng_block(seed, stream, base + (uint64_t)b, w);
        for (int j = 0; j < 4; j++) {
            size_t i = (size_t)b * 4 + (size_t)j;
            if (i < n) {
                float u = (float)u32_to_open01(w[j]);
                /* rounding to float can reach 1.0f; keep the interval open */
                out[i] = u < 1.0f ? u : 0x1.fffffep-1f;
            }
        }
    }
    rng->offset += (uint64_t)blocks;
}

void dm_rng_normal(dm_rng *rng, float *out, size_t n) {
    const uint64_t base = rng->offset, seed = rng->seed, stream = rng->stream;
    const int64_t blocks = (int64_t)((n + 3) / 4);
#pragma omp parallel for schedule(static) if (n >= DM_RNG_PARALLEL_MIN)
    for (int64_t b = 0; b < blocks; b++) {
        uint32_t w[4];
        dm_rng_block(seed, stream, base + (uint64_t)b, w);
        double z[4];
        for (int pair = 0; pair < 2; pair++) {
            double r = sqrt(-2.0 * log(u32_to_open01(w[2 * pair])));
            double theta = 6.283185307179586 * u32_to_open01(w[2 * pair + 1]);
            z[2 * pair] = r * cos(theta);
            z[2 * pair + 1] = r * sin(theta);
        }
        for (int j = 0; j < 4; j++) {
            size_t i = (size_t)b * 4 + (size_t)j;
            if (i < n) out[i] = (float)z[j];
        }
    }
    rng->offset += (uint64_t)blocks;
}

void dm_rng_int(dm_rng *rng, int32_t *out, size_t n, int32_t lo, int32_t hi) {
    const uint64_t range = (uint64_t)((int64_t)hi - (int64_t)lo);
    const int64_t blocks = (int64_t)((n + 1) / 2);
    for (int64_t b = 0; b < blocks; b++) {
        uint32_t w[4];
        dm_rng_block(rng->seed, rng->stream, rng->offset + (uint64_t)b, w);
        for (int j = 0; j < 2; j++) {
            size_t i = (size_t)b * 2 + (size_t)j;
            if (i >= n) break;
            uint64_t r = ((uint64_t)w[2 * j] << 32) | w[2 * j + 1];
            /* multiply-shift: floor(r * range / 2^64) */
            out[i] = lo + (int32_t)(((unsigned __int128)r * range) >> 64);
        }
    }
    rng->offset += (uint64_t)blocks;
}

double dm_rng_uniform1(dm_rng *rng) {
    uint32_t w[4];
    dm_rng_block(rng->seed, rng->stream, rng->offset++, w);
    /* 53 random bits, shifted by half a unit so the result is never 0 */
    uint64_t r = (((uint64_t)w[0] << 32) | w[1]) >> 11;
    return ((double)r + 0.5) * (1.0 / 9007199254740992.0);
}
