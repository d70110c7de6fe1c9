/*
 * diffusion.h: the public API of libdiffusion (diffusion.c).
 *
 * Train a denoising diffusion model (DDPM) on low-dimensional data and sample from it:
 *
 *     dm_error err = {0};
 *     dm_dataset data;                       // N x D float points
 *     dm_toy2d_generate(&data, "swissroll", 100000, 42, &err);
 *     dm_train_config cfg;  dm_train_config_default(&cfg);
 *     dm_trainer *tr;
 *     if (dm_trainer_create(&tr, &cfg, &data, &err)) { fprintf(stderr, "%s\n", err.msg); ... }
 *     while (dm_trainer_step_count(tr) < cfg.steps) dm_trainer_step(tr, NULL, &err);
 *     dm_trainer_save(tr, "runs/swiss/checkpoint", &err);
 *
 *     dm_pipeline *p;                          // a trained model + its schedule, for sampling
 *     dm_pipeline_load(&p, "runs/swiss/checkpoint", &err);
 *     float *x = malloc(n * 2 * sizeof *x);    // samples come back in data units
 *     dm_sample_options so; dm_sample_options_default(&so);
 *     dm_pipeline_sample(p, x, n, &so, &err);
 *
 * Conventions: float32 tensors, row-major; schedule constants in double. Functions that can fail
 * return a dm_status and fill a dm_error (which may be NULL) with a message naming the file, field
 * or option; the library never prints and never exits. Whoever calls _create/_init calls _free.
 * Every random draw comes from a seeded counter-based generator (Philox4x32-10): a run is
 * reproducible from its seed and does not depend on the thread count. Different objects
 * (pipelines, trainers, models) may be used from different threads at the same time, each
 * keeping its own buffers and convolution primitives; one object, from one thread at a time.
 * The process-wide settings (threads, convolution backend and precision) are set beforehand.
 * Signals: with oneDNN before 3.11 (Debian's 2.6 among them), a signal handler that runs on a
 * thread inside the library's GEMM corrupts the heap (oneDNN issue #4845). A program that
 * installs handlers (Ctrl-C, profilers) blocks those signals in the threads that call the
 * library, before its first call (threads inherit the mask), and takes them on a thread of its
 * own with sigwait(), as the diffusion CLI does (src/cli/interrupt.c).
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* The version of this header; dm_version() gives the library's, which a program linked with a
 * shared libdiffusion may find different (the soname libdiffusion.so.MAJOR changes with MAJOR). */
#define DM_VERSION_MAJOR 0
#define DM_VERSION_MINOR 1
#define DM_VERSION_PATCH 0

/* Marks the public API. The library is built with hidden visibility, so only what this header
 * declares with DM_API is exported from libdiffusion.so (tests/lib_symbols.sh checks it). */
#ifndef DM_API
#if defined(__GNUC__) || defined(__clang__)
#define DM_API __attribute__((visibility("default")))
#else
#define DM_API
#endif
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* "MAJOR.MINOR.PATCH" of the library this program runs with. */
DM_API const char *dm_version(void);

/* ------------------------------------------------------------------------------------------ */
/* Errors                                                                                     */

typedef enum {
    DM_OK = 0,
    DM_ERR_ARG,      /* invalid argument or option value */
    DM_ERR_IO,       /* a file could not be opened, read, written or renamed */
    DM_ERR_FORMAT,   /* a file's contents are malformed or truncated */
    DM_ERR_NOMEM,    /* an allocation failed */
    DM_ERR_NUMERIC,  /* NaN or Inf where a finite number is needed */
    DM_ERR_MISMATCH, /* a file does not match what it is loaded into (shape, name, architecture) */
} dm_status;

typedef struct {
    dm_status status;
    char msg[1024];
} dm_error;

