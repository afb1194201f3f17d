/* A generation's life after its request is validated: queued on the engine
 * (or refused when the worker's queue is full) as a shared job
 * (service/job.h) that holds no thread while it waits or runs. The engine's
 * callbacks wake the worker's event loop (ngx_http_musicgen_wakeup.c),
 * which pumps every job with news: the audio is encoded here, on the loop,
 * and either sent as it comes (a streamed raw response) or collected and
 * sent whole (JSON, a Range request, musicgen_stream off): one encoder, one
 * path, so both carry the same bytes.
 *
 * A timer (musicgen_timeout) and the client's connection watch the job: a
 * client that goes away, a stalled one (send_timeout) or a timeout cancels
 * the generation and ends the request at once. The request then lets go of
 * its reference to the shared job; the engine drops its own when it notices
 * (before its next step), so neither side frees what the other still uses. */
#include "nginx/ngx_http_musicgen_module.h"
#include "nginx/ngx_http_musicgen_job.h"
#include "nginx/ngx_http_musicgen_metrics.h"
#include "nginx/ngx_http_musicgen_response.h"
#include "nginx/ngx_http_musicgen_wakeup.h"

/* encoded bytes are gathered in buffers of at least this size */
#define NGX_HTTP_MUSICGEN_OUT_BUF  16384

/* nginx's $request_id, to tie the generation log line to the access log. */
static ngx_str_t *
ngx_http_musicgen_request_id(ngx_http_request_t *r)
{
    static ngx_str_t           name = ngx_string("request_id");
    static ngx_str_t           none = ngx_string("-");
    ngx_http_variable_value_t *vv;
    ngx_str_t                 *id;

    vv = ngx_http_get_variable(r, &name, ngx_hash_key(name.data, name.len));
    if (vv == NULL || vv->not_found) {
        return &none;
    }
    id = ngx_palloc(r->pool, sizeof(ngx_str_t));
    if (id == NULL) {
        return &none;
    }
    id->data = vv->data;
    id->len = vv->len;
    return id;
}

/* The request lets go of the generation (cancelled if it still runs): it
 * leaves the worker's jobs and frees its place in the queue. */
static void
ngx_http_musicgen_job_detach(ngx_http_musicgen_job_t *job)
{
    ngx_http_musicgen_main_conf_t  *mcf;

    if (job->gen == NULL) {
        return;
    }
    mcf = ngx_http_get_module_main_conf(job->r, ngx_http_musicgen_module);
    ngx_queue_remove(&job->queue);
    mcf->active--;
    job->slot->active--;
    ngx_http_musicgen_metrics_activity(mcf);
    if (job->timer.timer_set) {
        ngx_del_timer(&job->timer);
    }
    mg_job_release(job->gen);
    job->gen = NULL;
}

/* The encoder's sink: bytes appended to the pending chain, in buffers the
 * client has taken when there are some (a stream reuses its buffers), else
 * new ones from the request's pool: what waits for a slow client is bounded
 * by the clip's encoded size, what a complete response holds anyway. */
static int
ngx_http_musicgen_job_sink(void *ud, const uint8_t *bytes, size_t n)
{
    ngx_http_musicgen_job_t  *job = ud;
    ngx_http_request_t       *r = job->r;
    ngx_chain_t              *cl;
    ngx_buf_t                *b;
    size_t                    room, take;

    job->encoded += n;
    while (n > 0) {
        b = job->out ? job->tail : NULL;
        room = b ? (size_t) (b->end - b->last) : 0;
        if (room == 0) {
            if (job->free) {
                cl = job->free;
                job->free = cl->next;
                b = cl->buf;
                b->pos = b->start;
                b->last = b->start;
                b->flush = 0;
            } else {
                b = ngx_create_temp_buf(r->pool, ngx_max(n, NGX_HTTP_MUSICGEN_OUT_BUF));
                cl = b ? ngx_alloc_chain_link(r->pool) : NULL;
                if (cl == NULL) {
                    job->sink_failed = 1;
                    return 1;
                }
                b->tag = (ngx_buf_tag_t) &ngx_http_musicgen_module;
                cl->buf = b;
            }
            cl->next = NULL;
            *job->last = cl;
            job->last = &cl->next;
            job->tail = b;
            room = (size_t) (b->end - b->last);
        }
        take = ngx_min(room, n);
        b->last = ngx_cpymem(b->last, bytes, take);
        bytes += take;
        n -= take;
    }
    return 0;
}

