/* diffusers' UNet2DModel (the DDPM UNet of Ho et al.) with explicit forward and backward.
 *
 * The network is flattened at creation into a list of steps (conv_in, resnet, attention,
 * downsample, upsample, output head), each with its own saved activations; the down path pushes
 * skip tensors that up-path resnets pop and concatenate. The forward walks the steps in order,
 * the backward in reverse with two ping-pong gradient buffers plus one gradient buffer per skip.
 * All activation and scratch memory is one arena sized for a batch capacity, so a training step
 * allocates nothing once the first forward at that batch has run.
 *
 *   resnet:    h = conv1(silu(norm1(x))) + time_emb_proj(silu(emb))[:, :, None, None]
 *              out = shortcut(x) + conv2(dropout(silu(norm2(h))))
 *   attention: t = norm(x) as (B, HW, C) tokens; o = softmax(q k^T / sqrt(d)) v per head;
 *              out = x + to_out.0(o) back as (B, C, H, W); norm has norm_num_groups groups,
 *              the mid block's attn_norm_num_groups (when set) as in diffusers'
 *              UNetMidBlock2D
 *   time:      emb = linear_2(silu(linear_1(sinusoid(t)))) [+ class_embedding[label]] */
#include "models/unet.h"

#include "nn/attention.h"
#include "nn/conv2d.h"
#include "nn/dropout.h"
#include "nn/groupnorm.h"
#include "nn/nn.h"
#include "nn/resample.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define UNET_MAX_PERIOD 10000.0

typedef struct {
    size_t w, b;
    dm_conv2d_shape s;
} conv_layer;

typedef struct {
    size_t w, b;
    int64_t C, G;
} norm_layer;

typedef struct {
    size_t w, b;
    int64_t in, out;
} linear_layer;

typedef struct {
    norm_layer norm1, norm2;
    conv_layer conv1, conv2, shortcut;
    linear_layer temb_proj;
    bool has_shortcut;
    int64_t cin, cout, HW;
    /* saved activations, (cap, channels, HW) unless noted */
    float *mean1, *rstd1; /* (cap, G) */
    float *g1, *a1;       /* norm1(x), silu of it (cin): shared buffers, remade in backward */
    float *tproj;         /* (cap, cout) */
    float *h1;            /* conv1 output + tproj */
    float *mean2, *rstd2; /* (cap, G) */
    float *g2, *a2;       /* norm2(h1), dropout(silu(g2)): shared, remade in backward */
    float *mask;          /* dropout mask, when dropout > 0 */
} resnet_block;

typedef struct {
    norm_layer norm;
    linear_layer q, k, v, o;
    int64_t C, N, heads, d;
    float scale;
    float *mean, *rstd;          /* (cap, G) */
    float *tok;                  /* (cap, N, C) normalised tokens */
    float *q_act, *k_act, *v_act; /* (cap, N, C) */
    float *probs;                /* (cap, heads, N, N): training with large heads, one buffer
                                  * shared by those blocks, remade in the backward pass; NULL
                                  * where the backward remakes P itself */
    float *att;                  /* (cap, N, C) attention output before to_out.0 */
} attention_block;

typedef enum {
    STEP_CONV_IN, STEP_RESNET, STEP_ATTENTION, STEP_DOWN, STEP_UP, STEP_HEAD,
    STEP_POOL_HEAD, /* the classifier's: norm, SiLU, mean over pixels, linear to the logits */
} step_kind;

typedef struct {
    step_kind kind;
    char name[DM_TENSOR_NAME_MAX]; /* the block's tensor prefix, e.g. "mid_block.attentions.0" */
    int index;              /* resnet or attention index; conv index for conv steps */
    int64_t in_C, in_H, in_W;
    int64_t C, H, W;        /* output shape */
    int push_skip;          /* >= 0: the output is skip slot push_skip */
    int pop_skip;           /* >= 0: a resnet whose input is cat(previous, skip slot pop_skip) */
    const float *in;        /* forward input (previous output, the concatenation, or x) */
    float *cat;             /* (cap, in_C, HW) for concatenating resnets */
    float *pre;             /* down: zero-padded input (asymmetric padding); up: upsampled input */
    float *out;             /* (cap, C, H, W); the model output for the head */
    float *mean, *rstd, *g, *a; /* head: conv_norm_out statistics, output, silu */
    float *feat;            /* pool head: (cap, C) the pooled features */
} step;

typedef struct {
    dm_unet_config cfg;
    int64_t temb;             /* time embedding width: 4 * block_out_channels[0] */
    size_t t_l1w, t_l1b, t_l2w, t_l2b, class_w;
    norm_layer head_norm;
    linear_layer cls_linear;  /* the classifier's head */
    int n_steps, n_resnets, n_attentions, n_convs, n_skips;
    step *steps;
    resnet_block *resnets;
    attention_block *attentions;
    conv_layer *convs;        /* conv_in, downsamplers, upsamplers, conv_out */
    int64_t *skip_size;       /* (n_skips) floats per example */
    int *skip_step;           /* (n_skips) the step whose output each skip is */
    double macs;
    /* activations for a batch capacity */
    int64_t cap, train_B;
    int cap_threads;          /* the thread count the work buffers were sized for */
    bool cap_train;           /* the arena holds what a training forward keeps */
    dm_arena arena;
    float *x_in;              /* (cap, conv_in channels * h * w) input after center_input_sample,
                               * and its Fourier features */
    float *tsin, *tl1, *ta1, *emb, *semb; /* time path */
    int32_t *labels;          /* (cap) labels of the last training forward, or none */
    bool has_labels;
    float *scratch[5];        /* (cap * max_act) each, for use inside one step */
    float *dgrad[2];          /* (cap * max_act) each: gradients between steps */
    float *dtproj;            /* (cap, max channels) */
    float *dsemb, *dtmp;      /* (cap, temb) */
    float **dskip;            /* n_skips x (cap, skip_size) */
    float *conv_work, *attn_work;
    dm_conv_cache *conv_cache; /* this model's oneDNN primitives: two models never share one */
    float *infer_v;           /* inference: the attention's values (cap * max_act) */
    float *rc_g, *rc_a;       /* training: a resnet's normalised activations and their SiLU
                               * (cap * max_act each), made in the forward and made again in the
                               * backward from the saved input and h1, not kept per block */
    int64_t max_act, max_ch;  /* per example */
} unet_impl;

static const dm_model_ops unet_ops;

const dm_unet_config *dm_unet_get_config(const dm_model *m) {
    if (!m || m->ops != &unet_ops) return NULL;
    return &((const unet_impl *)m->impl)->cfg;
}

/* ---------------------------------------------------------------------------------------- */
/* Building: tensors under diffusers' names and the list of steps                           */

typedef struct {
    dm_model *m; /* NULL: only count tensors, MACs and shapes */
    unet_impl *im;
    int n_tensors;
    double n_params; /* when counting: the parameters the tensors hold */
    char prefix[DM_TENSOR_NAME_MAX + 8];
} builder;

static size_t add_tensor(builder *b, const char *name, int ndim, const int64_t *shape) {
    b->n_tensors++;
    if (!b->m) {
        double numel = 1;
        for (int d = 0; d < ndim; d++) numel *= (double)shape[d];
        b->n_params += numel;
        return 0;
    }
    char full[2 * DM_TENSOR_NAME_MAX + 8]; /* names built here are far shorter than the limit */
    snprintf(full, sizeof full, "%s%s", b->prefix, name);
    return dm_model_add_tensor(b->m, full, ndim, shape);
}

