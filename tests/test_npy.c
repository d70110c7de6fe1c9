/* .npy: float32 write/read round trip, files crafted byte by byte (every dtype, version 2.0),
 * hostile headers and sizes refused, and the diffusers fixture arrays. */
#include "io/npy.h"

#include "test_util.h"

#include <dirent.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>


/* A .npy file from its parts: version major.0, the dict text (padded with spaces and '\n' to a
 * multiple of 64 unless raw_len is given), then data_bytes bytes of data. */
static void craft_full(const char *path, int major, const char *dict, long raw_len,
                       const void *data, size_t data_bytes) {
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        exit(1);
    }
    size_t pre = major == 1 ? 10 : 12, len = strlen(dict);
    size_t hlen = raw_len >= 0 ? (size_t)raw_len : (pre + len + 1 + 63) / 64 * 64 - pre;
    fwrite("\x93NUMPY", 1, 6, f);
    fputc(major, f);
    fputc(0, f);
    for (size_t b = 0; b < pre - 8; b++) fputc((int)((hlen >> (8 * b)) & 0xff), f);
    fputs(dict, f);
    if (raw_len < 0) {
        for (size_t i = len; i + 1 < hlen; i++) fputc(' ', f);
        fputc('\n', f);
    }
    if (data_bytes) fwrite(data, 1, data_bytes, f);
    fclose(f);
}

static void craft(const char *path, const char *dict, const void *data, size_t data_bytes) {
    craft_full(path, 1, dict, -1, data, data_bytes);
}

static void expect_refused(const char *what, const char *path, dm_status want, const char *needle) {
    dm_npy arr;
    dm_error err = {0};
    dm_status got = dm_npy_read(&arr, path, &err);
    CHECK(got == want, "%s: status %s, expected %s (%s)", what, dm_status_name(got),
          dm_status_name(want), err.msg);
    CHECK(got == DM_OK || arr.data == NULL, "%s: no data left allocated", what);
    CHECK(strstr(err.msg, path) != NULL, "%s: message should name the file: %s", what, err.msg);
    if (needle)
        CHECK(strstr(err.msg, needle) != NULL, "%s: message should mention '%s': %s", what, needle,
              err.msg);
    if (got == DM_OK) dm_npy_free(&arr);
}

static void test_round_trip(void) {
    float x[2 * 3 * 4];
    for (int i = 0; i < 24; i++) x[i] = (float)(i - 11) / 7.0f; /* not exact in decimal */
    x[5] = -0.0f;
    x[6] = 1e-40f; /* subnormal */
    const int64_t shapes[][3] = {{2, 3, 4}, {24}, {0}};
    const int ndims[] = {3, 1, 1};
    for (int s = 0; s < 3; s++) {
        const char *path = tu_tmp_path("rt.npy");
        dm_error err = {0};
        CHECK(dm_npy_write_f32(path, x, shapes[s], ndims[s], &err) == DM_OK, "write: %s", err.msg);
        FILE *f = fopen(path, "rb");
        uint8_t pre[10] = {0};
        CHECK(f && fread(pre, 1, 10, f) == 10, "read preamble");
        if (f) fclose(f);
        size_t hlen = pre[8] | (size_t)pre[9] << 8;
        CHECK(pre[6] == 1 && pre[7] == 0, "version 1.0");
        CHECK((10 + hlen) % 64 == 0, "data starts at a multiple of 64 (offset %zu)", 10 + hlen);

        dm_npy arr;
        CHECK(dm_npy_read(&arr, path, &err) == DM_OK, "read: %s", err.msg);
        CHECK(arr.dtype == DM_DTYPE_F32 && arr.ndim == ndims[s], "dtype %d ndim %d", arr.dtype,
              arr.ndim);
        for (int d = 0; d < ndims[s] && d < arr.ndim; d++)
            CHECK(arr.shape[d] == shapes[s][d], "shape[%d] = %lld", d, (long long)arr.shape[d]);
        int64_t n = dm_npy_numel(&arr);
        CHECK(n == (s == 2 ? 0 : 24), "numel %lld", (long long)n);
        CHECK(n == 0 || memcmp(arr.data, x, (size_t)n * sizeof(float)) == 0, "bits preserved");
        dm_npy_free(&arr);
        CHECK(arr.data == NULL, "free clears the pointer");
        remove(path);
    }
    /* numpy's own spelling of the shape, so other tools read the header the same way */
    dm_error err = {0};
    const char *path = tu_tmp_path("spelling.npy");
    CHECK(dm_npy_write_f32(path, x, (int64_t[]){24}, 1, &err) == DM_OK, "%s", err.msg);
    FILE *f = fopen(path, "rb");
    char head[129] = {0};
    CHECK(f && fread(head, 1, 128, f) == 128, "read header");
    if (f) fclose(f);
    size_t hlen = (uint8_t)head[8] | (size_t)(uint8_t)head[9] << 8;
    CHECK(strstr(head + 10, "{'descr': '<f4', 'fortran_order': False, 'shape': (24,), }"),
          "header text: %s", head + 10);
    CHECK(hlen == 118 && head[10 + hlen - 1] == '\n',
          "header of 118 bytes (59 of dict, padded to end at byte 128) ends with a newline");
    int64_t neg[1] = {-1};
    CHECK(dm_npy_write_f32(path, x, neg, 1, &err) == DM_ERR_ARG, "negative shape refused");
    remove(path);
}

