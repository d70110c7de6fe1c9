/* The MLP: layout and names of the PyTorch reference, initialisation, forward against a naive
 * double-precision reference, backward against finite differences, the sampler's fast path,
 * batch growth and config validation. */
#include "models/mlp.h"
#include "test_util.h"

#include <string.h>

/* ---- a naive double-precision twin of the network, reading tensors by name ---------------- */

static const double *tensor(const dm_model *m, const double *params, const char *name) {
    int i = dm_model_find_tensor(m, name);
    if (i < 0) CHECK(0, "tensor %s missing", name); /* counted only when it fails */
    size_t off = 0;
    dm_model_tensor_info(m, i < 0 ? 0 : i, NULL, NULL, NULL, &off);
    return params + off;
}

/* y (out) = W (out, in) x (in) + b */
static void ref_linear(double *y, const double *x, const double *w, const double *b, int64_t in,
                       int64_t out) {
    for (int64_t o = 0; o < out; o++) {
        double s = b[o];
        for (int64_t i = 0; i < in; i++) s += w[o * in + i] * x[i];
        y[o] = s;
    }
}

static double silu(double v) { return v / (1.0 + exp(-v)); }

static void ref_forward(double *out, const dm_model *m, const double *params, const float *x,
                        const float *t, int64_t B) {
    const dm_mlp_config *c = dm_mlp_get_config(m);
    const int64_t D = c->dim, H = c->hidden, E = c->temb_dim, L = c->layers, half = E / 2;
    double *emb = malloc(E * sizeof *emb), *h = malloc((D + H) * sizeof *h);
    double *a = malloc(H * sizeof *a), *b = malloc(H * sizeof *b);
    char name[64];
    for (int64_t r = 0; r < B; r++) {
        /* get_timestep_embedding(t, E, flip_sin_to_cos=True, downscale_freq_shift=0) */
        for (int64_t j = 0; j < half; j++) {
            double f = exp(-log(10000.0) * (double)j / (double)half);
            emb[j] = cos(t[r] * f);
            emb[half + j] = sin(t[r] * f);
        }
        for (int64_t d = 0; d < D; d++) h[d] = x[r * D + d];
        ref_linear(h + D, emb, tensor(m, params, "time_mlp.weight"),
                   tensor(m, params, "time_mlp.bias"), E, H);
        for (int64_t j = 0; j < H; j++) h[D + j] = silu(h[D + j]);
        const double *in = h;
        int64_t nin = D + H;
        for (int64_t k = 0; k < L; k++) {
            snprintf(name, sizeof name, "net.%lld.weight", (long long)(2 * k));
            const double *w = tensor(m, params, name);
            snprintf(name, sizeof name, "net.%lld.bias", (long long)(2 * k));
            double *y = k % 2 ? b : a;
            ref_linear(y, in, w, tensor(m, params, name), nin, H);
            for (int64_t j = 0; j < H; j++) y[j] = silu(y[j]);
            in = y;
            nin = H;
        }
        snprintf(name, sizeof name, "net.%lld.weight", (long long)(2 * L));
        const double *w = tensor(m, params, name);
        snprintf(name, sizeof name, "net.%lld.bias", (long long)(2 * L));
        ref_linear(out + r * D, in, w, tensor(m, params, name), H, D);
    }
    free(emb); free(h); free(a); free(b);
}

static double *params_double(dm_model *m) {
    const size_t n = dm_model_num_params(m);
    double *p = malloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++) p[i] = dm_model_params(m)[i];
    return p;
}

static dm_model *make(int64_t D, int64_t H, int64_t E, int64_t L, uint64_t seed) {
    dm_mlp_config c = {.dim = D, .hidden = H, .temb_dim = E, .layers = L};
    dm_model *m = NULL;
    dm_error err = {0};
    CHECK(dm_mlp_create(&m, &c, seed, &err) == DM_OK, "create: %s", err.msg);
    return m;
}

