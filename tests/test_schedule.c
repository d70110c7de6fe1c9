/* Noise schedules: hand-computed linear values, the acceptance values, cosine and log-SNR
 * against an independent Python computation, invariants, and refused configurations. */
#include "diffusion/diffusion_impl.h"
#include "test_util.h"

#include <string.h>

typedef struct {
    int i;
    double beta, alpha_bar, beta_tilde;
} ref_row;

/* Reference rows printed by this Python 3 script (plain math module, double precision; the
 * log-SNR betas use the direct 1 - ab_t/ab_{t-1} rather than the library's expm1 form):
 *
 *   import math
 *   def sched(kind, T, b0=1e-4, b1=0.02, s=0.008, gmin=-10.0, gmax=10.0):
 *       if kind == "cosine":
 *           f = lambda t: math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2
 *           beta = [min(1 - (f(t) / f(0)) / (f(t - 1) / f(0)), 0.999) for t in range(1, T + 1)]
 *       else:  # logsnr, alpha_bar_0 = 1
 *           g = lambda t: gmin + (gmax - gmin) * t / T
 *           ab = lambda t: 1.0 if t == 0 else 1 / (1 + math.exp(g(t)))
 *           beta = [min(1 - ab(t) / ab(t - 1), 0.999) for t in range(1, T + 1)]
 *       abar, p = [], 1.0
 *       for b in beta: p *= 1 - b; abar.append(p)
 *       prev = [1.0] + abar[:-1]
 *       bt = [0.0] + [(1 - prev[i]) / (1 - abar[i]) * beta[i] for i in range(1, T)]
 *       return beta, abar, bt
 *   ... print(f"{{{i}, {beta[i]!r}, {abar[i]!r}, {bt[i]!r}}},") for the indices below
 */
static const ref_row cosine_1000[] = {
    {0, 4.128422482196914e-05, 0.999958715775178, 0.0},
    {1, 4.614175273665033e-05, 0.9999125759273678, 2.178949614569182e-05},
    {499, 0.0031458862304780677, 0.49384359044063775, 0.003136199904057811},
    {998, 0.7499993929011166, 2.428766907034852e-06, 0.7499939281844208},
    {999, 0.999, 2.4287669070348542e-09, 0.9989975760881921},
};
static const ref_row cosine_10[] = {
    {0, 0.02790726288603096, 0.972092737113969, 0.0},
    {1, 0.07549363729672243, 0.8987059205995089, 0.02079905158062072},
    {2, 0.12439598636904847, 0.7869105111508292, 0.059132794341103107},
    {3, 0.17718952540157396, 0.6474782111465038, 0.10710607568413313},
    {4, 0.23728153019052467, 0.4938435904406378, 0.16525901461462866},
    {5, 0.3098834401085723, 0.3408096397593241, 0.23794263218593117},
    {6, 0.40400314303967544, 0.20312147411833764, 0.33419770862069526},
    {7, 0.5369981776428855, 0.0940456126766538, 0.47234421753340544},
    {8, 0.743829366895427, 0.02409172414008586, 0.6905110808339839},
    {9, 0.999, 2.4091724140085884e-05, 0.9749558559515845},
};
static const ref_row logsnr_1000[] = {
    {0, 4.631492400941628e-05, 0.9999536850759906, 0.0},
    {1, 9.356226527978961e-07, 0.9999527494966711, 9.170969410465472e-07},
    {499, 0.009900663346622207, 0.5, 0.009801660013245098},
    {998, 0.019800409596303137, 4.631492400926818e-05, 0.019800391070591384},
    {999, 0.019800427755214955, 4.5397868702434395e-05, 0.019800409596303227},
};
static const ref_row logsnr_10[] = {
    {0, 0.00033535013046637197, 0.9996646498695336, 0.0},
    {1, 0.002137990001394141, 0.9975273768433653, 0.00028996542557627636},
    {2, 0.015552041142518847, 0.9820137900379085, 0.0021379900013941177},
    {3, 0.10307056080762256, 0.8807970779778823, 0.015552041142518708},
    {4, 0.4323323583816936, 0.5, 0.10307056080762252},
    {5, 0.7615941559557649, 0.11920292202211757, 0.4323323583816937},
    {6, 0.8491126756208686, 0.017986209962091566, 0.7615941559557649},
    {7, 0.8625267267619932, 0.0024726231566347743, 0.8491126756208687},
    {8, 0.8643747513378109, 0.0003353501304664781, 0.8625267267619932},
    {9, 0.864625462828104, 4.53978687024344e-05, 0.8643747513378108},
};

