/* Continuous-time training (dm_train_config.sde_training): denoising score matching on the VP,
 * sub-VP and VE SDEs, checked on the library against closed forms.
 * - Gaussian data N(mu, S): an MLP trained on each process gives, through the pipeline, an ODE
 *   likelihood of fresh points equal to their exact NLL (the data's density; VE's smoothing by
 *   sigma_min is 1e-4 of the variance) and samples whose mean and covariance are mu and S.
 *   A model read wrongly (the input scale, the time input or the score's sign or scale) fails.
 * - A VE run's automatic sigma_max is the data's largest pairwise distance.
 * - Resuming continues bit for bit; gradient accumulation gives the step of the whole batch.
 * - A VP run's schedule is the SDE's linear discretisation and its model takes the discrete
 *   samplers; a VE model refuses them; the checkpoint records the SDE.
 * - Options the objective cannot honour are refused with a message. */
#include "diffusion.h"
#include "gaussian_oracle.h"
#include "test_util.h"

static const double MU[2] = {0.7, -0.4};
static const double S[2][2] = {{1.3, 0.5}, {0.5, 0.6}};

static void config(dm_train_config *c, dm_sde_kind kind, int64_t steps, int64_t batch) {
    dm_train_config_default(c);
    c->mlp.dim = 2;
    c->steps = steps;
    c->batch = batch;
    c->seed = 1;
    c->optim.warmup = 100;
    c->optim.ema_decay = 0.995;
    c->sde_training = 1;
    dm_sde_default(&c->sde, kind);
    if (kind == DM_SDE_VE) c->sde.sigma_max = 0; /* from the data */
}

static double exact_nll(const float *x) {
    const double det = S[0][0] * S[1][1] - S[0][1] * S[1][0];
    const double d0 = x[0] - MU[0], d1 = x[1] - MU[1];
    const double q = (S[1][1] * d0 * d0 - 2 * S[0][1] * d0 * d1 + S[0][0] * d1 * d1) / det;
    return 0.5 * q + 0.5 * log(4.0 * M_PI * M_PI * det);
}

/* Trains on N(mu, S) and checks the ODE likelihood and the samples' moments. */
static void check_gaussian(dm_sde_kind kind) {
    const char *name = dm_sde_kind_name(kind);
    dm_error err = {0};
    const int64_t n = 20000, held = 1000, ns = 3000;
    dm_dataset data = {0};
    dm_dataset_init(&data, n, 2, &err);
    gauss_draw(MU, S, data.x, n, 11, 1);
    dm_train_config c;
    config(&c, kind, 2500, 256);
    dm_trainer *tr = NULL;
    CHECK(dm_trainer_create(&tr, &c, &data, &err) == DM_OK, "%s: %s", name, err.msg);
    if (!tr) {
        dm_dataset_free(&data);
        return;
    }
    double loss = 0;
    for (int64_t s = 0; s < c.steps; s++)
        if (dm_trainer_step(tr, &loss, &err)) {
            CHECK(0, "%s step %lld: %s", name, (long long)s, err.msg);
            break;
        }
    dm_pipeline *p = NULL;
    CHECK(dm_trainer_pipeline(tr, &p, &err) == DM_OK, "%s pipeline: %s", name, err.msg);
    if (p) {
        /* the ODE likelihood of fresh points against their exact NLL, paired */
        dm_dataset test = {0};
        dm_dataset_init(&test, held, 2, &err);
        gauss_draw(MU, S, test.x, held, 12, 1);
        double *per = calloc((size_t)held, sizeof *per);
        dm_ode_nll_options o;
        dm_ode_nll_options_default(&o);
        o.per_example = per;
        dm_ode_nll_report r;
        CHECK(dm_pipeline_ode_nll(p, NULL, &test, &o, &r, &err) == DM_OK, "%s nll: %s", name,
              err.msg);
        double sum = 0, sq = 0;
        for (int64_t i = 0; i < held; i++) {
            const double d = per[i] - exact_nll(test.x + 2 * i);
            sum += d, sq += d * d;
        }
        const double mean = sum / held, se = sqrt((sq / held - mean * mean) / held);
        printf("%s: loss %.4f, ODE nll - exact %.4f +- %.4f nats (exact mean %.4f), %lld "
               "evaluations\n", name, loss, mean, se, r.nll - mean, (long long)r.score_evals);
        CHECK(fabs(mean) < 0.03 + 3 * se, "%s: the ODE likelihood is %.4f +- %.4f nats from the "
              "exact NLL", name, mean, se);
        free(per);
        dm_dataset_free(&test);
        /* the samples' moments */
        float *x = malloc((size_t)(2 * ns) * sizeof *x);
        dm_sde_sample_options so;
        dm_sde_sample_options_default(&so);
        so.sampler = DM_SDE_ODE_RK45;
        so.seed = 3;
        CHECK(dm_pipeline_sde_sample(p, x, ns, &so, NULL, &err) == DM_OK, "%s sample: %s", name,
              err.msg);
        double m[2] = {0, 0}, cv[2][2] = {{0, 0}, {0, 0}};
        for (int64_t i = 0; i < ns; i++)
            for (int a = 0; a < 2; a++) m[a] += x[2 * i + a] / (double)ns;
        for (int64_t i = 0; i < ns; i++)
            for (int a = 0; a < 2; a++)
                for (int b = 0; b < 2; b++)
                    cv[a][b] += (x[2 * i + a] - m[a]) * (x[2 * i + b] - m[b]) / (double)(ns - 1);
        printf("%s: sample mean (%.3f, %.3f), covariance ((%.3f, %.3f), (%.3f, %.3f))\n", name,
               m[0], m[1], cv[0][0], cv[0][1], cv[1][0], cv[1][1]);
        /* sampling error: about 0.02 for the means, 0.03 for the covariances at 3000 samples */
        for (int a = 0; a < 2; a++) {
            CHECK_CLOSE(m[a], MU[a], 0.08, 0, name);
            for (int b = 0; b < 2; b++) CHECK_CLOSE(cv[a][b], S[a][b], 0.1, 0.08, name);
        }
        free(x);
    }
    dm_pipeline_free(p);
    dm_trainer_free(tr);
    dm_dataset_free(&data);
}

