/* MPI for the CLI. Data-parallel training: `mpirun -np N diffusion train ...` runs N ranks, each
 * a trainer on its batch / N examples of every step (dm_trainer_set_data_parallel), the gradients
 * summed with MPI_Allreduce. Sampling: `mpirun -np N diffusion sample ...` deals the pipeline's
 * chunks of samples round-robin to the ranks and gathers them on rank 0. The library knows nothing of MPI; this file is the whole of it, and
 * in a build without MPI (or a process not started by an MPI launcher) every function is the
 * one-process case: rank 0 of 1, nothing sent. */
#pragma once

#include "diffusion.h"

#include <stdint.h>

/* Starts MPI when this build has it and an MPI launcher (mpirun, mpiexec, srun) started the
 * process; otherwise does nothing, and the process is rank 0 of 1. Then checks that every rank
 * runs the same executable and version with the same arguments (argv, compared with rank 0's):
 * on a mismatch every rank that differs prints one error naming what differs, rank 0 says how
 * many differ, and the return is non-zero on every rank (nothing touched on disk). On ranks
 * other than 0, standard output goes to /dev/null and standard error is held back until
 * cli_parallel_setup_done. Returns 0 or the exit status to return (after
 * cli_parallel_finalize). */
int cli_parallel_init(const char *command, int argc, char **argv);
/* Ends MPI (a no-op with one process); returns rc. */
int cli_parallel_finalize(int rc);
int cli_parallel_rank(void);
int cli_parallel_size(void);
int cli_parallel_is_root(void);
/* The number of ranks mpirun (or another launcher) said the job has, from the environment,
 * whether or not MPI was started: 1 when not launched by one. */
int cli_parallel_launched_size(void);
int cli_parallel_launched_rank(void); /* 0 when not launched by one */

/* Every rank calls this exactly once, when its set-up (arguments, data, trainer) succeeded or
 * failed; collective. input names what fingerprint covers ("training data"), task what the
 * ranks start ("training"), for the messages. Rank 0's messages stand; another rank's held-back standard error is
 * printed (its lines prefixed "rank R: ") when that rank failed and rank 0 did not, so an error
 * all ranks share is printed once. fingerprint (e.g. a hash of the training data) must agree
 * over the ranks that succeeded, else they fail too, with a message. Returns the number of
 * ranks that failed (0: all go on). */
int cli_parallel_setup_done(int failed, uint64_t fingerprint, const char *input,
                            const char *task);
/* Whether this rank already called cli_parallel_setup_done. */
int cli_parallel_setup_reported(void);

/* dm_allreduce_fn: MPI_Allreduce(MPI_IN_PLACE, buf, n, MPI_FLOAT, MPI_SUM) over the job (in
 * chunks of at most INT_MAX), timed; ctx unused. */
int cli_parallel_allreduce(float *buf, size_t n, void *ctx);
/* Seconds spent in cli_parallel_allreduce so far, and its calls. */
double cli_parallel_allreduce_seconds(void);
int64_t cli_parallel_allreduce_calls(void);
/* Rank 0's v on every rank (v itself with one process): decisions only rank 0 makes (the time
 * limit, Ctrl-C, whether its checkpoint write succeeded) taken by all. */
int cli_parallel_bcast_int(int v);
/* The sum of v over the ranks (v itself with one process): counts each rank made. */
int64_t cli_parallel_sum_i64(int64_t v);
/* Whether v (n floats, e.g. the weights) is bit for bit the same on every rank: its checksum's
 * minimum and maximum over the ranks compared. 1 with one process. */
int cli_parallel_same_everywhere(const float *v, size_t n);
/* The DIFFUSION_MPI_CHECK environment variable: check every K steps that the weights are the
 * same on every rank (a debugging aid); 0 when unset, -1 when not a count. */
int64_t cli_parallel_check_every(void);
/* A fingerprint of the training data, for cli_parallel_setup_done (0 with one process). */
uint64_t cli_parallel_fingerprint(const dm_dataset *ds);
/* cli_parallel_same_everywhere for the trainer's weights. */
int cli_parallel_same_weights(dm_trainer *tr);

/* After set-up, when each rank did its own part of the work: collective. DM_OK when every rank
 * succeeded; else on every rank the status and message of the lowest rank that failed (its
 * message prefixed "rank R: " unless R is 0), so that rank 0 alone prints one error. */
dm_status cli_parallel_agree(dm_status st, dm_error *err);
/* Rank 0 receives chunk k (rows k * chunk .. of x, (n, dim)) from rank k % size, which drew it;
 * the other ranks send theirs. Collective; non-zero when MPI failed. */
int cli_parallel_gather_chunks(float *x, int64_t n, int64_t dim, int64_t chunk);
/* A fingerprint of a model's weights, for cli_parallel_setup_done (0 with one process). */
uint64_t cli_parallel_fingerprint_model(const dm_model *m);
