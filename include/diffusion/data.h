/* diffusion/data.h: data sets: points and images.
 * Part of the public API of libdiffusion; <diffusion.h> includes every part. */
#pragma once

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

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
/* Resizes every image so its shorter side is size, then keeps the centre size x size:
 * torchvision's Resize(size, bilinear, antialias=True) then CenterCrop(size), as diffusers'
 * train_unconditional.py does (PIL's bilinear filter, on the float pixels). Labels stay. */
DM_API dm_status dm_image_set_resize(dm_image_set *s, int64_t size, dm_error *err);
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

#ifdef __cplusplus
}
#endif