static void weights_of(dm_trainer *tr, float **w, size_t *n) {
    dm_model *m = dm_trainer_model(tr);
    *n = dm_model_num_params(m);
    *w = malloc(*n * sizeof **w);
    memcpy(*w, dm_model_params(m), *n * sizeof **w);
}

static void run_steps(dm_trainer *tr, int64_t k, dm_error *err) {
    for (int64_t s = 0; s < k; s++)
        if (dm_trainer_step(tr, NULL, err)) {
            CHECK(0, "step: %s", err->msg);
            return;
        }
}

/* VE (its sigma_max from the data, saved and read back): 10 + 10 steps with a save between
 * equal 20 steps; accumulation 2 equals accumulation 1. */
static void check_resume_and_accumulation(void) {
    dm_error err = {0};
    dm_dataset data = {0};
    dm_dataset_init(&data, 600, 2, &err);
    gauss_draw(MU, S, data.x, 600, 21, 1);
    dm_train_config c;
    config(&c, DM_SDE_VE, 20, 64);
    dm_trainer *a = NULL, *b = NULL, *acc = NULL;
    CHECK(dm_trainer_create(&a, &c, &data, &err) == DM_OK, "%s", err.msg);
    if (!a) return;
    /* the automatic sigma_max: the largest distance between two of the standardised points */
    dm_dataset std = {0};
    dm_dataset_init(&std, data.n, 2, &err);
    memcpy(std.x, data.x, (size_t)(2 * data.n) * sizeof(float));
    dm_normalizer nz;
    dm_normalizer_fit(&nz, &std, &err);
    dm_normalizer_apply(&nz, std.x, std.n);
    double want = 0;
    dm_sde_ve_sigma_max(std.x, std.n, 2, 0, 0, &want, &err);
    /* (to the 15 digits config.json keeps) */
    CHECK_CLOSE(dm_trainer_config(a)->sde.sigma_max, want, 0, 1e-14, "automatic sigma_max");
    dm_dataset_free(&std);

    run_steps(a, 10, &err);
    CHECK(tu_tmpdir_make("dsm") == 0, "tmpdir");
    char dir[128];
    snprintf(dir, sizeof dir, "%s/ckpt", tu_tmpdir());
    CHECK(dm_trainer_save(a, dir, &err) == DM_OK, "save: %s", err.msg);
    run_steps(a, 10, &err);
    CHECK(dm_trainer_resume(&b, dir, &data, 0, &err) == DM_OK, "resume: %s", err.msg);
    if (b) {
        CHECK(dm_trainer_config(b)->sde_training &&
                  dm_trainer_config(b)->sde.kind == DM_SDE_VE &&
                  dm_trainer_config(b)->sde.sigma_max == dm_trainer_config(a)->sde.sigma_max,
              "the resumed run's SDE: %d %s sigma_max %.17g", dm_trainer_config(b)->sde_training,
              dm_sde_kind_name(dm_trainer_config(b)->sde.kind),
              dm_trainer_config(b)->sde.sigma_max);
        run_steps(b, 10, &err);
        float *wa, *wb;
        size_t na, nb;
        weights_of(a, &wa, &na);
        weights_of(b, &wb, &nb);
        CHECK(na == nb && memcmp(wa, wb, na * sizeof *wa) == 0,
              "10 + 10 steps resumed differ from 20 steps");
        free(wa), free(wb);
    }
    /* the pipeline of the saved checkpoint is the VE model: no discrete chain */
    dm_pipeline *p = NULL;
    CHECK(dm_pipeline_load(&p, dir, &err) == DM_OK, "load: %s", err.msg);
    if (p) {
        const dm_train_config *t = dm_pipeline_train_config(p);
        CHECK(t->sde_training && t->sde.kind == DM_SDE_VE && t->sde.sigma_min == 0.01 &&
                  t->sde.eps == 1e-5,
              "the checkpoint's SDE: %d %s", t->sde_training, dm_sde_kind_name(t->sde.kind));
        float x[8];
        CHECK(dm_pipeline_sample(p, x, 4, NULL, &err) == DM_ERR_ARG &&
                  strstr(err.msg, "no discrete chain") && strstr(err.msg, "--sde-sampler"),
              "a VE model's discrete sampling: %s", err.msg);
        dm_pipeline_free(p);
    }
    /* accumulation: the same draws, the batch in two halves */
    c.grad_accum = 2;
    CHECK(dm_trainer_create(&acc, &c, &data, &err) == DM_OK, "%s", err.msg);
    dm_trainer *one = NULL;
    c.grad_accum = 1;
    CHECK(dm_trainer_create(&one, &c, &data, &err) == DM_OK, "%s", err.msg);
    if (acc && one) {
        run_steps(acc, 5, &err);
        run_steps(one, 5, &err);
        float *w1, *w2;
        size_t n1, n2;
        weights_of(one, &w1, &n1);
        weights_of(acc, &w2, &n2);
        double maxd = 0, maxw = 0;
        for (size_t i = 0; i < n1; i++) {
            maxd = fmax(maxd, fabs((double)w1[i] - w2[i]));
            maxw = fmax(maxw, fabs((double)w1[i]));
        }
        CHECK(maxd <= 1e-5 * maxw, "accumulation 2 against 1 after 5 steps: %.3g (weights "
              "up to %.3g)", maxd, maxw);
        free(w1), free(w2);
    }
    dm_trainer_free(one);
    dm_trainer_free(acc);
    dm_trainer_free(a);
    dm_trainer_free(b);
    dm_dataset_free(&data);
}

