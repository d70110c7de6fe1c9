/* Status codes and error messages: the library reports, the caller decides what to print. */
#include "diffusion.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

dm_status dm_error_set(dm_error *err, dm_status status, const char *fmt, ...) {
    if (!err) return status;
    err->status = status;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
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
    }
    return "unknown status";
}
