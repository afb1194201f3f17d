/* The $musicgen_* variables for log_format (ngx_http_musicgen_variables.c). */
#ifndef _NGX_HTTP_MUSICGEN_VARIABLES_H_INCLUDED_
#define _NGX_HTTP_MUSICGEN_VARIABLES_H_INCLUDED_

#include "nginx/ngx_http_musicgen_module.h"

/* preconfiguration: adds them to nginx's variables. */
ngx_int_t ngx_http_musicgen_add_variables(ngx_conf_t *cf);

#endif /* _NGX_HTTP_MUSICGEN_VARIABLES_H_INCLUDED_ */
