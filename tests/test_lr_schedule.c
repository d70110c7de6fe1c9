/* Learning-rate schedules (diffusers' --lr_scheduler): each schedule's learning rate at chosen
 * steps against closed forms, every step against a transcription of diffusers' lr_lambda
 * (src/diffusers/optimization.py, v0.31) written here independently of src/nn/optim.c, the
 * default against the warm-up the optimiser had before schedules existed, Adam following the
 * schedule, the refusals of bad names and values, and a checkpoint's schedule read back (a
 * damaged one refused naming the file). */
#include "diffusion.h"
#include "diffusion/checkpoint.h"
#include "nn/nn.h"
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const double PI = 3.14159265358979323846;

/* diffusers' lr_lambda(current_step) of each schedule, as optimization.py writes it (Python's
 * float % for the restarts, max(1, ...) in the denominators, the polynomial's lr_init
 * division). `num_cycles` is get_scheduler's: only cosine_with_restarts receives it, cosine
 * keeps its default 0.5. */
static double diffusers_lambda(const char *name, int64_t current_step, int64_t num_warmup_steps,
                               int64_t num_training_steps, int num_cycles, double power,
                               double lr_init, double lr_end) {
    const double cs = (double)current_step;
    if (strcmp(name, "constant") == 0) return 1.0;
    if (strcmp(name, "constant_with_warmup") == 0) {
        if (current_step < num_warmup_steps)
            return cs / fmax(1.0, (double)num_warmup_steps);
        return 1.0;
    }
    if (current_step < num_warmup_steps)
        return cs / (double)(num_warmup_steps > 1 ? num_warmup_steps : 1);
    const double denom =
        (double)(num_training_steps - num_warmup_steps > 1 ? num_training_steps - num_warmup_steps
                                                           : 1);
    const double progress = (double)(current_step - num_warmup_steps) / denom;
    if (strcmp(name, "linear") == 0)
        return fmax(0.0, (double)(num_training_steps - current_step) / denom);
    if (strcmp(name, "cosine") == 0)
        return fmax(0.0, 0.5 * (1.0 + cos(PI * 0.5 * 2.0 * progress)));
    if (strcmp(name, "cosine_with_restarts") == 0) {
        if (progress >= 1.0) return 0.0;
        double r = fmod((double)num_cycles * progress, 1.0);
        if (r < 0) r += 1.0; /* Python's % takes the divisor's sign */
        return fmax(0.0, 0.5 * (1.0 + cos(PI * r)));
    }
    /* polynomial */
    if (current_step > num_training_steps) return lr_end / lr_init;
    const double lr_range = lr_init - lr_end;
    const double decay_steps = (double)(num_training_steps - num_warmup_steps);
    const double pct_remaining = 1.0 - (cs - (double)num_warmup_steps) / decay_steps;
    return (lr_range * pow(pct_remaining, power) + lr_end) / lr_init;
}

static dm_optim_config make(dm_lr_schedule s, int64_t warmup) {
    dm_optim_config c;
    dm_optim_config_default(&c);
    c.lr = 1e-3;
    c.lr_schedule = s;
    c.warmup = warmup;
    return c;
}

/* lr at a step against a value computed by hand; the closed forms are exact or within a few
 * ulps of double (cos near pi / 4 and pi), so 1e-15 relative plus 1e-18 absolute for zeros */
static void at(const dm_optim_config *c, int64_t step, int64_t total, double want,
               const char *what) {
    char buf[160];
    snprintf(buf, sizeof buf, "%s: lr at step %lld of %lld", what, (long long)step,
             (long long)total);
    CHECK_CLOSE(dm_lr_at(c, step, total), want, 1e-18, 1e-15, buf);
}

