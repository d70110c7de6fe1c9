/* Resize of the shorter side, then centre crop: torchvision's Resize(size, bilinear) and
 * CenterCrop(size), the transforms diffusers' train_unconditional.py applies. The filter is
 * PIL's bilinear (torchvision's antialias=True): a triangle widened by the shrink factor when
 * shrinking, plain bilinear with half-pixel centres when enlarging; weights cut at the edges are
 * renormalised. It works on the float pixels, where PIL rounds to uint8 after each pass. */
#include "data/image_resize.h"
#include "io/image_util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Per output index: the first input index, the count, and `max` weights each. */
typedef struct {
    int64_t *first, *count;
    double *w; /* (out, max) */
    int64_t max;
} filter;

static void filter_free(filter *f) {
    free(f->first);
    free(f->count);
    free(f->w);
}

static dm_status filter_init(filter *f, int64_t in, int64_t out, dm_error *err) {
    const double scale = (double)in / (double)out, fs = scale > 1 ? scale : 1;
    const double support = fs; /* the triangle's half-width, in input pixels */
    f->max = (int64_t)ceil(support) * 2 + 1;
    f->first = malloc((size_t)out * sizeof *f->first);
    f->count = malloc((size_t)out * sizeof *f->count);
    f->w = malloc((size_t)(out * f->max) * sizeof *f->w);
    if (!f->first || !f->count || !f->w) {
        filter_free(f);
        return dm_error_set(err, DM_ERR_NOMEM, "resize: out of memory");
    }
    for (int64_t i = 0; i < out; i++) {
        const double centre = ((double)i + 0.5) * scale;
        int64_t lo = (int64_t)floor(centre - support + 0.5), hi = (int64_t)floor(centre + support + 0.5);
        if (lo < 0) lo = 0;
        if (hi > in) hi = in;
        if (hi - lo > f->max) hi = lo + f->max;
        double *w = f->w + i * f->max, sum = 0;
        for (int64_t j = lo; j < hi; j++) {
            const double d = fabs(((double)j + 0.5 - centre) / fs);
            w[j - lo] = d < 1 ? 1 - d : 0;
            sum += w[j - lo];
        }
        for (int64_t j = lo; j < hi; j++) w[j - lo] /= sum;
        f->first[i] = lo;
        f->count[i] = hi - lo;
    }
    return DM_OK;
}

static void resize_crop_size(int64_t h, int64_t w, int64_t size, int64_t *rh, int64_t *rw,
                             int64_t *top, int64_t *left) {
    /* torchvision: the shorter side becomes size, the longer int(size * long / short) */
    if (h <= w) {
        *rh = size;
        *rw = (int64_t)((double)size * (double)w / (double)h);
    } else {
        *rw = size;
        *rh = (int64_t)((double)size * (double)h / (double)w);
    }
    /* CenterCrop's int(round((len - size) / 2)), Python's round: half to even */
    int64_t d[2] = {*rh - size, *rw - size}, o[2];
    for (int k = 0; k < 2; k++) {
        o[k] = d[k] / 2;
        if (d[k] % 2 && o[k] % 2) o[k]++;
    }
    *top = o[0];
    *left = o[1];
}

dm_status dm_resize_crop_planes(const float *in, int64_t planes, int64_t h, int64_t w,
                                int64_t size, float *out, dm_error *err) {
    int64_t rh, rw, top, left;
    resize_crop_size(h, w, size, &rh, &rw, &top, &left);
    filter fy = {0}, fx = {0};
    dm_status st = DM_OK;
    float *tmp = malloc((size_t)(h * size) * sizeof *tmp); /* (h, size): one plane, rows done */
    if (!tmp) st = dm_error_set(err, DM_ERR_NOMEM, "resize: out of memory");
    if (!st) st = filter_init(&fy, h, rh, err);
    if (!st) st = filter_init(&fx, w, rw, err);
    for (int64_t p = 0; !st && p < planes; p++) { /* only the kept columns, then rows */
        const float *src = in + p * h * w;
        float *o = out + p * size * size;
        for (int64_t y = 0; y < h; y++)
            for (int64_t x = 0; x < size; x++) {
                const int64_t i = x + left;
                const double *wt = fx.w + i * fx.max;
                double acc = 0;
                for (int64_t k = 0; k < fx.count[i]; k++) acc += wt[k] * src[y * w + fx.first[i] + k];
                tmp[y * size + x] = (float)acc;
            }
        for (int64_t y = 0; y < size; y++) {
            const int64_t i = y + top;
            const double *wt = fy.w + i * fy.max;
            for (int64_t x = 0; x < size; x++) {
                double acc = 0;
                for (int64_t k = 0; k < fy.count[i]; k++)
                    acc += wt[k] * tmp[(fy.first[i] + k) * size + x];
                o[y * size + x] = (float)acc;
            }
        }
    }
    free(tmp);
    filter_free(&fy);
    filter_free(&fx);
    return st;
}

dm_status dm_image_set_resize(dm_image_set *s, int64_t size, dm_error *err) {
    if (size < 1 || size > 4096)
        return dm_error_set(err, DM_ERR_ARG, "resize: size %lld must be in 1..4096",
                            (long long)size);
    if (s->h == size && s->w == size) return DM_OK;
    dm_image_set out;
    dm_status st = dm_image_set_init(&out, s->data.n, s->c, size, size, 0, err);
    if (!st) st = dm_resize_crop_planes(s->data.x, s->data.n * s->c, s->h, s->w, size, out.data.x, err);
    if (st) {
        dm_image_set_free(&out);
        return st;
    }
    /* the labels move over unchanged */
    out.data.labels = s->data.labels;
    out.data.num_classes = s->data.num_classes;
    s->data.labels = NULL;
    dm_image_set_free(s);
    *s = out;
    return DM_OK;
}
