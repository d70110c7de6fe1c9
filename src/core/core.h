/* Internal core: arenas, aligned allocation, BLAS, small parallel helpers. */
#pragma once

#include "diffusion.h"

#include <assert.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Loops the compiler vectorises run several times faster with AVX2 or AVX-512 than with the SSE2
 * of the x86-64 baseline that a portable build targets, so such functions are built for three
 * levels and the dynamic loader picks the one the CPU runs (function multiversioning; CMake
 * defines DM_MULTIVERSION where the compiler supports it). A -DDM_NATIVE=ON build targets the
 * build machine's CPU instead and needs none of it. */
#ifdef DM_MULTIVERSION
#define DM_VECTOR_KERNEL \
    __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define DM_VECTOR_KERNEL
#endif

/* ---- arena: one allocation carved into aligned pieces; the training step allocates nothing */
typedef struct {
    char *base;
    size_t size; /* bytes */
    size_t used; /* bytes */
} dm_arena;

#define DM_ALIGN 64

dm_status dm_arena_init(dm_arena *a, size_t bytes, dm_error *err);
/* n floats, 64-byte aligned, zeroed at init; asserts that the arena is large enough
 * (size it with dm_arena_bytes_for). */
float *dm_arena_floats(dm_arena *a, size_t n);
void dm_arena_free(dm_arena *a);
/* Bytes an arena needs to hold pieces of the given float counts. */
static inline size_t dm_arena_piece_bytes(size_t n_floats) {
    return (n_floats * sizeof(float) + DM_ALIGN - 1) / DM_ALIGN * DM_ALIGN;
}

/* 64-byte aligned, zeroed; NULL on failure. Free with dm_free. */
void *dm_alloc(size_t bytes);
void dm_free(void *p);

/* ---- BLAS: C (M, N) = alpha * op(A) op(B) + beta * C, row-major */
void dm_sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
              const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
              int64_t ldc);

/* Elementwise loops below this size are not worth waking the OpenMP team for. */
#define DM_PARALLEL_MIN 32768

/* ---- FNV-1a (64-bit) content hashes; dm_fnv1a_add continues one over more bytes */
#define DM_FNV1A_START 0xcbf29ce484222325ull
uint64_t dm_fnv1a_add(uint64_t h, const void *data, size_t bytes);
uint64_t dm_fnv1a(const void *data, size_t bytes); /* dm_fnv1a_add(DM_FNV1A_START, ...) */

/* true if every value is finite */
bool dm_all_finite(const float *x, size_t n);

/* Memory this process can still take: the least of MemAvailable, the cgroup limit and the
 * ulimits (-v, -d); *source (may be NULL) names which one. */
uint64_t dm_memory_available(const char **source);
/* DM_ERR_NOMEM with the figures when bytes (64 MiB or more) exceed dm_memory_available();
 * DM_MEMORY_CHECK=0 in the environment turns the check off. */
dm_status dm_memory_check(uint64_t bytes, dm_error *err);

/* ---- profiling (dm_profile_*): a primitive brackets its work with these */
double dm_profile_begin(void);                    /* 0 when profiling is off */
void dm_profile_end(dm_profile_kind k, double t0); /* adds the time since t0 to k */
