/* Data sets: the built-in 2-D generators (shape, determinism, distribution), CSV parsing and its
 * error messages, CSV/NPY save-load round trips, and the normaliser. */
#include "core/core.h"
#include "io/npy.h"

#include "test_util.h"

#include <dirent.h>
#include <float.h>
#include <string.h>
#include <unistd.h>


static const char *write_text(const char *name, const char *text) {
    const char *path = tu_tmp_path(name);
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        exit(1);
    }
    fputs(text, f);
    fclose(f);
    return path;
}

/* ---------------------------------------------------------------------------------------- */
/* Generators                                                                                */

#define PI 3.14159265358979323846

typedef struct {
    double mean[2], sd[2];
    double max_abs;
} stats2;

/* Means and standard deviations over rows r0, r0 + step, ... */
static stats2 stats_of(const dm_dataset *ds, int64_t r0, int64_t step) {
    stats2 s = {{0, 0}, {0, 0}, 0};
    int64_t m = 0;
    for (int64_t i = r0; i < ds->n; i += step, m++)
        for (int d = 0; d < 2; d++) {
            s.mean[d] += ds->x[2 * i + d];
            s.max_abs = fmax(s.max_abs, fabs(ds->x[2 * i + d]));
        }
    for (int d = 0; d < 2; d++) s.mean[d] /= (double)m;
    for (int64_t i = r0; i < ds->n; i += step)
        for (int d = 0; d < 2; d++) s.sd[d] += pow(ds->x[2 * i + d] - s.mean[d], 2);
    for (int d = 0; d < 2; d++) s.sd[d] = sqrt(s.sd[d] / (double)m);
    return s;
}

/* The mean of rows r0, r0 + step, ... matches `want` within 5 standard errors (a statistical
 * bound: a correct generator fails it with probability about 6e-7 per coordinate). */
static void check_mean(const char *what, const dm_dataset *ds, int64_t r0, int64_t step,
                       double want_x, double want_y) {
    stats2 s = stats_of(ds, r0, step);
    double m = (double)((ds->n - r0 + step - 1) / step);
    char label[96];
    snprintf(label, sizeof label, "%s mean x", what);
    CHECK_CLOSE(s.mean[0], want_x, 5 * s.sd[0] / sqrt(m), 0, label);
    snprintf(label, sizeof label, "%s mean y", what);
    CHECK_CLOSE(s.mean[1], want_y, 5 * s.sd[1] / sqrt(m), 0, label);
}

/* Mean distance from the origin (or its square), within 5 standard errors plus `extra` for an
 * expected value that was itself estimated. */
static void check_mean_radius(const char *what, const dm_dataset *ds, bool squared, double want,
                              double extra) {
    double s = 0, s2 = 0;
    for (int64_t i = 0; i < ds->n; i++) {
        double r = hypot(ds->x[2 * i], ds->x[2 * i + 1]);
        if (squared) r *= r;
        s += r;
        s2 += r * r;
    }
    double mean = s / (double)ds->n, sd = sqrt(fmax(s2 / (double)ds->n - mean * mean, 0));
    CHECK_CLOSE(mean, want, 5 * sd / sqrt((double)ds->n) + extra, 0, what);
}

/* Counts per category: each within 5 binomial standard deviations of n / k. */
static void check_counts(const char *what, const int64_t *count, int k, int64_t n) {
    double p = 1.0 / k, sd = sqrt((double)n * p * (1 - p));
    for (int j = 0; j < k; j++)
        CHECK(fabs((double)count[j] - (double)n * p) <= 5 * sd,
              "%s: category %d has %lld points, expected %.0f +- %.0f", what, j,
              (long long)count[j], (double)n * p, 5 * sd);
}

static void check_8gaussians(const dm_dataset *ds) {
    const double sigma = 0.5 / 1.414, radius = 4.0 / 1.414;
    int64_t count[8] = {0}, far = 0;
    for (int64_t i = 0; i < ds->n; i++) {
        double best = INFINITY;
        int mode = 0;
        for (int k = 0; k < 8; k++) {
            double dx = ds->x[2 * i] - radius * cos(k * PI / 4);
            double dy = ds->x[2 * i + 1] - radius * sin(k * PI / 4);
            if (hypot(dx, dy) < best) best = hypot(dx, dy), mode = k;
        }
        count[mode]++;
        /* 2-D distance / sigma is Rayleigh: P(> 6 sigma) = exp(-18) = 1.5e-8 per point */
        far += best > 6 * sigma;
    }
    CHECK(far == 0, "8gaussians: %lld points further than 6 std from every mode", (long long)far);
    check_counts("8gaussians modes", count, 8, ds->n);
    /* E|c + sigma z|^2 = |c|^2 + 2 sigma^2 exactly: pins the scale of the circle */
    check_mean_radius("8gaussians mean squared radius", ds, true,
                      radius * radius + 2 * sigma * sigma, 0);
    check_mean("8gaussians", ds, 0, 1, 0, 0);
}

