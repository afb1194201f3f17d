/* The musicgen_status directive (ngx_http_musicgen_status.c). */
#ifndef _NGX_HTTP_MUSICGEN_STATUS_H_INCLUDED_
#define _NGX_HTTP_MUSICGEN_STATUS_H_INCLUDED_

#include "nginx/ngx_http_musicgen_module.h"

char *ngx_http_musicgen_status(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);

#endif /* _NGX_HTTP_MUSICGEN_STATUS_H_INCLUDED_ */
