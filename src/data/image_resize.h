/* The plane kernel behind dm_image_set_resize, for the loaders of this layer: the image folder
 * resizes each decoded image with it (dm_image_folder_options.bilinear). */
#pragma once

#include "core/core.h"

/* planes planes (h, w) -> (size, size): the shorter side resized to size (PIL's antialiased
 * bilinear), then the centre size x size (torchvision's CenterCrop offsets). */
dm_status dm_resize_crop_planes(const float *in, int64_t planes, int64_t h, int64_t w,
                                int64_t size, float *out, dm_error *err);