static void test_crafted(void) {
    dm_npy arr;
    dm_error err = {0};
    const char *p = tu_tmp_path("c.npy");

    double f8[6] = {1.0, -2.5, 1e-300, 3.0, 0.1, -0.0};
    /* no spaces, double quotes, no trailing comma: still a valid Python dict */
    craft(p, "{\"descr\":\"<f8\",\"fortran_order\":False,\"shape\":(2,3)}", f8, sizeof f8);
    CHECK(dm_npy_read(&arr, p, &err) == DM_OK, "f8 2-D: %s", err.msg);
    if (!err.msg[0]) {
        CHECK(arr.dtype == DM_DTYPE_F64 && arr.ndim == 2 && arr.shape[0] == 2 && arr.shape[1] == 3,
              "f8 header");
        CHECK(memcmp(arr.data, f8, sizeof f8) == 0, "f8 data");
        dm_npy_free(&arr);
    }

    int64_t i8[3] = {3, -917, INT64_MAX};
    craft(p, "{ 'descr' : '<i8' ,\n 'fortran_order' : False , 'shape' : ( 3 , ) , }", i8,
          sizeof i8);
    err.msg[0] = 0;
    CHECK(dm_npy_read(&arr, p, &err) == DM_OK, "i8 1-D with odd spacing: %s", err.msg);
    if (!err.msg[0]) {
        CHECK(arr.dtype == DM_DTYPE_I64 && arr.ndim == 1 && arr.shape[0] == 3, "i8 header");
        CHECK(memcmp(arr.data, i8, sizeof i8) == 0, "i8 data");
        dm_npy_free(&arr);
    }

    int32_t i4[2] = {-5, 70000};
    craft(p, "{'descr': '<i4', 'fortran_order': False, 'shape': (1, 2), }", i4, sizeof i4);
    err.msg[0] = 0;
    CHECK(dm_npy_read(&arr, p, &err) == DM_OK && arr.dtype == DM_DTYPE_I32, "i4: %s", err.msg);
    if (!err.msg[0]) dm_npy_free(&arr);

    uint8_t u1[4] = {0, 1, 128, 255};
    const char *u1_descr[] = {"{'descr': '|u1', 'fortran_order': False, 'shape': (2, 2), }",
                              "{'descr': '<u1', 'fortran_order': False, 'shape': (2, 2), }"};
    for (int k = 0; k < 2; k++) {
        craft(p, u1_descr[k], u1, sizeof u1);
        err.msg[0] = 0;
        CHECK(dm_npy_read(&arr, p, &err) == DM_OK, "u1 (%s): %s", u1_descr[k], err.msg);
        if (!err.msg[0]) {
            CHECK(arr.dtype == DM_DTYPE_U8 && memcmp(arr.data, u1, 4) == 0, "u1 data");
            dm_npy_free(&arr);
        }
    }

    float f4[2] = {1.25f, -8.0f};
    for (int major = 2; major <= 3; major++) {
        craft_full(p, major, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", -1, f4,
                   sizeof f4);
        err.msg[0] = 0;
        CHECK(dm_npy_read(&arr, p, &err) == DM_OK, "version %d.0: %s", major, err.msg);
        if (!err.msg[0]) {
            CHECK(arr.ndim == 1 && arr.shape[0] == 2 && memcmp(arr.data, f4, 8) == 0,
                  "version %d.0 data", major);
            dm_npy_free(&arr);
        }
    }

    /* a 0-d array (shape ()) holds one value */
    craft(p, "{'descr': '<f4', 'fortran_order': False, 'shape': (), }", f4, 4);
    err.msg[0] = 0;
    CHECK(dm_npy_read(&arr, p, &err) == DM_OK && arr.ndim == 0 && dm_npy_numel(&arr) == 1,
          "scalar: %s", err.msg);
    if (!err.msg[0]) dm_npy_free(&arr);
    remove(p);
}

