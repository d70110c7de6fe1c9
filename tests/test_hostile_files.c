/* Hostile input files, written by hand: each must be refused with a DM_ERR_* status and a
 * message naming the file. The size cases (headers claiming gigabytes or terabytes in a file of
 * a few bytes) run in a forked child whose address space is capped at 512 MiB above what it
 * already uses, so a parser that allocates the claimed size on trust fails them (its allocation
 * fails or the child dies) instead of passing slowly. The other cases are the findings of the
 * libFuzzer harnesses in fuzz/ (fuzz/README.md), kept here as regressions. Cases that
 * test_safetensors, test_npy and test_images already cover are not repeated. */
#include "core/core.h"
#include "diffusion/checkpoint.h"
#include "io/safetensors.h"

#include "test_util.h"

#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <zlib.h>

/* ---------------------------------------------------------------------------------------- */
/* Helpers                                                                                   */

static void write_bytes(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f || (len && fwrite(data, 1, len, f) != len) || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

static void write_text(const char *path, const char *text) { write_bytes(path, text, strlen(text)); }

static void put_be32(uint8_t *b, uint32_t v) {
    b[0] = (uint8_t)(v >> 24), b[1] = (uint8_t)(v >> 16), b[2] = (uint8_t)(v >> 8);
    b[3] = (uint8_t)v;
}

/* A refusal: the status wanted (any error when want is DM_OK) and a message naming the file. */
static void expect(const char *what, dm_status got, const dm_error *err, dm_status want,
                   const char *path) {
    if (want == DM_OK)
        CHECK(got != DM_OK, "%s: should be refused", what);
    else
        CHECK(got == want, "%s: status %s, expected %s (%s)", what, dm_status_name(got),
              dm_status_name(want), err->msg);
    CHECK(err->msg[0] && strstr(err->msg, path) != NULL, "%s: the message should name %s: '%s'",
          what, path, err->msg);
}

/* An 8-byte little-endian header length (the given one), the header, then data_bytes bytes. */
static void write_safetensors(const char *path, uint64_t len_field, const char *header,
                              size_t data_bytes) {
    uint8_t buf[1024] = {0};
    size_t len = strlen(header);
    for (int b = 0; b < 8; b++) buf[b] = (uint8_t)(len_field >> (8 * b));
    memcpy(buf + 8, header, len);
    write_bytes(path, buf, 8 + len + data_bytes);
}

/* A version 1.0 .npy file of this header dict (padded) and data_bytes bytes of data. */
static void write_npy(const char *path, const char *dict, size_t data_bytes) {
    uint8_t buf[1024] = {0};
    size_t hlen = (10 + strlen(dict) + 1 + 63) / 64 * 64 - 10;
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    buf[8] = (uint8_t)hlen, buf[9] = (uint8_t)(hlen >> 8);
    memset(buf + 10, ' ', hlen);
    memcpy(buf + 10, dict, strlen(dict));
    buf[10 + hlen - 1] = '\n';
    write_bytes(path, buf, 10 + hlen + data_bytes);
}

/* An IDX header (magic, dims) and data_bytes bytes, gzipped when gz. */
static void write_idx(const char *path, int gz, uint32_t magic, const uint32_t *dims, int ndim,
                      size_t data_bytes) {
    uint8_t buf[64] = {0};
    put_be32(buf, magic);
    for (int d = 0; d < ndim; d++) put_be32(buf + 4 + 4 * d, dims[d]);
    size_t len = 4 + 4 * (size_t)ndim + data_bytes;
    if (!gz) {
        write_bytes(path, buf, len);
        return;
    }
    gzFile f = gzopen(path, "wb");
    if (!f || gzwrite(f, buf, (unsigned)len) != (int)len || gzclose(f) != Z_OK) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(1);
    }
}

/* A gzip file whose stream inflates to an IDX header (magic, dims), then about pad bytes of
 * stored blocks of 16 zero bytes (valid), then a byte of 0xff (a reserved block
 * type), with trailer length field isize: a reader that inflates the file reports the
 * corruption; one that checks the header against the trailer and the file size first never
 * gets near it. */
