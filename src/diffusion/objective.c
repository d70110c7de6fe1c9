/* Training objectives of MATH.md: L_simple in each prediction's own units, the variational
 * bound's terms, VDM's SNR-difference weighting and improved DDPM's hybrid with a learned
 * variance. Everything is written in eps space: with eps_hat = a x_t + b pred and
 * e = eps_hat - eps, the mean term of every objective is w_t * mean_d e^2, and the gap between
 * the posterior mean and the model mean is mu_tilde - mu_theta = c_t e with
 * c_t = beta_t / (sqrt(alpha_t) sqrt(1 - alpha_bar_t)). */
#include "diffusion/diffusion_impl.h"

#include <math.h>
#include <string.h>

static const double ln2 = 0.69314718055994530942;

static const char *const loss_names[] = {"simple", "vlb", "vdm", "hybrid", "vdm-continuous"};
static const char *const var_names[] = {"beta", "beta-tilde", "learned"};
static const char *const time_names[] = {"uniform", "importance"};

static dm_status parse_name(const char *name, const char *const *names, int count, int *out,
                            const char *what, dm_error *err) {
    for (int k = 0; name && k < count; k++) {
        if (strcmp(name, names[k]) == 0) {
            *out = k;
            return DM_OK;
        }
    }
    char allowed[256] = "";
    for (int k = 0; k < count; k++) {
        strncat(allowed, names[k], sizeof allowed - strlen(allowed) - 1);
        if (k + 1 < count) strncat(allowed, ", ", sizeof allowed - strlen(allowed) - 1);
    }
    return dm_error_set(err, DM_ERR_ARG, "unknown %s '%s' (allowed: %s)", what,
                        name ? name : "(null)", allowed);
}

const char *dm_loss_kind_name(dm_loss_kind k) {
    return (int)k >= 0 && (int)k < 5 ? loss_names[k] : "unknown";
}
const char *dm_reverse_var_name(dm_reverse_var v) {
    return (int)v >= 0 && (int)v < 3 ? var_names[v] : "unknown";
}
const char *dm_time_sampling_name(dm_time_sampling t) {
    return (int)t >= 0 && (int)t < 2 ? time_names[t] : "unknown";
}

dm_status dm_loss_kind_parse(const char *name, dm_loss_kind *k, dm_error *err) {
    int v = 0;
    dm_status st = parse_name(name, loss_names, 5, &v, "loss", err);
    if (!st) *k = (dm_loss_kind)v;
    return st;
}
dm_status dm_reverse_var_parse(const char *name, dm_reverse_var *out, dm_error *err) {
    int v = 0;
    dm_status st = parse_name(name, var_names, 3, &v, "reverse variance", err);
    if (!st) *out = (dm_reverse_var)v;
    return st;
}
dm_status dm_time_sampling_parse(const char *name, dm_time_sampling *t, dm_error *err) {
    int v = 0;
    dm_status st = parse_name(name, time_names, 2, &v, "timestep sampling", err);
    if (!st) *t = (dm_time_sampling)v;
    return st;
}

double dm_mean_gap_coeff(const dm_schedule *s, int32_t i) {
    return s->beta[i] / (sqrt(s->alpha[i]) * sqrt(1.0 - s->alpha_bar[i]));
}

/* sigma_t^2 of a fixed reverse variance, beta_tilde clipped at t = 1 where it is 0 (the
 * decoder's variance must be positive). */
static double fixed_var(const dm_schedule *s, int32_t i, dm_reverse_var var) {
    return var == DM_VAR_BETA ? s->beta[i] : dm_schedule_beta_tilde_clipped(s, i);
}

