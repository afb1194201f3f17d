/* One error type for the whole engine: a code the front ends map to a status,
 * and a message that names the field, tensor or file at fault. */
#ifndef MG_ERROR_H
#define MG_ERROR_H

typedef enum {
    MG_OK = 0,
    MG_ERR_INVALID,     /* bad input: request field, argument, option */
    MG_ERR_NOT_FOUND,   /* missing file or tensor */
    MG_ERR_CORRUPT,     /* malformed model file, header or config */
    MG_ERR_NOMEM,
    MG_ERR_IO,
    MG_ERR_DEVICE,      /* backend failure */
    MG_ERR_CANCELLED,
    MG_ERR_TIMEOUT,
    MG_ERR_UNSUPPORTED,
    MG_ERR_BUSY         /* queue full */
} mg_code;

typedef struct {
    mg_code code;
    char    msg[512];
    char    field[64];  /* the request field at fault, "" when none */
} mg_error;

/* Sets *err (if non-NULL) and returns code, so `return mg_fail(err, ...)` reads well. */
mg_code mg_fail(mg_error *err, mg_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* As mg_fail, also naming the request field at fault (for HTTP 400 bodies). */
mg_code mg_fail_field(mg_error *err, mg_code code, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Prefixes the existing message with context ("loading x: " + old message). */
mg_code mg_fail_context(mg_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
const char *mg_code_name(mg_code code);

#endif
