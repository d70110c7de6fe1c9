/* diffusion eval for images, through an evaluation classifier trained by the project:
 *   accuracy     the classifier on labelled data, or how often samples drawn for class k are
 *                classified as k;
 *   fid          FID-FMNIST: the Frechet distance between the classifier's pooled features of
 *                the samples and of the reference images (not comparable with Inception FID);
 *   prec-recall  improved precision and recall (k-nearest-neighbour balls) in the same features;
 *   guidance     all three for class-balanced samples at each guidance scale, for
 *                classifier-free and classifier guidance.
 * Each sample figure comes with its floor: the same figure for as many real training images. */
#include "eval_images.h"

#include "common.h"
#include "images.h"
#include "progress.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The evaluation classifier's pooled features of n images (n, F), in chunks. */
static dm_status features_of(dm_classifier *c, const float *x, int64_t n, int64_t dim,
                             float *feats, dm_error *err) {
    enum { CHUNK = 256 };
    const int64_t K = dm_classifier_num_classes(c), F = dm_classifier_feature_dim(c);
    float *logits = malloc((size_t)(CHUNK * K) * sizeof *logits);
    if (!logits) return dm_error_set(err, DM_ERR_NOMEM, "out of memory");
    dm_status st = DM_OK;
    for (int64_t s = 0; s < n && !st; s += CHUNK) {
        const int64_t B = n - s < CHUNK ? n - s : CHUNK;
        st = dm_classifier_forward(c, logits, feats + s * F, x + s * dim, NULL, B, err);
    }
    free(logits);
    return st;
}

/* Fraction of n images whose predicted class is want[i]. */
static dm_status class_accuracy(dm_classifier *c, const float *x, const int32_t *want, int64_t n,
                                int64_t dim, double *acc, dm_error *err) {
    dm_dataset d = {.x = (float *)x, .n = n, .dim = dim, .labels = (int32_t *)want,
                    .num_classes = dm_classifier_num_classes(c)};
    return dm_classifier_accuracy(c, &d, NULL, acc, err);
}

typedef struct {
    double accuracy; /* < 0: not measured */
    double fid, precision, recall;
} quality;

/* The reference: features and statistics of the real images, computed once. */
typedef struct {
    int64_t n, F;
    float *feats;       /* (n, F) */
    double *mean, *cov; /* (F), (F, F) */
} reference;

static void reference_free(reference *r) {
    free(r->feats), free(r->mean), free(r->cov);
}

static dm_status reference_init(reference *r, dm_classifier *c, const dm_dataset *data,
                                dm_error *err) {
    memset(r, 0, sizeof *r);
    r->n = data->n;
    r->F = dm_classifier_feature_dim(c);
    r->feats = malloc((size_t)(r->n * r->F) * sizeof *r->feats);
    r->mean = malloc((size_t)r->F * sizeof *r->mean);
    r->cov = malloc((size_t)(r->F * r->F) * sizeof *r->cov);
    if (!r->feats || !r->mean || !r->cov)
        return dm_error_set(err, DM_ERR_NOMEM, "out of memory for reference features");
    dm_status st = features_of(c, data->x, data->n, data->dim, r->feats, err);
    if (!st) st = dm_feature_stats(r->feats, r->n, r->F, r->mean, r->cov, err);
    return st;
}

/* FID and precision/recall (k neighbours; against the first n_pr reference rows) of n images. */
static dm_status judge(dm_classifier *c, const reference *ref, const float *x, int64_t n,
                       int64_t dim, int k, quality *q, dm_error *err) {
    const int64_t F = ref->F;
    float *feats = malloc((size_t)(n * F) * sizeof *feats);
    double *mean = malloc((size_t)F * sizeof *mean), *cov = malloc((size_t)(F * F) * sizeof *cov);
    dm_status st = DM_OK;
    if (!feats || !mean || !cov) st = dm_error_set(err, DM_ERR_NOMEM, "out of memory");
    if (!st) st = features_of(c, x, n, dim, feats, err);
    if (!st) st = dm_feature_stats(feats, n, F, mean, cov, err);
    if (!st) st = dm_frechet_distance(mean, cov, ref->mean, ref->cov, F, &q->fid, err);
    const int64_t n_pr = n < ref->n ? n : ref->n;
    if (!st)
        st = dm_precision_recall(ref->feats, n_pr, feats, n, F, k, &q->precision, &q->recall,
                                 err);
    free(feats), free(mean), free(cov);
    return st;
}