static void random_inputs(float *x, float *t, int64_t B, int64_t D, uint64_t seed, bool integer_t) {
    dm_rng rng;
    dm_rng_init(&rng, seed, 9);
    dm_rng_normal(&rng, x, (size_t)(B * D));
    dm_rng_uniform(&rng, t, (size_t)B);
    for (int64_t r = 0; r < B; r++) t[r] = integer_t ? floorf(t[r] * 1000.0f) : t[r] * 1000.0f;
}

/* ---- tests --------------------------------------------------------------------------------- */

static void test_layout(void) {
    dm_mlp_config c;
    dm_mlp_config_default(&c);
    CHECK(c.dim == 2 && c.hidden == 256 && c.temb_dim == 128 && c.layers == 3, "defaults");
    CHECK(dm_mlp_macs_per_example(&c) == 128 * 256 + 258 * 256 + 2 * 256 * 256 + 256 * 2,
          "macs per example %g", dm_mlp_macs_per_example(&c));
    dm_model *m = make(2, 256, 128, 3, 0);
    if (!m) return;
    CHECK(dm_model_num_params(m) == 231426, "parameters: %zu", dm_model_num_params(m));
    CHECK(dm_model_dim(m) == 2, "dim %lld", (long long)dm_model_dim(m));
    /* the state_dict of the PyTorch MLP2D, in order */
    const struct {
        const char *name;
        int ndim;
        int64_t s0, s1;
        size_t offset;
    } want[] = {
        {"time_mlp.weight", 2, 256, 128, 0}, {"time_mlp.bias", 1, 256, 0, 32768},
        {"net.0.weight", 2, 256, 258, 33024}, {"net.0.bias", 1, 256, 0, 99072},
        {"net.2.weight", 2, 256, 256, 99328}, {"net.2.bias", 1, 256, 0, 164864},
        {"net.4.weight", 2, 256, 256, 165120}, {"net.4.bias", 1, 256, 0, 230656},
        {"net.6.weight", 2, 2, 256, 230912}, {"net.6.bias", 1, 2, 0, 231424},
    };
    CHECK(dm_model_tensor_count(m) == 10, "tensor count %d", dm_model_tensor_count(m));
    for (int i = 0; i < 10 && i < dm_model_tensor_count(m); i++) {
        const char *name;
        int64_t shape[4];
        int ndim;
        size_t off;
        dm_model_tensor_info(m, i, &name, shape, &ndim, &off);
        CHECK(strcmp(name, want[i].name) == 0 && ndim == want[i].ndim && shape[0] == want[i].s0 &&
                  shape[1] == want[i].s1 && off == want[i].offset,
              "tensor %d: %s ndim %d (%lld, %lld) at %zu; want %s (%lld, %lld) at %zu", i, name,
              ndim, (long long)shape[0], (long long)shape[1], off, want[i].name,
              (long long)want[i].s0, (long long)want[i].s1, want[i].offset);
        CHECK(dm_model_find_tensor(m, want[i].name) == i, "find %s", want[i].name);
    }
    CHECK(dm_model_find_tensor(m, "net.1.weight") == -1, "net.1 is a SiLU: no tensor");
    CHECK(dm_mlp_get_config(m) && dm_mlp_get_config(m)->hidden == 256, "get_config");
    CHECK(dm_mlp_get_config(NULL) == NULL, "get_config(NULL)");
    dm_model_free(m);
}

/* nn.Linear's default init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias, drawn here
 * from (seed, stream 1) in tensor order. */