/* The pending chain in one buffer of the request's pool (a complete
 * response: the range filter serves ranges of one in-memory buffer). */
static u_char *
ngx_http_musicgen_job_collect(ngx_http_musicgen_job_t *job)
{
    u_char       *all, *p;
    ngx_chain_t  *cl;

    all = ngx_pnalloc(job->r->pool, job->encoded ? job->encoded : 1);
    if (all == NULL) {
        return NULL;
    }
    p = all;
    for (cl = job->out; cl; cl = cl->next) {
        p = ngx_cpymem(p, cl->buf->pos, cl->buf->last - cl->buf->pos);
    }
    return all;
}

/* While streaming: a client that cannot take more keeps the rest in
 * nginx's buffers, watched by send_timeout. */
static ngx_int_t
ngx_http_musicgen_job_after_output(ngx_http_request_t *r, ngx_int_t rc)
{
    ngx_http_core_loc_conf_t  *clcf;
    ngx_event_t               *wev = r->connection->write;

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }
    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);
    if (r->buffered || r->connection->buffered) {
        if (!wev->delayed) {
            ngx_add_timer(wev, clcf->send_timeout);
        }
        if (ngx_handle_write_event(wev, clcf->send_lowat) != NGX_OK) {
            return NGX_ERROR;
        }
    } else if (wev->timer_set) {
        ngx_del_timer(wev);
    }
    return NGX_OK;
}

/* Hands the pending chain to the output filters: flushed while streaming,
 * with the last buffer at the end; buffers the client took come back to
 * job->free. */
static ngx_int_t
ngx_http_musicgen_job_send_pending(ngx_http_musicgen_job_t *job, unsigned last)
{
    ngx_http_request_t  *r = job->r;
    ngx_chain_t         *out, *cl;
    ngx_buf_t           *b;
    ngx_int_t            rc;

    if (job->out == NULL && !last) {
        /* nothing new: what nginx holds goes on when the client can take it */
        rc = ngx_http_output_filter(r, NULL);
        out = NULL;
        ngx_chain_update_chains(r->pool, &job->free, &job->busy, &out,
                                (ngx_buf_tag_t) &ngx_http_musicgen_module);
        return rc;
    }
    if (job->out == NULL) {
        b = ngx_calloc_buf(r->pool);
        cl = b ? ngx_alloc_chain_link(r->pool) : NULL;
        if (cl == NULL) {
            return NGX_ERROR;
        }
        cl->buf = b;
        cl->next = NULL;
        job->out = cl;
        job->last = &cl->next;
        job->tail = b;
    }
    b = job->tail;
    if (last) {
        b->last_buf = (r == r->main) ? 1 : 0;
        b->last_in_chain = 1;
    } else {
        b->flush = 1;
    }
    out = job->out;
    job->out = NULL;
    job->last = &job->out;
    job->tail = NULL;
    rc = ngx_http_output_filter(r, out);
    /* what the client took comes back for the next bytes */
    ngx_chain_update_chains(r->pool, &job->free, &job->busy, &out,
                            (ngx_buf_tag_t) &ngx_http_musicgen_module);
    return rc;
}

/* The request ends now, whatever the generation does: rc is a status, or
 * NGX_ERROR to close the connection (a streamed body then ends short). */
/* What a raw response says of the audio prompt its clip begins with. */
static ngx_int_t
ngx_http_musicgen_job_prompt_headers(ngx_http_musicgen_job_t *job)
{
    ngx_http_musicgen_loc_conf_t  *lcf;

    lcf = ngx_http_get_module_loc_conf(job->r, ngx_http_musicgen_module);
    return ngx_http_musicgen_prompt_headers(job->r, job->model, &job->req, &lcf->settings);
}

