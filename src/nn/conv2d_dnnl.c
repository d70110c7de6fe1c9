/* The oneDNN backend of the convolutions: see conv2d_dnnl.h. */
#include "nn/conv2d_dnnl.h"

#ifndef DM_HAVE_DNNL

dm_status dm_conv_cache_create(dm_conv_cache **out, dm_error *err) {
    *out = NULL; /* every call takes the im2col path */
    return DM_OK;
}

void dm_conv_cache_free(dm_conv_cache *c) {}

bool dm_conv2d_dnnl_forward(dm_conv_cache *c, float *y, const float *x, const float *w,
                            const float *b, const dm_conv2d_shape *s, int64_t B, bool bf16) {
    return false;
}

bool dm_conv2d_dnnl_backward(dm_conv_cache *c, float *dx, float *dw, float *db, const float *dy,
                             const float *x, const float *w, const dm_conv2d_shape *s, int64_t B,
                             bool bf16, bool *dx_done) {
    *dx_done = false;
    return false;
}

const char *dm_conv2d_dnnl_impl(dm_conv_cache *c, const dm_conv2d_shape *s, int64_t B,
                                bool bf16) {
    return NULL;
}

#else

#include <oneapi/dnnl/dnnl.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Fewer channels than this (the UNet's conv_in and conv_out) stay on the im2col path: the
 * blocked layout would pad them to 16. */
#define MIN_CHANNELS 8
#define CACHE_CAPACITY 128

/* A primitive with its (user-provided) scratchpad. */
typedef struct {
    dnnl_primitive_desc_t pd;
    dnnl_primitive_t prim;
    dnnl_memory_t scratch; /* NULL when the primitive needs none */
} op;

/* Moving a tensor between its plain (NCHW / OIHW) memory and the blocked one a convolution
 * wants. When the two layouts agree and no sum is asked, there is no primitive: the blocked
 * memory points at the plain buffer. */
typedef struct {
    op op;
    bool alias;
} reorder;

typedef struct {
    dm_conv2d_shape s;
    int64_t B;
    int threads;
    bool bf16;   /* bfloat16 products */
    bool usable; /* a JIT implementation exists for every pass */
    char impl[64];
    op fwd, bwd_data, bwd_weights;
    /* plain memories: x (also dx), y (also dy), w (also dw), bias (also db and its partials) */
    dnnl_memory_t plain_x, plain_y, plain_w, plain_b;
    /* blocked memories of each pass */
    dnnl_memory_t f_src, f_wei, f_dst;
    dnnl_memory_t d_diff_dst, d_wei, d_diff_src;
    dnnl_memory_t w_src, w_diff_dst, w_diff_wei, w_diff_bias;
    reorder x_to_f, w_to_f, f_to_y;
    reorder dy_to_d, w_to_d, d_to_dx; /* d_to_dx adds */
    reorder x_to_w, dy_to_w, w_to_dw; /* w_to_dw adds */
    bool share_dy; /* the weight gradient reads the data gradient's blocked dy */
    /* workspace offsets in bytes */
    size_t off_f_src, off_f_wei, off_f_dst, off_zero_bias, off_f_scratch, fwd_bytes;
    size_t off_d_diff_dst, off_d_wei, off_d_diff_src, off_w_src, off_w_diff_dst, off_w_diff_wei,
        off_w_diff_bias, off_b_scratch, bwd_bytes;
} entry;

/* The CPU engine, made once for the process and never changed: oneDNN's engines and
 * primitives may be used from several threads at once. What may not be shared (the memory
 * objects whose buffers each call points at its tensors, the stream, the workspace) lives in
 * a dm_conv_cache, one per owner. */
static dnnl_engine_t engine;
static bool broken; /* the engine could not be made: everything stays on the im2col path */

struct dm_conv_cache {
    dnnl_stream_t stream; /* NULL until the first call oneDNN takes */
    entry *cache[CACHE_CAPACITY];
    int cache_count, cache_next;
    void *workspace; /* the blocked buffers and scratchpads of every entry, one at a time */
    size_t workspace_bytes;
};

/* A failed oneDNN call (a bug or an exhausted machine) is not fatal: the call reports it, its
 * cache entry is retired, and the convolution is done again on the im2col path (conv2d.c), the
 * library never aborting or printing. */
static bool ok(dnnl_status_t st) { return st == dnnl_success; }

static size_t align64(size_t n) { return (n + 63) & ~(size_t)63; }

static size_t md_bytes(const dnnl_memory_desc_t *md) { return dnnl_memory_desc_get_size(md); }