static void test_init(void) {
    dm_model *m = make(2, 256, 128, 3, 42), *same = make(2, 256, 128, 3, 42);
    dm_model *other = make(2, 256, 128, 3, 43);
    if (!m || !same || !other) return;
    const size_t n = dm_model_num_params(m);
    CHECK(memcmp(dm_model_params(m), dm_model_params(same), n * sizeof(float)) == 0,
          "same seed, same weights");
    CHECK(memcmp(dm_model_params(m), dm_model_params(other), n * sizeof(float)) != 0,
          "another seed, other weights");
    float *u = malloc(n * sizeof *u);
    dm_rng rng;
    dm_rng_init(&rng, 42, 1);
    int64_t fan_in = 0;
    for (int i = 0; i < dm_model_tensor_count(m); i++) {
        const char *name;
        int64_t shape[4];
        int ndim;
        size_t off;
        dm_model_tensor_info(m, i, &name, shape, &ndim, &off);
        if (ndim == 2) fan_in = shape[1];
        const size_t numel = (size_t)shape[0] * (ndim == 2 ? (size_t)shape[1] : 1);
        dm_rng_uniform(&rng, u + off, numel);
        const double bound = 1.0 / sqrt((double)fan_in);
        double *want = malloc(numel * sizeof *want), maxabs = 0;
        for (size_t j = 0; j < numel; j++) {
            want[j] = (2.0 * u[off + j] - 1.0) * bound;
            double v = fabs(dm_model_params(m)[off + j]);
            if (v > maxabs) maxabs = v;
        }
        /* (2u - 1) bound in float: a couple of roundings of values below 1 */
        tu_check_array(name, dm_model_params(m) + off, want, numel, 1e-7, 1e-6);
        CHECK(maxabs <= bound * (1 + 1e-6), "%s: max |w| %g above the bound %g", name, maxabs,
              bound);
        free(want);
    }
    free(u);
    dm_model_free(m); dm_model_free(same); dm_model_free(other);
}

enum { T_RANDOM, T_EQUAL, T_EQUAL_ENDS }; /* how the batch's timesteps are drawn */

static void check_forward(dm_model *m, int64_t B, int train, int tmode, const char *what) {
    const int64_t D = dm_model_dim(m);
    float *x = malloc((size_t)(B * D) * sizeof *x), *t = malloc(B * sizeof *t);
    float *out = malloc((size_t)(B * D) * sizeof *out);
    double *want = malloc((size_t)(B * D) * sizeof *want);
    random_inputs(x, t, B, D, (uint64_t)B, true);
    if (tmode == T_EQUAL)
        for (int64_t r = 0; r < B; r++) t[r] = 417.0f;
    if (tmode == T_EQUAL_ENDS) t[B - 1] = t[0]; /* only a full scan sees that t varies */
    dm_error err = {0};
    CHECK(dm_model_forward(m, out, x, t, B, train, &err) == DM_OK, "%s: %s", what, err.msg);
    double *pd = params_double(m);
    ref_forward(want, m, pd, x, t, B);
    /* float sums over up to 258 terms through 4 layers, outputs of order 0.1-1: rounding stays
     * below ~1e-6; 1e-5 absolute leaves margin without hiding a wrong term (those move outputs
     * by 1e-2 or more) */
    tu_check_array(what, out, want, (size_t)(B * D), 1e-5, 1e-5);
    free(x); free(t); free(out); free(want); free(pd);
}

static void test_forward(void) {
    dm_model *m = make(2, 256, 128, 3, 1);
    if (!m) return;
    check_forward(m, 5, 1, T_RANDOM, "forward default config, train");
    check_forward(m, 5, 0, T_RANDOM, "forward default config, inference, mixed t");
    check_forward(m, 5, 0, T_EQUAL, "forward default config, inference, one t (fast path)");
    check_forward(m, 5, 0, T_EQUAL_ENDS, "forward inference, mixed t with equal ends");
    /* growing batches: beyond the capacity (re-size), then within it */
    check_forward(m, 300, 1, T_RANDOM, "forward B=300 after B=5");
    check_forward(m, 1000, 0, T_EQUAL, "forward B=1000 fast path");
    check_forward(m, 7, 1, T_RANDOM, "forward B=7 within capacity");
    check_forward(m, 1, 0, T_EQUAL, "forward B=1");
    dm_model_free(m);
    m = make(5, 16, 10, 1, 2); /* one hidden layer: net.0 then the output net.2 */
    if (!m) return;
    check_forward(m, 9, 1, T_RANDOM, "forward layers=1");
    check_forward(m, 9, 0, T_EQUAL, "forward layers=1 fast path");
    dm_model_free(m);
}

