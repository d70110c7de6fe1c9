/* Multi-head attention core: hand-computed cases, the naive backward against central finite
 * differences in double, the fast path against the naive one over head sizes that take each of
 * its kernels, inference (probs = NULL) against training, the += rule, thread-count
 * independence and very large scores. */
#include "nn/attention.h"
#include "test_util.h"

#include <omp.h>

static void fill_normal(float *v, size_t n, uint64_t seed, float std) {
    dm_rng rng;
    dm_rng_init(&rng, seed, 13);
    dm_rng_normal(&rng, v, n);
    for (size_t i = 0; i < n; i++) v[i] *= std;
}

static double *to_double(const float *v, size_t n) {
    double *d = malloc(n * sizeof *d);
    for (size_t i = 0; i < n; i++) d[i] = v[i];
    return d;
}

/* N = 2, d = 1, one head: scores q_i k_j, softmax by hand. */
static void test_hand(void) {
    const float q[2] = {1, 2}, k[2] = {0.5f, -1}, v[2] = {3, 5};
    float o[2], probs[4];
    dm_attention_forward_ref(o, probs, q, k, v, 1, 2, 1, 1, 1.0f);
    /* row 0: scores 0.5, -1; row 1: scores 1, -2 */
    const double p00 = 1 / (1 + exp(-1.5)), p10 = 1 / (1 + exp(-3.0));
    const double want_p[4] = {p00, 1 - p00, p10, 1 - p10};
    const double want_o[2] = {3 * p00 + 5 * (1 - p00), 3 * p10 + 5 * (1 - p10)};
    tu_check_array("hand probs", probs, want_p, 4, 1e-7, 0);
    tu_check_array("hand o", o, want_o, 2, 1e-6, 0);

    float o_fast[2], p_fast[4];
    float *work = malloc(dm_attention_work_floats(1, 2, 1, 1) * sizeof *work);
    dm_attention_forward(o_fast, p_fast, q, k, v, 1, 2, 1, 1, 1.0f, work);
    tu_check_array("hand probs (fast)", p_fast, want_p, 4, 1e-7, 0);
    tu_check_array("hand o (fast)", o_fast, want_o, 2, 1e-6, 0);
    free(work);

    /* Two heads, d = 1, with the scale: head 0 uses columns 0, head 1 columns 1. Head 1 has
     * equal keys, so its P is uniform and its output the mean of its values. */
    const float q2[4] = {1, 7, -1, 3};   /* (N=2, C=2) */
    const float k2[4] = {2, 4, 0, 4};
    const float v2[4] = {1, 10, 2, 20};
    float o2[4], p2[8];
    dm_attention_forward_ref(o2, p2, q2, k2, v2, 1, 2, 2, 1, 0.5f);
    /* head 0: row 0 scores 0.5 * (2, 0) = (1, 0); row 1 scores 0.5 * (-2, 0) = (-1, 0) */
    const double a = 1 / (1 + exp(-1.0)), b = 1 / (1 + exp(1.0));
    const double want_p2[8] = {a, 1 - a, b, 1 - b, 0.5, 0.5, 0.5, 0.5};
    const double want_o2[4] = {a * 1 + (1 - a) * 2, 15, b * 1 + (1 - b) * 2, 15};
    tu_check_array("two heads probs", p2, want_p2, 8, 1e-7, 0);
    tu_check_array("two heads o", o2, want_o2, 4, 1e-6, 0);
}

/* L = sum(o * G) with attention in double */
static double attn_loss(const double *q, const double *k, const double *v, const double *G,
                        int64_t B, int64_t N, int64_t heads, int64_t d, double scale) {
    const int64_t C = heads * d;
    double L = 0, s[64];
    assert(N <= 64);
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < heads; h++)
            for (int64_t i = 0; i < N; i++) {
                const int64_t at = b * N * C + h * d;
                double m = -INFINITY, sum = 0;
                for (int64_t j = 0; j < N; j++) {
                    s[j] = 0;
                    for (int64_t c = 0; c < d; c++) s[j] += q[at + i * C + c] * k[at + j * C + c];
                    s[j] *= scale;
                    m = s[j] > m ? s[j] : m;
                }
                for (int64_t j = 0; j < N; j++) sum += s[j] = exp(s[j] - m);
                for (int64_t c = 0; c < d; c++) {
                    double o = 0;
                    for (int64_t j = 0; j < N; j++) o += s[j] / sum * v[at + j * C + c];
                    L += o * G[at + i * C + c];
                }
            }
    return L;
}