static void test_closed_forms(void) {
    const double lr = 1e-3;
    /* constant_with_warmup, warm-up 4: lr s / 4, then lr */
    dm_optim_config c = make(DM_LR_CONSTANT_WITH_WARMUP, 4);
    at(&c, 1, 100, 0.25 * lr, "constant_with_warmup");
    at(&c, 3, 100, 0.75 * lr, "constant_with_warmup");
    at(&c, 4, 100, lr, "constant_with_warmup");
    at(&c, 1000, 100, lr, "constant_with_warmup");
    /* constant: lr from the first step, the warm-up ignored */
    c = make(DM_LR_CONSTANT, 4);
    at(&c, 1, 100, lr, "constant");
    at(&c, 200, 100, lr, "constant");

    /* linear, warm-up 10 of 110: half-way through the warm-up half the peak, the peak at its
     * end, half the peak half-way through the decay (step 60), 0 at the last step and after */
    c = make(DM_LR_LINEAR, 10);
    at(&c, 5, 110, 0.5 * lr, "linear");
    at(&c, 10, 110, lr, "linear");
    at(&c, 60, 110, 0.5 * lr, "linear");
    at(&c, 85, 110, 0.25 * lr, "linear");
    at(&c, 110, 110, 0.0, "linear");
    at(&c, 150, 110, 0.0, "linear");

    /* cosine, warm-up 10 of 110: (1 + cos(pi p)) / 2 with p the decay's progress: the peak at
     * p = 0, (1 + sqrt(1/2)) / 2 at p = 1/4, half the peak half-way, 0 at the end; past the
     * end diffusers' cosine rises again (cos is periodic; half the peak at p = 3/2) */
    c = make(DM_LR_COSINE, 10);
    at(&c, 10, 110, lr, "cosine");
    at(&c, 35, 110, 0.5 * (1 + sqrt(0.5)) * lr, "cosine");
    at(&c, 60, 110, 0.5 * lr, "cosine");
    at(&c, 110, 110, 0.0, "cosine");
    at(&c, 160, 110, 0.5 * lr, "cosine");
    /* no warm-up: the first step is already on the cosine (p = 1/100) */
    c = make(DM_LR_COSINE, 0);
    at(&c, 50, 100, 0.5 * lr, "cosine, no warm-up");
    /* num_cycles is cosine_with_restarts' alone (get_scheduler passes it to no other) */
    c.lr_num_cycles = 3;
    at(&c, 50, 100, 0.5 * lr, "cosine ignores num_cycles");

    /* cosine_with_restarts, 2 cycles over 100 steps, no warm-up: each cycle a half cosine of 50
     * steps: half the peak a quarter in (step 25), the peak again at the restart (step 50),
     * half at 75, 0 at the end and after */
    c = make(DM_LR_COSINE_WITH_RESTARTS, 0);
    c.lr_num_cycles = 2;
    at(&c, 25, 100, 0.5 * lr, "cosine_with_restarts");
    at(&c, 50, 100, lr, "cosine_with_restarts");
    at(&c, 75, 100, 0.5 * lr, "cosine_with_restarts");
    at(&c, 100, 100, 0.0, "cosine_with_restarts");
    at(&c, 130, 100, 0.0, "cosine_with_restarts");
    CHECK(dm_lr_at(&c, 49, 100) < 0.01 * lr, "cosine_with_restarts: step 49 (just before the "
          "restart) %g", dm_lr_at(&c, 49, 100));
    /* with 1 cycle it is the plain cosine */
    c.lr_num_cycles = 1;
    at(&c, 60, 110, dm_lr_at(&(dm_optim_config){.lr = lr, .lr_schedule = DM_LR_COSINE}, 60, 110),
       "cosine_with_restarts, 1 cycle");

    /* polynomial, warm-up 10 of 110, lr_end 1e-5: power 2 half-way:
     * (lr - lr_end) / 4 + lr_end; power 1 is linear to lr_end; lr_end at the end and after */
    c = make(DM_LR_POLYNOMIAL, 10);
    c.lr_end = 1e-5;
    c.lr_power = 2.0;
    at(&c, 5, 110, 0.5 * lr, "polynomial");
    at(&c, 10, 110, lr, "polynomial");
    at(&c, 60, 110, (lr - 1e-5) * 0.25 + 1e-5, "polynomial, power 2");
    at(&c, 110, 110, 1e-5, "polynomial");
    at(&c, 111, 110, 1e-5, "polynomial");
    c.lr_power = 1.0;
    at(&c, 60, 110, (lr - 1e-5) * 0.5 + 1e-5, "polynomial, power 1");
    c.lr_power = 0.5;
    at(&c, 85, 110, (lr - 1e-5) * 0.5 + 1e-5, "polynomial, power 1/2 (a quarter remaining)");
}

