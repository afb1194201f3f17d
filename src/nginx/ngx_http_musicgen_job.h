/* A generation: created by the handler for one request, run on the thread
 * pool, answered on the event loop (ngx_http_musicgen_job.c). */
#ifndef _NGX_HTTP_MUSICGEN_JOB_H_INCLUDED_
#define _NGX_HTTP_MUSICGEN_JOB_H_INCLUDED_

#include "nginx/ngx_http_musicgen_module.h"

typedef struct {
    ngx_http_request_t *r;
    ngx_thread_task_t  *task;        /* posted to the thread pool; its ctx is this job */
    mg_model           *model;
    mg_request          req;
    int                 want_json;
    volatile int        cancel;
    mg_job_result       res;
    mg_error            err;
    mg_code             rc;
    const char         *model_name;  /* the folder: the ETag's model identity */
    const char         *public_name; /* in the JSON response */
    char                etag[24];    /* "" unless the response is cacheable */
    ngx_event_t         timer;       /* musicgen_timeout */
    unsigned            timed_out:1;
} ngx_http_musicgen_job_t;

/* A job for r on the worker's model, in r's pool; NULL when out of memory. */
ngx_http_musicgen_job_t *ngx_http_musicgen_job_create(ngx_http_request_t *r);
/* Frees job->req with the request (job->req parsed): NGX_OK, or NGX_ERROR
 * having freed it already. */
ngx_int_t ngx_http_musicgen_job_own_request(ngx_http_request_t *r,
    ngx_http_musicgen_job_t *job);
/* Posts the job to the location's thread pool, or answers 503 when the
 * worker's queue is full: NGX_DONE when posted (the request is then held
 * until the job is done), else the status to finalize with. */
ngx_int_t ngx_http_musicgen_job_post(ngx_http_request_t *r, ngx_http_musicgen_job_t *job);

#endif /* _NGX_HTTP_MUSICGEN_JOB_H_INCLUDED_ */