dm_status dm_loss_weights(const dm_schedule *s, dm_prediction p, dm_loss_kind loss,
                          dm_reverse_var var, double *w, dm_error *err) {
    if (!s || !s->beta || !w) return dm_error_set(err, DM_ERR_ARG, "loss weights: NULL argument");
    if ((int)p < 0 || (int)p > DM_PRED_SCORE)
        return dm_error_set(err, DM_ERR_ARG, "loss weights: unknown prediction %d", (int)p);
    if (loss == DM_LOSS_VLB && var == DM_VAR_LEARNED)
        return dm_error_set(err, DM_ERR_ARG, "loss weights: the vlb weight of a learned variance "
                            "depends on the model's output (no fixed w_t)");
    const double T = s->T;
    for (int32_t i = 0; i < s->T; i++) {
        const double c = dm_mean_gap_coeff(s, i);
        switch (loss) {
        case DM_LOSS_SIMPLE:
        case DM_LOSS_HYBRID: {
            /* unit weight on (pred - target)^2 = e^2 / b^2 */
            double a, b;
            dm_prediction_to_eps_coeffs(p, s->alpha_bar[i], &a, &b);
            w[i] = 1.0 / (b * b);
            break;
        }
        case DM_LOSS_VLB:
            /* T * L_{t-1} per dimension: ||mu_tilde - mu||^2 / (2 sigma^2) (the Gaussian
             * decoder's term at t = 1) */
            w[i] = T * c * c / (2.0 * fixed_var(s, i, var));
            break;
        case DM_LOSS_VDM:
            if (i == 0) {
                /* SNR(0) is infinite (alpha_bar_0 = 1): the t = 1 term is the decoder's, with
                 * the same variance as the SNR form implies, beta_tilde (clipped) */
                w[i] = T * c * c / (2.0 * fixed_var(s, i, DM_VAR_BETA_TILDE));
            } else {
                /* (T/2)(SNR(t-1) - SNR(t)) ||x0 - x0_hat||^2, ||x0 - x0_hat||^2 = e^2 / SNR(t) */
                const double ab = s->alpha_bar[i], abp = s->alpha_bar_prev[i];
                const double snr = ab / (1.0 - ab), snr_prev = abp / (1.0 - abp);
                w[i] = 0.5 * T * (snr_prev - snr) / snr;
            }
            break;
        default:
            return dm_error_set(err, DM_ERR_ARG, "loss weights: unknown loss %d", (int)loss);
        }
    }
    return DM_OK;
}

dm_status dm_objective_check(const dm_objective *o, dm_error *err) {
    if (o->var == DM_VAR_LEARNED && o->loss != DM_LOSS_HYBRID && o->loss != DM_LOSS_VLB)
        return dm_error_set(err, DM_ERR_ARG,
                            "a learned variance is trained only by the bound: use loss hybrid or "
                            "vlb (loss %s would leave it untrained)",
                            dm_loss_kind_name(o->loss));
    if (o->loss == DM_LOSS_HYBRID && o->var != DM_VAR_LEARNED)
        return dm_error_set(err, DM_ERR_ARG,
                            "loss hybrid adds the bound to train a learned variance: use it with "
                            "variance learned (with a fixed variance use simple or vlb)");
    if (o->loss == DM_LOSS_VDM_CONTINUOUS)
        return dm_error_set(err, DM_ERR_ARG,
                            "vdm-continuous is its own objective (diffusion/vdm.c)");
    if (!(o->hybrid_lambda >= 0 && isfinite(o->hybrid_lambda)))
        return dm_error_set(err, DM_ERR_ARG, "hybrid lambda %g: must be finite and >= 0",
                            o->hybrid_lambda);
    return DM_OK;
}

/* The bound's terms for one example with a learned variance, per dimension; adds the
 * gradients to gp (prediction, NULL when the mean is held fixed) and gv (raw variance).
 * Returns the sum over dimensions of the KL (t > 1) or decoder NLL (t = 1) in nats. */
static double learned_var_terms(const dm_schedule *s, int32_t i, const double *e, const float *raw,
                                double b_pred, double k, float *gp, float *gv, int64_t D) {
    const double c = dm_mean_gap_coeff(s, i), c2 = c * c;
    const double lb = log(s->beta[i]), lbt = log(dm_schedule_beta_tilde_clipped(s, i));
    const double bt = i > 0 ? s->beta_tilde[i] : 0.0, log_bt = i > 0 ? log(bt) : 0.0;
    double sum = 0.0;
    for (int64_t d = 0; d < D; d++) {
        const double lv = dm_learned_log_var(raw[d], lb, lbt), inv = exp(-lv);
        const double gap2 = c2 * e[d] * e[d];
        sum += dm_bound_term_dim(i, lv, bt, log_bt, gap2);
        /* d/dlv = 0.5 (1 - (bt + gap2) / sigma^2); d lv / d raw = (lb - lbt) / 2 */
        gv[d] += (float)(k * 0.5 * (1.0 - (bt + gap2) * inv) * 0.5 * (lb - lbt));
        if (gp) gp[d] += (float)(k * c2 * e[d] * inv * b_pred);
    }
    return sum;
}

