/* The content handler of a "musicgen on" location: the method decides the
 * form (GET: a query string, POST: a JSON body, OPTIONS: a CORS preflight),
 * the body is read whole, the request is parsed and validated by the engine
 * (service/request.h; a body with an audio_prompt, or a large one, by the
 * worker's parser thread, ngx_http_musicgen_parser.c), a seeded GET or
 * HEAD the client already has is a 304, a HEAD is answered without
 * generating, and the rest becomes a job (ngx_http_musicgen_job.c). */
#include "nginx/ngx_http_musicgen_module.h"
#include "nginx/ngx_http_musicgen_handler.h"
#include "nginx/ngx_http_musicgen_job.h"
#include "nginx/ngx_http_musicgen_metrics.h"
#include "nginx/ngx_http_musicgen_models.h"
#include "nginx/ngx_http_musicgen_parser.h"
#include "nginx/ngx_http_musicgen_response.h"
#include "service/audio_prompt.h"

/* Wants raw audio: GET, ?raw=1, or an Accept header naming audio first. */
static int
ngx_http_musicgen_wants_raw(ngx_http_request_t *r)
{
    ngx_str_t  v;

    if (r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD)) {
        return 1;
    }
    if (ngx_http_arg(r, (u_char *) "raw", 3, &v) == NGX_OK && v.len == 1 && v.data[0] == '1') {
        return 1;
    }
#if (NGX_HTTP_HEADERS)
    if (r->headers_in.accept
        && ngx_strlcasestrn(r->headers_in.accept->value.data,
                            r->headers_in.accept->value.data + r->headers_in.accept->value.len,
                            (u_char *) "audio/", 6 - 1) != NULL
        && ngx_strlcasestrn(r->headers_in.accept->value.data,
                            r->headers_in.accept->value.data + r->headers_in.accept->value.len,
                            (u_char *) "application/json", 16 - 1) == NULL)
    {
        return 1;
    }
#endif
    return 0;
}

/* A HEAD is answered from the validated request alone, without a job: it
 * neither takes nor waits for a place in the queue, and a full queue does
 * not refuse it. */
static ngx_int_t
ngx_http_musicgen_head(ngx_http_request_t *r, ngx_http_musicgen_job_t *job)
{
    ngx_http_musicgen_loc_conf_t  *lcf;
    size_t                         size = 0;
    mg_error                       err;

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_musicgen_module);
    ngx_memzero(&err, sizeof(err));
    if (mg_job_audio_size(job->model, &job->req, &lcf->settings, &size, &err) != MG_OK) {
        /* the status the GET's job would end with */
        return ngx_http_musicgen_error(r, err.code == MG_ERR_INVALID
                                          ? NGX_HTTP_BAD_REQUEST : NGX_HTTP_INTERNAL_SERVER_ERROR,
                                       err.msg, err.field);
    }
    if (ngx_http_musicgen_prompt_headers(r, job->model, &job->req, &lcf->settings) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    return ngx_http_musicgen_send_audio_head(r, job->etag, job->req.format,
                                             size ? (off_t) size : -1);
}

/* 503: the model is not loaded in this worker (see the error log). */
static ngx_int_t
ngx_http_musicgen_not_loaded(ngx_http_request_t *r)
{
    if (ngx_exiting) {
        /* a worker from before a reload (or quit), answering a connection
         * it accepted then: the new worker may have the model, so close
         * and let the client come back at once on a new connection */
        r->keepalive = 0;
        if (ngx_http_musicgen_add_header(r, "Retry-After", "1") != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
        return ngx_http_musicgen_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                       "the model is not loaded (see the error log); "
                                       "this worker is shutting down, retry on a new connection",
                                       NULL);
    }
    if (ngx_http_musicgen_add_header(r, "Retry-After", "30") != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    return ngx_http_musicgen_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                   "the model is not loaded (see the error log)", NULL);
}

