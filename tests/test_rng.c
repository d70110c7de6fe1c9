/* Philox4x32-10 against the Random123 known-answer vectors, and the statistical and
 * reproducibility properties the rest of the project relies on. */
#include "diffusion.h"
#include "test_util.h"

#include <omp.h>
#include <string.h>

static void check_kat(uint64_t seed, uint64_t stream, uint64_t block, const uint32_t want[4]) {
    uint32_t got[4];
    dm_rng_block(seed, stream, block, got);
    for (int j = 0; j < 4; j++)
        CHECK(got[j] == want[j], "philox word %d: got %08x want %08x", j, got[j], want[j]);
}

int main(void) {
    /* Random123 kat_vectors, philox4x32 with 10 rounds; counter words (c0, c1) = block,
     * (c2, c3) = stream, key words = seed. */
    check_kat(0, 0, 0, (const uint32_t[]){0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8});
    check_kat(0xffffffffffffffffull, 0xffffffffffffffffull, 0xffffffffffffffffull,
              (const uint32_t[]){0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd});
    check_kat(0x299f31d0a4093822ull, 0x0370734413198a2eull, 0x85a308d3243f6a88ull,
              (const uint32_t[]){0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1});

    /* Moments of the normal and uniform fills. n = 1e6: the standard error of the mean is 1e-3,
     * of the variance sqrt(2/n) = 1.4e-3; 5 standard errors bound a false failure at ~6e-7. */
    const size_t n = 1000000;
    float *z = malloc(n * sizeof *z), *z2 = malloc(n * sizeof *z2);
    dm_rng r;
    dm_rng_init(&r, 42, 0);
    dm_rng_normal(&r, z, n);
    double s = 0, s2 = 0, s4 = 0;
    for (size_t i = 0; i < n; i++) s += z[i], s2 += (double)z[i] * z[i];
    double mean = s / n, var = s2 / n - mean * mean;
    for (size_t i = 0; i < n; i++) s4 += pow(z[i] - mean, 4);
    CHECK_CLOSE(mean, 0.0, 5e-3, 0, "normal mean");
    CHECK_CLOSE(var, 1.0, 5 * 1.42e-3, 0, "normal variance");
    /* kurtosis 3; its standard error is sqrt(96/n) ~ 1e-2 */
    CHECK_CLOSE(s4 / n / (var * var), 3.0, 5e-2, 0, "normal kurtosis");
    CHECK(r.offset == n / 4, "offset advanced by %llu blocks", (unsigned long long)r.offset);

    dm_rng_uniform(&r, z, n);
    double umin = 1, umax = 0;
    s = 0;
    for (size_t i = 0; i < n; i++) {
        s += z[i];
        if (z[i] < umin) umin = z[i];
        if (z[i] > umax) umax = z[i];
    }
    /* uniform mean 1/2, standard error sqrt(1/12/n) = 2.9e-4 */
    CHECK_CLOSE(s / n, 0.5, 5 * 2.9e-4, 0, "uniform mean");
    CHECK(umin > 0 && umax < 1, "uniform outside (0,1): min %g max %g", umin, umax);

    /* Integers in [lo, hi): every value hit about equally often (chi-square, 9 dof;
     * 27.9 is the 0.999 quantile). */
    int32_t *k = malloc(n * sizeof *k);
    dm_rng_int(&r, k, n, -3, 7);
    long counts[10] = {0};
    int in_range = 1;
    for (size_t i = 0; i < n; i++) {
        if (k[i] < -3 || k[i] >= 7) in_range = 0;
        else counts[k[i] + 3]++;
    }
    CHECK(in_range, "integer outside [-3, 7)");
    double chi2 = 0;
    for (int v = 0; v < 10; v++) chi2 += pow(counts[v] - n / 10.0, 2) / (n / 10.0);
    CHECK(chi2 < 27.9, "integer chi-square %g", chi2);

    /* Same seed and stream: same numbers, whatever the thread count. */
    dm_rng a, b;
    dm_rng_init(&a, 7, 3);
    dm_rng_init(&b, 7, 3);
    omp_set_num_threads(1);
    dm_rng_normal(&a, z, n);
    omp_set_num_threads(2);
    dm_rng_normal(&b, z2, n);
    CHECK(memcmp(z, z2, n * sizeof *z) == 0, "normal fill depends on the thread count");

    /* Two fills of n/2 equal one fill of n when n/2 is a multiple of 4 (block-aligned). */
    dm_rng_init(&a, 7, 3);
    dm_rng_normal(&a, z2, n / 2);
    dm_rng_normal(&a, z2 + n / 2, n / 2);
    CHECK(memcmp(z, z2, n * sizeof *z) == 0, "split fill differs from one fill");

    /* Different streams and seeds give different numbers. */
    dm_rng_init(&a, 7, 4);
    dm_rng_normal(&a, z2, 16);
    CHECK(memcmp(z, z2, 16 * sizeof *z) != 0, "streams 3 and 4 coincide");
    dm_rng_init(&a, 8, 3);
    dm_rng_normal(&a, z2, 16);
    CHECK(memcmp(z, z2, 16 * sizeof *z) != 0, "seeds 7 and 8 coincide");

    double u = dm_rng_uniform1(&a);
    CHECK(u > 0 && u < 1, "uniform1 %g", u);

    free(z);
    free(z2);
    free(k);
    return tu_finish("test_rng");
}