static conv_layer make_conv(builder *b, const char *name, int64_t cin, int64_t cout, int k,
                            int stride, int pad, int64_t H, int64_t W) {
    char n[DM_TENSOR_NAME_MAX];
    conv_layer c = {.s = {.cin = cin, .cout = cout, .H = H, .W = W, .k = k, .stride = stride,
                          .pad = pad}};
    snprintf(n, sizeof n, "%s.weight", name);
    c.w = add_tensor(b, n, 4, (const int64_t[]){cout, cin, k, k});
    snprintf(n, sizeof n, "%s.bias", name);
    c.b = add_tensor(b, n, 1, (const int64_t[]){cout});
    b->im->macs += (double)(cout * cin * k * k) * (double)(dm_conv2d_out_h(&c.s) *
                                                          dm_conv2d_out_w(&c.s));
    return c;
}

static norm_layer make_norm(builder *b, const char *name, int64_t C, int64_t G) {
    char n[DM_TENSOR_NAME_MAX];
    norm_layer g = {.C = C, .G = G};
    snprintf(n, sizeof n, "%s.weight", name);
    g.w = add_tensor(b, n, 1, (const int64_t[]){C});
    snprintf(n, sizeof n, "%s.bias", name);
    g.b = add_tensor(b, n, 1, (const int64_t[]){C});
    return g;
}

/* rows: how many rows the layer is applied to per example (tokens), for MACs */
static linear_layer make_linear(builder *b, const char *name, int64_t in, int64_t out,
                                int64_t rows) {
    char n[DM_TENSOR_NAME_MAX];
    linear_layer l = {.in = in, .out = out};
    snprintf(n, sizeof n, "%s.weight", name);
    l.w = add_tensor(b, n, 2, (const int64_t[]){out, in});
    snprintf(n, sizeof n, "%s.bias", name);
    l.b = add_tensor(b, n, 1, (const int64_t[]){out});
    b->im->macs += (double)(in * out * rows);
    return l;
}

static step *add_step(unet_impl *im, step_kind kind, int64_t in_C, int64_t H, int64_t W) {
    step *s = &im->steps[im->n_steps++];
    memset(s, 0, sizeof *s);
    s->kind = kind;
    s->in_C = in_C, s->in_H = H, s->in_W = W;
    s->C = in_C, s->H = H, s->W = W;
    s->push_skip = s->pop_skip = -1;
    return s;
}

static void push_skip(unet_impl *im, step *s) {
    if (im->cfg.classifier_classes) return; /* an encoder has no up path to feed */
    im->skip_step[im->n_skips] = (int)(s - im->steps);
    s->push_skip = im->n_skips;
    im->skip_size[im->n_skips++] = s->C * s->H * s->W;
}

static void add_resnet(builder *b, const char *prefix, int64_t cin, int64_t cout, int64_t H,
                       int64_t W, int pop_skip) {
    unet_impl *im = b->im;
    const dm_unet_config *c = &im->cfg;
    snprintf(b->prefix, sizeof b->prefix, "%s.", prefix);
    resnet_block *r = &im->resnets[im->n_resnets];
    memset(r, 0, sizeof *r);
    r->cin = cin, r->cout = cout, r->HW = H * W;
    r->norm1 = make_norm(b, "norm1", cin, c->norm_num_groups);
    r->conv1 = make_conv(b, "conv1", cin, cout, 3, 1, 1, H, W);
    r->temb_proj = make_linear(b, "time_emb_proj", im->temb, cout, 1);
    r->norm2 = make_norm(b, "norm2", cout, c->norm_num_groups);
    r->conv2 = make_conv(b, "conv2", cout, cout, 3, 1, 1, H, W);
    r->has_shortcut = cin != cout;
    if (r->has_shortcut) r->shortcut = make_conv(b, "conv_shortcut", cin, cout, 1, 1, 0, H, W);
    b->prefix[0] = 0;
    step *s = add_step(im, STEP_RESNET, cin, H, W);
    snprintf(s->name, sizeof s->name, "%s", prefix);
    s->index = im->n_resnets++;
    s->C = cout;
    s->pop_skip = pop_skip;
}

/* groups: of its GroupNorm (diffusers: norm_num_groups, or attn_norm_num_groups in the mid
 * block) */
static void add_attention(builder *b, const char *prefix, int64_t C, int64_t H, int64_t W,
                          int64_t groups) {
    unet_impl *im = b->im;
    const dm_unet_config *c = &im->cfg;
    snprintf(b->prefix, sizeof b->prefix, "%s.", prefix);
    attention_block *a = &im->attentions[im->n_attentions];
    memset(a, 0, sizeof *a);
    a->C = C, a->N = H * W;
    a->d = c->attention_head_dim ? c->attention_head_dim : C;
    a->heads = C / a->d;
    a->scale = (float)(1.0 / sqrt((double)a->d));
    a->norm = make_norm(b, "group_norm", C, groups);
    a->q = make_linear(b, "to_q", C, C, a->N);
    a->k = make_linear(b, "to_k", C, C, a->N);
    a->v = make_linear(b, "to_v", C, C, a->N);
    a->o = make_linear(b, "to_out.0", C, C, a->N);
    im->macs += 2.0 * (double)(a->N * a->N * C); /* Q K^T and P V */
    b->prefix[0] = 0;
    step *s = add_step(im, STEP_ATTENTION, C, H, W);
    snprintf(s->name, sizeof s->name, "%s", prefix);
    s->index = im->n_attentions++;
}

static step *add_conv_step(builder *b, step_kind kind, const char *name, int64_t cin,
                           int64_t cout, int stride, int pad, int64_t H, int64_t W) {
    unet_impl *im = b->im;
    step *s = add_step(im, kind, cin, H, W);
    const char *dot = strrchr(name, '.'); /* "down_blocks.0.downsamplers.0.conv": the block */
    snprintf(s->name, sizeof s->name, "%.*s",
             kind == STEP_DOWN || kind == STEP_UP ? (int)(dot - name) : (int)strlen(name), name);
    s->index = im->n_convs;
    /* the asymmetric downsample pads its input to (H + 1, W + 1) first */
    const int64_t ch = kind == STEP_UP ? 2 * H : kind == STEP_DOWN && pad == 0 ? H + 1 : H;
    const int64_t cw = kind == STEP_UP ? 2 * W : kind == STEP_DOWN && pad == 0 ? W + 1 : W;
    im->convs[im->n_convs++] = make_conv(b, name, cin, cout, 3, stride, pad, ch, cw);
    s->C = cout;
    s->H = dm_conv2d_out_h(&im->convs[s->index].s);
    s->W = dm_conv2d_out_w(&im->convs[s->index].s);
    return s;
}

enum { FOURIER_FREQS = DM_UNET_FOURIER_STOP - DM_UNET_FOURIER_START };

/* conv_in's input: the image, and with Fourier features 2 FOURIER_FREQS more per channel */
static int64_t conv_in_channels(const dm_unet_config *c) {
    return c->in_channels * (c->fourier_features ? 1 + 2 * FOURIER_FREQS : 1);
}

static double fourier_freq(int j) { return ldexp(2.0 * M_PI, DM_UNET_FOURIER_START + j); }

/* VDM's Base2FourierFeatures (vdm/model_vdm.py) in channel-first layout: x (B, C, HW) at the
 * start of h (B, C (1 + 2 F), HW) is followed by sin(w_j x_c) at channel C + c F + j, then
 * cos(w_j x_c) at C + C F + c F + j, w_j = 2^(6 + j) 2 pi (VDM repeats each channel F times,
 * tiles the frequencies, and concatenates [z, sin, cos] on the channel axis). */