/* The fast path (inference, one t) folds temb into a bias: the same function, summed in
 * another order. */
static void test_fast_path_agrees(void) {
    dm_model *m = make(2, 256, 128, 3, 3);
    if (!m) return;
    const int64_t B = 600, D = 2;
    float *x = malloc(B * D * sizeof *x), *t = malloc(B * sizeof *t);
    float *a = malloc(B * D * sizeof *a), *b = malloc(B * D * sizeof *b);
    double *ad = malloc(B * D * sizeof *ad);
    random_inputs(x, t, B, D, 77, true);
    for (int64_t r = 0; r < B; r++) t[r] = 12.0f;
    dm_model_forward(m, a, x, t, B, 1, NULL);
    dm_model_forward(m, b, x, t, B, 0, NULL);
    for (int64_t i = 0; i < B * D; i++) ad[i] = a[i];
    /* float reassociation of 258-term sums: a few 1e-7 on outputs of order 0.1 */
    tu_check_array("fast path vs train path", b, ad, (size_t)(B * D), 2e-6, 1e-5);
    free(x); free(t); free(a); free(b); free(ad);
    dm_model_free(m);
}

/* d(sum(out * G))/d(theta) against central differences of the double reference. */
static void check_backward(int64_t D, int64_t H, int64_t E, int64_t L, int64_t B) {
    dm_model *m = make(D, H, E, L, 5);
    if (!m) return;
    const size_t n = dm_model_num_params(m);
    float *x = malloc((size_t)(B * D) * sizeof *x), *t = malloc(B * sizeof *t);
    float *out = malloc((size_t)(B * D) * sizeof *out), *G = malloc((size_t)(B * D) * sizeof *G);
    random_inputs(x, t, B, D, 11, false); /* fractional t as well */
    dm_rng rng;
    dm_rng_init(&rng, 12, 0);
    dm_rng_normal(&rng, G, (size_t)(B * D));
    double *pd = params_double(m), *ref = malloc((size_t)(B * D) * sizeof *ref);
    double *want = calloc(n, sizeof *want);
    const double h = 1e-5;
    for (size_t i = 0; i < n; i++) {
        const double keep = pd[i];
        double lp = 0, lm = 0;
        pd[i] = keep + h;
        ref_forward(ref, m, pd, x, t, B);
        for (int64_t j = 0; j < B * D; j++) lp += ref[j] * G[j];
        pd[i] = keep - h;
        ref_forward(ref, m, pd, x, t, B);
        for (int64_t j = 0; j < B * D; j++) lm += ref[j] * G[j];
        pd[i] = keep;
        want[i] = 0.5 + (lp - lm) / (2 * h); /* grads start at 0.5: backward adds */
    }
    float *g = dm_model_grads(m);
    for (size_t i = 0; i < n; i++) g[i] = 0.5f;
    CHECK(dm_model_forward(m, out, x, t, B, 1, NULL) == DM_OK, "train forward");
    dm_model_backward(m, G, B);
    char what[96];
    snprintf(what, sizeof what, "backward D=%lld H=%lld E=%lld L=%lld B=%lld", (long long)D,
             (long long)H, (long long)E, (long long)L, (long long)B);
    /* FD of a smooth double function with h = 1e-5: error ~1e-10; the float backward carries
     * ~1e-7 relative rounding on gradients of order 0.1-1, so 1e-5 is sharp enough that a
     * missing or doubled term (order 1e-2 and up) fails */
    tu_check_array(what, g, want, n, 1e-5, 1e-5);
    /* a second backward of the same activations adds the same gradient again */
    dm_model_backward(m, G, B);
    for (size_t i = 0; i < n; i++) want[i] = 2 * want[i] - 0.5;
    snprintf(what, sizeof what, "second backward D=%lld H=%lld adds", (long long)D, (long long)H);
    tu_check_array(what, g, want, n, 2e-5, 1e-5);

    /* the input gradient: x is float, so the step is larger (h = 1e-3: FD error ~1e-7 from the
     * curvature, ~1e-7 from rounding x + h) */
    double *want_dx = malloc((size_t)(B * D) * sizeof *want_dx);
    float *dx = malloc((size_t)(B * D) * sizeof *dx);
    const float hx = 1e-3f;
    for (int64_t i = 0; i < B * D; i++) {
        const float keep = x[i];
        double lp = 0, lm = 0;
        x[i] = keep + hx;
        const double up = (double)x[i] - keep;
        ref_forward(ref, m, pd, x, t, B);
        for (int64_t j = 0; j < B * D; j++) lp += ref[j] * G[j];
        x[i] = keep - hx;
        const double down = (double)keep - x[i];
        ref_forward(ref, m, pd, x, t, B);
        for (int64_t j = 0; j < B * D; j++) lm += ref[j] * G[j];
        x[i] = keep;
        want_dx[i] = 0.25 + (lp - lm) / (up + down); /* dx starts at 0.25: backward adds */
        dx[i] = 0.25f;
    }
    dm_model_backward_input(m, G, dx, B);
    snprintf(what, sizeof what, "input gradient D=%lld H=%lld", (long long)D, (long long)H);
    tu_check_array(what, dx, want_dx, (size_t)(B * D), 1e-4, 1e-4);
    free(want_dx); free(dx);
    free(x); free(t); free(out); free(G); free(pd); free(ref); free(want);
    dm_model_free(m);
}