/* The job for r, or NULL with *rc the status to answer (no model at all,
 * or out of memory). */
static ngx_http_musicgen_job_t *
ngx_http_musicgen_begin(ngx_http_request_t *r, ngx_int_t *rc)
{
    ngx_http_musicgen_main_conf_t  *mcf;
    ngx_http_musicgen_job_t        *job;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_musicgen_module);
    if (ngx_http_musicgen_models_loaded(mcf) == 0) {
        *rc = ngx_http_musicgen_not_loaded(r);
        return NULL;
    }
    job = ngx_http_musicgen_job_create(r);
    if (job == NULL) {
        *rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    return job;
}

/* What follows the parse of the request into job->req (rc MG_OK; else err
 * says why), on the event loop or by the parser thread: the status to
 * finalize with, or NGX_DONE while the job holds the request. */
static ngx_int_t
ngx_http_musicgen_parsed(ngx_http_request_t *r, ngx_http_musicgen_job_t *job, mg_code rc,
    const mg_error *perr, int is_query)
{
    ngx_http_musicgen_loc_conf_t   *lcf;
    ngx_http_musicgen_main_conf_t  *mcf;
    ngx_http_musicgen_model_t      *slot;
    mg_error                        err;

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_musicgen_module);
    mcf = ngx_http_get_module_main_conf(r, ngx_http_musicgen_module);
    if (rc != MG_OK) {
        return ngx_http_musicgen_error(r, rc == MG_ERR_NOMEM
                                          ? NGX_HTTP_INTERNAL_SERVER_ERROR : NGX_HTTP_BAD_REQUEST,
                                       perr->msg, perr->field);
    }
    if (ngx_http_musicgen_job_own_request(r, job) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    /* what the log variables say of the request, whatever becomes of it */
    job->prompt_hash = ngx_crc32_short((u_char *) job->req.prompt, ngx_strlen(job->req.prompt));
    job->seed = job->req.seed;
    job->has_seed = job->req.has_seed;
    job->has_request = 1;
    slot = ngx_http_musicgen_models_get(mcf, job->req.model);
    if (slot == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    if (slot->model == NULL) {
        return ngx_http_musicgen_not_loaded(r);
    }
    ngx_http_musicgen_job_use(job, slot);
    job->want_json = !ngx_http_musicgen_wants_raw(r);

    ngx_memzero(&err, sizeof(err));
    if (is_query && job->req.has_seed
        && mg_job_etag(job->model, &job->req, &lcf->settings, job->model_name, job->etag, &err) == MG_OK
        && ngx_http_musicgen_etag_matches(r, job->etag))
    {
        /* the client has this exact file: no generation at all */
        if (ngx_http_musicgen_cache_headers(r, job->etag) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
        return ngx_http_musicgen_send(r, NGX_HTTP_NOT_MODIFIED, mg_audio_mime(job->req.format),
                                      NULL, 0);
    }
    if (r->method == NGX_HTTP_HEAD) {
        return ngx_http_musicgen_head(r, job);
    }
    return ngx_http_musicgen_job_post(r, job);
}

/* A GET's query string, or a small body: parsed here, on the event loop. */
static ngx_int_t
ngx_http_musicgen_start(ngx_http_request_t *r, const char *data, size_t len, int is_query)
{
    ngx_http_musicgen_loc_conf_t  *lcf;
    ngx_http_musicgen_job_t       *job;
    ngx_int_t                      status;
    mg_error                       err;
    mg_code                        rc;

    job = ngx_http_musicgen_begin(r, &status);
    if (job == NULL) {
        return status;
    }
    /* the models and each one's duration range were decided at nginx -t
     * (mg_duration_limits); the parser checks "model" and the fields
     * against the chosen one */
    lcf = ngx_http_get_module_loc_conf(r, ngx_http_musicgen_module);
    ngx_memzero(&err, sizeof(err));
    rc = is_query ? mg_request_parse_query(data, len, &lcf->limits, &job->req, &err)
                  : mg_request_parse_json(data, len, &lcf->limits, &job->req, &err);
    return ngx_http_musicgen_parsed(r, job, rc, &err, is_query);
}

/* A large body (body: ngx_alloc'd, taken): parsed by the worker's parser
 * thread, the request held meanwhile (NGX_DONE); a full parser queue is a
 * 503 as a full generation queue is. */
static ngx_int_t
ngx_http_musicgen_start_offloop(ngx_http_request_t *r, u_char *body, size_t len)
{
    ngx_http_musicgen_loc_conf_t   *lcf;
    ngx_http_musicgen_main_conf_t  *mcf;
    ngx_http_musicgen_job_t        *job;
    ngx_int_t                       status;

    job = ngx_http_musicgen_begin(r, &status);
    if (job == NULL) {
        ngx_free(body);
        return status;
    }
    lcf = ngx_http_get_module_loc_conf(r, ngx_http_musicgen_module);
    mcf = ngx_http_get_module_main_conf(r, ngx_http_musicgen_module);
    switch (ngx_http_musicgen_parser_submit(mcf->parser, job, body, len, &lcf->limits)) {
    case NGX_OK:
        return NGX_DONE;
    case NGX_BUSY:
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "musicgen: request parser queue full, answering 503");
        ngx_http_musicgen_metrics_job_end(job, NGX_HTTP_MUSICGEN_RESULT_REJECTED, NULL);
        if (ngx_http_musicgen_add_header(r, "Retry-After", "10") != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
        return ngx_http_musicgen_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                       "the request parser's queue is full, retry later", NULL);
    default:
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
}

void
ngx_http_musicgen_body_parsed(ngx_http_musicgen_job_t *job, mg_code rc, const mg_error *err)
{
    ngx_http_request_t  *r = job->r;

    /* the parse's reference (ngx_http_musicgen_parser_submit) goes; a job
     * that holds the request took its own */
    ngx_http_finalize_request(r, ngx_http_musicgen_parsed(r, job, rc, err, 0));
}

/* The body's bytes, in memory or in nginx's temporary file, into dst. */
static ngx_int_t
ngx_http_musicgen_body_copy(ngx_http_request_t *r, u_char *dst)
{
    ngx_chain_t  *cl;
    ngx_buf_t    *b;
    ssize_t       n;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;
        if (b->in_file) {
            n = ngx_read_file(b->file, dst, (size_t) (b->file_last - b->file_pos), b->file_pos);
            if (n != b->file_last - b->file_pos) {
                return NGX_ERROR;
            }
            dst += n;
        } else {
            dst = ngx_cpymem(dst, b->pos, b->last - b->pos);
        }
    }
    return NGX_OK;
}

/* Whether a body goes to the parser thread: a large one, or one that may
 * hold an audio_prompt (its key, or a \u escape that could spell it): even
 * a small Opus or MP3 file decodes for tens of milliseconds. */
static ngx_flag_t
ngx_http_musicgen_parse_offloop(const u_char *body, size_t len)
{
    return len > NGX_HTTP_MUSICGEN_PARSE_INLINE_MAX
           || memmem(body, len, MG_AUDIO_PROMPT_FIELD, sizeof(MG_AUDIO_PROMPT_FIELD) - 1) != NULL
           || memmem(body, len, "\\u", 2) != NULL;
}

/* The body read: parsed on the loop, or by the worker's parser thread
 * (ngx_http_musicgen_parse_offloop), from a copy of its own that the
 * thread may keep after the request is gone. */
static void
ngx_http_musicgen_body(ngx_http_request_t *r)
{
    ngx_http_musicgen_main_conf_t  *mcf;
    ngx_chain_t                    *cl;
    ngx_buf_t                      *b;
    u_char                         *body;
    size_t                          len = 0;
    ngx_int_t                       rc;

    if (r->request_body == NULL) {
        ngx_http_finalize_request(r, ngx_http_musicgen_error(r, NGX_HTTP_BAD_REQUEST,
                                  "the request has no body", "prompt"));
        return;
    }
    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;
        len += b->in_file ? (size_t) (b->file_last - b->file_pos) : (size_t) (b->last - b->pos);
    }
    body = ngx_alloc(len + 1, r->connection->log);
    if (body == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }
    if (ngx_http_musicgen_body_copy(r, body) != NGX_OK) {
        ngx_free(body);
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }
    mcf = ngx_http_get_module_main_conf(r, ngx_http_musicgen_module);
    if (mcf->parser != NULL && ngx_http_musicgen_parse_offloop(body, len)) {
        rc = ngx_http_musicgen_start_offloop(r, body, len);
    } else {
        /* the request keeps no pointer into the body */
        rc = ngx_http_musicgen_start(r, (const char *) body, len, 0);
        ngx_free(body);
    }
    if (rc == NGX_DONE) {
        /* the body reader's reference is ours until the job (or the
         * parse) lets go of the request */
        ngx_http_finalize_request(r, NGX_DONE);
        return;
    }
    ngx_http_finalize_request(r, rc);
}