/* VP: the schedule becomes the SDE's linear discretisation, and its model samples with DDIM. */
static void check_vp_discretisation(void) {
    dm_error err = {0};
    dm_dataset data = {0};
    dm_dataset_init(&data, 200, 2, &err);
    gauss_draw(MU, S, data.x, 200, 31, 1);
    dm_train_config c;
    config(&c, DM_SDE_VP, 5, 32);
    c.sde.beta_max = 15;
    c.schedule.T = 500;
    dm_trainer *tr = NULL;
    CHECK(dm_trainer_create(&tr, &c, &data, &err) == DM_OK, "%s", err.msg);
    if (!tr) return;
    const dm_schedule_config *s = &dm_trainer_config(tr)->schedule;
    CHECK(s->kind == DM_SCHEDULE_LINEAR && fabs(s->beta_start - 0.1 / 500) < 1e-15 &&
              fabs(s->beta_end - 15.0 / 500) < 1e-15,
          "the VP run's schedule: %s %g .. %g", dm_schedule_kind_name(s->kind), s->beta_start,
          s->beta_end);
    run_steps(tr, 5, &err);
    dm_pipeline *p = NULL;
    CHECK(dm_trainer_pipeline(tr, &p, &err) == DM_OK, "%s", err.msg);
    if (p) {
        dm_sample_options so;
        dm_sample_options_default(&so);
        so.sampler = DM_SAMPLER_DDIM;
        so.steps = 10;
        float x[8];
        CHECK(dm_pipeline_sample(p, x, 4, &so, &err) == DM_OK, "VP model, DDIM: %s", err.msg);
        dm_pipeline_free(p);
    }
    dm_trainer_free(tr);
    dm_dataset_free(&data);
}

static void refused(void (*edit)(dm_train_config *), const char *want, const char *what) {
    dm_train_config c;
    config(&c, DM_SDE_VE, 10, 8);
    edit(&c);
    dm_error err = {0};
    CHECK(dm_train_config_check(&c, &err) == DM_ERR_ARG && strstr(err.msg, want),
          "%s: expected a refusal naming '%s', got '%s'", what, want, err.msg);
}
static void e_loss(dm_train_config *c) { c->loss = DM_LOSS_VLB; }
static void e_pred(dm_train_config *c) { c->prediction = DM_PRED_V; }
static void e_imp(dm_train_config *c) { c->timesteps = DM_TIME_IMPORTANCE; }
static void e_sched(dm_train_config *c) { c->schedule.kind = DM_SCHEDULE_COSINE; }
static void e_sigma(dm_train_config *c) { c->sde.sigma_min = 2, c->sde.sigma_max = 1; }
static void e_var(dm_train_config *c) { c->var = DM_VAR_LEARNED; }
static void e_kind(dm_train_config *c) { c->sde.kind = (dm_sde_kind)7; }

int main(void) {
    dm_set_num_threads(2);
    check_gaussian(DM_SDE_VP);
    check_gaussian(DM_SDE_SUBVP);
    check_gaussian(DM_SDE_VE);
    check_resume_and_accumulation();
    check_vp_discretisation();
    refused(e_loss, "loss simple", "loss vlb");
    refused(e_pred, "prediction epsilon", "prediction v");
    refused(e_imp, "t-sampling uniform", "importance sampling");
    refused(e_sched, "leave it at linear", "schedule cosine");
    refused(e_sigma, "sigma_max", "sigma_min > sigma_max");
    refused(e_var, "variance beta", "learned variance");
    refused(e_kind, "allowed: vp, subvp, ve", "unknown SDE");
    return tu_finish("test_dsm");
}
