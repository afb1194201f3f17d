/* The nginx -t warning for locations that disclose the server's state
 * (musicgen_status, musicgen_metrics) to anyone (ngx_http_musicgen_access.c). */
#ifndef _NGX_HTTP_MUSICGEN_ACCESS_H_INCLUDED_
#define _NGX_HTTP_MUSICGEN_ACCESS_H_INCLUDED_

#include "nginx/ngx_http_musicgen_module.h"

/* At merge time (the location's access rules are then final, inherited ones
 * included): warns, naming the location and the directive, when neither
 * allow nor deny applies to the location being merged. Returns 1 when it
 * warned, 0 when the location has rules, or when nginx was built without
 * the access module (nothing to check against). */
ngx_int_t ngx_http_musicgen_warn_if_open(ngx_conf_t *cf, const char *directive);

#endif /* _NGX_HTTP_MUSICGEN_ACCESS_H_INCLUDED_ */
