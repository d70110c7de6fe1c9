/* A training run's folder: step-numbered checkpoints DIR/checkpoint-N (as diffusers'
 * train_unconditional.py writes them), DIR/checkpoint the newest (its files hard-linked, so
 * `sample --model DIR`, `--model DIR/checkpoint` and `cp -r DIR/checkpoint` work as before
 * at no cost in disk space), a limit on
 * how many are kept, the lookup --resume / --resume-from makes, and log.jsonl cut back to the
 * step a run resumes from. */
#pragma once

#include "common.h"

struct cli_run_folder_s {
    const char *dir;          /* the run folder */
    int64_t limit;            /* keep the newest `limit` checkpoints of this run; 0 = all */
    int fresh;                /* a new run: checkpoints of an earlier run in dir go at the first
                               * save (after it is complete), as the single checkpoint always did */
    const char *resumed_from; /* the checkpoint folder resumed from; NULL for a new run */
    int64_t start_step;       /* the trainer's step when this process began */
    int64_t preview_every;    /* DIR/previews/step-N.png every that many steps; 0 = none */
    int preview_steps;        /* the previews' DDIM network levels */
    int saved;                /* a checkpoint was written by this process */
    char last[4200];          /* the checkpoint folder written last (for messages) */
};

/* DIR/checkpoint-N into out. */
void cli_checkpoint_path(char *out, size_t cap, const char *dir, int64_t step);
/* The steps of dir's complete numbered checkpoints (those holding a config.json), ascending;
 * *steps is malloc'ed (NULL when there are none), *n their count. */
dm_status cli_checkpoint_list(const char *dir, int64_t **steps, int64_t *n, dm_error *err);
/* "checkpoint-100, checkpoint-200" (the last few when there are many), or "no checkpoints". */
void cli_checkpoint_list_text(const char *dir, char *buf, size_t cap);

/* Writes checkpoint-N (N the trainer's step; a temporary folder renamed into place), makes
 * DIR/checkpoint the same files, then prunes: the checkpoints beyond the limit (oldest first, only those
 * of steps up to N: a run resumed from an older checkpoint keeps the newer ones until it
 * overwrites them) and, for a new run, every other checkpoint of an earlier run. A run resumed
 * that has taken no step writes nothing (its checkpoint is on disk). */
dm_status cli_run_folder_save(cli_run_folder *rf, dm_trainer *tr, dm_error *err);

/* The checkpoint folder a resume starts from, into out: name NULL, the newest
 * (dm_checkpoint_find on dir); else "checkpoint-N", "N" or a path to a checkpoint folder of
 * this run. A missing one is refused listing what dir has. */
dm_status cli_run_folder_find(const char *dir, const char *name, char *out, size_t cap,
                              dm_error *err);

/* Keeps the lines of the JSON-lines log at path whose "step" is at most step (a resumed run
 * goes on from there, so no step is logged twice); a line without a step (torn by a kill) goes
 * too. The file is rewritten beside itself and renamed into place. No file: nothing to do. */
dm_status cli_log_truncate(const char *path, int64_t step, dm_error *err);
