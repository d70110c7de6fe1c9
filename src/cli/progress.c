/* Progress bar: redrawn at most ten times a second so it costs nothing in a fast loop. */
#include "progress.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

double cli_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void cli_progress_start(cli_progress *p, const char *label, const char *unit, int64_t total,
                        int quiet) {
    p->label = label;
    p->unit = unit;
    p->total = total;
    p->t0 = cli_now();
    p->last_draw = p->t0;
    p->enabled = !quiet && isatty(STDERR_FILENO);
    p->plain = !quiet && !p->enabled;
    /* DIFFUSION_PROGRESS_SECONDS sets the plain lines' interval (tests use a short one) */
    const char *every = getenv("DIFFUSION_PROGRESS_SECONDS");
    p->plain_every = every && atof(every) > 0 ? atof(every) : CLI_PROGRESS_PLAIN_S;
}

static void format_duration(char *buf, size_t cap, double s) {
    if (!(s >= 0) || s > 359999) s = 359999;
    int t = (int)(s + 0.5);
    if (t >= 3600) snprintf(buf, cap, "%d:%02d:%02d", t / 3600, t / 60 % 60, t % 60);
    else snprintf(buf, cap, "%d:%02d", t / 60, t % 60);
}

void cli_progress_update(cli_progress *p, int64_t done, const char *extra) {
    if (!p->enabled && !p->plain) return;
    double now = cli_now();
    if (p->plain) {
        if (now - p->last_draw < p->plain_every) return;
        p->last_draw = now;
        const double elapsed = now - p->t0, rate = elapsed > 0 ? (double)done / elapsed : 0;
        char eta[16], el[16];
        format_duration(el, sizeof el, elapsed);
        format_duration(eta, sizeof eta, rate > 0 ? (double)(p->total - done) / rate : -1);
        fprintf(stderr, "%s: %lld/%lld %s, %.1f %s/s%s%s, elapsed %s, ETA %s\n", p->label,
                (long long)done, (long long)p->total, p->unit, rate, p->unit, extra ? ", " : "",
                extra ? extra : "", el, eta);
        fflush(stderr);
        return;
    }
    if (done < p->total && now - p->last_draw < 0.1) return;
    p->last_draw = now;
    double elapsed = now - p->t0, rate = elapsed > 0 ? (double)done / elapsed : 0;
    double frac = p->total > 0 ? (double)done / (double)p->total : 1;
    char bar[31], eta[16], el[16];
    int filled = (int)(frac * 30);
    for (int i = 0; i < 30; i++) bar[i] = i < filled ? '#' : '.';
    bar[30] = '\0';
    format_duration(el, sizeof el, elapsed);
    format_duration(eta, sizeof eta, rate > 0 ? (double)(p->total - done) / rate : -1);
    fprintf(stderr, "\r%s [%s] %lld/%lld %s %.1f %s/s %s ETA %s\033[K", p->label, bar,
            (long long)done, (long long)p->total, extra ? extra : "", rate, p->unit, el, eta);
    fflush(stderr);
}

void cli_progress_finish(cli_progress *p) {
    if (!p->enabled) return;
    fputc('\n', stderr);
    fflush(stderr);
}

void cli_progress_clear(cli_progress *p) {
    if (!p->enabled) return;
    fputs("\r\033[K", stderr);
    p->last_draw = 0;
}
