#include "base/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static mg_code vfail(mg_error *err, mg_code code, const char *field, const char *fmt,
                     va_list ap)
{
    if (err) {
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        err->code = code;
        snprintf(err->field, sizeof err->field, "%s", field);
    }
    return code;
}

mg_code mg_fail(mg_error *err, mg_code code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfail(err, code, "", fmt, ap);
    va_end(ap);
    return code;
}

mg_code mg_fail_field(mg_error *err, mg_code code, const char *field, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfail(err, code, field, fmt, ap);
    va_end(ap);
    return code;
}

mg_code mg_fail_context(mg_error *err, const char *fmt, ...)
{
    if (!err)
        return MG_ERR_INVALID;
    char prefix[256], old[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    /* truncation of an over-long message is fine: precision bounds it */
    snprintf(err->msg, sizeof err->msg, "%.200s: %.300s", prefix, old);
    return err->code;
}

const char *mg_code_name(mg_code code)
{
    switch (code) {
    case MG_OK:              return "ok";
    case MG_ERR_INVALID:     return "invalid";
    case MG_ERR_NOT_FOUND:   return "not_found";
    case MG_ERR_CORRUPT:     return "corrupt";
    case MG_ERR_NOMEM:       return "out_of_memory";
    case MG_ERR_IO:          return "io";
    case MG_ERR_DEVICE:      return "device";
    case MG_ERR_CANCELLED:   return "cancelled";
    case MG_ERR_TIMEOUT:     return "timeout";
    case MG_ERR_UNSUPPORTED: return "unsupported";
    case MG_ERR_BUSY:        return "busy";
    }
    return "unknown";
}