static void check_checkerboard(const dm_dataset *ds) {
    int64_t count[8] = {0}, white = 0, outside = 0;
    for (int64_t i = 0; i < ds->n; i++) {
        double x = ds->x[2 * i], y = ds->x[2 * i + 1];
        outside += !(x >= -4 && x <= 4 && y >= -4 && y <= 4);
        int cx = (int)floor(x / 2), cy = (int)floor(y / 2); /* -2..1 */
        if ((cx + cy) % 2 != 0) {
            white++;
            continue;
        }
        /* the 8 black squares: index by column and which of its two black rows */
        int cxi = cx + 2, cyi = cy + 2;
        if (cxi >= 0 && cxi < 4 && cyi >= 0 && cyi < 4) count[cxi * 2 + cyi / 2]++;
    }
    CHECK(outside == 0, "checkerboard: %lld points outside [-4, 4]^2", (long long)outside);
    CHECK(white == 0, "checkerboard: %lld points on white squares", (long long)white);
    check_counts("checkerboard squares", count, 8, ds->n);
}

static void check_rings(const dm_dataset *ds) {
    int64_t count[4] = {0}, stray = 0, wrong_ring = 0;
    for (int64_t i = 0; i < ds->n; i++) {
        double r = hypot(ds->x[2 * i], ds->x[2 * i + 1]);
        int k = (int)lround(r / 0.75) - 1; /* rings at 0.75 (k + 1) */
        if (k < 0) k = 0;
        if (k > 3) k = 3;
        count[k]++;
        /* half the ring spacing is 0.375 = 4.7 noise std: P(stray) ~ 3e-6 per point */
        stray += fabs(r - 0.75 * (k + 1)) > 0.375;
        wrong_ring += k != 3 - (int)(i % 4); /* row i sits on ring 3 - i mod 4 (radius 3 first) */
    }
    CHECK(stray == 0, "rings: %lld points off every ring", (long long)stray);
    CHECK(wrong_ring == 0, "rings: %lld points not on the ring of their row",
          (long long)wrong_ring);
    check_counts("rings", count, 4, ds->n);
    check_mean("rings", ds, 0, 1, 0, 0);
}

