/* The image-folder walk (dm_image_folder_load's listing: images at the top or one subfolder per
 * class, names, hidden entries, extensions, symlinks, FIFOs, sorting, labels). The input
 * describes a small tree, built under a private folder before each load and removed after:
 *
 *   byte 0: options (bit 0: size 8, else as stored; bits 1-2: channels 0, 1, 3, 0; bit 3: hflip)
 *   then records of 4 bytes and a name: op, parent, arg, name length (0..11), name bytes
 *     op % 4 == 0: a folder; 1: a file, arg % 6 picks its bytes (a grey 4 x 4 PNG, an RGB 5 x 3
 *     PNG, a grey 8 x 8 JPEG, an RGB 6 x 6 JPEG, the name's own bytes, nothing); 2: a symlink
 *     to arg % 5 (an earlier entry of the same folder, itself, ".", "..", a name that does not
 *     exist); 3: a FIFO (never opened: the walk must not block on one)
 *     parent % (folders so far) picks the folder it goes in (the top is folder 0; depth <= 3)
 *     name bytes map onto "abAB.-_pngjpegPNGJPG" (so ".png", ".JPEG", hidden names come up)
 *
 * at most 24 records. Each tree is loaded twice; the verdict must not change (a stale errno
 * changed it before), a refusal says why and leaves nothing allocated, and a loaded set must
 * be consistent: images in [-1, 1], labels in 0..classes-1, mirrors after the originals. */
#include "fuzz_util.h"
#include "fuzz_run.h"

#include "core/core.h"

#include <jpeglib.h>

#define MAX_RECORDS 24
#define MAX_DIRS 12

static char tree[600];
static uint8_t *contents[4];
static size_t content_len[4];

static void cleanup(void) { fz_rm_tree(tree); }

static void slurp(int k, const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) fz_die(path);
    contents[k] = malloc(4096);
    content_len[k] = fread(contents[k], 1, 4096, f);
    fclose(f);
    remove(path);
}

static void jpeg_file(int k, int w, int h, int comps) {
    uint8_t px[8 * 8 * 3];
    for (int i = 0; i < w * h * comps; i++) px[i] = (uint8_t)(i * 37);
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr e;
    c.err = jpeg_std_error(&e);
    jpeg_create_compress(&c);
    unsigned char *out = NULL;
    unsigned long len = 0;
    jpeg_mem_dest(&c, &out, &len);
    c.image_width = (JDIMENSION)w, c.image_height = (JDIMENSION)h;
    c.input_components = comps;
    c.in_color_space = comps == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(&c);
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = px + c.next_scanline * (size_t)w * (size_t)comps;
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    contents[k] = out;
    content_len[k] = len;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    snprintf(tree, sizeof tree, "%s/tree", fz_tmpdir());
    atexit(cleanup);
    float x[3 * 5 * 3];
    for (int i = 0; i < 45; i++) x[i] = (float)i / 22 - 1;
    char path[700];
    snprintf(path, sizeof path, "%s/init.png", fz_tmpdir());
    if (dm_image_write_png(path, x, 1, 4, 4, 1, NULL)) abort();
    slurp(0, path);
    if (dm_image_write_png(path, x, 3, 5, 3, 1, NULL)) abort();
    slurp(1, path);
    jpeg_file(2, 8, 8, 1);
    jpeg_file(3, 6, 6, 3);
    return 0;
}

static void put(const char *path, const uint8_t *data, size_t n) {
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) return; /* a name taken already */
    fz_fill(fd, data, n);
    close(fd);
}