static void check_ref(dm_schedule_kind kind, int32_t T, const ref_row *rows, int nrows) {
    dm_schedule_config cfg;
    dm_schedule_config_default(&cfg);
    cfg.kind = kind;
    cfg.T = T;
    dm_schedule s;
    dm_error err = {0};
    CHECK(dm_schedule_init(&s, &cfg, &err) == DM_OK, "%s T=%d: %s", dm_schedule_kind_name(kind),
          (int)T, err.msg);
    if (err.status) return;
    char what[128];
    for (int r = 0; r < nrows; r++) {
        const ref_row *w = &rows[r];
        /* Both sides are double. The smallest betas (9e-7 for log-SNR at i = 1) come from
         * 1 - (a number near 1), so either way of computing them keeps only ~1e-16 / beta
         * relative accuracy (~1e-10); 1e-8 relative leaves room and still catches any formula
         * or index error, which shows up at 1e-3 or more. */
        snprintf(what, sizeof what, "%s T=%d beta[%d]", dm_schedule_kind_name(kind), (int)T, w->i);
        CHECK_CLOSE(s.beta[w->i], w->beta, 0, 1e-8, what);
        snprintf(what, sizeof what, "%s T=%d alpha_bar[%d]", dm_schedule_kind_name(kind), (int)T,
                 w->i);
        CHECK_CLOSE(s.alpha_bar[w->i], w->alpha_bar, 0, 1e-8, what);
        snprintf(what, sizeof what, "%s T=%d beta_tilde[%d]", dm_schedule_kind_name(kind), (int)T,
                 w->i);
        CHECK_CLOSE(s.beta_tilde[w->i], w->beta_tilde, 1e-300, 1e-8, what);
    }
    dm_schedule_free(&s);
}

/* Properties every valid schedule has, whatever its kind. */
static void check_invariants(const dm_schedule_config *cfg) {
    dm_schedule s;
    dm_error err = {0};
    const char *name = dm_schedule_kind_name(cfg->kind);
    CHECK(dm_schedule_init(&s, cfg, &err) == DM_OK, "%s T=%d: %s", name, (int)cfg->T, err.msg);
    if (err.status) return;
    CHECK(s.T == cfg->T, "%s: T %d", name, (int)s.T);
    int bad_range = 0, bad_prod = 0, bad_mono = 0, bad_tilde = 0, bad_prev = 0;
    double prod = 1.0;
    for (int32_t i = 0; i < s.T; i++) {
        bad_range += !(s.beta[i] > 0 && s.beta[i] < 1) || s.alpha[i] != 1.0 - s.beta[i];
        bad_prev += s.alpha_bar_prev[i] != prod;
        prod *= 1.0 - s.beta[i];
        /* the library forms the same product in the same order: exact */
        bad_prod += s.alpha_bar[i] != prod;
        bad_mono += !(s.alpha_bar[i] < s.alpha_bar_prev[i]);
        bad_tilde += !(s.beta_tilde[i] >= 0 && s.beta_tilde[i] <= s.beta[i]);
    }
    CHECK(bad_range == 0, "%s: %d betas outside (0, 1) or alpha != 1 - beta", name, bad_range);
    CHECK(bad_prod == 0, "%s: alpha_bar != prod alpha at %d indices", name, bad_prod);
    CHECK(bad_prev == 0, "%s: alpha_bar_prev != alpha_bar[i-1] at %d indices", name, bad_prev);
    CHECK(bad_mono == 0, "%s: alpha_bar not strictly decreasing at %d indices", name, bad_mono);
    CHECK(bad_tilde == 0, "%s: beta_tilde outside [0, beta] at %d indices", name, bad_tilde);
    CHECK(s.alpha_bar_prev[0] == 1.0 && s.beta_tilde[0] == 0.0, "%s: index 0 prev %g tilde %g",
          name, s.alpha_bar_prev[0], s.beta_tilde[0]);
    dm_schedule_free(&s);
    CHECK(s.beta == NULL && s.T == 0, "%s: free leaves the struct empty", name);
}