static void test_generator(const char *name, int64_t n) {
    dm_dataset a = {0}, b = {0}, c = {0};
    dm_error err = {0};
    CHECK(dm_toy2d_generate(&a, name, n, 42, &err) == DM_OK, "%s: %s", name, err.msg);
    if (!a.x) return;
    CHECK(a.n == n && a.dim == 2, "%s: %lld x %lld", name, (long long)a.n, (long long)a.dim);
    CHECK(dm_all_finite(a.x, (size_t)(2 * n)), "%s: all values finite", name);
    CHECK(dm_toy2d_generate(&b, name, n, 42, &err) == DM_OK, "%s: %s", name, err.msg);
    CHECK(b.x && memcmp(a.x, b.x, (size_t)(2 * n) * sizeof(float)) == 0,
          "%s: the same seed gives the same points", name);
    CHECK(dm_toy2d_generate(&c, name, n, 43, &err) == DM_OK, "%s: %s", name, err.msg);
    int64_t same = 0;
    for (int64_t i = 0; c.x && i < 2 * n; i++) same += a.x[i] == c.x[i];
    /* checkerboard and moons share no continuous value by chance; allow a handful anyway */
    CHECK(c.x && same < n / 100, "%s: seeds 42 and 43 share %lld of %lld values", name,
          (long long)same, (long long)(2 * n));

    stats2 s = stats_of(&a, 0, 1);
    if (!strcmp(name, "swissroll")) {
        /* t ~ U(1.5 pi, 4.5 pi): E[t cos t] = 2, E[t sin t] = 2 / (3 pi); divided by 5 */
        check_mean("swissroll", &a, 0, 1, 0.4, 2.0 / (3 * PI) / 5);
        /* E|t e + z| = E[t] + E[1 / (2t)] = 3 pi + ln(3) / (6 pi) to first order, / 5; the
         * second-order remainder is < 1e-3 (a 4e5-sample Monte Carlo gives 1.8969) */
        check_mean_radius("swissroll mean radius", &a, false,
                          (3 * PI + log(3.0) / (6 * PI)) / 5, 1e-3);
        /* |t| <= 4.5 pi plus N(0, 1) noise beyond 5 std: (14.14 + 5) / 5 */
        CHECK(s.max_abs < 3.83, "swissroll: max |coordinate| %.3f", s.max_abs);
    } else if (!strcmp(name, "moons")) {
        /* upper moon: 2 (cos a, sin a) - (1, 0.2), a ~ U(0, pi): mean (-1, 4 / pi - 0.2);
         * lower moon: 2 (1 - cos a, 0.5 - sin a) - (1, 0.2): mean (1, 0.8 - 4 / pi) */
        check_mean("moons (upper)", &a, 0, 2, -1, 4 / PI - 0.2);
        check_mean("moons (lower)", &a, 1, 2, 1, 0.8 - 4 / PI);
        check_mean("moons", &a, 0, 1, 0, 0.3);
        /* x in [-3, 3] and y in [-1.2, 1.8], plus 2 * 0.1 noise beyond 5.5 std */
        CHECK(s.max_abs < 3 + 1.1, "moons: max |coordinate| %.3f", s.max_abs);
    } else if (!strcmp(name, "8gaussians")) {
        check_8gaussians(&a);
    } else if (!strcmp(name, "checkerboard")) {
        check_checkerboard(&a);
        check_mean("checkerboard", &a, 0, 1, 0, 0);
    } else if (!strcmp(name, "rings")) {
        check_rings(&a);
    } else if (!strcmp(name, "spiral")) {
        /* the two arms are point reflections of each other, so the mean is 0 */
        check_mean("spiral", &a, 0, 1, 0, 0);
        /* a 4e5-sample Monte Carlo of FFJORD's 2spirals gives 2.1223 +- 0.0012 */
        check_mean_radius("spiral mean radius", &a, false, 2.1223, 0.005);
        /* |s| <= 3 pi, jitter 0.5: (3 pi + 0.5) / 3 = 3.31, plus 0.1 noise beyond 5.5 std */
        CHECK(s.max_abs < 3.31 + 0.55, "spiral: max |coordinate| %.3f", s.max_abs);
    }
    dm_dataset_free(&a);
    dm_dataset_free(&b);
    dm_dataset_free(&c);
    CHECK(a.x == NULL && a.n == 0, "free clears the data set");
}

static void test_generators(void) {
    int count = 0;
    for (const char *const *name = dm_toy2d_names; *name; name++, count++)
        test_generator(*name, 20003); /* not a multiple of the generators' chunk size */
    CHECK(count == 6, "6 built-in sets, found %d", count);

    dm_dataset ds = {0};
    dm_error err = {0};
    CHECK(dm_toy2d_generate(&ds, "swirl", 10, 0, &err) == DM_ERR_ARG, "unknown name refused");
    CHECK(strstr(err.msg, "swirl") && strstr(err.msg, "swissroll") && strstr(err.msg, "spiral"),
          "message names the request and the choices: %s", err.msg);
    CHECK(ds.x == NULL, "nothing allocated");
    CHECK(dm_toy2d_generate(&ds, "moons", 0, 0, &err) == DM_ERR_ARG, "n = 0 refused");
    CHECK(dm_toy2d_generate(&ds, "moons", 1, 0, &err) == DM_OK && ds.n == 1, "n = 1: %s", err.msg);
    dm_dataset_free(&ds);
}

/* ---------------------------------------------------------------------------------------- */
/* CSV                                                                                       */

