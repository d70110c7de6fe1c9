/* Owning sets of NCHW images in [-1, 1]. */
#include "io/image_util.h"

#include <string.h>

dm_status dm_image_set_init(dm_image_set *s, int64_t n, int64_t c, int64_t h, int64_t w,
                            int with_labels, dm_error *err) {
    memset(s, 0, sizeof *s);
    size_t numel;
    dm_status st = dm_image_dims_check(n, c, h, w, "image set", &numel, err);
    if (st) return st;
    (void)numel; /* sizes checked (with a message about images) above */
    if ((st = dm_dataset_init(&s->data, n, c * h * w, err))) return st;
    if (with_labels && (st = dm_dataset_add_labels(&s->data, 1, err))) {
        dm_dataset_free(&s->data);
        return st;
    }
    s->c = c;
    s->h = h;
    s->w = w;
    return DM_OK;
}

void dm_image_set_free(dm_image_set *s) {
    dm_dataset_free(&s->data);
    memset(s, 0, sizeof *s);
}
