/* safetensors: round trip of every dtype with metadata, hostile files refused cleanly, and the
 * diffusers fixture checkpoint (144 tensors, 44,969 float32 values). */
#include "io/safetensors.h"

#include "test_util.h"

#include <dirent.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

static int count_files(void) {
    DIR *dir = opendir(tu_tmpdir());
    int n = 0;
    struct dirent *e;
    while (dir && (e = readdir(dir)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    if (dir) closedir(dir);
    return n;
}

/* A file with an explicit 8-byte little-endian length field, header text and data bytes. */
static void write_raw(const char *path, uint64_t len_field, const char *header, size_t data_bytes) {
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        exit(1);
    }
    for (int b = 0; b < 8; b++) fputc((int)((len_field >> (8 * b)) & 0xff), f);
    fputs(header, f);
    for (size_t i = 0; i < data_bytes; i++) fputc((int)(i * 7 + 1), f);
    fclose(f);
}

static void craft(const char *path, const char *header, size_t data_bytes) {
    write_raw(path, strlen(header), header, data_bytes);
}

static void expect_refused(const char *what, const char *path, dm_status want, const char *needle) {
    dm_safetensors *st = (dm_safetensors *)0x1;
    dm_error err = {0};
    dm_status got = dm_safetensors_open(&st, path, &err);
    CHECK(got == want, "%s: status %s, expected %s (%s)", what, dm_status_name(got),
          dm_status_name(want), err.msg);
    CHECK(st == NULL, "%s: handle must be NULL on failure", what);
    CHECK(strstr(err.msg, path) != NULL, "%s: message should name the file: %s", what, err.msg);
    if (needle)
        CHECK(strstr(err.msg, needle) != NULL, "%s: message should mention '%s': %s", what, needle,
              err.msg);
    if (got == DM_OK) dm_safetensors_close(st);
}

static void test_round_trip(void) {
    float a[6] = {1.5f, -2.25f, 3.0f, 1e-30f, -0.0f, 3.4e38f};
    double b[4] = {0.1, -1e300, 2.5, 1.0 / 3.0};
    int64_t c[4] = {INT64_MIN, -1, 0, INT64_MAX};
    int32_t d[3] = {INT32_MIN, 7, INT32_MAX};
    uint8_t e[5] = {0, 1, 127, 128, 255};
    float s[1] = {42.0f};
    dm_st_tensor in[] = {
        {"conv.weight", DM_DTYPE_F32, 2, {2, 3}, a},
        {"b", DM_DTYPE_F64, 1, {4}, b},
        {"c", DM_DTYPE_I64, 2, {2, 2}, c},
        {"d", DM_DTYPE_I32, 1, {3}, d},
        {"e", DM_DTYPE_U8, 1, {5}, e},
        {"empty", DM_DTYPE_F32, 2, {0, 3}, NULL},
        {"scalar", DM_DTYPE_F32, 0, {0}, s},
    };
    const int n = (int)(sizeof in / sizeof in[0]);
    const char *meta[] = {"format", "pt", "step", "123"};
    const char *path = tu_tmp_path("rt.safetensors");
    dm_error err = {0};
    CHECK(dm_safetensors_write(path, in, n, meta, 2, &err) == DM_OK, "write: %s", err.msg);
    CHECK(count_files() == 1, "only the final file remains (no temporary), found %d",
          count_files());

    /* layout: header length a multiple of 8, data section exactly the tensors' bytes */
    FILE *f = fopen(path, "rb");
    uint8_t lenb[8] = {0};
    CHECK(f && fread(lenb, 1, 8, f) == 8, "read length field");
    uint64_t hlen = 0;
    for (int i = 0; i < 8; i++) hlen |= (uint64_t)lenb[i] << (8 * i);
    fseek(f, 0, SEEK_END);
    long fsize = ftell(f);
    fclose(f);
    CHECK(hlen % 8 == 0, "header length %llu not a multiple of 8", (unsigned long long)hlen);
    size_t data_bytes = sizeof a + sizeof b + sizeof c + sizeof d + sizeof e + sizeof s;
    CHECK((uint64_t)fsize == 8 + hlen + data_bytes, "file size %ld, expected %llu", fsize,
          (unsigned long long)(8 + hlen + data_bytes));

    dm_safetensors *st = NULL;
    CHECK(dm_safetensors_open(&st, path, &err) == DM_OK, "open: %s", err.msg);
    if (!st) return;
    CHECK(dm_safetensors_count(st) == n, "count %d, expected %d", dm_safetensors_count(st), n);
    for (int i = 0; i < n && i < dm_safetensors_count(st); i++) {
        const dm_st_tensor *t = dm_safetensors_at(st, i);
        CHECK(strcmp(t->name, in[i].name) == 0, "tensor %d is '%s', expected '%s' (order kept)", i,
              t->name, in[i].name);
        CHECK(t->dtype == in[i].dtype && t->ndim == in[i].ndim, "%s: dtype/ndim", in[i].name);
        size_t numel = 1;
        for (int k = 0; k < t->ndim; k++) {
            CHECK(t->shape[k] == in[i].shape[k], "%s: shape[%d] = %lld", in[i].name, k,
                  (long long)t->shape[k]);
            numel *= (size_t)in[i].shape[k];
        }
        size_t bytes = numel * dm_dtype_size(in[i].dtype);
        CHECK(bytes == 0 || memcmp(t->data, in[i].data, bytes) == 0, "%s: data differs",
              in[i].name);
        CHECK(dm_safetensors_get(st, in[i].name) == t, "get('%s')", in[i].name);
    }
    CHECK(dm_safetensors_get(st, "nope") == NULL, "unknown tensor gives NULL");
    CHECK(dm_safetensors_meta(st, "format") && !strcmp(dm_safetensors_meta(st, "format"), "pt"),
          "metadata format");
    CHECK(dm_safetensors_meta(st, "step") && !strcmp(dm_safetensors_meta(st, "step"), "123"),
          "metadata step");
    CHECK(dm_safetensors_meta(st, "nope") == NULL, "missing metadata key gives NULL");

    /* read_f32: F64 converted, F32 copied, the shape checked, other dtypes refused */
    float got[6];
    CHECK(dm_safetensors_read_f32(st, "b", got, (int64_t[]){4}, 1, &err) == DM_OK, "%s", err.msg);
    for (int i = 0; i < 4; i++)
        CHECK(got[i] == (float)b[i] || (isinf(got[i]) && isinf((float)b[i])),
              "b[%d]: %g vs %g", i, got[i], (float)b[i]);
    CHECK(dm_safetensors_read_f32(st, "conv.weight", got, (int64_t[]){2, 3}, 2, &err) == DM_OK,
          "%s", err.msg);
    CHECK(memcmp(got, a, sizeof a) == 0, "conv.weight copied bit for bit");
    dm_status rc = dm_safetensors_read_f32(st, "conv.weight", got, (int64_t[]){3, 2}, 2, &err);
    CHECK(rc == DM_ERR_MISMATCH, "wrong shape gives %s", dm_status_name(rc));
    CHECK(strstr(err.msg, "[2, 3]") && strstr(err.msg, "[3, 2]") && strstr(err.msg, "conv.weight"),
          "message shows both shapes and the tensor: %s", err.msg);
    rc = dm_safetensors_read_f32(st, "conv.weight", got, (int64_t[]){6}, 1, &err);
    CHECK(rc == DM_ERR_MISMATCH, "wrong rank gives %s", dm_status_name(rc));
    rc = dm_safetensors_read_f32(st, "c", got, (int64_t[]){2, 2}, 2, &err);
    CHECK(rc == DM_ERR_MISMATCH, "I64 read as float gives %s", dm_status_name(rc));
    rc = dm_safetensors_read_f32(st, "missing", got, (int64_t[]){1}, 1, &err);
    CHECK(rc == DM_ERR_MISMATCH && strstr(err.msg, "missing"), "missing tensor: %s", err.msg);
    dm_safetensors_close(st);

    /* without metadata there is no __metadata__ entry; zero tensors is a valid file */
    CHECK(dm_safetensors_write(path, in, 1, NULL, 0, &err) == DM_OK, "%s", err.msg);
    f = fopen(path, "rb");
    char text[256] = {0};
    CHECK(f && fread(text, 1, sizeof text - 1, f) > 8, "read back");
    if (f) fclose(f);
    CHECK(strstr(text + 8, "__metadata__") == NULL, "no metadata entry: %s", text + 8);
    CHECK(dm_safetensors_write(path, NULL, 0, NULL, 0, &err) == DM_OK, "%s", err.msg);
    CHECK(dm_safetensors_open(&st, path, &err) == DM_OK, "empty file opens: %s", err.msg);
    if (st) CHECK(dm_safetensors_count(st) == 0, "no tensors");
    dm_safetensors_close(st);

    /* the writer refuses what it could not write validly */
    dm_st_tensor dup[2] = {in[0], in[0]};
    CHECK(dm_safetensors_write(path, dup, 2, NULL, 0, &err) == DM_ERR_ARG, "duplicate names");
    dm_st_tensor neg = {"neg", DM_DTYPE_F32, 1, {-2}, a};
    CHECK(dm_safetensors_write(path, &neg, 1, NULL, 0, &err) == DM_ERR_ARG, "negative shape");
    CHECK(count_files() == 1, "refused writes leave no temporary files (%d files)", count_files());
    remove(path);
}

static void test_hostile(void) {
    const char *p = tu_tmp_path("bad.safetensors");
    const char *ok_json = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";

    craft(p, ok_json, 8);
    dm_safetensors *st = NULL;
    dm_error err = {0};
    CHECK(dm_safetensors_open(&st, p, &err) == DM_OK, "the well-formed control opens: %s", err.msg);
    dm_safetensors_close(st);

    write_raw(p, 1000, "{}", 0);
    expect_refused("header length past EOF", p, DM_ERR_FORMAT, "header length");
    write_raw(p, (uint64_t)1 << 40, "{}", 0);
    expect_refused("header length 2^40", p, DM_ERR_FORMAT, "header length");
    write_raw(p, 1, "{", 0);
    expect_refused("header length 1", p, DM_ERR_FORMAT, NULL);
    FILE *f = fopen(p, "wb");
    fputs("abc", f);
    fclose(f);
    expect_refused("3-byte file", p, DM_ERR_FORMAT, NULL);

    craft(p, "{\"a\": {\"dtype\": \"F32\", ", 0);
    expect_refused("invalid JSON", p, DM_ERR_FORMAT, "JSON");
    craft(p, "[1, 2, 3]", 0);
    expect_refused("JSON array header", p, DM_ERR_FORMAT, NULL);
    craft(p, "{}  x    ", 0);
    expect_refused("bytes after the JSON", p, DM_ERR_FORMAT, NULL);

    craft(p, ok_json, 4);
    expect_refused("offsets past the end", p, DM_ERR_FORMAT, "'a'");
    craft(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 8);
    expect_refused("end < begin", p, DM_ERR_FORMAT, "end before");
    craft(p,
          "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
          "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
          12);
    expect_refused("overlapping tensors", p, DM_ERR_FORMAT, "overlap");
    craft(p,
          "{\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]},"
          "\"a\":{\"dtype\":\"U8\",\"shape\":[5],\"data_offsets\":[0,5]}}",
          12);
    expect_refused("overlap listed out of order", p, DM_ERR_FORMAT, "overlap");
    craft(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8);
    expect_refused("byte count not matching the shape", p, DM_ERR_FORMAT, "'a'");
    craft(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1099511627776],\"data_offsets\":[0,16]}}", 16);
    expect_refused("shape with 2^40 elements", p, DM_ERR_FORMAT, "'a'");
    craft(p,
          "{\"a\":{\"dtype\":\"F64\",\"shape\":[4294967296,4294967296,4294967296],"
          "\"data_offsets\":[0,0]}}",
          0);
    expect_refused("numel * size overflowing 64 bits", p, DM_ERR_FORMAT, "overflow");
    craft(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,0]}}", 0);
    expect_refused("negative dim", p, DM_ERR_FORMAT, "shape");
    craft(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 8);
    expect_refused("fractional dim", p, DM_ERR_FORMAT, "shape");
    craft(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 8);
    expect_refused("9 dimensions", p, DM_ERR_FORMAT, "dimensions");
    craft(p, "{\"a\":{\"dtype\":\"F8_E4M3\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2);
    expect_refused("unknown dtype", p, DM_ERR_FORMAT, "F8_E4M3");
    craft(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8);
    expect_refused("missing data_offsets", p, DM_ERR_FORMAT, "'a'");
    craft(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", 8);
    expect_refused("one data offset", p, DM_ERR_FORMAT, "'a'");
    craft(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
             "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8);
    expect_refused("duplicate tensor name", p, DM_ERR_FORMAT, "twice");
    craft(p, "{\"__metadata__\":{\"step\":5}}", 0);
    expect_refused("non-string metadata", p, DM_ERR_FORMAT, "step");
    craft(p, "{\"a\":[1,2]}", 0);
    expect_refused("entry not an object", p, DM_ERR_FORMAT, "'a'");
    expect_refused("missing file", tu_tmp_path("absent.safetensors"), DM_ERR_IO, NULL);
    remove(p);
}

/* Random corruptions of a valid file (bytes of the length field and header overwritten, the
 * file cut short): every one must open or be refused with DM_ERR_FORMAT, never crash or read
 * outside the file (run under the sanitizers to see the latter). */
static void test_fuzz(void) {
    float a[6] = {1, 2, 3, 4, 5, 6};
    double b[2] = {7, 8};
    uint8_t c[3] = {9, 10, 11};
    dm_st_tensor in[] = {{"a", DM_DTYPE_F32, 2, {2, 3}, a},
                         {"b", DM_DTYPE_F64, 1, {2}, b},
                         {"c", DM_DTYPE_U8, 1, {3}, c}};
    const char *meta[] = {"format", "pt"};
    const char *good = tu_tmp_path("good.safetensors"), *p = tu_tmp_path("fuzz.safetensors");
    dm_error err = {0};
    CHECK(dm_safetensors_write(good, in, 3, meta, 1, &err) == DM_OK, "%s", err.msg);
    FILE *f = fopen(good, "rb");
    uint8_t base[1024];
    size_t size = f ? fread(base, 1, sizeof base, f) : 0;
    if (f) fclose(f);
    CHECK(size > 8 && size < sizeof base, "read the base file (%zu bytes)", size);
    if (size <= 8 || size >= sizeof base) return;
    size_t hlen = 0;
    for (int i = 0; i < 8; i++) hlen |= (size_t)base[i] << (8 * i);

    dm_rng r;
    dm_rng_init(&r, 2024, 0);
    int opened = 0, refused = 0, other = 0;
    for (int iter = 0; iter < 3000; iter++) {
        uint8_t buf[1024];
        memcpy(buf, base, size);
        size_t len = size;
        int32_t pick[4];
        dm_rng_int(&r, pick, 4, 0, 1 << 30);
        int kind = pick[0] % 4;
        if (kind == 0) { /* overwrite 1-3 header bytes with printable or random bytes */
            for (int k = 0; k <= pick[1] % 3; k++)
                buf[8 + (size_t)(pick[2] + 7 * k) % hlen] =
                    (uint8_t)(pick[3] % 2 ? "0123456789-.,[]{}\":e "[(pick[3] >> 1) % 21]
                                          : (pick[3] >> 1));
        } else if (kind == 1) { /* cut the file short */
            len = (size_t)pick[1] % size;
        } else if (kind == 2) { /* a wrong header length */
            buf[(size_t)pick[1] % 8] = (uint8_t)pick[2];
        } else { /* change one digit of the header: shapes and offsets */
            size_t at = 8 + (size_t)pick[1] % hlen, tries = 0;
            while (!(buf[at] >= '0' && buf[at] <= '9') && tries++ < hlen)
                at = 8 + (at - 8 + 1) % hlen;
            buf[at] = (uint8_t)('0' + pick[2] % 10);
        }
        f = fopen(p, "wb");
        fwrite(buf, 1, len, f);
        fclose(f);
        dm_safetensors *st = NULL;
        dm_status rc = dm_safetensors_open(&st, p, &err);
        if (rc == DM_OK) {
            opened++;
            for (int i = 0; i < dm_safetensors_count(st); i++) {
                const dm_st_tensor *t = dm_safetensors_at(st, i);
                size_t bytes = dm_dtype_size(t->dtype);
                for (int k = 0; k < t->ndim; k++) bytes *= (size_t)t->shape[k];
                const uint8_t *d = t->data;
                volatile uint8_t sum = 0; /* touch every byte: the sanitizer checks the bounds */
                for (size_t j = 0; j < bytes; j++) sum += d[j];
                (void)sum;
            }
            dm_safetensors_close(st);
        } else if (rc == DM_ERR_FORMAT) {
            refused++;
        } else {
            other++;
            fprintf(stderr, "fuzz %d: %s: %s\n", iter, dm_status_name(rc), err.msg);
        }
    }
    CHECK(other == 0, "fuzz: %d corruptions gave a status other than ok/format", other);
    CHECK(refused > 1000, "fuzz: only %d of 3000 corruptions refused (opened %d)", refused, opened);
    remove(p);
    remove(good);
}

#define FIXTURES DM_SOURCE_DIR "/tests/fixtures/diffusers-unet-tiny/tiny_uncond"

/* The fixture ships with the repository (tests/fixtures/): a missing file is a failure. */
static void test_fixture(void) {
    dm_safetensors *st = NULL, *g64 = NULL;
    dm_error err = {0};
    CHECK(access(FIXTURES "/diffusion_pytorch_model.safetensors", R_OK) == 0 &&
              access(FIXTURES "/grads_f64.safetensors", R_OK) == 0,
          "reference fixture missing: %s/{diffusion_pytorch_model,grads_f64}.safetensors "
          "(tests/fixtures/ is part of the repository; restore it with git checkout -- "
          "tests/fixtures)",
          FIXTURES);
    CHECK(dm_safetensors_open(&st, FIXTURES "/diffusion_pytorch_model.safetensors", &err) ==
              DM_OK,
          "fixture: %s", err.msg);
    if (!st) return;
    CHECK(dm_safetensors_count(st) == 144, "fixture tensors: %d", dm_safetensors_count(st));
    int64_t total = 0;
    int non_f32 = 0;
    for (int i = 0; i < dm_safetensors_count(st); i++) {
        const dm_st_tensor *t = dm_safetensors_at(st, i);
        int64_t numel = 1;
        for (int k = 0; k < t->ndim; k++) numel *= t->shape[k];
        total += numel;
        non_f32 += t->dtype != DM_DTYPE_F32;
    }
    CHECK(total == 44969, "fixture holds %lld float values, expected 44969", (long long)total);
    CHECK(non_f32 == 0, "%d fixture tensors are not F32", non_f32);
    CHECK(dm_safetensors_get(st, "conv_in.weight") != NULL, "diffusers name conv_in.weight");

    CHECK(dm_safetensors_open(&g64, FIXTURES "/grads_f64.safetensors", &err) == DM_OK,
          "grads_f64: %s", err.msg);
    if (g64) {
        CHECK(dm_safetensors_count(g64) == 144, "grads_f64 tensors: %d",
              dm_safetensors_count(g64));
        int64_t total64 = 0;
        for (int i = 0; i < dm_safetensors_count(g64); i++) {
            const dm_st_tensor *t = dm_safetensors_at(g64, i);
            CHECK(t->dtype == DM_DTYPE_F64, "%s is %s", t->name, dm_dtype_name(t->dtype));
            int64_t numel = 1;
            for (int k = 0; k < t->ndim; k++) numel *= t->shape[k];
            total64 += numel;
            float *buf = malloc((size_t)(numel ? numel : 1) * sizeof *buf);
            dm_status rc = dm_safetensors_read_f32(g64, t->name, buf, t->shape, t->ndim, &err);
            CHECK(rc == DM_OK, "read_f32 %s: %s", t->name, err.msg);
            /* conversion is one rounding of each double: compare bit for bit */
            int bad = 0;
            for (int64_t j = 0; j < numel && rc == DM_OK; j++) {
                double v;
                memcpy(&v, (const char *)t->data + 8 * j, 8);
                bad += buf[j] != (float)v || !isfinite(buf[j]);
            }
            CHECK(bad == 0, "%s: %d values differ from (float) of the doubles", t->name, bad);
            free(buf);
        }
        CHECK(total64 == 44969, "grads_f64 holds %lld values", (long long)total64);
    }
    dm_safetensors_close(g64);
    dm_safetensors_close(st);
}

int main(void) {
    if (tu_tmpdir_make("test_st")) return 1;
    test_round_trip();
    test_hostile();
    test_fuzz();
    test_fixture();
    tu_tmpdir_remove();
    return tu_finish("test_safetensors");
}
