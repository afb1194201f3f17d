/* A worker's wake-up: the engine's callbacks (on the scheduler thread) make
 * the worker's event loop pump its jobs (ngx_http_musicgen_wakeup.c). */
#ifndef _NGX_HTTP_MUSICGEN_WAKEUP_H_INCLUDED_
#define _NGX_HTTP_MUSICGEN_WAKEUP_H_INCLUDED_

#include "nginx/ngx_http_musicgen_module.h"

/* The eventfd (a pipe where there is none), registered with the worker's
 * event loop: its read handler calls handler(data). */
typedef struct ngx_http_musicgen_wakeup_s  ngx_http_musicgen_wakeup_t;

ngx_http_musicgen_wakeup_t *ngx_http_musicgen_wakeup_open(ngx_cycle_t *cycle,
    void (*handler)(void *data), void *data);
/* Any thread: makes the event loop call the handler (soon, at least once
 * after this call; calls that come together may be served by one). */
void ngx_http_musicgen_wakeup_signal(void *wakeup);
/* After the model is freed: nothing signals any more. */
void ngx_http_musicgen_wakeup_close(ngx_http_musicgen_wakeup_t *w);

#endif /* _NGX_HTTP_MUSICGEN_WAKEUP_H_INCLUDED_ */
