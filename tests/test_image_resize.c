/* dm_image_set_resize: torchvision's Resize(shorter side, bilinear, antialias) + CenterCrop.
 * Checked against a slow reference that weighs every input pixel by the separable triangle
 * (no windows), with its own crop offsets (Python's half-to-even round); exactly against closed
 * forms: constants stay, linear ramps are interpolated exactly when enlarging (edges clamp) and
 * inside the image when halving; a pure crop copies the pixels. */
#include "diffusion.h"

#include "test_util.h"


static double tri(double x) { return fabs(x) < 1 ? 1 - fabs(x) : 0; }

/* weight of input pixel j for output i, resizing in -> out (before normalising) */
static double weight(int64_t in, int64_t out, int64_t i, int64_t j) {
    const double scale = (double)in / (double)out, fs = scale > 1 ? scale : 1;
    return tri(((double)j + 0.5 - ((double)i + 0.5) * scale) / fs);
}

static int64_t half_even(int64_t d) { /* int(round(d / 2)) in Python */
    const double x = d / 2.0, f = floor(x);
    if (x - f != 0.5) return (int64_t)floor(x + 0.5);
    return (int64_t)f % 2 == 0 ? (int64_t)f : (int64_t)f + 1;
}

/* The whole resized plane (rh, rw) of one plane (h, w), then the centre crop, into want. */
static void reference(const float *in, int64_t h, int64_t w, int64_t size, double *want) {
    int64_t rh, rw;
    if (h <= w) rh = size, rw = (int64_t)((double)size * (double)w / (double)h);
    else rw = size, rh = (int64_t)((double)size * (double)h / (double)w);
    const int64_t top = half_even(rh - size), left = half_even(rw - size);
    for (int64_t y = 0; y < size; y++)
        for (int64_t x = 0; x < size; x++) {
            double acc = 0, norm = 0;
            for (int64_t i = 0; i < h; i++)
                for (int64_t j = 0; j < w; j++) {
                    const double k = weight(h, rh, y + top, i) * weight(w, rw, x + left, j);
                    acc += k * in[i * w + j];
                    norm += k;
                }
            want[y * size + x] = acc / norm;
        }
}

static void fill(dm_image_set *s, int64_t n, int64_t c, int64_t h, int64_t w, int labels) {
    dm_error err = {0};
    CHECK(dm_image_set_init(s, n, c, h, w, labels, &err) == DM_OK, "%s", err.msg);
    if (labels) {
        s->data.num_classes = 10;
        for (int64_t i = 0; i < n; i++) s->data.labels[i] = (int32_t)(i * 3 % 10);
    }
}

static void against_reference(int64_t h, int64_t w, int64_t size) {
    const int64_t n = 2, c = 3;
    dm_image_set s;
    fill(&s, n, c, h, w, 1);
    uint64_t r = 12345u + (uint64_t)(h * 1000 + w * 10 + size);
    float *orig = malloc((size_t)(n * c * h * w) * sizeof *orig);
    for (int64_t i = 0; i < n * c * h * w; i++) {
        r = r * 6364136223846793005u + 1442695040888963407u;
        orig[i] = s.data.x[i] = (float)((double)(r >> 11) / 9007199254740992.0 * 2 - 1);
    }
    dm_error err = {0};
    CHECK(dm_image_set_resize(&s, size, &err) == DM_OK, "%s", err.msg);
    CHECK(s.h == size && s.w == size && s.c == c && s.data.n == n &&
              s.data.dim == c * size * size,
          "%lldx%lld -> %lld: got %lldx%lldx%lld", (long long)h, (long long)w, (long long)size,
          (long long)s.c, (long long)s.h, (long long)s.w);
    double *want = malloc((size_t)(size * size) * sizeof *want);
    char what[96];
    for (int64_t p = 0; p < n * c; p++) {
        reference(orig + p * h * w, h, w, size, want);
        snprintf(what, sizeof what, "%lldx%lld -> %lld, plane %lld", (long long)h, (long long)w,
                 (long long)size, (long long)p);
        /* float output of double sums; the row pass is stored as float: a few ulps of 1 */
        tu_check_array(what, s.data.x + p * size * size, want, (size_t)(size * size), 1e-6, 0);
    }
    for (int64_t i = 0; i < n; i++)
        CHECK(s.data.labels && s.data.labels[i] == (int32_t)(i * 3 % 10) &&
                  s.data.num_classes == 10,
              "labels kept");
    free(want);
    free(orig);
    dm_image_set_free(&s);
}

