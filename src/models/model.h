/* What every network implements so that the diffusion code can drive it (see dm_model_* in
 * diffusion.h). A model owns one parameter buffer and one gradient buffer of the same layout,
 * carved into named tensors (PyTorch state_dict names). */
#pragma once

#include "core/core.h"

#define DM_MODEL_MAX_TENSORS 1024
#define DM_TENSOR_NAME_MAX 96

typedef struct {
    char name[DM_TENSOR_NAME_MAX];
    int64_t shape[4];
    int ndim;
    size_t offset; /* in floats, into params and grads */
} dm_param_tensor;

typedef struct {
    const char *type; /* "mlp", ... as written in config.json */
    /* labels is NULL or (B) class indices, checked against num_classes by the caller */
    dm_status (*forward)(dm_model *m, float *out, const float *x, const float *t,
                         const int32_t *labels, int64_t B, int train, dm_error *err);
    /* dx is NULL or (B, dim), added into */
    void (*backward)(dm_model *m, const float *dout, float *dx, int64_t B);
    void (*free_impl)(void *impl);
} dm_model_ops;

struct dm_model {
    const dm_model_ops *ops;
    void *impl;          /* the network's own state (activations, config) */
    int64_t dim;         /* data dimension of x */
    int64_t out_dim;     /* of out: dim, or 2 dim with a learned variance */
    int64_t image_c, image_h, image_w; /* dim = c * h * w for image models; 0 otherwise */
    int32_t num_classes; /* class-conditional models: labels in [0, num_classes); 0 = none */
    dm_rng rng;          /* draws made inside training forwards (dropout); saved by the trainer */
    size_t num_params;
    float *params;       /* (num_params) */
    float *grads;        /* (num_params) */
    int n_tensors;
    dm_param_tensor tensors[DM_MODEL_MAX_TENSORS];
};

/* Registers a tensor at the next offset; returns its offset. Used while building a model. */
size_t dm_model_add_tensor(dm_model *m, const char *name, int ndim, const int64_t *shape);
/* Allocates params and grads once all tensors are registered. */
dm_status dm_model_alloc_params(dm_model *m, dm_error *err);
/* Index of the named tensor, -1 if absent. */
int dm_model_find_tensor(const dm_model *m, const char *name);
