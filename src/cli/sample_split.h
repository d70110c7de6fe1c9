/* diffusion sample over MPI ranks: whole chunks of samples dealt round-robin, gathered on 0. */
#pragma once

#include "diffusion.h"

/* The pipeline's chunk size: DM_PIPELINE_IMAGE_CHUNK for image models, else
 * DM_PIPELINE_POINT_CHUNK. */
int64_t cli_sample_chunk(const dm_pipeline *p);
/* How many of the chunks of n samples this rank draws (all of them with one process). */
int64_t cli_sample_chunks_here(const dm_pipeline *p, int64_t n);
/* dm_pipeline_sample_guided into x (n, dim), with rank r of N drawing chunks r, r + N, ... each
 * alone with the stream, x_T rows and labels the pipeline gives that chunk in one call, so
 * rank 0 ends with the bits one process draws, whatever N. Every rank must call it (after
 * cli_parallel_setup_done); on a failure every rank returns the lowest failing rank's status
 * and message (cli_parallel_agree). x must hold n rows on every rank; only rank 0's is whole. */
dm_status cli_sample_split(dm_pipeline *p, float *x, int64_t n, const dm_sample_options *so,
                           const dm_guidance *g, dm_error *err);
/* dm_pipeline_sde_sample split the same way (it draws the same chunks from the same streams);
 * stats: the sums over every chunk, as one process counts them, on every rank. */
dm_status cli_sample_split_sde(dm_pipeline *p, float *x, int64_t n,
                               const dm_sde_sample_options *so, dm_sde_sample_stats *stats,
                               dm_error *err);
/* cli_fail, except on ranks other than 0 once set-up is over: rank 0 prints for the job. */
int cli_sample_fail(const dm_error *err);
/* " over N MPI ranks" when N > 1, else "": for the summary line. */
const char *cli_ranks_note(void);
