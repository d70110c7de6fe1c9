/* diffusion: train, sample and evaluate denoising diffusion models. */
#include "common.h"
#include "parallel.h"

#include <stdio.h>
#include <string.h>

static void usage(FILE *out) {
    fprintf(out,
            "usage: diffusion <command> [options]\n\n"
            "commands:\n"
            "  demo     train on a built-in 2-D set, sample, draw pictures, report quality\n"
            "  train    train a model on a built-in 2-D set, a CSV/NPY file or images\n"
            "  train-classifier  train an image classifier (evaluation, or guidance with --noisy)\n"
            "  sample   draw samples from a trained model (CSV/NPY, scatter plot, reverse strip)\n"
            "  eval     compare samples with held-out data (MMD, sliced Wasserstein, floors)\n"
            "  bench    measure training and sampling speed and the machine's sgemm rate\n\n"
            "'diffusion <command> --help' describes each command's options; 'diffusion --version'\n"
            "(also after a command) prints the version.\n");
}

int main(int argc, char **argv) {
    cli_signals_init(); /* before any thread starts: they inherit its signal mask */
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return 0;
    }
    /* --version anywhere: before or after a command (diffusion sample --version) */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--version") == 0) {
            printf("diffusion.c %s\n", dm_version());
            return 0;
        }
    }
    if (strcmp(cmd, "train") != 0 && strcmp(cmd, "sample") != 0 && strcmp(cmd, "eval") != 0 &&
        cli_parallel_launched_size() > 1) {
        /* N copies of a command that does not split its work would write the same files */
        if (cli_parallel_launched_rank() == 0)
            fprintf(stderr, "error: started as %d MPI ranks, but only 'diffusion train', "
                    "'diffusion sample' and 'diffusion eval --metric mmd --model' run over MPI; "
                    "run '%s' as one process (without mpirun)\n", cli_parallel_launched_size(),
                    cli_safe(cmd));
        return 2;
    }
    if (strcmp(cmd, "train") == 0) return cmd_train(argc - 2, argv + 2);
    if (strcmp(cmd, "train-classifier") == 0) return cmd_train_classifier(argc - 2, argv + 2);
    if (strcmp(cmd, "sample") == 0) return cmd_sample(argc - 2, argv + 2);
    if (strcmp(cmd, "eval") == 0) return cmd_eval(argc - 2, argv + 2);
    if (strcmp(cmd, "demo") == 0) return cmd_demo(argc - 2, argv + 2);
    if (strcmp(cmd, "bench") == 0) return cmd_bench(argc - 2, argv + 2);
    fprintf(stderr, "error: unknown command '%s'\n", cli_safe(cmd));
    usage(stderr);
    return 2;
}