/* Records status and a printf-style message in err (if err is not NULL); returns status. */
DM_API dm_status dm_error_set(dm_error *err, dm_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Prefixes the message already in err with "context: " (for adding a file name); returns status. */
DM_API dm_status dm_error_prefix(dm_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
DM_API const char *dm_status_name(dm_status status);

/* ------------------------------------------------------------------------------------------ */
/* Threads and random numbers                                                                 */

/* Sets the OpenMP thread count; BLAS calls made from the library run single-threaded inside
 * OpenMP regions and with this many threads outside them. n <= 0 means all cores. */
DM_API void dm_set_num_threads(int n);
DM_API int dm_get_num_threads(void);
/* The BLAS's single-precision GEMM rate on n x n matrices at the current thread count, in
 * GFLOP/s (2 n^3 per product; median of `iters` after one warm-up); < 0 if out of memory. */
DM_API double dm_sgemm_gflops(int64_t n, int iters);

/* Time per layer type (for choosing the next optimisation): while enabled, the layer primitives
 * add their wall time to their category. Convolutions include their im2col and bias work;
 * attention is the softmax(q k^T) v kernel (its projections count as linear); elementwise is
 * SiLU, upsampling and skip concatenation; optimiser is Adam, clipping and the EMA. */
typedef enum {
    DM_PROFILE_CONV_FWD = 0,
    DM_PROFILE_CONV_BWD,
    DM_PROFILE_ATTENTION,
    DM_PROFILE_NORM,
    DM_PROFILE_LINEAR,
    DM_PROFILE_ELEMENTWISE,
    DM_PROFILE_OPTIMISER,
    DM_PROFILE_COUNT
} dm_profile_kind;

DM_API void dm_profile_enable(int on);
DM_API void dm_profile_reset(void);
DM_API double dm_profile_seconds(dm_profile_kind k);
DM_API const char *dm_profile_name(dm_profile_kind k);

/* Convolutions run through oneDNN's JIT kernels where the library was built with oneDNN
 * (libdnnl-dev), the layer has 8 or more channels in and out and oneDNN has a JIT kernel for it
 * on this CPU; through im2col + sgemm otherwise, or everywhere under DM_CONV_IM2COL. Both give
 * the same results within float rounding. Process-wide; the default is DM_CONV_AUTO. */
typedef enum { DM_CONV_AUTO = 0, DM_CONV_IM2COL = 1 } dm_conv_backend;
DM_API void dm_set_conv_backend(dm_conv_backend backend);
DM_API dm_conv_backend dm_get_conv_backend(void);
/* The arithmetic of the convolutions on the oneDNN path: float32 (the default), or bfloat16
 * products: x, w and dy rounded to bfloat16 (8 significant bits), sums and results in float32,
 * as mixed-precision training does it. Weights, gradients and optimiser state stay float32.
 * Fast on CPUs with AVX-512 BF16; oneDNN emulates it elsewhere. Process-wide. */
typedef enum { DM_PRECISION_FP32 = 0, DM_PRECISION_BF16 = 1 } dm_precision;
DM_API void dm_set_conv_precision(dm_precision precision);
DM_API dm_precision dm_get_conv_precision(void);
/* What a size-keeping 3x3 convolution of C channels on H x W images at batch B runs: oneDNN's
 * name for its implementation ("jit:avx512_core", ...) or "im2col+sgemm". */
DM_API const char *dm_conv_impl_name(int64_t C, int64_t H, int64_t W, int64_t B);

/* Philox4x32-10 counter-based generator. (seed, stream) select an independent sequence; offset
 * counts the 128-bit blocks consumed so far. Element i of a fill uses block offset + i/4, so a
 * fill done by any number of threads gives the same numbers. Save and restore by copying. */
typedef struct {
    uint64_t seed;
    uint64_t stream;
    uint64_t offset;
} dm_rng;

DM_API void dm_rng_init(dm_rng *rng, uint64_t seed, uint64_t stream);
/* The pure generator: 4 random words for block `block` of (seed, stream). */
DM_API void dm_rng_block(uint64_t seed, uint64_t stream, uint64_t block, uint32_t out[4]);
/* Uniform on the open interval (0, 1). */
DM_API void dm_rng_uniform(dm_rng *rng, float *out, size_t n);
/* Standard normal (Box-Muller in double from pairs of words). */
DM_API void dm_rng_normal(dm_rng *rng, float *out, size_t n);
/* Uniform integers in [lo, hi), hi > lo; bias below (hi - lo) / 2^64. */
DM_API void dm_rng_int(dm_rng *rng, int32_t *out, size_t n, int32_t lo, int32_t hi);
/* One double uniform on (0, 1) (consumes one block). */
DM_API double dm_rng_uniform1(dm_rng *rng);

/* ------------------------------------------------------------------------------------------ */
/* Data sets of low-dimensional points                                                        */

/* An owning N x D array of float points, with optional integer class labels. Image sets may
 * hold their rows as uint8 pixels instead (x NULL, u8 set): byte v stands for v / 127.5 - 1,
 * 4 times smaller, and possibly a read-only memory mapping of a file. The trainer takes either
 * form; functions that need floats refuse the uint8 form (dm_dataset_to_float converts it). */
typedef struct {
    float *x; /* (n, dim), or NULL when the rows are uint8 */
    int64_t n;
    int64_t dim;
    int32_t *labels;     /* (n) in [0, num_classes), or NULL */
    int32_t num_classes; /* 0 when unlabelled */
    const uint8_t *u8;   /* (n, dim) pixels when x is NULL, else NULL */
    void *u8_base;       /* what dm_dataset_free releases for u8: a dm_alloc block, or a mapping
                          * of u8_map_bytes bytes (munmap); NULL for a view it does not own */
    size_t u8_map_bytes;
    uint64_t u8_hash;    /* 0, or the training data hash of the pixels' float form (what
                          * dm_trainer_create would compute), known to the loader (the image
                          * cache) so training never reads every page of a mapped set */
} dm_dataset;

DM_API dm_status dm_dataset_init(dm_dataset *ds, int64_t n, int64_t dim, dm_error *err);
/* An owning set of n rows of dim uint8 pixels (set to 0): *pixels receives them to fill. */
DM_API dm_status dm_dataset_init_u8(dm_dataset *ds, int64_t n, int64_t dim, uint8_t **pixels,
                                    dm_error *err);
/* A uint8 set becomes a float one (v / 127.5 - 1, the trainer's values exactly); a float set is
 * left as it is. */
DM_API dm_status dm_dataset_to_float(dm_dataset *ds, dm_error *err);
/* A float set whose every value is a pixel level (v / 127.5 - 1 for a byte v, as the image
 * loaders give) becomes a uint8 one; otherwise DM_ERR_ARG and the set is left as it is. */
DM_API dm_status dm_dataset_to_u8(dm_dataset *ds, dm_error *err);
/* Gives an initialised set room for n labels (set to 0) and num_classes >= 1 classes. */
DM_API dm_status dm_dataset_add_labels(dm_dataset *ds, int32_t num_classes, dm_error *err);
DM_API void dm_dataset_free(dm_dataset *ds);

/* Built-in 2-D sets: "swissroll", "moons", "8gaussians", "checkerboard", "rings", "spiral".
 * NULL-terminated list of names, for help text and validation. Sets made of components come
 * labelled by component: moons (2 moons), 8gaussians (8 modes), rings (4 rings), spiral (2 arms). */
extern DM_API const char *const dm_toy2d_names[];
DM_API dm_status dm_toy2d_generate(dm_dataset *ds, const char *name, int64_t n, uint64_t seed,
                                   dm_error *err);
/* Reads an N x D float table: CSV (comma or whitespace separated, optional header line; a
 * malformed line is named in the error) or NPY (float32/float64, 2-D, C order). The format is
 * chosen by the file extension (.csv, .txt, .npy). NaN and Inf are refused. */
DM_API dm_status dm_dataset_load(dm_dataset *ds, const char *path, dm_error *err);
/* Writes points as CSV (.csv) or NPY (.npy) by extension, atomically (temporary + rename). */
DM_API dm_status dm_dataset_save(const dm_dataset *ds, const char *path, dm_error *err);

/* Largest data dimension of the low-dimensional path (MLP models, normalisers). */
#define DM_MAX_DIM 64

/* Per-dimension mean and standard deviation, for standardising to zero mean, unit variance. */
typedef struct {
    int64_t dim;
    double mean[DM_MAX_DIM]; /* (dim) */
    double std[DM_MAX_DIM];  /* (dim) */
} dm_normalizer;

DM_API dm_status dm_normalizer_fit(dm_normalizer *nz, const dm_dataset *ds, dm_error *err);
DM_API void dm_normalizer_apply(const dm_normalizer *nz, float *x, int64_t n);  /* data -> std */
DM_API void dm_normalizer_invert(const dm_normalizer *nz, float *x, int64_t n); /* std -> data */

/* ------------------------------------------------------------------------------------------ */
/* Image sets                                                                                 */

/* An owning set of n images, NCHW float in [-1, 1] (uint8 v -> v / 127.5 - 1). `data` views
 * the pixels as n rows of dim = c * h * w, the form the trainer takes, and holds the class
 * labels when there are any (data.labels, data.num_classes). */
typedef struct {
    dm_dataset data; /* (n, c*h*w) */
    int64_t c, h, w;
} dm_image_set;

DM_API dm_status dm_image_set_init(dm_image_set *s, int64_t n, int64_t c, int64_t h, int64_t w,
                                   int with_labels, dm_error *err);
DM_API void dm_image_set_free(dm_image_set *s);

/* Where Debian's dataset-fashion-mnist package puts the IDX files. */
#define DM_FASHION_MNIST_DIR "/usr/share/datasets/fashion-mnist"
/* Fashion-MNIST (or MNIST) from a folder of IDX files, gzipped or not: split "train"
 * (train-images-idx3-ubyte[.gz] + train-labels-idx1-ubyte[.gz]) or "test" (t10k-...).
 * dir NULL means DM_FASHION_MNIST_DIR. Images 1x28x28 with labels 0..9. */
DM_API dm_status dm_fashion_mnist_load(dm_image_set *s, const char *dir, const char *split,
                                       dm_error *err);
/* One IDX image file (magic 0x00000803, uint8, n x h x w) and optionally its label file
 * (0x00000801, n uint8 labels; NULL for none); gzip is detected by content. A wrong magic
 * number, a size that disagrees with the header, or a truncated file is an error naming it. */
DM_API dm_status dm_idx_load(dm_image_set *s, const char *images_path, const char *labels_path,
                             dm_error *err);

typedef struct {
    int64_t size;     /* output is size x size; 0 = the size of the first image (all must match) */
    int64_t channels; /* 1 (grey) or 3 (RGB); 0 = from the first image (all must match) */
    int hflip;        /* also add a horizontally mirrored copy of every image */
} dm_image_folder_options;

DM_API void dm_image_folder_options_default(dm_image_folder_options *o);
/* Every PNG and JPEG in dir (sorted by name). With size > 0 each image is centre-cropped to a
 * square and resized (area-averaging) to size x size; channels > 0 converts grey/RGB/alpha to
 * that many channels. If dir holds subfolders instead of images, each subfolder is a class
 * (labels in sorted-name order). An unreadable image, or mixed sizes/channels when size or
 * channels is 0, is an error naming the file. */
DM_API dm_status dm_image_folder_load(dm_image_set *s, const char *dir,
                                      const dm_image_folder_options *opt, dm_error *err);
/* dm_image_folder_open's report: whether it built the cache, how long that took, where the
 * cache is and why it was (re)built. */
typedef struct {
    int built;            /* 1: decoded the folder now; 0: reused the cache */
    double build_seconds; /* wall time of the build (0 when reused) */
    char path[4096];      /* the cache file */
    char reason[256];     /* why it was built: no cache yet, the folder changed, a corrupt cache */
} dm_image_cache_info;

/* dm_image_folder_load's images (the same pixels, order and labels) held as uint8 in a cache
 * file, memory-mapped read-only: s->data.x is NULL and s->data.u8 points into the mapping, so
 * the set takes page cache, not memory of its own, and a set larger than memory trains. The
 * folder is decoded once into cache_dir (NULL: DIR/.diffusion-cache, a hidden folder the
 * loaders skip) as a file named after the folder's path and the options, written atomically;
 * later calls reuse it while every image's name, size and mtime and the options are
 * unchanged, else rebuild it. A cache whose header, size or content checksum is wrong is
 * never used: it is rebuilt (info->reason says why). Each open reads the file through once to
 * check it. info may be NULL. */
DM_API dm_status dm_image_folder_open(dm_image_set *s, const char *dir,
                                      const dm_image_folder_options *opt, const char *cache_dir,
                                      dm_image_cache_info *info, dm_error *err);
/* An NPY array of images: uint8 (scaled to [-1, 1]) or float32/float64 (taken as already in
 * [-1, 1]), shaped (n, h, w) (grey) or (n, c, h, w) with c in {1, 3}. */
DM_API dm_status dm_image_npy_load(dm_image_set *s, const char *path, dm_error *err);
/* dm_image_npy_load without a copy for uint8 arrays: s->data.u8 points into a read-only memory
 * mapping of the file (x NULL). Float arrays are loaded as dm_image_npy_load does. */
DM_API dm_status dm_image_npy_open(dm_image_set *s, const char *path, dm_error *err);
/* Writes images (n, c, h, w) in [-1, 1] as uint8 NPY (n, c, h, w), atomically. */
DM_API dm_status dm_image_npy_save(const char *path, const float *x, int64_t n, int64_t c,
                                   int64_t h, int64_t w, dm_error *err);
/* The shape of an NPY file's array from its header alone (ndim up to 8 values in shape), to
 * decide how to load it: (n, h, w) or (n, c, h, w) images, or (n, dim) points. */
DM_API dm_status dm_npy_shape(const char *path, int *ndim, int64_t shape[8], dm_error *err);

/* PNG output of images in [-1, 1] (clipped; c = 1 grey or 3 RGB), written atomically.
 * One image (c, h, w) at `scale` times its size (nearest neighbour, scale >= 1). */
DM_API dm_status dm_image_write_png(const char *path, const float *x, int64_t c, int64_t h,
                                    int64_t w, int scale, dm_error *err);
/* n images (n, c, h, w) in a grid of `cols` columns (rows as needed), `pad` pixels of
 * background between and around them, each drawn at `scale` times its size. */
DM_API dm_status dm_image_write_grid(const char *path, const float *x, int64_t n, int64_t c,
                                     int64_t h, int64_t w, int cols, int pad, int scale,
                                     dm_error *err);

/* ------------------------------------------------------------------------------------------ */
/* Noise schedules                                                                            */

typedef enum {
    DM_SCHEDULE_LINEAR = 0, /* beta = linspace(beta_start, beta_end, T) (Ho et al.) */
    DM_SCHEDULE_COSINE,     /* Nichol & Dhariwal, offset s, beta clipped at 0.999 */
    DM_SCHEDULE_LOGSNR,     /* gamma = -log SNR linear in t from gamma_min to gamma_max (VDM) */
    DM_SCHEDULE_LEARNED,    /* VDM's learned monotone gamma_eta(t) (loss vdm-continuous); starts
                             * as logsnr, the trained one is saved with the checkpoint */
} dm_schedule_kind;

typedef struct {
    dm_schedule_kind kind;
    int32_t T;
    double beta_start, beta_end;  /* linear: 1e-4, 0.02 */
    double cosine_s;              /* cosine: 0.008 */
    double gamma_min, gamma_max;  /* log-SNR: -10, 10 */
} dm_schedule_config;

DM_API void dm_schedule_config_default(dm_schedule_config *cfg);
DM_API const char *dm_schedule_kind_name(dm_schedule_kind kind);
DM_API dm_status dm_schedule_kind_parse(const char *name, dm_schedule_kind *kind, dm_error *err);

/* Constants of a schedule, index i = t - 1 (0-based, as in diffusers), all (T) doubles. */
typedef struct {
    int32_t T;
    double *beta;           /* beta_t */
    double *alpha;          /* 1 - beta_t */
    double *alpha_bar;      /* prod_{s<=t} alpha_s */
    double *alpha_bar_prev; /* alpha_bar_{t-1}; 1 at i = 0 */
    double *beta_tilde;     /* (1 - ab_{t-1}) / (1 - ab_t) * beta_t; 0 at i = 0 */
} dm_schedule;

DM_API dm_status dm_schedule_init(dm_schedule *s, const dm_schedule_config *cfg, dm_error *err);
DM_API void dm_schedule_free(dm_schedule *s);
/* A schedule from its alpha_bar values (T, strictly decreasing in (0, 1)); betas follow as
 * 1 - ab_t / ab_{t-1} with ab_0 = 1. Used for respaced and learned schedules. */
DM_API dm_status dm_schedule_from_alpha_bar(dm_schedule *s, const double *alpha_bar, int32_t T,
                                            dm_error *err);
/* The reverse-process variance used where beta_tilde is 0 (t = 1): beta_tilde of t = 2, as in
 * improved DDPM's clipped log-variance (beta_1 when T = 1). */
DM_API double dm_schedule_beta_tilde_clipped(const dm_schedule *s, int32_t i);
/* S evenly spaced step indices from T - 1 down to 0 (S <= T), rounded: the levels of a strided
 * sampler. out (S), decreasing. */
DM_API dm_status dm_timesteps(int32_t T, int32_t S, int32_t *out, dm_error *err);
/* The schedule seen on the subset idx (S increasing indices of s): alpha_bar'_k = alpha_bar of
 * idx[k], beta'_k = 1 - alpha_bar'_k / alpha_bar'_{k-1} (improved DDPM's respacing). */
DM_API dm_status dm_schedule_respace(dm_schedule *out, const dm_schedule *s, const int32_t *idx,
                                     int32_t S, dm_error *err);

/* ------------------------------------------------------------------------------------------ */
/* Parameterisations: what the network predicts                                               */

/* At a noise level with alpha_bar = ab, x_t = sqrt(ab) x_0 + sqrt(1 - ab) eps, and any one of
 * these determines the others (MATH.md, "Three equivalent predictions"). */
typedef enum {
    DM_PRED_EPS = 0, /* eps */
    DM_PRED_X0,      /* x_0 */
    DM_PRED_V,       /* v = sqrt(ab) eps - sqrt(1 - ab) x_0 (Salimans & Ho) */
    DM_PRED_SCORE,   /* grad log q(x_t) = -eps / sqrt(1 - ab) (Tweedie) */
} dm_prediction;

/* "epsilon", "x0", "v", "score". */
DM_API const char *dm_prediction_name(dm_prediction p);
DM_API dm_status dm_prediction_parse(const char *name, dm_prediction *p, dm_error *err);
/* The one place the conversions live: eps = a * x_t + b * pred for a prediction of kind p. */
DM_API void dm_prediction_to_eps_coeffs(dm_prediction p, double ab, double *a, double *b);
/* out = the prediction of kind `to` equivalent to `in` of kind `from`, for x_t at alpha_bar ab;
 * n values, out may equal in. */
DM_API void dm_prediction_convert(dm_prediction from, dm_prediction to, double ab, const float *xt,
                                  const float *in, float *out, int64_t n);
/* The exact value of kind p for given x_0 and eps (the training target). */
DM_API void dm_prediction_target(dm_prediction p, double ab, const float *x0, const float *eps,
                                 float *out, int64_t n);

/* ------------------------------------------------------------------------------------------ */
/* Objectives                                                                                 */

typedef enum {
    DM_LOSS_SIMPLE = 0, /* mean squared error of the prediction in its own units (L_simple) */
    DM_LOSS_VLB,        /* the variational bound's terms T * L_{t-1} (exact KL weights) */
    DM_LOSS_VDM,        /* (T/2)(SNR(t-1) - SNR(t)) ||x_0 - x0_hat||^2 (seed 004 eq. 3) */
    DM_LOSS_HYBRID,     /* L_simple + lambda L_vlb, L_vlb training only a learned variance */
    DM_LOSS_VDM_CONTINUOUS, /* VDM in continuous time: prior + reconstruction +
                             * 0.5 E_t[gamma'(t) ||eps - eps_hat||^2], t ~ U(0, 1); schedule
                             * logsnr or learned; points */
} dm_loss_kind;

typedef enum {
    DM_VAR_BETA = 0,   /* sigma_t^2 = beta_t */
    DM_VAR_BETA_TILDE, /* sigma_t^2 = beta_tilde_t */
    DM_VAR_LEARNED,    /* log sigma^2 = f log beta + (1 - f) log beta_tilde, f = (out + 1) / 2
                        * from a second output (the model has twice the channels) */
} dm_reverse_var;

typedef enum {
    DM_TIME_UNIFORM = 0, /* t ~ U{1..T} */
    DM_TIME_IMPORTANCE,  /* p_t proportional to sqrt(E[L_t^2]) over the last 10 losses of each t
                          * (improved DDPM), uniform until every t has 10 */
} dm_time_sampling;

DM_API const char *dm_loss_kind_name(dm_loss_kind k); /* simple, vlb, vdm, hybrid, vdm-continuous */
DM_API dm_status dm_loss_kind_parse(const char *name, dm_loss_kind *k, dm_error *err);
DM_API const char *dm_reverse_var_name(dm_reverse_var v);        /* beta, beta-tilde, learned */
DM_API dm_status dm_reverse_var_parse(const char *name, dm_reverse_var *v, dm_error *err);
DM_API const char *dm_time_sampling_name(dm_time_sampling t);    /* uniform, importance */
DM_API dm_status dm_time_sampling_parse(const char *name, dm_time_sampling *t, dm_error *err);

/* The general per-step weight: the objective's mean term is
 *   mean over the batch of w[i] * mean over dimensions of (eps_hat - eps)^2,
 * eps_hat converted from the model's prediction. w (T) for prediction p, loss kind and a fixed
 * reverse variance var (used by DM_LOSS_VLB; DM_LOSS_HYBRID's mean term is L_simple's). */
DM_API dm_status dm_loss_weights(const dm_schedule *s, dm_prediction p, dm_loss_kind loss,
                                 dm_reverse_var var, double *w, dm_error *err);

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
} dm_unet_config;

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

/* ------------------------------------------------------------------------------------------ */
/* Optimiser                                                                                  */

/* Learning-rate schedules: diffusers' --lr_scheduler choices (diffusers.optimization
 * get_scheduler), docs/training.md. */
typedef enum {
    DM_LR_CONSTANT_WITH_WARMUP = 0, /* linear warm-up, then lr */
    DM_LR_CONSTANT,                 /* lr throughout; the warm-up is ignored, as diffusers does */
    DM_LR_LINEAR,                   /* warm-up, then linear decay to 0 at the last step */
    DM_LR_COSINE,                   /* warm-up, then a half cosine to 0 */
    DM_LR_COSINE_WITH_RESTARTS,     /* warm-up, then lr_num_cycles cosines with hard restarts */
    DM_LR_POLYNOMIAL,               /* warm-up, then (lr - lr_end) r^lr_power + lr_end */
} dm_lr_schedule;

typedef struct {
    double lr;           /* peak learning rate: 1e-3 */
    double beta1, beta2; /* 0.9, 0.999 */
    double eps;          /* 1e-8 */
    double weight_decay; /* decoupled (AdamW); 0 = Adam */
    int64_t warmup;      /* linear warm-up steps from lr/warmup to lr: 100 */
    double grad_clip;    /* clip the global gradient norm to this; 0 = off */
    double ema_decay;    /* exponential moving average of weights; 0 = off */
    dm_lr_schedule lr_schedule; /* DM_LR_CONSTANT_WITH_WARMUP */
    int32_t lr_num_cycles;      /* cosine_with_restarts: cosines over the decay: 1 */
    double lr_power;            /* polynomial: the power: 1 */
    double lr_end;              /* polynomial: the last learning rate, < lr: 1e-7 */
} dm_optim_config;

DM_API void dm_optim_config_default(dm_optim_config *cfg);
/* constant_with_warmup, constant, linear, cosine, cosine_with_restarts, polynomial */
DM_API const char *dm_lr_schedule_name(dm_lr_schedule s);
/* diffusers' names (a hyphen may stand for an underscore); others refused naming the allowed */
DM_API dm_status dm_lr_schedule_parse(const char *name, dm_lr_schedule *s, dm_error *err);
/* The learning rate of optimiser step `step` (1-based: the first update is step 1) of a run of
 * total_steps steps: cfg->lr times diffusers' lr_lambda(step), e.g. cosine after warm-up W
 * 0.5 (1 + cos(pi (step - W) / (total_steps - W))). diffusers' LambdaLR gives its k-th update
 * lr_lambda(k - 1); ours is the value one step later (so the warm-up starts at lr / W). */
DM_API double dm_lr_at(const dm_optim_config *cfg, int64_t step, int64_t total_steps);

/* ------------------------------------------------------------------------------------------ */
/* Training                                                                                   */

typedef enum {
    DM_ARCH_MLP = 0, /* low-dimensional points: dm_mlp_config */
    DM_ARCH_UNET,    /* images: dm_unet_config */
} dm_arch;

typedef struct {
    dm_arch arch;        /* DM_ARCH_MLP */
    dm_mlp_config mlp;   /* the network when arch is DM_ARCH_MLP */
    dm_unet_config unet; /* the network when arch is DM_ARCH_UNET (default "unet-28") */
    dm_schedule_config schedule;
    dm_optim_config optim;
    int64_t steps;      /* total optimiser steps: 8000 */
    int64_t batch;      /* examples per optimiser step (the effective batch): 512 */
    int64_t grad_accum; /* gradient accumulation: each step runs the batch as grad_accum
                         * micro-batches of batch / grad_accum (it must divide the batch), the
                         * same step to float rounding in less memory (docs/training.md): 1 */
    uint64_t seed;      /* everything random derives from it: 0 */
    int normalize;      /* standardise data to zero mean, unit variance (MLP only): 1 */
    int hflip;          /* images: mirror each drawn image left-right with probability 1/2: 0 */
    dm_prediction prediction;   /* what the network predicts: DM_PRED_EPS */
    dm_loss_kind loss;          /* DM_LOSS_SIMPLE */
    dm_reverse_var var;         /* the reverse variance the bound assumes (DM_LOSS_VLB) or
                                 * learns (DM_VAR_LEARNED doubles the model's outputs): BETA */
    dm_time_sampling timesteps; /* DM_TIME_UNIFORM */
    double hybrid_lambda;       /* DM_LOSS_HYBRID's weight of L_vlb (bits/dim): 0.001 */
    int32_t num_classes;        /* class-conditional training on labelled data with labels in
                                 * 0..K-1: K. The model gets K + 1 class embeddings, the last
                                 * (index K) the null label. 0 = unconditional */
    double p_uncond;            /* probability that a training label is replaced by the null
                                 * label (classifier-free guidance needs it > 0): 0.1 */
} dm_train_config;

DM_API void dm_train_config_default(dm_train_config *cfg);
/* The option checks dm_trainer_create makes before it looks at the data or the network (ranges,
 * the learning-rate schedule against steps, grad_accum dividing the batch), each refusal one
 * message naming the value. */
DM_API dm_status dm_train_config_check(const dm_train_config *cfg, dm_error *err);
/* The data dimension the configured network takes (c * h * w for a UNet). */
DM_API int64_t dm_train_config_dim(const dm_train_config *cfg);

typedef struct dm_trainer dm_trainer;

/* Copies (and standardises) the data; creates model, optimiser and EMA. With
 * cfg->num_classes > 0 the data must carry labels in 0..num_classes-1. Data held as uint8
 * (data->u8) are not copied for a UNet: the trainer reads the caller's pixels, converting only
 * each step's drawn rows, so `data` must stay alive and unchanged until dm_trainer_free (the
 * labels are copied). The same run results from either form of the same pixels. */
DM_API dm_status dm_trainer_create(dm_trainer **tr, const dm_train_config *cfg,
                                   const dm_dataset *data, dm_error *err);
/* Resumes from a checkpoint written by dm_trainer_save: the same weights, optimiser state, EMA,
 * step and random streams, so the run continues exactly. cfg->steps may be raised. The data
 * as for dm_trainer_create (uint8 pixels kept by reference). */
DM_API dm_status dm_trainer_resume(dm_trainer **tr, const char *checkpoint, const dm_dataset *data,
                                   int64_t steps, dm_error *err);
/* One optimiser step; *loss receives the mini-batch objective (may be NULL). A non-finite loss
 * returns DM_ERR_NUMERIC and leaves the weights untouched. */
/* Starts from another model's weights (fine-tuning, e.g. a diffusers UNet from
 * dm_pipeline_model): the same architecture, tensor by tensor; raw and EMA weights both.
 * Only before the first step. */
DM_API dm_status dm_trainer_init_weights(dm_trainer *tr, const dm_model *from, dm_error *err);
DM_API dm_status dm_trainer_step(dm_trainer *tr, double *loss, dm_error *err);
/* With skip set, a step whose loss or gradient is not finite is skipped instead: the weights stay
 * unchanged, the step is counted (its loss recorded as NaN, *loss = NaN) and DM_OK returned;
 * more than 100 such steps in a row still stop with DM_ERR_NUMERIC. Off by default. */
DM_API void dm_trainer_set_skip_nonfinite(dm_trainer *tr, int skip);
DM_API int64_t dm_trainer_skipped_steps(const dm_trainer *tr);
/* Data parallelism: a sum over the processes (ranks) of a job, in place: buf (n) receives the
 * element-wise sum of every rank's buf, identical on every rank (e.g. MPI_Allreduce with MPI_SUM
 * over MPI_FLOAT and MPI_IN_PLACE). Returns 0 on success. */
typedef int (*dm_allreduce_fn)(float *buf, size_t n, void *ctx);
/* Whether a run of cfg can be split over nranks ranks: nranks <= batch, and the batch a multiple
 * of nranks x grad_accum (each rank runs batch / nranks examples as grad_accum micro-batches);
 * not loss vdm-continuous when nranks > 1. One message naming the values. */
DM_API dm_status dm_train_config_check_parallel(const dm_train_config *cfg, int nranks,
                                                dm_error *err);
/* Makes tr rank `rank` of `nranks` identical trainers (the same config, data, seed and state, one
 * per process): each step every rank draws the whole batch's examples, timesteps and noise as
 * one process would, runs forward and backward on its own batch / nranks examples only (as
 * grad_accum micro-batches), and fn sums the gradient, the loss and (importance sampling) the
 * examples' losses over the ranks, so every rank takes the same optimiser step and keeps the
 * same weights, EMA, loss and timestep histories. Every rank calls dm_trainer_step the same
 * number of times (fn is collective); a step's non-finite loss or gradient is decided after the
 * sums, so every rank takes the same branch. The result equals one process with the same batch
 * to float rounding (the sums' order differs); with dropout, masks are drawn per micro-batch, so
 * nranks x grad_accum K equals one process with grad_accum nranks x K. nranks = 1 (fn may be
 * NULL) is the single-process step. Call before the first step of this process (after create or
 * resume: the saved state is global, so a run may resume with another rank count). */
DM_API dm_status dm_trainer_set_data_parallel(dm_trainer *tr, int rank, int nranks,
                                              dm_allreduce_fn fn, void *ctx, dm_error *err);
/* Testing only: poisons one input value of the given step (1-based) with NaN, to exercise the
 * non-finite path end to end. 0 = none. */
DM_API void dm_trainer_inject_nan(dm_trainer *tr, int64_t step);
DM_API int64_t dm_trainer_step_count(const dm_trainer *tr);
/* The learning rate the next step uses: dm_lr_at(&cfg->optim, optimiser steps + 1, cfg->steps). */
DM_API double dm_trainer_lr(const dm_trainer *tr);
DM_API const dm_train_config *dm_trainer_config(const dm_trainer *tr);
/* The model being trained (its current weights, not the EMA), owned by the trainer. */
DM_API dm_model *dm_trainer_model(dm_trainer *tr);
/* Loss of every step so far (dm_trainer_step_count values). */
DM_API const float *dm_trainer_loss_history(const dm_trainer *tr);
/* Writes a checkpoint folder (config.json, model.safetensors with the EMA weights,
 * train_state.safetensors); the previous checkpoint survives any crash during the write, and a
 * failed write (a full disk) removes its partial files. Refuses non-finite weights. */
DM_API dm_status dm_trainer_save(dm_trainer *tr, const char *dir, dm_error *err);
typedef struct dm_pipeline dm_pipeline;
/* A pipeline of the trainer's EMA weights as they are now (what dm_pipeline_load gives from a
 * checkpoint saved at this step), for samples during training; the trainer goes on unchanged.
 * Not for a learned schedule (DM_SCHEDULE_LEARNED): sample its saved checkpoint. */
DM_API dm_status dm_trainer_pipeline(const dm_trainer *tr, dm_pipeline **p, dm_error *err);
/* Another peak learning rate from the next step on (a resumed run given a new --lr): the
 * schedule's shape and position stay, its values scale to the new lr; saved in the config by the
 * next dm_trainer_save. Refuses lr outside (0, 1) and, for polynomial, lr <= lr_end. */
DM_API dm_status dm_trainer_set_lr(dm_trainer *tr, double lr, dm_error *err);
DM_API void dm_trainer_free(dm_trainer *tr);

/* Checkpoint folders of a training run. A run folder holds step-numbered checkpoints
 * DIR/checkpoint-N and DIR/checkpoint, the newest (the same files under a second name). */
/* The checkpoint folder a path names, into out (cap bytes): PATH itself when it holds a
 * config.json, else PATH/checkpoint, else PATH.old when PATH is a checkpoint folder's own name
 * (checkpoint, checkpoint-N) and is gone (a crash between the renames of a save), else
 * PATH/checkpoint.old, else the newest complete PATH/checkpoint-N. Never a sibling: runs/a.old
 * does not stand in for runs/a. dm_pipeline_load and dm_trainer_resume look up the same way. */
DM_API dm_status dm_checkpoint_find(const char *path, char *out, size_t cap, dm_error *err);
/* N for a folder name "checkpoint-N" (digits, no leading zero); -1 for any other name. */
DM_API int64_t dm_checkpoint_name_step(const char *name);
/* Removes a checkpoint folder as dm_trainer_save writes it: only its files (and temporaries of
 * a killed write), then the folder; a symbolic link is removed, never followed. A folder that
 * also holds other files is left with them and reported. */
DM_API dm_status dm_checkpoint_remove(const char *dir, dm_error *err);
/* Makes the checkpoint folder `to` hold the checkpoint files of `from` (hard links where the
 * file system allows, else copies), swapped in as dm_trainer_save swaps: a crash at any moment
 * leaves the old `to` or the new one complete. */
DM_API dm_status dm_checkpoint_copy(const char *from, const char *to, dm_error *err);

/* ------------------------------------------------------------------------------------------ */
/* Sampling                                                                                   */

/* The network seen by a sampler, at float timesteps t (B) (0-based step indices): eps_hat
 * (B, dim) for x (B, dim) and, when var_out is not NULL (a learned variance), the model's raw
 * variance output (B, dim), mapped to sigma^2 as DM_VAR_LEARNED says. A denoiser without a
 * variance output returns DM_ERR_ARG when var_out is not NULL. */
typedef dm_status (*dm_denoise_fn)(void *ctx, float *eps_hat, float *var_out, const float *x,
                                   const float *t, int64_t B, dm_error *err);
/* Called after each reverse step with the current x (B, dim) and the 0-based index i of the
 * step just taken (i = T - 1 first, 0 last; a strided sampler reports its subset's indices);
 * also once before the first step with i = T. */
typedef void (*dm_sample_observer)(void *ctx, int32_t i, const float *x, int64_t B, int64_t dim);

typedef enum {
    DM_SAMPLER_ANCESTRAL = 0, /* Ho et al. Algorithm 2, on all T steps or a respaced subset */
    DM_SAMPLER_DDIM,          /* Song et al.; eta = 0 deterministic */
    DM_SAMPLER_LANGEVIN,      /* annealed Langevin dynamics on the score (Song & Ermon) */
    DM_SAMPLER_PC,            /* predictor-corrector: ancestral step + Langevin corrector steps */
    DM_SAMPLER_DPMPP_2M,      /* DPM-Solver++(2M): second-order multistep ODE solver (Lu et al.) */
} dm_sampler_kind;

DM_API const char *dm_sampler_name(dm_sampler_kind k); /* ancestral, ddim, langevin, pc, dpmpp-2m */
DM_API dm_status dm_sampler_parse(const char *name, dm_sampler_kind *k, dm_error *err);

/* A diffusers scheduler (below, "diffusers schedulers"). */
typedef struct dm_scheduler dm_scheduler;

typedef struct {
    dm_sampler_kind sampler;  /* DM_SAMPLER_ANCESTRAL */
    int32_t steps;            /* network levels: 0 = all T (langevin: min(T, 100)); S < T =
                               * dm_timesteps(T, S) */
    double eta;               /* DDIM noise: 0 (deterministic) .. 1 */
    dm_reverse_var var;       /* DM_VAR_BETA; DM_VAR_LEARNED needs a variance output. Used by
                               * ancestral and pc; DDIM's noise is eta's, Langevin's its step's;
                               * dpmpp-2m adds no noise */
    int32_t corrector_steps;  /* Langevin steps per level: 0 = the default (langevin 20, pc 1) */
    double langevin_delta;    /* annealed Langevin step a_i = delta sigma_i^2 / sigma_min^2:
                               * 1e-4 (stable for T = 1000 linear, cosine and logsnr) */
    double pc_snr;            /* PC corrector: step 2 alpha_i (r ||z|| / ||s_hat||)^2 with the
                               * norms averaged over the batch, as Song et al.'s code: r = 0.16 */
    uint64_t seed;            /* 0 */
    uint64_t stream;          /* 0; independent draws of the same seed use different streams */
    int clip_x0;              /* 0; 1 clips the predicted x_0 to [-1, 1] before each step's mean
                               * (images; diffusers' clip_sample) */
    int ddim_clipped_eps;     /* 0: DDIM with clip_x0 keeps the network's eps in the direction
                               * term, as diffusers' default (use_clipped_model_output False);
                               * 1: recomputes eps from the clipped x_0 (GLIDE's form) */
    const float *x_T;         /* NULL: x_T is drawn from (seed, stream); else the start (B, dim),
                               * for reproducing a run made elsewhere */
    const float *noise;       /* NULL: every step's noise is drawn; else (S, B, dim), block k the
                               * noise of the k-th step taken (S = the steps of the run; a step
                               * that adds no noise ignores its block). Ancestral, DDIM and the
                               * diffusers schedulers; refused for langevin and pc */
    const dm_scheduler *scheduler; /* NULL; else dm_sample runs this diffusers
                               * scheduler's loop (sampler, var, clip_x0 ignored; steps = its
                               * num_inference_steps, 0 = the pipeline's default) */
    dm_sample_observer observe; /* optional */
    void *observe_ctx;
} dm_sample_options;

DM_API void dm_sample_options_default(dm_sample_options *opt);

/* Draws B samples into x (B, dim) with the sampler of opt, in the model's (standardised)
 * space. Every random draw comes from (seed, stream), so a fixed seed reproduces the samples.
 * Incompatible options (DDIM steps above T, a learned variance the denoiser cannot give) are
 * refused with a message saying what is allowed. */
DM_API dm_status dm_sample(const dm_schedule *s, dm_denoise_fn denoise, void *ctx, float *x,
                           int64_t B, int64_t dim, const dm_sample_options *opt, dm_error *err);
/* Network evaluations per sample that dm_sample makes with these options (levels, times the
 * corrector's steps for langevin and pc), for progress and throughput figures. */
DM_API int64_t dm_sample_evaluations(const dm_schedule *s, const dm_sample_options *opt);
/* Ho et al. Algorithm 2: x_T ~ N(0, I), x_{t-1} = mu_theta + sigma_t z (z = 0 at t = 1).
 * The noise comes from (seed, stream): step i draws B*dim normals after x_T's. With clip_x0
 * the mean is the posterior mean of q(x_{t-1} | x_t, x0_hat) with x0_hat clipped to [-1, 1].
 * opt->sampler and opt->steps are ignored (dm_sample handles the subset). */
DM_API dm_status dm_sample_ancestral(const dm_schedule *s, dm_denoise_fn denoise, void *ctx,
                                     float *x, int64_t B, int64_t dim, const dm_sample_options *opt,
                                     dm_error *err);

/* ------------------------------------------------------------------------------------------ */
/* diffusers schedulers                                                                       */

/* The sampling loop of a diffusers scheduler as its scheduler_config.json describes it
 * (diffusers 0.31.0's DDPMScheduler, DDIMScheduler and DPMSolverMultistepScheduler), so that a
 * diffusers pipeline folder samples as diffusers does: the same x_T and noise give diffusers'
 * result. Every key of those classes is honoured or refused with its value named;
 * docs/diffusers.md lists what happens to each. */
typedef enum {
    DM_SCHEDULER_DDPM = 0,
    DM_SCHEDULER_DDIM,
    DM_SCHEDULER_DPMSOLVER,
} dm_scheduler_class;
typedef enum {
    DM_SPACING_LEADING = 0,
    DM_SPACING_TRAILING,
    DM_SPACING_LINSPACE,
} dm_timestep_spacing;
/* DDPMScheduler's variance_type (fixed_large_log is refused: diffusers 0.31 takes the square
 * root of log(beta), which is NaN) */
typedef enum {
    DM_DDPM_FIXED_SMALL = 0, /* beta_tilde, clamped at 1e-20 */
    DM_DDPM_FIXED_SMALL_LOG, /* the same through exp(0.5 log) */
    DM_DDPM_FIXED_LARGE,     /* beta of the step */
    DM_DDPM_LEARNED,         /* the model's variance channel is sigma^2 itself */
    DM_DDPM_LEARNED_RANGE,   /* improved DDPM: interpolates log beta_tilde .. log beta */
} dm_ddpm_variance;

struct dm_scheduler {
    dm_scheduler_class cls;
    int32_t T;                 /* num_train_timesteps */
    double *betas;             /* (T) as diffusers computes them (float32 values) */
    dm_prediction prediction;  /* prediction_type: epsilon, v_prediction or sample */
    dm_ddpm_variance variance; /* DDPM's variance_type (DDIM, DPM: fixed_small) */
    int variance_output;       /* the model has a variance channel (learned, learned_range) */
    int clip_sample;           /* DDPM, DDIM */
    double clip_sample_range;
    int thresholding;          /* dynamic thresholding of x_0 (Imagen) */
    double dynamic_thresholding_ratio, sample_max_value;
    dm_timestep_spacing spacing;
    int32_t steps_offset;
    int set_alpha_to_one;      /* DDIM: the last step goes to alpha_bar 1, else alpha_bar_0 */
    int solver_order;          /* DPM: 1 or 2 */
    int heun;                  /* DPM: solver_type heun (else midpoint) */
    int lower_order_final, euler_at_final;
    int final_sigma_min;       /* DPM: final_sigmas_type sigma_min (else zero) */
    double lambda_min_clipped; /* DPM: -inf = off */
    int32_t default_steps;     /* num_inference_steps when none is asked: the pipeline's
                                * default (DDPMPipeline 1000, DDIMPipeline 50; DPM-Solver 20) */
};

/* Reads a scheduler_config.json; unknown keys, other classes and unsupported values are
 * refused with the file, key and value named. Free with dm_scheduler_free. */
DM_API dm_status dm_scheduler_read(dm_scheduler *sc, const char *path, dm_error *err);
/* The class's defaults, as diffusers' DDPMScheduler() etc. construct it. */
DM_API dm_status dm_scheduler_default(dm_scheduler *sc, dm_scheduler_class cls, dm_error *err);
DM_API void dm_scheduler_free(dm_scheduler *sc);
DM_API const char *dm_scheduler_class_name(dm_scheduler_class c); /* DDPMScheduler, ... */
/* The scheduler's alpha_bar as a schedule (cumulative product as torch.cumprod computes it). */
DM_API dm_status dm_scheduler_schedule(const dm_scheduler *sc, dm_schedule *s, dm_error *err);
/* diffusers' set_timesteps(S): the S timesteps of a run, decreasing, into out (S). */
DM_API dm_status dm_scheduler_timesteps(const dm_scheduler *sc, int32_t S, int32_t *out,
                                        dm_error *err);
/* One DDPMScheduler.step or DDIMScheduler.step (eta from opt) from timestep t with S inference
 * steps (prev = t - T / S): x (B, dim) updated in place from eps_hat, var (the raw variance
 * channel, learned variances only) and noise (B, dim; NULL = none, DDPM at t = 0 and DDIM with
 * eta 0 need none). s is dm_scheduler_schedule's. */
DM_API dm_status dm_scheduler_step(const dm_scheduler *sc, const dm_schedule *s, int32_t S,
                                   int32_t t, float *x, const float *eps, const float *var,
                                   const float *noise, double eta, int clipped_eps, int64_t B,
                                   int64_t dim, dm_error *err);

/* A trained model with its schedule and normalisation, loaded from a checkpoint folder. */
typedef struct dm_pipeline dm_pipeline;

/* checkpoint: one of our checkpoint folders (or a training run's folder), or a diffusers
 * folder (dm_pipeline_load_diffusers with its own scheduler and no variant). */
DM_API dm_status dm_pipeline_load(dm_pipeline **p, const char *checkpoint, dm_error *err);
DM_API int64_t dm_pipeline_dim(const dm_pipeline *p);
DM_API const dm_model *dm_pipeline_model(const dm_pipeline *p);
DM_API const dm_schedule *dm_pipeline_schedule(const dm_pipeline *p);
DM_API const dm_normalizer *dm_pipeline_normalizer(const dm_pipeline *p);
/* Draws n samples into x (n, dim), in data units. The observer sees standardised values.
 * Images are drawn DM_PIPELINE_IMAGE_CHUNK at a time, chunk k with stream opt->stream + k
 * (and rows of opt->x_T, (n, dim), when given; given noise allows one chunk only).
 * opt NULL means the defaults. */
#define DM_PIPELINE_IMAGE_CHUNK 256
DM_API dm_status dm_pipeline_sample(dm_pipeline *p, float *x, int64_t n,
                                    const dm_sample_options *opt, dm_error *err);
/* The pipeline as a dm_denoise_fn (ctx = the pipeline): the model's prediction converted to
 * eps_hat, and its raw variance output when asked. For custom samplers and evaluations. */
DM_API dm_status dm_pipeline_denoise(void *ctx, float *eps_hat, float *var_out, const float *x,
                                     const float *t, int64_t B, dm_error *err);
/* The training configuration the checkpoint was written with (prediction, loss, variance...). */
DM_API const dm_train_config *dm_pipeline_train_config(const dm_pipeline *p);
/* A diffusers folder's scheduler (its scheduler_config.json), NULL for our checkpoints: pass it
 * as dm_sample_options.scheduler to sample as diffusers does. */
DM_API const dm_scheduler *dm_pipeline_scheduler(const dm_pipeline *p);
/* A diffusers folder: a pipeline folder as DDPMPipeline / DDIMPipeline.save_pretrained writes it
 * (model_index.json, unet/, scheduler/) or a bare UNet2DModel folder (config.json and weights).
 * scheduler_config (NULL: the pipeline's scheduler/scheduler_config.json, with the pipeline's
 * default steps, DDPMPipeline 1000 and DDIMPipeline 50; for a bare UNet diffusers' DDPMScheduler
 * defaults) replaces the folder's scheduler, keeping its class's default steps; variant (NULL:
 * none)
 * loads diffusion_pytorch_model.<variant>.safetensors as diffusers' variant argument does.
 * dm_pipeline_load calls this for diffusers folders. */
DM_API dm_status dm_pipeline_load_diffusers(dm_pipeline **p, const char *dir,
                                            const char *scheduler_config, const char *variant,
                                            dm_error *err);
DM_API void dm_pipeline_free(dm_pipeline *p);

/* ------------------------------------------------------------------------------------------ */
/* Classifiers and guidance                                                                   */

/* An image classifier p_phi(y | x_t, t): the UNet's encoder (dm_unet_config.classifier_classes)
 * trained with cross-entropy, on noisy inputs x_t at t ~ U{0..T-1} of a diffusion schedule (a
 * noise-conditioned classifier, for classifier guidance) or on clean images at t = 0 (an
 * evaluation classifier, whose pooled features feed FID-FMNIST and precision/recall). */
typedef struct {
    dm_unet_config net;     /* an encoder classifier: "classifier-28" */
    int noisy;              /* 1: train on x_t of `schedule` (guidance); 0: on clean x_0 */
    dm_schedule_config schedule; /* the diffusion model's schedule (noisy only) */
    dm_optim_config optim;  /* Adam lr 1e-3, warm-up 100, clip 1, EMA 0.999 */
    int64_t steps;          /* 2000 */
    int64_t batch;          /* 128 */
    uint64_t seed;          /* 0 */
    int hflip;              /* mirror drawn images with probability 1/2: 0 */
} dm_classifier_config;

DM_API void dm_classifier_config_default(dm_classifier_config *cfg);

/* Called every step with the mean cross-entropy; a non-zero return stops training early (the
 * weights so far are still saved). */
typedef int (*dm_classifier_progress)(void *ctx, int64_t step, int64_t steps, double loss);

/* Trains on labelled images (data->labels in 0..net.classifier_classes-1, rows c * h * w in
 * [-1, 1]) and writes the classifier folder dir (config.json, classifier/config.json,
 * model.safetensors with the EMA weights) atomically. *steps_done (may be NULL) receives the
 * steps taken. */
DM_API dm_status dm_classifier_train(const dm_classifier_config *cfg, const dm_dataset *data,
                                     const char *dir, dm_classifier_progress progress, void *ctx,
                                     int64_t *steps_done, dm_error *err);

typedef struct dm_classifier dm_classifier;

DM_API dm_status dm_classifier_load(dm_classifier **c, const char *dir, dm_error *err);
DM_API void dm_classifier_free(dm_classifier *c);
DM_API const dm_classifier_config *dm_classifier_get_config(const dm_classifier *c);
DM_API int32_t dm_classifier_num_classes(const dm_classifier *c);
/* The width of the pooled features (the last block's channels). */
DM_API int64_t dm_classifier_feature_dim(const dm_classifier *c);
/* Logits (B, K) and, when features is not NULL, the pooled features (B, feature_dim) of images
 * x (B, c*h*w) at timesteps t (B) (0-based; NULL = all 0, as an evaluation classifier is used). */
DM_API dm_status dm_classifier_forward(dm_classifier *c, float *logits, float *features,
                                       const float *x, const float *t, int64_t B, dm_error *err);
/* grad (B, c*h*w) = d/dx log p_phi(y_b | x_b, t_b), through the classifier's backward pass. */
DM_API dm_status dm_classifier_grad_log_prob(dm_classifier *c, float *grad, const float *x,
                                             const float *t, const int32_t *y, int64_t B,
                                             dm_error *err);
/* The fraction of data->n labelled images whose largest logit is their label, at timesteps t
 * (n) or NULL (t = 0). */
DM_API dm_status dm_classifier_accuracy(dm_classifier *c, const dm_dataset *data, const float *t,
                                        double *accuracy, dm_error *err);
/* Refuses a classifier that cannot guide a model over schedule s with images (ch, h, w): one
 * trained on clean images, another image shape, or another noise schedule (alpha_bar compared
 * to 1e-9). */
DM_API dm_status dm_classifier_check_guidance(const dm_classifier *c, const dm_schedule *s,
                                              int64_t ch, int64_t h, int64_t w, dm_error *err);

/* How a pipeline's samples are steered. */
typedef struct {
    const int32_t *labels; /* (n) the class of each sample, or NULL: unconditional (a
                            * class-conditional model then sees its null label) */
    double cfg_scale;      /* classifier-free guidance w: eps~ = (1 + w) eps(x, y) - w eps(x, null),
                            * the two evaluations batched into one network call; 0 = plain
                            * conditional sampling */
    dm_classifier *classifier; /* classifier guidance: eps~ -= gamma sqrt(1 - alpha_bar_t)
                                * grad_x log p_phi(y | x_t, t); NULL = none */
    double classifier_scale;   /* gamma */
    int unconditional_model;   /* 1: a class-conditional model sees its null label whatever the
                                * labels (classifier guidance of its unconditional prediction) */
} dm_guidance;

DM_API void dm_guidance_default(dm_guidance *g);
/* dm_pipeline_sample with guidance (g NULL = none). A class outside the model's (or the
 * classifier's) classes, guidance of an unconditional model, a model trained without the null
 * label (p_uncond 0) under cfg_scale, or a classifier that does not match the model are refused
 * with a message saying which. */
DM_API dm_status dm_pipeline_sample_guided(dm_pipeline *p, float *x, int64_t n,
                                           const dm_sample_options *opt, const dm_guidance *g,
                                           dm_error *err);

/* ------------------------------------------------------------------------------------------ */
/* Likelihood: the variational bound on -log p(x_0)                                           */

typedef struct {
    int exact;            /* 1: all T terms per example; 0: an unbiased estimate: L_0 exactly
                           * and t drawn uniformly from 2..T, t_draws times per example */
    int32_t t_draws;      /* estimate: 1 */
    dm_reverse_var var;   /* the reverse variance of p (DM_VAR_LEARNED: the model's output) */
    int discrete;         /* 1: data on 256 levels in [-1, 1] (images; Ho et al.'s discretised
                           * decoder, a probability); 0: continuous data (a Gaussian density) */
    uint64_t seed;        /* the forward-process noise: 0 */
    int64_t batch;        /* examples per network call: 256 */
    double *per_example;  /* optional (n): each example's bound in nats (in the model's units) */
    /* optional: called after each network call with the calls done and the total */
    void (*progress)(void *ctx, int64_t done, int64_t total);
    void *progress_ctx;
} dm_nll_options;

DM_API void dm_nll_options_default(dm_nll_options *o);

/* Means over the examples, in nats per example, and the bound in bits per dimension. */
typedef struct {
    int64_t n, dim;
    int exact;
    double prior;      /* L_T = KL(q(x_T | x_0) || N(0, I)) */
    double diffusion;  /* sum over t = 2..T of L_{t-1} */
    double decoder;    /* L_0 = -log p(x_0 | x_1) */
    double log_det;    /* added for data units (points standardised by the model: sum log std) */
    double total;      /* prior + diffusion + decoder + log_det */
    double total_se;   /* standard error of total over the examples (and t draws) */
    double bpd, bpd_se; /* total / (dim ln 2) */
} dm_nll_report;

/* The bound for x0 (n, dim) in the model's own units, with any denoiser over schedule s. */
DM_API dm_status dm_nll_bound(const dm_schedule *s, dm_denoise_fn denoise, void *ctx,
                              const float *x0, int64_t n, int64_t dim, const dm_nll_options *o,
                              dm_nll_report *r, dm_error *err);
/* The bound of a trained model on data in data units: standardised as the model was (points,
 * with log_det so the result is a density of the data as given) or used as they are (images,
 * with the discretised decoder whatever o->discrete says). */
DM_API dm_status dm_pipeline_nll(dm_pipeline *p, const dm_dataset *data, const dm_nll_options *o,
                                 dm_nll_report *r, dm_error *err);

/* ------------------------------------------------------------------------------------------ */
/* Evaluation of samples against data                                                         */

/* Biased (V-statistic) squared MMD with the Gaussian kernel exp(-|x - y|^2 / (2 h^2)), returned
 * as its square root. */
DM_API double dm_mmd_rbf(const float *x, int64_t n, const float *y, int64_t m, int64_t dim,
                         double h);
/* Median-heuristic bandwidth: the median pairwise distance among (up to) the first 2000 rows. */
DM_API double dm_median_bandwidth(const float *x, int64_t n, int64_t dim);
/* Sliced 2-Wasserstein distance over `projections` random unit directions (from seed), between
 * two sets of equal size n. */
DM_API double dm_sliced_wasserstein(const float *x, const float *y, int64_t n, int64_t dim,
                                    int projections, uint64_t seed);

/* Samples against held-out data, each figure beside its floor: the same figure between two
 * independent draws of the data (ref_a, ref_b). All three sets have the same n and dim; they are
 * standardised with ref_a's mean and std first, and the MMD bandwidth is the median heuristic
 * on ref_a. Sliced Wasserstein uses 256 directions from `seed`. */
typedef struct {
    int64_t n;
    double bandwidth;
    double mmd, mmd_floor;
    double swd, swd_floor;
} dm_eval_report;

DM_API dm_status dm_eval_compare(dm_eval_report *r, const dm_dataset *samples,
                                 const dm_dataset *ref_a, const dm_dataset *ref_b, uint64_t seed,
                                 dm_error *err);

/* Image-quality metrics in a feature space (e.g. a classifier's penultimate layer, as
 * `diffusion eval --metric fid` uses): the Frechet distance between Gaussian fits of two feature
 * sets (FID when the features are Inception's), and improved precision and recall (Kynkaanniemi
 * et al. 2019). Features are float rows, row-major (n, dim); statistics are double. Sizes in
 * mind: dim 64..256, n up to ~10^4 per set. Results do not depend on the thread count. */
/* Mean (dim) and covariance (dim x dim, row-major, unbiased: divisor n - 1) of n feature rows,
 * accumulated in double from the centred rows. n >= 2, dim >= 1, every value finite
 * (DM_ERR_NUMERIC otherwise). */
DM_API dm_status dm_feature_stats(const float *x, int64_t n, int64_t dim, double *mean,
                                  double *cov, dm_error *err);

/* Frechet distance between N(mu1, S1) and N(mu2, S2):
 *     |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^{1/2}).
 * tr (S1 S2)^{1/2} is sum sqrt(eig(A S2 A)) with A = S1^{1/2}: A S2 A is similar to S1 S2 (when S1
 * is invertible; by continuity otherwise) and symmetric, so two symmetric eigendecompositions
 * (LAPACK dsyevd) do the work. Only the symmetric parts (S + S^T) / 2 of the covariances are used.
 * Each covariance must be positive semidefinite: an eigenvalue below -1e-6 times its largest is
 * DM_ERR_ARG; smaller negative eigenvalues are rounding and count as 0. The result is the squared
 * distance (as FID is reported), clamped at 0 since rounding can take identical inputs just below.
 * dim in 1..16384. */
DM_API dm_status dm_frechet_distance(const double *mu1, const double *cov1, const double *mu2,
                                     const double *cov2, int64_t dim, double *out, dm_error *err);

/* Improved precision and recall with k-nearest-neighbour balls. A real row's ball is centred on it
 * with radius its distance to its k-th nearest other real row (a duplicate row counts, at distance
 * 0); likewise for generated rows within the generated set. precision = fraction of generated rows
 * inside (distance <= radius) at least one real ball; recall = fraction of real rows inside at
 * least one generated ball. Squared Euclidean distances come from |a|^2 + |b|^2 - 2 a.b in float
 * (the products by the library's sgemm on 1024 x 1024 tiles, so memory stays a few MiB whatever
 * n), clamped at 0, and are compared squared. Float rounding at a ball's boundary can move a row
 * in or out relative to an exact computation, so results match a double-precision twin to about
 * 1/n.
 * k >= 1; both sets need more than k rows; every value finite (DM_ERR_NUMERIC otherwise). */
DM_API dm_status dm_precision_recall(const float *real, int64_t n_real, const float *gen,
                                     int64_t n_gen, int64_t dim, int k, double *precision,
                                     double *recall, dm_error *err);

/* ------------------------------------------------------------------------------------------ */
/* Pictures (PNG, drawn with cairo)                                                           */

/* Scatter plot of samples (dim >= 2, first two coordinates) over data points in grey. */
DM_API dm_status dm_plot_scatter(const char *path, const float *data, int64_t n_data,
                                 const float *samples, int64_t n_samples, int64_t dim,
                                 const char *title, dm_error *err);
/* A row of `frames` scatter panels, frames (frames, n, dim) with one label each. */
DM_API dm_status dm_plot_strip(const char *path, const float *frames, int frames_count, int64_t n,
                               int64_t dim, const char *const *labels, dm_error *err);
/* Loss against step, log-scale y, raw values faint and a moving average on top. */
DM_API dm_status dm_plot_loss(const char *path, const float *loss, int64_t n, dm_error *err);
/* Lines through (x[i], y[s * n_points + i]) for each of n_series (1..8) named series, both axes
 * logarithmic, x ticks at the x values; values <= 0 or NaN are gaps. ref > 0 adds a dashed
 * horizontal line there (e.g. a floor or a ratio of 1). */
DM_API dm_status dm_plot_curves(const char *path, const double *x, int64_t n_points,
                                const double *y, const char *const *names, int n_series,
                                const char *xlabel, const char *ylabel, double ref, dm_error *err);
/* The same with a linear x axis (x may be 0, e.g. a guidance scale), y still logarithmic. */
DM_API dm_status dm_plot_curves_linear_x(const char *path, const double *x, int64_t n_points,
                                         const double *y, const char *const *names, int n_series,
                                         const char *xlabel, const char *ylabel, double ref,
                                         dm_error *err);

/* ------------------------------------------------------------------------------------------ */
/* Continuous time: SDEs and their samplers                                                    */

/* Continuous-time diffusion: the forward SDEs of Song et al. 2021 ("Score-Based Generative
 * Modeling through Stochastic Differential Equations"; their code, score_sde's sde_lib.py and
 * sampling.py, is the anchor) and samplers of their reverse-time SDE and probability-flow ODE,
 * driven by a score callback score(x, t) at continuous t in [eps, 1].
 *
 *     dm_sde sde; dm_sde_default(&sde, DM_SDE_VP);
 *     dm_sde_sample_options so; dm_sde_sample_options_default(&so);
 *     so.sampler = DM_SDE_ODE_RK45;
 *     dm_sde_sample_stats st;
 *     dm_sde_sample(&sde, my_score, my_ctx, x, B, dim, &so, &st, &err);  // st.score_evals
 *
 * Every process here is linear, f(x, t) = f(t) x, with a scalar diffusion g(t), and its
 * perturbation kernel is p_0t(x_t | x_0) = N(mean(t) x_0, std(t)^2 I):
 *   VP:     beta(t) = beta_min + t (beta_max - beta_min), B(t) = int_0^t beta,
 *           f = -beta / 2, g^2 = beta, mean = exp(-B / 2), std^2 = 1 - exp(-B); prior N(0, I).
 *   sub-VP: f = -beta / 2, g^2 = beta (1 - exp(-2 B)), mean = exp(-B / 2), std = 1 - exp(-B)
 *           (the standard deviation, not the variance: std^2 <= the VP's); prior N(0, I).
 *   VE:     sigma(t) = sigma_min (sigma_max / sigma_min)^t, f = 0,
 *           g^2 = d sigma^2 / dt = 2 log(sigma_max / sigma_min) sigma(t)^2, mean = 1,
 *           std = sigma(t); prior N(0, sigma_max^2 I). As in score_sde the kernel's std is
 *           sigma(t) itself, so std(0) = sigma_min: p_0 is the data smoothed by N(0, sigma_min^2),
 *           and the SDE carries the kernel's variance exactly from there (d std^2 / dt = g^2).
 * docs/continuous-time.md has the samplers' formulas and what the tests measured.
 */

/* ------------------------------------------------------------------------------------------ */
/* Processes                                                                                  */

typedef enum {
    DM_SDE_VP = 0, /* variance preserving: DDPM's process in continuous time */
    DM_SDE_SUBVP,  /* sub-VP: VP's drift, a smaller diffusion (Song et al. eq. 31) */
    DM_SDE_VE,     /* variance exploding: SMLD / NCSN's noise levels in continuous time */
} dm_sde_kind;

typedef struct {
    dm_sde_kind kind;
    double beta_min;  /* VP, sub-VP: beta(0) = 0.1 */
    double beta_max;  /* VP, sub-VP: beta(1) = 20 (with T = 1000 steps of beta(t) / T: Ho et
                       * al.'s linear schedule 1e-4 .. 0.02) */
    double sigma_min; /* VE: sigma(0) = 0.01 */
    double sigma_max; /* VE: sigma(1) = 50 (score_sde's CIFAR-10 value); dm_sde_ve_sigma_max
                       * gives Song & Ermon's data-dependent choice */
    double eps;       /* the smallest time the samplers reach (and where noise removal
                       * happens): 1e-3 for VP and sub-VP, 1e-5 for VE, as score_sde samples */
} dm_sde;

/* score_sde's defaults for kind (the values above). */
DM_API void dm_sde_default(dm_sde *sde, dm_sde_kind kind);
/* DM_ERR_ARG with a message naming the field and what is allowed: 0 <= beta_min <= beta_max,
 * beta_max > 0; 0 < sigma_min < sigma_max; 0 < eps < 1; all finite. */
DM_API dm_status dm_sde_check(const dm_sde *sde, dm_error *err);
DM_API const char *dm_sde_kind_name(dm_sde_kind kind); /* "vp", "subvp", "ve" */
/* Accepts vp, subvp (or sub-vp), ve; DM_ERR_ARG naming the allowed names otherwise. */
DM_API dm_status dm_sde_kind_parse(const char *name, dm_sde_kind *kind, dm_error *err);

/* The drift coefficient f(t) of f(x, t) = f(t) x. */
DM_API double dm_sde_drift(const dm_sde *sde, double t);
/* The diffusion coefficient g(t). */
DM_API double dm_sde_diffusion(const dm_sde *sde, double t);
/* The perturbation kernel p_0t(x_t | x_0) = N(mean x_0, std^2 I) at t (score_sde's
 * marginal_prob): either pointer may be NULL. */
DM_API void dm_sde_marginal(const dm_sde *sde, double t, double *mean, double *std);
/* The prior N(0, std^2 I) the samplers start from: 1 (VP, sub-VP) or sigma_max (VE). */
DM_API double dm_sde_prior_std(const dm_sde *sde);
/* log N(z; 0, std^2 I) of the prior for one point z (dim), in nats. */
DM_API double dm_sde_prior_logp(const dm_sde *sde, const float *z, int64_t dim);
/* Song & Ermon's (2020, technique 1) sigma_max: the largest Euclidean distance between two of
 * the n points x (n, dim), in double, exact over all pairs. With 0 < max_points < n, over
 * max_points of them drawn without replacement from (seed): a lower bound of the full value,
 * for sets where n^2 / 2 pairs cost too much. DM_ERR_ARG for n < 2 or non-finite values. */
DM_API dm_status dm_sde_ve_sigma_max(const float *x, int64_t n, int64_t dim, int64_t max_points,
                                     uint64_t seed, double *sigma_max, dm_error *err);

/* ------------------------------------------------------------------------------------------ */
/* Scores                                                                                     */

/* The score grad_x log p_t(x) of the perturbed data at continuous time t (one t for the whole
 * batch, in [sde->eps, 1]): score (B, dim) for x (B, dim). */
typedef dm_status (*dm_score_fn)(void *ctx, float *score, const float *x, double t, int64_t B,
                                 int64_t dim, dm_error *err);

/* A discrete eps-predicting model (dm_denoise_fn on a dm_schedule of T steps) as the score of
 * the VP SDE, as score_sde's get_score_fn does for its discrete DDPM checkpoints: the model is
 * called at timestep t (T - 1) and score = -eps_hat / sqrt(1 - alpha_bar[floor(t (T - 1))]).
 * With round_index the timestep is rounded to the nearest index and alpha_bar taken there
 * (for models that only accept integer steps). Meaningful when the schedule discretises the
 * SDE: the default VP SDE is the linear schedule 1e-4 .. 0.02 at T = 1000 (alpha_bar_i
 * within 0.1% of mean(t_i)^2 there). ctx for dm_sde_denoiser_score. */
typedef struct {
    const dm_sde *sde;     /* must be DM_SDE_VP (others: DM_ERR_ARG) */
    const dm_schedule *s;  /* the model's schedule */
    dm_denoise_fn denoise; /* the model */
    void *ctx;             /* its context */
    int round_index;       /* 0: t (T - 1) as a float timestep, as score_sde; 1: nearest index */
} dm_sde_denoiser;

DM_API dm_status dm_sde_denoiser_score(void *ctx, float *score, const float *x, double t, int64_t B,
                                       int64_t dim, dm_error *err);

/* ------------------------------------------------------------------------------------------ */
/* Samplers                                                                                   */

/* Fixed-step samplers run on N steps of a uniform grid t_k = 1 - k (1 - eps) / N, k = 0..N,
 * from t_0 = 1 to t_N = eps; x starts from the prior (or opt->x_T). With s = score(x, t_k),
 * h = t_k - t_{k+1} and f, g at t_k:
 *   EULER_MARUYAMA:    x <- x - h (f x - g^2 s) + g sqrt(h) z (the reverse-time SDE).
 *   REVERSE_DIFFUSION: score_sde's predictor from the forward process's exact transition
 *                      x_{t_k} = c x_{t_{k+1}} + sqrt(v) z between the grid points
 *                      (c = mean(t_k) / mean(t_{k+1}), v = std(t_k)^2 - c^2 std(t_{k+1})^2):
 *                      x <- (2 - c) x + v s + sqrt(v) z. For VP this is score_sde's DDPM
 *                      discretisation (beta = 1 - c^2), for VE its SMLD one (v = sigma_k^2 -
 *                      sigma_{k+1}^2); for sub-VP the exact transition replaces score_sde's
 *                      Euler-Maruyama form.
 *   PC:                at each t_k, corrector_steps Langevin steps (score_sde's
 *                      LangevinCorrector) then the predictor's step: e = 2 alpha (snr ||z|| /
 *                      ||s||)^2 with the norms of each sample averaged over the batch, alpha =
 *                      c^2 (VP, sub-VP) or 1 (VE), x <- x + e s + sqrt(2 e) z.
 *   ODE_EULER, ODE_HEUN, ODE_RK4: the probability-flow ODE dx/dt = f x - g^2 s / 2 from 1 to
 *                      eps with explicit Euler (1 evaluation a step), Heun's trapezoid (2) or
 *                      classical Runge-Kutta (4), the state in double.
 *   ODE_RK45:          the same ODE with Dormand-Prince 5(4) and step control as scipy's
 *                      solve_ivp(method='RK45') (score_sde's ODE sampler): the batch is one
 *                      system, error norm RMS over all B * dim values of err / (atol + rtol
 *                      max(|x|, |x_new|)), first step by scipy's rule.
 * The output is x at t = eps (a sample of p_eps), then with opt->denoise Tweedie's noise removal
 * x <- (x + std(eps)^2 score(x, eps)) / mean(eps) = E[x_0 | x_eps] (one more evaluation). */
typedef enum {
    DM_SDE_EULER_MARUYAMA = 0,
    DM_SDE_REVERSE_DIFFUSION,
    DM_SDE_PC,
    DM_SDE_ODE_EULER,
    DM_SDE_ODE_HEUN,
    DM_SDE_ODE_RK4,
    DM_SDE_ODE_RK45,
} dm_sde_sampler_kind;

/* "euler-maruyama", "reverse-diffusion", "pc", "ode-euler", "ode-heun", "ode-rk4", "ode-rk45" */
DM_API const char *dm_sde_sampler_name(dm_sde_sampler_kind kind);
DM_API dm_status dm_sde_sampler_parse(const char *name, dm_sde_sampler_kind *kind, dm_error *err);

/* Called with x (B, dim) at t = 1 before the first step and after each step at the time
 * reached (RK45: after each accepted step); once more after noise removal, at t = 0. */
typedef void (*dm_sde_observer)(void *ctx, double t, const float *x, int64_t B, int64_t dim);

typedef struct {
    dm_sde_sampler_kind sampler;   /* DM_SDE_PC */
    int32_t steps;                 /* N for the fixed-step samplers; 0 = the sampler's default
                                    * (EM, reverse diffusion, PC: 1000 as score_sde; ODE Euler
                                    * 1000; Heun 100 and RK4 50, 200 evaluations each). Ignored
                                    * by RK45 */
    dm_sde_sampler_kind predictor; /* PC: DM_SDE_REVERSE_DIFFUSION or DM_SDE_EULER_MARUYAMA */
    int32_t corrector_steps;       /* PC: Langevin steps per level, 0 = 1 (score_sde) */
    double snr;                    /* PC: the corrector's signal-to-noise ratio, 0.16 */
    double rtol, atol;             /* RK45: 1e-5 and 1e-5 (score_sde); > 0 */
    int64_t max_evals;             /* RK45: give up (DM_ERR_NUMERIC) beyond this many score
                                    * evaluations: 100000; 0 = no limit */
    int denoise;                   /* 1: Tweedie's noise removal at eps (score_sde's
                                    * noise_removal, on by default); 0: x at eps */
    uint64_t seed;                 /* 0 */
    uint64_t stream;               /* 0 */
    const float *x_T;              /* NULL: drawn from the prior; else the start (B, dim) */
    const float *noise;            /* NULL: drawn; else the normals of every noise-adding step
                                    * in order, (S, B, dim): EM and reverse diffusion one block
                                    * a step (S = N), PC corrector_steps blocks then the
                                    * predictor's at each step (S = N (corrector_steps + 1)).
                                    * Refused for the ODE samplers */
    dm_sde_observer observe;       /* optional */
    void *observe_ctx;
} dm_sde_sample_options;

DM_API void dm_sde_sample_options_default(dm_sde_sample_options *opt);

/* What a run did: score evaluations (each over the whole batch), steps taken (RK45: accepted)
 * and, for RK45, steps rejected. */
typedef struct {
    int64_t score_evals;
    int32_t steps;
    int32_t rejected;
} dm_sde_sample_stats;

/* Draws B samples into x (B, dim) with opt's sampler of sde's reverse process. Every random
 * draw comes from (seed, stream) in a fixed order, x_T's B*dim normals first (when not given),
 * then each noise block in the order of opt->noise, so a seed reproduces the samples for any
 * thread count. stats may be NULL. Options out of range are refused with a message naming the
 * option and what is allowed. */
DM_API dm_status dm_sde_sample(const dm_sde *sde, dm_score_fn score, void *ctx, float *x, int64_t B,
                               int64_t dim, const dm_sde_sample_options *opt,
                               dm_sde_sample_stats *stats, dm_error *err);
/* Score evaluations per run with these options (noise removal included); -1 for RK45, whose
 * count depends on the problem. */
DM_API int64_t dm_sde_sample_evaluations(const dm_sde_sample_options *opt);

/* ------------------------------------------------------------------------------------------ */
/* Likelihood through the probability-flow ODE                                                */

/* The exact log-likelihood of the probability-flow ODE's model (Song et al. 2021, appendix D;
 * score_sde's likelihood.py): the instantaneous change of variables integrates
 *   d/dt [x, delta] = [u(x, t), div u(x, t)],  u = f(t) x - g(t)^2 s(x, t) / 2,
 *   div u = dim f(t) - g(t)^2 div s(x, t) / 2,
 * from t = eps to 1 with RK45 (x and delta as one system per batch, as score_sde's solve_ivp
 * call), then log p_eps(x) = log p_1(x(1)) + delta(1) with p_1 the prior N(0, prior_std^2 I).
 * div s is the trace of the score's Jacobian:
 *   DM_TRACE_EXACT:      sum over the dim basis vectors e_d of e_d^T J e_d (dim products a point:
 *                        for low dimensions);
 *   DM_TRACE_RADEMACHER, DM_TRACE_GAUSSIAN: Hutchinson's estimate, the mean over `probes`
 *                        vectors v (entries +-1, or standard normals) of v^T J v, the probes
 *                        drawn once per example and kept for the whole integration (score_sde),
 *                        so the result is an unbiased estimate of a smooth function's value.
 * Each product v^T J comes from the vjp callback when given (one forward and backward pass per
 * probe: a network's backward pass with respect to its input), else from central finite
 * differences of the score along v (two evaluations per probe, step fd_step * std(t): see
 * dm_ode_nll_options). */

/* score (B, dim) at x (B, dim) and t, and vjp (B, dim) with row b = v_b^T (d score / d x)(x_b)
 * for probes v (B, dim). */
typedef dm_status (*dm_score_vjp_fn)(void *ctx, float *score, float *vjp, const float *x,
                                     const float *v, double t, int64_t B, int64_t dim,
                                     dm_error *err);

typedef enum {
    DM_TRACE_EXACT = 0,
    DM_TRACE_RADEMACHER,
    DM_TRACE_GAUSSIAN,
} dm_trace_kind;

DM_API const char *dm_trace_kind_name(dm_trace_kind k); /* exact, rademacher, gaussian */
DM_API dm_status dm_trace_kind_parse(const char *name, dm_trace_kind *k, dm_error *err);

typedef struct {
    dm_trace_kind trace; /* DM_TRACE_EXACT */
    int32_t probes;      /* Hutchinson: probes per example, >= 1: 1 (score_sde) */
    double rtol, atol;   /* RK45 tolerances, > 0: 1e-5 each (score_sde) */
    double eps;          /* the start time: 0 = the SDE's eps; else in (0, 1) */
    int64_t max_evals;   /* RK45 right-hand sides per batch before giving up: 100000; 0 = none */
    double fd_step;      /* finite differences (no vjp): the step along a probe relative to
                          * std(t), the scale on which the perturbed data's score can vary:
                          * 1e-2 (truncation about 1e-4 relative; float rounding of the score
                          * about 1e-5 relative at that step); > 0 */
    uint64_t seed;       /* the probes (and dm_pipeline_ode_nll's dequantisation): 0 */
    int64_t batch;       /* examples integrated as one system: 256 */
    double *per_example; /* optional (n): each example's -log p in nats (the units of x) */
    double *delta;       /* optional (n): each example's delta(1) */
    float *z;            /* optional (n, dim): each example's x(1) */
    /* optional: called after each batch with the examples done and n */
    void (*progress)(void *ctx, int64_t done, int64_t total);
    void *progress_ctx;
} dm_ode_nll_options;

DM_API void dm_ode_nll_options_default(dm_ode_nll_options *o);

/* Means over the examples, in nats per example. */
typedef struct {
    int64_t n, dim;
    dm_trace_kind trace;
    int32_t probes;       /* 0 for the exact trace */
    int vjp;              /* 1: products by the vjp callback; 0: by finite differences */
    double prior_logp;    /* mean log p_1(x(1)) */
    double delta;         /* mean delta(1) */
    double log_det;       /* added for data units (dm_pipeline_ode_nll: points standardised by the
                           * model, sum log std; images, dim log 128 for pixel values in [0, 256)) */
    double nll;           /* -(prior_logp + delta) + log_det */
    double nll_se;        /* its standard error over the examples */
    double bpd, bpd_se;   /* nll / (dim ln 2) */
    int64_t score_evals;  /* RK45 right-hand sides, summed over the batches */
    int32_t steps, rejected; /* RK45 steps, summed over the batches */
} dm_ode_nll_report;

/* -log p_eps(x) for x (n, dim) through sde's probability-flow ODE with score (vjp may be NULL:
 * finite differences). DM_ERR_ARG for options out of range (tolerances <= 0, probes < 1, ...),
 * naming what is allowed. */
DM_API dm_status dm_sde_ode_nll(const dm_sde *sde, dm_score_fn score, dm_score_vjp_fn vjp,
                                void *ctx, const float *x, int64_t n, int64_t dim,
                                const dm_ode_nll_options *o, dm_ode_nll_report *r, dm_error *err);

/* Samples of a trained discrete eps (or x0, v) model with a continuous-time sampler of the VP SDE
 * its linear schedule discretises (score_sde's: beta(t) = T beta_i; dm_sde_denoiser_score's
 * mapping, the null label for a class-conditional model trained with label drops): x (n, dim) in
 * data units for points, in [-1, 1] for images, as dm_pipeline_sample. Refused for other
 * schedules, with a message. */
DM_API dm_status dm_pipeline_sde_sample(dm_pipeline *p, float *x, int64_t n,
                                        const dm_sde_sample_options *opt,
                                        dm_sde_sample_stats *stats, dm_error *err);

/* The ODE likelihood of a trained discrete eps (or x0, v) model as the VP SDE's score
 * (dm_sde_denoiser_score's mapping, t (T - 1) and alpha_bar[floor(t (T - 1))]), on data in data
 * units. sde NULL: the VP SDE the model's schedule discretises, beta_min = T beta_1 and
 * beta_max = T beta_T (the schedule must be linear in beta, else DM_ERR_ARG); else it must be
 * DM_SDE_VP (sub-VP and VE: DM_ERR_ARG, naming vp) and is used as given. per_example is in data
 * units (log_det included).
 * Points are standardised as the model was (log_det = sum log std). Images (values on 256
 * levels in [-1, 1]) are dequantised as score_sde does: pixel k in 0..255 becomes
 * (k + u) / 256, u ~ U(0, 1) from o->seed, mapped to [-1, 1); the result is a density of pixel
 * values in [0, 256) (log_det = dim log 128), so bpd = the model's bits per dimension + 7
 * (score_sde's offset for centred data). The products v^T J use the network's backward pass
 * (an MLP, or a UNet without dropout); a UNet with dropout uses finite differences. */
DM_API dm_status dm_pipeline_ode_nll(dm_pipeline *p, const dm_sde *sde, const dm_dataset *data,
                                     const dm_ode_nll_options *o, dm_ode_nll_report *r,
                                     dm_error *err);

#ifdef __cplusplus
}
#endif