static void test_hostile(void) {
    const char *p = tu_tmp_path("bad.npy");
    float f4[4] = {1, 2, 3, 4};
    const char *good = "{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }";

    FILE *f = fopen(p, "wb");
    fwrite("\x93NUMPZ\x01\x00\x10\x00{}              ", 1, 26, f);
    fclose(f);
    expect_refused("bad magic", p, DM_ERR_FORMAT, "magic");
    f = fopen(p, "wb");
    fputs("\x93NUM", f);
    fclose(f);
    expect_refused("4-byte file", p, DM_ERR_FORMAT, NULL);
    craft_full(p, 4, good, -1, f4, sizeof f4);
    expect_refused("version 4.0", p, DM_ERR_FORMAT, "version");

    craft(p, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", f4, sizeof f4);
    expect_refused("fortran_order True", p, DM_ERR_FORMAT, "fortran");
    craft(p, "{'descr': '>f4', 'fortran_order': False, 'shape': (4,), }", f4, sizeof f4);
    expect_refused("big-endian >f4", p, DM_ERR_FORMAT, "big-endian");
    craft(p, "{'descr': '<c8', 'fortran_order': False, 'shape': (2,), }", f4, sizeof f4);
    expect_refused("complex dtype", p, DM_ERR_FORMAT, "<c8");
    craft(p, good, f4, sizeof f4 - 1);
    expect_refused("truncated data", p, DM_ERR_FORMAT, "truncated");
    float five[5] = {0};
    craft(p, good, five, sizeof five);
    expect_refused("extra trailing bytes", p, DM_ERR_FORMAT, "trailing");
    craft(p, "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296), }", f4,
          sizeof f4);
    expect_refused("numel * itemsize overflow", p, DM_ERR_FORMAT, "overflow");
    craft(p, "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }", f4,
          sizeof f4);
    expect_refused("dimension beyond int64", p, DM_ERR_FORMAT, "too large");
    craft(p, "{'descr': '<f4', 'fortran_order': False, 'shape': (1099511627776,), }", f4,
          sizeof f4);
    expect_refused("huge dimension, few bytes", p, DM_ERR_FORMAT, "truncated");
    craft(p, "{'descr': '<f4', 'fortran_order': False, 'shape': (-4,), }", f4, sizeof f4);
    expect_refused("negative dimension", p, DM_ERR_FORMAT, "shape");
    craft(p, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,4), }", f4,
          sizeof f4);
    expect_refused("9 dimensions", p, DM_ERR_FORMAT, "dimensions");
    craft_full(p, 1, good, 4000, NULL, 0);
    expect_refused("header length past the end", p, DM_ERR_FORMAT, "past the end");
    craft_full(p, 2, good, 0x7fffffff, NULL, 0);
    expect_refused("4-byte header length past the end", p, DM_ERR_FORMAT, "past the end");
    craft(p, "{'descr': '<f4', 'shape': (4,), }", f4, sizeof f4);
    expect_refused("missing fortran_order", p, DM_ERR_FORMAT, "fortran_order");
    craft(p, "{'descr': '<f4', 'fortran_order': False, 'shape': (4,), 'extra': 1}", f4,
          sizeof f4);
    expect_refused("unknown key", p, DM_ERR_FORMAT, "extra");
    craft(p, "{'descr': '<f4', 'descr': '<f8', 'fortran_order': False, 'shape': (4,)}", f4,
          sizeof f4);
    expect_refused("repeated key", p, DM_ERR_FORMAT, "descr");
    craft(p, "{'descr': '<f4', 'fortran_order': False, 'shape': (4,) } junk", f4, sizeof f4);
    expect_refused("bytes after the dict", p, DM_ERR_FORMAT, NULL);
    craft(p, "{'descr': '<f4', 'fortran_order': False, 'shape': (4,", f4, sizeof f4);
    expect_refused("unterminated dict", p, DM_ERR_FORMAT, NULL);
    craft(p, "{'descr': '<f4, 'fortran_order': False, 'shape': (4,)}", f4, sizeof f4);
    expect_refused("unbalanced quote", p, DM_ERR_FORMAT, NULL);
    expect_refused("missing file", tu_tmp_path("absent.npy"), DM_ERR_IO, "No such file");
    remove(p);
}