static void check_refused(const char *what, const dm_schedule_config *cfg, const char *needle) {
    dm_schedule s;
    dm_error err = {0};
    dm_status st = dm_schedule_init(&s, cfg, &err);
    CHECK(st == DM_ERR_ARG && err.status == DM_ERR_ARG, "%s: status %s", what,
          dm_status_name(st));
    CHECK(strstr(err.msg, needle) != NULL, "%s: message '%s' should mention '%s'", what, err.msg,
          needle);
    CHECK(s.beta == NULL, "%s: nothing allocated on failure", what);
    if (st == DM_OK) dm_schedule_free(&s);
}

int main(void) {
    dm_schedule_config cfg;
    dm_schedule_config_default(&cfg);
    CHECK(cfg.kind == DM_SCHEDULE_LINEAR && cfg.T == 1000 && cfg.beta_start == 1e-4 &&
              cfg.beta_end == 0.02 && cfg.cosine_s == 0.008 && cfg.gamma_min == -10 &&
              cfg.gamma_max == 10,
          "defaults");

    /* ---- linear T = 1000 against a hand computation */
    {
        dm_schedule s;
        dm_error err = {0};
        CHECK(dm_schedule_init(&s, &cfg, &err) == DM_OK, "%s", err.msg);
        /* the endpoints of linspace are the configured values exactly */
        CHECK(s.beta[0] == 1e-4 && s.beta[999] == 0.02, "endpoints %.17g %.17g", s.beta[0],
              s.beta[999]);
        double ab = 1.0, maxrel = 0;
        for (int i = 0; i < 1000; i++) {
            double beta = 1e-4 + (0.02 - 1e-4) * i / 999.0;
            double prev = ab;
            ab *= 1.0 - beta;
            double bt = i == 0 ? 0 : (1 - prev) / (1 - ab) * beta;
            double rel = fmax(fabs(s.beta[i] - beta) / beta,
                              fmax(fabs(s.alpha_bar[i] - ab) / ab,
                                   i ? fabs(s.beta_tilde[i] - bt) / bt : fabs(s.beta_tilde[i])));
            if (rel > maxrel) maxrel = rel;
        }
        /* same double operations in a possibly different order: a few ulps */
        CHECK(maxrel < 1e-13, "linear: max relative difference to the hand computation %.3g",
              maxrel);
        /* exact values from the script in the header comment */
        CHECK_CLOSE(s.alpha_bar[999], 4.0358297653756754e-05, 0, 1e-11, "linear alpha_bar[999]");
        CHECK_CLOSE(s.beta_tilde[487], 0.009791571985690042, 0, 1e-11, "linear beta_tilde[487]");
        /* The acceptance values, to the digits it states: 0.00979 (every digit given;
         * the value is 0.0097916) and 0.0200 (0.019999984). Half a unit in the last digit. */
        CHECK_CLOSE(s.beta_tilde[487], 0.00979, 0.5e-5, 0, "issue: beta_tilde[487] = 0.00979");
        CHECK_CLOSE(s.beta_tilde[999], 0.0200, 0.5e-4, 0, "issue: beta_tilde[999] = 0.0200");
        dm_schedule_free(&s);
    }
    /* T = 1 gives beta_start alone */
    {
        dm_schedule_config c1 = cfg;
        c1.T = 1;
        dm_schedule s;
        dm_error err = {0};
        CHECK(dm_schedule_init(&s, &c1, &err) == DM_OK, "T=1: %s", err.msg);
        if (!err.status) {
            CHECK(s.beta[0] == 1e-4 && s.alpha_bar[0] == 1 - 1e-4 && s.beta_tilde[0] == 0,
                  "T=1: beta %g", s.beta[0]);
            dm_schedule_free(&s);
        }
    }

    /* ---- cosine and log-SNR against Python */
    check_ref(DM_SCHEDULE_COSINE, 1000, cosine_1000, 5);
    check_ref(DM_SCHEDULE_COSINE, 10, cosine_10, 10);
    check_ref(DM_SCHEDULE_LOGSNR, 1000, logsnr_1000, 5);
    check_ref(DM_SCHEDULE_LOGSNR, 10, logsnr_10, 10);
    /* log-SNR: alpha_bar is sigmoid(-gamma) itself when nothing was clipped */
    {
        dm_schedule_config c = cfg;
        c.kind = DM_SCHEDULE_LOGSNR;
        dm_schedule s;
        dm_error err = {0};
        CHECK(dm_schedule_init(&s, &c, &err) == DM_OK, "%s", err.msg);
        double maxrel = 0;
        for (int t = 1; t <= 1000; t++) {
            double g = -10.0 + 20.0 * t / 1000.0, want = 1 / (1 + exp(g));
            maxrel = fmax(maxrel, fabs(s.alpha_bar[t - 1] - want) / want);
        }
        /* a product of 1000 factors, each rounded: ~1000 ulps at most */
        CHECK(maxrel < 1e-12, "logsnr alpha_bar vs sigmoid(-gamma): max rel diff %.3g", maxrel);
        dm_schedule_free(&s);
    }

    /* ---- invariants */
    {
        dm_schedule_config c = cfg;
        int Ts[] = {1, 2, 10, 1000, 4000};
        for (int k = 0; k < 3; k++)
            for (int j = 0; j < 5; j++) {
                c.kind = (dm_schedule_kind)k;
                c.T = Ts[j];
                check_invariants(&c);
            }
        /* log-SNR reaches the clip at 0.999 only when (gamma_max - gamma_min) / T > ~7:
         * then alpha_bar is the product of the clipped alphas, not sigmoid(-gamma) */
        c.kind = DM_SCHEDULE_LOGSNR;
        c.T = 10;
        c.gamma_min = -5;
        c.gamma_max = 100;
        check_invariants(&c);
        dm_schedule sc;
        dm_error err = {0};
        if (dm_schedule_init(&sc, &c, &err) == DM_OK) {
            CHECK(sc.beta[9] == 0.999, "logsnr clip: beta[9] = %.17g", sc.beta[9]);
            dm_schedule_free(&sc);
        }
    }

    /* ---- names */
    {
        dm_schedule_kind k = DM_SCHEDULE_LINEAR;
        dm_error err = {0};
        const char *names[] = {"linear", "cosine", "logsnr"};
        for (int j = 0; j < 3; j++) {
            CHECK(strcmp(dm_schedule_kind_name((dm_schedule_kind)j), names[j]) == 0, "name %d", j);
            CHECK(dm_schedule_kind_parse(names[j], &k, &err) == DM_OK && k == (dm_schedule_kind)j,
                  "parse %s", names[j]);
        }
        k = DM_SCHEDULE_COSINE;
        CHECK(dm_schedule_kind_parse("quadratic", &k, &err) == DM_ERR_ARG, "unknown name");
        CHECK(k == DM_SCHEDULE_COSINE, "kind untouched on failure");
        CHECK(strstr(err.msg, "quadratic") && strstr(err.msg, "linear") &&
                  strstr(err.msg, "cosine") && strstr(err.msg, "logsnr"),
              "message names the input and the allowed names: %s", err.msg);
        CHECK(dm_schedule_kind_parse(NULL, &k, &err) == DM_ERR_ARG, "NULL name");
    }

    /* ---- refused configurations */
    {
        dm_schedule_config c = cfg;
        c.beta_end = 1.0;
        check_refused("beta_end = 1", &c, "beta_end < 1");
        c = cfg;
        c.beta_start = 0;
        check_refused("beta_start = 0", &c, "0 < beta_start");
        c = cfg;
        c.beta_start = 0.03;
        check_refused("beta_start > beta_end", &c, "beta_start <= beta_end");
        c = cfg;
        c.beta_start = NAN;
        check_refused("beta_start NaN", &c, "0 < beta_start");
        c = cfg;
        c.T = 0;
        check_refused("T = 0", &c, "allowed 1 to 100000");
        c.T = 100001;
        check_refused("T = 100001", &c, "allowed 1 to 100000");
        c = cfg;
        c.kind = DM_SCHEDULE_LOGSNR;
        c.gamma_min = 10;
        check_refused("gamma_min >= gamma_max", &c, "gamma_min < gamma_max");
        c.gamma_min = -1000; /* alpha_bar rounds to 1: beta = 0 at the first steps */
        c.gamma_max = -900;
        check_refused("logsnr beta = 0", &c, "(0, 1)");
        c = cfg;
        c.kind = DM_SCHEDULE_COSINE;
        c.cosine_s = 0;
        check_refused("cosine s = 0", &c, "s > 0");
        c = cfg;
        c.kind = (dm_schedule_kind)7;
        check_refused("unknown kind", &c, "linear, cosine, logsnr");
    }
    return tu_finish("test_schedule");
}
