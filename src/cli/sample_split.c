/* The pipeline draws chunk k of the samples from stream + k (dm_pipeline_sample), so a chunk
 * drawn alone on any rank has the bits it has in one process's call: rank r asks the pipeline
 * for chunks r, r + N, ... (dm_sample_options.chunk_first, chunk_step) and rank 0 gathers. */
#include "sample_split.h"
#include "common.h"
#include "parallel.h"

#include <stdio.h>

int64_t cli_sample_chunk(const dm_pipeline *p) {
    return dm_model_image_shape(dm_pipeline_model(p), NULL, NULL, NULL) ? DM_PIPELINE_IMAGE_CHUNK
                                                                        : DM_PIPELINE_POINT_CHUNK;
}

int64_t cli_sample_chunks_here(const dm_pipeline *p, int64_t n) {
    const int64_t chunk = cli_sample_chunk(p), chunks = (n + chunk - 1) / chunk;
    const int64_t r = cli_parallel_rank(), N = cli_parallel_size();
    return chunks > r ? (chunks - r + N - 1) / N : 0;
}

dm_status cli_sample_split(dm_pipeline *p, float *x, int64_t n, const dm_sample_options *so,
                           const dm_guidance *g, dm_error *err) {
    const int N = cli_parallel_size();
    if (N == 1) return dm_pipeline_sample_guided(p, x, n, so, g, err);
    dm_sample_options here = *so;
    here.chunk_first = cli_parallel_rank();
    here.chunk_step = N;
    dm_status st = cli_parallel_agree(dm_pipeline_sample_guided(p, x, n, &here, g, err), err);
    if (!st && cli_parallel_gather_chunks(x, n, dm_pipeline_dim(p), cli_sample_chunk(p)))
        st = dm_error_set(err, DM_ERR_IO, "MPI could not gather the samples on rank 0");
    return st;
}

dm_status cli_sample_split_sde(dm_pipeline *p, float *x, int64_t n,
                               const dm_sde_sample_options *so, dm_sde_sample_stats *stats,
                               dm_error *err) {
    const int N = cli_parallel_size();
    if (N == 1) return dm_pipeline_sde_sample(p, x, n, so, stats, err);
    dm_sde_sample_options mine = *so;
    mine.chunk_first = cli_parallel_rank();
    mine.chunk_step = N;
    dm_sde_sample_stats here = {0};
    dm_status st = cli_parallel_agree(dm_pipeline_sde_sample(p, x, n, &mine, &here, err), err);
    if (!st && cli_parallel_gather_chunks(x, n, dm_pipeline_dim(p), cli_sample_chunk(p)))
        st = dm_error_set(err, DM_ERR_IO, "MPI could not gather the samples on rank 0");
    if (!st && stats) {
        stats->score_evals = cli_parallel_sum_i64(here.score_evals);
        stats->steps = (int32_t)cli_parallel_sum_i64(here.steps);
        stats->rejected = (int32_t)cli_parallel_sum_i64(here.rejected);
    }
    return st;
}

int cli_sample_fail(const dm_error *err) {
    if (cli_parallel_setup_reported() && !cli_parallel_is_root()) return 1;
    return cli_fail(err);
}

const char *cli_ranks_note(void) {
    static char note[48];
    if (cli_parallel_size() == 1) return "";
    snprintf(note, sizeof note, " over %d MPI ranks", cli_parallel_size());
    return note;
}