/* Builds the tree the input describes; returns the options. */
static void build(const uint8_t *data, size_t size, dm_image_folder_options *o) {
    static const char alphabet[] = "abAB.-_pngjpegPNGJPG";
    fz_rm_tree(tree);
    if (mkdir(tree, 0700) != 0) fz_die(tree);
    dm_image_folder_options_default(o);
    if (size == 0) return;
    o->size = data[0] & 1 ? 8 : 0;
    o->channels = (int64_t[]){0, 1, 3, 0}[data[0] >> 1 & 3];
    o->hflip = data[0] >> 3 & 1;
    char dirs[MAX_DIRS][600];
    int depth[MAX_DIRS], ndirs = 1;
    char names[MAX_RECORDS][16]; /* of the entries so far, with their folder */
    int folder_of[MAX_RECORDS], nnames = 0;
    snprintf(dirs[0], sizeof dirs[0], "%s", tree);
    depth[0] = 0;
    size_t i = 1;
    for (int r = 0; r < MAX_RECORDS && i + 4 <= size; r++) {
        int op = data[i] % 4, parent = data[i + 1] % ndirs, arg = data[i + 2];
        size_t len = data[i + 3] % 12;
        i += 4;
        if (len > size - i) len = size - i;
        char name[16];
        for (size_t k = 0; k < len; k++) name[k] = alphabet[data[i + k] % (sizeof alphabet - 1)];
        name[len] = 0;
        i += len;
        if (!len) snprintf(name, sizeof name, "e%d", r);
        char path[700];
        snprintf(path, sizeof path, "%s/%s", dirs[parent], name);
        if (op == 0) {
            if (depth[parent] < 3 && ndirs < MAX_DIRS && mkdir(path, 0700) == 0) {
                snprintf(dirs[ndirs], sizeof dirs[ndirs], "%s", path);
                depth[ndirs++] = depth[parent] + 1;
            }
        } else if (op == 1) {
            int kind = arg % 6;
            if (kind < 4) put(path, contents[kind], content_len[kind]);
            else put(path, (const uint8_t *)name, kind == 4 ? len : 0);
        } else if (op == 2) {
            const char *target = (const char *[]){NULL, name, ".", "..", "nowhere.png"}[arg % 5];
            if (!target) {
                target = name;
                for (int k = nnames - 1; k >= 0; k--)
                    if (folder_of[k] == parent) {
                        target = names[k];
                        break;
                    }
            }
            if (symlink(target, path) != 0 && errno != EEXIST) fz_die("symlink");
        } else {
            if (mkfifo(path, 0600) != 0 && errno != EEXIST) fz_die("mkfifo");
        }
        snprintf(names[nnames], sizeof names[nnames], "%s", name);
        folder_of[nnames++] = parent;
    }
}

static void check(const dm_image_set *s, const dm_image_folder_options *o) {
    if (s->data.n < (o->hflip ? 2 : 1) || (o->hflip && s->data.n % 2) ||
        (s->c != 1 && s->c != 3) || (o->channels && s->c != o->channels) ||
        (o->size && (s->h != o->size || s->w != o->size)) || s->data.dim != s->c * s->h * s->w)
        abort();
    for (int64_t i = 0; i < s->data.n * s->data.dim; i++)
        if (!(s->data.x[i] >= -1 && s->data.x[i] <= 1)) abort();
    if (s->data.labels) {
        int64_t half = o->hflip ? s->data.n / 2 : s->data.n;
        for (int64_t i = 0; i < s->data.n; i++)
            if (s->data.labels[i] < 0 || s->data.labels[i] >= s->data.num_classes ||
                s->data.labels[i] != s->data.labels[i % half] ||
                (i > 0 && i < half && s->data.labels[i] < s->data.labels[i - 1]))
                abort();
    }
    if (o->hflip) {
        int64_t half = s->data.n / 2, w = s->w;
        for (int64_t i = 0; i < half; i++)
            for (int64_t r = 0; r < s->c * s->h; r++)
                for (int64_t x = 0; x < w; x++)
                    if (s->data.x[i * s->data.dim + r * w + x] !=
                        s->data.x[(half + i) * s->data.dim + r * w + (w - 1 - x)])
                        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    dm_image_folder_options o;
    build(data, size, &o);
    dm_status first = DM_OK;
    for (int pass = 0; pass < 2; pass++) {
        dm_error err = {0};
        dm_image_set s;
        dm_status st = dm_image_folder_load(&s, tree, &o, &err);
        if (pass == 0) first = st;
        else if (st != first) abort();
        if (st) {
            if (!err.msg[0] || s.data.x) abort();
        } else {
            check(&s, &o);
            dm_image_set_free(&s);
        }
    }
    return 0;
}
