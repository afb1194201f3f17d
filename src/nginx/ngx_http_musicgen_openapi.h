/* The musicgen_openapi directive (ngx_http_musicgen_openapi.c). */
#ifndef _NGX_HTTP_MUSICGEN_OPENAPI_H_INCLUDED_
#define _NGX_HTTP_MUSICGEN_OPENAPI_H_INCLUDED_

#include "nginx/ngx_http_musicgen_module.h"

char *ngx_http_musicgen_openapi(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);

#endif /* _NGX_HTTP_MUSICGEN_OPENAPI_H_INCLUDED_ */