ngx_int_t
ngx_http_musicgen_handler(ngx_http_request_t *r)
{
    ngx_str_t  *ct;
    ngx_int_t   rc;

    if (r->method == NGX_HTTP_OPTIONS) {
        /* CORS preflight */
        if (ngx_http_discard_request_body(r) != NGX_OK
            || ngx_http_musicgen_add_header(r, "Access-Control-Allow-Methods",
                                            "GET, HEAD, POST, OPTIONS") != NGX_OK
            || ngx_http_musicgen_add_header(r, "Access-Control-Allow-Headers",
                                            "Content-Type, Authorization, apikey, x-client-info") != NGX_OK
            || ngx_http_musicgen_add_header(r, "Access-Control-Max-Age", "86400") != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
        return ngx_http_musicgen_send(r, NGX_HTTP_NO_CONTENT, "text/plain", NULL, 0);
    }

    if (r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD)) {
        if (ngx_http_discard_request_body(r) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
        return ngx_http_musicgen_start(r, (const char *) r->args.data, r->args.len, 1);
    }

    if (r->method != NGX_HTTP_POST) {
        if (ngx_http_discard_request_body(r) != NGX_OK
            || ngx_http_musicgen_add_header(r, "Allow", "GET, HEAD, POST, OPTIONS") != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
        return ngx_http_musicgen_error(r, NGX_HTTP_NOT_ALLOWED,
                                       "method not allowed: use POST with JSON, or GET", NULL);
    }

    ct = r->headers_in.content_type ? &r->headers_in.content_type->value : NULL;
    if (ct == NULL || ct->len < 16
        || ngx_strncasecmp(ct->data, (u_char *) "application/json", 16) != 0
        || (ct->len > 16 && ct->data[16] != ';' && ct->data[16] != ' '))
    {
        if (ngx_http_discard_request_body(r) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
        return ngx_http_musicgen_error(r, NGX_HTTP_UNSUPPORTED_MEDIA_TYPE,
                                       "send the request as Content-Type: application/json", NULL);
    }

    rc = ngx_http_read_client_request_body(r, ngx_http_musicgen_body);
    if (rc == NGX_HTTP_REQUEST_ENTITY_TOO_LARGE) {
        /* a chunked body past client_max_body_size, found while reading it
         * (a Content-Length past it is answered by nginx before the module
         * runs: conf/nginx.conf's error_page gives that one this JSON) */
        return ngx_http_musicgen_error(r, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                       "the request body is over client_max_body_size (an "
                                       "audio_prompt file of up to 16 MiB needs about 22 MiB "
                                       "of JSON)", MG_AUDIO_PROMPT_FIELD);
    }
    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }
    return NGX_DONE;
}