/* Central difference along w[i]; h = 1e-4 on O(1) inputs: truncation near 1e-9. */
static double attn_fd(double *w, size_t i, const double *q, const double *k, const double *v,
                      const double *G, int64_t B, int64_t N, int64_t heads, int64_t d,
                      double scale) {
    const double h = 1e-4, keep = w[i];
    w[i] = keep + h;
    const double lp = attn_loss(q, k, v, G, B, N, heads, d, scale);
    w[i] = keep - h;
    const double lm = attn_loss(q, k, v, G, B, N, heads, d, scale);
    w[i] = keep;
    return (lp - lm) / (2 * h);
}

static void test_ref_backward_fd(int64_t B, int64_t N, int64_t heads, int64_t d) {
    const size_t n = (size_t)(B * N * heads * d), np = (size_t)(B * heads * N * N);
    const float scale = 1.0f / sqrtf((float)d);
    float *q = malloc(n * 4), *k = malloc(n * 4), *v = malloc(n * 4), *G = malloc(n * 4);
    float *o = malloc(n * 4), *probs = malloc(np * 4);
    float *dq = calloc(n, 4), *dk = calloc(n, 4), *dv = calloc(n, 4);
    fill_normal(q, n, 1, 1.0f);
    fill_normal(k, n, 2, 1.0f);
    fill_normal(v, n, 3, 1.0f);
    fill_normal(G, n, 4, 1.0f);
    dm_attention_forward_ref(o, probs, q, k, v, B, N, heads, d, scale);
    dm_attention_backward_ref(dq, dk, dv, G, q, k, v, probs, B, N, heads, d, scale);
    double *qd = to_double(q, n), *kd = to_double(k, n), *vd = to_double(v, n);
    double *Gd = to_double(G, n), *want = malloc(3 * n * sizeof *want);
    for (size_t i = 0; i < n; i++) {
        want[i] = attn_fd(qd, i, qd, kd, vd, Gd, B, N, heads, d, scale);
        want[n + i] = attn_fd(kd, i, qd, kd, vd, Gd, B, N, heads, d, scale);
        want[2 * n + i] = attn_fd(vd, i, qd, kd, vd, Gd, B, N, heads, d, scale);
    }
    char what[96];
    /* the reference reads P rounded to float (relative 6e-8), hence 1e-6 and not 1e-9 */
    snprintf(what, sizeof what, "ref dq vs FD B=%lld N=%lld heads=%lld d=%lld", (long long)B,
             (long long)N, (long long)heads, (long long)d);
    tu_check_array(what, dq, want, n, 2e-6, 1e-5);
    snprintf(what, sizeof what, "ref dk vs FD B=%lld N=%lld heads=%lld d=%lld", (long long)B,
             (long long)N, (long long)heads, (long long)d);
    tu_check_array(what, dk, want + n, n, 2e-6, 1e-5);
    snprintf(what, sizeof what, "ref dv vs FD B=%lld N=%lld heads=%lld d=%lld", (long long)B,
             (long long)N, (long long)heads, (long long)d);
    tu_check_array(what, dv, want + 2 * n, n, 2e-6, 1e-5);
    free(q); free(k); free(v); free(G); free(o); free(probs); free(dq); free(dk); free(dv);
    free(qd); free(kd); free(vd); free(Gd); free(want);
}

typedef struct {
    float *q, *k, *v, *dout, *o, *o_inf, *probs, *dq, *dk, *dv, *work;
} attn_bufs;

static attn_bufs attn_alloc(int64_t B, int64_t N, int64_t heads, int64_t d) {
    const size_t n = (size_t)(B * N * heads * d), np = (size_t)(B * heads * N * N);
    attn_bufs t = {malloc(n * 4), malloc(n * 4), malloc(n * 4), malloc(n * 4), malloc(n * 4),
                   malloc(n * 4), malloc(np * 4), calloc(n, 4), calloc(n, 4), calloc(n, 4),
                   malloc(dm_attention_work_floats(B, N, heads, d) * 4)};
    return t;
}

static void attn_release(attn_bufs *t) {
    free(t->q); free(t->k); free(t->v); free(t->dout); free(t->o); free(t->o_inf);
    free(t->probs); free(t->dq); free(t->dk); free(t->dv); free(t->work);
}