/* Random corruptions of a valid file (preamble and header bytes overwritten, digits changed,
 * the file cut short): each must be read or refused with DM_ERR_FORMAT, never crash or read
 * outside the file (run under the sanitizers to see the latter). */
static void test_fuzz(void) {
    float x[12] = {0};
    const char *good = tu_tmp_path("good.npy"), *p = tu_tmp_path("fuzz.npy");
    dm_error err = {0};
    CHECK(dm_npy_write_f32(good, x, (int64_t[]){3, 4}, 2, &err) == DM_OK, "%s", err.msg);
    FILE *f = fopen(good, "rb");
    uint8_t base[256];
    size_t size = f ? fread(base, 1, sizeof base, f) : 0;
    if (f) fclose(f);
    size_t hend = size >= 10 ? 10 + (base[8] | (size_t)base[9] << 8) : 0; /* data start */
    CHECK(hend == 128 && size == hend + 48, "base file of %zu bytes, data at %zu", size, hend);
    if (hend != 128 || size != hend + 48) return;
    const char alphabet[] = "0123456789(),:{}' TrueFals<>|fiu148";

    dm_rng r;
    dm_rng_init(&r, 99, 0);
    int opened = 0, refused = 0, other = 0;
    for (int iter = 0; iter < 3000; iter++) {
        uint8_t buf[256];
        memcpy(buf, base, size);
        size_t len = size;
        int32_t pick[4];
        dm_rng_int(&r, pick, 4, 0, 1 << 30);
        int kind = pick[0] % 4;
        if (kind == 0) { /* overwrite 1-3 bytes of preamble and header */
            for (int k = 0; k <= pick[1] % 3; k++)
                buf[(size_t)(pick[2] + 11 * k) % hend] =
                    (uint8_t)(pick[3] % 2 ? alphabet[(pick[3] >> 1) % (int)(sizeof alphabet - 1)]
                                          : (pick[3] >> 1));
        } else if (kind == 1) { /* cut the file short */
            len = (size_t)pick[1] % size;
        } else if (kind == 2) { /* version and header length bytes */
            buf[6 + pick[1] % 4] = (uint8_t)pick[2];
        } else { /* change one digit of the shape */
            size_t at = 10 + (size_t)pick[1] % (hend - 10), tries = 0;
            while (!(buf[at] >= '0' && buf[at] <= '9') && tries++ < hend)
                at = 10 + (at - 10 + 1) % (hend - 10);
            buf[at] = (uint8_t)('0' + pick[2] % 10);
        }
        f = fopen(p, "wb");
        fwrite(buf, 1, len, f);
        fclose(f);
        dm_npy arr;
        dm_status rc = dm_npy_read(&arr, p, &err);
        if (rc == DM_OK) {
            opened++;
            size_t bytes = (size_t)dm_npy_numel(&arr) * dm_dtype_size(arr.dtype);
            volatile uint8_t sum = 0; /* touch every byte: the sanitizer checks the bounds */
            for (size_t j = 0; j < bytes; j++) sum += ((const uint8_t *)arr.data)[j];
            (void)sum;
            dm_npy_free(&arr);
        } else if (rc == DM_ERR_FORMAT) {
            refused++;
        } else {
            other++;
            fprintf(stderr, "fuzz %d: %s: %s\n", iter, dm_status_name(rc), err.msg);
        }
    }
    CHECK(other == 0, "fuzz: %d corruptions gave a status other than ok/format", other);
    CHECK(refused > 1000, "fuzz: only %d of 3000 corruptions refused (read %d)", refused, opened);
    remove(p);
    remove(good);
}