static void fourier_forward(float *h, int64_t B, int64_t C, int64_t HW) {
    const int64_t F = FOURIER_FREQS, Ct = C * (1 + 2 * F);
    for (int64_t b = 0; b < B; b++) {
        float *hb = h + b * Ct * HW;
        for (int64_t c = 0; c < C; c++)
            for (int64_t j = 0; j < F; j++) {
                const double w = fourier_freq((int)j);
                float *sn = hb + (C + c * F + j) * HW, *cs = hb + (C + C * F + c * F + j) * HW;
                for (int64_t k = 0; k < HW; k++) {
                    const double a = w * (double)hb[c * HW + k];
                    sn[k] = (float)sin(a);
                    cs[k] = (float)cos(a);
                }
            }
    }
}

/* d loss / d x (B, C, HW) from d loss / d h (B, C (1 + 2 F), HW), given h's first C channels */
static void fourier_backward(float *dx, const float *dh, const float *h, int64_t B, int64_t C,
                             int64_t HW, float scale) {
    const int64_t F = FOURIER_FREQS, Ct = C * (1 + 2 * F);
    for (int64_t b = 0; b < B; b++) {
        const float *dhb = dh + b * Ct * HW, *hb = h + b * Ct * HW;
        for (int64_t c = 0; c < C; c++)
            for (int64_t k = 0; k < HW; k++) {
                double g = dhb[c * HW + k];
                for (int64_t j = 0; j < F; j++) {
                    const double w = fourier_freq((int)j), a = w * (double)hb[c * HW + k];
                    g += w * (dhb[(C + c * F + j) * HW + k] * cos(a) -
                              dhb[(C + C * F + c * F + j) * HW + k] * sin(a));
                }
                dx[b * C * HW + c * HW + k] += scale * (float)g;
            }
    }
}

/* Walks the architecture of unet_ref.py / diffusers: registers tensors (when b->m is set),
 * fills steps, blocks and skip sizes, and counts MACs. Arrays must be sized by unet_counts. */
static void build(builder *b) {
    unet_impl *im = b->im;
    const dm_unet_config *c = &im->cfg;
    const int L = c->levels;
    const int64_t *boc = c->block_out_channels;
    char name[DM_TENSOR_NAME_MAX];
    int64_t size = c->sample_size, ch = boc[0];

    step *s = add_conv_step(b, STEP_CONV_IN, "conv_in", conv_in_channels(c), boc[0], 1, 1, size,
                            size);
    push_skip(im, s);
    im->t_l1w = add_tensor(b, "time_embedding.linear_1.weight", 2,
                           (const int64_t[]){im->temb, boc[0]});
    im->t_l1b = add_tensor(b, "time_embedding.linear_1.bias", 1, (const int64_t[]){im->temb});
    im->t_l2w = add_tensor(b, "time_embedding.linear_2.weight", 2,
                           (const int64_t[]){im->temb, im->temb});
    im->t_l2b = add_tensor(b, "time_embedding.linear_2.bias", 1, (const int64_t[]){im->temb});
    im->macs += (double)(boc[0] * im->temb + im->temb * im->temb);
    if (c->num_class_embeds)
        im->class_w = add_tensor(b, "class_embedding.weight", 2,
                                 (const int64_t[]){c->num_class_embeds, im->temb});

    for (int i = 0; i < L; i++) {
        const int64_t out = boc[i];
        for (int j = 0; j < c->layers_per_block; j++) {
            snprintf(name, sizeof name, "down_blocks.%d.resnets.%d", i, j);
            add_resnet(b, name, ch, out, size, size, -1);
            ch = out;
            if (c->down_attention[i]) {
                snprintf(name, sizeof name, "down_blocks.%d.attentions.%d", i, j);
                add_attention(b, name, out, size, size, c->norm_num_groups);
            }
            push_skip(im, &im->steps[im->n_steps - 1]);
        }
        if (i < L - 1) {
            snprintf(name, sizeof name, "down_blocks.%d.downsamplers.0.conv", i);
            const int pad = c->downsample_padding;
            s = add_conv_step(b, STEP_DOWN, name, out, out, 2, pad, size, size);
            size /= 2;
            push_skip(im, s);
        }
    }
    add_resnet(b, "mid_block.resnets.0", ch, ch, size, size, -1);
    /* UNetMidBlock2D's attn_groups: attn_norm_num_groups, or norm_num_groups when null (with
     * resnet_time_scale_shift "default", the only one read) */
    if (c->add_attention)
        add_attention(b, "mid_block.attentions.0", ch, size, size,
                      c->attn_norm_num_groups ? c->attn_norm_num_groups : c->norm_num_groups);
    add_resnet(b, "mid_block.resnets.1", ch, ch, size, size, -1);
    if (c->classifier_classes) {
        im->head_norm = make_norm(b, "classifier.norm", ch, c->norm_num_groups);
        im->cls_linear = make_linear(b, "classifier.linear", ch, c->classifier_classes, 1);
        step *h = add_step(im, STEP_POOL_HEAD, ch, size, size);
        h->C = c->classifier_classes;
        h->H = h->W = 1;
        return;
    }

    int skip = im->n_skips;
    for (int i = 0; i < L; i++) {
        const int64_t out = boc[L - 1 - i];
        const int64_t in = boc[L - 1 - (i + 1 < L ? i + 1 : L - 1)];
        for (int j = 0; j <= c->layers_per_block; j++) {
            const int64_t skip_ch = j == c->layers_per_block ? in : out;
            skip--;
            assert(im->skip_size[skip] == skip_ch * size * size && "skip shapes disagree");
            snprintf(name, sizeof name, "up_blocks.%d.resnets.%d", i, j);
            add_resnet(b, name, ch + skip_ch, out, size, size, skip);
            ch = out;
            if (c->up_attention[i]) {
                snprintf(name, sizeof name, "up_blocks.%d.attentions.%d", i, j);
                add_attention(b, name, out, size, size, c->norm_num_groups);
            }
        }
        if (i < L - 1) {
            snprintf(name, sizeof name, "up_blocks.%d.upsamplers.0.conv", i);
            add_conv_step(b, STEP_UP, name, out, out, 1, 1, size, size);
            size *= 2;
        }
    }
    assert(skip == 0);
    im->head_norm = make_norm(b, "conv_norm_out", boc[0], c->norm_num_groups);
    add_conv_step(b, STEP_HEAD, "conv_out", boc[0], c->out_channels, 1, 1, size, size);
}

/* Upper bounds of the list sizes, for allocating them before build. */
static void unet_counts(const dm_unet_config *c, int *steps, int *resnets, int *attns, int *convs,
                        int *skips) {
    const int L = c->levels, lpb = (int)c->layers_per_block;
    *resnets = L * lpb + 2 + L * (lpb + 1);
    *attns = L * lpb + 1 + L * (lpb + 1);
    *convs = 2 + 2 * (L - 1);
    *skips = 1 + L * lpb + (L - 1);
    *steps = *resnets + *attns + *convs;
}

static void unet_free_impl(void *p) {
    unet_impl *im = p;
    if (!im) return;
    dm_conv_cache_free(im->conv_cache);
    dm_arena_free(&im->arena);
    free(im->steps);
    free(im->resnets);
    free(im->attentions);
    free(im->convs);
    free(im->skip_size);
    free(im->skip_step);
    free(im->dskip);
    free(im);
}