/* n random training images: the floor of every figure (real images judged as samples are). */
static dm_status real_draw(dm_image_set *out, const char *name, int64_t c, int64_t size,
                           int64_t n, uint64_t seed, dm_error *err) {
    dm_image_set all;
    dm_status st = cli_load_images(&all, name, c, size, 0, err);
    if (st) return st;
    if (n > all.data.n) n = all.data.n;
    if ((st = dm_image_set_init(out, n, all.c, all.h, all.w, all.data.labels != NULL, err))) {
        dm_image_set_free(&all);
        return st;
    }
    if (all.data.labels) out->data.num_classes = all.data.num_classes;
    int32_t *perm = malloc((size_t)all.data.n * sizeof *perm);
    if (!perm) {
        dm_image_set_free(&all);
        return dm_error_set(err, DM_ERR_NOMEM, "out of memory");
    }
    cli_partial_shuffle(perm, all.data.n, n, seed, 9);
    const int64_t D = all.data.dim;
    for (int64_t i = 0; i < n; i++) {
        memcpy(out->data.x + i * D, all.data.x + (int64_t)perm[i] * D, (size_t)D * sizeof(float));
        if (all.data.labels) out->data.labels[i] = all.data.labels[perm[i]];
    }
    free(perm);
    dm_image_set_free(&all);
    return DM_OK;
}

/* Draws n samples of p with labels (or none) under g. */
static dm_status draw(dm_pipeline *p, const cli_image_eval_args *a, const dm_guidance *g,
                      float *x, double *seconds, dm_error *err) {
    dm_sample_options so;
    dm_sample_options_default(&so);
    so.seed = a->seed;
    so.steps = a->steps;
    so.clip_x0 = 1;
    so.var = dm_pipeline_train_config(p)->var;
    dm_status st = DM_OK;
    if (strcmp(a->sampler, "scheduler") == 0) {
        /* a diffusers folder's own scheduler */
        if (!(so.scheduler = dm_pipeline_scheduler(p)))
            return dm_error_set(err, DM_ERR_ARG, "--sampler scheduler needs a diffusers folder "
                                "(%s is a diffusion.c checkpoint)", a->model);
    } else if ((st = dm_sampler_parse(a->sampler, &so.sampler, err))) {
        return st;
    }
    const double t0 = cli_now();
    st = dm_pipeline_sample_guided(p, x, a->n, &so, g, err);
    *seconds = cli_now() - t0;
    return st;
}

static void add_quality(cJSON *o, const quality *q) {
    if (q->accuracy >= 0) cJSON_AddNumberToObject(o, "accuracy", q->accuracy);
    cJSON_AddNumberToObject(o, "fid_fmnist", q->fid);
    cJSON_AddNumberToObject(o, "precision", q->precision);
    cJSON_AddNumberToObject(o, "recall", q->recall);
}

/* Parses a comma-separated list of up to cap non-negative numbers; -1 for anything else, more
 * items than cap included (never cut short). */
static int parse_list(const char *s, double *v, int cap) {
    int n = 0;
    while (s && *s) {
        if (n == cap) return -1;
        char *end;
        v[n] = strtod(s, &end);
        if (end == s || !isfinite(v[n]) || v[n] < 0) return -1;
        n++;
        s = *end == ',' ? end + 1 : end;
        if ((*end && *end != ',') || (*end == ',' && !end[1])) return -1;
    }
    return n;
}

