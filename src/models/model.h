/* What every network implements so that the diffusion code can drive it (see dm_model_* in
 * diffusion.h). A model owns one parameter buffer and one gradient buffer of the same layout,
 * carved into named tensors (PyTorch state_dict names). */
#pragma once

#include "core/core.h"

#define DM_MODEL_MAX_TENSORS 256
#define DM_TENSOR_NAME_MAX 96

typedef struct {
    char name[DM_TENSOR_NAME_MAX];
    int64_t shape[4];
    int ndim;
    size_t offset; /* in floats, into params and grads */
} dm_param_tensor;

typedef struct {
    const char *type; /* "mlp", ... as written in config.json */
    dm_status (*forward)(dm_model *m, float *out, const float *x, const float *t, int64_t B,
                         int train, dm_error *err);
    void (*backward)(dm_model *m, const float *dout, int64_t B);
    void (*free_impl)(void *impl);
} dm_model_ops;

struct dm_model {
    const dm_model_ops *ops;
    void *impl;          /* the network's own state (activations, config) */
    int64_t dim;         /* data dimension of x and out */
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