/* A streamed response's header, with what it says of the audio prompt. */
static ngx_int_t
ngx_http_musicgen_job_stream_header(ngx_http_musicgen_job_t *job)
{
    if (ngx_http_musicgen_job_prompt_headers(job) != NGX_OK) {
        return NGX_ERROR;
    }
    return ngx_http_musicgen_send_stream_header(job->r, job->etag, job->req.format,
                                                job->length);
}

static void
ngx_http_musicgen_job_end(ngx_http_musicgen_job_t *job, ngx_int_t rc)
{
    ngx_http_musicgen_job_detach(job);
    ngx_http_finalize_request(job->r, rc);
}

/* Streaming: the client's socket can take more (or send_timeout passed). */
static void
ngx_http_musicgen_job_writer(ngx_http_request_t *r)
{
    ngx_http_musicgen_job_t        *job;
    ngx_connection_t               *c = r->connection;

    job = ngx_http_get_module_ctx(r, ngx_http_musicgen_module);
    if (c->write->timedout) {
        ngx_log_error(NGX_LOG_INFO, c->log, NGX_ETIMEDOUT,
                      "musicgen: client timed out taking the stream, cancelling");
        c->timedout = 1;
        ngx_http_musicgen_metrics_job_end(job, NGX_HTTP_MUSICGEN_RESULT_CANCELLED, NULL);
        ngx_http_musicgen_job_end(job, NGX_HTTP_REQUEST_TIME_OUT);
        return;
    }
    if (ngx_http_musicgen_job_after_output(r, ngx_http_musicgen_job_send_pending(job, 0))
        != NGX_OK)
    {
        /* a send fails when the client went away mid-stream: the same news
         * as the read side's (watch_client) */
        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "musicgen: client closed the connection, cancelling");
        c->error = 1;
        ngx_http_musicgen_metrics_job_end(job, NGX_HTTP_MUSICGEN_RESULT_CANCELLED, NULL);
        ngx_http_musicgen_job_end(job, NGX_ERROR);
    }
}

/* The generation is over and the request still waits for it. */
static void
ngx_http_musicgen_job_answer(ngx_http_musicgen_job_t *job, mg_code rc, const mg_error *err)
{
    ngx_http_request_t             *r = job->r;
    ngx_connection_t               *c = r->connection;
    mg_job_outcome                  o;
    mg_error                        jerr;
    ngx_uint_t                      status, level;
    ngx_int_t                       out;
    u_char                         *all;
    char                           *json = NULL;
    size_t                          json_len = 0;

    ngx_memzero(&o, sizeof(o));
    if (rc == MG_OK) {
        mg_job_summary(job->gen, &o);
    }
    ngx_http_musicgen_job_detach(job);
    if (rc != MG_OK) {
        ngx_http_musicgen_metrics_job_end(job, rc == MG_ERR_CANCELLED && !job->sink_failed
                                               ? NGX_HTTP_MUSICGEN_RESULT_CANCELLED
                                               : NGX_HTTP_MUSICGEN_RESULT_ERROR, NULL);
        status = rc == MG_ERR_INVALID ? NGX_HTTP_BAD_REQUEST
               : rc == MG_ERR_CANCELLED && !job->sink_failed
               ? NGX_HTTP_SERVICE_UNAVAILABLE /* the worker's model is shutting down */
               : NGX_HTTP_INTERNAL_SERVER_ERROR;
        level = status == NGX_HTTP_BAD_REQUEST ? NGX_LOG_INFO : NGX_LOG_ERR;
        ngx_log_error(level, c->log, 0, "musicgen: %s", err->msg);
        if (job->header_sent) {
            /* the body ends short of its length (or of its last chunk) */
            ngx_http_finalize_request(r, NGX_ERROR);
            return;
        }
        ngx_http_finalize_request(r, ngx_http_musicgen_error(r, status,
                                  status == NGX_HTTP_BAD_REQUEST ? err->msg
                                  : status == NGX_HTTP_SERVICE_UNAVAILABLE
                                  ? "the model is shutting down, retry" : "generation failed",
                                  status == NGX_HTTP_BAD_REQUEST ? err->field : NULL));
        return;
    }
    ngx_http_musicgen_metrics_job_end(job, NGX_HTTP_MUSICGEN_RESULT_OK, &o);
    ngx_log_error(NGX_LOG_INFO, c->log, 0,
                  "musicgen: request %V: %.2f s of audio in %.2f s, seed %uL, prompt hash %08xD",
                  ngx_http_musicgen_request_id(r), o.audio_seconds, o.compute_seconds, o.seed,
                  job->prompt_hash);
    if (job->stream) {
        if (!job->header_sent
            && ngx_http_musicgen_job_stream_header(job) != NGX_OK)
        {
            ngx_http_finalize_request(r, NGX_ERROR);
            return;
        }
        job->header_sent = 1;
        ngx_http_finalize_request(r, ngx_http_musicgen_job_send_pending(job, 1));
        return;
    }
    all = ngx_http_musicgen_job_collect(job);
    if (all == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }
    if (!job->want_json) {
        out = ngx_http_musicgen_job_prompt_headers(job) != NGX_OK
              ? NGX_HTTP_INTERNAL_SERVER_ERROR
              : ngx_http_musicgen_send_audio(r, job->etag, job->req.format, all, job->encoded);
        ngx_http_finalize_request(r, out);
        return;
    }
    ngx_memzero(&jerr, sizeof(jerr));
    if (mg_job_json(&job->req, &o, all, job->encoded, job->public_name, &json, &json_len, &jerr)
        != MG_OK)
    {
        ngx_log_error(NGX_LOG_ERR, c->log, 0, "musicgen: %s", jerr.msg);
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }
    out = ngx_http_musicgen_send(r, NGX_HTTP_OK, "application/json", (u_char *) json, json_len);
    free(json);
    ngx_http_finalize_request(r, out);
}