/* Every step of a run (and 30 beyond its end) against the transcription, for several warm-ups,
 * lengths and parameters: lr_at(step) = lr diffusers_lambda(step). */
static void test_against_diffusers(void) {
    static const char *const names[] = {"constant_with_warmup", "constant", "linear", "cosine",
                                        "cosine_with_restarts", "polynomial"};
    const int64_t warmups[] = {0, 1, 7, 100};
    const int64_t totals[] = {150, 1000};
    const int cycles[] = {1, 3};
    const double powers[] = {1.0, 2.5};
    double worst = 0;
    int64_t compared = 0;
    for (int k = 0; k < 6; k++) {
        dm_lr_schedule s;
        CHECK(dm_lr_schedule_parse(names[k], &s, NULL) == DM_OK, "parse %s", names[k]);
        CHECK(strcmp(dm_lr_schedule_name(s), names[k]) == 0, "name of %s: %s", names[k],
              dm_lr_schedule_name(s));
        for (int w = 0; w < 4; w++)
            for (int n = 0; n < 2; n++)
                for (int v = 0; v < 2; v++) {
                    dm_optim_config c = make(s, warmups[w]);
                    c.lr = 3e-4;
                    c.lr_num_cycles = cycles[v];
                    c.lr_power = powers[v];
                    c.lr_end = 2e-6;
                    CHECK(dm_lr_schedule_check(&c, totals[n], NULL) == DM_OK, "%s is valid",
                          names[k]);
                    for (int64_t step = 1; step <= totals[n] + 30; step++) {
                        const double want =
                            c.lr * diffusers_lambda(names[k], step, warmups[w], totals[n],
                                                    cycles[v], powers[v], c.lr, c.lr_end);
                        const double got = dm_lr_at(&c, step, totals[n]);
                        const double d = fabs(got - want);
                        worst = fmax(worst, d / c.lr);
                        compared++;
                        if (d > 1e-15 * c.lr)
                            CHECK(0, "%s warm-up %lld of %lld: step %lld: %.17g, diffusers' "
                                  "%.17g", names[k], (long long)warmups[w],
                                  (long long)totals[n], (long long)step, got, want);
                    }
                }
    }
    printf("%lld learning rates against diffusers' lr_lambda: largest difference %.2g of lr\n",
           (long long)compared, worst);
}

/* The default is the warm-up the optimiser always had, bit for bit: lr min(1, (k + 1) / W) at
 * its (0-based) step k, and lr with no warm-up. */
static void test_default_unchanged(void) {
    dm_optim_config c;
    dm_optim_config_default(&c);
    CHECK(c.lr_schedule == DM_LR_CONSTANT_WITH_WARMUP && c.lr_num_cycles == 1 &&
              c.lr_power == 1.0 && c.lr_end == 1e-7,
          "defaults: %s, %d cycles, power %g, lr_end %g", dm_lr_schedule_name(c.lr_schedule),
          (int)c.lr_num_cycles, c.lr_power, c.lr_end);
    dm_train_config t;
    dm_train_config_default(&t);
    CHECK(t.grad_accum == 1, "default accumulation %lld", (long long)t.grad_accum);
    const int64_t warmups[] = {0, 1, 3, 100, 500};
    for (int w = 0; w < 5; w++) {
        c.warmup = warmups[w];
        for (int64_t k = 0; k < 700; k++) {
            double old = c.lr;
            if (c.warmup > 0) {
                const double frac = (double)(k + 1) / (double)c.warmup;
                old = c.lr * (frac < 1.0 ? frac : 1.0);
            }
            if (dm_lr_at(&c, k + 1, 8000) != old) {
                CHECK(0, "warm-up %lld, step %lld: %.17g, before schedules %.17g",
                      (long long)c.warmup, (long long)k, dm_lr_at(&c, k + 1, 8000), old);
                break;
            }
        }
    }
}

/* Adam's learning rate follows the schedule of its total_steps: step k + 1's value before its
 * k + 1-th update. */
