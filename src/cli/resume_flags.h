/* What --resume accepts: the flags that fix a run's model, data, noise schedule, objective and
 * optimisation may be repeated with the run's own values (--data, --n-data and --seed load the
 * data again), never changed; --lr and --steps (and the flags that do not touch the run:
 * logging, checkpoints, threads, time limit) may change and are applied. */
#pragma once

#include "common.h"

/* 0 when every fixed flag given in argv holds the resumed run's value; else 2 after printing
 * one "error: ..." line naming each flag that differs, with both values. `given` is the config
 * the flags build, `run` the resumed trainer's. */
int cli_resume_check_flags(int argc, char **argv, const dm_train_config *given,
                           const dm_train_config *run);
