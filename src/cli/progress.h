/* Progress on stderr: a one-line bar with rate and ETA redrawn in place when stderr is a
 * terminal; otherwise (nohup, batch jobs, logs) one plain line every CLI_PROGRESS_PLAIN_S
 * seconds (the environment's DIFFUSION_PROGRESS_SECONDS, when set), so a long run is never
 * silent. */
#pragma once

#include <stdint.h>

typedef struct {
    const char *label;
    const char *unit; /* "steps", "it" */
    int64_t total;
    double t0, last_draw;
    int enabled; /* a bar on a terminal */
    int plain;   /* plain lines: stderr is not a terminal */
    double plain_every; /* seconds between plain lines */
} cli_progress;

#define CLI_PROGRESS_PLAIN_S 10.0

double cli_now(void); /* monotonic seconds */
void cli_progress_start(cli_progress *p, const char *label, const char *unit, int64_t total,
                        int quiet);
/* extra: a short text shown after the counts (e.g. "loss 0.412"), or NULL */
void cli_progress_update(cli_progress *p, int64_t done, const char *extra);
void cli_progress_finish(cli_progress *p);
/* Erases the bar's line so a message can be printed; the next update redraws it. */
void cli_progress_clear(cli_progress *p);