static unet_impl *unet_impl_new(const dm_unet_config *cfg) {
    unet_impl *im = calloc(1, sizeof *im);
    if (!im) return NULL;
    im->cfg = *cfg;
    im->temb = 4 * cfg->block_out_channels[0];
    int ns, nr, na, nc, nk;
    unet_counts(cfg, &ns, &nr, &na, &nc, &nk);
    im->steps = calloc((size_t)ns, sizeof *im->steps);
    im->resnets = calloc((size_t)nr, sizeof *im->resnets);
    im->attentions = calloc((size_t)na, sizeof *im->attentions);
    im->convs = calloc((size_t)nc, sizeof *im->convs);
    im->skip_size = calloc((size_t)nk, sizeof *im->skip_size);
    im->skip_step = calloc((size_t)nk, sizeof *im->skip_step);
    im->dskip = calloc((size_t)nk, sizeof *im->dskip);
    if (!im->steps || !im->resnets || !im->attentions || !im->convs || !im->skip_size ||
        !im->skip_step || !im->dskip || dm_conv_cache_create(&im->conv_cache, NULL)) {
        unet_free_impl(im);
        return NULL;
    }
    return im;
}

double dm_unet_macs_per_example(const dm_unet_config *cfg) {
    if (dm_unet_config_validate(cfg, NULL)) return 0;
    unet_impl *im = unet_impl_new(cfg);
    if (!im) return 0;
    builder b = {.im = im};
    build(&b);
    double macs = im->macs;
    unet_free_impl(im);
    return macs;
}

double dm_unet_num_params(const dm_unet_config *cfg) {
    if (dm_unet_config_validate(cfg, NULL)) return 0;
    unet_impl *im = unet_impl_new(cfg);
    if (!im) return 0;
    builder b = {.im = im};
    build(&b);
    unet_free_impl(im);
    return b.n_params;
}

/* PyTorch's defaults: conv and linear weights and biases uniform +-1/sqrt(fan_in) (the
 * kaiming_uniform(a=sqrt(5)) bound), GroupNorm 1 and 0, embeddings N(0, 1). */
static void init_params(dm_model *m, uint64_t seed) {
    dm_rng rng;
    dm_rng_init(&rng, seed, 1);
    for (int i = 0; i < m->n_tensors; i++) {
        const dm_param_tensor *t = &m->tensors[i];
        float *v = m->params + t->offset;
        size_t n = 1;
        for (int d = 0; d < t->ndim; d++) n *= (size_t)t->shape[d];
        const char *leaf = strrchr(t->name, '.');
        const bool is_norm = strstr(t->name, "norm") != NULL;
        if (strcmp(t->name, "class_embedding.weight") == 0) {
            dm_rng_normal(&rng, v, n);
        } else if (is_norm) {
            for (size_t j = 0; j < n; j++) v[j] = strcmp(leaf, ".weight") == 0 ? 1.0f : 0.0f;
        } else {
            /* a bias follows its weight, whose fan-in is the product of dims after the first */
            const dm_param_tensor *w = t->ndim == 1 ? &m->tensors[i - 1] : t;
            int64_t fan_in = 1;
            for (int d = 1; d < w->ndim; d++) fan_in *= w->shape[d];
            const float bound = (float)(1.0 / sqrt((double)fan_in));
            dm_rng_uniform(&rng, v, n);
            for (size_t j = 0; j < n; j++) v[j] = (2.0f * v[j] - 1.0f) * bound;
        }
    }
}

