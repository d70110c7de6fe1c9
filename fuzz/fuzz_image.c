/* Image folders (dm_image_folder_load): the input is the one file of a private folder, named
 * .jpg when it starts like a JPEG and .png otherwise (the loader decides by the bytes either
 * way: libpng or libjpeg-turbo), loaded as stored (size 0) and cropped and resized to 8 x 8
 * with a channel count and mirroring picked from the input's length. Images beyond the loader's
 * limits (16384 pixels a side, 2^28 pixels) must be refused; legitimate images above
 * FZ_MAX_PIXELS are skipped, since decoding them only costs time. The harness reads the size
 * from the PNG or JPEG header itself, independently of the loader. */
#include "fuzz_util.h"

#include "core/core.h"

#define FZ_MAX_PIXELS (1 << 20)

static uint32_t be(const uint8_t *p, int bytes) {
    uint32_t v = 0;
    for (int i = 0; i < bytes; i++) v = v << 8 | p[i];
    return v;
}

/* Width and height from a PNG's IHDR or a JPEG's first SOF segment; false if neither. */
static bool header_size(const uint8_t *p, size_t n, int64_t *w, int64_t *h) {
    if (n >= 24 && memcmp(p, "\x89PNG\r\n\x1a\n", 8) == 0 && memcmp(p + 12, "IHDR", 4) == 0) {
        *w = be(p + 16, 4), *h = be(p + 20, 4);
        return true;
    }
    if (n < 4 || p[0] != 0xFF || p[1] != 0xD8) return false;
    for (size_t i = 2; i + 9 < n;) {
        if (p[i] != 0xFF) {
            i++;
            continue;
        }
        int m = p[i + 1];
        if (m == 0xFF || m == 0x00 || m == 0x01 || (m >= 0xD0 && m <= 0xD9)) {
            i += m == 0xFF ? 1 : 2;
            continue;
        }
        if (m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC) {
            *h = be(p + i + 5, 2), *w = be(p + i + 7, 2);
            return true;
        }
        i += 2 + be(p + i + 2, 2);
    }
    return false;
}

static void check(const dm_image_set *s, int copies) {
    if (s->data.n != copies || (s->c != 1 && s->c != 3) || s->h < 1 || s->w < 1 ||
        s->data.dim != s->c * s->h * s->w)
        abort();
    for (int64_t i = 0; i < s->data.n * s->data.dim; i++)
        if (!(s->data.x[i] >= -1 && s->data.x[i] <= 1)) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    bool jpeg = size >= 2 && data[0] == 0xFF && data[1] == 0xD8;
    fz_dir_unlink(jpeg ? "in.png" : "in.jpg");
    fz_dir_file(jpeg ? "in.jpg" : "in.png", data, size);
    int64_t w = 0, h = 0;
    bool known = header_size(data, size, &w, &h);
    bool too_large = known && (w > 16384 || h > 16384 || w * h > (1 << 28));
    if (known && !too_large && w * h > FZ_MAX_PIXELS) return 0;

    dm_image_folder_options o;
    dm_image_folder_options_default(&o);
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1) {
            o.size = 8;
            o.channels = (int64_t[]){0, 1, 3}[size % 3];
            o.hflip = (int)(size / 3 % 2);
        }
        dm_error err = {0};
        dm_image_set s;
        dm_status st = dm_image_folder_load(&s, fz_tmpdir(), &o, &err);
        if (st == DM_OK) {
            if (too_large) abort(); /* decoded past the limits */
            check(&s, o.hflip ? 2 : 1);
            dm_image_set_free(&s);
        } else if (!err.msg[0] || s.data.x) {
            abort();
        }
    }
    return 0;
}
