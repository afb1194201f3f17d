/* The content handler that "musicgen on" installs (ngx_http_musicgen_handler.c). */
#ifndef _NGX_HTTP_MUSICGEN_HANDLER_H_INCLUDED_
#define _NGX_HTTP_MUSICGEN_HANDLER_H_INCLUDED_

#include "nginx/ngx_http_musicgen_module.h"
#include "nginx/ngx_http_musicgen_job.h"

ngx_int_t ngx_http_musicgen_handler(ngx_http_request_t *r);
/* The parser thread's result for job's body (ngx_http_musicgen_parser.h):
 * the request goes on as after an inline parse, and is finalized. */
void ngx_http_musicgen_body_parsed(ngx_http_musicgen_job_t *job, mg_code rc,
    const mg_error *err);

#endif /* _NGX_HTTP_MUSICGEN_HANDLER_H_INCLUDED_ */
