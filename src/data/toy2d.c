/* Built-in 2-D data sets, as defined in FFJORD's toy_data.py (Grathwohl et al. 2019), the usual
 * benchmarks of density estimation. Each generator draws from its own Philox stream of the seed,
 * in fixed chunks, so a (name, n, seed) triple always gives the same points. */
#include "core/core.h"

#include <math.h>
#include <string.h>

const char *const dm_toy2d_names[] = {"swissroll", "moons",  "8gaussians", "checkerboard",
                                      "rings",     "spiral", NULL};

#define PI 3.14159265358979323846
/* Points generated per batch of random fills (a multiple of 4, the Philox block size). */
#define CHUNK 1024

/* Random numbers for one chunk of m points: up to 4 uniform and 2 normal draws per point. */
typedef struct {
    float u[4][CHUNK];
    float z[2][CHUNK];
} draws;

static void draw(dm_rng *r, draws *d, int64_t m, int n_uniform, int n_normal) {
    for (int k = 0; k < n_uniform; k++) dm_rng_uniform(r, d->u[k], (size_t)m);
    for (int k = 0; k < n_normal; k++) dm_rng_normal(r, d->z[k], (size_t)m);
}

/* sklearn make_swiss_roll(noise=1.0) projected to (x, z), divided by 5:
 * t = 1.5 pi (1 + 2u), (t cos t, t sin t) + N(0, 1) per coordinate. */
static void swissroll(float *x, int32_t *y, int64_t i0, int64_t m, const draws *d) {
    (void)y; /* one continuous manifold: no classes */
    for (int64_t j = 0; j < m; j++) {
        double t = 1.5 * PI * (1.0 + 2.0 * d->u[0][j]);
        x[2 * (i0 + j)] = (float)((t * cos(t) + d->z[0][j]) / 5.0);
        x[2 * (i0 + j) + 1] = (float)((t * sin(t) + d->z[1][j]) / 5.0);
    }
}

/* sklearn make_moons(noise=0.1) * 2 + (-1, -0.2): even rows on the upper half circle, odd rows
 * on the lower one shifted to (1, 0.5); the angle is uniform instead of sklearn's even grid. */
static void moons(float *x, int32_t *y, int64_t i0, int64_t m, const draws *d) {
    for (int64_t j = 0; j < m; j++) {
        double a = PI * d->u[0][j], px, py;
        if ((i0 + j) % 2 == 0) {
            px = cos(a);
            py = sin(a);
        } else {
            px = 1.0 - cos(a);
            py = 0.5 - sin(a);
        }
        y[i0 + j] = (int32_t)((i0 + j) % 2);
        x[2 * (i0 + j)] = (float)((px + 0.1 * d->z[0][j]) * 2.0 - 1.0);
        x[2 * (i0 + j) + 1] = (float)((py + 0.1 * d->z[1][j]) * 2.0 - 0.2);
    }
}

/* Eight Gaussians (std 0.5) centred at 4 (cos k pi/4, sin k pi/4), a uniform random mode per
 * point, everything divided by 1.414: modes on a circle of radius 2.83, std 0.354. */
static void eight_gaussians(float *x, int32_t *y, int64_t i0, int64_t m, const draws *d) {
    for (int64_t j = 0; j < m; j++) {
        int k = (int)(d->u[0][j] * 8.0f); /* u < 1, so k in 0..7 */
        if (k > 7) k = 7;
        y[i0 + j] = k;
        double cx = 4.0 * cos(k * PI / 4), cy = 4.0 * sin(k * PI / 4);
        x[2 * (i0 + j)] = (float)((cx + 0.5 * d->z[0][j]) / 1.414);
        x[2 * (i0 + j) + 1] = (float)((cy + 0.5 * d->z[1][j]) / 1.414);
    }
}

/* Checkerboard on [-4, 4]^2: uniform on the 8 squares of side 2 where floor(x/2) + floor(y/2)
 * is even (FFJORD's construction). */
static void checkerboard(float *x, int32_t *y, int64_t i0, int64_t m, const draws *d) {
    (void)y; /* no classes */
    for (int64_t j = 0; j < m; j++) {
        double x1 = d->u[0][j] * 4.0 - 2.0;                     /* [-2, 2) */
        double x2 = d->u[1][j] - (d->u[2][j] < 0.5f ? 0.0 : 2.0); /* [0, 1) or [-2, -1) */
        int64_t col = (int64_t)floor(x1);
        x2 += (double)(((col % 2) + 2) % 2); /* odd columns shift up by one square */
        x[2 * (i0 + j)] = (float)(x1 * 2.0);
        x[2 * (i0 + j) + 1] = (float)(x2 * 2.0);
    }
}