/* ramp v(j) = a j + b along x (every row alike); returns the resized set */
static void ramp(dm_image_set *s, int64_t n, int64_t size, double a, double b) {
    fill(s, 1, 1, n, n, 0);
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++) s->data.x[i * n + j] = (float)(a * (double)j + b);
    dm_error err = {0};
    CHECK(dm_image_set_resize(s, size, &err) == DM_OK, "%s", err.msg);
}

int main(void) {
    dm_error err = {0};
    /* shrink, enlarge, non-integer factors, portrait and landscape, crop alone, no-op */
    const int64_t shapes[][3] = {{7, 5, 3},  {5, 5, 8}, {28, 28, 20}, {4, 10, 6}, {9, 6, 4},
                                 {4, 7, 4},  {3, 3, 3}, {28, 28, 32}, {6, 17, 5}, {16, 8, 8}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        against_reference(shapes[i][0], shapes[i][1], shapes[i][2]);

    /* a constant stays that constant (normalised weights) */
    dm_image_set s;
    fill(&s, 1, 1, 13, 9, 0);
    for (int64_t i = 0; i < 13 * 9; i++) s.data.x[i] = 0.375f;
    CHECK(dm_image_set_resize(&s, 5, &err) == DM_OK, "%s", err.msg);
    for (int64_t i = 0; i < 25; i++) CHECK_CLOSE(s.data.x[i], 0.375, 1e-7, 0, "constant");
    dm_image_set_free(&s);

    /* enlarging 5 -> 12: bilinear reproduces a ramp at x = (X + 0.5) * 5/12 - 0.5, clamped */
    ramp(&s, 5, 12, 0.25, -0.5);
    for (int64_t y = 0; y < 12; y++)
        for (int64_t x = 0; x < 12; x++) {
            double t = ((double)x + 0.5) * 5.0 / 12.0 - 0.5;
            t = t < 0 ? 0 : t > 4 ? 4 : t;
            CHECK_CLOSE(s.data.x[y * 12 + x], 0.25 * t - 0.5, 1e-6, 0, "ramp enlarged");
        }
    dm_image_set_free(&s);
    /* halving 8 -> 4: the widened triangle is symmetric about 2X + 0.5 away from the edges */
    ramp(&s, 8, 4, 0.125, -0.5);
    for (int64_t y = 0; y < 4; y++)
        for (int64_t x = 1; x < 3; x++)
            CHECK_CLOSE(s.data.x[y * 4 + x], 0.125 * (2.0 * (double)x + 0.5) - 0.5, 1e-6, 0,
                        "ramp halved");
    dm_image_set_free(&s);

    /* crop geometry: 4 x W to 4 keeps columns from int(round((W - 4) / 2)) on, bit for bit:
     * W 6 -> 1, 7 -> 2 (1.5 rounds to 2), 9 -> 2 (2.5 rounds to 2), 11 -> 4 (3.5 to 4); and
     * rows the same for H x 4 */
    const int64_t widths[][2] = {{6, 1}, {7, 2}, {9, 2}, {11, 4}};
    for (int t = 0; t < 2; t++)
        for (size_t k = 0; k < 4; k++) {
            const int64_t W = widths[k][0], off = widths[k][1], h = t ? W : 4, w = t ? 4 : W;
            fill(&s, 1, 1, h, w, 0);
            for (int64_t i = 0; i < h * w; i++) s.data.x[i] = (float)i / 64.0f - 0.5f;
            CHECK(dm_image_set_resize(&s, 4, &err) == DM_OK, "%s", err.msg);
            for (int64_t y = 0; y < 4; y++)
                for (int64_t x = 0; x < 4; x++) {
                    const int64_t src = t ? (y + off) * w + x : y * w + x + off;
                    CHECK(s.data.x[y * 4 + x] == (float)src / 64.0f - 0.5f,
                          "%lldx%lld crop at (%lld, %lld): got %g, want input pixel %lld",
                          (long long)h, (long long)w, (long long)y, (long long)x,
                          (double)s.data.x[y * 4 + x], (long long)src);
                }
            dm_image_set_free(&s);
        }

    /* sizes out of range are refused and leave the set as it was */
    fill(&s, 1, 1, 4, 4, 0);
    CHECK(dm_image_set_resize(&s, 0, &err) == DM_ERR_ARG && strstr(err.msg, "1..4096"), "%s",
          err.msg);
    CHECK(s.h == 4 && s.data.x, "a refused resize keeps the set");
    dm_image_set_free(&s);
    return tu_finish("test_image_resize");
}