/* Loads text as a CSV file and checks the values (row-major) or, with want == NULL, the error. */
static void expect_csv(const char *what, const char *text, int64_t n, int64_t dim,
                       const double *want, dm_status want_status, const char *needle) {
    const char *path = write_text("t.csv", text);
    dm_dataset ds;
    dm_error err = {0};
    dm_status st = dm_dataset_load(&ds, path, &err);
    CHECK(st == want_status, "%s: status %s, expected %s (%s)", what, dm_status_name(st),
          dm_status_name(want_status), err.msg);
    if (st == DM_OK && want) {
        CHECK(ds.n == n && ds.dim == dim, "%s: %lld x %lld, expected %lld x %lld", what,
              (long long)ds.n, (long long)ds.dim, (long long)n, (long long)dim);
        if (ds.n == n && ds.dim == dim) tu_check_array(what, ds.x, want, (size_t)(n * dim), 0, 0);
    }
    if (st != DM_OK) {
        CHECK(ds.x == NULL, "%s: nothing allocated on failure", what);
        CHECK(strstr(err.msg, path) != NULL, "%s: message names the file: %s", what, err.msg);
        if (needle)
            CHECK(strstr(err.msg, needle) != NULL, "%s: message should contain \"%s\": %s", what,
                  needle, err.msg);
    }
    dm_dataset_free(&ds);
    remove(path);
}

static void test_csv(void) {
    const double v4[] = {1, 2, 3, 4};
    /* exact: these decimals are exactly representable in float32 */
    expect_csv("header line", "x,y\n1,2\n3,4\n", 2, 2, v4, DM_OK, NULL);
    expect_csv("quoted-less header with spaces", " x , y \n1, 2\n 3 ,4\n", 2, 2, v4, DM_OK, NULL);
    expect_csv("whitespace separated", "1 2\t3\n  4\t 5   6  \n", 2, 3,
               (const double[]){1, 2, 3, 4, 5, 6}, DM_OK, NULL);
    expect_csv("comments and blank lines", "# made by hand\n\n1,2\n   \n# more\n3,4\n\n", 2, 2,
               v4, DM_OK, NULL);
    expect_csv("CRLF line ends, no final newline", "1,2\r\n3,4", 2, 2, v4, DM_OK, NULL);
    expect_csv("byte order mark", "\xEF\xBB\xBFx,y\n1,2\n3,4\n", 2, 2, v4, DM_OK, NULL);
    expect_csv("number formats", "-1.5e2,+0.25\n.5,7.\n", 2, 2,
               (const double[]){-150, 0.25, 0.5, 7}, DM_OK, NULL);
    expect_csv("one column", "v\n1\n2\n3\n4\n", 4, 1, v4, DM_OK, NULL);

    expect_csv("malformed line", "1,2\n3,4\n5,abc\n", 0, 0, NULL, DM_ERR_FORMAT,
               ":3: 'abc' is not a number");
    expect_csv("mixed first line is not a header", "1,abc\n1,2\n", 0, 0, NULL, DM_ERR_FORMAT,
               ":1: 'abc' is not a number");
    expect_csv("second header line", "x,y\nu,v\n1,2\n", 0, 0, NULL, DM_ERR_FORMAT,
               ":2: 'u' is not a number");
    expect_csv("wrong column count", "# c\n1,2\n3,4\n5,6,7\n", 0, 0, NULL, DM_ERR_FORMAT,
               ":4: expected 2 columns, found 3");
    expect_csv("header column count", "x,y,z\n1,2\n", 0, 0, NULL, DM_ERR_FORMAT,
               ":2: expected 3 columns");
    expect_csv("empty field", "1,2\n3,\n", 0, 0, NULL, DM_ERR_FORMAT, ":2: column 2 is empty");
    expect_csv("trailing comma", "1,2,\n", 0, 0, NULL, DM_ERR_FORMAT, ":1: column 3 is empty");
    expect_csv("comma field holding two numbers", "1,2 3\n", 0, 0, NULL, DM_ERR_FORMAT,
               "'2 3' is not a number");
    expect_csv("NaN refused", "1,2\n3,4\nnan,1\n", 0, 0, NULL, DM_ERR_NUMERIC, ":3:");
    expect_csv("Inf refused", "1 -inf\n", 0, 0, NULL, DM_ERR_NUMERIC, ":1:");
    expect_csv("beyond float32 range", "1,1e39\n", 0, 0, NULL, DM_ERR_NUMERIC, "float32");
    expect_csv("empty file", "", 0, 0, NULL, DM_ERR_FORMAT, "no data");
    expect_csv("header only", "x,y\n", 0, 0, NULL, DM_ERR_FORMAT, "no data");
    expect_csv("comments only", "# nothing\n\n", 0, 0, NULL, DM_ERR_FORMAT, "no data");

    char wide[4096] = "";
    for (int i = 0; i <= DM_MAX_DIM; i++) strcat(wide, i ? ",1" : "1");
    strcat(wide, "\n");
    expect_csv("65 columns", wide, 0, 0, NULL, DM_ERR_FORMAT, "at most 64");

    dm_dataset ds;
    dm_error err = {0};
    const char *missing = tu_tmp_path("absent.csv");
    CHECK(dm_dataset_load(&ds, missing, &err) == DM_ERR_IO, "missing file: %s", err.msg);
    CHECK(strstr(err.msg, missing) && strstr(err.msg, "No such file"),
          "message names the path and the reason: %s", err.msg);
    CHECK(dm_dataset_load(&ds, tu_tmp_path("data.json"), &err) == DM_ERR_ARG,
          "unknown extension refused");
    const char *txt = write_text("points.txt", "1 2\n3 4\n");
    CHECK(dm_dataset_load(&ds, txt, &err) == DM_OK && ds.n == 2, ".txt read as CSV: %s", err.msg);
    dm_dataset_free(&ds);
    remove(txt);
}