static void test_adam_follows(void) {
    dm_optim_config c = make(DM_LR_COSINE, 3);
    dm_adam opt;
    CHECK(dm_adam_init(&opt, &c, 1, NULL) == DM_OK, "adam init");
    opt.total_steps = 20;
    float p = 0, g = 1;
    for (int64_t k = 0; k < 25; k++) {
        const double want = dm_lr_at(&c, k + 1, 20);
        CHECK(dm_adam_lr(&opt) == want, "Adam's lr before update %lld: %g, schedule's %g",
              (long long)k + 1, dm_adam_lr(&opt), want);
        dm_adam_step(&opt, &p, &g);
    }
    dm_adam_free(&opt);
}

static void refused(const dm_train_config *t, const char *needle, const char *what) {
    dm_error err = {0};
    const dm_status st = dm_train_config_check(t, &err);
    CHECK(st == DM_ERR_ARG && strstr(err.msg, needle), "%s: status %d, message '%s' (expected "
          "one naming '%s')", what, (int)st, err.msg, needle);
}

static void test_refusals(void) {
    dm_error err = {0};
    dm_lr_schedule s = DM_LR_LINEAR;
    CHECK(dm_lr_schedule_parse("cosine_annealing", &s, &err) == DM_ERR_ARG &&
              strstr(err.msg, "cosine_annealing") && strstr(err.msg, "cosine_with_restarts") &&
              s == DM_LR_LINEAR,
          "an unknown name: '%s'", err.msg);
    CHECK(dm_lr_schedule_parse("piecewise_constant", &s, &err) == DM_ERR_ARG &&
              strstr(err.msg, "not supported"),
          "piecewise_constant: '%s'", err.msg);
    CHECK(dm_lr_schedule_parse("", &s, &err) == DM_ERR_ARG, "an empty name");
    CHECK(dm_lr_schedule_parse(NULL, &s, &err) == DM_ERR_ARG, "NULL");
    CHECK(dm_lr_schedule_parse("Cosine", &s, &err) == DM_ERR_ARG, "names are case-sensitive");
    CHECK(dm_lr_schedule_parse("cosine_with", &s, &err) == DM_ERR_ARG, "a prefix");
    CHECK(dm_lr_schedule_parse("cosine-with-restarts", &s, &err) == DM_OK &&
              s == DM_LR_COSINE_WITH_RESTARTS,
          "a hyphen for an underscore: %s", err.msg);
    CHECK(strcmp(dm_lr_schedule_name((dm_lr_schedule)99), "unknown") == 0, "name of 99");

    dm_train_config t;
    dm_train_config_default(&t);
    t.steps = 1000;
    t.optim.warmup = 100;
    CHECK(dm_train_config_check(&t, &err) == DM_OK, "the defaults: %s", err.msg);
    t.optim.lr_schedule = (dm_lr_schedule)6;
    refused(&t, "unknown lr scheduler 6", "an out-of-range enum");
    t.optim.lr_schedule = DM_LR_COSINE;
    CHECK(dm_train_config_check(&t, &err) == DM_OK, "cosine: %s", err.msg);
    /* a decay of zero or negative length */
    t.steps = 100;
    refused(&t, "100 - 100 = 0 steps", "cosine over as many steps as its warm-up");
    t.steps = 50;
    refused(&t, "= -50 steps", "cosine over fewer steps than its warm-up");
    t.optim.lr_schedule = DM_LR_LINEAR;
    refused(&t, "lr scheduler linear decays", "linear over fewer steps than its warm-up");
    t.optim.lr_schedule = DM_LR_POLYNOMIAL;
    refused(&t, "lr scheduler polynomial decays", "polynomial likewise");
    t.optim.lr_schedule = DM_LR_COSINE_WITH_RESTARTS;
    refused(&t, "lr scheduler cosine_with_restarts decays", "restarts likewise");
    /* the schedules without a decay do not care */
    t.optim.lr_schedule = DM_LR_CONSTANT_WITH_WARMUP;
    CHECK(dm_train_config_check(&t, &err) == DM_OK, "constant_with_warmup, warm-up > steps: %s",
          err.msg);
    t.optim.lr_schedule = DM_LR_CONSTANT;
    CHECK(dm_train_config_check(&t, &err) == DM_OK, "constant: %s", err.msg);
    t.steps = 1000;
    t.optim.warmup = -1;
    refused(&t, "warmup must be >= 0", "a negative warm-up");
    t.optim.warmup = 100;
    t.optim.lr_schedule = DM_LR_COSINE_WITH_RESTARTS;
    t.optim.lr_num_cycles = 0;
    refused(&t, "num_cycles must be an integer >= 1 (got 0)", "0 cycles");
    t.optim.lr_num_cycles = -3;
    refused(&t, "num_cycles", "negative cycles");
    t.optim.lr_num_cycles = 1;
    t.optim.lr_schedule = DM_LR_POLYNOMIAL;
    t.optim.lr_power = 0;
    refused(&t, "lr power must be in (0, 1e6] (got 0)", "power 0");
    t.optim.lr_power = NAN;
    refused(&t, "lr power", "power NaN");
    t.optim.lr_power = 1;
    t.optim.lr_end = -1e-6;
    refused(&t, "lr_end must be >= 0", "a negative lr_end");
    t.optim.lr_end = INFINITY;
    refused(&t, "lr_end must be >= 0", "an infinite lr_end");
    t.optim.lr_end = t.optim.lr;
    refused(&t, "must be smaller than the initial lr", "lr_end = lr (diffusers' ValueError)");
    t.optim.lr_end = 2 * t.optim.lr;
    refused(&t, "must be smaller than the initial lr", "lr_end > lr");
    t.optim.lr_schedule = DM_LR_COSINE; /* only the polynomial compares lr_end with lr */
    CHECK(dm_train_config_check(&t, &err) == DM_OK, "cosine with lr_end > lr: %s", err.msg);
    t.optim.lr_end = 1e-7;
    /* gradient accumulation */
    t.batch = 64;
    t.grad_accum = 3;
    refused(&t, "gradient accumulation 3 does not divide the batch 64", "accumulation 3 of 64");
    t.grad_accum = 0;
    refused(&t, "gradient accumulation must be >= 1 (got 0)", "accumulation 0");
    t.grad_accum = 128;
    refused(&t, "gradient accumulation 128", "accumulation beyond the batch");
    t.grad_accum = 64;
    CHECK(dm_train_config_check(&t, &err) == DM_OK, "accumulation 64 of 64: %s", err.msg);
    CHECK(dm_train_config_check(NULL, &err) == DM_ERR_ARG, "NULL config");
}

