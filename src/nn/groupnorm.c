/* GroupNorm forward and backward (PyTorch nn.GroupNorm with affine parameters).
 * Each (example, group) is one contiguous run of cpg * HW values (cpg = C / G channels), so the
 * fast path is a loop over the B x G runs: statistics in double, two passes (the mean first, then
 * the squared deviations from it), which stays accurate where E[x^2] - E[x]^2 would cancel;
 * the inner loops are plain sums and scalings that the compiler vectorises. */
#include "groupnorm.h"

#include <math.h>
#include <string.h>

/* The backward's dgamma and dbeta sum over examples. Examples are split into this many fixed
 * chunks; each (group, chunk) task keeps its own partial sums and the chunks are added in order
 * afterwards, so the result is the same at any thread count and needs no atomics. */
#define GN_CHUNKS 8
/* Stack space for those partial sums (floats): 2 * GN_CHUNKS * C must fit, else fewer chunks. */
#define GN_PARTIAL_MAX 8192

/* mean and 1/sqrt(var + eps) of n values, both passes in double */
DM_VECTOR_KERNEL
static void group_stats(const float *x, int64_t n, float eps, float *mean_out, float *rstd_out) {
    double sum = 0.0;
#pragma omp simd reduction(+ : sum)
    for (int64_t i = 0; i < n; i++) sum += x[i];
    const double mean = sum / (double)n;
    double sq = 0.0;
#pragma omp simd reduction(+ : sq)
    for (int64_t i = 0; i < n; i++) {
        const double dev = (double)x[i] - mean;
        sq += dev * dev;
    }
    *mean_out = (float)mean;
    *rstd_out = (float)(1.0 / sqrt(sq / (double)n + (double)eps));
}

DM_VECTOR_KERNEL
static void dm_groupnorm_forward_impl(float *y, float *mean, float *rstd, const float *x, const float *gamma,
                          const float *beta, int64_t B, int64_t C, int64_t HW, int64_t G,
                          float eps) {
    assert(G > 0 && C % G == 0 && y != x);
    const int64_t cpg = C / G, run = cpg * HW;
#pragma omp parallel for schedule(static) if (B * C * HW >= DM_PARALLEL_MIN)
    for (int64_t bg = 0; bg < B * G; bg++) {
        const int64_t g = bg % G;
        const float *xg = x + bg * run; /* (cpg, HW) */
        float *yg = y + bg * run;
        group_stats(xg, run, eps, &mean[bg], &rstd[bg]);
        const float m = mean[bg], r = rstd[bg];
        for (int64_t c = 0; c < cpg; c++) {
            /* (x - mean) stays apart from the scale: folding the mean into the shift would cancel
             * when |mean| >> std */
            const float a = r * gamma[g * cpg + c], b = beta[g * cpg + c];
            const float *xc = xg + c * HW;
            float *yc = yg + c * HW;
#pragma omp simd
            for (int64_t i = 0; i < HW; i++) yc[i] = (xc[i] - m) * a + b;
        }
    }
}

/* With xhat = (x - mean) * rstd and the per-channel sums over one (example, group)
 *   sdy[c] = sum dy,  sdxh[c] = sum dy * xhat,
 * dbeta[c] += sdy[c], dgamma[c] += sdxh[c], and with n = cpg * HW,
 *   dx = rstd * (gamma[c] dy - (sum_c gamma sdy) / n - xhat (sum_c gamma sdxh) / n). */
DM_VECTOR_KERNEL
static void dm_groupnorm_backward_impl(float *dx, float *dgamma, float *dbeta, const float *dy, const float *x,
                           const float *mean, const float *rstd, const float *gamma, int64_t B,
                           int64_t C, int64_t HW, int64_t G) {
    assert(G > 0 && C % G == 0);
    const int64_t cpg = C / G, run = cpg * HW;
    int64_t chunks = B < GN_CHUNKS ? B : GN_CHUNKS;
    while (chunks > 1 && 2 * chunks * C > GN_PARTIAL_MAX) chunks--;
    const int64_t per_chunk = (B + chunks - 1) / chunks;
    float partial[GN_PARTIAL_MAX]; /* (chunks, 2, C): dgamma then dbeta sums of each chunk */
    assert(2 * C <= GN_PARTIAL_MAX);
    memset(partial, 0, (size_t)(2 * chunks * C) * sizeof *partial);

#pragma omp parallel for schedule(static) if (B * C * HW >= DM_PARALLEL_MIN)
    for (int64_t task = 0; task < G * chunks; task++) {
        const int64_t g = task / chunks, chunk = task % chunks;
        const int64_t b_end = (chunk + 1) * per_chunk < B ? (chunk + 1) * per_chunk : B;
        float *pgamma = partial + chunk * 2 * C + g * cpg; /* (cpg) */
        float *pbeta = pgamma + C;                          /* (cpg) */
        for (int64_t b = chunk * per_chunk; b < b_end; b++) {
            const int64_t bg = b * G + g;
            const float *xg = x + bg * run, *dyg = dy + bg * run; /* (cpg, HW) */
            const float m = mean[bg], r = rstd[bg];
            double gamma_sdy = 0.0, gamma_sdxh = 0.0;
            for (int64_t c = 0; c < cpg; c++) {
                const float *xc = xg + c * HW, *dyc = dyg + c * HW;
                float sdy = 0.0f, sdxm = 0.0f; /* sum dy, sum dy * (x - mean) */
#pragma omp simd reduction(+ : sdy, sdxm)
                for (int64_t i = 0; i < HW; i++) {
                    sdy += dyc[i];
                    sdxm += dyc[i] * (xc[i] - m);
                }
                pbeta[c] += sdy;
                pgamma[c] += sdxm * r;
                gamma_sdy += (double)gamma[g * cpg + c] * sdy;
                gamma_sdxh += (double)gamma[g * cpg + c] * sdxm * r;
            }
            if (!dx) continue;
            float *dxg = dx + bg * run;
            /* rstd (gamma dy - mean_dy - xhat mean_dxh) as a dy + bx (x - mean) + c0; x - mean is
             * kept apart so a large mean does not cancel */
            const float mean_dy = (float)(gamma_sdy / (double)run);
            const float mean_dxh = (float)(gamma_sdxh / (double)run);
            const float bx = -r * r * mean_dxh, c0 = -r * mean_dy;
            for (int64_t c = 0; c < cpg; c++) {
                const float a = r * gamma[g * cpg + c];
                const float *xc = xg + c * HW, *dyc = dyg + c * HW;
                float *dxc = dxg + c * HW;
#pragma omp simd
                for (int64_t i = 0; i < HW; i++) dxc[i] += a * dyc[i] + bx * (xc[i] - m) + c0;
            }
        }
    }
    for (int64_t chunk = 0; chunk < chunks; chunk++)
        for (int64_t c = 0; c < C; c++) {
            dgamma[c] += partial[chunk * 2 * C + c];
            dbeta[c] += partial[chunk * 2 * C + C + c];
        }
}

