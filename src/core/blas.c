/* The one place that calls a BLAS sgemm: oneDNN's where the build has it, OpenBLAS's otherwise.
 * oneDNN's JIT GEMM uses the widest vector instructions the CPU has (AVX-512 on the project's
 * machines, where the environment pins OpenBLAS to its AVX2 kernels with
 * OPENBLAS_CORETYPE=Haswell); unpinned, OpenBLAS's AVX-512 kernels measured about the same
 * there (486 against 513 GFLOP/s at 4096, docs/benchmarks.md). */
#include "core.h"

#include <cblas.h>
#ifdef DM_HAVE_DNNL
#include <oneapi/dnnl/dnnl.h>
#endif

void dm_sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
              const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
              int64_t ldc) {
#ifdef DM_HAVE_DNNL
    /* BLAS semantics for empty products, which oneDNN's argument checks may refuse (a leading
     * dimension of 0) */
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++)
                C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
        return;
    }
    /* row-major, like the cblas call below */
    const dnnl_status_t st = dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', M, N, K, alpha,
                                        A, lda, B, ldb, beta, C, ldc);
    /* only arguments oneDNN refuses before touching C fail; the library never aborts, so
     * OpenBLAS (linked in every build) does the product instead */
    if (st == dnnl_success) return;
#endif
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, (blasint)M, (blasint)N, (blasint)K, alpha, A,
                (blasint)lda, B, (blasint)ldb, beta, C, (blasint)ldc);
}