static const dnnl_memory_desc_t *query_md(const op *o, dnnl_query_t what) {
    return dnnl_primitive_desc_query_md(o->pd, what, 0);
}

static bool make_memory(dnnl_memory_t *m, const dnnl_memory_desc_t *md) {
    return dnnl_memory_create(m, md, engine, DNNL_MEMORY_NONE) == dnnl_success;
}

static dnnl_primitive_attr_t user_scratchpad_attr(bool sum) {
    dnnl_primitive_attr_t attr = NULL;
    if (dnnl_primitive_attr_create(&attr) != dnnl_success) return NULL;
    dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
    if (sum) {
        dnnl_post_ops_t po;
        if (dnnl_post_ops_create(&po) != dnnl_success) {
            dnnl_primitive_attr_destroy(attr);
            return NULL;
        }
        dnnl_post_ops_append_sum(po, 1.0f);
        dnnl_primitive_attr_set_post_ops(attr, po);
        dnnl_post_ops_destroy(po);
    }
    return attr;
}

/* The primitive and scratchpad memory of a primitive descriptor; the scratchpad's size is
 * added to *scratch_bytes (the largest one of a pass is what the workspace must hold). */
static bool finish_op(op *o, size_t *scratch_bytes) {
    if (dnnl_primitive_create(&o->prim, o->pd) != dnnl_success) return false;
    const dnnl_memory_desc_t *md = query_md(o, dnnl_query_scratchpad_md);
    const size_t bytes = md ? md_bytes(md) : 0;
    if (bytes > 0) {
        if (!make_memory(&o->scratch, md)) return false;
        if (bytes > *scratch_bytes) *scratch_bytes = bytes;
    }
    return true;
}

static bool make_reorder(reorder *r, const dnnl_memory_desc_t *from, const dnnl_memory_desc_t *to,
                         bool sum, size_t *scratch_bytes) {
    if (!sum && dnnl_memory_desc_equal(from, to)) {
        r->alias = true;
        return true;
    }
    dnnl_primitive_attr_t attr = user_scratchpad_attr(sum);
    if (!attr) return false;
    const dnnl_status_t st =
        dnnl_reorder_primitive_desc_create(&r->op.pd, from, engine, to, engine, attr);
    dnnl_primitive_attr_destroy(attr);
    return st == dnnl_success && finish_op(&r->op, scratch_bytes);
}

static void destroy_op(op *o) {
    if (o->scratch) dnnl_memory_destroy(o->scratch);
    if (o->prim) dnnl_primitive_destroy(o->prim);
    if (o->pd) dnnl_primitive_desc_destroy(o->pd);
}

static void destroy_entry(entry *e) {
    op *ops[] = {&e->fwd,          &e->bwd_data,    &e->bwd_weights,  &e->x_to_f.op,
                 &e->w_to_f.op,    &e->f_to_y.op,   &e->dy_to_d.op,   &e->w_to_d.op,
                 &e->d_to_dx.op,   &e->x_to_w.op,   &e->dy_to_w.op,   &e->w_to_dw.op};
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) destroy_op(ops[i]);
    dnnl_memory_t mems[] = {e->plain_x,    e->plain_y,    e->plain_w,    e->plain_b,
                            e->f_src,      e->f_wei,      e->f_dst,      e->d_diff_dst,
                            e->d_wei,      e->d_diff_src, e->w_src,      e->w_diff_dst,
                            e->w_diff_wei, e->w_diff_bias};
    for (size_t i = 0; i < sizeof mems / sizeof mems[0]; i++)
        if (mems[i]) dnnl_memory_destroy(mems[i]);
    free(e);
}

/* oneDNN's slow reference kernels ("ref:any") lose to the im2col path. */
static bool is_jit(const op *o) {
    const char *name = NULL;
    if (dnnl_primitive_desc_query(o->pd, dnnl_query_impl_info_str, 0, &name) != dnnl_success ||
        !name)
        return false;
    return strncmp(name, "ref", 3) != 0;
}

/* Lays the blocked buffers of one pass out in the workspace, one after another. */
static size_t place(size_t *cursor, size_t bytes) {
    const size_t at = *cursor;
    *cursor += align64(bytes);
    return at;
}

