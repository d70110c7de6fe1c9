/* diffusers folders as pipelines: a DDPMPipeline / DDIMPipeline folder (model_index.json, unet/,
 * scheduler/) or a bare UNet2DModel folder, sampled with their own scheduler (scheduler.c) so
 * the same x_T gives diffusers' result. */
#include "diffusion/pipeline_impl.h"
#include "io/json_file.h"
#include "models/unet.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_INDEX_BYTES (1u << 20)

static int is_file(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* Whether the config.json at path is a diffusers one ("_class_name"), not ours. */
static dm_status is_diffusers_config(const char *path, int *yes, dm_error *err) {
    cJSON *root;
    dm_status st = dm_json_read_python(&root, path, MAX_INDEX_BYTES, err);
    if (st) return st;
    *yes = cJSON_GetObjectItemCaseSensitive(root, "_class_name") != NULL;
    cJSON_Delete(root);
    return DM_OK;
}

dm_status dm_diffusers_folder_detect(const char *path, int *diffusers, dm_error *err) {
    char probe[4200];
    *diffusers = 0;
    snprintf(probe, sizeof probe, "%s/config.json", path);
    const int has_config = is_file(probe);
    if (has_config) return is_diffusers_config(probe, diffusers, err);
    snprintf(probe, sizeof probe, "%s/model_index.json", path);
    *diffusers = is_file(probe);
    return DM_OK;
}

/* model_index.json: the pipeline class (DDPMPipeline, DDIMPipeline) and its two components, a
 * UNet2DModel and a scheduler; *ddim is set for DDIMPipeline. */
static dm_status read_model_index(const char *path, int *ddim, dm_error *err) {
    cJSON *root;
    dm_status st = dm_json_read_python(&root, path, MAX_INDEX_BYTES, err);
    if (st) return st;
    const cJSON *cls = cJSON_GetObjectItemCaseSensitive(root, "_class_name");
    if (!cJSON_IsString(cls)) {
        st = dm_error_set(err, DM_ERR_FORMAT, "%s: no \"_class_name\": not a diffusers "
                          "pipeline", path);
    } else if (strcmp(cls->valuestring, "DDPMPipeline") != 0 &&
               strcmp(cls->valuestring, "DDIMPipeline") != 0) {
        st = dm_error_set(err, DM_ERR_FORMAT, "%s: pipeline \"%.100s\" is not run by "
                          "diffusion.c, which runs unconditional and class-conditional "
                          "UNet2DModel pipelines (DDPMPipeline, DDIMPipeline)", path,
                          cls->valuestring);
    } else {
        *ddim = strcmp(cls->valuestring, "DDIMPipeline") == 0;
        for (const cJSON *c = root->child; c && !st; c = c->next) {
            if (c->string[0] == '_') continue;
            const cJSON *lib = cJSON_GetArrayItem(c, 0), *name = cJSON_GetArrayItem(c, 1);
            const int unet = strcmp(c->string, "unet") == 0;
            if (strcmp(c->string, "scheduler") != 0 && !unet)
                st = dm_error_set(err, DM_ERR_FORMAT, "%s: component \"%.100s\" is not one of "
                                  "%s's (unet, scheduler)", path, c->string, cls->valuestring);
            else if (!cJSON_IsArray(c) || !cJSON_IsString(lib) || !cJSON_IsString(name) ||
                     strcmp(lib->valuestring, "diffusers") != 0)
                st = dm_error_set(err, DM_ERR_FORMAT, "%s: component \"%s\" must be "
                                  "[\"diffusers\", CLASS]", path, c->string);
            else if (unet && strcmp(name->valuestring, "UNet2DModel") != 0)
                st = dm_error_set(err, DM_ERR_FORMAT, "%s: unet class \"%.100s\" is not run "
                                  "by diffusion.c (UNet2DModel is)", path, name->valuestring);
        }
    }
    cJSON_Delete(root);
    return st;
}

/* The training configuration that describes a diffusers UNet and scheduler, for the code that
 * reads it (prediction, reverse variance, classes, schedule size). */
static void describe(dm_train_config *t, const dm_unet_config *u, const dm_scheduler *sc) {
    dm_train_config_default(t);
    t->arch = DM_ARCH_UNET;
    t->unet = *u;
    t->prediction = sc->prediction;
    t->var = sc->variance_output                          ? DM_VAR_LEARNED
             : sc->variance == DM_DDPM_FIXED_LARGE ? DM_VAR_BETA
                                                           : DM_VAR_BETA_TILDE;
    t->num_classes = (int32_t)u->num_class_embeds;
    t->p_uncond = 0; /* diffusers' class embeddings have no null label */
    t->schedule.T = sc->T;
    t->schedule.kind = DM_SCHEDULE_LINEAR;
    t->schedule.beta_start = sc->betas[0];
    t->schedule.beta_end = sc->betas[sc->T - 1];
}

dm_status dm_pipeline_load_diffusers(dm_pipeline **out, const char *dir,
                                     const char *scheduler_config, const char *variant,
                                     dm_error *err) {
    *out = NULL;
    char path[4400], unet_dir[4300];
    dm_status st;
    int pipeline = 0, ddim = 0;
    snprintf(path, sizeof path, "%s/model_index.json", dir);
    if (is_file(path)) {
        if ((st = read_model_index(path, &ddim, err))) return st;
        pipeline = 1;
        snprintf(unet_dir, sizeof unet_dir, "%s/unet", dir);
    } else {
        snprintf(path, sizeof path, "%s/config.json", dir);
        if (!is_file(path))
            return dm_error_set(err, DM_ERR_IO, "%s: neither a diffusers pipeline "
                                "(model_index.json) nor a model folder (config.json)", dir);
        snprintf(unet_dir, sizeof unet_dir, "%s", dir);
    }
    dm_pipeline *p = calloc(1, sizeof *p);
    if (!p) return dm_error_set(err, DM_ERR_NOMEM, "out of memory");
    if (scheduler_config) {
        st = dm_scheduler_read(&p->scheduler, scheduler_config, err);
    } else if (pipeline) {
        snprintf(path, sizeof path, "%s/scheduler/scheduler_config.json", dir);
        st = dm_scheduler_read(&p->scheduler, path, err);
    } else {
        st = dm_scheduler_default(&p->scheduler, DM_SCHEDULER_DDPM, err);
    }
    if (st) goto fail;
    p->has_scheduler = 1;
    if (pipeline) {
        /* the pipeline's num_inference_steps default */
        if (ddim && p->scheduler.cls != DM_SCHEDULER_DDIM) {
            st = dm_error_set(err, DM_ERR_FORMAT, "%s: a DDIMPipeline with a %s: diffusers "
                              "would convert it to DDIMScheduler; save it with one",
                              dir, dm_scheduler_class_name(p->scheduler.cls));
            goto fail;
        }
        /* the pipeline's num_inference_steps default for its own scheduler; a given config
         * keeps its class's default (DPM-Solver's 20, not DDPMPipeline's 1000) */
        if (!scheduler_config) p->scheduler.default_steps = ddim ? 50 : 1000;
        if (p->scheduler.default_steps > p->scheduler.T) p->scheduler.default_steps = p->scheduler.T;
    }
    dm_unet_config ucfg;
    if ((st = dm_unet_load_diffusers_variant(&p->model, &ucfg, unet_dir, variant, err))) goto fail;
    const int64_t in = ucfg.in_channels, outc = ucfg.out_channels;
    if (p->scheduler.variance_output ? outc != 2 * in : outc != in) {
        st = dm_error_set(err, DM_ERR_MISMATCH, "%s: the UNet has %lld input and %lld output "
                          "channels; the scheduler's variance_type %s needs %s", unet_dir,
                          (long long)in, (long long)outc,
                          p->scheduler.variance_output ? "(learned)" : "(fixed)",
                          p->scheduler.variance_output ? "twice as many outputs" : "as many");
        goto fail;
    }
    if ((st = dm_scheduler_schedule(&p->scheduler, &p->sched, err))) goto fail;
    describe(&p->cfg.train, &ucfg, &p->scheduler);
    p->cfg.norm.dim = 0; /* images in [-1, 1] as they are */
    *out = p;
    return DM_OK;
fail:
    dm_pipeline_free(p);
    return st;
}