void dm_groupnorm_forward_ref(float *y, float *mean, float *rstd, const float *x,
                              const float *gamma, const float *beta, int64_t B, int64_t C,
                              int64_t HW, int64_t G, float eps) {
    const int64_t cpg = C / G, n = cpg * HW;
    for (int64_t b = 0; b < B; b++)
        for (int64_t g = 0; g < G; g++) {
            const float *xg = x + (b * C + g * cpg) * HW;
            double sum = 0.0, sq = 0.0;
            for (int64_t i = 0; i < n; i++) sum += xg[i];
            const double mu = sum / (double)n;
            for (int64_t i = 0; i < n; i++) sq += ((double)xg[i] - mu) * ((double)xg[i] - mu);
            const double rs = 1.0 / sqrt(sq / (double)n + (double)eps);
            mean[b * G + g] = (float)mu;
            rstd[b * G + g] = (float)rs;
            for (int64_t c = g * cpg; c < (g + 1) * cpg; c++)
                for (int64_t i = 0; i < HW; i++) {
                    const int64_t at = (b * C + c) * HW + i;
                    y[at] = (float)(((double)x[at] - mu) * rs * gamma[c] + beta[c]);
                }
        }
}

void dm_groupnorm_backward_ref(float *dx, float *dgamma, float *dbeta, const float *dy,
                               const float *x, const float *mean, const float *rstd,
                               const float *gamma, int64_t B, int64_t C, int64_t HW, int64_t G) {
    const int64_t cpg = C / G, n = cpg * HW;
    for (int64_t c = 0; c < C; c++) {
        double sg = 0.0, sb = 0.0;
        for (int64_t b = 0; b < B; b++) {
            const double mu = mean[b * G + c / cpg], rs = rstd[b * G + c / cpg];
            for (int64_t i = 0; i < HW; i++) {
                const int64_t at = (b * C + c) * HW + i;
                sg += (double)dy[at] * ((double)x[at] - mu) * rs;
                sb += dy[at];
            }
        }
        dgamma[c] += (float)sg;
        dbeta[c] += (float)sb;
    }
    if (!dx) return;
    for (int64_t b = 0; b < B; b++)
        for (int64_t g = 0; g < G; g++) {
            const double mu = mean[b * G + g], rs = rstd[b * G + g];
            const int64_t base = (b * C + g * cpg) * HW;
            double mean_dxh = 0.0, mean_dxh_xh = 0.0; /* means of dxhat and dxhat * xhat */
            for (int64_t i = 0; i < n; i++) {
                const double dxh = (double)dy[base + i] * gamma[g * cpg + i / HW];
                mean_dxh += dxh;
                mean_dxh_xh += dxh * ((double)x[base + i] - mu) * rs;
            }
            mean_dxh /= (double)n;
            mean_dxh_xh /= (double)n;
            for (int64_t i = 0; i < n; i++) {
                const double dxh = (double)dy[base + i] * gamma[g * cpg + i / HW];
                const double xh = ((double)x[base + i] - mu) * rs;
                dx[base + i] += (float)(rs * (dxh - mean_dxh - xh * mean_dxh_xh));
            }
        }
}

void dm_groupnorm_forward(float *y, float *mean, float *rstd, const float *x, const float *gamma,
                          const float *beta, int64_t B, int64_t C, int64_t HW, int64_t G,
                          float eps) {
    const double t0 = dm_profile_begin();
    dm_groupnorm_forward_impl(y, mean, rstd, x, gamma, beta, B, C, HW, G, eps);
    dm_profile_end(DM_PROFILE_NORM, t0);
}

void dm_groupnorm_backward(float *dx, float *dgamma, float *dbeta, const float *dy, const float *x,
                           const float *mean, const float *rstd, const float *gamma, int64_t B,
                           int64_t C, int64_t HW, int64_t G) {
    const double t0 = dm_profile_begin();
    dm_groupnorm_backward_impl(dx, dgamma, dbeta, dy, x, mean, rstd, gamma, B, C, HW, G);
    dm_profile_end(DM_PROFILE_NORM, t0);
}