dm_status dm_unet_create(dm_model **out, const dm_unet_config *cfg, uint64_t seed,
                         dm_error *err) {
    *out = NULL;
    dm_status st = dm_unet_config_validate(cfg, err);
    if (st) return st;
    dm_model *m = calloc(1, sizeof *m);
    unet_impl *im = unet_impl_new(cfg);
    if (!m || !im) {
        free(m);
        unet_free_impl(im);
        return dm_error_set(err, DM_ERR_NOMEM, "cannot allocate the UNet");
    }
    m->ops = &unet_ops;
    m->impl = im;
    m->image_c = cfg->in_channels;
    m->image_h = m->image_w = cfg->sample_size;
    m->dim = cfg->in_channels * cfg->sample_size * cfg->sample_size;
    m->num_classes = (int32_t)cfg->num_class_embeds;
    if (!cfg->classifier_classes && cfg->out_channels != cfg->in_channels &&
        cfg->out_channels != 2 * cfg->in_channels) {
        dm_model_free(m);
        return dm_error_set(err, DM_ERR_ARG,
                            "in_channels %lld, out_channels %lld: a diffusion model predicts "
                            "in_channels values, or twice that with a learned variance",
                            (long long)cfg->in_channels, (long long)cfg->out_channels);
    }
    m->out_dim = cfg->classifier_classes ? cfg->classifier_classes
                                         : cfg->out_channels * cfg->sample_size * cfg->sample_size;
    builder count = {.im = im};
    build(&count);
    if (count.n_tensors > DM_MODEL_MAX_TENSORS) {
        dm_model_free(m);
        return dm_error_set(err, DM_ERR_ARG,
                            "the UNet has %d tensors, more than %d; use fewer levels or "
                            "layers_per_block",
                            count.n_tensors, DM_MODEL_MAX_TENSORS);
    }
    /* build again, from empty lists, registering the tensors */
    im->n_steps = im->n_resnets = im->n_attentions = im->n_convs = im->n_skips = 0;
    im->macs = 0;
    builder b = {.m = m, .im = im};
    build(&b);
    if ((st = dm_model_alloc_params(m, err))) {
        dm_model_free(m);
        return st;
    }
    init_params(m, seed);
    dm_rng_init(&m->rng, seed, 5); /* the trainer's stream 5: dropout */
    *out = m;
    return DM_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* Activation memory                                                                        */

/* Carves or, with a == NULL, counts (into *bytes) n floats. */
static float *take(dm_arena *a, size_t *bytes, size_t n) {
    if (!a) {
        *bytes += dm_arena_piece_bytes(n);
        return NULL;
    }
    return dm_arena_floats(a, n);
}

/* train: also the attention probabilities the backward needs (the largest activations) */
static void layout(unet_impl *im, int64_t cap, bool train, dm_arena *a, size_t *bytes) {
    const size_t B = (size_t)cap;
    const dm_unet_config *c = &im->cfg;
    int64_t max_act = 0, max_ch = 0, max_probs = 0;
    im->x_in = take(a, bytes, B * (size_t)(conv_in_channels(c) * c->sample_size * c->sample_size));
    im->tsin = take(a, bytes, B * (size_t)c->block_out_channels[0]);
    im->tl1 = take(a, bytes, B * (size_t)im->temb);
    im->ta1 = take(a, bytes, B * (size_t)im->temb);
    im->emb = take(a, bytes, B * (size_t)im->temb);
    im->semb = take(a, bytes, B * (size_t)im->temb);
    im->dsemb = take(a, bytes, B * (size_t)im->temb);
    im->dtmp = take(a, bytes, B * (size_t)im->temb);
    im->labels = (int32_t *)take(a, bytes, B);
    for (int i = 0; i < im->n_steps; i++) {
        step *s = &im->steps[i];
        const int64_t hw = s->H * s->W, in_hw = s->in_H * s->in_W;
        const size_t out_n = B * (size_t)(s->C * hw), in_n = B * (size_t)(s->in_C * in_hw);
        if (s->in_C * in_hw > max_act) max_act = s->in_C * in_hw;
        if (s->C * hw > max_act) max_act = s->C * hw;
        if (s->C > max_ch) max_ch = s->C;
        s->out = take(a, bytes, out_n);
        /* inference keeps only the step outputs (the skips need them); the blocks' inner
         * activations share the scratch buffers, assigned at the end */
        s->cat = s->pop_skip >= 0 && train ? take(a, bytes, in_n) : NULL;
        s->pre = NULL;
        if (s->kind == STEP_DOWN && im->convs[s->index].s.pad == 0) {
            const dm_conv2d_shape *cs = &im->convs[s->index].s;
            s->pre = take(a, bytes, B * (size_t)(cs->cin * cs->H * cs->W));
            if (cs->cin * cs->H * cs->W > max_act) max_act = cs->cin * cs->H * cs->W;
        }
        if (s->kind == STEP_UP) {
            s->pre = take(a, bytes, B * (size_t)(s->in_C * 4 * in_hw));
            if (s->in_C * 4 * in_hw > max_act) max_act = s->in_C * 4 * in_hw;
        }
        if (s->kind == STEP_POOL_HEAD) {
            s->feat = take(a, bytes, B * (size_t)s->in_C);
            if (s->in_C > max_ch) max_ch = s->in_C;
        }
        if (s->kind == STEP_HEAD || s->kind == STEP_POOL_HEAD) {
            s->mean = take(a, bytes, B * (size_t)im->head_norm.G);
            s->rstd = take(a, bytes, B * (size_t)im->head_norm.G);
            s->g = take(a, bytes, in_n);
            s->a = take(a, bytes, in_n);
        }
        if (s->kind == STEP_RESNET) {
            resnet_block *r = &im->resnets[s->index];
            const size_t nout = B * (size_t)(r->cout * r->HW);
            r->mean1 = take(a, bytes, B * (size_t)r->norm1.G);
            r->rstd1 = take(a, bytes, B * (size_t)r->norm1.G);
            r->tproj = take(a, bytes, B * (size_t)r->cout);
            r->mean2 = take(a, bytes, B * (size_t)r->norm2.G);
            r->rstd2 = take(a, bytes, B * (size_t)r->norm2.G);
            if (train) r->h1 = take(a, bytes, nout); /* g1, a1, g2, a2: rc_g and rc_a */
            r->mask = c->dropout > 0 && train ? take(a, bytes, nout) : NULL;
        }
        if (s->kind == STEP_ATTENTION) {
            attention_block *t = &im->attentions[s->index];
            const size_t n = B * (size_t)(t->N * t->C);
            t->mean = take(a, bytes, B * (size_t)t->norm.G);
            t->rstd = take(a, bytes, B * (size_t)t->norm.G);
            if (train) {
                t->tok = take(a, bytes, n);
                t->q_act = take(a, bytes, n);
                t->k_act = take(a, bytes, n);
                t->v_act = take(a, bytes, n);
                t->att = take(a, bytes, n);
            }
            t->probs = NULL; /* training with large heads: the shared buffer, below */
            if (!dm_attention_backward_remakes(t->N, t->d) && t->heads * t->N * t->N > max_probs)
                max_probs = t->heads * t->N * t->N;
        }
    }
    if (im->temb > max_ch) max_ch = im->temb;
    for (int i = 0; i < 5; i++) im->scratch[i] = take(a, bytes, B * (size_t)max_act);
    if (train) {
        for (int i = 0; i < 2; i++) im->dgrad[i] = take(a, bytes, B * (size_t)max_act);
        im->dtproj = take(a, bytes, B * (size_t)max_ch);
        for (int k = 0; k < im->n_skips; k++)
            im->dskip[k] = take(a, bytes, B * (size_t)im->skip_size[k]);
        im->infer_v = NULL;
        im->rc_g = take(a, bytes, B * (size_t)max_act);
        im->rc_a = take(a, bytes, B * (size_t)max_act);
        /* the attention probabilities are the largest activations (B heads N^2 a block). Small
         * heads need none: the backward remakes them a few rows at a time. Large heads share
         * one block's worth, remade by a second forward from the saved q and k. */
        float *probs = max_probs ? take(a, bytes, B * (size_t)max_probs) : NULL;
        for (int i = 0; a && i < im->n_attentions; i++)
            if (!dm_attention_backward_remakes(im->attentions[i].N, im->attentions[i].d))
                im->attentions[i].probs = probs;
        for (int i = 0; a && i < im->n_resnets; i++) {
            resnet_block *r = &im->resnets[i];
            r->g1 = r->g2 = im->rc_g;
            r->a1 = r->a2 = im->rc_a;
        }
    } else {
        /* the forward's use of the scratch buffers: a resnet's shortcut and an attention's
         * norm and projection take 0 and 1; the inner activations take 2..4 and infer_v */
        im->infer_v = take(a, bytes, B * (size_t)max_act);
        for (int i = 0; a && i < im->n_steps; i++) {
            step *s = &im->steps[i];
            if (s->pop_skip >= 0) s->cat = im->scratch[4];
            if (s->kind == STEP_RESNET) {
                resnet_block *r = &im->resnets[s->index];
                r->g1 = r->a1 = r->g2 = r->a2 = im->scratch[2];
                r->h1 = im->scratch[3];
            }
            if (s->kind == STEP_ATTENTION) {
                attention_block *t = &im->attentions[s->index];
                t->tok = t->att = im->scratch[2]; /* the tokens are spent before att is made */
                t->q_act = im->scratch[3];
                t->k_act = im->scratch[4];
                t->v_act = im->infer_v;
            }
        }
    }
    size_t conv_work = 0, attn_work = 0;
    for (int i = 0; i < im->n_convs; i++) {
        size_t w = dm_conv2d_work_floats(&im->convs[i].s, cap);
        if (w > conv_work) conv_work = w;
    }
    for (int i = 0; i < im->n_resnets; i++) {
        const resnet_block *r = &im->resnets[i];
        const conv_layer *cl[3] = {&r->conv1, &r->conv2, &r->shortcut};
        for (int k = 0; k < (r->has_shortcut ? 3 : 2); k++) {
            size_t w = dm_conv2d_work_floats(&cl[k]->s, cap);
            if (w > conv_work) conv_work = w;
        }
    }
    for (int i = 0; i < im->n_attentions; i++) {
        const attention_block *t = &im->attentions[i];
        size_t w = dm_attention_work_floats(cap, t->N, t->heads, t->d);
        if (w > attn_work) attn_work = w;
    }
    im->conv_work = take(a, bytes, conv_work ? conv_work : 1);
    im->attn_work = take(a, bytes, attn_work ? attn_work : 1);
    im->max_act = max_act;
    im->max_ch = max_ch;
}

/* Makes room for B examples: the only allocation a forward pass can make. The work sizes
 * depend on the thread count, so a change of it also re-lays the arena, as does the first
 * training forward after inference-only ones. */
static dm_status ensure_capacity(unet_impl *im, int64_t B, bool train, dm_error *err) {
    const int threads = dm_get_num_threads();
    if (B <= im->cap && threads == im->cap_threads && (im->cap_train || !train)) return DM_OK;
    dm_arena_free(&im->arena);
    im->cap = 0;
    im->train_B = 0;
    size_t bytes = 0;
    layout(im, B, train, NULL, &bytes);
    dm_status st = dm_arena_init(&im->arena, bytes, err);
    if (st) {
        dm_error_prefix(err, "UNet activations for batch %lld", (long long)B);
        return st; /* not dm_error_prefix's value: DM_OK when err is NULL */
    }
    layout(im, B, train, &im->arena, NULL);
    im->cap = B;
    im->cap_train = train;
    im->cap_threads = threads;
    return DM_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* Forward                                                                                  */

static void conv_forward(unet_impl *im, const float *p, float *y, const float *x,
                         const conv_layer *c, int64_t B) {
    dm_conv2d_forward(y, x, p + c->w, p + c->b, &c->s, B, im->conv_work, im->conv_cache);
}

static void norm_forward(const float *p, float *y, float *mean, float *rstd, const float *x,
                         const norm_layer *n, int64_t B, int64_t HW, float eps) {
    dm_groupnorm_forward(y, mean, rstd, x, p + n->w, p + n->b, B, n->C, HW, n->G, eps);
}

DM_VECTOR_KERNEL
static void resnet_forward(unet_impl *im, const float *p, resnet_block *r, float *out,
                           const float *x, int64_t B, bool train, dm_rng *rng) {
    const float eps = (float)im->cfg.norm_eps;
    const int64_t HW = r->HW, nin = B * r->cin * HW, nout = B * r->cout * HW;
    norm_forward(p, r->g1, r->mean1, r->rstd1, x, &r->norm1, B, HW, eps);
    dm_silu_forward(r->a1, r->g1, (size_t)nin);
    conv_forward(im, p, r->h1, r->a1, &r->conv1, B);
    dm_linear_forward(r->tproj, im->semb, p + r->temb_proj.w, p + r->temb_proj.b, B, im->temb,
                      r->cout);
#pragma omp parallel for schedule(static) if (nout >= DM_PARALLEL_MIN)
    for (int64_t bc = 0; bc < B * r->cout; bc++) {
        float *h = r->h1 + bc * HW;
        const float v = r->tproj[bc];
        for (int64_t i = 0; i < HW; i++) h[i] += v;
    }
    norm_forward(p, r->g2, r->mean2, r->rstd2, r->h1, &r->norm2, B, HW, eps);
    dm_silu_forward(r->a2, r->g2, (size_t)nout);
    if (train && r->mask)
        dm_dropout_forward(r->a2, r->mask, r->a2, (size_t)nout, (float)im->cfg.dropout,
                           rng);
    conv_forward(im, p, out, r->a2, &r->conv2, B);
    const float *sc = x;
    if (r->has_shortcut) {
        conv_forward(im, p, im->scratch[0], x, &r->shortcut, B);
        sc = im->scratch[0];
    }
#pragma omp parallel for simd schedule(static) if (parallel: nout >= DM_PARALLEL_MIN)
    for (int64_t i = 0; i < nout; i++) out[i] += sc[i];
}

/* (B, C, N) <-> (B, N, C) */
DM_VECTOR_KERNEL
static void to_tokens(float *t, const float *x, int64_t B, int64_t C, int64_t N) {
#pragma omp parallel for schedule(static) if (B * C * N >= DM_PARALLEL_MIN)
    for (int64_t b = 0; b < B; b++)
        for (int64_t c = 0; c < C; c++)
            for (int64_t n = 0; n < N; n++) t[(b * N + n) * C + c] = x[(b * C + c) * N + n];
}

/* x (B, C, N) op= t (B, N, C) transposed: assigns, or adds with accumulate */
DM_VECTOR_KERNEL
static void from_tokens(float *x, const float *t, int64_t B, int64_t C, int64_t N,
                        bool accumulate) {
#pragma omp parallel for schedule(static) if (B * C * N >= DM_PARALLEL_MIN)
    for (int64_t b = 0; b < B; b++)
        for (int64_t c = 0; c < C; c++) {
            float *xr = x + (b * C + c) * N;
            const float *tc = t + b * N * C + c;
            if (accumulate)
                for (int64_t n = 0; n < N; n++) xr[n] += tc[n * C];
            else
                for (int64_t n = 0; n < N; n++) xr[n] = tc[n * C];
        }
}

/* The same in training and inference: the probabilities are remade in the backward pass. */
static void attention_forward(unet_impl *im, const float *p, attention_block *a, float *out,
                              const float *x, int64_t B) {
    const int64_t C = a->C, N = a->N, rows = B * N;
    float *gn = im->scratch[0], *proj = im->scratch[1];
    norm_forward(p, gn, a->mean, a->rstd, x, &a->norm, B, N, (float)im->cfg.norm_eps);
    to_tokens(a->tok, gn, B, C, N);
    dm_linear_forward(a->q_act, a->tok, p + a->q.w, p + a->q.b, rows, C, C);
    dm_linear_forward(a->k_act, a->tok, p + a->k.w, p + a->k.b, rows, C, C);
    dm_linear_forward(a->v_act, a->tok, p + a->v.w, p + a->v.b, rows, C, C);
    dm_attention_forward(a->att, NULL, a->q_act, a->k_act, a->v_act, B, N,
                         a->heads, a->d, a->scale, im->attn_work);
    dm_linear_forward(proj, a->att, p + a->o.w, p + a->o.b, rows, C, C);
    memcpy(out, x, (size_t)(B * C * N) * sizeof *out);
    from_tokens(out, proj, B, C, N, true);
}

static void time_forward(unet_impl *im, const float *p, const float *t, const int32_t *labels,
                         int64_t B) {
    const dm_unet_config *c = &im->cfg;
    const int64_t E = c->block_out_channels[0], T = im->temb;
    dm_timestep_embedding(im->tsin, t, B, E, c->flip_sin_to_cos, c->freq_shift, UNET_MAX_PERIOD);
    dm_linear_forward(im->tl1, im->tsin, p + im->t_l1w, p + im->t_l1b, B, E, T);
    dm_silu_forward(im->ta1, im->tl1, (size_t)(B * T));
    dm_linear_forward(im->emb, im->ta1, p + im->t_l2w, p + im->t_l2b, B, T, T);
    if (labels)
        for (int64_t b = 0; b < B; b++) {
            const float *row = p + im->class_w + (int64_t)labels[b] * T;
            for (int64_t j = 0; j < T; j++) im->emb[b * T + j] += row[j];
        }
    dm_silu_forward(im->semb, im->emb, (size_t)(B * T));
}

static dm_status unet_forward(dm_model *m, float *out, const float *x, const float *t,
                              const int32_t *labels, int64_t B, int train, dm_error *err) {
    unet_impl *im = m->impl;
    const dm_unet_config *c = &im->cfg;
    if (c->num_class_embeds && !labels)
        return dm_error_set(err, DM_ERR_ARG, "UNet forward: this model is class-conditional "
                                             "(num_class_embeds %lld) and needs labels",
                            (long long)c->num_class_embeds);
    dm_status st = ensure_capacity(im, B, train, err);
    if (st) return st;
    const float *p = m->params;
    const int64_t dim = m->dim, in_dim = conv_in_channels(c) * c->sample_size * c->sample_size;
    for (int64_t b = 0; b < B; b++) {
        float *xb = im->x_in + b * in_dim;
        if (c->center_input_sample)
            for (int64_t i = 0; i < dim; i++) xb[i] = 2.0f * x[b * dim + i] - 1.0f;
        else
            memcpy(xb, x + b * dim, (size_t)dim * sizeof *x);
    }
    if (c->fourier_features)
        fourier_forward(im->x_in, B, c->in_channels, c->sample_size * c->sample_size);
    im->has_labels = labels != NULL;
    if (labels) memcpy(im->labels, labels, (size_t)B * sizeof *labels);
    time_forward(im, p, t, labels, B);

    const float *cur = im->x_in;
    for (int i = 0; i < im->n_steps; i++) {
        step *s = &im->steps[i];
        const int64_t in_hw = s->in_H * s->in_W;
        const conv_layer *cl = &im->convs[s->index];
        s->in = cur;
        switch (s->kind) {
        case STEP_CONV_IN:
            conv_forward(im, p, s->out, cur, cl, B);
            break;
        case STEP_RESNET:
            if (s->pop_skip >= 0) {
                const step *src = &im->steps[im->skip_step[s->pop_skip]];
                const int64_t skip_C = src->C, prev_C = s->in_C - skip_C;
                dm_concat_channels(s->cat, cur, prev_C, src->out, skip_C, B, in_hw);
                s->in = s->cat;
            }
            resnet_forward(im, p, &im->resnets[s->index], s->out, s->in, B, train, &m->rng);
            break;
        case STEP_ATTENTION:
            attention_forward(im, p, &im->attentions[s->index], s->out, cur, B);
            break;
        case STEP_DOWN:
            if (s->pre) {
                /* Ho et al.'s padding: one zero row at the bottom and column at the right */
                const int64_t H = s->in_H, W = s->in_W;
                memset(s->pre, 0, (size_t)(B * s->in_C * (H + 1) * (W + 1)) * sizeof(float));
                for (int64_t bc = 0; bc < B * s->in_C; bc++)
                    for (int64_t y = 0; y < H; y++)
                        memcpy(s->pre + (bc * (H + 1) + y) * (W + 1), cur + (bc * H + y) * W,
                               (size_t)W * sizeof(float));
                conv_forward(im, p, s->out, s->pre, cl, B);
            } else {
                conv_forward(im, p, s->out, cur, cl, B);
            }
            break;
        case STEP_UP:
            dm_upsample2x_forward(s->pre, cur, B, s->in_C, s->in_H, s->in_W);
            conv_forward(im, p, s->out, s->pre, cl, B);
            break;
        case STEP_HEAD:
            norm_forward(p, s->g, s->mean, s->rstd, cur, &im->head_norm, B, in_hw,
                         (float)c->norm_eps);
            dm_silu_forward(s->a, s->g, (size_t)(B * s->in_C * in_hw));
            conv_forward(im, p, s->out, s->a, cl, B);
            break;
        case STEP_POOL_HEAD: {
            norm_forward(p, s->g, s->mean, s->rstd, cur, &im->head_norm, B, in_hw,
                         (float)c->norm_eps);
            dm_silu_forward(s->a, s->g, (size_t)(B * s->in_C * in_hw));
            for (int64_t bc = 0; bc < B * s->in_C; bc++) {
                const float *v = s->a + bc * in_hw;
                double sum = 0;
                for (int64_t k = 0; k < in_hw; k++) sum += v[k];
                s->feat[bc] = (float)(sum / (double)in_hw);
            }
            const linear_layer *l = &im->cls_linear;
            dm_linear_forward(s->out, s->feat, p + l->w, p + l->b, B, l->in, l->out);
            break;
        }
        }
        cur = s->out;
    }
    memcpy(out, cur, (size_t)(B * m->out_dim) * sizeof *out);
    im->train_B = train ? B : 0;
    return DM_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* Backward                                                                                 */

static void zero(float *x, int64_t n) { memset(x, 0, (size_t)n * sizeof *x); }

static void conv_backward(unet_impl *im, const float *p, float *g, float *dx, const float *dy,
                          const float *x, const conv_layer *c, int64_t B) {
    dm_conv2d_backward(dx, g + c->w, g + c->b, dy, x, p + c->w, &c->s, B, im->conv_work,
                       im->conv_cache);
}

static void norm_backward(const float *p, float *g, float *dx, const float *dy, const float *x,
                          const float *mean, const float *rstd, const norm_layer *n, int64_t B,
                          int64_t HW) {
    dm_groupnorm_backward(dx, g + n->w, g + n->b, dy, x, mean, rstd, p + n->w, B, n->C, HW, n->G);
}

/* dx (B, cin, HW) is overwritten with d/dx; im->dsemb accumulates the time-embedding gradient. */
static void resnet_backward(unet_impl *im, const float *p, float *g, resnet_block *r, float *dx,
                            const float *dout, const float *x, int64_t B) {
    const int64_t HW = r->HW, nin = B * r->cin * HW, nout = B * r->cout * HW;
    const float eps = (float)im->cfg.norm_eps;
    float *d_a2 = im->scratch[0], *d_h1 = im->scratch[1], *d_a1 = im->scratch[2];
    /* g2 = norm2(h1) and a2 = dropout(silu(g2)) again, exactly as the forward made them (the
     * statistics come out the same; the mask is the saved one) */
    norm_forward(p, r->g2, r->mean2, r->rstd2, r->h1, &r->norm2, B, HW, eps);
    dm_silu_forward(r->a2, r->g2, (size_t)nout);
    if (r->mask)
        for (int64_t i = 0; i < nout; i++) r->a2[i] *= r->mask[i];
    zero(d_a2, nout);
    conv_backward(im, p, g, d_a2, dout, r->a2, &r->conv2, B);
    if (r->mask) {
        for (int64_t i = 0; i < nout; i++) d_a2[i] *= r->mask[i];
    }
    dm_silu_backward_inplace(d_a2, r->g2, (size_t)nout);
    zero(d_h1, nout);
    norm_backward(p, g, d_h1, d_a2, r->h1, r->mean2, r->rstd2, &r->norm2, B, HW);
    /* the time projection was broadcast over HW: its gradient is the sum over HW */
    for (int64_t bc = 0; bc < B * r->cout; bc++) {
        const float *d = d_h1 + bc * HW;
        float s = 0;
        for (int64_t i = 0; i < HW; i++) s += d[i];
        im->dtproj[bc] = s;
    }
    dm_linear_backward(im->dsemb, g + r->temb_proj.w, g + r->temb_proj.b, im->dtproj, im->semb,
                       p + r->temb_proj.w, B, im->temb, r->cout);
    /* g1 = norm1(x) and a1 = silu(g1) again */
    norm_forward(p, r->g1, r->mean1, r->rstd1, x, &r->norm1, B, HW, eps);
    dm_silu_forward(r->a1, r->g1, (size_t)nin);
    zero(d_a1, nin);
    conv_backward(im, p, g, d_a1, d_h1, r->a1, &r->conv1, B);
    dm_silu_backward_inplace(d_a1, r->g1, (size_t)nin);
    zero(dx, nin);
    norm_backward(p, g, dx, d_a1, x, r->mean1, r->rstd1, &r->norm1, B, HW);
    if (r->has_shortcut)
        conv_backward(im, p, g, dx, dout, x, &r->shortcut, B);
    else
        for (int64_t i = 0; i < nin; i++) dx[i] += dout[i];
}

/* dx (B, C, N) is overwritten. */
static void attention_backward(unet_impl *im, const float *p, float *g, attention_block *a,
                               float *dx, const float *dout, const float *x, int64_t B) {
    const int64_t C = a->C, N = a->N, rows = B * N, n = B * N * C;
    float *dproj = im->scratch[0], *datt = im->scratch[1], *dq = im->scratch[2];
    float *dk = im->scratch[3], *dv = im->scratch[4];
    to_tokens(dproj, dout, B, C, N);
    zero(datt, n);
    dm_linear_backward(datt, g + a->o.w, g + a->o.b, dproj, a->att, p + a->o.w, rows, C, C);
    zero(dq, n), zero(dk, n), zero(dv, n);
    /* large heads: the probabilities again, exactly as the forward made them (the output goes
     * to a buffer that is free during an attention block's backward); small heads' backward
     * remakes them itself (probs NULL) */
    if (a->probs)
        dm_attention_forward(im->rc_g, a->probs, a->q_act, a->k_act, a->v_act, B, N, a->heads,
                             a->d, a->scale, im->attn_work);
    dm_attention_backward(dq, dk, dv, datt, a->q_act, a->k_act, a->v_act, a->probs, B, N, a->heads,
                          a->d, a->scale, im->attn_work);
    float *dtok = dproj, *dgn = datt;
    zero(dtok, n);
    dm_linear_backward(dtok, g + a->q.w, g + a->q.b, dq, a->tok, p + a->q.w, rows, C, C);
    dm_linear_backward(dtok, g + a->k.w, g + a->k.b, dk, a->tok, p + a->k.w, rows, C, C);
    dm_linear_backward(dtok, g + a->v.w, g + a->v.b, dv, a->tok, p + a->v.w, rows, C, C);
    from_tokens(dgn, dtok, B, C, N, false);
    memcpy(dx, dout, (size_t)n * sizeof *dx); /* the residual */
    norm_backward(p, g, dx, dgn, x, a->mean, a->rstd, &a->norm, B, N);
}

static void time_backward(unet_impl *im, const float *p, float *g, int64_t B) {
    const dm_unet_config *c = &im->cfg;
    const int64_t E = c->block_out_channels[0], T = im->temb;
    float *d_emb = im->dsemb, *d_a1 = im->dtmp;
    dm_silu_backward_inplace(d_emb, im->emb, (size_t)(B * T));
    if (im->has_labels)
        for (int64_t b = 0; b < B; b++) {
            float *row = g + im->class_w + (int64_t)im->labels[b] * T;
            for (int64_t j = 0; j < T; j++) row[j] += d_emb[b * T + j];
        }
    zero(d_a1, B * T);
    dm_linear_backward(d_a1, g + im->t_l2w, g + im->t_l2b, d_emb, im->ta1, p + im->t_l2w, B, T, T);
    dm_silu_backward_inplace(d_a1, im->tl1, (size_t)(B * T));
    dm_linear_backward(NULL, g + im->t_l1w, g + im->t_l1b, d_a1, im->tsin, p + im->t_l1w, B, E, T);
}

static void unet_backward(dm_model *m, const float *dout, float *dx, int64_t B) {
    unet_impl *im = m->impl;
    assert(im->train_B == B && "backward needs a training forward of the same batch just before");
    const dm_unet_config *c = &im->cfg;
    const float *p = m->params;
    float *g = m->grads;
    /* dcur: gradient of the current step's output; dnext: of its input */
    float *dcur = im->dgrad[0], *dnext = im->dgrad[1];
    zero(im->dsemb, B * im->temb);
    memcpy(dcur, dout, (size_t)(B * m->out_dim) * sizeof *dcur);
    for (int i = im->n_steps - 1; i >= 0; i--) {
        step *s = &im->steps[i];
        const int64_t in_hw = s->in_H * s->in_W, in_n = B * s->in_C * in_hw;
        const conv_layer *cl = &im->convs[s->index];
        if (s->push_skip >= 0) {
            /* the output also fed an up-path resnet, whose gradient waits in dskip */
            const float *ds = im->dskip[s->push_skip];
            const int64_t n = B * s->C * s->H * s->W;
            for (int64_t k = 0; k < n; k++) dcur[k] += ds[k];
        }
        switch (s->kind) {
        case STEP_CONV_IN:
            if (dx) {
                float *d_in = im->scratch[0];
                zero(d_in, in_n);
                conv_backward(im, p, g, d_in, dcur, s->in, cl, B);
                const float scale = c->center_input_sample ? 2.0f : 1.0f;
                if (c->fourier_features)
                    fourier_backward(dx, d_in, s->in, B, c->in_channels, in_hw, scale);
                else
                    for (int64_t k = 0; k < in_n; k++) dx[k] += scale * d_in[k];
            } else {
                conv_backward(im, p, g, NULL, dcur, s->in, cl, B);
            }
            break;
        case STEP_RESNET:
            if (s->pop_skip >= 0) {
                float *dcat = im->scratch[3];
                resnet_backward(im, p, g, &im->resnets[s->index], dcat, dcur, s->in, B);
                const int64_t skip_C = im->skip_size[s->pop_skip] / in_hw;
                const int64_t prev_C = s->in_C - skip_C;
                float *ds = im->dskip[s->pop_skip];
                zero(dnext, B * prev_C * in_hw);
                zero(ds, B * skip_C * in_hw);
                dm_concat_channels_backward(dnext, ds, dcat, prev_C, skip_C, B, in_hw);
            } else {
                resnet_backward(im, p, g, &im->resnets[s->index], dnext, dcur, s->in, B);
            }
            break;
        case STEP_ATTENTION:
            attention_backward(im, p, g, &im->attentions[s->index], dnext, dcur, s->in, B);
            break;
        case STEP_DOWN:
            if (s->pre) {
                const int64_t H = s->in_H, W = s->in_W;
                float *dpre = im->scratch[0];
                zero(dpre, B * s->in_C * (H + 1) * (W + 1));
                conv_backward(im, p, g, dpre, dcur, s->pre, cl, B);
                for (int64_t bc = 0; bc < B * s->in_C; bc++)
                    for (int64_t y = 0; y < H; y++)
                        memcpy(dnext + (bc * H + y) * W, dpre + (bc * (H + 1) + y) * (W + 1),
                               (size_t)W * sizeof(float));
            } else {
                zero(dnext, in_n);
                conv_backward(im, p, g, dnext, dcur, s->in, cl, B);
            }
            break;
        case STEP_UP: {
            float *dpre = im->scratch[0];
            zero(dpre, 4 * in_n);
            conv_backward(im, p, g, dpre, dcur, s->pre, cl, B);
            zero(dnext, in_n);
            dm_upsample2x_backward(dnext, dpre, B, s->in_C, s->in_H, s->in_W);
            break;
        }
        case STEP_POOL_HEAD: {
            const linear_layer *l = &im->cls_linear;
            float *dfeat = im->dtproj; /* (B, in_C): max_ch covers it */
            zero(dfeat, B * s->in_C);
            dm_linear_backward(dfeat, g + l->w, g + l->b, dcur, s->feat, p + l->w, B, l->in,
                               l->out);
            float *d_a = im->scratch[0];
            for (int64_t bc = 0; bc < B * s->in_C; bc++)
                for (int64_t k = 0; k < in_hw; k++)
                    d_a[bc * in_hw + k] = dfeat[bc] / (float)in_hw;
            dm_silu_backward_inplace(d_a, s->g, (size_t)in_n);
            zero(dnext, in_n);
            norm_backward(p, g, dnext, d_a, s->in, s->mean, s->rstd, &im->head_norm, B, in_hw);
            break;
        }
        case STEP_HEAD: {
            float *d_a = im->scratch[0];
            zero(d_a, in_n);
            conv_backward(im, p, g, d_a, dcur, s->a, cl, B);
            dm_silu_backward_inplace(d_a, s->g, (size_t)in_n);
            zero(dnext, in_n);
            norm_backward(p, g, dnext, d_a, s->in, s->mean, s->rstd, &im->head_norm, B, in_hw);
            break;
        }
        }
        float *swap = dcur;
        dcur = dnext;
        dnext = swap;
    }
    time_backward(im, p, g, B);
}

const float *dm_unet_block_output(const dm_model *m, const char *block, const float **input,
                                  int64_t shape[3]) {
    if (!dm_unet_get_config(m) || !block || !block[0]) return NULL;
    const unet_impl *im = m->impl;
    for (int i = 0; i < im->n_steps; i++) {
        const step *s = &im->steps[i];
        if (strcmp(s->name, block) != 0) continue;
        if (input) *input = s->in;
        if (shape) shape[0] = s->C, shape[1] = s->H, shape[2] = s->W;
        return s->out;
    }
    return NULL;
}

const float *dm_unet_classifier_features(const dm_model *m, int64_t *dim) {
    if (!dm_unet_get_config(m) || !dm_unet_get_config(m)->classifier_classes) return NULL;
    const unet_impl *im = m->impl;
    const step *head = &im->steps[im->n_steps - 1];
    if (dim) *dim = head->in_C;
    return head->feat;
}

static const dm_model_ops unet_ops = {
    .type = "unet",
    .forward = unet_forward,
    .backward = unet_backward,
    .free_impl = unet_free_impl,
};
