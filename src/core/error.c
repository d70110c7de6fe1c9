/* Status codes and error messages: the library reports, the caller decides what to print. */
#include "diffusion.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Messages carry file names and bytes from files: control characters (C0, DEL, and C1 as
 * UTF-8) become \xNN, so a name holding an ANSI escape cannot restyle or rewrite the
 * terminal it is printed on. The result is cut (never mid-escape) at cap - 1 bytes. */
static void escape_controls(char *msg, size_t cap) {
    char in[sizeof ((dm_error *)0)->msg];
    size_t k = 0;
    snprintf(in, sizeof in, "%s", msg);
    for (const unsigned char *c = (const unsigned char *)in; *c; c++) {
        const int c1 = c[0] == 0xc2 && c[1] >= 0x80 && c[1] <= 0x9f;
        const size_t need = c1 ? 8 : (*c < 0x20 || *c == 0x7f) ? 4 : 1;
        if (k + need >= cap) break;
        if (need == 1) {
            msg[k++] = (char)*c;
        } else {
            k += (size_t)snprintf(msg + k, cap - k, "\\x%02x", *c);
            if (c1) k += (size_t)snprintf(msg + k, cap - k, "\\x%02x", *++c);
        }
    }
    msg[k] = '\0';
}

dm_status dm_error_set(dm_error *err, dm_status status, const char *fmt, ...) {
    if (!err) return status;
    err->status = status;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    escape_controls(err->msg, sizeof err->msg);
    return status;
}

dm_status dm_error_prefix(dm_error *err, const char *fmt, ...) {
    if (!err) return DM_OK;
    char prefix[512], old[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    /* truncation is acceptable here: the message stays a valid, shorter string */
    size_t len = strlen(prefix);
    if (len > sizeof err->msg - 3) len = sizeof err->msg - 3;
    memcpy(err->msg, prefix, len);
    memcpy(err->msg + len, ": ", 2);
    size_t rest = sizeof err->msg - len - 3;
    strncpy(err->msg + len + 2, old, rest);
    err->msg[sizeof err->msg - 1] = '\0';
    escape_controls(err->msg, sizeof err->msg);
    return err->status;
}

const char *dm_status_name(dm_status status) {
    switch (status) {
    case DM_OK: return "ok";
    case DM_ERR_ARG: return "invalid argument";
    case DM_ERR_IO: return "I/O error";
    case DM_ERR_FORMAT: return "malformed file";
    case DM_ERR_NOMEM: return "out of memory";
    case DM_ERR_NUMERIC: return "non-finite number";
    case DM_ERR_MISMATCH: return "mismatch";
    case DM_ERR_UNSUPPORTED: return "not in this build";
    }
    return "unknown status";
}
