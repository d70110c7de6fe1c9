/* Sinusoidal timestep embedding, as diffusers' get_timestep_embedding (scale 1). */
#include "nn.h"

#include <math.h>

/* sin and cos cost about 10 ns a pair, so fewer elements than DM_PARALLEL_MIN already pay for
 * waking the threads. */
#define EMB_PARALLEL_MIN 1024
/* Frequencies are computed once per chunk of columns, on the stack. */
#define EMB_CHUNK 256

void dm_timestep_embedding(float *out, const float *t, int64_t B, int64_t dim,
                           bool flip_sin_to_cos, double downscale_freq_shift, double max_period) {
    const int64_t half = dim / 2;
    const double log_period = log(max_period);
    /* column offsets of the sin and cos halves */
    const int64_t sin_at = flip_sin_to_cos ? half : 0, cos_at = flip_sin_to_cos ? 0 : half;
    for (int64_t j0 = 0; j0 < half; j0 += EMB_CHUNK) {
        const int64_t nj = half - j0 < EMB_CHUNK ? half - j0 : EMB_CHUNK;
        double freq[EMB_CHUNK];
        for (int64_t j = 0; j < nj; j++)
            freq[j] = exp(-log_period * (double)(j0 + j) / ((double)half - downscale_freq_shift));
#pragma omp parallel for schedule(static) if (B * half >= EMB_PARALLEL_MIN)
        for (int64_t r = 0; r < B; r++) {
            float *row = out + r * dim; /* (dim) */
            const double tr = (double)t[r];
            for (int64_t j = 0; j < nj; j++) {
                double s, c;
                sincos(tr * freq[j], &s, &c);
                row[sin_at + j0 + j] = (float)s;
                row[cos_at + j0 + j] = (float)c;
            }
        }
    }
    if (dim % 2)
        for (int64_t r = 0; r < B; r++) out[r * dim + dim - 1] = 0.0f;
}