static void write_idx_gz_forged(const char *path, uint32_t magic, const uint32_t *dims, int ndim,
                                size_t pad, uint32_t isize) {
    uint8_t head[16], gz_head[10] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3}, body[64];
    put_be32(head, magic);
    for (int d = 0; d < ndim; d++) put_be32(head + 4 + 4 * d, dims[d]);
    z_stream z;
    memset(&z, 0, sizeof z);
    if (deflateInit2(&z, 9, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK) exit(1);
    z.next_in = head, z.avail_in = 4 + 4 * (unsigned)ndim;
    z.next_out = body, z.avail_out = sizeof body;
    if (deflate(&z, Z_SYNC_FLUSH) != Z_OK) exit(1); /* byte-aligned, not the final block */
    const size_t body_len = sizeof body - z.avail_out;
    deflateEnd(&z);
    const size_t blocks = pad / 21, len = sizeof gz_head + body_len + 21 * blocks + 1 + 8;
    uint8_t *buf = calloc(len, 1);
    if (!buf) exit(1);
    memcpy(buf, gz_head, sizeof gz_head);
    memcpy(buf + sizeof gz_head, body, body_len);
    for (size_t i = 0; i < blocks; i++) /* not final, stored; LEN 16, NLEN ~16; 16 zeros */
        memcpy(buf + sizeof gz_head + body_len + 21 * i, "\x00\x10\x00\xef\xff", 5);
    buf[len - 9] = 0xff;
    memset(buf + len - 8, 0, 4); /* CRC: never reached */
    for (int b = 0; b < 4; b++) buf[len - 4 + b] = (uint8_t)(isize >> (8 * b));
    write_bytes(path, buf, len);
    free(buf);
}

/* PNG chunk: length, type, data, CRC (zlib's crc32 over type and data) at out; returns bytes. */
static size_t png_chunk(uint8_t *out, const char *type, const uint8_t *data, uint32_t len,
                        uint32_t len_field) {
    put_be32(out, len_field);
    memcpy(out + 4, type, 4);
    if (len) memcpy(out + 8, data, len);
    put_be32(out + 8 + len, (uint32_t)crc32(0, out + 4, 4 + len));
    return 12 + len;
}

/* A PNG: signature, IHDR (w x h, 8-bit RGB), one IDAT of idat_len bytes whose length field says
 * idat_field, IEND. */
static size_t make_png(uint8_t *out, uint32_t w, uint32_t h, uint32_t idat_len,
                       uint32_t idat_field) {
    static const uint8_t zeros[64];
    uint8_t ihdr[13] = {0};
    put_be32(ihdr, w);
    put_be32(ihdr + 4, h);
    ihdr[8] = 8, ihdr[9] = 2;
    size_t n = 8;
    memcpy(out, "\x89PNG\r\n\x1a\n", 8);
    n += png_chunk(out + n, "IHDR", ihdr, 13, 13);
    n += png_chunk(out + n, "IDAT", zeros, idat_len, idat_field);
    n += png_chunk(out + n, "IEND", NULL, 0, 0);
    return n;
}

/* A JPEG segment: FF m, big-endian length (payload + 2), payload. */
static size_t jpeg_segment(uint8_t *out, int m, const uint8_t *payload, size_t len) {
    out[0] = 0xFF, out[1] = (uint8_t)m;
    out[2] = (uint8_t)((len + 2) >> 8), out[3] = (uint8_t)(len + 2);
    memcpy(out + 4, payload, len);
    return 4 + len;
}

/* A baseline grey JPEG of w x h (one 8x8 block of 0s is all its data decodes to when 8 x 8):
 * DQT, SOF0, a DC and an AC Huffman table (table 0, one 1-bit code each), and a scan using the
 * tables `tables` (Td << 4 | Ta). dht_counts > 0 replaces the DC table's first code count by a
 * table of 16 counts of dht_counts each (their sum far beyond 256). */
static size_t make_jpeg(uint8_t *out, int w, int h, int tables, int dht_counts) {
    uint8_t p[600] = {0};
    size_t n = 0;
    out[n++] = 0xFF, out[n++] = 0xD8;
    p[0] = 0;
    memset(p + 1, 1, 64);
    n += jpeg_segment(out + n, 0xDB, p, 65);
    const uint8_t sof[] = {8, (uint8_t)(h >> 8), (uint8_t)h, (uint8_t)(w >> 8), (uint8_t)w,
                           1, 1, 0x11, 0};
    n += jpeg_segment(out + n, 0xC0, sof, sizeof sof);
    memset(p, 0, sizeof p);
    if (dht_counts) {
        p[0] = 0x00;
        memset(p + 1, dht_counts, 16);
        n += jpeg_segment(out + n, 0xC4, p, 17 + 16 * (size_t)dht_counts);
    } else {
        p[0] = 0x00, p[1] = 1; /* DC table 0: one code of length 1, symbol 0 */
        n += jpeg_segment(out + n, 0xC4, p, 18);
        p[0] = 0x10; /* AC table 0: one code of length 1, symbol 0 (end of block) */
        n += jpeg_segment(out + n, 0xC4, p, 18);
    }
    const uint8_t sos[] = {1, 1, (uint8_t)tables, 0, 63, 0};
    n += jpeg_segment(out + n, 0xDA, sos, sizeof sos);
    out[n++] = 0x3F; /* DC code 0, end of block, padding 1s */
    out[n++] = 0xFF, out[n++] = 0xD9;
    return n;
}

