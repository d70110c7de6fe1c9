#include "run_folder.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void cli_checkpoint_path(char *out, size_t cap, const char *dir, int64_t step) {
    snprintf(out, cap, "%s/checkpoint-%lld", dir, (long long)step);
}

static int is_file(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

static int holds_checkpoint(const char *folder) {
    char probe[4400];
    snprintf(probe, sizeof probe, "%s/config.json", folder);
    return is_file(probe);
}

static int cmp_i64(const void *a, const void *b) {
    const int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* The numbered checkpoint folders of dir, ascending; complete_only: those with a config.json. */
static dm_status list_numbered(const char *dir, int complete_only, int64_t **steps, int64_t *n,
                               dm_error *err) {
    *steps = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) return errno == ENOENT ? DM_OK : dm_error_set(err, DM_ERR_IO, "%s: cannot list: %s",
                                                         dir, strerror(errno));
    int64_t cap = 0;
    char path[4200];
    struct dirent *e;
    dm_status st = DM_OK;
    while ((e = readdir(d))) {
        const int64_t s = dm_checkpoint_name_step(e->d_name);
        if (s < 0) continue;
        cli_checkpoint_path(path, sizeof path, dir, s);
        if (complete_only && !holds_checkpoint(path)) continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            int64_t *p = realloc(*steps, (size_t)cap * sizeof *p);
            if (!p) {
                st = dm_error_set(err, DM_ERR_NOMEM, "out of memory");
                break;
            }
            *steps = p;
        }
        (*steps)[(*n)++] = s;
    }
    closedir(d);
    if (st) {
        free(*steps);
        *steps = NULL;
        *n = 0;
        return st;
    }
    if (*n) qsort(*steps, (size_t)*n, sizeof **steps, cmp_i64);
    return DM_OK;
}

dm_status cli_checkpoint_list(const char *dir, int64_t **steps, int64_t *n, dm_error *err) {
    return list_numbered(dir, 1, steps, n, err);
}

void cli_checkpoint_list_text(const char *dir, char *buf, size_t cap) {
    int64_t *steps = NULL, n = 0;
    snprintf(buf, cap, "no checkpoints");
    if (cli_checkpoint_list(dir, &steps, &n, NULL) || n == 0) return;
    enum { SHOWN = 8 }; /* the newest few: a long run may have hundreds */
    size_t len = 0;
    buf[0] = '\0';
    if (n > SHOWN)
        len += (size_t)snprintf(buf, cap, "%lld checkpoints, the newest: ", (long long)n);
    for (int64_t i = n > SHOWN ? n - SHOWN : 0; i < n && len < cap; i++)
        len += (size_t)snprintf(buf + len, cap - len, "%scheckpoint-%lld",
                                len && buf[len - 1] != ' ' ? ", " : "", (long long)steps[i]);
    free(steps);
}

/* Runs written before numbered checkpoints have only DIR/checkpoint. When a run resumed from it
 * first saves, it becomes checkpoint-<its step>, so the history starts there. */
static void keep_legacy(const cli_run_folder *rf) {
    char latest[4200], keep[4200];
    snprintf(latest, sizeof latest, "%s/checkpoint", rf->dir);
    cli_checkpoint_path(keep, sizeof keep, rf->dir, rf->start_step);
    struct stat sb;
    if (rf->resumed_from && strcmp(rf->resumed_from, latest) == 0 &&
        lstat(latest, &sb) == 0 && S_ISDIR(sb.st_mode) && lstat(keep, &sb) != 0)
        rename(latest, keep); /* failing that, it is replaced as before */
}

static dm_status remove_numbered(const char *dir, int64_t step, const char *suffix,
                                 dm_error *err) {
    char path[4300];
    snprintf(path, sizeof path, "%s/checkpoint-%lld%s", dir, (long long)step, suffix);
    return dm_checkpoint_remove(path, err);
}

/* Removes what a killed process may leave: checkpoint-M.tmp (a write cut short; the lock says
 * no other trainer is writing), checkpoint-M.old beside a complete checkpoint-M (a swap cut
 * short), and checkpoint-M without a config.json (a removal cut short). */
static dm_status clear_leftovers(const char *dir, int64_t keep, dm_error *err) {
    DIR *d = opendir(dir);
    if (!d) return DM_OK;
    char name[300], path[4300];
    dm_status st = DM_OK;
    struct dirent *e;
    while (!st && (e = readdir(d))) {
        const size_t len = strlen(e->d_name);
        if (len < 5 || len >= sizeof name) continue;
        snprintf(name, sizeof name, "%s", e->d_name);
        const int tmp = strcmp(name + len - 4, ".tmp") == 0,
                  old = strcmp(name + len - 4, ".old") == 0;
        if (tmp || old) name[len - 4] = '\0';
        const int64_t s = dm_checkpoint_name_step(name);
        if (s < 0 || s == keep) continue;
        snprintf(path, sizeof path, "%s/%s", dir, name);
        if (tmp || (old && holds_checkpoint(path)) || (!tmp && !old && !holds_checkpoint(path)))
            st = remove_numbered(dir, s, tmp ? ".tmp" : old ? ".old" : "", err);
    }
    closedir(d);
    return st;
}

