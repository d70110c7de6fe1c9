/* Image data and UNet choice for the command line: which --data names images, loading them to
 * the model's shape, and --model as a preset name or a diffusers config.json. */
#pragma once

#include "diffusion.h"

/* 1 if --data names images: "fashion-mnist[-test]", a folder, an IDX file, or an NPY file with
 * 3 or 4 dimensions. */
int cli_is_image_data(const char *name);
/* Loads images for a model taking c x size x size: Fashion-MNIST, a folder (centre-cropped and
 * resized to size, converted to c channels), an IDX file or an NPY array (which must already
 * have the model's shape unless resize is set: then those of another size are resized as
 * torchvision's Resize + CenterCrop, dm_image_set_resize). */
dm_status cli_load_images(dm_image_set *set, const char *name, int64_t c, int64_t size,
                          int resize, dm_error *err);
/* The same images held as uint8 where the source allows, for training: a folder through its
 * cache (cache_dir NULL: DIR/.diffusion-cache; info says whether it was built), a uint8 NPY
 * memory-mapped, IDX and Fashion-MNIST loaded and kept as bytes (resized ones: float). */
dm_status cli_open_images(dm_image_set *set, const char *name, int64_t c, int64_t size,
                          int resize, const char *cache_dir, dm_image_cache_info *info,
                          dm_error *err);
/* --model for images: a preset name (unet-28, cifar-ddpm, tiny) or a diffusers config.json. */
dm_status cli_unet_config(dm_unet_config *cfg, const char *name, dm_error *err);