/* One PNG per kind of guidance: class accuracy and FID-FMNIST against the scale (the floor's
 * FID dashed); the classifier's curve goes to PATH with "-classifier" before ".png". */
static dm_status plot_sweeps(const char *path, const double *scales, int n_scales,
                             const double *gammas, int n_gammas, const double *acc,
                             const double *fid, const quality *floor, dm_error *err) {
    const char *names[2] = {"class accuracy", "FID-FMNIST"};
    double y[2 * 32];
    dm_status st = DM_OK;
    for (int kind = 0; kind < 2 && !st; kind++) {
        const int n = kind ? n_gammas : n_scales, first = kind ? n_scales : 0;
        if (n < 1) continue;
        for (int i = 0; i < n; i++) y[i] = acc[first + i], y[n + i] = fid[first + i];
        char file[4200];
        const size_t len = strlen(path);
        if (kind && len > 4 && strcmp(path + len - 4, ".png") == 0)
            snprintf(file, sizeof file, "%.*s-classifier.png", (int)(len - 4), path);
        else
            snprintf(file, sizeof file, kind ? "%s-classifier" : "%s", path);
        st = dm_plot_curves_linear_x(file, kind ? gammas : scales, n, y, names, 2,
                                     kind ? "classifier guidance scale gamma"
                                          : "classifier-free guidance scale w",
                                     "accuracy; FID-FMNIST (floor dashed)", floor->fid, err);
    }
    return st;
}