/* Loads the folder holding only `name` (bytes given); returns the status. */
static dm_status load_image(const char *name, const uint8_t *bytes, size_t len, dm_error *err,
                            char *dir_out, size_t cap) {
    snprintf(dir_out, cap, "%s", tu_tmp_path("images"));
    mkdir(dir_out, 0755);
    char path[700];
    snprintf(path, sizeof path, "%s/%s", dir_out, name);
    write_bytes(path, bytes, len);
    dm_image_set s;
    memset(err, 0, sizeof *err);
    dm_status st = dm_image_folder_load(&s, dir_out, NULL, err);
    if (!st) dm_image_set_free(&s);
    CHECK(st || s.data.x == NULL, "%s: nothing left allocated", name);
    remove(path);
    rmdir(dir_out);
    return st;
}

/* ---------------------------------------------------------------------------------------- */
/* Size cases: run with the address space capped                                            */

/* A size refusal: expect()'s checks, the parser's own words (needle), and no failed allocation
 * (code that tolerates a failed malloc of the claimed size would otherwise pass). */
static void expect_size(const char *what, dm_status got, const dm_error *err, const char *path,
                        const char *needle) {
    expect(what, got, err, DM_ERR_FORMAT, path);
    CHECK(strstr(err->msg, needle) != NULL, "%s: the message should say '%s': '%s'", what,
          needle, err->msg);
    CHECK(!strstr(err->msg, "allocate") && !strstr(err->msg, "out of memory") &&
              !strstr(err->msg, "outofmem"),
          "%s: refused by a failed allocation, not by a check: '%s'", what, err->msg);
}