/* Fast against naive on one shape; q and k scaled by `spread` to make scores large. */
static void test_fast_vs_ref(int64_t B, int64_t N, int64_t heads, int64_t d, float spread,
                             uint64_t seed) {
    const size_t n = (size_t)(B * N * heads * d), np = (size_t)(B * heads * N * N);
    const float scale = 1.0f / sqrtf((float)d);
    attn_bufs f = attn_alloc(B, N, heads, d);
    float *o_ref = malloc(n * 4), *p_ref = malloc(np * 4);
    float *g_ref = calloc(3 * n, 4);
    fill_normal(f.q, n, seed, spread);
    fill_normal(f.k, n, seed + 1, spread);
    fill_normal(f.v, n, seed + 2, 1.0f);
    fill_normal(f.dout, n, seed + 3, 1.0f);
    for (size_t i = 0; i < n; i++) f.o[i] = f.o_inf[i] = NAN; /* the forward must overwrite */
    dm_attention_forward(f.o, f.probs, f.q, f.k, f.v, B, N, heads, d, scale, f.work);
    dm_attention_forward(f.o_inf, NULL, f.q, f.k, f.v, B, N, heads, d, scale, f.work);
    dm_attention_backward(f.dq, f.dk, f.dv, f.dout, f.q, f.k, f.v, f.probs, B, N, heads, d,
                          scale, f.work);
    dm_attention_forward_ref(o_ref, p_ref, f.q, f.k, f.v, B, N, heads, d, scale);
    dm_attention_backward_ref(g_ref, g_ref + n, g_ref + 2 * n, f.dout, f.q, f.k, f.v, p_ref, B, N,
                              heads, d, scale);
    double *want_o = to_double(o_ref, n), *want_p = to_double(p_ref, np);
    double *want_g = to_double(g_ref, 3 * n);
    char what[128];
#define ATTN_WHAT(name)                                                                         \
    snprintf(what, sizeof what, "fast " name " B=%lld N=%lld heads=%lld d=%lld spread=%g",      \
             (long long)B, (long long)N, (long long)heads, (long long)d, (double)spread)
    /* A float score is off by about eps * |q| |k| = 6e-8 * spread^2 * d (scaled); P inherits
     * that as a relative error, on top of one exp (about 1 ulp) and a float sum of N terms. */
    const double grow = spread > 1.0f ? (double)spread * spread : 1.0;
    ATTN_WHAT("probs");
    tu_check_array(what, f.probs, want_p, np, 1e-7, 1e-5 * grow);
    /* O: a float sum of N terms P v with P <= 1, |v| ~ 1 */
    ATTN_WHAT("o");
    tu_check_array(what, f.o, want_o, n, 2e-6 * grow, 1e-5);
    /* gradients: float sums over N and d of O(1) terms, several products deep */
    ATTN_WHAT("dq");
    tu_check_array(what, f.dq, want_g, n, 5e-6 * grow, 2e-5);
    ATTN_WHAT("dk");
    tu_check_array(what, f.dk, want_g + n, n, 5e-6 * grow, 2e-5);
    ATTN_WHAT("dv");
    tu_check_array(what, f.dv, want_g + 2 * n, n, 5e-6 * grow, 2e-5);
    /* inference runs the same arithmetic without keeping P */
    ATTN_WHAT("inference o equals training o");
    CHECK(memcmp(f.o, f.o_inf, n * 4) == 0, "%s", what);

    /* += rule: a second backward on top of the first doubles the gradients (to rounding: the
     * GEMM path adds block by block into the gradients) */
    float *first = malloc(3 * n * 4);
    memcpy(first, f.dq, n * 4);
    memcpy(first + n, f.dk, n * 4);
    memcpy(first + 2 * n, f.dv, n * 4);
    /* small heads: without the forward's P, the backward remakes it, bit for bit */
    if (dm_attention_backward_remakes(N, d)) {
        float *g = calloc(3 * n, 4);
        dm_attention_backward(g, g + n, g + 2 * n, f.dout, f.q, f.k, f.v, NULL, B, N, heads, d,
                              scale, f.work);
        ATTN_WHAT("backward remaking P equals backward reading it");
        CHECK(memcmp(g, first, 3 * n * 4) == 0, "%s", what);
        free(g);
    }
    dm_attention_backward(f.dq, f.dk, f.dv, f.dout, f.q, f.k, f.v, f.probs, B, N, heads, d,
                          scale, f.work);
    for (size_t i = 0; i < 3 * n; i++) want_g[i] = 2.0 * first[i];
    ATTN_WHAT("+= dq");
    tu_check_array(what, f.dq, want_g, n, 1e-6, 1e-5);
    ATTN_WHAT("+= dk");
    tu_check_array(what, f.dk, want_g + n, n, 1e-6, 1e-5);
    ATTN_WHAT("+= dv");
    tu_check_array(what, f.dv, want_g + 2 * n, n, 1e-6, 1e-5);
#undef ATTN_WHAT
    free(first); free(o_ref); free(p_ref); free(g_ref); free(want_o); free(want_p); free(want_g);
    attn_release(&f);
}