static bool build_entry(entry *e) {
    const dm_conv2d_shape *s = &e->s;
    const int64_t Ho = dm_conv2d_out_h(s), Wo = dm_conv2d_out_w(s);
    const dnnl_dims_t x_dims = {e->B, s->cin, s->H, s->W}, y_dims = {e->B, s->cout, Ho, Wo};
    const dnnl_dims_t w_dims = {s->cout, s->cin, s->k, s->k}, b_dims = {s->cout};
    const dnnl_dims_t strides = {s->stride, s->stride}, pads = {s->pad, s->pad};
    /* the layouts are oneDNN's choice (any); under bfloat16 the inputs of each product (x, w,
     * dy) are rounded to it, the results (y, dx, dw, db) stay float32 */
    const dnnl_data_type_t low = e->bf16 ? dnnl_bf16 : dnnl_f32;
    dnnl_memory_desc_t x_md, y_md, w_md, b_md, x_any, y_any, w_any, x_low, y_low, w_low;
    if (dnnl_memory_desc_init_by_tag(&x_md, 4, x_dims, dnnl_f32, dnnl_nchw) != dnnl_success ||
        dnnl_memory_desc_init_by_tag(&y_md, 4, y_dims, dnnl_f32, dnnl_nchw) != dnnl_success ||
        dnnl_memory_desc_init_by_tag(&w_md, 4, w_dims, dnnl_f32, dnnl_oihw) != dnnl_success ||
        dnnl_memory_desc_init_by_tag(&b_md, 1, b_dims, dnnl_f32, dnnl_a) != dnnl_success ||
        dnnl_memory_desc_init_by_tag(&x_any, 4, x_dims, dnnl_f32, dnnl_format_tag_any) !=
            dnnl_success ||
        dnnl_memory_desc_init_by_tag(&y_any, 4, y_dims, dnnl_f32, dnnl_format_tag_any) !=
            dnnl_success ||
        dnnl_memory_desc_init_by_tag(&w_any, 4, w_dims, dnnl_f32, dnnl_format_tag_any) !=
            dnnl_success ||
        dnnl_memory_desc_init_by_tag(&x_low, 4, x_dims, low, dnnl_format_tag_any) !=
            dnnl_success ||
        dnnl_memory_desc_init_by_tag(&y_low, 4, y_dims, low, dnnl_format_tag_any) !=
            dnnl_success ||
        dnnl_memory_desc_init_by_tag(&w_low, 4, w_dims, low, dnnl_format_tag_any) != dnnl_success)
        return false;

    /* the three passes, the backward ones hinted by the forward so the layouts agree; training's
     * forward kind for inference too, so both compute the same numbers */
    dnnl_primitive_attr_t attr = user_scratchpad_attr(false);
    if (!attr) return false;
    dnnl_convolution_desc_t fd, dd, wd;
    bool ok =
        dnnl_convolution_forward_desc_init(&fd, dnnl_forward_training, dnnl_convolution_direct,
                                           &x_low, &w_low, &b_md, &y_any, strides, pads,
                                           pads) == dnnl_success &&
        dnnl_primitive_desc_create(&e->fwd.pd, &fd, attr, engine, NULL) == dnnl_success &&
        dnnl_convolution_backward_data_desc_init(&dd, dnnl_convolution_direct, &x_any, &w_low,
                                                 &y_low, strides, pads, pads) == dnnl_success &&
        dnnl_primitive_desc_create(&e->bwd_data.pd, &dd, attr, engine, e->fwd.pd) ==
            dnnl_success &&
        dnnl_convolution_backward_weights_desc_init(&wd, dnnl_convolution_direct, &x_low,
                                                    &w_any, &b_md, &y_low, strides, pads,
                                                    pads) == dnnl_success &&
        dnnl_primitive_desc_create(&e->bwd_weights.pd, &wd, attr, engine, e->fwd.pd) ==
            dnnl_success;
    dnnl_primitive_attr_destroy(attr);
    if (!ok || !is_jit(&e->fwd) || !is_jit(&e->bwd_data) || !is_jit(&e->bwd_weights))
        return false;
    const char *name = NULL;
    dnnl_primitive_desc_query(e->fwd.pd, dnnl_query_impl_info_str, 0, &name);
    snprintf(e->impl, sizeof e->impl, "%s", name ? name : "?");

    const dnnl_memory_desc_t *f_src = query_md(&e->fwd, dnnl_query_src_md),
                             *f_wei = query_md(&e->fwd, dnnl_query_weights_md),
                             *f_dst = query_md(&e->fwd, dnnl_query_dst_md),
                             *d_diff_dst = query_md(&e->bwd_data, dnnl_query_diff_dst_md),
                             *d_wei = query_md(&e->bwd_data, dnnl_query_weights_md),
                             *d_diff_src = query_md(&e->bwd_data, dnnl_query_diff_src_md),
                             *w_src = query_md(&e->bwd_weights, dnnl_query_src_md),
                             *w_diff_dst = query_md(&e->bwd_weights, dnnl_query_diff_dst_md),
                             *w_diff_wei = query_md(&e->bwd_weights, dnnl_query_diff_weights_md);
    size_t fwd_scratch = 0, bwd_scratch = 0;
    ok = make_memory(&e->plain_x, &x_md) && make_memory(&e->plain_y, &y_md) &&
         make_memory(&e->plain_w, &w_md) && make_memory(&e->plain_b, &b_md) &&
         make_memory(&e->f_src, f_src) && make_memory(&e->f_wei, f_wei) &&
         make_memory(&e->f_dst, f_dst) && make_memory(&e->d_diff_dst, d_diff_dst) &&
         make_memory(&e->d_wei, d_wei) && make_memory(&e->d_diff_src, d_diff_src) &&
         make_memory(&e->w_src, w_src) && make_memory(&e->w_diff_dst, w_diff_dst) &&
         make_memory(&e->w_diff_wei, w_diff_wei) && make_memory(&e->w_diff_bias, &b_md) &&
         finish_op(&e->fwd, &fwd_scratch) && finish_op(&e->bwd_data, &bwd_scratch) &&
         finish_op(&e->bwd_weights, &bwd_scratch) &&
         make_reorder(&e->x_to_f, &x_md, f_src, false, &fwd_scratch) &&
         make_reorder(&e->w_to_f, &w_md, f_wei, false, &fwd_scratch) &&
         make_reorder(&e->f_to_y, f_dst, &y_md, false, &fwd_scratch) &&
         make_reorder(&e->dy_to_d, &y_md, d_diff_dst, false, &bwd_scratch) &&
         make_reorder(&e->w_to_d, &w_md, d_wei, false, &bwd_scratch) &&
         make_reorder(&e->d_to_dx, d_diff_src, &x_md, true, &bwd_scratch) &&
         make_reorder(&e->x_to_w, &x_md, w_src, false, &bwd_scratch) &&
         make_reorder(&e->dy_to_w, &y_md, w_diff_dst, false, &bwd_scratch) &&
         make_reorder(&e->w_to_dw, w_diff_wei, &w_md, true, &bwd_scratch);
    if (!ok) return false;

    /* the workspace of each pass: its blocked copies (none where a layout is the plain one),
     * then the largest scratchpad of its primitives, used by one primitive at a time */
    size_t at = 0;
    e->off_f_src = place(&at, e->x_to_f.alias ? 0 : md_bytes(f_src));
    e->off_f_wei = place(&at, e->w_to_f.alias ? 0 : md_bytes(f_wei));
    e->off_f_dst = place(&at, e->f_to_y.alias ? 0 : md_bytes(f_dst));
    e->off_zero_bias = place(&at, (size_t)s->cout * sizeof(float));
    e->off_f_scratch = place(&at, fwd_scratch);
    e->fwd_bytes = at;
    /* the backward: dx's blocked copy is spent (added into dx) before x's is made, so the two
     * share their place; both passes read the same blocked dy when their layouts agree */
    at = 0;
    e->share_dy = !e->dy_to_d.alias && !e->dy_to_w.alias && dnnl_memory_desc_equal(d_diff_dst,
                                                                                 w_diff_dst);
    e->off_d_diff_dst = place(&at, e->dy_to_d.alias ? 0 : md_bytes(d_diff_dst));
    e->off_w_diff_dst = e->share_dy ? e->off_d_diff_dst
                                    : place(&at, e->dy_to_w.alias ? 0 : md_bytes(w_diff_dst));
    e->off_d_wei = place(&at, e->w_to_d.alias ? 0 : md_bytes(d_wei));
    const size_t x_blocked = e->x_to_w.alias ? 0 : md_bytes(w_src);
    e->off_d_diff_src = e->off_w_src = place(
        &at, md_bytes(d_diff_src) > x_blocked ? md_bytes(d_diff_src) : x_blocked);
    e->off_w_diff_wei = place(&at, md_bytes(w_diff_wei));
    e->off_w_diff_bias = place(&at, (size_t)s->cout * sizeof(float));
    e->off_b_scratch = place(&at, bwd_scratch);
    e->bwd_bytes = at;
    return true;
}