static void size_cases(void) {
    dm_error err;
    const char *p;

    /* safetensors: a header length of 80 MiB (under the 100 MiB cap) in a 70-byte file, and a
     * tensor of 2^31 floats whose data_offsets span 8 GiB of a 16-byte data section */
    p = tu_tmp_path("a.safetensors");
    write_safetensors(p, (uint64_t)80 << 20, "{}", 60);
    dm_safetensors *st = NULL;
    memset(&err, 0, sizeof err);
    expect_size("safetensors header length 80 MiB", dm_safetensors_open(&st, p, &err), &err, p,
                "header length");
    const char *big = "{\"w\":{\"dtype\":\"F32\",\"shape\":[2147483648],"
                      "\"data_offsets\":[0,8589934592]}}";
    write_safetensors(p, strlen(big), big, 16);
    expect_size("safetensors tensor of 8 GiB", dm_safetensors_open(&st, p, &err), &err, p,
                "outside the data section");
    CHECK(st == NULL, "no handle on failure");

    /* NPY through the image and the point loaders: 3 TiB of uint8 images, 1 TiB of points */
    p = tu_tmp_path("images.npy");
    write_npy(p, "{'descr': '|u1', 'fortran_order': False, 'shape': (1048576, 3, 1024, 1024), }",
              16);
    dm_image_set s;
    memset(&err, 0, sizeof err);
    expect_size("npy images of 3 TiB", dm_image_npy_load(&s, p, &err), &err, p, "truncated");
    CHECK(s.data.x == NULL, "npy images: nothing allocated");
    p = tu_tmp_path("points.npy");
    write_npy(p, "{'descr': '<f8', 'fortran_order': False, 'shape': (2147483648, 64), }", 16);
    dm_dataset ds;
    memset(&err, 0, sizeof err);
    expect_size("npy points of 1 TiB", dm_dataset_load(&ds, p, &err), &err, p, "truncated");

    /* IDX: raw files claiming 2^31 x 64 x 64 images or 2^32 - 1 labels (checked against the
     * file size), and a gzip stream claiming 2^30 images of one pixel (its size is not known
     * before reading: the buffer may grow only as data arrives) */
    const uint32_t many[3] = {0x7fffffffu, 64, 64}, labels[1] = {0xffffffffu},
                   gz_many[3] = {1u << 30, 1, 1}, five[3] = {5, 1, 1};
    p = tu_tmp_path("images.idx");
    write_idx(p, 0, 0x803, many, 3, 10);
    memset(&err, 0, sizeof err);
    expect_size("raw idx of 32 TiB", dm_idx_load(&s, p, NULL, &err), &err, p, "truncated");
    char images[600];
    snprintf(images, sizeof images, "%s", tu_tmp_path("five.idx"));
    write_idx(images, 0, 0x803, five, 3, 5);
    p = tu_tmp_path("labels.idx");
    write_idx(p, 0, 0x801, labels, 1, 5);
    memset(&err, 0, sizeof err);
    expect_size("raw idx of 2^32 - 1 labels", dm_idx_load(&s, images, p, &err), &err, p,
                "truncated");
    p = tu_tmp_path("images.idx.gz");
    write_idx(p, 1, 0x803, gz_many, 3, 10);
    memset(&err, 0, sizeof err);
    expect_size("gzipped idx claiming 1 GiB", dm_idx_load(&s, p, NULL, &err), &err, p,
                "gzip trailer says 26");

    /* gzip bombs: checked against the trailer's length, deflate's largest expansion (1032x)
     * and the memory available, all before inflating (the stream after the IDX header is
     * corrupt, so inflating it would report that instead) */
    const uint32_t bomb[3] = {400000, 28, 28}, one_gib[3] = {1u << 30, 1, 1},
                   big_idx[3] = {200000000, 1, 1};
    write_idx_gz_forged(p, 0x803, five, 3, 300000, 311000000u);
    memset(&err, 0, sizeof err);
    expect_size("gzipped idx of 5 images with a trailer of 311 MB",
                dm_idx_load(&s, p, NULL, &err), &err, p, "gzip trailer says 311000000");
    write_idx_gz_forged(p, 0x803, bomb, 3, 300000, 16u);
    memset(&err, 0, sizeof err);
    expect_size("gzipped idx of 400000 x 28 x 28 with a trailer of 16 bytes",
                dm_idx_load(&s, p, NULL, &err), &err, p, "gzip trailer says 16");
    write_idx_gz_forged(p, 0x803, one_gib, 3, 1000, (1u << 30) + 16);
    memset(&err, 0, sizeof err);
    expect_size("gzipped idx of 1 KB claiming 1 GiB", dm_idx_load(&s, p, NULL, &err), &err, p,
                "deflate expands at most 1032x");
    /* 200 MB of pixels (1 GB with the float copy) in a file deflate could expand to it: the
     * memory check refuses it under the 512 MiB cap, with the figures */
    write_idx_gz_forged(p, 0x803, big_idx, 3, 200000, 200000016u);
    memset(&err, 0, sizeof err);
    expect("gzipped idx of 200 MB under a 512 MiB cap", dm_idx_load(&s, p, NULL, &err), &err,
           DM_ERR_NOMEM, p);
    CHECK(strstr(err.msg, "needs") && strstr(err.msg, "available"),
          "the memory refusal gives the figures: %s", err.msg);

    /* images: headers claiming more than 16384 pixels a side or 2^28 pixels, and an IDAT chunk
     * claiming 2 GiB (stb_image 2.27 allocated it before reading) */
    uint8_t img[1200];
    char dir[600];
    size_t n = make_png(img, 20000, 17000, 16, 16); /* within stb's own 2^30-byte limit */
    expect_size("png of 20000 x 17000", load_image("huge.png", img, n, &err, dir, sizeof dir),
                &err, "huge.png", "20000 x 17000 pixels");
    n = make_png(img, 16000, 16800, 16, 16); /* each side allowed, 2^28.001 pixels */
    expect_size("png of 16000 x 16800", load_image("many.png", img, n, &err, dir, sizeof dir),
                &err, "many.png", "16000 x 16800 pixels");
    n = make_jpeg(img, 65500, 65500, 0x00, 0);
    expect_size("jpeg of 65500 x 65500", load_image("huge.jpg", img, n, &err, dir, sizeof dir),
                &err, "huge.jpg", "65500 x 65500 pixels");
    n = make_png(img, 4, 4, 16, 0x7fff0000u);
    expect_size("png IDAT claiming 2 GiB", load_image("idat.png", img, n, &err, dir, sizeof dir),
                &err, "idat.png", "chunk");

    /* CSV: one line of 200,000 fields (only the first DM_MAX_DIM + 1 are ever stored) */
    p = tu_tmp_path("wide.csv");
    size_t wide_len = 200000 * 2;
    char *wide = malloc(wide_len + 1);
    if (!wide) exit(1);
    for (size_t i = 0; i < wide_len; i += 2) wide[i] = '1', wide[i + 1] = ',';
    wide[wide_len - 1] = '\n';
    write_bytes(p, wide, wide_len);
    free(wide);
    memset(&err, 0, sizeof err);
    expect_size("csv of 200,000 columns", dm_dataset_load(&ds, p, &err), &err, p, "columns");
}

/* Bytes the process maps now (VmSize), from /proc/self/statm; 0 if unknown. */
static uint64_t mapped_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long long pages = 0;
    if (f) {
        if (fscanf(f, "%llu", &pages) != 1) pages = 0;
        fclose(f);
    }
    return pages * (uint64_t)sysconf(_SC_PAGESIZE);
}