int cli_eval_images(const cli_image_eval_args *a) {
    dm_error err = {0};
    dm_classifier *clf = NULL, *guide = NULL;
    dm_pipeline *p = NULL;
    dm_image_set test = {0}, real = {0}, samples = {0};
    reference ref = {0};
    int32_t *labels = NULL;
    float *x = NULL;
    int status = 1;
    if (dm_classifier_load(&clf, a->classifier, &err)) goto done;
    const dm_unet_config *net = &dm_classifier_get_config(clf)->net;
    const int64_t C = net->in_channels, S = net->sample_size, D = C * S * S;
    if (dm_classifier_get_config(clf)->noisy)
        fprintf(stderr, "note: %s is a noisy classifier; evaluation classifiers are trained on "
                        "clean images (train-classifier without --noisy)\n", cli_safe(a->classifier));
    const char *ref_name = a->data ? a->data : "fashion-mnist-test";
    if (cli_load_images(&test, ref_name, C, S, 0, &err)) goto done;

    /* the classifier alone on labelled data */
    if (strcmp(a->metric, "accuracy") == 0 && !a->model && !a->samples) {
        double acc;
        if (!test.data.labels) {
            dm_error_set(&err, DM_ERR_ARG, "%s has no labels", ref_name);
            goto done;
        }
        if (dm_classifier_accuracy(clf, &test.data, NULL, &acc, &err)) goto done;
        if (a->json) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "data", ref_name);
            cJSON_AddNumberToObject(o, "n", (double)test.data.n);
            cJSON_AddNumberToObject(o, "accuracy", acc);
            cli_print_json(o);
        } else {
            printf("classifier %s on %s (%lld images): accuracy %.4f\n", cli_safe(a->classifier),
                   cli_safe(ref_name),
                   (long long)test.data.n, acc);
        }
        status = 0;
        goto done;
    }
    if (!a->model == !a->samples) {
        dm_error_set(&err, DM_ERR_ARG, "give exactly one of --model DIR and --samples FILE");
        goto done;
    }
    if (reference_init(&ref, clf, &test.data, &err)) goto done;
    int64_t n = a->n;
    if (a->samples) {
        if (dm_image_npy_load(&samples, a->samples, &err)) goto done;
        if (samples.c != C || samples.h != S || samples.w != S) {
            dm_error_set(&err, DM_ERR_MISMATCH, "%s: images of %lld x %lld x %lld, the "
                         "classifier takes %lld x %lld x %lld", a->samples, (long long)samples.c,
                         (long long)samples.h, (long long)samples.w, (long long)C, (long long)S,
                         (long long)S);
            goto done;
        }
        n = samples.data.n;
    } else {
        if (dm_pipeline_load(&p, a->model, &err)) goto done;
        int64_t mc, mh, mw;
        if (!dm_model_image_shape(dm_pipeline_model(p), &mc, &mh, &mw) || mc != C || mh != S) {
            dm_error_set(&err, DM_ERR_MISMATCH, "%s does not make the %lld x %lld x %lld images "
                         "the classifier takes", a->model, (long long)C, (long long)S,
                         (long long)S);
            goto done;
        }
        if (a->guide_classifier &&
            (dm_classifier_load(&guide, a->guide_classifier, &err) ||
             dm_classifier_check_guidance(guide, dm_pipeline_schedule(p), mc, mh, mw, &err)))
            goto done;
    }
    if (n < a->k + 2) {
        dm_error_set(&err, DM_ERR_ARG, "--n %lld: need at least %d samples", (long long)n,
                     a->k + 2);
        goto done;
    }
    /* the classes asked for: every class in turn, for a class-balanced set */
    const int conditional = p && dm_pipeline_train_config(p)->num_classes > 0;
    const int want_classes = (p && (conditional || guide)) || (a->samples && a->class_arg);
    if (want_classes) {
        int classes;
        const char *arg = a->class_arg ? a->class_arg : "all";
        /* drawn samples: the model's classes (or the guiding classifier's); --samples: those
         * they were drawn for (as sample --class K|all), among the evaluation classifier's */
        if (cli_class_labels(&labels, &classes, arg, n, p, p ? guide : clf, &err)) goto done;
    }
    if (real_draw(&real, a->real ? a->real : "fashion-mnist", C, S, n, a->seed, &err)) goto done;
    if (!(x = malloc((size_t)(n * D) * sizeof *x))) {
        dm_error_set(&err, DM_ERR_NOMEM, "out of memory for %lld samples", (long long)n);
        goto done;
    }
    quality floor = {.accuracy = -1};
    if (judge(clf, &ref, real.data.x, real.data.n, D, a->k, &floor, &err)) goto done;
    if (real.data.labels &&
        class_accuracy(clf, real.data.x, real.data.labels, real.data.n, D, &floor.accuracy, &err))
        goto done;

    /* the rows: one sample set, or one per guidance scale */
    double scales[32], gammas[32];
    int n_scales = 1, n_gammas = 0;
    const int sweep = strcmp(a->metric, "guidance") == 0;
    scales[0] = a->cfg_scale;
    if (sweep) {
        if (!p || !want_classes) {
            dm_error_set(&err, DM_ERR_ARG, "--metric guidance needs --model of a "
                         "class-conditional model (or --guide-classifier)");
            goto done;
        }
        n_scales = conditional ? parse_list(a->scales, scales, 32) : 0;
        n_gammas = guide ? parse_list(a->gammas, gammas, 32) : 0;
        if (n_scales < 0 || n_gammas < 0) {
            dm_error_set(&err, DM_ERR_ARG, "--scales and --gammas take up to 32 comma-separated "
                         "numbers >= 0");
            goto done;
        }
    }
    cJSON *rows = cJSON_CreateArray();
    double curve_acc[64], curve_fid[64]; /* per row, for --plot */
    if (!a->json) {
        printf("FID-FMNIST: Frechet distance in the %lld pooled features of %s (not comparable "
               "with Inception FID)\nreference: %lld images of %s; floor: %lld real images of %s; "
               "precision/recall with k = %d\n",
               (long long)ref.F, cli_safe(a->classifier), (long long)ref.n, cli_safe(ref_name),
               (long long)real.data.n, cli_safe(a->real ? a->real : "fashion-mnist"), a->k);
        printf("  %-26s %9s %11s %10s %8s %8s\n", "", "accuracy", "FID-FMNIST", "precision",
               "recall", "seconds");
        printf("  %-26s %9.4f %11.3f %10.4f %8.4f %8s\n", "real images (floor)",
               floor.accuracy, floor.fid, floor.precision, floor.recall, "");
    }
    for (int r = 0; r < n_scales + n_gammas; r++) {
        quality q = {.accuracy = -1};
        double seconds = 0;
        char name[64];
        const float *imgs = x;
        if (p) {
            dm_guidance g;
            dm_guidance_default(&g);
            g.labels = labels;
            if (r < n_scales) {
                g.cfg_scale = scales[r];
                if (!sweep && guide) {
                    g.classifier = guide;
                    g.classifier_scale = a->classifier_scale;
                }
                snprintf(name, sizeof name, sweep ? "classifier-free w = %g" : "samples (w = %g)",
                         scales[r]);
            } else {
                g.classifier = guide;
                g.classifier_scale = gammas[r - n_scales];
                g.unconditional_model = 1; /* classifier guidance alone */
                snprintf(name, sizeof name, "classifier gamma = %g", gammas[r - n_scales]);
            }
            if (draw(p, a, &g, x, &seconds, &err)) goto done_rows;
        } else {
            imgs = samples.data.x;
            snprintf(name, sizeof name, "%s", a->samples);
        }
        if (judge(clf, &ref, imgs, n, D, a->k, &q, &err)) goto done_rows;
        if (labels && class_accuracy(clf, imgs, labels, n, D, &q.accuracy, &err)) goto done_rows;
        curve_acc[r] = q.accuracy;
        curve_fid[r] = q.fid;
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "samples", name);
        if (p && sweep) {
            cJSON_AddStringToObject(o, "guidance", r < n_scales ? "classifier-free" : "classifier");
            cJSON_AddNumberToObject(o, "scale", r < n_scales ? scales[r] : gammas[r - n_scales]);
        }
        add_quality(o, &q);
        if (p) cJSON_AddNumberToObject(o, "seconds", seconds);
        cJSON_AddItemToArray(rows, o);
        if (!a->json) {
            char acc[16] = "-";
            if (q.accuracy >= 0) snprintf(acc, sizeof acc, "%.4f", q.accuracy);
            printf("  %-26s %9s %11.3f %10.4f %8.4f %8.1f\n", cli_safe(name), acc, q.fid,
                   q.precision, q.recall, seconds);
            fflush(stdout);
        }
    }
    if (sweep && a->plot && plot_sweeps(a->plot, scales, n_scales, gammas, n_gammas, curve_acc,
                                        curve_fid, &floor, &err))
        goto done_rows;
    if (a->json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "metric", a->metric);
        cJSON_AddStringToObject(o, "classifier", a->classifier);
        cJSON_AddStringToObject(o, "reference", ref_name);
        cJSON_AddNumberToObject(o, "n", (double)n);
        cJSON_AddNumberToObject(o, "k", a->k);
        if (p) {
            cJSON_AddStringToObject(o, "sampler", a->sampler);
            cJSON_AddNumberToObject(o, "steps", a->steps);
        }
        cJSON *fo = cJSON_CreateObject();
        add_quality(fo, &floor);
        cJSON_AddItemToObject(o, "floor", fo);
        cJSON_AddItemToObject(o, "rows", rows);
        rows = NULL;
        cli_print_json(o);
    }
    status = 0;
done_rows:
    cJSON_Delete(rows);
done:
    if (status) cli_fail(&err);
    free(x);
    free(labels);
    reference_free(&ref);
    dm_image_set_free(&test);
    dm_image_set_free(&real);
    dm_image_set_free(&samples);
    dm_pipeline_free(p);
    dm_classifier_free(guide);
    dm_classifier_free(clf);
    return status;
}
