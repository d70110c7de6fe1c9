#include "common.h"

#include <errno.h>
#include <stdbool.h>
#include <omp.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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
    fprintf(stderr, "error: %s\n",
            err->msg[0] ? cli_safe(err->msg) : dm_status_name(err->status));
    return 1;
}

void cli_print_json(cJSON *obj) {
    char *s = cJSON_PrintUnformatted(obj);
    if (s) printf("%s\n", s);
    cJSON_free(s);
    cJSON_Delete(obj);
}

dm_status cli_class_labels(int32_t **labels, int *classes, const char *arg, int64_t n,
                           const dm_pipeline *p, const dm_classifier *clf, dm_error *err) {
    *labels = NULL;
    int K = p ? dm_pipeline_train_config(p)->num_classes : 0;
    if (!K && clf) K = dm_classifier_num_classes(clf);
    *classes = K;
    if (!K)
        return dm_error_set(err, DM_ERR_ARG, "--class: the model is unconditional (train with "
                            "--conditional) and no --guide-classifier was given");
    const int all = strcmp(arg, "all") == 0;
    char *end = NULL;
    const long k = all ? 0 : strtol(arg, &end, 10);
    if (!all && (!*arg || *end))
        return dm_error_set(err, DM_ERR_ARG, "--class takes a class number or 'all', not '%s'",
                            arg);
    if (!all && (k < 0 || k >= K))
        return dm_error_set(err, DM_ERR_ARG, "--class %ld is outside 0..%d (there are %d "
                            "classes)", k, K - 1, K);
    if (!(*labels = malloc((size_t)n * sizeof **labels)))
        return dm_error_set(err, DM_ERR_NOMEM, "out of memory");
    for (int64_t i = 0; i < n; i++) (*labels)[i] = all ? (int32_t)(i % K) : (int32_t)k;
    return DM_OK;
}

int64_t cli_guided_evaluations(const dm_pipeline *p, const dm_sample_options *so,
                               const dm_guidance *g) {
    const int64_t levels = dm_sample_evaluations(dm_pipeline_schedule(p), so);
    const int cfg = g && g->cfg_scale != 0 && dm_pipeline_train_config(p)->num_classes;
    return cfg ? 2 * levels : levels;
}

void cli_partial_shuffle(int32_t *perm, int64_t N, int64_t k, uint64_t seed, uint64_t stream) {
    dm_rng r;
    dm_rng_init(&r, seed, stream);
    for (int64_t i = 0; i < N; i++) perm[i] = (int32_t)i;
    for (int64_t i = 0; i < k; i++) {
        int32_t j;
        dm_rng_int(&r, &j, 1, (int32_t)i, (int32_t)N);
        const int32_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

int cli_set_precision(const char *name) {
    if (strcmp(name, "fp32") == 0 || strcmp(name, "bf16") == 0) {
        const int bf16 = name[0] == 'b';
        dm_set_conv_precision(bf16 ? DM_PRECISION_BF16 : DM_PRECISION_FP32);
        if (bf16 && !strstr(dm_conv_impl_name(32, 8, 8, 1), "bf16"))
            fprintf(stderr, "note: no bfloat16 convolutions in this build or on this CPU (%s): "
                            "float32 it is\n", dm_conv_impl_name(32, 8, 8, 1));
        return 0;
    }
    fprintf(stderr, "error: --precision is fp32 or bf16, not \"%s\"\n", cli_safe(name));
    return 2;
}

/* ranks of this job on this node, from the launcher's environment (OpenMPI, MPICH) */
static int local_ranks(void) {
    static const char *const vars[] = {"OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *v = getenv(vars[i]);
        if (v && atoi(v) > 0) return atoi(v);
    }
    return 1;
}

int cli_thread_count(int threads) {
    if (threads > 0) return threads;
    const char *env = getenv("OMP_NUM_THREADS");
    if (env && atoi(env) > 0) return omp_get_max_threads(); /* the runtime parsed it */
    cpu_set_t allowed;
    if (sched_getaffinity(0, sizeof allowed, &allowed) != 0) return omp_get_num_procs();
    int n = CPU_COUNT(&allowed);
    const int ranks = local_ranks();
    /* every rank sees the whole machine: the launcher bound none of them, so share it out */
    if (ranks > 1 && n == (int)sysconf(_SC_NPROCESSORS_ONLN)) n /= ranks;
    return n > 0 ? n : 1;
}

void cli_set_threads(int threads) {
    const int n = cli_thread_count(threads);
    dm_set_num_threads(n);
    if (getenv("OMP_PROC_BIND") || getenv("GOMP_CPU_AFFINITY")) return;
    const char *pin = getenv("DIFFUSION_PIN_THREADS");
    if (pin && strcmp(pin, "0") == 0) return;
    cpu_set_t allowed;
    if (sched_getaffinity(0, sizeof allowed, &allowed) != 0) return;
    const bool fills = n == CPU_COUNT(&allowed), asked = pin && strcmp(pin, "1") == 0;
    if (n < 2 || n > CPU_COUNT(&allowed) || !(fills || asked)) return;
    int cpus[CPU_SETSIZE], count = 0;
    for (int c = 0; c < CPU_SETSIZE && count < n; c++)
        if (CPU_ISSET(c, &allowed)) cpus[count++] = c;
#pragma omp parallel num_threads(n)
    {
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(cpus[omp_get_thread_num()], &one);
        pthread_setaffinity_np(pthread_self(), sizeof one, &one);
    }
}