static void test_sizes_capped(void) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        exit(1);
    }
    if (pid == 0) {
        uint64_t now = mapped_bytes();
        struct rlimit lim = {.rlim_cur = now + ((uint64_t)512 << 20),
                             .rlim_max = now + ((uint64_t)512 << 20)};
        if (now == 0 || setrlimit(RLIMIT_AS, &lim) != 0) {
            fprintf(stderr, "note: cannot cap the address space; size cases run uncapped\n");
        }
        size_cases();
        printf("size cases (capped child): %d checks, %d failed\n", tu_checks, tu_failures);
        fflush(NULL);
        _exit(tu_failures > 250 ? 250 : tu_failures);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
          "size cases under a 512 MiB address-space cap: %s %d (a parser allocated the claimed "
          "size, or a check above failed)",
          WIFEXITED(status) ? "exit status" : "killed by signal",
          WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
}

/* ---------------------------------------------------------------------------------------- */
/* Findings of the fuzzers                                                                  */

static void test_images(void) {
    uint8_t img[1200];
    char dir[600];
    dm_error err;
    /* the control: a valid 8 x 8 baseline JPEG, hand-made like the cases below, decodes */
    size_t n = make_jpeg(img, 8, 8, 0x00, 0);
    CHECK(load_image("ok.jpg", img, n, &err, dir, sizeof dir) == DM_OK, "control JPEG: %s",
          err.msg);
    /* a scan using Huffman tables no DHT defined: stb decoded with uninitialised tables */
    n = make_jpeg(img, 8, 8, 0x11, 0);
    expect("jpeg scan with undefined tables", load_image("undef.jpg", img, n, &err, dir, sizeof dir),
           &err, DM_ERR_FORMAT, "undef.jpg");
    /* a DHT table of 16 x 32 codes: stb wrote past its 257-entry array */
    n = make_jpeg(img, 8, 8, 0x00, 32);
    expect("jpeg DHT of 512 codes", load_image("dht.jpg", img, n, &err, dir, sizeof dir), &err,
           DM_ERR_FORMAT, "dht.jpg");
    /* a PNG whose chunks run past the end of the file */
    n = make_png(img, 4, 4, 16, 16);
    expect("png cut inside a chunk", load_image("cut.png", img, n - 20, &err, dir, sizeof dir),
           &err, DM_ERR_FORMAT, "cut.png");
    /* a BMP named .png: stbi_load would decode it (and GIF, PSD, TGA, HDR, PIC, PNM) */
    uint8_t bmp[64] = {'B', 'M', 64, 0, 0, 0, 0, 0, 0, 0, 54, 0, 0, 0, 40, 0, 0, 0, 1, 0, 0, 0,
                       1, 0, 0, 0, 1, 0, 24, 0};
    expect("bmp named .png", load_image("bmp.png", bmp, sizeof bmp, &err, dir, sizeof dir), &err,
           DM_ERR_FORMAT, "bmp.png");
    CHECK(strstr(err.msg, "PNG or JPEG") != NULL, "says what is supported: %s", err.msg);
}

/* Configs a reader must refuse with and without a dm_error: dm_error_prefix returns DM_OK when
 * err is NULL, and `return dm_error_prefix(...)` accepted them (found by fuzz_unet_config and
 * fuzz_ckpt_config). */