/* Event loop: what arrived for one job is encoded; a streamed response
 * sends it, the end answers. */
static void
ngx_http_musicgen_job_pump(ngx_http_musicgen_job_t *job)
{
    ngx_http_request_t             *r = job->r;
    mg_error                        err;
    mg_code                         rc;
    int                             ended = 0;

    ngx_memzero(&err, sizeof(err));
    rc = mg_job_pump(job->gen, ngx_http_musicgen_job_sink, job, &ended, &err);
    if (ended || rc != MG_OK) {
        /* an encoder failure ends the job as the engine's would */
        ngx_http_musicgen_job_answer(job, rc, &err);
        return;
    }
    if (!job->stream || job->out == NULL) {
        return;
    }
    if (!job->header_sent) {
        if (ngx_http_musicgen_job_stream_header(job) != NGX_OK) {
            ngx_http_musicgen_job_end(job, NGX_ERROR);
            return;
        }
        job->header_sent = 1;
        r->write_event_handler = ngx_http_musicgen_job_writer;
    }
    if (ngx_http_musicgen_job_after_output(r, ngx_http_musicgen_job_send_pending(job, 0))
        != NGX_OK)
    {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "musicgen: client closed the connection, cancelling");
        ngx_http_musicgen_metrics_job_end(job, NGX_HTTP_MUSICGEN_RESULT_CANCELLED, NULL);
        r->connection->error = 1;
        ngx_http_musicgen_job_end(job, NGX_ERROR);
    }
}

void
ngx_http_musicgen_jobs_wake(void *data)
{
    ngx_http_musicgen_main_conf_t  *mcf = data;
    ngx_http_musicgen_job_t        *job;
    ngx_queue_t                    *q;
    ngx_connection_t               *c;

    /* jobs may have joined the engine's batch */
    ngx_http_musicgen_metrics_activity(mcf);
    for (q = ngx_queue_head(&mcf->jobs); q != ngx_queue_sentinel(&mcf->jobs);
         q = ngx_queue_next(q))
    {
        job = ngx_queue_data(q, ngx_http_musicgen_job_t, queue);
        job->visit = 1;
    }
    /* a pump may end requests (its own, and through posted requests
     * others): each round starts from the list as it is now */
    for ( ;; ) {
        job = NULL;
        for (q = ngx_queue_head(&mcf->jobs); q != ngx_queue_sentinel(&mcf->jobs);
             q = ngx_queue_next(q))
        {
            job = ngx_queue_data(q, ngx_http_musicgen_job_t, queue);
            if (job->visit) {
                break;
            }
            job = NULL;
        }
        if (job == NULL) {
            return;
        }
        job->visit = 0;
        if (!mg_job_has_news(job->gen)) {
            continue;
        }
        c = job->r->connection;
        ngx_http_musicgen_job_pump(job);
        ngx_http_run_posted_requests(c);
    }
}

