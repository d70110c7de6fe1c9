/* Data-parallel training without MPI: N "ranks" are N trainers in N threads, summing through an
 * in-process allreduce (a barrier, rank 0 adds the buffers in rank order, every rank copies the
 * sum back), the way `mpirun -np N diffusion train` runs N processes over MPI_Allreduce.
 * Checked: the ranks' checkpoints are identical byte for byte (weights, EMA, Adam moments, loss
 * and timestep histories, random streams); they equal one process with the same batch to float
 * rounding; a non-finite step takes the same branch on every rank, also when only one rank's
 * slice is poisoned; a run saved by 2 ranks resumes on 1 and the other way round; bad rank
 * counts are refused with one message. */
#include "diffusion.h"
#include "diffusion/checkpoint.h"
#include "diffusion/diffusion_impl.h"
#include "io/safetensors.h"
#include "models/model.h"
#include "test_util.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_RANKS = 4 };

static char root[256];

/* ---- the in-process allreduce ------------------------------------------------------------ */

typedef struct {
    pthread_barrier_t barrier;
    int n;
    float *bufs[MAX_RANKS];
    size_t lens[MAX_RANKS];
    float *sum; /* rank 0 writes it between the two barriers */
    size_t cap;
    int bad;
    int64_t calls;
} group;

typedef struct {
    group *g;
    int rank;
} member;

static int group_allreduce(float *buf, size_t n, void *ctx) {
    member *me = ctx;
    group *g = me->g;
    g->bufs[me->rank] = buf;
    g->lens[me->rank] = n;
    pthread_barrier_wait(&g->barrier);
    if (me->rank == 0) {
        g->bad = n > g->cap;
        for (int r = 1; r < g->n; r++) g->bad |= g->lens[r] != n; /* a collective out of step */
        for (size_t i = 0; i < n && !g->bad; i++) {
            float s = g->bufs[0][i];
            for (int r = 1; r < g->n; r++) s += g->bufs[r][i];
            g->sum[i] = s;
        }
        g->calls++;
    }
    pthread_barrier_wait(&g->barrier);
    if (g->bad) return 1;
    memcpy(buf, g->sum, n * sizeof *buf);
    return 0;
}

/* ---- N trainers stepped in N threads ----------------------------------------------------- */

typedef struct {
    dm_trainer *tr;
    int64_t to;
    dm_status st;
    dm_error err;
    int64_t nan_steps; /* steps whose loss came back NaN (skipped) */
} job;

static void *run_job(void *arg) {
    job *j = arg;
    dm_set_num_threads(1); /* this thread's OpenMP teams: as the reference's */
    j->st = DM_OK;
    while (!j->st && dm_trainer_step_count(j->tr) < j->to) {
        double loss = 0;
        j->st = dm_trainer_step(j->tr, &loss, &j->err);
        if (!j->st && isnan(loss)) j->nan_steps++;
    }
    return NULL;
}

/* Steps the trainers, one thread each, to step `to`; returns how many failed. */
static int run_ranks(dm_trainer **trs, int n, int64_t to, job *jobs) {
    pthread_t th[MAX_RANKS];
    for (int r = 0; r < n; r++) {
        memset(&jobs[r], 0, sizeof jobs[r]);
        jobs[r].tr = trs[r];
        jobs[r].to = to;
        pthread_create(&th[r], NULL, run_job, &jobs[r]);
    }
    int failed = 0;
    for (int r = 0; r < n; r++) {
        pthread_join(th[r], NULL);
        failed += jobs[r].st != DM_OK;
    }
    return failed;
}

static void group_init(group *g, member *members, int n, size_t cap) {
    memset(g, 0, sizeof *g);
    g->n = n;
    g->cap = cap;
    g->sum = malloc(cap * sizeof *g->sum);
    pthread_barrier_init(&g->barrier, NULL, (unsigned)n);
    for (int r = 0; r < n; r++) members[r] = (member){g, r};
}

static void group_free(group *g) {
    pthread_barrier_destroy(&g->barrier);
    free(g->sum);
}