/* Random edits of a small CSV file: each must load or be refused with FORMAT/NUMERIC, never
 * crash or read outside the text (run under the sanitizers to see the latter). */
static void test_csv_fuzz(void) {
    const char base[] = "x,y\n1.5,2\n# c\n3 ,4e1\n\n-5,6\n";
    const char alphabet[] = "0123456789.,e-+ \n\t#xnaif\r";
    const char *path = tu_tmp_path("fuzz.csv");
    dm_rng r;
    dm_rng_init(&r, 5, 0);
    int loaded = 0, refused = 0, other = 0;
    for (int iter = 0; iter < 2000; iter++) {
        char text[sizeof base];
        memcpy(text, base, sizeof base);
        int32_t pick[6];
        dm_rng_int(&r, pick, 6, 0, 1 << 30);
        for (int k = 0; k <= pick[0] % 3; k++)
            text[(size_t)pick[1 + k] % (sizeof base - 1)] =
                alphabet[pick[4] % (int)(sizeof alphabet - 1)];
        text[(size_t)pick[5] % sizeof base] = '\0'; /* and cut it short */
        write_text("fuzz.csv", text);
        dm_dataset ds;
        dm_error err = {0};
        dm_status rc = dm_dataset_load(&ds, path, &err);
        if (rc == DM_OK) {
            loaded++;
            CHECK(ds.n >= 1 && ds.dim >= 1 && ds.dim <= DM_MAX_DIM &&
                      dm_all_finite(ds.x, (size_t)(ds.n * ds.dim)),
                  "fuzz %d: a loaded table is non-empty and finite", iter);
            dm_dataset_free(&ds);
        } else if (rc == DM_ERR_FORMAT || rc == DM_ERR_NUMERIC) {
            refused++;
        } else {
            other++;
            fprintf(stderr, "fuzz %d: %s: %s\n", iter, dm_status_name(rc), err.msg);
        }
    }
    CHECK(other == 0, "fuzz: %d edits gave a status other than ok/format/numeric", other);
    CHECK(loaded > 100 && refused > 100, "fuzz: %d loaded, %d refused: both paths exercised",
          loaded, refused);
    remove(path);
}

/* ---------------------------------------------------------------------------------------- */
/* Round trips and NPY loading                                                               */

