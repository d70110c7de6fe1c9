/* diffusion/core.h: errors, version, threads and random numbers.
 * Part of the public API of libdiffusion; <diffusion.h> includes every part. */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* The version of this header; dm_version() gives the library's, which a program linked with a
 * shared libdiffusion may find different (the soname libdiffusion.so.MAJOR changes with MAJOR). */
#define DM_VERSION_MAJOR 0
#define DM_VERSION_MINOR 1
#define DM_VERSION_PATCH 0

/* Marks the public API. The library is built with hidden visibility, so only what this header
 * declares with DM_API is exported from libdiffusion.so (tests/lib_symbols.sh checks it). */
#ifndef DM_API
#if defined(__GNUC__) || defined(__clang__)
#define DM_API __attribute__((visibility("default")))
#else
#define DM_API
#endif
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* "MAJOR.MINOR.PATCH" of the library this program runs with. */
DM_API const char *dm_version(void);

/* ------------------------------------------------------------------------------------------ */
/* Errors                                                                                     */

typedef enum {
    DM_OK = 0,
    DM_ERR_ARG,      /* invalid argument or option value */
    DM_ERR_IO,       /* a file could not be opened, read, written or renamed */
    DM_ERR_FORMAT,   /* a file's contents are malformed or truncated */
    DM_ERR_NOMEM,    /* an allocation failed */
    DM_ERR_NUMERIC,  /* NaN or Inf where a finite number is needed */
    DM_ERR_MISMATCH, /* a file does not match what it is loaded into (shape, name, architecture) */
    DM_ERR_UNSUPPORTED, /* this build lacks the optional component asked for (plots: DM_PLOT) */
} dm_status;

typedef struct {
    dm_status status;
    char msg[1024];
} dm_error;

/* Records status and a printf-style message in err (if err is not NULL); returns status. */
DM_API dm_status dm_error_set(dm_error *err, dm_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Prefixes the message already in err with "context: " (for adding a file name); returns status. */
DM_API dm_status dm_error_prefix(dm_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
DM_API const char *dm_status_name(dm_status status);

/* ------------------------------------------------------------------------------------------ */
/* Threads and random numbers                                                                 */

/* Sets the OpenMP thread count; BLAS calls made from the library run single-threaded inside
 * OpenMP regions and with this many threads outside them. n <= 0 means all cores. */
DM_API void dm_set_num_threads(int n);
DM_API int dm_get_num_threads(void);
/* The BLAS's single-precision GEMM rate on n x n matrices at the current thread count, in
 * GFLOP/s (2 n^3 per product; median of `iters` after one warm-up); < 0 if out of memory. */
DM_API double dm_sgemm_gflops(int64_t n, int iters);

/* Time per layer type (for choosing the next optimisation): while enabled, the layer primitives
 * add their wall time to their category. Convolutions include their im2col and bias work;
 * attention is the softmax(q k^T) v kernel (its projections count as linear); elementwise is
 * SiLU, upsampling and skip concatenation; optimiser is Adam, clipping and the EMA. */
typedef enum {
    DM_PROFILE_CONV_FWD = 0,
    DM_PROFILE_CONV_BWD,
    DM_PROFILE_ATTENTION,
    DM_PROFILE_NORM,
    DM_PROFILE_LINEAR,
    DM_PROFILE_ELEMENTWISE,
    DM_PROFILE_OPTIMISER,
    DM_PROFILE_COUNT
} dm_profile_kind;

DM_API void dm_profile_enable(int on);
DM_API void dm_profile_reset(void);
DM_API double dm_profile_seconds(dm_profile_kind k);
DM_API const char *dm_profile_name(dm_profile_kind k);

/* Convolutions run through oneDNN's JIT kernels where the library was built with oneDNN
 * (libdnnl-dev), the layer has 8 or more channels in and out and oneDNN has a JIT kernel for it
 * on this CPU; through im2col + sgemm otherwise, or everywhere under DM_CONV_IM2COL. Both give
 * the same results within float rounding. Process-wide; the default is DM_CONV_AUTO. */
typedef enum { DM_CONV_AUTO = 0, DM_CONV_IM2COL = 1 } dm_conv_backend;
DM_API void dm_set_conv_backend(dm_conv_backend backend);
DM_API dm_conv_backend dm_get_conv_backend(void);
/* The arithmetic of the convolutions on the oneDNN path: float32 (the default), or bfloat16
 * products: x, w and dy rounded to bfloat16 (8 significant bits), sums and results in float32,
 * as mixed-precision training does it. Weights, gradients and optimiser state stay float32.
 * Fast on CPUs with AVX-512 BF16; oneDNN emulates it elsewhere. Process-wide. */
typedef enum { DM_PRECISION_FP32 = 0, DM_PRECISION_BF16 = 1 } dm_precision;
DM_API void dm_set_conv_precision(dm_precision precision);
DM_API dm_precision dm_get_conv_precision(void);
/* What a size-keeping 3x3 convolution of C channels on H x W images at batch B runs: oneDNN's
 * name for its implementation ("jit:avx512_core", ...) or "im2col+sgemm". */
DM_API const char *dm_conv_impl_name(int64_t C, int64_t H, int64_t W, int64_t B);

/* Philox4x32-10 counter-based generator. (seed, stream) select an independent sequence; offset
 * counts the 128-bit blocks consumed so far. Element i of a fill uses block offset + i/4, so a
 * fill done by any number of threads gives the same numbers. Save and restore by copying. */
typedef struct {
    uint64_t seed;
    uint64_t stream;
    uint64_t offset;
} dm_rng;

DM_API void dm_rng_init(dm_rng *rng, uint64_t seed, uint64_t stream);
/* The pure generator: 4 random words for block `block` of (seed, stream). */
DM_API void dm_rng_block(uint64_t seed, uint64_t stream, uint64_t block, uint32_t out[4]);
/* Uniform on the open interval (0, 1). */
DM_API void dm_rng_uniform(dm_rng *rng, float *out, size_t n);
/* Standard normal (Box-Muller in double from pairs of words). */
DM_API void dm_rng_normal(dm_rng *rng, float *out, size_t n);
/* Uniform integers in [lo, hi), hi > lo; bias below (hi - lo) / 2^64. */
DM_API void dm_rng_int(dm_rng *rng, int32_t *out, size_t n, int32_t lo, int32_t hi);
/* One double uniform on (0, 1) (consumes one block). */
DM_API double dm_rng_uniform1(dm_rng *rng);

#ifdef __cplusplus
}
#endif
