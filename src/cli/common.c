#include "common.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

int cli_given(int argc, char **argv, const char *flag) {
    const size_t k = strlen(flag);
    for (int i = 0; i < argc; i++)
        if (strncmp(argv[i], flag, k) == 0 && (argv[i][k] == 0 || argv[i][k] == '=')) return 1;
    return 0;
}

int cli_is_builtin(const char *name) {
    for (int i = 0; dm_toy2d_names[i]; i++)
        if (strcmp(name, dm_toy2d_names[i]) == 0) return 1;
    return 0;
}

const char *cli_builtin_list(void) {
    static char buf[256];
    if (!buf[0])
        for (int i = 0; dm_toy2d_names[i]; i++) {
            if (i) strncat(buf, ", ", sizeof buf - strlen(buf) - 1);
            strncat(buf, dm_toy2d_names[i], sizeof buf - strlen(buf) - 1);
        }
    return buf;
}

dm_status cli_load_data(dm_dataset *ds, const char *name, int64_t n, uint64_t seed, dm_error *err) {
    if (cli_is_builtin(name)) return dm_toy2d_generate(ds, name, n, seed, err);
    if (!strchr(name, '.') && !strchr(name, '/'))
        return dm_error_set(err, DM_ERR_ARG,
                            "--data %s: not a built-in set (%s) nor a .csv/.npy file", name,
                            cli_builtin_list());
    return dm_dataset_load(ds, name, err);
}

dm_status cli_make_dirs(const char *path, dm_error *err) {
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return dm_error_set(err, DM_ERR_ARG, "%s: path too long", path);
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(buf, 0755) != 0 && errno != EEXIST)
                return dm_error_set(err, DM_ERR_IO, "%s: cannot create folder: %s", buf,
                                    strerror(errno));
            *p = c;
            if (c == '\0') break;
        }
    }
    struct stat sb;
    if (stat(path, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return dm_error_set(err, DM_ERR_IO, "%s: not a folder", path);
    return DM_OK;
}

int cli_fail(const dm_error *err) {
    fprintf(stderr, "error: %s\n", err->msg[0] ? err->msg : dm_status_name(err->status));
    return 1;
}

void cli_print_json(cJSON *obj) {
    char *s = cJSON_PrintUnformatted(obj);
    if (s) printf("%s\n", s);
    cJSON_free(s);
    cJSON_Delete(obj);
}

static volatile sig_atomic_t interrupted = 0;

static void on_sigint(int sig) {
    (void)sig;
    interrupted = 1;
    signal(SIGINT, SIG_DFL); /* a second Ctrl-C ends the process at once */
}

void cli_catch_interrupt(void) { signal(SIGINT, on_sigint); }
int cli_interrupted(void) { return interrupted; }