/* Four concentric circles of radius 3, 2.25, 1.5, 0.75 (row i on circle i mod 4), a uniform
 * angle, plus N(0, 0.08^2) noise per coordinate. */
static void rings(float *x, int32_t *y, int64_t i0, int64_t m, const draws *d) {
    for (int64_t j = 0; j < m; j++) {
        y[i0 + j] = (int32_t)((i0 + j) % 4);
        double radius = 3.0 * (4 - (i0 + j) % 4) / 4.0, a = 2.0 * PI * d->u[0][j];
        x[2 * (i0 + j)] = (float)(radius * cos(a) + 0.08 * d->z[0][j]);
        x[2 * (i0 + j) + 1] = (float)(radius * sin(a) + 0.08 * d->z[1][j]);
    }
}

/* FFJORD's "2spirals": s = sqrt(u) * 3 pi, (-s cos s, s sin s) + U(0, 0.5)^2 jitter, odd rows
 * mirrored through the origin, divided by 3, plus N(0, 0.1^2) noise. */
static void spiral(float *x, int32_t *y, int64_t i0, int64_t m, const draws *d) {
    for (int64_t j = 0; j < m; j++) {
        double s = sqrt(d->u[0][j]) * 3.0 * PI;
        double px = -cos(s) * s + 0.5 * d->u[1][j], py = sin(s) * s + 0.5 * d->u[2][j];
        y[i0 + j] = (int32_t)((i0 + j) % 2);
        double sign = (i0 + j) % 2 == 0 ? 1.0 : -1.0;
        x[2 * (i0 + j)] = (float)(sign * px / 3.0 + 0.1 * d->z[0][j]);
        x[2 * (i0 + j) + 1] = (float)(sign * py / 3.0 + 0.1 * d->z[1][j]);
    }
}

typedef struct {
    /* fills rows i0..i0+m-1 of x and, for a set with classes, of the labels y */
    void (*fill)(float *x, int32_t *y, int64_t i0, int64_t m, const draws *d);
    int n_uniform, n_normal;
    int classes; /* the components a point is drawn from (labels), 0 = none */
} generator;

/* In dm_toy2d_names order; the index is also the Philox stream. Labels: the moon, the mode, the
 * ring, the arm. */
static const generator generators[] = {
    {swissroll, 1, 2, 0}, {moons, 1, 2, 2}, {eight_gaussians, 1, 2, 8},
    {checkerboard, 3, 0, 0}, {rings, 1, 2, 4}, {spiral, 3, 2, 2},
};

/* Streams 0x70790000 + k keep these draws apart from the trainer's and sampler's streams. */
#define TOY2D_STREAM_BASE 0x70790000u

dm_status dm_toy2d_generate(dm_dataset *ds, const char *name, int64_t n, uint64_t seed,
                            dm_error *err) {
    memset(ds, 0, sizeof *ds);
    int k = 0;
    while (dm_toy2d_names[k] && (!name || strcmp(dm_toy2d_names[k], name) != 0)) k++;
    if (!dm_toy2d_names[k]) {
        char list[256] = "";
        for (int i = 0; dm_toy2d_names[i]; i++) {
            strcat(list, i ? ", " : "");
            strcat(list, dm_toy2d_names[i]);
        }
        return dm_error_set(err, DM_ERR_ARG, "unknown 2-D data set '%s' (choose from %s)",
                            name ? name : "(null)", list);
    }
    dm_status st = dm_dataset_init(ds, n, 2, err);
    if (st) return st;
    const generator *g = &generators[k];
    if (g->classes && (st = dm_dataset_add_labels(ds, g->classes, err))) {
        dm_dataset_free(ds);
        return st;
    }
    dm_rng r;
    dm_rng_init(&r, seed, TOY2D_STREAM_BASE + (uint64_t)k);
    draws *d = dm_alloc(sizeof *d);
    if (!d) {
        dm_dataset_free(ds);
        return dm_error_set(err, DM_ERR_NOMEM, "cannot allocate random draws");
    }
    for (int64_t i0 = 0; i0 < n; i0 += CHUNK) {
        int64_t m = n - i0 < CHUNK ? n - i0 : CHUNK;
        draw(&r, d, m, g->n_uniform, g->n_normal);
        g->fill(ds->x, ds->labels, i0, m, d);
    }
    dm_free(d);
    return DM_OK;
}
