/* Sample quality against data: RBF-kernel MMD, the median-distance bandwidth, and the sliced
 * 2-Wasserstein distance. All three return NAN for arguments they cannot measure (empty sets,
 * NULL pointers, a non-positive bandwidth), so a caller's report shows the problem rather than a
 * plausible number. Results do not depend on the thread count: per-row and per-direction partial
 * results are stored and summed in a fixed order. */
#include "core/core.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- MMD ---------------------------------------------------------------------------------- */

/* exp(x) for x <= 0, written so that `omp simd` loops vectorise it (libm's exp does not
 * vectorise without -ffast-math). Cody-Waite reduction x = k ln2 + r, |r| <= ln2/2, then a
 * degree-12 Taylor polynomial: truncation error < 2e-16 relative, so MMD^2, a difference of
 * kernel means, loses nothing measurable to the approximation. Inputs below -700 return about
 * exp(-700) (1e-304) instead of underflowing through subnormals: such terms are negligible. */
static inline double exp_neg(double x) {
    x = x < -700.0 ? -700.0 : x;
    const double shifter = 0x1.8p52; /* adding it rounds to an integer in the low mantissa bits */
    double t = x * 1.4426950408889634 + shifter;
    double k = t - shifter;
    double r = x - k * 6.93147180369123816490e-01; /* ln2 high part: k * hi is exact */
    r = r - k * 1.90821492927058770002e-10;         /* ln2 low part */
    double p = 1.0 / 479001600.0;                   /* 1/12! */
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    /* 2^k: t's bits are those of 1.5 * 2^52 plus k, so (bits + 1023) << 52 shifts out the
     * constant and leaves k + 1023 (in [1, 2046] here) in the exponent field */
    uint64_t bits;
    memcpy(&bits, &t, sizeof bits);
    uint64_t sbits = (bits + 1023) << 52;
    double scale;
    memcpy(&scale, &sbits, sizeof scale);
    return p * scale;
}

/* Columns of j handled per tile: the tile's coordinates and distances stay in L1. */
#define MMD_TILE 256
/* Rows per parallel work item: each tile of b is reused by this many rows of a. */
#define MMD_ROWS 16

/* Points as dim arrays of n doubles (structure of arrays), so the inner loop over points is
 * contiguous whatever the dimension. */
static double *to_columns(const float *x, int64_t n, int64_t dim) {
    double *c = dm_alloc((size_t)(n * dim) * sizeof *c);
    if (!c) return NULL;
    for (int64_t i = 0; i < n; i++)
        for (int64_t k = 0; k < dim; k++) c[k * n + i] = x[i * dim + k];
    return c;
}

/* row_sum[i] = sum_j k(a_i, b_j), over j > i when `upper` (a and b are then the same set), else
 * over all j. a is (dim, na) and b is (dim, nb), both column-major; g = -1 / (2 h^2). */
static void kernel_row_sums(double *row_sum, const double *a, int64_t na, const double *b,
                            int64_t nb, int64_t dim, double g, int upper) {
    const int64_t blocks = (na + MMD_ROWS - 1) / MMD_ROWS;
    /* upper-triangle rows shrink with i: dynamic scheduling balances them */
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t blk = 0; blk < blocks; blk++) {
        double d2[MMD_TILE];
        const int64_t i0 = blk * MMD_ROWS, i1 = i0 + MMD_ROWS < na ? i0 + MMD_ROWS : na;
        for (int64_t i = i0; i < i1; i++) row_sum[i] = 0.0;
        for (int64_t j0 = upper ? i0 + 1 : 0; j0 < nb; j0 += MMD_TILE) {
            const int64_t j1 = j0 + MMD_TILE < nb ? j0 + MMD_TILE : nb;
            for (int64_t i = i0; i < i1; i++) {
                const int64_t js = upper && i + 1 > j0 ? i + 1 : j0, len = j1 - js;
                if (len <= 0) continue;
                double ai = a[i];
#pragma omp simd
                for (int64_t j = 0; j < len; j++) {
                    double d = ai - b[js + j];
                    d2[j] = d * d;
                }
                for (int64_t k = 1; k < dim; k++) {
                    const double aik = a[k * na + i], *bk = b + k * nb + js;
#pragma omp simd
                    for (int64_t j = 0; j < len; j++) {
                        double d = aik - bk[j];
                        d2[j] += d * d;
                    }
                }
                double s = 0.0;
#pragma omp simd reduction(+ : s)
                for (int64_t j = 0; j < len; j++) s += exp_neg(g * d2[j]);
                row_sum[i] += s;
            }
        }
    }
}

