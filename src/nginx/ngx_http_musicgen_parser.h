/* A worker's parser thread: JSON bodies too large to parse on the event
 * loop (an audio_prompt's base64, decode and resample) are parsed there and
 * handed back through the worker's wake-up (ngx_http_musicgen_parser.c). */
#ifndef _NGX_HTTP_MUSICGEN_PARSER_H_INCLUDED_
#define _NGX_HTTP_MUSICGEN_PARSER_H_INCLUDED_

#include "nginx/ngx_http_musicgen_module.h"
#include "nginx/ngx_http_musicgen_job.h"

/* Bodies up to this size without an audio_prompt are parsed on the event
 * loop (about a millisecond of jansson): every request without audio is
 * far below it. */
#define NGX_HTTP_MUSICGEN_PARSE_INLINE_MAX  (64 * 1024)

typedef struct ngx_http_musicgen_parser_s  ngx_http_musicgen_parser_t;

/* What the event loop does with a finished parse of job's body: job->req
 * holds the request (rc MG_OK) or nothing (then err says why), and the
 * reference the parse held on job->r is the callee's to finalize. */
typedef void (*ngx_http_musicgen_parsed_pt)(ngx_http_musicgen_job_t *job, mg_code rc,
    const mg_error *err);

/* The parser of this worker, its thread started: at most max bodies are
 * queued or parsed at once, wakeup is signalled when one is done, parsed is
 * called for it from ngx_http_musicgen_parser_wake. NULL (logged) when out
 * of memory or the thread cannot start: bodies are then parsed on the
 * loop. */
ngx_http_musicgen_parser_t *ngx_http_musicgen_parser_create(ngx_cycle_t *cycle,
    void *wakeup, ngx_uint_t max, ngx_http_musicgen_parsed_pt parsed);
/* Worker exit: waits for the body being parsed, stops and joins the thread
 * and frees every body and result it still held (their requests are gone
 * or will never be answered). */
void ngx_http_musicgen_parser_destroy(ngx_http_musicgen_parser_t *p);
/* Hands body[0..len) (ngx_alloc'd; taken in every case) to the thread, to
 * be parsed by mg_request_parse_json against lim (which outlives the
 * worker's requests: the location's configuration). NGX_OK: queued, the
 * request held until parsed is called (or it is finalized first: a client
 * that goes away cancels the parse); NGX_BUSY: the queue is full;
 * NGX_ERROR: out of memory. */
ngx_int_t ngx_http_musicgen_parser_submit(ngx_http_musicgen_parser_t *p,
    ngx_http_musicgen_job_t *job, u_char *body, size_t len, const mg_request_limits *lim);
/* Event loop, from the worker's wake-up: every finished parse goes to its
 * request (parsed), or is freed when the request is gone. */
void ngx_http_musicgen_parser_wake(ngx_http_musicgen_parser_t *p);

#endif /* _NGX_HTTP_MUSICGEN_PARSER_H_INCLUDED_ */