/* Makes n trainers of cfg (or resumed from ckpt) ranks 0..n-1 of a group. */
static int make_ranks(dm_trainer **trs, int n, const dm_train_config *cfg, const char *ckpt,
                      const dm_dataset *data, group *g, member *members) {
    dm_error err = {0};
    for (int r = 0; r < n; r++) trs[r] = NULL;
    int ok = 1;
    for (int r = 0; r < n && ok; r++) {
        dm_status st = ckpt ? dm_trainer_resume(&trs[r], ckpt, data, cfg->steps, &err)
                            : dm_trainer_create(&trs[r], cfg, data, &err);
        CHECK(st == DM_OK, "rank %d: %s", r, err.msg);
        ok = st == DM_OK;
    }
    if (!ok) return 0;
    const size_t P = dm_model_num_params(dm_trainer_model(trs[0]));
    group_init(g, members, n, P > (size_t)cfg->batch + 1 ? P : (size_t)cfg->batch + 1);
    for (int r = 0; r < n && ok; r++) {
        dm_status st = dm_trainer_set_data_parallel(trs[r], r, n, group_allreduce, &members[r],
                                                    &err);
        CHECK(st == DM_OK, "rank %d of %d: %s", r, n, err.msg);
        ok = st == DM_OK;
    }
    return ok;
}

static void free_ranks(dm_trainer **trs, int n) {
    for (int r = 0; r < n; r++) dm_trainer_free(trs[r]);
}

/* ---- checkpoints compared ---------------------------------------------------------------- */

static int files_equal(const char *a, const char *b) {
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    int same = fa && fb;
    while (same) {
        int ca = fgetc(fa), cb = fgetc(fb);
        same = ca == cb;
        if (ca == EOF || cb == EOF) break;
    }
    if (fa) fclose(fa);
    if (fb) fclose(fb);
    return same;
}

/* Every file of the checkpoint: the same bytes. */
static void check_same_checkpoint(const char *what, const char *a, const char *b, int unet) {
    static const char *const mlp_files[] = {DM_CKPT_CONFIG, DM_CKPT_MODEL, DM_CKPT_STATE};
    static const char *const unet_files[] = {DM_CKPT_CONFIG, DM_CKPT_STATE,
                                             DM_CKPT_UNET_DIR "/diffusion_pytorch_model.safetensors"};
    const char *const *files = unet ? unet_files : mlp_files;
    for (int i = 0; i < 3; i++) {
        char pa[600], pb[600];
        snprintf(pa, sizeof pa, "%s/%s", a, files[i]);
        snprintf(pb, sizeof pb, "%s/%s", b, files[i]);
        CHECK(files_equal(pa, pb), "%s: %s differs between %s and %s", what, files[i], a, b);
    }
}

/* The largest difference of a tensor of two train_state files, relative to the largest
 * magnitude in b; -1 when it cannot be read. */
