/* diffusion/guidance.h: classifiers and guidance.
 * Part of the public API of libdiffusion; <diffusion.h> includes every part. */
#pragma once

#include "core.h"
#include "sampling.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------------------------ */
/* Classifiers and guidance                                                                   */

/* An image classifier p_phi(y | x_t, t): the UNet's encoder (dm_unet_config.classifier_classes)
 * trained with cross-entropy, on noisy inputs x_t at t ~ U{0..T-1} of a diffusion schedule (a
 * noise-conditioned classifier, for classifier guidance) or on clean images at t = 0 (an
 * evaluation classifier, whose pooled features feed FID-FMNIST and precision/recall). */
typedef struct {
    dm_unet_config net;     /* an encoder classifier: "classifier-28" */
    int noisy;              /* 1: train on x_t of `schedule` (guidance); 0: on clean x_0 */
    dm_schedule_config schedule; /* the diffusion model's schedule (noisy only) */
    dm_optim_config optim;  /* Adam lr 1e-3, warm-up 100, clip 1, EMA 0.999 */
    int64_t steps;          /* 2000 */
    int64_t batch;          /* 128 */
    uint64_t seed;          /* 0 */
    int hflip;              /* mirror drawn images with probability 1/2: 0 */
} dm_classifier_config;

DM_API void dm_classifier_config_default(dm_classifier_config *cfg);

/* Called every step with the mean cross-entropy; a non-zero return stops training early (the
 * weights so far are still saved). */
typedef int (*dm_classifier_progress)(void *ctx, int64_t step, int64_t steps, double loss);

/* Trains on labelled images (data->labels in 0..net.classifier_classes-1, rows c * h * w in
 * [-1, 1]) and writes the classifier folder dir (config.json, classifier/config.json,
 * model.safetensors with the EMA weights) atomically. *steps_done (may be NULL) receives the
 * steps taken. */
DM_API dm_status dm_classifier_train(const dm_classifier_config *cfg, const dm_dataset *data,
                                     const char *dir, dm_classifier_progress progress, void *ctx,
                                     int64_t *steps_done, dm_error *err);

typedef struct dm_classifier dm_classifier;

DM_API dm_status dm_classifier_load(dm_classifier **c, const char *dir, dm_error *err);
DM_API void dm_classifier_free(dm_classifier *c);
DM_API const dm_classifier_config *dm_classifier_get_config(const dm_classifier *c);
DM_API int32_t dm_classifier_num_classes(const dm_classifier *c);
/* The width of the pooled features (the last block's channels). */
DM_API int64_t dm_classifier_feature_dim(const dm_classifier *c);
/* Logits (B, K) and, when features is not NULL, the pooled features (B, feature_dim) of images
 * x (B, c*h*w) at timesteps t (B) (0-based; NULL = all 0, as an evaluation classifier is used). */
DM_API dm_status dm_classifier_forward(dm_classifier *c, float *logits, float *features,
                                       const float *x, const float *t, int64_t B, dm_error *err);
/* grad (B, c*h*w) = d/dx log p_phi(y_b | x_b, t_b), through the classifier's backward pass. */
DM_API dm_status dm_classifier_grad_log_prob(dm_classifier *c, float *grad, const float *x,
                                             const float *t, const int32_t *y, int64_t B,
                                             dm_error *err);
/* The fraction of data->n labelled images whose largest logit is their label, at timesteps t
 * (n) or NULL (t = 0). */
DM_API dm_status dm_classifier_accuracy(dm_classifier *c, const dm_dataset *data, const float *t,
                                        double *accuracy, dm_error *err);
/* Refuses a classifier that cannot guide a model over schedule s with images (ch, h, w): one
 * trained on clean images, another image shape, or another noise schedule (alpha_bar compared
 * to 1e-9). */
DM_API dm_status dm_classifier_check_guidance(const dm_classifier *c, const dm_schedule *s,
                                              int64_t ch, int64_t h, int64_t w, dm_error *err);

/* How a pipeline's samples are steered. */
typedef struct {
    const int32_t *labels; /* (n) the class of each sample, or NULL: unconditional (a
                            * class-conditional model then sees its null label) */
    double cfg_scale;      /* classifier-free guidance w: eps~ = (1 + w) eps(x, y) - w eps(x, null),
                            * the two evaluations batched into one network call; 0 = plain
                            * conditional sampling */
    dm_classifier *classifier; /* classifier guidance: eps~ -= gamma sqrt(1 - alpha_bar_t)
                                * grad_x log p_phi(y | x_t, t); NULL = none */
    double classifier_scale;   /* gamma */
    int unconditional_model;   /* 1: a class-conditional model sees its null label whatever the
                                * labels (classifier guidance of its unconditional prediction) */
} dm_guidance;

DM_API void dm_guidance_default(dm_guidance *g);
/* dm_pipeline_sample with guidance (g NULL = none). A class outside the model's (or the
 * classifier's) classes, guidance of an unconditional model, a model trained without the null
 * label (p_uncond 0) under cfg_scale, or a classifier that does not match the model are refused
 * with a message saying which. */
DM_API dm_status dm_pipeline_sample_guided(dm_pipeline *p, float *x, int64_t n,
                                           const dm_sample_options *opt, const dm_guidance *g,
                                           dm_error *err);

#ifdef __cplusplus
}
#endif
