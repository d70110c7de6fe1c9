#include "resume_flags.h"

#include <stdio.h>
#include <string.h>

typedef void (*show_fn)(char *buf, size_t cap, const dm_train_config *c);

static void show_model(char *b, size_t n, const dm_train_config *c) {
    if (c->arch != DM_ARCH_UNET) {
        snprintf(b, n, "mlp");
        return;
    }
    /* the architecture a preset or config.json gives; out_channels and the class embeddings
     * follow --var and --conditional, checked on their own */
    const dm_unet_config *u = &c->unet;
    size_t k = (size_t)snprintf(b, n, "unet %lldx%lldx%lld, blocks", (long long)u->in_channels,
                                (long long)u->sample_size, (long long)u->sample_size);
    for (int i = 0; i < u->levels && k < n; i++)
        k += (size_t)snprintf(b + k, n - k, "%s%lld%s", i ? "," : " ",
                              (long long)u->block_out_channels[i],
                              u->down_attention[i] ? "a" : "");
    if (k < n)
        snprintf(b + k, n - k, ", %lld layers, groups %lld, heads %lld, dropout %g",
                 (long long)u->layers_per_block, (long long)u->norm_num_groups,
                 (long long)u->attention_head_dim, u->dropout);
}
#define SHOW(name, fmt, expr)                                                   \
    static void name(char *b, size_t n, const dm_train_config *c) {            \
        snprintf(b, n, fmt, expr);                                              \
    }
SHOW(show_hidden, "%lld", (long long)c->mlp.hidden)
SHOW(show_layers, "%lld", (long long)c->mlp.layers)
SHOW(show_temb, "%lld", (long long)c->mlp.temb_dim)
SHOW(show_schedule, "%s", dm_schedule_kind_name(c->schedule.kind))
SHOW(show_T, "%d", (int)c->schedule.T)
SHOW(show_beta_start, "%.17g", c->schedule.beta_start)
SHOW(show_beta_end, "%.17g", c->schedule.beta_end)
SHOW(show_gamma_min, "%.17g", c->schedule.gamma_min)
SHOW(show_gamma_max, "%.17g", c->schedule.gamma_max)
SHOW(show_prediction, "%s", dm_prediction_name(c->prediction))
SHOW(show_loss, "%s", dm_loss_kind_name(c->loss))
SHOW(show_var, "%s", dm_reverse_var_name(c->var))
SHOW(show_t_sampling, "%s", dm_time_sampling_name(c->timesteps))
SHOW(show_hybrid, "%.17g", c->hybrid_lambda)
SHOW(show_conditional, "%s", c->num_classes ? "on" : "off")
SHOW(show_p_uncond, "%.17g", c->p_uncond)
SHOW(show_normalize, "%s", c->normalize ? "off" : "on") /* --no-normalize */
SHOW(show_hflip, "%s", c->hflip ? "on" : "off")
SHOW(show_resolution, "%lld", (long long)c->unet.sample_size)
SHOW(show_batch, "%lld", (long long)c->batch)
SHOW(show_accum, "%lld", (long long)c->grad_accum)
SHOW(show_seed, "%llu", (unsigned long long)c->seed)
SHOW(show_warmup, "%lld", (long long)c->optim.warmup)
SHOW(show_scheduler, "%s", dm_lr_schedule_name(c->optim.lr_schedule))
SHOW(show_cycles, "%d", (int)c->optim.lr_num_cycles)
SHOW(show_power, "%.17g", c->optim.lr_power)
SHOW(show_lr_end, "%.17g", c->optim.lr_end)
SHOW(show_wd, "%.17g", c->optim.weight_decay)
SHOW(show_clip, "%.17g", c->optim.grad_clip)
SHOW(show_ema, "%.17g", c->optim.ema_decay)
SHOW(show_sde, "%s", c->sde_training ? dm_sde_kind_name(c->sde.kind) : "off")
SHOW(show_beta_min, "%.17g", c->sde.beta_min)
SHOW(show_beta_max, "%.17g", c->sde.beta_max)
SHOW(show_sigma_min, "%.17g", c->sde.sigma_min)
SHOW(show_sigma_max, "%.17g", c->sde.sigma_max)
#undef SHOW

static const struct {
    const char *flag;
    show_fn show;
} fixed[] = {
    {"--model", show_model},           {"--hidden", show_hidden},
    {"--layers", show_layers},         {"--temb-dim", show_temb},
    {"--schedule", show_schedule},     {"--T", show_T},
    {"--beta-start", show_beta_start}, {"--beta-end", show_beta_end},
    {"--gamma-min", show_gamma_min},   {"--gamma-max", show_gamma_max},
    {"--prediction", show_prediction}, {"--loss", show_loss},
    {"--var", show_var},               {"--t-sampling", show_t_sampling},
    {"--hybrid-lambda", show_hybrid},  {"--conditional", show_conditional},
    {"--p-uncond", show_p_uncond},     {"--no-normalize", show_normalize},
    {"--hflip", show_hflip},           {"--random-flip", show_hflip},
    {"--resolution", show_resolution}, {"--batch", show_batch},
    {"--grad-accum", show_accum},      {"--seed", show_seed},
    {"--warmup", show_warmup},         {"--lr-scheduler", show_scheduler},
    {"--lr-num-cycles", show_cycles},  {"--lr-power", show_power},
    {"--lr-end", show_lr_end},         {"--weight-decay", show_wd},
    {"--clip", show_clip},             {"--ema", show_ema},
    {"--sde", show_sde},               {"--beta-min", show_beta_min},
    {"--beta-max", show_beta_max},     {"--sigma-min", show_sigma_min},
    {"--sigma-max", show_sigma_max},
};

int cli_resume_check_flags(int argc, char **argv, const dm_train_config *given,
                           const dm_train_config *run) {
    char msg[2048] = "", a[256], b[256];
    size_t len = 0;
    int bad = 0;
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
        if (!cli_given(argc, argv, fixed[i].flag)) continue;
        fixed[i].show(a, sizeof a, given);
        fixed[i].show(b, sizeof b, run);
        if (strcmp(a, b) == 0) continue;
        bad++;
        if (len < sizeof msg)
            len += (size_t)snprintf(msg + len, sizeof msg - len, "%s%s %s (the run has %s)",
                                    bad > 1 ? "; " : "", fixed[i].flag, a, b);
    }
    if (!bad) return 0;
    fprintf(stderr, "error: --resume cannot change %s: %s; these are fixed for a run (leave them "
            "out, or start a new run with another --out)\n",
            bad > 1 ? "these flags" : "this flag", msg);
    return 2;
}