static double state_diff(const char *a, const char *b, const char *name) {
    char pa[600], pb[600];
    snprintf(pa, sizeof pa, "%s/" DM_CKPT_STATE, a);
    snprintf(pb, sizeof pb, "%s/" DM_CKPT_STATE, b);
    dm_error err = {0};
    dm_safetensors *sa = NULL, *sb = NULL;
    double worst = -1;
    if (dm_safetensors_open(&sa, pa, &err) || dm_safetensors_open(&sb, pb, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        goto done;
    }
    const dm_st_tensor *ta = dm_safetensors_get(sa, name), *tb = dm_safetensors_get(sb, name);
    if (!ta || !tb || ta->ndim != tb->ndim) goto done;
    int64_t n = 1;
    for (int d = 0; d < ta->ndim; d++) {
        if (ta->shape[d] != tb->shape[d]) goto done;
        n *= ta->shape[d];
    }
    float *va = malloc((size_t)n * sizeof *va), *vb = malloc((size_t)n * sizeof *vb);
    if (!dm_safetensors_read_f32(sa, name, va, ta->shape, ta->ndim, &err) &&
        !dm_safetensors_read_f32(sb, name, vb, tb->shape, tb->ndim, &err)) {
        double scale = 0, d = 0;
        for (int64_t i = 0; i < n; i++) {
            scale = fmax(scale, fabs(vb[i]));
            d = fmax(d, fabs((double)va[i] - vb[i]));
        }
        worst = scale > 0 ? d / scale : d;
    }
    free(va);
    free(vb);
done:
    if (sa) dm_safetensors_close(sa);
    if (sb) dm_safetensors_close(sb);
    return worst;
}

/* The largest difference of two models' weights, relative to the largest weight of b, leaving
 * out attention key biases: their gradient is 0 in exact arithmetic (a bias added to every key
 * shifts a softmax row by a constant), so what the backward computes for them is rounding noise
 * (1e-11), which Adam divides by sqrt(v) + eps and turns into steps of up to ~lr that differ
 * between any two summation orders (test_trainer's accumulation case says the same); their
 * largest difference goes to *key_bias. */
static double params_diff(const dm_model *a, const dm_model *b, double *key_bias) {
    const float *pa = dm_model_params((dm_model *)a), *pb = dm_model_params((dm_model *)b);
    double scale = 0, worst = 0;
    for (size_t i = 0; i < b->num_params; i++) scale = fmax(scale, fabs(pb[i]));
    for (int t = 0; t < b->n_tensors; t++) {
        const dm_param_tensor *pt = &b->tensors[t];
        const int noise = strstr(pt->name, "to_k.bias") != NULL;
        size_t numel = 1;
        for (int d = 0; d < pt->ndim; d++) numel *= (size_t)pt->shape[d];
        for (size_t i = pt->offset; i < pt->offset + numel; i++) {
            const double d = fabs((double)pa[i] - pb[i]) / scale;
            if (noise)
                *key_bias = fmax(*key_bias, d);
            else
                worst = fmax(worst, d);
        }
    }
    return worst;
}

static void save_to(dm_trainer *tr, char *dir, size_t cap, const char *name) {
    dm_error err = {0};
    snprintf(dir, cap, "%s/%s", root, name);
    CHECK(dm_trainer_save(tr, dir, &err) == DM_OK, "save %s: %s", name, err.msg);
}

/* ---- the cases --------------------------------------------------------------------------- */

static void small_config(dm_train_config *cfg) {
    dm_train_config_default(cfg);
    cfg->mlp.hidden = 32;
    cfg->mlp.temb_dim = 16;
    cfg->mlp.layers = 2;
    cfg->batch = 64;
    cfg->steps = 100;
    cfg->schedule.T = 100;
    cfg->seed = 11;
    cfg->optim.lr = 1e-2; /* steps that move the weights */
    cfg->optim.warmup = 2;
    cfg->optim.lr_schedule = DM_LR_COSINE;
}

/* n ranks with accumulation `accum` each against one process with accumulation `ref_accum`,
 * `steps` steps. The ranks must agree byte for byte; against the single process, each saved
 * tensor (raw weights, Adam moments, loss history and, with importance sampling, the timestep
 * history) within tol of its largest magnitude.
 *
 * Why tol = 1e-5 after 100 steps: every random draw is the same (the whole batch is drawn on
 * every rank), so the two runs differ only in the order of float sums: the gradient as a sum of
 * per-rank partial sums (and the GEMMs' blocking at another batch), ~1e-7 relative per step,
 * the tolerance test_trainer's gradient-accumulation case allows for the same reordering.
 * Adam's steps are bounded by ~lr whatever the gradient, and the training here does not amplify
 * the rounding: the runs stay at 2e-7 .. 2e-6 (printed), while a real fault moves them by far
 * more (every rank on the first slice: 0.1 .. 0.3; dropout masks of the wrong place: 1e-2). The
 * loss history is compared the same way (batch means summed over the ranks as floats: ~1e-7
 * relative); it also catches a wrong scale (1/K instead of 1/(RK)), to which Adam's weights are
 * nearly blind. */
static void parallel_case(const char *name, const dm_train_config *base, const dm_dataset *data,
                          int n, int64_t accum, int64_t ref_accum, double tol, int unet) {
    dm_error err = {0};
    dm_train_config cr = *base, c1 = *base;
    cr.grad_accum = accum;
    c1.grad_accum = ref_accum;
    dm_trainer *ref = NULL, *trs[MAX_RANKS];
    group g;
    member members[MAX_RANKS];
    job jobs[MAX_RANKS];
    CHECK(dm_trainer_create(&ref, &c1, data, &err) == DM_OK, "%s: %s", name, err.msg);
    if (!ref || !make_ranks(trs, n, &cr, NULL, data, &g, members)) {
        dm_trainer_free(ref);
        return;
    }
    const int64_t steps = base->steps;
    while (dm_trainer_step_count(ref) < steps && dm_trainer_step(ref, NULL, &err) == DM_OK) {}
    CHECK(dm_trainer_step_count(ref) == steps, "%s: single process: %s", name, err.msg);
    CHECK(run_ranks(trs, n, steps, jobs) == 0, "%s: ranks: %s / %s", name, jobs[0].err.msg,
          jobs[n - 1].err.msg);
    /* one gradient sum and one loss sum a step */
    CHECK(g.calls == 2 * steps, "%s: %lld sums over the ranks in %lld steps", name,
          (long long)g.calls, (long long)steps);
    char dref[512], dr[MAX_RANKS][512];
    save_to(ref, dref, sizeof dref, "ref");
    for (int r = 0; r < n; r++) {
        char nm[32];
        snprintf(nm, sizeof nm, "rank%d", r);
        save_to(trs[r], dr[r], sizeof dr[r], nm);
    }
    for (int r = 1; r < n; r++) check_same_checkpoint(name, dr[0], dr[r], unet);
    const char *tensors[] = {"adam_m", "adam_v", "loss_history", "timestep_loss_history"};
    const int nt = base->timesteps == DM_TIME_IMPORTANCE ? 4 : 3;
    double key_bias = 0;
    const double dp = params_diff(dm_trainer_model(trs[0]), dm_trainer_model(ref), &key_bias);
    printf("%s: %d ranks x accumulation %lld against 1 process x %lld, %lld steps: params %.1e "
           "(key biases %.1e)", name, n, (long long)accum, (long long)ref_accum,
           (long long)steps, dp, key_bias);
    CHECK(dp <= tol, "%s: the weights differ from the single process's by %g of the largest "
          "(tolerance %g)", name, dp, tol);
    for (int i = 0; i < nt; i++) {
        const double d = state_diff(dr[0], dref, tensors[i]);
        printf(" %s %.1e", tensors[i], d);
        CHECK(d >= 0 && d <= tol, "%s: %s differs from the single process's by %g of its "
              "largest value (tolerance %g)", name, tensors[i], d, tol);
    }
    printf("\n");
    /* the weights moved: the comparison is not of two untrained models */
    dm_trainer *fresh = NULL;
    if (dm_trainer_create(&fresh, &c1, data, &err) == DM_OK) {
        char dfresh[512];
        save_to(fresh, dfresh, sizeof dfresh, "fresh");
        const double moved = state_diff(dfresh, dref, "params");
        CHECK(moved > 100 * tol, "%s: the weights hardly moved (%g)", name, moved);
        dm_trainer_free(fresh);
    }
    dm_trainer_free(ref);
    free_ranks(trs, n);
    group_free(&g);
}

/* A NaN in rank 0's slice of one step (dm_trainer_inject_nan poisons the batch's first input):
 * rank 1's own loss is finite, yet both ranks must take the same branch, or rank 1 would wait in
 * the gradient sum forever. Skipping: both skip that step; not skipping: both stop there. */
static void test_nonfinite(const dm_dataset *data) {
    dm_train_config cfg;
    small_config(&cfg);
    cfg.steps = 12;
    for (int skip = 0; skip <= 1; skip++) {
        dm_trainer *trs[2];
        group g;
        member members[2];
        job jobs[2];
        if (!make_ranks(trs, 2, &cfg, NULL, data, &g, members)) continue;
        for (int r = 0; r < 2; r++) {
            dm_trainer_inject_nan(trs[r], 5);
            dm_trainer_set_skip_nonfinite(trs[r], skip);
        }
        const int failed = run_ranks(trs, 2, cfg.steps, jobs);
        if (skip) {
            CHECK(failed == 0, "skipping: %s", jobs[0].err.msg);
            for (int r = 0; r < 2; r++) {
                CHECK(jobs[r].nan_steps == 1 && dm_trainer_skipped_steps(trs[r]) == 1,
                      "rank %d skipped %lld steps (want 1)", r,
                      (long long)dm_trainer_skipped_steps(trs[r]));
                CHECK(isnan(dm_trainer_loss_history(trs[r])[4]), "rank %d: step 5's loss is "
                      "not NaN", r);
            }
            char a[512], b[512];
            save_to(trs[0], a, sizeof a, "nan0");
            save_to(trs[1], b, sizeof b, "nan1");
            check_same_checkpoint("a skipped step", a, b, 0);
        } else {
            CHECK(failed == 2, "not skipping: %d of 2 ranks stopped", failed);
            for (int r = 0; r < 2; r++) {
                CHECK(jobs[r].st == DM_ERR_NUMERIC && dm_trainer_step_count(trs[r]) == 4,
                      "rank %d: status %d at step %lld (%s)", r, (int)jobs[r].st,
                      (long long)dm_trainer_step_count(trs[r]), jobs[r].err.msg);
                CHECK(strstr(jobs[r].err.msg, "step 5") != NULL, "rank %d: %s", r,
                      jobs[r].err.msg);
            }
        }
        free_ranks(trs, 2);
        group_free(&g);
    }
}

/* The saved state is global: 2 ranks to step 40 then 1 process to 80 equals 2 ranks all the
 * way (to float rounding), and 1 process then 2 ranks likewise. */
static void test_resume_other_count(const dm_dataset *data) {
    dm_train_config cfg;
    small_config(&cfg);
    cfg.steps = 80;
    dm_error err = {0};
    dm_trainer *two[2], *one = NULL;
    group g;
    member members[2];
    job jobs[2];
    char dtwo[512], dhalf[512], dmixed[512], dmixed2[512];
    if (!make_ranks(two, 2, &cfg, NULL, data, &g, members)) return;
    CHECK(run_ranks(two, 2, 40, jobs) == 0, "%s", jobs[0].err.msg);
    save_to(two[0], dhalf, sizeof dhalf, "half2");
    CHECK(run_ranks(two, 2, 80, jobs) == 0, "%s", jobs[0].err.msg);
    save_to(two[0], dtwo, sizeof dtwo, "full2");
    free_ranks(two, 2);
    group_free(&g);

    CHECK(dm_trainer_resume(&one, dhalf, data, 0, &err) == DM_OK, "%s", err.msg);
    if (!one) return;
    CHECK(dm_trainer_step_count(one) == 40, "resumed at %lld", (long long)dm_trainer_step_count(one));
    while (dm_trainer_step_count(one) < 80 && dm_trainer_step(one, NULL, &err) == DM_OK) {}
    save_to(one, dmixed, sizeof dmixed, "mixed21");
    dm_trainer_free(one);
    double d = state_diff(dmixed, dtwo, "params");
    printf("2 ranks to step 40, then 1 process to 80, against 2 ranks: params %.1e\n", d);
    CHECK(d >= 0 && d <= 1e-5, "2 ranks then 1: params off by %g", d);

    /* 1 process to step 40 (the run 2 ranks resumed would have saved), then 2 ranks */
    CHECK(dm_trainer_create(&one, &cfg, data, &err) == DM_OK, "%s", err.msg);
    if (!one) return;
    while (dm_trainer_step_count(one) < 40 && dm_trainer_step(one, NULL, &err) == DM_OK) {}
    save_to(one, dhalf, sizeof dhalf, "half1");
    dm_trainer_free(one);
    if (!make_ranks(two, 2, &cfg, dhalf, data, &g, members)) return;
    CHECK(dm_trainer_step_count(two[1]) == 40, "rank 1 resumed at %lld",
          (long long)dm_trainer_step_count(two[1]));
    CHECK(run_ranks(two, 2, 80, jobs) == 0, "%s", jobs[0].err.msg);
    save_to(two[0], dmixed2, sizeof dmixed2, "mixed12");
    char d1[512];
    save_to(two[1], d1, sizeof d1, "mixed12_rank1");
    check_same_checkpoint("1 then 2 ranks", dmixed2, d1, 0);
    free_ranks(two, 2);
    group_free(&g);
    d = state_diff(dmixed2, dtwo, "params");
    printf("1 process to step 40, then 2 ranks to 80, against 2 ranks: params %.1e\n", d);
    CHECK(d >= 0 && d <= 1e-5, "1 then 2 ranks: params off by %g", d);
}

static int dummy_allreduce(float *buf, size_t n, void *ctx) {
    (void)buf, (void)n, (void)ctx;
    return 0;
}

static void refused(const dm_train_config *cfg, const dm_dataset *data, int rank, int n,
                    dm_allreduce_fn fn, const char *want) {
    dm_error err = {0};
    dm_trainer *tr = NULL;
    if (dm_trainer_create(&tr, cfg, data, &err) != DM_OK) {
        CHECK(0, "create: %s", err.msg);
        return;
    }
    const dm_status st = dm_trainer_set_data_parallel(tr, rank, n, fn, NULL, &err);
    CHECK(st == DM_ERR_ARG && strstr(err.msg, want), "rank %d of %d, batch %lld, accumulation "
          "%lld: status %d, message \"%s\" (want one with \"%s\")", rank, n,
          (long long)cfg->batch, (long long)cfg->grad_accum, (int)st, err.msg, want);
    if (st == DM_ERR_ARG) printf("refused: %s\n", err.msg);
    /* the trainer still steps as one process */
    CHECK(dm_trainer_step(tr, NULL, &err) == DM_OK, "a step after the refusal: %s", err.msg);
    dm_trainer_free(tr);
}

static void test_bad_input(const dm_dataset *data) {
    dm_train_config cfg;
    small_config(&cfg);
    cfg.batch = 63;
    refused(&cfg, data, 0, 2, dummy_allreduce, "batch 63 does not split over 2 ranks");
    cfg.batch = 64;
    cfg.grad_accum = 4;
    refused(&cfg, data, 0, 32, dummy_allreduce, "ranks x accumulation = 128");
    cfg.grad_accum = 1;
    refused(&cfg, data, 0, 65, dummy_allreduce, "65 ranks for a batch of 64");
    refused(&cfg, data, 2, 2, dummy_allreduce, "rank 2 of 2");
    refused(&cfg, data, 0, 2, NULL, "need an allreduce");
    dm_error err = {0};
    dm_train_config_default(&cfg);
    cfg.loss = DM_LOSS_VDM_CONTINUOUS;
    cfg.schedule.kind = DM_SCHEDULE_LOGSNR;
    cfg.batch = 64;
    cfg.mlp.hidden = 16;
    CHECK(dm_train_config_check_parallel(&cfg, 2, &err) == DM_ERR_ARG &&
              strstr(err.msg, "vdm-continuous"), "vdm-continuous over 2 ranks: %s", err.msg);
    CHECK(dm_train_config_check_parallel(&cfg, 1, &err) == DM_OK, "1 rank: %s", err.msg);
}

int main(void) {
    dm_set_num_threads(1);
    /* the UNet's convolutions through im2col: oneDNN's primitive cache is one per process, and
     * two trainers run at once here (one per thread) */
    dm_set_conv_backend(DM_CONV_IM2COL);
    snprintf(root, sizeof root, "/tmp/dm_test_trainer_parallel_XXXXXX");
    if (!mkdtemp(root)) return 1;
    dm_error err = {0};
    dm_dataset data, labelled;
    if (dm_toy2d_generate(&data, "swissroll", 1000, 1, &err) ||
        dm_toy2d_generate(&labelled, "8gaussians", 1000, 1, &err)) {
        fprintf(stderr, "FAIL: toy data: %s\n", err.msg);
        return 1;
    }
    const double tol = 1e-5;
    dm_train_config cfg;
    small_config(&cfg);
    parallel_case("MLP", &cfg, &data, 2, 1, 1, tol, 0);
    parallel_case("MLP, accumulation", &cfg, &data, 2, 2, 1, tol, 0);
    parallel_case("MLP, 4 ranks", &cfg, &data, 4, 1, 1, tol, 0);
    /* importance sampling (its history full after ~30 steps), a learned variance, labels
     * dropped to the null label */
    cfg.timesteps = DM_TIME_IMPORTANCE;
    cfg.loss = DM_LOSS_HYBRID;
    cfg.var = DM_VAR_LEARNED;
    cfg.num_classes = labelled.num_classes;
    cfg.p_uncond = 0.3;
    parallel_case("MLP, importance / hybrid / conditional", &cfg, &labelled, 2, 1, 1, tol, 0);

    /* The UNet with dropout and flips: masks are drawn per micro-batch, so 2 ranks (one
     * micro-batch each) equal one process with accumulation 2, each rank drawing the masks of
     * its micro-batch's place in the batch. */
    dm_train_config_default(&cfg);
    cfg.arch = DM_ARCH_UNET;
    CHECK(dm_unet_preset(&cfg.unet, "tiny", &err) == DM_OK, "preset: %s", err.msg);
    cfg.unet.dropout = 0.2;
    cfg.hflip = 1;
    cfg.batch = 8;
    cfg.steps = 10;
    cfg.schedule.T = 50;
    cfg.seed = 7;
    cfg.optim.lr = 1e-2;
    cfg.optim.warmup = 0;
    dm_image_set images;
    CHECK(dm_image_set_init(&images, 12, 1, 8, 8, 0, &err) == DM_OK, "%s", err.msg);
    dm_rng rng;
    dm_rng_init(&rng, 4, 0);
    dm_rng_uniform(&rng, images.data.x, 12 * 64);
    for (int i = 0; i < 12 * 64; i++) images.data.x[i] = 2 * images.data.x[i] - 1;
    parallel_case("UNet, dropout", &cfg, &images.data, 2, 1, 2, tol, 1);
    dm_image_set_free(&images);

    test_nonfinite(&data);
    test_resume_other_count(&data);
    test_bad_input(&data);
    dm_dataset_free(&data);
    dm_dataset_free(&labelled);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", root);
    return tu_finish("test_trainer_parallel");
}