static void test_invalid(void) {
    const struct {
        dm_mlp_config c;
        const char *field;
    } bad[] = {
        {{0, 8, 6, 2, 0, 0}, "dim"},      {{DM_MAX_DIM + 1, 8, 6, 2, 0, 0}, "dim"},
        {{2, 0, 6, 2, 0, 0}, "hidden"},   {{2, 8, 5, 2, 0, 0}, "temb_dim"},
        {{2, 8, 0, 2, 0, 0}, "temb_dim"}, {{2, 8, 6, 0, 0, 0}, "layers"},
        {{2, 8, 6, -3, 0, 0}, "layers"},  {{2, 8, 6, 2, 3, 0}, "out_dim"},
        {{2, 8, 6, 2, 0, -1}, "num_classes"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        static dm_model sentinel;
        dm_model *m = &sentinel; /* must be reset to NULL */
        dm_error err = {0};
        dm_status st = dm_mlp_create(&m, &bad[i].c, 0, &err);
        CHECK(st == DM_ERR_ARG && err.status == DM_ERR_ARG && m == NULL &&
                  strstr(err.msg, bad[i].field),
              "config %zu: status %d, message '%s', want DM_ERR_ARG naming %s", i, st, err.msg,
              bad[i].field);
    }
    dm_model *m = make(2, 8, 6, 2, 0);
    if (!m) return;
    float x[4] = {0}, t[2] = {0}, out[4];
    dm_error err = {0};
    CHECK(dm_model_forward(m, out, x, t, 0, 1, &err) == DM_ERR_ARG && strstr(err.msg, "batch"),
          "B = 0: '%s'", err.msg);
    CHECK(dm_model_forward(m, out, NULL, t, 2, 1, &err) == DM_ERR_ARG, "NULL x");
    CHECK(dm_model_forward(m, NULL, x, t, 2, 1, &err) == DM_ERR_ARG, "NULL out");
    CHECK(dm_model_forward(m, out, x, NULL, 2, 1, &err) == DM_ERR_ARG, "NULL t");
    CHECK(dm_model_forward(m, out, x, t, 2, 1, &err) == DM_OK, "valid call");
    dm_model_free(m);
}

int main(void) {
    dm_set_num_threads(2);
    test_layout();
    test_init();
    test_forward();
    test_fast_path_agrees();
    check_backward(3, 8, 6, 2, 4);
    check_backward(1, 5, 4, 1, 3);
    check_backward(2, 16, 8, 3, 40); /* more rows than the tiny cases, three hidden layers */
    test_invalid();
    return tu_finish("test_mlp");
}
