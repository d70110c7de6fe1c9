/* Minimal test helpers: every check prints what failed and the test exits non-zero at the end. */
#pragma once

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int tu_failures = 0;
static int tu_checks = 0;

#define CHECK(cond, ...)                                                                        \
    do {                                                                                        \
        tu_checks++;                                                                            \
        if (!(cond)) {                                                                          \
            tu_failures++;                                                                      \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                     \
            fprintf(stderr, __VA_ARGS__);                                                       \
            fprintf(stderr, "\n");                                                              \
        }                                                                                       \
    } while (0)

/* |a - b| <= atol + rtol * |b|, with the values printed on failure */
#define CHECK_CLOSE(a, b, atol, rtol, what)                                                     \
    do {                                                                                        \
        double tu_a = (a), tu_b = (b);                                                          \
        CHECK(fabs(tu_a - tu_b) <= (atol) + (rtol)*fabs(tu_b) && !isnan(tu_a),                  \
              "%s: got %.9g, expected %.9g (diff %.3g)", what, tu_a, tu_b, fabs(tu_a - tu_b));  \
    } while (0)

/* Compares arrays; prints the first mismatch and the max abs difference. Returns 1 if equal. */
static inline int tu_check_array(const char *what, const float *got, const double *want, size_t n,
                                 double atol, double rtol) {
    double maxdiff = 0;
    size_t bad = n, nbad = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]);
        if (d > maxdiff || isnan(d)) maxdiff = isnan(d) ? INFINITY : d;
        if (!(d <= atol + rtol * fabs(want[i]))) {
            if (bad == n) bad = i;
            nbad++;
        }
    }
    tu_checks++;
    if (nbad) {
        tu_failures++;
        fprintf(stderr, "FAIL %s: %zu of %zu values off; first at [%zu]: got %.9g want %.9g; "
                        "max abs diff %.3g (atol %.1g, rtol %.1g)\n",
                what, nbad, n, bad, (double)got[bad], want[bad], maxdiff, atol, rtol);
        return 0;
    }
    return 1;
}

/* Call at the end of main: prints the summary line and returns the exit status. */
static inline int tu_finish(const char *name) {
    printf("%s: %d checks, %d failed\n", name, tu_checks, tu_failures);
    return tu_failures ? 1 : 0;
}

/* ---- a private scratch folder under /tmp for tests that write files */

static inline char *tu_tmpdir(void) {
    static char dir[64];
    return dir;
}

/* Creates /tmp/dm_<name>_XXXXXX; returns 0 on success. */
static inline int tu_tmpdir_make(const char *name) {
    snprintf(tu_tmpdir(), 64, "/tmp/dm_%.30s_XXXXXX", name);
    if (!mkdtemp(tu_tmpdir())) {
        perror("mkdtemp");
        return -1;
    }
    return 0;
}

/* tu_tmpdir()/name, in one of four rotating buffers (so two paths can be live at once). */
static inline const char *tu_tmp_path(const char *name) {
    static char buf[4][512]; /* folder (64) + a directory entry name (256) */
    static int k = 0;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tu_tmpdir(), name);
    return buf[k];
}

/* Removes every file in the scratch folder, then the folder; returns 0 if it is gone. */
static inline int tu_tmpdir_remove(void) {
    DIR *dir = opendir(tu_tmpdir());
    if (!dir) return -1;
    struct dirent *e;
    while ((e = readdir(dir)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) remove(tu_tmp_path(e->d_name));
    closedir(dir);
    return rmdir(tu_tmpdir());
}
