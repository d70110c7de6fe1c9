/* A one-line progress bar with rate and ETA on stderr, drawn only when stderr is a terminal. */
#pragma once

#include <stdint.h>

typedef struct {
    const char *label;
    const char *unit; /* "steps", "it" */
    int64_t total;
    double t0, last_draw;
    int enabled;
} cli_progress;

double cli_now(void); /* monotonic seconds */
void cli_progress_start(cli_progress *p, const char *label, const char *unit, int64_t total,
                        int quiet);
/* extra: a short text shown after the counts (e.g. "loss 0.412"), or NULL */
void cli_progress_update(cli_progress *p, int64_t done, const char *extra);
void cli_progress_finish(cli_progress *p);
/* Erases the bar's line so a message can be printed; the next update redraws it. */
void cli_progress_clear(cli_progress *p);