/* config.json records the schedule and accumulation (diffusers' key names) and reads them back;
 * a checkpoint written before them reads as constant_with_warmup without accumulation; bad
 * values are refused naming the file and field. */
static void test_checkpoint_config(void) {
    dm_error err = {0};
    char dir[64];
    snprintf(dir, sizeof dir, "/tmp/dm_lr_schedule_XXXXXX");
    if (!mkdtemp(dir)) {
        CHECK(0, "mkdtemp");
        return;
    }
    char path[128];
    snprintf(path, sizeof path, "%s/config.json", dir);
    dm_checkpoint_config c;
    memset(&c, 0, sizeof c);
    dm_train_config_default(&c.train);
    c.train.mlp.dim = 2;
    c.norm.dim = 2;
    c.norm.std[0] = c.norm.std[1] = 1;
    c.data_n = 10;
    c.train.optim.lr_schedule = DM_LR_POLYNOMIAL;
    c.train.optim.lr_num_cycles = 4;
    c.train.optim.lr_power = 1.5;
    c.train.optim.lr_end = 3e-6;
    c.train.grad_accum = 8;
    CHECK(dm_checkpoint_config_write(path, &c, &err) == DM_OK, "write: %s", err.msg);
    dm_checkpoint_config r;
    CHECK(dm_checkpoint_config_read(path, &r, &err) == DM_OK, "read: %s", err.msg);
    CHECK(r.train.optim.lr_schedule == DM_LR_POLYNOMIAL && r.train.optim.lr_num_cycles == 4 &&
              r.train.optim.lr_power == 1.5 && r.train.optim.lr_end == 3e-6 &&
              r.train.grad_accum == 8,
          "read back: %s, %d, %g, %g, %lld", dm_lr_schedule_name(r.train.optim.lr_schedule),
          (int)r.train.optim.lr_num_cycles, r.train.optim.lr_power, r.train.optim.lr_end,
          (long long)r.train.grad_accum);

    /* edits of the written file: (key, replacement line, expected message or NULL = read) */
    FILE *f = fopen(path, "r");
    char text[16384];
    const size_t len = f ? fread(text, 1, sizeof text - 1, f) : 0;
    if (f) fclose(f);
    text[len] = 0;
    CHECK(strstr(text, "\"lr_scheduler\":\t\"polynomial\"") != NULL &&
              strstr(text, "\"gradient_accumulation_steps\":\t8") != NULL,
          "config.json names: %s", text);
    static const struct {
        const char *from, *to, *msg;
    } edits[] = {
        {"\"lr_scheduler\":\t\"polynomial\"", "\"lr_scheduler\":\t\"cosine_annealing\"",
         "training.lr_scheduler: unknown lr scheduler 'cosine_annealing'"},
        {"\"lr_scheduler\":\t\"polynomial\"", "\"lr_scheduler\":\t7",
         "\"training.lr_scheduler\" is not a string"},
        {"\"lr_num_cycles\":\t4", "\"lr_num_cycles\":\t0", "lr_num_cycles = 0"},
        {"\"lr_num_cycles\":\t4", "\"lr_num_cycles\":\t1e300", "lr_num_cycles"},
        {"\"lr_num_cycles\":\t4", "\"lr_num_cycles\":\t2.5", "must be an integer"},
        {"\"lr_power\":\t1.5", "\"lr_power\":\t-1", "lr_power = -1"},
        {"\"lr_end\":\t3e-06", "\"lr_end\":\t-3e-06", "lr_end = -3e-06"},
        {"\"gradient_accumulation_steps\":\t8", "\"gradient_accumulation_steps\":\t0",
         "gradient_accumulation_steps = 0"},
        {"\"gradient_accumulation_steps\":\t8", "\"gradient_accumulation_steps\":\t\"8\"",
         "gradient_accumulation_steps\" missing or not a number"},
    };
    for (size_t i = 0; i < sizeof edits / sizeof edits[0]; i++) {
        const char *at_ = strstr(text, edits[i].from);
        CHECK(at_ != NULL, "config.json has no %s", edits[i].from);
        if (!at_) continue;
        f = fopen(path, "w");
        fprintf(f, "%.*s%s%s", (int)(at_ - text), text, edits[i].to,
                at_ + strlen(edits[i].from));
        fclose(f);
        const dm_status st = dm_checkpoint_config_read(path, &r, &err);
        CHECK(st == DM_ERR_FORMAT && strstr(err.msg, edits[i].msg) && strstr(err.msg, path),
              "%s: status %d, '%s'", edits[i].to, (int)st, err.msg);
    }
    /* an older checkpoint: none of the keys */
    static const char *const keys[] = {"lr_scheduler", "lr_num_cycles", "lr_power", "lr_end",
                                       "gradient_accumulation_steps"};
    char old[16384];
    strcpy(old, text);
    for (size_t k = 0; k < 5; k++) {
        char key[64];
        snprintf(key, sizeof key, "\"%s\":", keys[k]);
        char *p = strstr(old, key);
        if (!p) continue;
        char *eol = strchr(p, '\n');
        /* drop the line "\t\t\"key\":\tvalue,\n" */
        while (p > old && p[-1] == '\t') p--;
        memmove(p, eol + 1, strlen(eol + 1) + 1);
    }
    f = fopen(path, "w");
    fputs(old, f);
    fclose(f);
    CHECK(dm_checkpoint_config_read(path, &r, &err) == DM_OK, "an older config: %s", err.msg);
    CHECK(r.train.optim.lr_schedule == DM_LR_CONSTANT_WITH_WARMUP &&
              r.train.optim.lr_num_cycles == 1 && r.train.optim.lr_power == 1.0 &&
              r.train.optim.lr_end == 1e-7 && r.train.grad_accum == 1,
          "an older config reads as %s, accumulation %lld",
          dm_lr_schedule_name(r.train.optim.lr_schedule), (long long)r.train.grad_accum);
    remove(path);
    rmdir(dir);
}

int main(void) {
    test_closed_forms();
    test_against_diffusers();
    test_default_unchanged();
    test_adam_follows();
    test_refusals();
    test_checkpoint_config();
    return tu_finish("test_lr_schedule");
}