double dm_objective_batch(const dm_objective *o, const float *out, const float *xt,
                          const float *eps, const int32_t *idx, const double *scale, float *grad,
                          double *per_example, int64_t B, int64_t D) {
    const dm_schedule *s = o->s;
    const bool learned = o->var == DM_VAR_LEARNED;
    const int64_t OD = learned ? 2 * D : D;
    const double T = s->T;
    double total = 0.0;
    /* one example per iteration: the loss is summed in example order, independent of threads */
    double *ex = per_example;
#pragma omp parallel for schedule(static) if (B * D >= DM_PARALLEL_MIN)
    for (int64_t bi = 0; bi < B; bi++) {
        const int32_t i = idx[bi];
        const double ab = s->alpha_bar[i];
        double a, b;
        dm_prediction_to_eps_coeffs(o->pred, ab, &a, &b);
        const float *pred = out + bi * OD, *x = xt + bi * D, *ep = eps + bi * D;
        float *gp = grad + bi * OD;
        double e[DM_OBJECTIVE_MAX_ROW]; /* eps_hat - eps, in double as the loss is summed */
        const double sc = scale ? scale[bi] : 1.0;
        /* d(batch loss)/d(example loss) */
        const double k_ex = sc / (double)B;
        double sq = 0.0;
        for (int64_t d0 = 0; d0 < D; d0 += DM_OBJECTIVE_MAX_ROW) {
            const int64_t n = D - d0 < DM_OBJECTIVE_MAX_ROW ? D - d0 : DM_OBJECTIVE_MAX_ROW;
            for (int64_t d = 0; d < n; d++) {
                e[d] = a * x[d0 + d] + b * pred[d0 + d] - ep[d0 + d];
                sq += e[d] * e[d];
            }
            if (!learned || o->loss == DM_LOSS_HYBRID) {
                /* mean term w_t mean_d e^2 */
                const double wt = o->w[i];
                const double g = k_ex * wt * 2.0 / (double)D * b;
                for (int64_t d = 0; d < n; d++) gp[d0 + d] = g * e[d];
            } else {
                for (int64_t d = 0; d < n; d++) gp[d0 + d] = 0.0f;
            }
        }
        double ell = learned && o->loss == DM_LOSS_VLB ? 0.0 : o->w[i] * sq / (double)D;
        if (learned) {
            /* the bound per dimension: T KL / D (vlb) or lambda T KL / (D ln 2) (hybrid, in
             * bits as improved DDPM's code) */
            const double kv = o->loss == DM_LOSS_VLB ? T / (double)D
                                                     : o->hybrid_lambda * T / ((double)D * ln2);
            float *gv = gp + D;
            for (int64_t d = 0; d < D; d++) gv[d] = 0.0f;
            for (int64_t d0 = 0; d0 < D; d0 += DM_OBJECTIVE_MAX_ROW) {
                const int64_t n = D - d0 < DM_OBJECTIVE_MAX_ROW ? D - d0 : DM_OBJECTIVE_MAX_ROW;
                for (int64_t d = 0; d < n; d++)
                    e[d] = a * x[d0 + d] + b * pred[d0 + d] - ep[d0 + d];
                ell += kv * learned_var_terms(s, i, e, pred + D + d0, b, k_ex * kv,
                                              o->loss == DM_LOSS_VLB ? gp + d0 : NULL, gv + d0,
                                              n);
            }
        }
        ex[bi] = ell;
    }
    for (int64_t bi = 0; bi < B; bi++) total += (scale ? scale[bi] : 1.0) * ex[bi];
    return total / (double)B;
}