void
ngx_http_musicgen_jobs_release(ngx_http_musicgen_main_conf_t *mcf)
{
    ngx_http_musicgen_job_t  *job;
    ngx_queue_t              *q;

    while (!ngx_queue_empty(&mcf->jobs)) {
        q = ngx_queue_head(&mcf->jobs);
        job = ngx_queue_data(q, ngx_http_musicgen_job_t, queue);
        ngx_queue_remove(q);
        mcf->active--;
        job->slot->active--;
        mg_job_release(job->gen);
        job->gen = NULL;
    }
}

/* musicgen_timeout: before the headers, a 504; after them the stream ends
 * short (the client sees fewer bytes than Content-Length, or no last
 * chunk). */
static void
ngx_http_musicgen_job_timeout(ngx_event_t *ev)
{
    ngx_http_musicgen_job_t        *job = ev->data;
    ngx_http_request_t             *r = job->r;
    ngx_connection_t               *c = r->connection;

    ngx_http_musicgen_metrics_job_end(job, NGX_HTTP_MUSICGEN_RESULT_TIMEOUT, NULL);
    ngx_log_error(NGX_LOG_WARN, c->log, 0, "musicgen: generation timed out");
    ngx_http_musicgen_job_detach(job);
    ngx_http_finalize_request(r, job->header_sent
        ? NGX_ERROR
        : ngx_http_musicgen_error(r, NGX_HTTP_GATEWAY_TIME_OUT,
                                  "generation took longer than musicgen_timeout", NULL));
    ngx_http_run_posted_requests(c);
}

/* While the job runs, a client that goes away cancels it and ends the
 * request. */
static void
ngx_http_musicgen_watch_client(ngx_http_request_t *r)
{
    ngx_http_musicgen_job_t        *job;
    ngx_connection_t               *c = r->connection;
    ngx_event_t                    *rev = c->read;
    u_char                          buf[1];
    ssize_t                         n;
    ngx_err_t                       err;

    if (c->error) {
        return;
    }
    n = recv(c->fd, buf, 1, MSG_PEEK);
    err = ngx_socket_errno;
    if (n > 0 || (n == -1 && err == NGX_EAGAIN)) {
        if (!rev->active && ngx_handle_read_event(rev, 0) != NGX_OK) {
            c->error = 1;
        }
        if (!c->error) {
            return;
        }
    }
    c->error = 1;
    ngx_log_error(NGX_LOG_INFO, c->log, 0, "musicgen: client closed the connection, cancelling");
    job = ngx_http_get_module_ctx(r, ngx_http_musicgen_module);
    if (job == NULL || job->gen == NULL) {
        return;
    }
    ngx_http_musicgen_metrics_job_end(job, NGX_HTTP_MUSICGEN_RESULT_CANCELLED, NULL);
    ngx_http_musicgen_job_end(job, NGX_HTTP_CLIENT_CLOSED_REQUEST);
}

static void
ngx_http_musicgen_job_cleanup(void *data)
{
    ngx_http_musicgen_job_t *job = data;

    ngx_http_musicgen_job_detach(job);
    mg_request_free(&job->req);
}

/* Whether the client asked for a part of the file. "Range: bytes=0-" is the
 * whole file from its start, which the stream is: Chromium's and Firefox's
 * <audio> send it on their first request, and answering it with the stream
 * (200, which RFC 9110 lets a server send for any Range) lets them play
 * while the clip is generated. */
static ngx_flag_t
ngx_http_musicgen_wants_part(ngx_http_request_t *r)
{
    ngx_table_elt_t  *range = r->headers_in.range;

    return range != NULL
           && !(range->value.len == sizeof("bytes=0-") - 1
                && ngx_strncasecmp(range->value.data, (u_char *) "bytes=0-", range->value.len) == 0);
}

