/* safetensors reader: header length, JSON header, dtypes, shapes, offsets, overlap, metadata.
 * Every tensor the reader accepts is then copied out with its own shape (F32/F64 through
 * dm_safetensors_read_f32; the bytes of the others are summed, so ASan sees any read past the
 * file), asked for with a wrong shape, and the file is loaded into a small MLP by name the way
 * a checkpoint's model.safetensors is. */
#include "fuzz_util.h"

#include "diffusion/checkpoint.h"
#include "io/safetensors.h"
#include "models/model.h"

static dm_model *mlp;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    dm_mlp_config cfg;
    dm_mlp_config_default(&cfg);
    cfg.hidden = 4, cfg.temb_dim = 4, cfg.layers = 1; /* the model of fuzz/corpus/safetensors */
    if (dm_mlp_create(&mlp, &cfg, 0, NULL)) abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fz_memfd_path(0, data, size);
    dm_error err = {0};
    dm_safetensors *st = NULL;
    dm_status status = dm_safetensors_open(&st, path, &err);
    if (status) {
        if (st || !err.msg[0]) abort(); /* a refusal returns no handle and says why */
    } else {
        volatile uint64_t sum = 0;
        for (int i = 0; i < dm_safetensors_count(st); i++) {
            const dm_st_tensor *t = dm_safetensors_at(st, i);
            if (dm_safetensors_get(st, t->name) != t) abort(); /* names are unique */
            uint64_t numel = 1;
            for (int d = 0; d < t->ndim; d++) numel *= (uint64_t)t->shape[d];
            uint64_t bytes = numel * dm_dtype_size(t->dtype);
            if (bytes > size) abort(); /* the reader checked it against the file */
            const uint8_t *p = t->data;
            for (uint64_t b = 0; b < bytes; b++) sum += p[b];
            (void)sum;
            float *dst = malloc(numel ? (size_t)numel * sizeof(float) : 1);
            if (!dst) abort();
            status = dm_safetensors_read_f32(st, t->name, dst, t->shape, t->ndim, &err);
            /* every floating dtype converts to float32 (F16 and BF16 since diffusers' half
             * weights are read), integers are refused */
            bool is_float = t->dtype == DM_DTYPE_F32 || t->dtype == DM_DTYPE_F64 ||
                            t->dtype == DM_DTYPE_F16 || t->dtype == DM_DTYPE_BF16;
            if ((status == DM_OK) != is_float) abort();
            if (t->ndim < DM_ST_MAX_DIMS) { /* one more dimension: a mismatch, nothing copied */
                int64_t wrong[DM_ST_MAX_DIMS];
                memcpy(wrong, t->shape, sizeof wrong);
                wrong[t->ndim] = 1;
                if (dm_safetensors_read_f32(st, t->name, dst, wrong, t->ndim + 1, &err) !=
                    DM_ERR_MISMATCH)
                    abort();
            }
            free(dst);
        }
        (void)dm_safetensors_meta(st, "format");
        (void)dm_safetensors_meta(st, "step");
        dm_safetensors_close(st);
    }
    /* the consumer: names and shapes checked against a model, NULL err allowed */
    (void)dm_model_weights_load(mlp, path, size % 2 ? NULL : &err);
    return 0;
}
