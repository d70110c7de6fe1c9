/* Two pipelines sampling at the same time in two threads give, bit for bit, what each gives
 * alone: a model keeps its own convolution primitives, blocked buffers and scratchpads
 * (nn/conv2d.h, dm_conv_cache), so nothing one writes is read by the other. The UNet is the
 * diffusers fixture's (16 to 32 channels, so its convolutions take the oneDNN path where the
 * build has it), sampled with ancestral steps from different seeds. */
#include "diffusion.h"
#include "test_util.h"

#include <pthread.h>

#define PIPE DM_SOURCE_DIR "/tests/fixtures/diffusers-pipelines/ddpm-cifar-flags"
#define N 3
#define ROUNDS 3 /* each thread samples this many times, to give a race room to show */

typedef struct {
    dm_pipeline *p;
    uint64_t seed;
    int64_t dim;
    float *x[ROUNDS];
    dm_status status;
    dm_error err;
} job;

static dm_status sample_once(job *j, float *x) {
    dm_sample_options so;
    dm_sample_options_default(&so);
    so.steps = 8;
    so.seed = j->seed;
    return dm_pipeline_sample(j->p, x, N, &so, &j->err);
}

static void *run(void *arg) {
    job *j = arg;
    for (int r = 0; r < ROUNDS && !j->status; r++) j->status = sample_once(j, j->x[r]);
    return NULL;
}

int main(void) {
    dm_error err = {0};
    job jobs[2] = {{.seed = 11}, {.seed = 12}};
    float *alone[2] = {NULL, NULL};
    for (int k = 0; k < 2; k++) {
        CHECK(dm_pipeline_load_diffusers(&jobs[k].p, PIPE, NULL, NULL, &err) == DM_OK, "%s",
              err.msg);
        if (!jobs[k].p) return tu_finish("test_concurrent_pipelines");
        jobs[k].dim = dm_pipeline_dim(jobs[k].p);
        alone[k] = malloc((size_t)(N * jobs[k].dim) * sizeof(float));
        for (int r = 0; r < ROUNDS; r++)
            jobs[k].x[r] = malloc((size_t)(N * jobs[k].dim) * sizeof(float));
    }
    printf("convolutions: %s\n", dm_conv_impl_name(32, 16, 16, N));
    /* one after the other */
    for (int k = 0; k < 2; k++)
        CHECK(sample_once(&jobs[k], alone[k]) == DM_OK, "pipeline %d alone: %s", k,
              jobs[k].err.msg);
    /* the two at once, each in its own thread */
    pthread_t threads[2];
    for (int k = 0; k < 2; k++)
        CHECK(pthread_create(&threads[k], NULL, run, &jobs[k]) == 0, "thread %d", k);
    for (int k = 0; k < 2; k++) pthread_join(threads[k], NULL);
    for (int k = 0; k < 2; k++) {
        CHECK(jobs[k].status == DM_OK, "pipeline %d in a thread: %s", k, jobs[k].err.msg);
        for (int r = 0; r < ROUNDS; r++) {
            const size_t bytes = (size_t)(N * jobs[k].dim) * sizeof(float);
            CHECK(memcmp(jobs[k].x[r], alone[k], bytes) == 0,
                  "pipeline %d, round %d in a thread differs from its run alone", k, r);
        }
    }
    /* and the two seeds gave different samples, so the comparison above can tell them apart */
    CHECK(memcmp(alone[0], alone[1], (size_t)(N * jobs[0].dim) * sizeof(float)) != 0,
          "two seeds gave the same samples");
    for (int k = 0; k < 2; k++) {
        for (int r = 0; r < ROUNDS; r++) free(jobs[k].x[r]);
        free(alone[k]);
        dm_pipeline_free(jobs[k].p);
    }
    return tu_finish("test_concurrent_pipelines");
}