static double sum_in_order(const double *v, int64_t n) {
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += v[i];
    return s;
}

double dm_mmd_rbf(const float *x, int64_t n, const float *y, int64_t m, int64_t dim, double h) {
    if (!x || !y || n <= 0 || m <= 0 || dim <= 0 || !(h > 0.0) || !isfinite(h)) return NAN;
    double *xc = to_columns(x, n, dim), *yc = to_columns(y, m, dim);
    double *rows = dm_alloc((size_t)(n > m ? n : m) * sizeof *rows);
    double result = NAN;
    if (xc && yc && rows) {
        const double g = -1.0 / (2.0 * h * h);
        /* k(a, a) = 1: the diagonal adds n, and each off-diagonal pair counts twice */
        kernel_row_sums(rows, xc, n, xc, n, dim, g, 1);
        double kxx = ((double)n + 2.0 * sum_in_order(rows, n)) / ((double)n * (double)n);
        kernel_row_sums(rows, yc, m, yc, m, dim, g, 1);
        double kyy = ((double)m + 2.0 * sum_in_order(rows, m)) / ((double)m * (double)m);
        kernel_row_sums(rows, xc, n, yc, m, dim, g, 0);
        double kxy = sum_in_order(rows, n) / ((double)n * (double)m);
        double mmd2 = kxx + kyy - 2.0 * kxy;
        result = sqrt(mmd2 > 0.0 ? mmd2 : 0.0); /* rounding can push identical sets below 0 */
    }
    dm_free(xc);
    dm_free(yc);
    dm_free(rows);
    return result;
}

/* ---- median bandwidth ---------------------------------------------------------------------- */

/* Rows used by the median heuristic: 2000 rows give about 2 million distances, plenty for a
 * median, and keep the cost at a few milliseconds. */
#define BANDWIDTH_MAX_ROWS 2000

static int cmp_double(const void *pa, const void *pb) {
    double a = *(const double *)pa, b = *(const double *)pb;
    return (a > b) - (a < b);
}

/* Rearranges v so that v[k] is the k-th smallest, with smaller values before it (quickselect
 * with a median-of-three pivot; after 64 rounds without finishing it sorts what is left, so
 * crafted inputs cannot make it quadratic). */
static void select_kth(double *v, int64_t n, int64_t k) {
    int64_t lo = 0, hi = n - 1;
    for (int rounds = 0; hi > lo; rounds++) {
        if (rounds == 64) {
            qsort(v + lo, (size_t)(hi - lo + 1), sizeof *v, cmp_double);
            return;
        }
        int64_t mid = lo + (hi - lo) / 2;
        double a = v[lo], b = v[mid], c = v[hi];
        double pivot = a < b ? (b < c ? b : (a < c ? c : a)) : (a < c ? a : (b < c ? c : b));
        int64_t i = lo, j = hi;
        while (i <= j) { /* Hoare partition: [lo, j] <= pivot <= [i, hi] */
            while (v[i] < pivot) i++;
            while (v[j] > pivot) j--;
            if (i <= j) {
                double t = v[i];
                v[i++] = v[j];
                v[j--] = t;
            }
        }
        if (k <= j) hi = j;
        else if (k >= i) lo = i;
        else return; /* j < k < i: v[k] equals the pivot and is in place */
    }
}

