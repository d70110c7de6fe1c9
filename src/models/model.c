/* The generic model interface: parameter bookkeeping and dispatch to the network's ops. */
#include "model.h"

#include <stdlib.h>
#include <string.h>

dm_status dm_model_forward(dm_model *m, float *out, const float *x, const float *t, int64_t B,
                           int train, dm_error *err) {
    return dm_model_forward_cond(m, out, x, t, NULL, B, train, err);
}

dm_status dm_model_forward_cond(dm_model *m, float *out, const float *x, const float *t,
                                const int32_t *labels, int64_t B, int train, dm_error *err) {
    if (!m || !out || !x || !t)
        return dm_error_set(err, DM_ERR_ARG, "model forward: NULL %s",
                            !m ? "model" : !out ? "output" : !x ? "input x" : "timesteps t");
    if (B <= 0)
        return dm_error_set(err, DM_ERR_ARG, "model forward: batch size %lld must be positive",
                            (long long)B);
    if (labels && m->num_classes == 0)
        return dm_error_set(err, DM_ERR_ARG, "model forward: class labels given to a model "
                                             "without class conditioning");
    if (labels)
        for (int64_t b = 0; b < B; b++)
            if (labels[b] < 0 || labels[b] >= m->num_classes)
                return dm_error_set(err, DM_ERR_ARG,
                                    "model forward: label %d of row %lld is outside 0..%d",
                                    (int)labels[b], (long long)b, (int)m->num_classes - 1);
    return m->ops->forward(m, out, x, t, labels, B, train, err);
}

void dm_model_backward(dm_model *m, const float *dout, int64_t B) {
    m->ops->backward(m, dout, NULL, B);
}

void dm_model_backward_input(dm_model *m, const float *dout, float *dx, int64_t B) {
    m->ops->backward(m, dout, dx, B);
}

int32_t dm_model_num_classes(const dm_model *m) { return m->num_classes; }

int dm_model_image_shape(const dm_model *m, int64_t *c, int64_t *h, int64_t *w) {
    if (c) *c = m->image_c;
    if (h) *h = m->image_h;
    if (w) *w = m->image_w;
    return m->image_c > 0;
}

const char *dm_model_type(const dm_model *m) { return m->ops->type; }

size_t dm_model_num_params(const dm_model *m) { return m->num_params; }
float *dm_model_params(dm_model *m) { return m->params; }
float *dm_model_grads(dm_model *m) { return m->grads; }
int64_t dm_model_dim(const dm_model *m) { return m->dim; }
int64_t dm_model_out_dim(const dm_model *m) { return m->out_dim ? m->out_dim : m->dim; }
int dm_model_tensor_count(const dm_model *m) { return m->n_tensors; }

void dm_model_tensor_info(const dm_model *m, int i, const char **name, int64_t shape[4], int *ndim,
                          size_t *offset) {
    assert(i >= 0 && i < m->n_tensors);
    const dm_param_tensor *pt = &m->tensors[i];
    if (name) *name = pt->name;
    if (shape)
        for (int d = 0; d < 4; d++) shape[d] = d < pt->ndim ? pt->shape[d] : 0;
    if (ndim) *ndim = pt->ndim;
    if (offset) *offset = pt->offset;
}

void dm_model_free(dm_model *m) {
    if (!m) return;
    if (m->ops && m->ops->free_impl) m->ops->free_impl(m->impl);
    dm_free(m->params);
    dm_free(m->grads);
    free(m);
}

size_t dm_model_add_tensor(dm_model *m, const char *name, int ndim, const int64_t *shape) {
    assert(m->n_tensors < DM_MODEL_MAX_TENSORS && "too many tensors");
    assert(ndim >= 1 && ndim <= 4);
    assert(strlen(name) < DM_TENSOR_NAME_MAX && "tensor name too long");
    dm_param_tensor *pt = &m->tensors[m->n_tensors++];
    strcpy(pt->name, name);
    pt->ndim = ndim;
    size_t numel = 1;
    for (int d = 0; d < 4; d++) {
        pt->shape[d] = d < ndim ? shape[d] : 0;
        if (d < ndim) {
            assert(shape[d] > 0);
            numel *= (size_t)shape[d];
        }
    }
    pt->offset = m->num_params;
    m->num_params += numel;
    return pt->offset;
}

dm_status dm_model_alloc_params(dm_model *m, dm_error *err) {
    dm_status st = dm_memory_check(2 * (uint64_t)m->num_params * sizeof(float), err);
    if (st) {
        dm_error_prefix(err, "a model of %zu parameters", m->num_params);
        return st; /* not dm_error_prefix's value: DM_OK when err is NULL */
    }
    m->params = dm_alloc(m->num_params * sizeof *m->params);
    m->grads = dm_alloc(m->num_params * sizeof *m->grads);
    if (!m->params || !m->grads)
        return dm_error_set(err, DM_ERR_NOMEM, "cannot allocate %zu parameters", m->num_params);
    return DM_OK;
}

int dm_model_find_tensor(const dm_model *m, const char *name) {
    for (int i = 0; i < m->n_tensors; i++)
        if (strcmp(m->tensors[i].name, name) == 0) return i;
    return -1;
}