static void test_round_trips(void) {
    dm_dataset ds;
    dm_error err = {0};
    CHECK(dm_dataset_init(&ds, 1000, 3, &err) == DM_OK, "%s", err.msg);
    dm_rng r;
    dm_rng_init(&r, 7, 0);
    dm_rng_normal(&r, ds.x, 3000);
    /* values across the float range, including ones with no short decimal form */
    for (int i = 0; i < 3000; i++) ds.x[i] = ldexpf(ds.x[i], (i % 61) - 30);
    ds.x[0] = FLT_MAX;
    ds.x[1] = -FLT_MIN;
    ds.x[2] = 1e-45f; /* the smallest subnormal */
    ds.x[3] = -0.0f;
    ds.x[4] = 16777217.0f;
    const char *names[] = {"rt.csv", "rt.npy", "RT.CSV"};
    for (int k = 0; k < 3; k++) {
        const char *path = tu_tmp_path(names[k]);
        CHECK(dm_dataset_save(&ds, path, &err) == DM_OK, "save %s: %s", names[k], err.msg);
        dm_dataset back;
        CHECK(dm_dataset_load(&back, path, &err) == DM_OK, "load %s: %s", names[k], err.msg);
        CHECK(back.n == ds.n && back.dim == ds.dim, "%s: %lld x %lld", names[k],
              (long long)back.n, (long long)back.dim);
        /* "%.9g" and raw float32 bytes must both give back the same bits */
        if (back.x && back.n == ds.n && back.dim == ds.dim) {
            int64_t differ = 0, first = -1;
            for (int i = 0; i < 3000; i++)
                if (memcmp(&back.x[i], &ds.x[i], sizeof(float)) != 0) {
                    differ++;
                    if (first < 0) first = i;
                }
            CHECK(differ == 0, "%s: %lld values changed; first [%lld]: %.9g -> %.9g", names[k],
                  (long long)differ, (long long)first, first < 0 ? 0.0 : (double)ds.x[first],
                  first < 0 ? 0.0 : (double)back.x[first]);
        }
        dm_dataset_free(&back);
        remove(path);
    }
    CHECK(dm_dataset_save(&ds, tu_tmp_path("rt.parquet"), &err) == DM_ERR_ARG,
          "unknown extension refused on save");

    /* NaN in an NPY file is refused with its row */
    ds.x[3 * 17 + 1] = NAN;
    const char *path = tu_tmp_path("nan.npy");
    CHECK(dm_dataset_save(&ds, path, &err) == DM_OK, "%s", err.msg);
    dm_dataset back;
    CHECK(dm_dataset_load(&back, path, &err) == DM_ERR_NUMERIC, "NaN in .npy refused");
    CHECK(strstr(err.msg, "row 17") != NULL, "message names row 17: %s", err.msg);
    CHECK(back.x == NULL, "nothing allocated");
    remove(path);
    dm_dataset_free(&ds);

    /* a 1-D array is refused with advice; float64 (2, 2) is converted */
    path = tu_tmp_path("one_d.npy");
    float vals[4] = {1, 2, 3, 4};
    CHECK(dm_npy_write_f32(path, vals, (int64_t[]){4}, 1, &err) == DM_OK, "%s", err.msg);
    CHECK(dm_dataset_load(&back, path, &err) == DM_ERR_FORMAT, "1-D npy refused");
    CHECK(strstr(err.msg, "1-D") != NULL, "message says 1-D: %s", err.msg);
    remove(path);

    path = tu_tmp_path("f64.npy");
    FILE *f = fopen(path, "wb");
    const char *dict = "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 2), }";
    char header[118]; /* 10 + 118 = 128: data starts at byte 128 */
    memset(header, ' ', sizeof header);
    memcpy(header, dict, strlen(dict));
    header[117] = '\n';
    fwrite("\x93NUMPY\x01\x00\x76\x00", 1, 10, f);
    fwrite(header, 1, sizeof header, f);
    double d[4] = {0.1, -2.5, 1e-3, 3.0};
    fwrite(d, sizeof d[0], 4, f);
    fclose(f);
    CHECK(dm_dataset_load(&back, path, &err) == DM_OK, "float64 npy: %s", err.msg);
    if (back.x) {
        CHECK(back.n == 2 && back.dim == 2, "float64 npy is 2 x 2");
        for (int i = 0; i < 4; i++)
            CHECK(back.x[i] == (float)d[i], "[%d] %.9g, expected %.9g", i, back.x[i], (float)d[i]);
    }
    dm_dataset_free(&back);
    remove(path);

    /* init refuses empty, too wide and overflowing sizes before allocating */
    CHECK(dm_dataset_init(&ds, 0, 2, &err) == DM_ERR_ARG && ds.x == NULL, "n = 0");
    CHECK(dm_dataset_init(&ds, 5, 0, &err) == DM_ERR_ARG, "dim = 0");
    /* wide rows (images) are fine in memory; only the point readers cap the dimension */
    CHECK(dm_dataset_init(&ds, 5, 784, &err) == DM_OK, "dim = 784: %s", err.msg);
    dm_dataset_free(&ds);
    CHECK(dm_dataset_init(&ds, INT64_MAX / 2, 64, &err) == DM_ERR_ARG, "n * dim * 4 overflow");
}

/* ---------------------------------------------------------------------------------------- */
/* Normaliser                                                                                */