/* The limit, and for a new run its predecessor's checkpoints; never the one just written. */
static dm_status prune(const cli_run_folder *rf, int64_t step, int first, dm_error *err) {
    int64_t *steps = NULL, n = 0;
    dm_status st = clear_leftovers(rf->dir, step, err);
    if (st || (st = cli_checkpoint_list(rf->dir, &steps, &n, err))) return st;
    int64_t ours = 0; /* checkpoints of this run's line: steps up to the one just written */
    for (int64_t i = 0; i < n; i++) ours += steps[i] <= step;
    for (int64_t i = 0; i < n && !st; i++) {
        if (steps[i] == step) continue;
        if (rf->fresh && first) {
            st = remove_numbered(rf->dir, steps[i], "", err);
        } else if (rf->limit > 0 && steps[i] < step && ours > rf->limit) {
            st = remove_numbered(rf->dir, steps[i], "", err); /* ascending: the oldest first */
            ours--;
        }
    }
    free(steps);
    return st;
}

dm_status cli_run_folder_save(cli_run_folder *rf, dm_trainer *tr, dm_error *err) {
    const int64_t step = dm_trainer_step_count(tr);
    if (rf->resumed_from && !rf->saved && step == rf->start_step) {
        snprintf(rf->last, sizeof rf->last, "%s", rf->resumed_from);
        return DM_OK; /* nothing new: the checkpoint resumed from is this state */
    }
    cli_checkpoint_path(rf->last, sizeof rf->last, rf->dir, step);
    dm_status st = dm_trainer_save(tr, rf->last, err);
    if (st) return st;
    const int first = !rf->saved;
    rf->saved = 1;
    if (first) keep_legacy(rf);
    /* DIR/checkpoint: the same files under a second name (hard links), swapped in whole */
    char latest[4200];
    snprintf(latest, sizeof latest, "%s/checkpoint", rf->dir);
    if ((st = dm_checkpoint_copy(rf->last, latest, err))) return st;
    return prune(rf, step, first, err);
}

dm_status cli_run_folder_find(const char *dir, const char *name, char *out, size_t cap,
                              dm_error *err) {
    char listing[512];
    if (!name) {
        char found[4200];
        const dm_status st = dm_checkpoint_find(dir, found, sizeof found, err);
        if (st) return st;
        snprintf(out, cap, "%s", found);
        return DM_OK;
    }
    char path[4200];
    const int digits = *name && strspn(name, "0123456789") == strlen(name);
    if (strchr(name, '/')) snprintf(path, sizeof path, "%s", name);
    else snprintf(path, sizeof path, "%s/%s%s", dir, digits ? "checkpoint-" : "", name);
    if (!holds_checkpoint(path)) {
        cli_checkpoint_list_text(dir, listing, sizeof listing);
        return dm_error_set(err, DM_ERR_IO, "--resume-from %s: %s is not a checkpoint (no "
                            "config.json there); %s has %s", name, path, dir, listing);
    }
    /* a checkpoint of another run would continue that run's log and steps here: refused */
    char real_dir[PATH_MAX], real_ckpt[PATH_MAX];
    if (!realpath(dir, real_dir) || !realpath(path, real_ckpt))
        return dm_error_set(err, DM_ERR_IO, "%s: %s", path, strerror(errno));
    char *slash = strrchr(real_ckpt, '/');
    if (slash) *slash = '\0';
    if (strcmp(real_ckpt, real_dir) != 0)
        return dm_error_set(err, DM_ERR_ARG, "--resume-from %s: not a checkpoint of the run in "
                            "%s (a run resumes its own checkpoints; to start from another "
                            "run's, copy that run folder)", name, dir);
    snprintf(out, cap, "%s", path);
    return DM_OK;
}

/* The "step" a log line starts with; -1 for a line that does not. */
static int64_t line_step(const char *line) {
    long long s;
    return sscanf(line, "{\"step\": %lld", &s) == 1 && s >= 0 ? (int64_t)s : -1;
}

dm_status cli_log_truncate(const char *path, int64_t step, dm_error *err) {
    FILE *in = fopen(path, "r");
    if (!in) return errno == ENOENT ? DM_OK : dm_error_set(err, DM_ERR_IO, "%s: cannot read: %s",
                                                          path, strerror(errno));
    char tmp[4400];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *out = fopen(tmp, "w");
    if (!out) {
        fclose(in);
        return dm_error_set(err, DM_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int ok = 1;
    while ((len = getline(&line, &cap, in)) > 0) {
        const int64_t s = line_step(line);
        if (s >= 0 && s <= step && line[len - 1] == '\n') ok &= fputs(line, out) >= 0;
    }
    free(line);
    fclose(in);
    ok &= fflush(out) == 0 && fsync(fileno(out)) == 0;
    ok &= fclose(out) == 0;
    if (!ok || rename(tmp, path) != 0) {
        const int e = errno;
        unlink(tmp);
        return dm_error_set(err, DM_ERR_IO, "%s: cannot rewrite: %s", path, strerror(e));
    }
    return DM_OK;
}
