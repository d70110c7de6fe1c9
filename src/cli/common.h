/* Helpers shared by the subcommands: data by name or path, folders, JSON output, errors. */
#pragma once

#include "args.h"
#include "diffusion.h"

#include <cJSON.h>
#include <stdio.h>

/* Seeds derived from the user's seed for held-out draws of a built-in set, so evaluation data
 * never coincide with the training data (which use the seed itself). */
#define CLI_HELDOUT_SEED_A(seed) ((seed) + 1000003ull)
#define CLI_HELDOUT_SEED_B(seed) ((seed) + 2000003ull)

int cli_is_builtin(const char *name);
/* A built-in 2-D set (n points from seed) or a CSV/NPY file (n ignored). */
dm_status cli_load_data(dm_dataset *ds, const char *name, int64_t n, uint64_t seed, dm_error *err);
/* mkdir -p */
dm_status cli_make_dirs(const char *path, dm_error *err);
/* Prints "error: <message>" to stderr; returns the exit status 1. */
int cli_fail(const dm_error *err);
/* Prints obj as one JSON line on stdout and deletes it. */
void cli_print_json(cJSON *obj);
/* Comma-separated list of the built-in set names. */
const char *cli_builtin_list(void);
/* Ctrl-C (interrupt.c). cli_signals_init, first thing in main: until a command calls
 * cli_catch_interrupt, Ctrl-C ends the process at once; after it, the first Ctrl-C only sets
 * the flag cli_interrupted() reads and the second ends the process. */
void cli_signals_init(void);
void cli_catch_interrupt(void);
int cli_interrupted(void);

int cmd_train(int argc, char **argv);
int cmd_train_classifier(int argc, char **argv);
int cmd_sample(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_bench_unet(int argc, char **argv);

/* Runs tr to its configured step count with a progress bar, a checkpoint into the run folder
 * (run_folder.h: DIR/checkpoint-N, DIR/checkpoint the newest) every `every` steps (0: only at
 * the end) and on Ctrl-C; each log line carries the learning rate of its step. With time_limit_s > 0 it stops after the
 * first step that ends past that many seconds and saves (DM_OK, fewer steps than configured).
 * *seconds receives the wall time. Returns DM_OK, or the error (also after an interrupt, as
 * DM_ERR_IO with a message saying so; cli_interrupted() tells it apart). */
typedef struct cli_run_folder_s cli_run_folder;
dm_status cli_run_training(dm_trainer *tr, cli_run_folder *rf, int64_t every, int quiet,
                           FILE *log, int64_t log_every, double time_limit_s, double *seconds,
                           dm_error *err);
/* 1 if the flag was given on the command line (as "--flag" or "--flag=..."). */
int cli_given(int argc, char **argv, const char *flag);

/* The thread count: `threads` when > 0; else OMP_NUM_THREADS when set; else every CPU of the
 * process's affinity mask (what taskset, a batch system or mpirun's binding gave it), shared out
 * among the node's MPI ranks when the launcher left each rank the whole machine. */
int cli_thread_count(int threads);
/* dm_set_num_threads(cli_thread_count(threads)), then the threads are pinned one per CPU when
 * they fill the process's CPUs exactly (unpinned, two threads can land on one CPU for a while,
 * which halves the speed of the short parallel regions of small models: the 2-D MLP at batch 64
 * ran 1550 against 2550 steps/s). Fewer threads than CPUs are left to the kernel to place, so two
 * jobs on one machine never crowd onto the same first CPUs. DIFFUSION_PIN_THREADS=1 pins anyway
 * (onto the first CPUs of the mask), =0 never pins; OMP_PROC_BIND or GOMP_CPU_AFFINITY leave
 * placement to the OpenMP runtime. */
void cli_set_threads(int threads);

/* --precision: "fp32" or "bf16" sets the convolutions' arithmetic (dm_set_conv_precision);
 * anything else prints an error and returns 2. */
#define CLI_PRECISION_HELP "convolution arithmetic: fp32, or bf16 (bfloat16 products, float32 sums; fast on CPUs with AVX-512 BF16)"
int cli_set_precision(const char *name);

/* Training defaults for images, where the MLP's do not suit. */
#define CLI_IMAGE_BATCH 64
#define CLI_IMAGE_LR 2e-4
#define CLI_IMAGE_WARMUP 500
#define CLI_STR_(x) #x
#define CLI_STR(x) CLI_STR_(x)
/* Mean of the last k (or fewer) losses. */
double cli_recent_loss(const dm_trainer *tr, int64_t k);

/* --class for n samples: "all" cycles through the classes (labels[i] = i mod K), a number is
 * that class for every sample. K is the model's classes (p may be NULL), or the classifier's
 * (clf may be NULL) for an unconditional model; *classes receives it. The caller frees
 * *labels. */
dm_status cli_class_labels(int32_t **labels, int *classes, const char *arg, int64_t n,
                           const dm_pipeline *p, const dm_classifier *clf, dm_error *err);
/* Network evaluations per sample with guidance: classifier-free guidance evaluates twice the
 * batch at each level (counted as 2). */
int64_t cli_guided_evaluations(const dm_pipeline *p, const dm_sample_options *so,
                               const dm_guidance *g);
/* The first k (<= N) entries of perm (N) become k distinct random rows of 0..N-1, drawn from
 * (seed, stream) by a partial Fisher-Yates shuffle: disjoint random subsets of a data file. */
void cli_partial_shuffle(int32_t *perm, int64_t N, int64_t k, uint64_t seed, uint64_t stream);
