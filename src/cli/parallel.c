/* MPI for `diffusion train` and `diffusion sample` (parallel.h). Compiled always; the MPI calls only with
 * DM_HAVE_MPI (CMake's DM_MPI, on when MPI is found). */
#include "parallel.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef DM_HAVE_MPI
#include <mpi.h>
#endif

static int g_rank = 0, g_size = 1, g_started = 0, g_setup_reported = 0;
static const char *g_command = "train"; /* for messages */
static int g_saved_stderr = -1; /* ranks > 0: the real standard error, while it is held back */
static FILE *g_held = NULL;     /* ranks > 0: what they wrote to standard error meanwhile */
static double g_allreduce_s = 0;
static int64_t g_allreduce_calls = 0;

int cli_parallel_rank(void) { return g_rank; }
int cli_parallel_size(void) { return g_size; }
int cli_parallel_is_root(void) { return g_rank == 0; }
int cli_parallel_setup_reported(void) { return g_setup_reported; }
double cli_parallel_allreduce_seconds(void) { return g_allreduce_s; }
int64_t cli_parallel_allreduce_calls(void) { return g_allreduce_calls; }

/* The job's size and this process's rank as the launchers export them (Open MPI, MPICH and
 * Intel MPI's Hydra, PMIx; Slurm's srun through its PMI or PMIx plugin). Not SLURM_NTASKS: a
 * batch script of an allocation with several tasks has it even for a plain process. */
static int env_int(const char *const *names, int fallback) {
    for (int i = 0; names[i]; i++) {
        const char *v = getenv(names[i]);
        char *end;
        if (!v || !*v) continue;
        long x = strtol(v, &end, 10);
        if (!*end && x >= 0 && x < INT_MAX) return (int)x;
    }
    return fallback;
}