ngx_http_musicgen_job_t *
ngx_http_musicgen_job_create(ngx_http_request_t *r)
{
    ngx_http_musicgen_job_t  *job;

    job = ngx_pcalloc(r->pool, sizeof(ngx_http_musicgen_job_t));
    if (job == NULL) {
        return NULL;
    }
    job->r = r;
    job->last = &job->out;
    job->length = -1;
    /* from here on the log variables see the request's job */
    ngx_http_set_ctx(r, job, ngx_http_musicgen_module);
    return job;
}

void
ngx_http_musicgen_job_use(ngx_http_musicgen_job_t *job, ngx_http_musicgen_model_t *slot)
{
    job->slot = slot;
    job->model = slot->model;
    job->model_name = (const char *) slot->etag_id.data;
    job->public_name = (const char *) slot->name.data;
}

ngx_int_t
ngx_http_musicgen_job_own_request(ngx_http_request_t *r, ngx_http_musicgen_job_t *job)
{
    ngx_pool_cleanup_t  *cln;

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        mg_request_free(&job->req);
        return NGX_ERROR;
    }
    cln->handler = ngx_http_musicgen_job_cleanup;
    cln->data = job;
    return NGX_OK;
}

ngx_int_t
ngx_http_musicgen_job_post(ngx_http_request_t *r, ngx_http_musicgen_job_t *job)
{
    ngx_http_musicgen_loc_conf_t   *lcf;
    ngx_http_musicgen_main_conf_t  *mcf;
    mg_error                        err;
    size_t                          size = 0;
    ngx_uint_t                      level;

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_musicgen_module);
    mcf = ngx_http_get_module_main_conf(r, ngx_http_musicgen_module);

    /* back-pressure, after validation and the 304 (a bad request is a 400
     * whatever the load, a cached one needs no generation): musicgen_batch
     * jobs decode together in a worker, at most musicgen_queue more wait for
     * a place */
    if (mcf->active >= (ngx_uint_t) (mcf->batch + mcf->queue)) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "musicgen: queue full (%ui jobs), answering 503", mcf->active);
        ngx_http_musicgen_metrics_job_end(job, NGX_HTTP_MUSICGEN_RESULT_REJECTED, NULL);
        if (ngx_http_musicgen_add_header(r, "Retry-After", "10") != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
        return ngx_http_musicgen_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                       "the generation queue is full, retry later", NULL);
    }

    /* raw audio goes out as it is made, unless the client asked for a range
     * (answered from the complete file) or the location collects it */
    job->stream = !job->want_json && lcf->stream && !ngx_http_musicgen_wants_part(r);
    ngx_memzero(&err, sizeof(err));
    if (job->stream && mg_job_audio_size(job->model, &job->req, &lcf->settings, &size, &err) == MG_OK
        && size > 0)
    {
        job->length = (off_t) size;
    }

    ngx_memzero(&err, sizeof(err));
    if (mg_job_submit(job->model, &job->req, &lcf->settings, ngx_http_musicgen_wakeup_signal,
                      mcf->wakeup, &job->gen, &err) != MG_OK)
    {
        level = err.code == MG_ERR_INVALID ? NGX_LOG_INFO : NGX_LOG_ERR;
        ngx_log_error(level, r->connection->log, 0, "musicgen: %s", err.msg);
        return err.code == MG_ERR_INVALID
               ? ngx_http_musicgen_error(r, NGX_HTTP_BAD_REQUEST, err.msg, err.field)
               : NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    ngx_queue_insert_tail(&mcf->jobs, &job->queue);
    mcf->active++;
    job->slot->active++;
    ngx_http_musicgen_metrics_activity(mcf);
    job->timer.handler = ngx_http_musicgen_job_timeout;
    job->timer.data = job;
    job->timer.log = r->connection->log;
    ngx_add_timer(&job->timer, lcf->timeout);
    r->read_event_handler = ngx_http_musicgen_watch_client;
    r->main->count++;
    return NGX_DONE;
}