/* Each (example, head) is one task with its own columns: the same bits at 1 and 2 threads. */
static void test_thread_independence(int64_t B, int64_t N, int64_t heads, int64_t d) {
    const size_t n = (size_t)(B * N * heads * d), np = (size_t)(B * heads * N * N);
    const int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    attn_bufs a = attn_alloc(B, N, heads, d); /* work sized for one thread */
    omp_set_num_threads(2);
    attn_bufs b = attn_alloc(B, N, heads, d);
    fill_normal(a.q, n, 71, 1.0f);
    fill_normal(a.k, n, 72, 1.0f);
    fill_normal(a.v, n, 73, 1.0f);
    fill_normal(a.dout, n, 74, 1.0f);
    const float scale = 1.0f / sqrtf((float)d);
    omp_set_num_threads(1);
    dm_attention_forward(a.o, a.probs, a.q, a.k, a.v, B, N, heads, d, scale, a.work);
    dm_attention_backward(a.dq, a.dk, a.dv, a.dout, a.q, a.k, a.v, a.probs, B, N, heads, d,
                          scale, a.work);
    omp_set_num_threads(2);
    dm_attention_forward(b.o, b.probs, a.q, a.k, a.v, B, N, heads, d, scale, b.work);
    dm_attention_backward(b.dq, b.dk, b.dv, a.dout, a.q, a.k, a.v, b.probs, B, N, heads, d,
                          scale, b.work);
    omp_set_num_threads(threads);
    CHECK(memcmp(a.o, b.o, n * 4) == 0 && memcmp(a.probs, b.probs, np * 4) == 0,
          "forward differs between 1 and 2 threads (d=%lld)", (long long)d);
    CHECK(memcmp(a.dq, b.dq, n * 4) == 0 && memcmp(a.dk, b.dk, n * 4) == 0 &&
              memcmp(a.dv, b.dv, n * 4) == 0,
          "backward differs between 1 and 2 threads (d=%lld)", (long long)d);
    attn_release(&a);
    attn_release(&b);
}

int main(void) {
    test_hand();

    test_ref_backward_fd(1, 2, 1, 1);
    test_ref_backward_fd(2, 3, 2, 2);
    test_ref_backward_fd(1, 5, 3, 3);

    /* odd N, 1 to 8 heads, d = 1 to 16 (the hand-written kernels) and 32, 64 (GEMM) */
    test_fast_vs_ref(1, 5, 1, 1, 1.0f, 100);
    test_fast_vs_ref(2, 5, 2, 3, 1.0f, 110);
    test_fast_vs_ref(3, 49, 8, 8, 1.0f, 120);  /* the 28x28 UNet at 7x7 */
    test_fast_vs_ref(1, 49, 2, 8, 1.0f, 130);
    test_fast_vs_ref(2, 196, 8, 8, 1.0f, 140); /* the 28x28 UNet at 14x14 */
    test_fast_vs_ref(2, 33, 1, 4, 1.0f, 150);
    test_fast_vs_ref(1, 17, 3, 16, 1.0f, 160);
    test_fast_vs_ref(2, 40, 2, 32, 1.0f, 170);
    test_fast_vs_ref(1, 23, 1, 64, 1.0f, 180);
    test_fast_vs_ref(1, 1, 2, 8, 1.0f, 190);   /* one token: P = 1, O = V */
    /* long rows: the hand-written forward with the GEMM path's backward */
    test_fast_vs_ref(1, 333, 1, 8, 1.0f, 195);
    test_fast_vs_ref(1, 200, 2, 16, 1.0f, 197);
    /* scores in the hundreds: the max subtraction keeps exp finite, tiny P underflow to 0 */
    test_fast_vs_ref(2, 37, 2, 8, 12.0f, 200);
    test_fast_vs_ref(1, 21, 1, 32, 12.0f, 210);

    test_thread_independence(3, 49, 8, 8);
    test_thread_independence(2, 40, 2, 32);
    return tu_finish("test_attention");
}