static void test_configs(void) {
    dm_error err;
    dm_unet_config cfg;
    const char *p = tu_tmp_path("unet.json");
    struct {
        const char *what, *json;
    } unet[] = {
        {"groups that do not divide", "{\"sample_size\": 8, \"block_out_channels\": [8, 16], "
                                      "\"norm_num_groups\": 3, \"down_block_types\": "
                                      "[\"DownBlock2D\", \"DownBlock2D\"], \"up_block_types\": "
                                      "[\"UpBlock2D\", \"UpBlock2D\"]}"},
        /* casts of unchecked doubles to int64 (undefined behaviour; found by fuzzing) */
        {"block_out_channels of 1e30", "{\"sample_size\": 8, \"block_out_channels\": [1e30]}"},
        {"sample_size [1e300, 1e300]", "{\"sample_size\": [1e300, 1e300]}"},
        {"negative attention_head_dim", "{\"sample_size\": 8, \"block_out_channels\": [8, 16], "
                                        "\"norm_num_groups\": 4, \"attention_head_dim\": -4}"},
    };
    for (size_t i = 0; i < sizeof unet / sizeof unet[0]; i++) {
        write_text(p, unet[i].json);
        memset(&err, 0, sizeof err);
        expect(unet[i].what, dm_unet_config_read(&cfg, p, &err), &err, DM_OK, p);
        CHECK(dm_unet_config_read(&cfg, p, NULL) != DM_OK, "%s: accepted with a NULL dm_error",
              unet[i].what);
    }

    /* our checkpoint config: a valid one written by the library, then one field spoiled */
    dm_checkpoint_config c;
    memset(&c, 0, sizeof c);
    dm_train_config_default(&c.train);
    c.norm.dim = 2;
    c.norm.std[0] = c.norm.std[1] = 1;
    p = tu_tmp_path("config.json");
    CHECK(dm_checkpoint_config_write(p, &c, &err) == DM_OK, "write: %s", err.msg);
    FILE *f = fopen(p, "rb");
    char text[8192] = {0};
    size_t len = f ? fread(text, 1, sizeof text - 1, f) : 0;
    if (f) fclose(f);
    CHECK(len > 0 && dm_checkpoint_config_read(p, &c, NULL) == DM_OK, "the control reads back");
    static const char *const spoil[][2] = {
        {"\"epsilon\"", "\"eps\""},  /* prediction */
        {"\"simple\"", "\"l2\""},    /* objective.loss */
        {"\"linear\"", "\"linar\""}, /* schedule.kind */
    };
    for (size_t i = 0; i < sizeof spoil / sizeof spoil[0]; i++) {
        char bad[8192];
        char *at = strstr(text, spoil[i][0]);
        CHECK(at != NULL, "%s in the written config", spoil[i][0]);
        if (!at) continue;
        snprintf(bad, sizeof bad, "%.*s%s%s", (int)(at - text), text, spoil[i][1],
                 at + strlen(spoil[i][0]));
        write_text(p, bad);
        memset(&err, 0, sizeof err);
        expect(spoil[i][1], dm_checkpoint_config_read(p, &c, &err), &err, DM_ERR_ARG, p);
        CHECK(dm_checkpoint_config_read(p, &c, NULL) != DM_OK, "%s accepted with a NULL dm_error",
              spoil[i][1]);
    }
}

/* ---------------------------------------------------------------------------------------- */
/* FIFOs and folders where a file is expected                                                */

/* Every reader of a file refuses a FIFO (which blocked the open, or the first read, forever)
 * and a folder, naming the file. Run in a forked child under alarm(): a reader that blocks is
 * killed and the case fails instead of hanging the suite. */
static void special_file_cases(void) {
    static const char *const names[] = {"model.safetensors", "config.json", "data.npy",
                                        "data.csv", "images.idx", "images.idx.gz"};
    for (int kind = 0; kind < 2; kind++) {
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
            char p[600];
            snprintf(p, sizeof p, "%s/%s%s", tu_tmpdir(), kind ? "dir-" : "fifo-", names[i]);
            const int made = kind ? mkdir(p, 0755) : mkfifo(p, 0600);
            CHECK(made == 0, "cannot make %s", p);
            if (made) continue;
            dm_error err = {0};
            dm_status st;
            const char *what = names[i];
            if (strstr(what, ".safetensors")) {
                dm_safetensors *sf = NULL;
                st = dm_safetensors_open(&sf, p, &err);
            } else if (strstr(what, ".json")) {
                dm_unet_config cfg;
                st = dm_unet_config_read(&cfg, p, &err);
            } else if (strstr(what, ".idx")) {
                dm_image_set s;
                st = dm_idx_load(&s, p, NULL, &err);
            } else {
                dm_dataset ds;
                st = dm_dataset_load(&ds, p, &err);
            }
            char label[64];
            snprintf(label, sizeof label, "%s as a %s", what, kind ? "folder" : "FIFO");
            expect(label, st, &err, DM_ERR_IO, p);
            CHECK(strstr(err.msg, "not a regular file") != NULL, "%s: says why: %s", label,
                  err.msg);
            if (kind) rmdir(p); else remove(p);
        }
    }
}

static void test_special_files(void) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        exit(1);
    }
    if (pid == 0) {
        alarm(60); /* each case takes microseconds; a blocked read takes forever */
        special_file_cases();
        fflush(NULL);
        _exit(tu_failures > 250 ? 250 : tu_failures);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
          "FIFOs and folders as input files: %s %d (a reader blocked on a FIFO and was killed "
          "after 60 s, or a check above failed)",
          WIFEXITED(status) ? "exit status" : "killed by signal",
          WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
}

/* ---------------------------------------------------------------------------------------- */
/* Symbolic links in a run folder                                                            */

static const char *const victim_files[] = {"config.json", "model.safetensors",
                                           "train_state.safetensors", "unet/config.json",
                                           "unet/diffusion_pytorch_model.safetensors"};

