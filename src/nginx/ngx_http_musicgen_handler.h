/* The content handler that "musicgen on" installs (ngx_http_musicgen_handler.c). */
#ifndef _NGX_HTTP_MUSICGEN_HANDLER_H_INCLUDED_
#define _NGX_HTTP_MUSICGEN_HANDLER_H_INCLUDED_

#include "nginx/ngx_http_musicgen_module.h"

ngx_int_t ngx_http_musicgen_handler(ngx_http_request_t *r);

#endif /* _NGX_HTTP_MUSICGEN_HANDLER_H_INCLUDED_ */
