/* The image folder loader's pieces shared with its cache (image_cache.c): listing a folder's
 * images with their labels, and decoding one image to the set's shape as uint8 CHW. */
#pragma once

#include "core/core.h"

#include <stdbool.h>

typedef struct {
    char **items;
    size_t n, cap;
} dm_name_list;

void dm_names_free(dm_name_list *l);

/* The image paths of dir (sorted) with their labels (*labels NULL when unlabelled), from its
 * images or, when it has none, from its class subfolders. */
dm_status dm_image_folder_collect(const char *dir, dm_name_list *paths, int32_t **labels,
                                  int32_t *num_classes, dm_error *err);

typedef struct {
    int64_t size, channels;  /* requested (0 = from the first image) */
    int64_t h, w, c;         /* of the output */
    const char *first_path;  /* for messages about mismatches */
    int first_h, first_w;
} dm_image_plan;

/* The options' ranges, one message naming the value. */
dm_status dm_image_folder_options_check(const dm_image_folder_options *opt, dm_error *err);
/* The output shape, from the options and the first image's header. */
dm_status dm_image_folder_plan(dm_image_plan *plan, const char *first_path,
                               const dm_image_folder_options *opt, dm_error *err);
/* Decodes path to dst (c, h, w bytes): converted, cropped and resized as planned. */
dm_status dm_image_folder_decode(const char *path, const dm_image_plan *p, uint8_t *dst,
                                 dm_error *err);
/* dst row r = src row r reversed, for rows of w values (the hflip copies). */
static inline void dm_mirror_rows_f32(float *dst, const float *src, int64_t rows, int64_t w) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t x = 0; x < w; x++) dst[r * w + x] = src[r * w + (w - 1 - x)];
}
static inline void dm_mirror_rows_u8(uint8_t *dst, const uint8_t *src, int64_t rows, int64_t w) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t x = 0; x < w; x++) dst[r * w + x] = src[r * w + (w - 1 - x)];
}