static void make_victim(const char *victim) {
    char p[512];
    mkdir(victim, 0755);
    snprintf(p, sizeof p, "%s/unet", victim);
    mkdir(p, 0755);
    for (size_t i = 0; i < sizeof victim_files / sizeof victim_files[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", victim, victim_files[i]);
        write_text(p, "sentinel");
    }
}

static int victim_intact(const char *what, const char *victim) {
    char p[512], text[16];
    int ok = 1;
    for (size_t i = 0; i < sizeof victim_files / sizeof victim_files[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", victim, victim_files[i]);
        FILE *f = fopen(p, "rb");
        size_t len = f ? fread(text, 1, sizeof text, f) : 0;
        if (f) fclose(f);
        CHECK(len == 8 && memcmp(text, "sentinel", 8) == 0,
              "%s: %s outside the run folder was removed or changed", what, p);
        ok &= len == 8;
    }
    return ok;
}

/* One checkpoint written: begin, a config file, commit. */
static dm_status write_checkpoint(const char *ckpt, dm_error *err) {
    char tmp[600], p[700];
    dm_status st = dm_checkpoint_begin(ckpt, tmp, sizeof tmp, err);
    if (st) return st;
    snprintf(p, sizeof p, "%s/config.json", tmp);
    write_text(p, "{}");
    return dm_checkpoint_commit(ckpt, tmp, err);
}

/* checkpoint, checkpoint.tmp, checkpoint.old or a checkpoint's unet/ as a symbolic link to a
 * folder outside the run: writing checkpoints removed the files in the link's target. Now the
 * link goes and the target stays as it was. */
static void test_checkpoint_symlinks(void) {
    char base[256], victim[300], run[300], ckpt[400], link[450], cmd[700];
    snprintf(base, sizeof base, "%s", tu_tmp_path("links"));
    mkdir(base, 0755);
    snprintf(victim, sizeof victim, "%s/victim", base);
    make_victim(victim);
    static const char *const links[] = {"checkpoint", "checkpoint.tmp", "checkpoint.old",
                                        "checkpoint.old/unet", "checkpoint.tmp/unet"};
    for (size_t i = 0; i < sizeof links / sizeof links[0]; i++) {
        dm_error err = {0};
        snprintf(run, sizeof run, "%s/run%zu", base, i);
        snprintf(ckpt, sizeof ckpt, "%s/checkpoint", run);
        mkdir(run, 0755);
        if (strchr(links[i], '/')) { /* a real folder holding a linked unet/ */
            snprintf(link, sizeof link, "%s/%.*s", run, (int)(strchr(links[i], '/') - links[i]),
                     links[i]);
            mkdir(link, 0755);
        }
        snprintf(link, sizeof link, "%s/%s", run, links[i]);
        CHECK(symlink(victim, link) == 0, "symlink %s", link);
        /* two checkpoints: the second moves the first aside and removes checkpoint.old */
        for (int k = 0; k < 2; k++) {
            dm_status st = write_checkpoint(ckpt, &err);
            CHECK(st == DM_OK, "%s as a link: checkpoint %d: %s", links[i], k, err.msg);
        }
        struct stat sb;
        CHECK(lstat(ckpt, &sb) == 0 && S_ISDIR(sb.st_mode),
              "%s as a link: the checkpoint is not a real folder", links[i]);
        if (!victim_intact(links[i], victim)) make_victim(victim);
    }
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", base);
    CHECK(system(cmd) == 0, "%s", cmd);
}

/* A key given twice in one object: cJSON keeps both and lookups see the first, so the file
 * said two things and the reader silently picked one. Refused wherever it is, naming the key:
 * a UNet config's top level, a checkpoint config's nested object, an object inside an array,
 * and a safetensors header naming one tensor twice. */
static void test_duplicate_keys(void) {
    dm_error err;
    dm_unet_config cfg;
    const char *p = tu_tmp_path("dup.json");
    static const char *const unet[][2] = {
        {"{\"sample_size\": 8, \"block_out_channels\": [8, 16], \"norm_num_groups\": 4, "
         "\"sample_size\": 16}",
         "\"sample_size\" appears twice"},
        {"{\"sample_size\": 8, \"x\": [{\"a\": 1, \"b\": 2, \"a\": 3}]}", "\"a\" appears twice"},
    };
    /* the control: the first without its second sample_size is a valid config */
    write_text(p, "{\"sample_size\": 8, \"block_out_channels\": [8, 16], \"norm_num_groups\": 4}");
    memset(&err, 0, sizeof err);
    CHECK(dm_unet_config_read(&cfg, p, &err) == DM_OK, "control config: %s", err.msg);
    for (size_t i = 0; i < sizeof unet / sizeof unet[0]; i++) {
        write_text(p, unet[i][0]);
        memset(&err, 0, sizeof err);
        expect(unet[i][1], dm_unet_config_read(&cfg, p, &err), &err, DM_ERR_FORMAT, p);
        CHECK(strstr(err.msg, unet[i][1]) != NULL, "names the key: %s", err.msg);
    }
    /* a valid checkpoint config, then "hidden" given twice inside "model" */
    dm_checkpoint_config c;
    memset(&c, 0, sizeof c);
    dm_train_config_default(&c.train);
    c.norm.dim = 2;
    c.norm.std[0] = c.norm.std[1] = 1;
    p = tu_tmp_path("config.json");
    CHECK(dm_checkpoint_config_write(p, &c, &err) == DM_OK, "write: %s", err.msg);
    FILE *f = fopen(p, "rb");
    char text[8192] = {0}, bad[8300];
    size_t len = f ? fread(text, 1, sizeof text - 1, f) : 0;
    if (f) fclose(f);
    char *at = strstr(text, "\"hidden\"");
    CHECK(len > 0 && at != NULL, "\"hidden\" in the written config");
    if (at) {
        snprintf(bad, sizeof bad, "%.*s\"hidden\": 4096, %s", (int)(at - text), text, at);
        write_text(p, bad);
        memset(&err, 0, sizeof err);
        expect("checkpoint config with model.hidden twice", dm_checkpoint_config_read(p, &c, &err),
               &err, DM_ERR_FORMAT, p);
        CHECK(strstr(err.msg, "\"hidden\" appears twice in \"model\"") != NULL,
              "names the key and its object: %s", err.msg);
    }
    /* safetensors: tensor "w" twice (refused before this check too; kept as a regression) */
    p = tu_tmp_path("dup.safetensors");
    const char *two = "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                      "\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}";
    write_safetensors(p, strlen(two), two, 8);
    dm_safetensors *sf = NULL;
    memset(&err, 0, sizeof err);
    expect("safetensors naming a tensor twice", dm_safetensors_open(&sf, p, &err), &err,
           DM_ERR_FORMAT, p);
    CHECK(strstr(err.msg, "w") && strstr(err.msg, "appears twice"), "names the tensor: %s",
          err.msg);
    if (sf) dm_safetensors_close(sf);
}

/* safetensors data sections the tensors do not tile exactly (the format forbids holes): a gap
 * between two tensors, one before the first, bytes after the last. The control, the same two
 * tensors back to back, is accepted. */
static void test_safetensors_holes(void) {
    static const char *const cases[][3] = {
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", "8", ""},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}", "12",
         "a hole of 4 bytes in the data section before tensor 'b'"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}", "12",
         "a hole of 4 bytes in the data section before tensor 'a'"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", "24",
         "16 bytes after the last tensor's data"},
    };
    const char *p = tu_tmp_path("holes.safetensors");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_safetensors(p, strlen(cases[i][0]), cases[i][0], (size_t)atoi(cases[i][1]));
        dm_safetensors *sf = NULL;
        dm_error err = {0};
        dm_status st = dm_safetensors_open(&sf, p, &err);
        if (!cases[i][2][0]) {
            CHECK(st == DM_OK, "control (tensors back to back): %s", err.msg);
        } else {
            expect(cases[i][2], st, &err, DM_ERR_FORMAT, p);
            CHECK(strstr(err.msg, cases[i][2]) != NULL, "says where: %s", err.msg);
        }
        if (sf) dm_safetensors_close(sf);
    }
}