static void test_normalizer(void) {
    const int64_t n = 4000;
    dm_dataset ds;
    dm_error err = {0};
    CHECK(dm_dataset_init(&ds, n, 3, &err) == DM_OK, "%s", err.msg);
    dm_rng r;
    dm_rng_init(&r, 3, 0);
    float *z = malloc((size_t)n * sizeof *z);
    dm_rng_normal(&r, z, (size_t)n);
    for (int64_t i = 0; i < n; i++) {
        /* |mean| >> std: a one-pass sum-of-squares std would lose digits */
        ds.x[3 * i] = 1000.0f + 2.0f * z[i];
        ds.x[3 * i + 1] = 7.0f;              /* constant */
        ds.x[3 * i + 2] = (float)(i % 4 + 1); /* 1, 2, 3, 4: mean 2.5, population std sqrt(1.25) */
    }
    free(z);
    /* independent reference for column 0: long double sums */
    long double s = 0, s2 = 0;
    for (int64_t i = 0; i < n; i++) s += ds.x[3 * i];
    long double mean0 = s / n;
    for (int64_t i = 0; i < n; i++) s2 += (ds.x[3 * i] - mean0) * (ds.x[3 * i] - mean0);
    double std0 = (double)sqrtl(s2 / n);

    dm_normalizer nz;
    CHECK(dm_normalizer_fit(&nz, &ds, &err) == DM_OK, "%s", err.msg);
    CHECK(nz.dim == 3, "dim %lld", (long long)nz.dim);
    /* double accumulation of 4000 floats: relative error far below 1e-12 */
    CHECK_CLOSE(nz.mean[0], (double)mean0, 0, 1e-12, "mean of column 0");
    CHECK_CLOSE(nz.std[0], std0, 0, 1e-9, "std of column 0");
    CHECK_CLOSE(nz.mean[1], 7.0, 0, 1e-15, "mean of the constant column");
    CHECK(nz.std[1] == 1.0, "a constant column gets std 1, got %g", nz.std[1]);
    CHECK_CLOSE(nz.mean[2], 2.5, 0, 1e-15, "mean of 1..4");
    CHECK_CLOSE(nz.std[2], sqrt(1.25), 0, 1e-14, "population std of 1..4");

    float *y = malloc((size_t)(3 * n) * sizeof *y);
    memcpy(y, ds.x, (size_t)(3 * n) * sizeof *y);
    dm_normalizer_apply(&nz, y, n);
    dm_dataset std_ds = {.x = y, .n = n, .dim = 3};
    dm_normalizer check;
    CHECK(dm_normalizer_fit(&check, &std_ds, &err) == DM_OK, "%s", err.msg);
    /* standardised values carry float rounding (~6e-8 relative) on each element */
    CHECK_CLOSE(check.mean[0], 0.0, 1e-6, 0, "standardised mean");
    CHECK_CLOSE(check.std[0], 1.0, 0, 1e-6, "standardised std");
    CHECK_CLOSE(check.std[2], 1.0, 0, 1e-6, "standardised std of 1..4");
    int bad_const = 0;
    for (int64_t i = 0; i < n; i++) bad_const += y[3 * i + 1] != 0.0f;
    CHECK(bad_const == 0, "the constant column standardises to 0 (%d not)", bad_const);

    dm_normalizer_invert(&nz, y, n);
    double *want = malloc((size_t)(3 * n) * sizeof *want);
    for (int64_t i = 0; i < 3 * n; i++) want[i] = ds.x[i];
    /* two float roundings (standardise, then back): a few ulps of ~1000 is about 1e-4 */
    tu_check_array("apply then invert", y, want, (size_t)(3 * n), 0, 4 * FLT_EPSILON);
    free(want);
    free(y);

    ds.x[5] = INFINITY;
    CHECK(dm_normalizer_fit(&nz, &ds, &err) == DM_ERR_NUMERIC, "non-finite data refused");
    dm_dataset empty = {.x = NULL, .n = 0, .dim = 2};
    CHECK(dm_normalizer_fit(&nz, &empty, &err) == DM_ERR_ARG, "empty data refused");
    dm_dataset_free(&ds);
}

int main(void) {
    if (tu_tmpdir_make("test_data")) return 1;
    test_generators();
    test_csv();
    test_csv_fuzz();
    test_round_trips();
    test_normalizer();
    tu_tmpdir_remove();
    return tu_finish("test_data");
}