int cli_parallel_launched_size(void) {
    static const char *const names[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", NULL};
    const int n = env_int(names, 1);
    return n >= 1 ? n : 1;
}

int cli_parallel_launched_rank(void) {
    static const char *const names[] = {"OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK", NULL};
    return env_int(names, 0);
}

static uint64_t fnv_add(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}
#define FNV_START 0xcbf29ce484222325ull

#ifdef DM_HAVE_MPI
/* The bytes of this executable: ranks started from different builds differ here even when
 * their versions agree. 0 when it cannot be read. */
static uint64_t executable_hash(void) {
    const int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    unsigned char buf[1 << 16];
    uint64_t h = FNV_START;
    ssize_t got;
    while ((got = read(fd, buf, sizeof buf)) > 0) h = fnv_add(h, buf, (size_t)got);
    close(fd);
    return got < 0 ? 0 : h;
}

typedef struct {
    char version[64];
    uint64_t exe, args;
    int32_t argc;
} build_id;

/* 0 when every rank runs rank 0's build with rank 0's arguments; else the exit status. */
static int check_same_job(int argc, char **argv) {
    build_id mine, root;
    memset(&mine, 0, sizeof mine);
    snprintf(mine.version, sizeof mine.version, "%s", dm_version());
    mine.exe = executable_hash();
    mine.args = fnv_add(FNV_START, g_command, strlen(g_command) + 1);
    for (int i = 0; i < argc; i++) mine.args = fnv_add(mine.args, argv[i], strlen(argv[i]) + 1);
    mine.argc = argc;
    root = mine;
    MPI_Bcast(&root, (int)sizeof root, MPI_BYTE, 0, MPI_COMM_WORLD);
    int differs = 0;
    if (strcmp(mine.version, root.version) != 0) {
        fprintf(stderr, "error: rank %d runs diffusion.c %s, rank 0 runs %s: every rank of the "
                "job must run the same build\n", g_rank, mine.version, root.version);
        differs = 1;
    } else if (mine.exe != root.exe) {
        fprintf(stderr, "error: rank %d runs another executable than rank 0 (both say "
                "diffusion.c %s, but their files differ): every rank of the job must run the "
                "same build\n", g_rank, mine.version);
        differs = 1;
    } else if (mine.args != root.args || mine.argc != root.argc) {
        char shown[512] = "";
        size_t len = 0;
        for (int i = 0; i < argc && len + 2 < sizeof shown; i++)
            len += (size_t)snprintf(shown + len, sizeof shown - len, " %s", argv[i]);
        fprintf(stderr, "error: rank %d was given other arguments than rank 0 (rank %d: "
                "\"%s%s\"): every rank of the job must be given the same arguments\n",
                g_rank, g_rank, g_command, shown);
        differs = 1;
    }
    int ndiffer = 0;
    MPI_Allreduce(&differs, &ndiffer, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (ndiffer && g_rank == 0)
        fprintf(stderr, "error: %d of the job's %d ranks differ from rank 0 in their build or "
                "arguments (their messages say how); nothing was done\n", ndiffer, g_size);
    return ndiffer ? 2 : 0;
}
#endif

int cli_parallel_init(const char *command, int argc, char **argv) {
    g_command = command;
    const int launched = cli_parallel_launched_size();
#ifdef DM_HAVE_MPI
    if (launched <= 1) return 0; /* a plain process (or mpirun -np 1): no MPI at all */
    int provided = 0;
    if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
        fprintf(stderr, "error: the MPI launcher started %d ranks, but MPI could not start\n",
                launched);
        return 1;
    }
    g_started = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    const int rc = check_same_job(argc, argv);
    if (rc) return rc;
    if (g_rank != 0 && g_size > 1) {
        /* only rank 0 speaks; the others' errors at set-up are shown by setup_done when they
         * are theirs alone */
        fflush(stdout);
        fflush(stderr);
        if (!freopen("/dev/null", "w", stdout)) {
            /* then it prints what rank 0 prints */
        }
        g_held = tmpfile();
        if (g_held && (g_saved_stderr = dup(STDERR_FILENO)) >= 0)
            dup2(fileno(g_held), STDERR_FILENO);
    }
    return 0;
#else
    (void)command, (void)argc, (void)argv;
    if (launched > 1) {
        if (cli_parallel_launched_rank() == 0)
            fprintf(stderr, "error: started as %d ranks (mpirun -np %d), but this diffusion was "
                    "built without MPI: install libopenmpi-dev and openmpi-bin and rebuild "
                    "(cmake finds MPI; -DDM_MPI=ON), or run one process without mpirun\n",
                    launched, launched);
        return 2;
    }
    return 0;
#endif
}

int cli_parallel_finalize(int rc) {
#ifdef DM_HAVE_MPI
    if (g_started) {
        fflush(stdout);
        fflush(stderr);
        MPI_Finalize();
        g_started = 0;
    }
#endif
    return rc;
}

/* Ranks > 0: standard error back; what was held, printed when asked (each line prefixed). */
static void release_stderr(int show) {
    if (g_saved_stderr < 0) return;
    fflush(stderr);
    dup2(g_saved_stderr, STDERR_FILENO);
    close(g_saved_stderr);
    g_saved_stderr = -1;
    if (g_held && show) {
        char line[4200];
        rewind(g_held);
        while (fgets(line, sizeof line, g_held)) fprintf(stderr, "rank %d: %s", g_rank, line);
    }
    if (g_held) fclose(g_held);
    g_held = NULL;
}

int cli_parallel_setup_done(int failed, uint64_t fingerprint, const char *input,
                            const char *task) {
    g_setup_reported = 1;
    failed = failed != 0;
    if (g_size == 1) return failed;
#ifdef DM_HAVE_MPI
    int root_failed = failed;
    uint64_t root_fp = fingerprint;
    MPI_Bcast(&root_failed, 1, MPI_INT, 0, MPI_COMM_WORLD);
    MPI_Bcast(&root_fp, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD);
    release_stderr(failed && !root_failed);
    if (!failed && !root_failed && fingerprint != root_fp) {
        fprintf(stderr, "error: rank %d loaded another %s than rank 0 (the files differ "
                "between their machines?): every rank must load the same\n", g_rank, input);
        failed = 1;
    }
    int nfailed = 0;
    MPI_Allreduce(&failed, &nfailed, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (g_rank == 0 && nfailed && !root_failed)
        fprintf(stderr, "error: %d of the job's %d ranks could not start %s (their messages "
                "above); nothing was done\n", nfailed, g_size, task);
    return nfailed;
#else
    (void)fingerprint, (void)input, (void)task;
    return failed;
#endif
}

int cli_parallel_allreduce(float *buf, size_t n, void *ctx) {
    (void)ctx;
#ifdef DM_HAVE_MPI
    if (g_size > 1) {
        const double t0 = MPI_Wtime();
        for (size_t done = 0; done < n;) {
            const size_t chunk = n - done < (size_t)INT_MAX ? n - done : (size_t)INT_MAX;
            if (MPI_Allreduce(MPI_IN_PLACE, buf + done, (int)chunk, MPI_FLOAT, MPI_SUM,
                              MPI_COMM_WORLD) != MPI_SUCCESS)
                return 1;
            done += chunk;
        }
        g_allreduce_s += MPI_Wtime() - t0;
    }
#else
    (void)buf, (void)n;
#endif
    g_allreduce_calls++;
    return 0;
}

int cli_parallel_bcast_int(int v) {
#ifdef DM_HAVE_MPI
    if (g_size > 1) MPI_Bcast(&v, 1, MPI_INT, 0, MPI_COMM_WORLD);
#endif
    return v;
}

int64_t cli_parallel_sum_i64(int64_t v) {
#ifdef DM_HAVE_MPI
    if (g_size > 1) MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD);
#endif
    return v;
}

int cli_parallel_same_everywhere(const float *v, size_t n) {
    if (g_size == 1) return 1;
#ifdef DM_HAVE_MPI
    const uint64_t h = fnv_add(FNV_START, v, n * sizeof *v);
    uint64_t mine[2] = {h, ~h}, lo[2]; /* min of h, and of ~h: ~max of h */
    MPI_Allreduce(mine, lo, 2, MPI_UINT64_T, MPI_MIN, MPI_COMM_WORLD);
    return lo[0] == ~lo[1];
#else
    (void)v, (void)n;
    return 1;
#endif
}

int64_t cli_parallel_check_every(void) {
    const char *v = getenv("DIFFUSION_MPI_CHECK");
    char *end;
    if (!v) return 0;
    errno = 0;
    long long k = strtoll(v, &end, 10);
    return (!*v || *end || errno || k < 0) ? -1 : (int64_t)k;
}

uint64_t cli_parallel_fingerprint(const dm_dataset *ds) {
    if (g_size == 1 || !ds || (!ds->x && !ds->u8)) return 0;
    uint64_t h = ds->x ? fnv_add(FNV_START, ds->x, (size_t)(ds->n * ds->dim) * sizeof *ds->x)
                       : fnv_add(FNV_START, ds->u8, (size_t)(ds->n * ds->dim));
    if (ds->labels) h = fnv_add(h, ds->labels, (size_t)ds->n * sizeof *ds->labels);
    return h;
}

int cli_parallel_same_weights(dm_trainer *tr) {
    dm_model *m = dm_trainer_model(tr);
    return cli_parallel_same_everywhere(dm_model_params(m), dm_model_num_params(m));
}

dm_status cli_parallel_agree(dm_status st, dm_error *err) {
    if (g_size == 1) return st;
#ifdef DM_HAVE_MPI
    /* the lowest failing rank speaks for the job: one message, whoever failed */
    int mine = st ? g_rank : g_size, first = g_size;
    MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    if (first == g_size) return DM_OK;
    dm_error shared = {0};
    if (g_rank == first) {
        shared = *err;
        shared.status = st;
        if (first != 0) dm_error_prefix(&shared, "rank %d", first);
    }
    MPI_Bcast(&shared, (int)sizeof shared, MPI_BYTE, first, MPI_COMM_WORLD);
    *err = shared;
    return shared.status;
#else
    (void)err;
    return st;
#endif
}

int cli_parallel_gather_chunks(float *x, int64_t n, int64_t dim, int64_t chunk) {
    if (g_size == 1) return 0;
#ifdef DM_HAVE_MPI
    for (int64_t k = 0; k * chunk < n; k++) {
        const int owner = (int)(k % g_size);
        if (owner == 0 || (g_rank != 0 && g_rank != owner)) continue;
        const int64_t rows = n - k * chunk < chunk ? n - k * chunk : chunk;
        float *at = x + k * chunk * dim;
        /* in pieces of at most INT_MAX floats, MPI's count */
        for (int64_t done = 0, total = rows * dim; done < total;) {
            const int piece = (int)(total - done < INT_MAX ? total - done : INT_MAX);
            const int rc = g_rank == 0 ? MPI_Recv(at + done, piece, MPI_FLOAT, owner, 0,
                                                  MPI_COMM_WORLD, MPI_STATUS_IGNORE)
                                       : MPI_Send(at + done, piece, MPI_FLOAT, 0, 0,
                                                  MPI_COMM_WORLD);
            if (rc != MPI_SUCCESS) return 1;
            done += piece;
        }
    }
    return 0;
#else
    (void)x, (void)n, (void)dim, (void)chunk;
    return 0;
#endif
}

uint64_t cli_parallel_fingerprint_model(const dm_model *m) {
    if (g_size == 1 || !m) return 0;
    /* dm_model_params is not const, but only read here */
    return fnv_add(FNV_START, dm_model_params((dm_model *)m), dm_model_num_params(m) * sizeof(float));
}
