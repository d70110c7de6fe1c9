/* diffusion/models.h: the model interface and the networks.
 * Part of the public API of libdiffusion; <diffusion.h> includes every part. */
#pragma once

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------------------------ */
/* Model interface: what the diffusion algorithms drive, whatever the network is              */

typedef struct dm_model dm_model;

/* Predicts epsilon for B inputs x (B, dim) at float timesteps t (B) (0-based step index).
 * With train != 0 the activations are kept for dm_model_backward. */
DM_API dm_status dm_model_forward(dm_model *m, float *out, const float *x, const float *t,
                                  int64_t B, int train, dm_error *err);
/* The same for a class-conditional model: labels (B) in [0, dm_model_num_classes(m)), or NULL
 * for none (unconditional models). */
DM_API dm_status dm_model_forward_cond(dm_model *m, float *out, const float *x, const float *t,
                                       const int32_t *labels, int64_t B, int train, dm_error *err);
/* Back-propagates d(loss)/d(out) (B, dim) of the last training forward; adds parameter
 * gradients into dm_model_grads(m). */
DM_API void dm_model_backward(dm_model *m, const float *dout, int64_t B);
/* The same, also adding d(loss)/d(x) into dx (B, dim). */
DM_API void dm_model_backward_input(dm_model *m, const float *dout, float *dx, int64_t B);
/* "mlp" or "unet". */
DM_API const char *dm_model_type(const dm_model *m);
/* Number of classes of a class-conditional model; 0 otherwise. */
DM_API int32_t dm_model_num_classes(const dm_model *m);
/* For image models: fills (c, h, w) with dim = c * h * w and returns 1; 0 for others. */
DM_API int dm_model_image_shape(const dm_model *m, int64_t *c, int64_t *h, int64_t *w);
DM_API size_t dm_model_num_params(const dm_model *m);
DM_API float *dm_model_params(dm_model *m); /* one buffer of num_params floats */
DM_API float *dm_model_grads(dm_model *m);  /* same layout */
DM_API int64_t dm_model_dim(const dm_model *m);
/* Values per row of the output: dm_model_dim, or twice that for a model with a learned
 * variance ([prediction, raw variance] per row). */
DM_API int64_t dm_model_out_dim(const dm_model *m);
/* Named parameter tensors (PyTorch state_dict names), in buffer order. */
DM_API int dm_model_tensor_count(const dm_model *m);
/* Fills name, shape (up to 4 dims), ndim and offset (in floats) into the params buffer. */
DM_API void dm_model_tensor_info(const dm_model *m, int i, const char **name, int64_t shape[4],
                                 int *ndim, size_t *offset);
DM_API void dm_model_free(dm_model *m);

/* The time-conditioned MLP for D-dimensional data (matches the PyTorch reference mlp2d):
 *   temb = SiLU(time_mlp(sinusoid_E(t)) [+ class_embedding[label]]), h = [x, temb],
 *   h = SiLU(net.{2k}(h)) for k < layers, out = net.{2 layers}(h) (out_dim values). */
typedef struct {
    int64_t dim;       /* data dimension D: 2 */
    int64_t hidden;    /* H: 256 */
    int64_t temb_dim;  /* E, sinusoidal embedding size: 128 */
    int64_t layers;    /* hidden layers: 3 */
    int64_t out_dim;   /* outputs: 0 = D; 2 D for a learned variance */
    int64_t num_classes; /* rows of class_embedding (H wide, N(0, 1) at init): 0 = none */
} dm_mlp_config;

DM_API void dm_mlp_config_default(dm_mlp_config *cfg);
/* Creates the model with PyTorch's default initialisation (uniform +-1/sqrt(fan_in)) drawn from
 * the given seed. */
DM_API dm_status dm_mlp_create(dm_model **m, const dm_mlp_config *cfg, uint64_t seed,
                               dm_error *err);
/* Multiply-accumulates of one forward pass for one example (for FLOP counts). */
DM_API double dm_mlp_macs_per_example(const dm_mlp_config *cfg);

/* A UNet with the architecture and tensor names of diffusers' UNet2DModel (the DDPM UNet of Ho
 * et al.): conv_in; sinusoidal time_proj + time_embedding.linear_1/linear_2 (+ class_embedding);
 * down_blocks of DownBlock2D / AttnDownBlock2D; mid_block (resnet, attention, resnet); up_blocks
 * with layers_per_block + 1 resnets over skip concatenations; conv_norm_out, SiLU, conv_out.
 * Fields carry diffusers' config.json keys; the model's input and output are images
 * (B, in_channels, sample_size, sample_size) flattened to rows of dim = c * h * w. */
