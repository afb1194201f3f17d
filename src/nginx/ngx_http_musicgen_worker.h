/* Worker start and exit (the module's init_process and exit_process). */
#ifndef _NGX_HTTP_MUSICGEN_WORKER_H_INCLUDED_
#define _NGX_HTTP_MUSICGEN_WORKER_H_INCLUDED_

#include "nginx/ngx_http_musicgen_module.h"

ngx_int_t ngx_http_musicgen_init_process(ngx_cycle_t *cycle);
void ngx_http_musicgen_exit_process(ngx_cycle_t *cycle);

#endif /* _NGX_HTTP_MUSICGEN_WORKER_H_INCLUDED_ */