double dm_median_bandwidth(const float *x, int64_t n, int64_t dim) {
    if (!x || dim <= 0) return NAN;
    const int64_t p = n < BANDWIDTH_MAX_ROWS ? n : BANDWIDTH_MAX_ROWS;
    if (p < 2) return NAN;
    const int64_t pairs = p * (p - 1) / 2;
    double *d = dm_alloc((size_t)pairs * sizeof *d);
    if (!d) return NAN;
#pragma omp parallel for schedule(dynamic, 16)
    for (int64_t i = 0; i < p; i++) {
        /* pairs (i, j > i) are stored row after row of the upper triangle */
        int64_t base = i * p - i * (i + 1) / 2;
        for (int64_t j = i + 1; j < p; j++) {
            double s = 0.0;
            for (int64_t k = 0; k < dim; k++) {
                double t = (double)x[i * dim + k] - (double)x[j * dim + k];
                s += t * t;
            }
            d[base + (j - i - 1)] = sqrt(s);
        }
    }
    /* the median of an even count is the mean of the two middle values */
    const int64_t k = pairs / 2;
    select_kth(d, pairs, k);
    double med = d[k];
    if (pairs % 2 == 0) {
        double below = d[0];
        for (int64_t i = 1; i < k; i++) below = d[i] > below ? d[i] : below;
        med = 0.5 * (med + below);
    }
    dm_free(d);
    return med;
}

/* ---- sliced Wasserstein -------------------------------------------------------------------- */

/* The directions: one dm_rng_normal fill of projections x dim values from (seed, stream 7); row
 * p, normalised, is direction p. A caller can recompute them (the tests do). */
#define SW_RNG_STREAM 7

/* Order-preserving map from a double to an unsigned key: flip all bits of negatives, the sign
 * bit of the rest. */
static inline uint64_t double_key(double v) {
    uint64_t u;
    memcpy(&u, &v, sizeof u);
    return u & 0x8000000000000000ull ? ~u : u | 0x8000000000000000ull;
}

static inline double key_double(uint64_t u) {
    u = u & 0x8000000000000000ull ? u & ~0x8000000000000000ull : ~u;
    double v;
    memcpy(&v, &u, sizeof v);
    return v;
}

#define RADIX_BITS 11
#define RADIX_SIZE (1 << RADIX_BITS)
#define RADIX_PASSES 6 /* 6 x 11 bits cover the 64-bit key */

/* Per-thread scratch of the sliced Wasserstein loop, one allocation per thread and call. */
typedef struct {
    double *px, *py;               /* (n) projections of x and y */
    uint64_t *keys, *tmp;          /* (n) sort keys and the radix sort's second buffer */
    double *theta;                 /* (dim) unit direction */
    uint32_t (*count)[RADIX_SIZE]; /* (RADIX_PASSES, RADIX_SIZE) digit histograms */
    void *block;                   /* the one allocation holding all of the above */
} sw_scratch;

static int sw_scratch_init(sw_scratch *s, int64_t n, int64_t dim) {
    size_t nn = (size_t)n;
    s->block = dm_alloc(nn * 2 * sizeof(double) + nn * 2 * sizeof(uint64_t) +
                        (size_t)dim * sizeof(double) + sizeof(uint32_t[RADIX_PASSES][RADIX_SIZE]));
    if (!s->block) return 0;
    s->count = s->block; /* first, so every piece below stays 8-byte aligned */
    s->px = (double *)(s->count + RADIX_PASSES);
    s->py = s->px + nn;
    s->keys = (uint64_t *)(s->py + nn);
    s->tmp = s->keys + nn;
    s->theta = (double *)(s->tmp + nn);
    return 1;
}

/* Sorts v (n) ascending with an LSD radix sort on order-preserving keys: six linear passes are
 * several times faster than qsort at the projection sizes used here (10^4 to 10^5). A pass where
 * every key has the same digit is skipped. */
