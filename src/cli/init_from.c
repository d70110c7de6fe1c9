/* diffusion train --init-from DIR: fine-tuning from a diffusers folder. The UNet's architecture
 * and weights come from the folder, the schedule, prediction and reverse variance from its
 * scheduler; the schedule must be one diffusion.c trains with (linear, or squaredcos_cap_v2 as
 * the cosine schedule with s = 0.008). */
#include "init_from.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* Whether cfg's schedule has the alpha_bar of s (1e-4 relative: diffusers' float32 betas
 * against our double ones; the nearest other schedule is off by far more). */
static int same_schedule(const dm_schedule_config *cfg, const dm_schedule *s) {
    dm_schedule mine;
    if (dm_schedule_init(&mine, cfg, NULL)) return 0;
    int same = mine.T == s->T;
    for (int32_t i = 0; same && i < s->T; i++)
        same = fabs(mine.alpha_bar[i] - s->alpha_bar[i]) <= 1e-4 * s->alpha_bar[i];
    dm_schedule_free(&mine);
    return same;
}

dm_status cli_init_from(dm_pipeline **out, dm_train_config *cfg, const char *dir,
                        const char *variant, dm_error *err) {
    dm_pipeline *p;
    dm_status st = dm_pipeline_load_diffusers(&p, dir, NULL, variant, err);
    if (st) return st;
    const dm_train_config *t = dm_pipeline_train_config(p);
    const dm_schedule *s = dm_pipeline_schedule(p);
    if (t->unet.num_class_embeds) {
        dm_pipeline_free(p);
        return dm_error_set(err, DM_ERR_ARG, "%s: a class-conditional UNet (num_class_embeds "
                            "%lld): fine-tuning starts from unconditional UNets only",
                            dir, (long long)t->unet.num_class_embeds);
    }
    dm_schedule_config linear = {.kind = DM_SCHEDULE_LINEAR, .T = s->T,
                                 .beta_start = s->beta[0], .beta_end = s->beta[s->T - 1]};
    dm_schedule_config cosine = {.kind = DM_SCHEDULE_COSINE, .T = s->T, .cosine_s = 0.008};
    dm_schedule_config_default(&cfg->schedule);
    if (same_schedule(&linear, s)) {
        linear.cosine_s = cfg->schedule.cosine_s;
        linear.gamma_min = cfg->schedule.gamma_min;
        linear.gamma_max = cfg->schedule.gamma_max;
        cfg->schedule = linear;
    } else if (same_schedule(&cosine, s)) {
        cosine.beta_start = cfg->schedule.beta_start;
        cosine.beta_end = cfg->schedule.beta_end;
        cosine.gamma_min = cfg->schedule.gamma_min;
        cosine.gamma_max = cfg->schedule.gamma_max;
        cfg->schedule = cosine;
    } else {
        dm_pipeline_free(p);
        return dm_error_set(err, DM_ERR_ARG, "%s: its scheduler's betas are neither linear nor "
                            "squaredcos_cap_v2 (scaled_linear, sigmoid or trained_betas), which "
                            "diffusion.c does not train with", dir);
    }
    cfg->arch = DM_ARCH_UNET;
    cfg->unet = t->unet;
    cfg->prediction = t->prediction;
    cfg->var = t->var;
    *out = p;
    return DM_OK;
}