/* The library's messages carry file names and bytes from files: control characters come out
 * as \xNN text (an ANSI escape in a name could otherwise restyle or clear the terminal that
 * prints the message), C1 controls in UTF-8 too, and dm_error_prefix keeps it so. */
static void test_message_escapes(void) {
    char p[600];
    snprintf(p, sizeof p, "%s/\x1b[2J\x1b]0;title\x07\xc2\x9b" "31m.json", tu_tmpdir());
    dm_error err = {0};
    dm_unet_config cfg;
    CHECK(dm_unet_config_read(&cfg, p, &err) == DM_ERR_IO, "a missing file: %s", err.msg);
    dm_error_prefix(&err, "loading \x1b[1m");
    int raw = 0;
    for (const unsigned char *c = (const unsigned char *)err.msg; *c; c++)
        raw |= *c < 0x20 || *c == 0x7f || (c[0] == 0xc2 && c[1] >= 0x80 && c[1] <= 0x9f);
    CHECK(!raw, "a control character in the message: %s", err.msg);
    CHECK(strstr(err.msg, "loading \\x1b[1m: ") == err.msg &&
              strstr(err.msg, "/\\x1b[2J\\x1b]0;title\\x07\\xc2\\x9b31m.json: cannot open") != NULL,
          "escaped as \\xNN: %s", err.msg);
}

int main(void) {
    if (tu_tmpdir_make("hostile")) return 1;
    test_sizes_capped(); /* first: fork before OpenMP starts threads */
    test_special_files();
    test_images();
    test_configs();
    test_checkpoint_symlinks();
    test_duplicate_keys();
    test_safetensors_holes();
    test_message_escapes();
    tu_tmpdir_remove();
    return tu_finish("test_hostile_files");
}