/* Grows the cache's workspace; only a new cache entry can ask for more. */
static bool reserve_workspace(dm_conv_cache *c, size_t bytes) {
    if (bytes <= c->workspace_bytes) return true;
    void *bigger = aligned_alloc(64, align64(bytes));
    if (!bigger) return false;
    free(c->workspace);
    c->workspace = bigger;
    c->workspace_bytes = align64(bytes);
    return true;
}

dm_status dm_conv_cache_create(dm_conv_cache **out, dm_error *err) {
    *out = calloc(1, sizeof **out);
    if (!*out) return dm_error_set(err, DM_ERR_NOMEM, "out of memory for a convolution cache");
    return DM_OK;
}

void dm_conv_cache_free(dm_conv_cache *c) {
    if (!c) return;
    for (int i = 0; i < c->cache_count; i++) destroy_entry(c->cache[i]);
    if (c->stream) dnnl_stream_destroy(c->stream);
    free(c->workspace);
    free(c);
}

static bool same_key(const entry *e, const dm_conv2d_shape *s, int64_t B, int threads,
                     bool bf16) {
    return e->B == B && e->threads == threads && e->bf16 == bf16 && e->s.cin == s->cin &&
           e->s.cout == s->cout && e->s.H == s->H && e->s.W == s->W && e->s.k == s->k &&
           e->s.stride == s->stride && e->s.pad == s->pad;
}

