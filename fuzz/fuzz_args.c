/* Command-line arguments: cli_parse (src/cli/args.c, compiled in) over a table with every option
 * kind, and the name parsers behind flags such as --prediction, --schedule, --loss, --var,
 * --timesteps, --sampler, --model (UNet presets) and --data (built-in sets). The input is argv:
 * arguments separated by NUL bytes, each copied to its own allocation so ASan sees a read past
 * its end. cli_parse's messages and help go to /dev/null (libFuzzer and the sanitizers write to
 * the file descriptor, so their reports still show). A name a parser accepts must be the
 * canonical name of what it returns. */
#include "fuzz_util.h"

#include "cli/args.h"
#include "core/core.h"

#include <math.h>

#define MAX_ARGS 64

static FILE *devnull;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    devnull = fopen("/dev/null", "w");
    if (!devnull) fz_die("/dev/null");
    return 0;
}

static void check_names(const char *s) {
    dm_schedule_kind sk;
    dm_prediction p;
    dm_loss_kind lk;
    dm_reverse_var rv;
    dm_time_sampling ts;
    dm_sampler_kind smp;
    dm_error err;
    if (!dm_schedule_kind_parse(s, &sk, &err) && strcmp(dm_schedule_kind_name(sk), s)) abort();
    if (!dm_prediction_parse(s, &p, &err) && strcmp(dm_prediction_name(p), s)) abort();
    if (!dm_loss_kind_parse(s, &lk, &err) && strcmp(dm_loss_kind_name(lk), s)) abort();
    if (!dm_reverse_var_parse(s, &rv, &err) && strcmp(dm_reverse_var_name(rv), s)) abort();
    if (!dm_time_sampling_parse(s, &ts, &err) && strcmp(dm_time_sampling_name(ts), s)) abort();
    if (!dm_sampler_parse(s, &smp, &err) && strcmp(dm_sampler_name(smp), s)) abort();
    dm_unet_config cfg;
    if (!dm_unet_preset(&cfg, s, NULL) && dm_unet_config_validate(&cfg, NULL)) abort();
    dm_dataset ds;
    if (!dm_toy2d_generate(&ds, s, 4, 1, NULL)) dm_dataset_free(&ds);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *argv[MAX_ARGS + 1];
    int argc = 0;
    size_t start = 0;
    while (start <= size && argc < MAX_ARGS) {
        const uint8_t *nul = memchr(data + start, '\0', size - start);
        size_t end = nul ? (size_t)(nul - data) : size;
        argv[argc] = malloc(end - start + 1);
        if (!argv[argc]) abort();
        memcpy(argv[argc], data + start, end - start);
        argv[argc][end - start] = '\0';
        argc++;
        start = end + 1;
    }
    argv[argc] = NULL;

    int flag = 0, i32 = 7;
    int64_t i64 = 8;
    uint64_t u64 = 9;
    double dbl = 0.5;
    const char *str = "default";
    const cli_option opts[] = {
        {"--flag", OPT_FLAG, &flag, NULL, "a flag"},
        {"--int", OPT_INT, &i32, "N", "an int"},
        {"--steps", OPT_I64, &i64, "N", "an int64 (1e5 allowed)"},
        {"--seed", OPT_U64, &u64, "S", "a uint64 below 2^53"},
        {"--lr", OPT_DOUBLE, &dbl, "X", "a double"},
        {"--name", OPT_STRING, &str, "NAME", "a string"},
        {"--prediction", OPT_STRING, &str, "P", "a second string"},
    };
    const cli_command cmd = {"fuzz [options]", "The harness's table.", opts,
                             (int)(sizeof opts / sizeof opts[0])};
    FILE *out = stdout, *errf = stderr;
    stdout = devnull, stderr = devnull;
    int rc = cli_parse(&cmd, argc, argv);
    stdout = out, stderr = errf;
    if (rc != CLI_OK && rc != CLI_HELP && rc != CLI_ERROR) abort();
    if (rc == CLI_OK) {
        if (flag != 0 && flag != 1) abort();
        if (u64 > (1ull << 53) || !isfinite(dbl) || !str || !*str) abort();
    }
    for (int i = 0; i < argc; i++) check_names(argv[i]);
    for (int i = 0; i < argc; i++) free(argv[i]);
    return 0;
}
