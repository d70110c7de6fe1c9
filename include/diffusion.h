/*
 * diffusion.h: the public API of libdiffusion (diffusion.c).
 *
 * Train a denoising diffusion model (DDPM) on low-dimensional data and sample from it:
 *
 *     dm_error err = {0};
 *     dm_dataset data;                       // N x D float points
 *     dm_toy2d_generate(&data, "swissroll", 100000, 42, &err);
 *     dm_train_config cfg;  dm_train_config_default(&cfg);
 *     dm_trainer *tr;
 *     if (dm_trainer_create(&tr, &cfg, &data, &err)) { fprintf(stderr, "%s\n", err.msg); ... }
 *     while (dm_trainer_step_count(tr) < cfg.steps) dm_trainer_step(tr, NULL, &err);
 *     dm_trainer_save(tr, "runs/swiss/checkpoint", &err);
 *
 *     dm_pipeline *p;                          // a trained model + its schedule, for sampling
 *     dm_pipeline_load(&p, "runs/swiss/checkpoint", &err);
 *     float *x = malloc(n * 2 * sizeof *x);    // samples come back in data units
 *     dm_sample_options so; dm_sample_options_default(&so);
 *     dm_pipeline_sample(p, x, n, &so, &err);
 *
 * Conventions: float32 tensors, row-major; schedule constants in double. Functions that can fail
 * return a dm_status and fill a dm_error (which may be NULL) with a message naming the file, field
 * or option; the library never prints and never exits. Whoever calls _create/_init calls _free.
 * Every random draw comes from a seeded counter-based generator (Philox4x32-10): a run is
 * reproducible from its seed and does not depend on the thread count. Different objects
 * (pipelines, trainers, models) may be used from different threads at the same time, each
 * keeping its own buffers and convolution primitives; one object, from one thread at a time.
 * The process-wide settings (threads, convolution backend and precision) are set beforehand.
 * Signals: with oneDNN before 3.11 (Debian's 2.6 among them), a signal handler that runs on a
 * thread inside the library's GEMM corrupts the heap (oneDNN issue #4845). A program that
 * installs handlers (Ctrl-C, profilers) blocks those signals in the threads that call the
 * library, before its first call (threads inherit the mask), and takes them on a thread of its
 * own with sigwait(), as the diffusion CLI does (src/cli/interrupt.c).
 */
#pragma once

/* The components, each its own header under diffusion/ (include one alone to use only
 * that part; each includes what it needs). */
#include "diffusion/core.h"
#include "diffusion/data.h"
#include "diffusion/process.h"
#include "diffusion/models.h"
#include "diffusion/training.h"
#include "diffusion/sampling.h"
#include "diffusion/guidance.h"
#include "diffusion/likelihood.h"
#include "diffusion/evaluation.h"
#include "diffusion/plot.h"
#include "diffusion/sde.h"
