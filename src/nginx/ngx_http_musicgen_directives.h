/* Directive handlers (the directive table is in ngx_http_musicgen_module.c). */
#ifndef _NGX_HTTP_MUSICGEN_DIRECTIVES_H_INCLUDED_
#define _NGX_HTTP_MUSICGEN_DIRECTIVES_H_INCLUDED_

#include "nginx/ngx_http_musicgen_module.h"

char *ngx_http_musicgen(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
char *ngx_http_musicgen_device(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
char *ngx_http_musicgen_dtype(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
char *ngx_http_musicgen_weights_cache(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
char *ngx_http_musicgen_cuda_opt_in(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
char *ngx_http_musicgen_seconds(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
char *ngx_http_musicgen_format(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
char *ngx_http_musicgen_cors_origins(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
char *ngx_http_musicgen_thread_pool(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
char *ngx_http_musicgen_level(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);

#endif /* _NGX_HTTP_MUSICGEN_DIRECTIVES_H_INCLUDED_ */
