/* dm_sgemm (oneDNN's sgemm or OpenBLAS's) against a naive product: the four transpose cases,
 * leading dimensions wider than the matrices, alpha and beta, and the empty products BLAS
 * defines (K = 0 scales C by beta; M or N = 0 does nothing). */
#include "core/core.h"
#include "test_util.h"

static void fill(float *v, size_t n, uint64_t seed) {
    dm_rng r;
    dm_rng_init(&r, seed, 0);
    dm_rng_normal(&r, v, n);
}

static void test_product(bool ta, bool tb, int64_t M, int64_t N, int64_t K) {
    /* stored shapes: A is (M, K) or, transposed, (K, M); two spare columns in every row */
    const int64_t ra = ta ? K : M, ca = ta ? M : K, rb = tb ? N : K, cb = tb ? K : N;
    const int64_t lda = ca + 2, ldb = cb + 2, ldc = N + 2;
    float *A = malloc(sizeof(float) * (size_t)(ra * lda));
    float *B = malloc(sizeof(float) * (size_t)(rb * ldb));
    float *C = malloc(sizeof(float) * (size_t)(M * ldc));
    double *want = malloc(sizeof(double) * (size_t)(M * N));
    fill(A, (size_t)(ra * lda), 1);
    fill(B, (size_t)(rb * ldb), 2);
    fill(C, (size_t)(M * ldc), 3);
    const float alpha = 0.5f, beta = -2.0f;
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double s = 0;
            for (int64_t k = 0; k < K; k++)
                s += (double)(ta ? A[k * lda + i] : A[i * lda + k]) *
                     (double)(tb ? B[j * ldb + k] : B[k * ldb + j]);
            want[i * N + j] = alpha * s + beta * (double)C[i * ldc + j];
        }
    const float spare = C[ldc - 1];
    dm_sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    double worst = 0;
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            const double e = fabs(C[i * ldc + j] - want[i * N + j]);
            if (e > worst) worst = e;
        }
    CHECK(worst <= 1e-5 * (double)(K + 1), "sgemm %c%c M=%lld N=%lld K=%lld: off by %g",
          ta ? 'T' : 'N', tb ? 'T' : 'N', (long long)M, (long long)N, (long long)K, worst);
    CHECK(C[ldc - 1] == spare, "sgemm wrote past N in a row of C");
    free(A); free(B); free(C); free(want);
}

static void test_empty(void) {
    float A[1] = {7}, B[4] = {1, 2, 3, 4}, C[4] = {1, 2, 3, 4};
    dm_sgemm(false, false, 2, 2, 0, 1.0f, A, 1, B, 2, 3.0f, C, 2);
    CHECK(C[0] == 3 && C[1] == 6 && C[2] == 9 && C[3] == 12, "K = 0: C = beta C");
    dm_sgemm(false, false, 2, 2, 0, 1.0f, A, 1, B, 2, 0.0f, C, 2);
    CHECK(C[0] == 0 && C[3] == 0, "K = 0, beta = 0: C = 0");
    C[0] = 5;
    dm_sgemm(false, false, 0, 2, 2, 1.0f, A, 2, B, 2, 0.0f, C, 2);
    dm_sgemm(false, false, 2, 0, 2, 1.0f, A, 2, B, 2, 0.0f, C, 2);
    CHECK(C[0] == 5, "M or N = 0: C untouched");
}

int main(void) {
    for (int t = 0; t < 4; t++) {
        test_product(t & 1, t & 2, 7, 5, 3);
        test_product(t & 1, t & 2, 64, 256, 256); /* the MLP's layers at batch 64 */
        test_product(t & 1, t & 2, 1, 33, 17);
    }
    test_empty();
    return tu_finish("test_blas");
}
