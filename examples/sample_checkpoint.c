/* sample_checkpoint: load a trained model and draw samples from it with libdiffusion.
 *
 *   sample_checkpoint CHECKPOINT [N] [STEPS]
 *
 * CHECKPOINT is a diffusion.c checkpoint or training run folder (`diffusion train --out DIR`),
 * or a diffusers folder (DDPMPipeline / DDIMPipeline.save_pretrained, or a bare UNet2DModel).
 * Draws N samples (default 1000 points, 4 images) with STEPS network levels (default 50: a
 * strided ancestral sampler; a diffusers folder runs its own scheduler with that many steps)
 * and prints a summary: the model, the time taken, and the mean, standard deviation and range
 * of each coordinate (points) or of the pixels (images). */
#include <diffusion.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    timespec_get(&ts, TIME_UTC); /* C11 */
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

/* mean, standard deviation, minimum and maximum of x[i * stride] for i < n */
static void stats(const float *x, int64_t n, int64_t stride, double out[4]) {
    double sum = 0, sq = 0, lo = INFINITY, hi = -INFINITY;
    for (int64_t i = 0; i < n; i++) {
        const double v = x[i * stride];
        sum += v;
        sq += v * v;
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
    }
    const double mean = sum / (double)n;
    out[0] = mean;
    out[1] = sqrt(fmax(sq / (double)n - mean * mean, 0.0));
    out[2] = lo;
    out[3] = hi;
}

int main(int argc, char **argv) {
    if (argc < 2 || argc > 4) {
        fprintf(stderr, "usage: %s CHECKPOINT [N] [STEPS]\n", argv[0]);
        return 2;
    }
    dm_error err = {0};
    dm_pipeline *p;
    if (dm_pipeline_load(&p, argv[1], &err)) {
        fprintf(stderr, "error: %s\n", err.msg);
        return 1;
    }
    const dm_model *model = dm_pipeline_model(p);
    int64_t c = 0, h = 0, w = 0;
    const int image = dm_model_image_shape(model, &c, &h, &w);
    const int64_t n = argc > 2 ? atoll(argv[2]) : image ? 4 : 1000;
    const int32_t steps = argc > 3 ? atoi(argv[3]) : 50;
    const int64_t dim = dm_pipeline_dim(p);
    if (n < 1 || steps < 0) {
        fprintf(stderr, "error: N must be >= 1 and STEPS >= 0\n");
        dm_pipeline_free(p);
        return 2;
    }

    dm_sample_options opt;
    dm_sample_options_default(&opt);
    opt.steps = steps;
    opt.seed = 1;
    opt.clip_x0 = image;                       /* images: x_0 clipped to [-1, 1], as diffusers */
    opt.scheduler = dm_pipeline_scheduler(p); /* a diffusers folder: its own scheduler (or NULL) */

    float *x = malloc((size_t)(n * dim) * sizeof *x);
    if (!x) {
        fprintf(stderr, "error: out of memory\n");
        dm_pipeline_free(p);
        return 1;
    }
    printf("libdiffusion %s, model %s (%zu parameters), %s, T = %d\n", dm_version(),
           dm_model_type(model), dm_model_num_params(model),
           opt.scheduler ? dm_scheduler_class_name(opt.scheduler->cls) : "ancestral sampler",
           (int)dm_pipeline_schedule(p)->T);
    const double t0 = now();
    if (dm_pipeline_sample(p, x, n, &opt, &err)) {
        fprintf(stderr, "error: %s\n", err.msg);
        free(x);
        dm_pipeline_free(p);
        return 1;
    }
    printf("drew %lld samples of %lld values in %.2f s (%d steps)\n", (long long)n,
           (long long)dim, now() - t0, (int)(steps ? steps : dm_pipeline_schedule(p)->T));

    int status = 0;
    for (int64_t i = 0; i < n * dim; i++)
        if (!isfinite(x[i])) {
            fprintf(stderr, "error: sample value %lld is not finite\n", (long long)i);
            status = 1;
            break;
        }
    double s[4];
    if (image) {
        stats(x, n * dim, 1, s);
        printf("images %lld x %lld x %lld: pixel mean %.3f, std %.3f, range [%.3f, %.3f]\n",
               (long long)c, (long long)h, (long long)w, s[0], s[1], s[2], s[3]);
    } else {
        for (int64_t d = 0; d < dim && d < 8; d++) {
            stats(x + d, n, dim, s);
            printf("x[%lld]: mean %8.4f  std %8.4f  range [%8.4f, %8.4f]\n", (long long)d, s[0],
                   s[1], s[2], s[3]);
        }
    }
    free(x);
    dm_pipeline_free(p);
    return status;
}