static void radix_sort_doubles(double *v, int64_t n, sw_scratch *s) {
    static_assert(RADIX_BITS * RADIX_PASSES >= 64, "passes must cover the key");
    memset(s->count, 0, sizeof(uint32_t[RADIX_PASSES][RADIX_SIZE]));
    for (int64_t i = 0; i < n; i++) {
        uint64_t key = double_key(v[i]);
        s->keys[i] = key;
        for (int p = 0; p < RADIX_PASSES; p++)
            s->count[p][(key >> (p * RADIX_BITS)) & (RADIX_SIZE - 1)]++;
    }
    uint64_t *src = s->keys, *dst = s->tmp;
    for (int p = 0; p < RADIX_PASSES; p++) {
        const int shift = p * RADIX_BITS;
        uint32_t *count = s->count[p];
        if (count[(src[0] >> shift) & (RADIX_SIZE - 1)] == (uint32_t)n) continue;
        uint32_t sum = 0;
        for (int b = 0; b < RADIX_SIZE; b++) {
            uint32_t c = count[b];
            count[b] = sum;
            sum += c;
        }
        for (int64_t i = 0; i < n; i++) dst[count[(src[i] >> shift) & (RADIX_SIZE - 1)]++] = src[i];
        uint64_t *t = src;
        src = dst;
        dst = t;
    }
    for (int64_t i = 0; i < n; i++) v[i] = key_double(src[i]);
}

/* Mean squared difference of the sorted projections of x and y onto direction d (dim). */
static double sw_direction(const float *x, const float *y, int64_t n, int64_t dim, const float *d,
                           sw_scratch *s) {
    double norm2 = 0.0;
    for (int64_t k = 0; k < dim; k++) norm2 += (double)d[k] * d[k];
    /* a zero vector has probability 0 but would divide by zero: use the first axis */
    for (int64_t k = 0; k < dim; k++)
        s->theta[k] = norm2 > 0.0 ? d[k] / sqrt(norm2) : (k == 0 ? 1.0 : 0.0);
    for (int64_t i = 0; i < n; i++) {
        double sx = 0.0, sy = 0.0;
        for (int64_t k = 0; k < dim; k++) {
            sx += x[i * dim + k] * s->theta[k];
            sy += y[i * dim + k] * s->theta[k];
        }
        s->px[i] = sx;
        s->py[i] = sy;
    }
    radix_sort_doubles(s->px, n, s);
    radix_sort_doubles(s->py, n, s);
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) sum += (s->px[i] - s->py[i]) * (s->px[i] - s->py[i]);
    return sum / (double)n;
}

double dm_sliced_wasserstein(const float *x, const float *y, int64_t n, int64_t dim,
                             int projections, uint64_t seed) {
    if (!x || !y || n <= 0 || dim <= 0 || projections <= 0 || n > (int64_t)UINT32_MAX) return NAN;
    /* directions: one fill of projections x dim normals; row p is direction p */
    float *dir = dm_alloc((size_t)projections * (size_t)dim * sizeof *dir);
    double *per_dir = dm_alloc((size_t)projections * sizeof *per_dir);
    int failed = !dir || !per_dir;
    if (!failed) {
        dm_rng rng;
        dm_rng_init(&rng, seed, SW_RNG_STREAM);
        dm_rng_normal(&rng, dir, (size_t)projections * (size_t)dim);
#pragma omp parallel reduction(| : failed)
        {
            sw_scratch s;
            failed = !sw_scratch_init(&s, n, dim);
#pragma omp for schedule(dynamic, 1)
            for (int p = 0; p < projections; p++)
                if (!failed) per_dir[p] = sw_direction(x, y, n, dim, dir + (size_t)p * dim, &s);
            if (!failed) dm_free(s.block);
        }
    }
    double result = failed ? NAN : sqrt(sum_in_order(per_dir, projections) / projections);
    dm_free(dir);
    dm_free(per_dir);
    return result;
}
