/* A generation: created by the handler for one request, run by the engine's
 * scheduler, pumped and answered on the event loop
 * (ngx_http_musicgen_job.c). */
#ifndef _NGX_HTTP_MUSICGEN_JOB_H_INCLUDED_
#define _NGX_HTTP_MUSICGEN_JOB_H_INCLUDED_

#include "nginx/ngx_http_musicgen_module.h"

/* How a musicgen request ended, for $musicgen_result: */
typedef enum {
    NGX_HTTP_MUSICGEN_RESULT_NONE = 0, /* not decided by a job: the status tells */
    NGX_HTTP_MUSICGEN_RESULT_OK,        /* the audio was generated */
    NGX_HTTP_MUSICGEN_RESULT_CANCELLED, /* the client went away, or the model shut down */
    NGX_HTTP_MUSICGEN_RESULT_TIMEOUT,   /* past musicgen_timeout */
    NGX_HTTP_MUSICGEN_RESULT_REJECTED,  /* refused before generating (the queue was full) */
    NGX_HTTP_MUSICGEN_RESULT_ERROR      /* the generation failed */
} ngx_http_musicgen_result_e;

typedef struct {
    ngx_http_request_t *r;
    ngx_http_musicgen_model_t *slot; /* the model the request chose (its name, folder, load) */
    mg_model           *model;
    mg_request          req;
    int                 want_json;
    /* the engine's side while the generation is ours: the shared job
     * (service/job.h), this request's reference to it */
    mg_job             *gen;
    /* the body's parse while the worker's parser thread has it
     * (ngx_http_musicgen_parser.c) */
    struct ngx_http_musicgen_parse_s *parse;
    ngx_queue_t         queue;       /* in the worker's jobs while gen */
    const char         *model_name;  /* the folder: the ETag's model identity */
    const char         *public_name; /* in the JSON response */
    char                etag[24];    /* "" unless the response is cacheable */
    ngx_event_t         timer;       /* musicgen_timeout */
    off_t               length;      /* the raw response's size when known up front, else -1 */
    /* encoded bytes not yet handed to the output filters, and all of them */
    ngx_chain_t        *out, **last;
    ngx_buf_t          *tail;        /* the last buffer of out */
    ngx_chain_t        *free, *busy; /* streaming: buffers sent and reusable, or still held */
    size_t              encoded;
    /* what the log variables show: the request's prompt hash and seed
     * (when it had them), how it ended, and the outcome of a generation */
    uint32_t            prompt_hash;
    uint64_t            seed;
    ngx_http_musicgen_result_e result;
    mg_job_outcome      outcome;
    unsigned            has_request:1; /* prompt_hash (and seed if has_seed) set */
    unsigned            has_seed:1;
    unsigned            stream:1;    /* raw audio sent as it is encoded */
    unsigned            header_sent:1;
    unsigned            visit:1;     /* the wake-up handler has yet to look at it */
    unsigned            sink_failed:1; /* out of memory keeping encoded bytes */
} ngx_http_musicgen_job_t;

/* A job for r, in r's pool; NULL when out of memory. Its model is set once
 * the request has chosen one (ngx_http_musicgen_job_use). */
ngx_http_musicgen_job_t *ngx_http_musicgen_job_create(ngx_http_request_t *r);
/* The job runs on slot's model (loaded: slot->model is not NULL). */
void ngx_http_musicgen_job_use(ngx_http_musicgen_job_t *job, ngx_http_musicgen_model_t *slot);
/* Frees job->req with the request (job->req parsed): NGX_OK, or NGX_ERROR
 * having freed it already. */
ngx_int_t ngx_http_musicgen_job_own_request(ngx_http_request_t *r,
    ngx_http_musicgen_job_t *job);
/* Queues the generation on the engine, or answers 503 when the worker's
 * queue is full: NGX_DONE when queued (the request is then held until the
 * job is answered), else the status to finalize with. */
ngx_int_t ngx_http_musicgen_job_post(ngx_http_request_t *r, ngx_http_musicgen_job_t *job);
/* The worker's wake-up handler (data: the main conf): pumps every job that
 * has news. */
void ngx_http_musicgen_jobs_wake(void *data);
/* Worker exit, after the model is freed (every generation ended): the
 * requests still open will never be answered; their references go. */
void ngx_http_musicgen_jobs_release(ngx_http_musicgen_main_conf_t *mcf);

#endif /* _NGX_HTTP_MUSICGEN_JOB_H_INCLUDED_ */
