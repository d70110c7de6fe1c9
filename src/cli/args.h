/* Command-line options from a table: parsing, validation, and help text whose defaults are read
 * from the targets' current values (filled from the library's _default functions). */
#pragma once

#include <stdint.h>
#include <stdio.h>

typedef enum { OPT_FLAG, OPT_INT, OPT_I64, OPT_U64, OPT_DOUBLE, OPT_STRING } cli_opt_kind;

typedef struct {
    const char *name;    /* "--steps" */
    cli_opt_kind kind;
    void *target;        /* int*, int64_t*, uint64_t*, double*, const char** */
    const char *metavar; /* "N" */
    const char *help;
} cli_option;

typedef struct {
    const char *usage;       /* "diffusion train [options]" */
    const char *description; /* a paragraph */
    const cli_option *opts;
    int n_opts;
} cli_command;

enum { CLI_OK = 0, CLI_HELP = 1, CLI_ERROR = 2 };

#define CLI_MAX_THREADS 1024

/* Parses argv[0..argc) (after the subcommand). Prints help to stdout for --help (CLI_HELP) and
 * one error line to stderr for an unknown flag, a missing or malformed value, or an integer
 * out of range (CLI_ERROR). Integers are never negative: every count, size and period here is
 * >= 0, 0 meaning "none" or "all" where the help says so. --threads is at most
 * CLI_MAX_THREADS (OpenMP would try to start as many threads as asked). */
int cli_parse(const cli_command *cmd, int argc, char **argv);
void cli_print_help(const cli_command *cmd, FILE *out);
/* s for printing: control characters (C0, DEL, C1 as UTF-8) as \xNN, so a file name or
 * argument holding an ANSI escape cannot restyle or rewrite the terminal. The result lives in
 * one of four rotating static buffers (four may be used in one printf), cut with "..." past
 * 4096 bytes. */
const char *cli_safe(const char *s);