#define DM_UNET_MAX_LEVELS 6
typedef struct {
    int64_t sample_size;         /* 28 */
    int64_t in_channels;         /* 1 */
    int64_t out_channels;        /* 1 */
    int32_t levels;              /* number of entries in block_out_channels: 3 */
    int64_t block_out_channels[DM_UNET_MAX_LEVELS]; /* (32, 64, 64) */
    int32_t down_attention[DM_UNET_MAX_LEVELS];     /* AttnDownBlock2D (1) or DownBlock2D (0) */
    int32_t up_attention[DM_UNET_MAX_LEVELS];       /* up_block_types, deepest first */
    int64_t layers_per_block;    /* 2 */
    int64_t norm_num_groups;     /* 8 */
    int64_t attn_norm_num_groups; /* the mid block's attention only (as diffusers): 0 =
                                   * norm_num_groups */
    double norm_eps;             /* 1e-5 */
    int64_t attention_head_dim;  /* 8; 0 = one head over all channels (config null) */
    int32_t add_attention;       /* attention in the mid block: 1 */
    int32_t flip_sin_to_cos;     /* 1 */
    double freq_shift;           /* 0 */
    int32_t downsample_padding;  /* 1 = symmetric; 0 = Ho et al.'s zero pad right and bottom */
    double dropout;              /* 0 */
    int32_t center_input_sample; /* 0; 1 maps the input x to 2x - 1 first */
    int64_t num_class_embeds;    /* 0 = unconditional */
    int64_t classifier_classes;  /* 0 = the UNet. K > 0: the encoder classifier instead (not a
                                  * diffusers model): conv_in, time embedding, down blocks and mid
                                  * block, then GroupNorm, SiLU, the mean over pixels (the
                                  * features) and classifier.linear to K logits */
    int32_t fourier_features;    /* 0 = diffusers' UNet2DModel. 1 = our variant (not a diffusers
                                  * model; config.json "_class_name": "FourierUNet2DModel"): VDM's
                                  * Base2FourierFeatures(start=6, stop=8) of the input, sin and
                                  * cos of 2^n 2 pi x for n = 6, 7, concatenated to conv_in's
                                  * input channels (in_channels * 5 there). Loss vdm-continuous
                                  * turns it on for images */
} dm_unet_config;

/* The exponents n of VDM's Fourier features 2^n 2 pi x: start and stop (exclusive). */
#define DM_UNET_FOURIER_START 6
#define DM_UNET_FOURIER_STOP 8

/* Built-in configurations: "unet-28" (28x28 grey, the default; 1.62M parameters), "cifar-ddpm"
 * (Ho et al.'s 32x32 RGB model, 35.7M), "tiny" (8x8 grey, for tests), and the encoder classifiers
 * "classifier-28" (28x28 grey, 10 classes) and "classifier-tiny" (8x8, 4 classes, for tests).
 * NULL-terminated. */
extern DM_API const char *const dm_unet_preset_names[];
DM_API dm_status dm_unet_preset(dm_unet_config *cfg, const char *name, dm_error *err);
DM_API void dm_unet_config_default(dm_unet_config *cfg); /* "unet-28" */
/* Channels that divide into the groups, sizes that halve evenly, and so on. */
DM_API dm_status dm_unet_config_validate(const dm_unet_config *cfg, dm_error *err);
/* diffusers' config.json for UNet2DModel: read (every key of diffusers 0.31's UNet2DModel
 * honoured as diffusers does or refused with the key and value named, unknown keys refused;
 * docs/unet-config.md) and written. */
DM_API dm_status dm_unet_config_read(dm_unet_config *cfg, const char *path, dm_error *err);
DM_API dm_status dm_unet_config_write(const dm_unet_config *cfg, const char *path, dm_error *err);
/* PyTorch's default initialisation drawn from seed: conv and linear uniform +-1/sqrt(fan_in),
 * GroupNorm weight 1 and bias 0, class embedding N(0, 1). */
DM_API dm_status dm_unet_create(dm_model **m, const dm_unet_config *cfg, uint64_t seed,
                                dm_error *err);
/* A diffusers model folder as diffusers writes it: config.json +
 * diffusion_pytorch_model.safetensors (every tensor by name, shapes checked). cfg may be NULL. */
DM_API dm_status dm_unet_load_diffusers(dm_model **m, dm_unet_config *cfg, const char *dir,
                                        dm_error *err);
/* A diffusers UNet2DModel folder loaded as UNet2DModel.from_pretrained(dir, variant=variant)
 * does (dm_unet_load_diffusers is variant NULL): the weights file chosen by diffusers 0.31's
 * rules (diffusers_io.c), as one safetensors file or shards with their index, in F32, F64, F16
 * or BF16, under today's or the pre-0.17 attention names. Pickles (.bin) are refused with how
 * to convert them; so are shard sets that disagree with their index, and NaN or Inf weights.
 * Errors name the file. */
DM_API dm_status dm_unet_load_diffusers_variant(dm_model **m, dm_unet_config *cfg, const char *dir,
                                                const char *variant, dm_error *err);
/* Writes such a folder (weights from `weights`, laid out like m's params; NULL = m's params). */
DM_API dm_status dm_unet_save_diffusers(const dm_model *m, const float *weights, const char *dir,
                                        dm_error *err);
/* The configuration of a UNet model; NULL for other models. */
DM_API const dm_unet_config *dm_unet_get_config(const dm_model *m);
/* Multiply-accumulates of one forward pass for one image (convolutions, linear layers and the
 * two attention products), for FLOP counts. */
DM_API double dm_unet_macs_per_example(const dm_unet_config *cfg);

#ifdef __cplusplus
}
#endif
