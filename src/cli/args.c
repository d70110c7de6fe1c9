/* Table-driven option parsing: --name value or --name=value. */
#include "args.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *cli_safe(const char *s) {
    static char bufs[4][4096 + 16];
    static int next = 0;
    char *out = bufs[next];
    next = (next + 1) % 4;
    size_t k = 0;
    const size_t cap = sizeof bufs[0];
    for (const unsigned char *c = (const unsigned char *)(s ? s : "(null)"); *c; c++) {
        const int c1 = c[0] == 0xc2 && c[1] >= 0x80 && c[1] <= 0x9f;
        const size_t need = c1 ? 8 : (*c < 0x20 || *c == 0x7f) ? 4 : 1;
        if (k + need > 4096) {
            memcpy(out + k, "...", 4);
            return out;
        }
        if (need == 1) {
            out[k++] = (char)*c;
        } else {
            k += (size_t)snprintf(out + k, cap - k, "\\x%02x", *c);
            if (c1) k += (size_t)snprintf(out + k, cap - k, "\\x%02x", *++c);
        }
    }
    out[k] = '\0';
    return out;
}

static void format_default(const cli_option *o, char *buf, size_t cap) {
    buf[0] = '\0';
    switch (o->kind) {
    case OPT_FLAG: break;
    case OPT_INT: snprintf(buf, cap, "%d", *(int *)o->target); break;
    case OPT_I64: snprintf(buf, cap, "%" PRId64, *(int64_t *)o->target); break;
    case OPT_U64: snprintf(buf, cap, "%" PRIu64, *(uint64_t *)o->target); break;
    case OPT_DOUBLE: snprintf(buf, cap, "%g", *(double *)o->target); break;
    case OPT_STRING: {
        const char *s = *(const char **)o->target;
        if (s) snprintf(buf, cap, "%s", s);
        break;
    }
    }
}

void cli_print_help(const cli_command *cmd, FILE *out) {
    fprintf(out, "usage: %s\n\n%s\n\noptions:\n", cmd->usage, cmd->description);
    for (int i = 0; i < cmd->n_opts; i++) {
        const cli_option *o = &cmd->opts[i];
        char left[64], def[256];
        snprintf(left, sizeof left, "%s%s%s", o->name, o->metavar ? " " : "",
                 o->metavar ? o->metavar : "");
        format_default(o, def, sizeof def);
        fprintf(out, "  %-24s %s", left, o->help);
        if (def[0]) fprintf(out, " (default: %s)", def);
        fputc('\n', out);
    }
    fprintf(out, "  %-24s %s\n", "--help", "show this help");
}

/* Upper bounds of integer options, by name (the same in every command); 0: the type's. */
static int64_t option_max(const cli_option *o) {
    static const struct {
        const char *name;
        int64_t max;
    } bounds[] = {{"--threads", CLI_MAX_THREADS}};
    for (size_t i = 0; i < sizeof bounds / sizeof bounds[0]; i++)
        if (strcmp(o->name, bounds[i].name) == 0) return bounds[i].max;
    return 0;
}

static int parse_value(const cli_option *o, const char *v) {
    char *end;
    errno = 0;
    switch (o->kind) {
    case OPT_FLAG: return 0;
    case OPT_INT: {
        long x = strtol(v, &end, 10);
        if (*v == '\0' || *end || errno || x < 0 || x > INT32_MAX || (option_max(o) && x > option_max(o)))
            return -1;
        *(int *)o->target = (int)x;
        return 0;
    }
    case OPT_I64: {
        /* accept 1e5-style integers too: they are common for step counts */
        double d = strtod(v, &end);
        if (*v == '\0' || *end || errno || d != floor(d) || d < 0 || d > 9.0e15 ||
            (option_max(o) && d > (double)option_max(o)))
            return -1;
        *(int64_t *)o->target = (int64_t)d;
        return 0;
    }
    case OPT_U64: {
        if (*v == '-') return -1;
        unsigned long long x = strtoull(v, &end, 10);
        /* checkpoints store seeds as JSON numbers: keep them exact in a double */
        if (*v == '\0' || *end || errno || x > (1ull << 53)) return -1;
        *(uint64_t *)o->target = x;
        return 0;
    }
    case OPT_DOUBLE: {
        double d = strtod(v, &end);
        if (*v == '\0' || *end || errno || !isfinite(d)) return -1;
        *(double *)o->target = d;
        return 0;
    }
    case OPT_STRING:
        if (*v == '\0') return -1;
        *(const char **)o->target = v;
        return 0;
    }
    return -1;
}

static const char *kind_word(const cli_option *o, char *buf, size_t cap) {
    switch (o->kind) {
    case OPT_INT:
    case OPT_I64:
        if (!option_max(o)) return "a non-negative integer";
        snprintf(buf, cap, "an integer in 0..%" PRId64, option_max(o));
        return buf;
    case OPT_U64: return "a non-negative integer below 2^53";
    case OPT_DOUBLE: return "a finite number";
    default: return "a value";
    }
}

int cli_parse(const cli_command *cmd, int argc, char **argv) {
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            cli_print_help(cmd, stdout);
            return CLI_HELP;
        }
        const char *eq = strchr(arg, '=');
        size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
        const cli_option *o = NULL;
        for (int k = 0; k < cmd->n_opts; k++)
            if (strlen(cmd->opts[k].name) == len && strncmp(cmd->opts[k].name, arg, len) == 0)
                o = &cmd->opts[k];
        if (!o) {
            fprintf(stderr, "error: unknown option '%s' (see '%s --help')\n", cli_safe(arg),
                    cmd->usage);
            return CLI_ERROR;
        }
        if (o->kind == OPT_FLAG) {
            if (eq) {
                fprintf(stderr, "error: %s takes no value\n", o->name);
                return CLI_ERROR;
            }
            *(int *)o->target = 1;
            continue;
        }
        const char *v = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
        if (!v) {
            fprintf(stderr, "error: %s needs a value (%s)\n", o->name, o->metavar);
            return CLI_ERROR;
        }
        if (parse_value(o, v) != 0) {
            char range[64];
            fprintf(stderr, "error: %s: '%s' is not %s\n", o->name, cli_safe(v),
                    kind_word(o, range, sizeof range));
            return CLI_ERROR;
        }
    }
    return CLI_OK;
}