/* The cached entry of a call, made on first use; NULL when the call stays on the im2col path. */
static entry *lookup(dm_conv_cache *c, const dm_conv2d_shape *s, int64_t B, bool bf16) {
    if (!c || s->cin < MIN_CHANNELS || s->cout < MIN_CHANNELS || B < 1) return NULL;
    const int threads = omp_get_max_threads();
#pragma omp critical(dm_conv2d_dnnl_engine)
    {
        if (!engine && !broken) broken = dnnl_engine_create(&engine, dnnl_cpu, 0) != dnnl_success;
    }
    if (broken) return NULL;
    if (!c->stream &&
        dnnl_stream_create(&c->stream, engine, dnnl_stream_default_flags) != dnnl_success) {
        c->stream = NULL;
        return NULL;
    }
    for (int i = 0; i < c->cache_count; i++)
        if (same_key(c->cache[i], s, B, threads, bf16))
            return c->cache[i]->usable ? c->cache[i] : NULL;
    entry *e = calloc(1, sizeof *e);
    if (!e) return NULL;
    e->s = *s;
    e->B = B;
    e->threads = threads;
    e->bf16 = bf16;
    e->usable = build_entry(e) &&
                reserve_workspace(c, e->fwd_bytes > e->bwd_bytes ? e->fwd_bytes : e->bwd_bytes);
    if (c->cache_count < CACHE_CAPACITY) {
        c->cache[c->cache_count++] = e;
    } else { /* full: replace the oldest */
        destroy_entry(c->cache[c->cache_next]);
        c->cache[c->cache_next] = e;
        c->cache_next = (c->cache_next + 1) % CACHE_CAPACITY;
    }
    return e->usable ? e : NULL;
}

static bool set(dnnl_memory_t m, const void *p) {
    return ok(dnnl_memory_set_data_handle(m, (void *)p));
}

static void *ws(const dm_conv_cache *c, size_t offset) { return (char *)c->workspace + offset; }

static bool run(dnnl_stream_t stream, const op *o, dnnl_exec_arg_t *args, int nargs,
                void *scratch) {
    if (o->scratch) {
        if (!set(o->scratch, scratch)) return false;
        args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, o->scratch};
    }
    return ok(dnnl_primitive_execute(o->prim, stream, nargs, args));
}

/* from -> to through r, or, for an alias, `to` pointed at from's buffer. */
static bool move(dnnl_stream_t stream, const reorder *r, dnnl_memory_t from,
                 const void *from_buf, dnnl_memory_t to, void *to_buf, void *scratch) {
    if (r->alias) return set(to, from_buf);
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}};
    return set(from, from_buf) && set(to, to_buf) && run(stream, &r->op, args, 2, scratch);
}

