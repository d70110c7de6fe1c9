/* The list arguments of `diffusion eval` and `--class`: the CLI's own functions, compiled into
 * the harness (src/cli/eval_steps.c and src/cli/eval_images.c are included here whole, since
 * their list parsers are static; the other CLI sources they call are linked):
 * - split_list (eval_steps.c): --samplers and --steps-list split at commas, at most cap items;
 * - parse_list (eval_images.c): --guidance-scales and --classifier-scales, non-negative finite
 *   numbers;
 * - cli_class_labels (common.c): --class K|all for n samples, against a classifier of 4
 *   classes (classifier-tiny) and against no model at all.
 * The input is one argument (cut at its first NUL byte, as argv would be); what the parsers
 * accept must mean what they say: items without commas, numbers finite and >= 0, labels in
 * 0..K-1, every one K for a number K, i mod K for "all".
 *
 * Not reached: the checks of each --steps-list item (strtol, 1..T) are inside cli_eval_steps,
 * which then samples; they would need their own function to be fuzzed alone. */
#include "fuzz_util.h"

#include "../src/cli/eval_images.c"
#include "../src/cli/eval_steps.c"

#include "diffusion/checkpoint.h"

static dm_classifier *clf;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    dm_unet_config cfg;
    dm_model *m = NULL;
    const char *net = fz_dir_path("classifier/config.json");
    const char *weights = fz_dir_path("model.safetensors");
    const char *top = fz_dir_path("config.json");
    if (dm_unet_preset(&cfg, "classifier-tiny", NULL) || dm_unet_config_write(&cfg, net, NULL) ||
        dm_unet_create(&m, &cfg, 0, NULL) ||
        dm_model_weights_save(m, dm_model_params(m), weights, NULL))
        abort();
    dm_model_free(m);
    fz_remember(net);
    fz_remember(weights);
    FILE *f = fopen(top, "w");
    if (!f) fz_die(top);
    fputs("{\"format\": \"diffusion.c classifier\", \"version\": 1, \"kind\": \"clean\", "
          "\"num_classes\": 4, \"schedule\": {\"kind\": \"linear\", \"T\": 10, "
          "\"beta_start\": 0.0001, \"beta_end\": 0.02, \"cosine_s\": 0.008, "
          "\"gamma_min\": -10, \"gamma_max\": 10}}", f);
    fclose(f);
    fz_remember(top);
    dm_error err = {0};
    if (dm_classifier_load(&clf, fz_tmpdir(), &err)) {
        fprintf(stderr, "fuzz_eval_lists: %s\n", err.msg);
        abort();
    }
    return 0;
}

static void check_split(const char *arg, int cap) {
    char *buf = NULL, *items[40];
    int n = split_list("--list", arg, &buf, items, cap);
    const size_t len = strlen(arg);
    if (n < 0 || n > cap) abort();
    for (int i = 0; i < n; i++)
        if (!items[i][0] || strchr(items[i], ',') || items[i] < buf || items[i] > buf + len)
            abort();
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char arg[1025];
    size_t n = size < sizeof arg - 1 ? size : sizeof arg - 1;
    memcpy(arg, data, n);
    arg[n] = 0;

    check_split(arg, MAX_SAMPLERS);
    check_split(arg, MAX_STEPS);

    double v[32];
    int k = parse_list(arg, v, 32);
    if (k < -1 || k > 32) abort();
    for (int i = 0; i < k; i++)
        if (!isfinite(v[i]) || v[i] < 0) abort();

    for (int64_t count = 1; count <= 9; count += 8) {
        int32_t *labels = NULL;
        int classes = -1;
        dm_error err = {0};
        dm_status st = cli_class_labels(&labels, &classes, arg, count, NULL, clf, &err);
        if (classes != 4) abort();
        if (st) {
            if (!err.msg[0] || labels) abort();
        } else {
            bool all = strcmp(arg, "all") == 0;
            for (int64_t i = 0; i < count; i++)
                if (labels[i] < 0 || labels[i] >= 4 || (all && labels[i] != i % 4) ||
                    (!all && labels[i] != labels[0]))
                    abort();
            free(labels);
        }
        /* no model and no classifier: always refused, with a message */
        labels = NULL;
        memset(&err, 0, sizeof err);
        if (!cli_class_labels(&labels, &classes, arg, count, NULL, NULL, &err) || labels ||
            !err.msg[0])
            abort();
    }
    return 0;
}