#define FIXTURES DM_SOURCE_DIR "/tests/fixtures/diffusers-unet-tiny/tiny_uncond"

/* The fixture ships with the repository (tests/fixtures/): a missing file is a failure. */
static void test_fixture(void) {
    CHECK(access(FIXTURES "/x.npy", R_OK) == 0 && access(FIXTURES "/timesteps.npy", R_OK) == 0,
          "reference fixture missing: %s/{x,timesteps}.npy (tests/fixtures/ is part of the "
          "repository; restore it with git checkout -- tests/fixtures)",
          FIXTURES);
    dm_npy arr;
    dm_error err = {0};
    CHECK(dm_npy_read(&arr, FIXTURES "/x.npy", &err) == DM_OK, "x.npy: %s", err.msg);
    if (err.msg[0] == 0) {
        CHECK(arr.dtype == DM_DTYPE_F32 && arr.ndim == 4 && arr.shape[0] == 2 &&
                  arr.shape[1] == 1 && arr.shape[2] == 8 && arr.shape[3] == 8,
              "x.npy is float32 (2, 1, 8, 8)");
        const float *x = arr.data;
        int finite = 1;
        for (int64_t i = 0; i < dm_npy_numel(&arr); i++) finite &= isfinite(x[i]) != 0;
        CHECK(finite, "x.npy values finite");
        dm_npy_free(&arr);
    }
    CHECK(dm_npy_read(&arr, FIXTURES "/timesteps.npy", &err) == DM_OK, "timesteps: %s", err.msg);
    if (arr.data) {
        CHECK(arr.dtype == DM_DTYPE_I64 && arr.ndim == 1 && arr.shape[0] == 2,
              "timesteps.npy is int64 (2,)");
        const int64_t *t = arr.data;
        CHECK(t[0] == 3 && t[1] == 917, "timesteps [%lld, %lld], expected [3, 917]",
              (long long)t[0], (long long)t[1]);
        dm_npy_free(&arr);
    }
}

int main(void) {
    if (tu_tmpdir_make("test_npy")) return 1;
    test_round_trip();
    test_crafted();
    test_hostile();
    test_fuzz();
    test_fixture();
    tu_tmpdir_remove();
    return tu_finish("test_npy");
}
