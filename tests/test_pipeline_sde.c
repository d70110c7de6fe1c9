/* dm_pipeline_sde_sample draws images in chunks of DM_PIPELINE_IMAGE_CHUNK, chunk k from stream
 * opt->stream + k, as dm_pipeline_sample does (a UNet's activations grow with the batch): a run
 * of one chunk and five images more equals, bit for bit, a run of the chunk and a run of the five
 * from the next stream, and its statistics are their sums. Given noise cannot be split, so it is
 * refused beyond one chunk. The UNet is the diffusers fixture's (linear schedule, 16 x 16). */
#include "diffusion.h"
#include "test_util.h"

#define PIPE DM_SOURCE_DIR "/tests/fixtures/diffusers-pipelines/ddpm-cifar-flags"
#define EXTRA 5

static dm_status draw(dm_pipeline *p, float *x, int64_t n, uint64_t stream,
                      dm_sde_sample_stats *stats, dm_error *err) {
    dm_sde_sample_options so;
    dm_sde_sample_options_default(&so);
    so.sampler = DM_SDE_EULER_MARUYAMA; /* noise at every step: the streams matter */
    so.steps = 2;
    so.seed = 5;
    so.stream = stream;
    return dm_pipeline_sde_sample(p, x, n, &so, stats, err);
}

int main(void) {
    dm_error err = {0};
    dm_pipeline *p = NULL;
    CHECK(dm_pipeline_load_diffusers(&p, PIPE, NULL, NULL, &err) == DM_OK, "%s", err.msg);
    if (!p) return tu_finish("test_pipeline_sde");
    const int64_t C = DM_PIPELINE_IMAGE_CHUNK, n = C + EXTRA, D = dm_pipeline_dim(p);
    float *all = malloc((size_t)(n * D) * sizeof(float));
    float *first = malloc((size_t)(C * D) * sizeof(float));
    float *rest = malloc((size_t)(EXTRA * D) * sizeof(float));
    dm_sde_sample_stats s_all, s_first, s_rest;
    CHECK(draw(p, all, n, 3, &s_all, &err) == DM_OK, "%lld images: %s", (long long)n, err.msg);
    CHECK(draw(p, first, C, 3, &s_first, &err) == DM_OK, "one chunk: %s", err.msg);
    CHECK(draw(p, rest, EXTRA, 4, &s_rest, &err) == DM_OK, "the rest: %s", err.msg);
    CHECK(memcmp(all, first, (size_t)(C * D) * sizeof(float)) == 0,
          "the first chunk differs from a run of one chunk");
    CHECK(memcmp(all + C * D, rest, (size_t)(EXTRA * D) * sizeof(float)) == 0,
          "the second chunk differs from a run of %d images on the next stream", EXTRA);
    /* and the two streams differ, so the comparisons above can tell chunks apart */
    CHECK(memcmp(first, rest, (size_t)(EXTRA * D) * sizeof(float)) != 0,
          "streams 3 and 4 gave the same images");
    CHECK(s_all.score_evals == s_first.score_evals + s_rest.score_evals &&
              s_all.steps == s_first.steps + s_rest.steps && s_all.score_evals > 0,
          "statistics: %lld evaluations and %d steps, chunks %lld + %lld and %d + %d",
          (long long)s_all.score_evals, s_all.steps, (long long)s_first.score_evals,
          (long long)s_rest.score_evals, s_first.steps, s_rest.steps);
    /* the second chunk alone (chunk_first 1, chunk_step 2: rank 1 of 2): its bits and its own
     * statistics, the first chunk's rows untouched */
    {
        dm_sde_sample_options so;
        dm_sde_sample_options_default(&so);
        so.sampler = DM_SDE_EULER_MARUYAMA;
        so.steps = 2;
        so.seed = 5;
        so.stream = 3;
        so.chunk_first = 1;
        so.chunk_step = 2;
        float *half = malloc((size_t)(n * D) * sizeof(float));
        for (int64_t i = 0; i < n * D; i++) half[i] = 7.0f;
        dm_sde_sample_stats s_half;
        CHECK(dm_pipeline_sde_sample(p, half, n, &so, &s_half, &err) == DM_OK, "%s", err.msg);
        CHECK(memcmp(half + C * D, all + C * D, (size_t)(EXTRA * D) * sizeof(float)) == 0,
              "chunk 1 drawn alone differs from the call for all chunks");
        int untouched = 1;
        for (int64_t i = 0; i < C * D; i++) untouched &= half[i] == 7.0f;
        CHECK(untouched, "chunk 0's rows were written by a call for chunk 1 only");
        CHECK(s_half.score_evals == s_rest.score_evals, "chunk 1's evaluations: %lld, not %lld",
              (long long)s_half.score_evals, (long long)s_rest.score_evals);
        free(half);
    }
    /* given noise beyond one chunk */
    dm_sde_sample_options so;
    dm_sde_sample_options_default(&so);
    so.sampler = DM_SDE_EULER_MARUYAMA;
    so.steps = 2;
    so.noise = all; /* any buffer: refused before it is read */
    CHECK(dm_pipeline_sde_sample(p, all, n, &so, NULL, &err) == DM_ERR_ARG &&
              strstr(err.msg, "chunk"),
          "given noise for %lld images: %s", (long long)n, err.msg);
    free(all), free(first), free(rest);
    dm_pipeline_free(p);
    return tu_finish("test_pipeline_sde");
}