bool dm_conv2d_dnnl_forward(dm_conv_cache *c, float *y, const float *x, const float *w,
                            const float *b, const dm_conv2d_shape *s, int64_t B, bool bf16) {
    entry *e = lookup(c, s, B, bf16);
    if (!e) return false;
    dnnl_stream_t st = c->stream;
    void *scratch = ws(c, e->off_f_scratch);
    if (!b) {
        memset(ws(c, e->off_zero_bias), 0, (size_t)s->cout * sizeof(float));
        b = ws(c, e->off_zero_bias);
    }
    dnnl_exec_arg_t args[5] = {{DNNL_ARG_SRC, e->f_src},
                               {DNNL_ARG_WEIGHTS, e->f_wei},
                               {DNNL_ARG_BIAS, e->plain_b},
                               {DNNL_ARG_DST, e->f_dst}};
    /* an aliased output layout is y itself; y is all the call writes, so after a failure the
     * im2col path simply writes it again */
    const bool done =
        move(st, &e->x_to_f, e->plain_x, x, e->f_src, ws(c, e->off_f_src), scratch) &&
        move(st, &e->w_to_f, e->plain_w, w, e->f_wei, ws(c, e->off_f_wei), scratch) &&
        set(e->plain_b, b) && set(e->f_dst, e->f_to_y.alias ? (void *)y : ws(c, e->off_f_dst)) &&
        run(st, &e->fwd, args, 4, scratch) &&
        (e->f_to_y.alias ||
         move(st, &e->f_to_y, e->f_dst, ws(c, e->off_f_dst), e->plain_y, y, scratch)) &&
        ok(dnnl_stream_wait(st));
    if (!done) e->usable = false;
    return done;
}

bool dm_conv2d_dnnl_backward(dm_conv_cache *c, float *dx, float *dw, float *db, const float *dy,
                             const float *x, const float *w, const dm_conv2d_shape *s, int64_t B,
                             bool bf16, bool *dx_done) {
    *dx_done = false;
    entry *e = lookup(c, s, B, bf16);
    if (!e) return false;
    dnnl_stream_t st = c->stream;
    void *scratch = ws(c, e->off_b_scratch);
    bool fine = true;
    if (dx) {
        dnnl_exec_arg_t args[4] = {{DNNL_ARG_DIFF_DST, e->d_diff_dst},
                                   {DNNL_ARG_WEIGHTS, e->d_wei},
                                   {DNNL_ARG_DIFF_SRC, e->d_diff_src}};
        fine = move(st, &e->dy_to_d, e->plain_y, dy, e->d_diff_dst, ws(c, e->off_d_diff_dst),
                    scratch) &&
               move(st, &e->w_to_d, e->plain_w, w, e->d_wei, ws(c, e->off_d_wei), scratch) &&
               set(e->d_diff_src, ws(c, e->off_d_diff_src)) &&
               run(st, &e->bwd_data, args, 3, scratch);
        /* the last step adds into dx: once it has run, dx must not be added to again */
        fine = fine &&
               move(st, &e->d_to_dx, e->d_diff_src, ws(c, e->off_d_diff_src), e->plain_x, dx,
                    scratch) &&
               ok(dnnl_stream_wait(st));
        *dx_done = fine;
    }
    float *bias_grad = ws(c, e->off_w_diff_bias);
    dnnl_exec_arg_t args[5] = {{DNNL_ARG_SRC, e->w_src},
                               {DNNL_ARG_DIFF_DST, e->w_diff_dst},
                               {DNNL_ARG_DIFF_WEIGHTS, e->w_diff_wei},
                               {DNNL_ARG_DIFF_BIAS, e->w_diff_bias}};
    fine = fine &&
           move(st, &e->x_to_w, e->plain_x, x, e->w_src, ws(c, e->off_w_src), scratch) &&
           (e->share_dy && dx ? set(e->w_diff_dst, ws(c, e->off_w_diff_dst)) /* made above */
                              : move(st, &e->dy_to_w, e->plain_y, dy, e->w_diff_dst,
                                     ws(c, e->off_w_diff_dst), scratch)) &&
           set(e->w_diff_wei, ws(c, e->off_w_diff_wei)) && set(e->w_diff_bias, bias_grad) &&
           run(st, &e->bwd_weights, args, 4, scratch) &&
           move(st, &e->w_to_dw, e->w_diff_wei, ws(c, e->off_w_diff_wei), e->plain_w, dw,
                scratch) &&
           ok(dnnl_stream_wait(st));
    if (!fine) {
        e->usable = false;
        return false;
    }
    if (db)
        for (int64_t co = 0; co < s->cout; co++) db[co] += bias_grad[co];
    return true;
}

const char *dm_conv2d_dnnl_impl(dm_conv_cache *c, const dm_conv2d_shape *s, int64_t B,
                                bool bf16) {
    const entry *e = lookup(c, s, B, bf16);
    return e ? e->impl : NULL;
}

#endif
