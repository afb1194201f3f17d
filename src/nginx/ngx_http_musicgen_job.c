/* A generation's life after its request is validated: posted to the thread
 * pool (or refused when the worker's queue is full), run there without
 * touching the request, watched by a timer (musicgen_timeout) and by the
 * client's connection (a client that goes away cancels it), and answered on
 * the event loop when the pool hands it back.
 *
 * Thread pools rather than an eventfd of our own because nginx already owns
 * their lifecycle across reloads and worker exits. */
#include "nginx/ngx_http_musicgen_module.h"
#include "nginx/ngx_http_musicgen_job.h"
#include "nginx/ngx_http_musicgen_response.h"

/* Worker thread: the whole generation. Touches only the job, never r. */
static void
ngx_http_musicgen_job_thread(void *data, ngx_log_t *log)
{
    ngx_http_musicgen_job_t *job = data;

    job->rc = mg_job_run(job->model, &job->req, job->want_json, job->public_name,
                         &job->cancel, &job->res, &job->err);
}

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

/* Event loop: the job is done; answer and finalize. */
static void
ngx_http_musicgen_job_done(ngx_event_t *ev)
{
    ngx_http_musicgen_job_t  *job = ev->data;
    ngx_http_request_t       *r = job->r;
    ngx_connection_t         *c = r->connection;
    ngx_int_t                 rc;
    ngx_uint_t                status, level;
    ngx_http_musicgen_main_conf_t *mcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_musicgen_module);
    mcf->active--;
    if (job->timer.timer_set) {
        ngx_del_timer(&job->timer);
    }
    if (job->timed_out) {
        mcf->stats.timed_out++;
    } else if (job->rc == MG_OK) {
        mcf->stats.completed++;
        mcf->stats.audio_seconds += job->res.audio_seconds;
        mcf->stats.compute_seconds += job->res.compute_seconds;
    } else if (job->rc != MG_ERR_CANCELLED) {
        mcf->stats.failed++;
    }
    if (job->timed_out && !c->error) {
        ngx_log_error(NGX_LOG_WARN, c->log, 0, "musicgen: generation timed out");
        rc = ngx_http_musicgen_error(r, NGX_HTTP_GATEWAY_TIME_OUT,
                                     "generation took longer than musicgen_timeout", NULL);
    } else if (c->error || job->rc == MG_ERR_CANCELLED) {
        rc = NGX_HTTP_CLIENT_CLOSED_REQUEST;
    } else if (job->rc != MG_OK) {
        status = job->rc == MG_ERR_INVALID ? NGX_HTTP_BAD_REQUEST : NGX_HTTP_INTERNAL_SERVER_ERROR;
        level = status >= 500 ? NGX_LOG_ERR : NGX_LOG_INFO;
        ngx_log_error(level, c->log, 0, "musicgen: %s", job->err.msg);
        rc = ngx_http_musicgen_error(r, status,
                                     status >= 500 ? "generation failed" : job->err.msg,
                                     job->err.field);
    } else {
        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "musicgen: request %V: %.2f s of audio in %.2f s, seed %uL, prompt hash %08xD",
                      ngx_http_musicgen_request_id(r), job->res.audio_seconds,
                      job->res.compute_seconds, job->res.seed,
                      ngx_crc32_short((u_char *) job->req.prompt, ngx_strlen(job->req.prompt)));
        if (job->want_json) {
            rc = ngx_http_musicgen_send(r, NGX_HTTP_OK, "application/json",
                                        (u_char *) job->res.json, job->res.json_len);
        } else {
            rc = ngx_http_musicgen_send_audio(r, job->etag, job->res.format,
                                              job->res.audio, job->res.audio_len);
        }
    }
    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}

/* musicgen_timeout: the job is cancelled between decoder steps; job_done answers 504. */
static void
ngx_http_musicgen_job_timeout(ngx_event_t *ev)
{
    ngx_http_musicgen_job_t *job = ev->data;

    job->timed_out = 1;
    job->cancel = 1;
}

/* While the job runs, a client that goes away cancels it. */
static void
ngx_http_musicgen_watch_client(ngx_http_request_t *r)
{
    ngx_http_musicgen_job_t  *job;
    ngx_connection_t         *c = r->connection;
    ngx_event_t              *rev = c->read;
    u_char                    buf[1];
    ssize_t                   n;
    ngx_err_t                 err;

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
    job = ngx_http_get_module_ctx(r, ngx_http_musicgen_module);
    if (job) {
        job->cancel = 1;
    }
    ngx_log_error(NGX_LOG_INFO, c->log, 0, "musicgen: client closed the connection, cancelling");
    if (rev->active) {
        ngx_del_event(rev, NGX_READ_EVENT, 0);
    }
}

static void
ngx_http_musicgen_job_cleanup(void *data)
{
    ngx_http_musicgen_job_t *job = data;

    mg_request_free(&job->req);
    mg_job_result_free(&job->res);
}

ngx_http_musicgen_job_t *
ngx_http_musicgen_job_create(ngx_http_request_t *r)
{
    ngx_http_musicgen_main_conf_t  *mcf;
    ngx_http_musicgen_job_t        *job;
    ngx_thread_task_t              *task;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_musicgen_module);
    task = ngx_thread_task_alloc(r->pool, sizeof(ngx_http_musicgen_job_t));
    if (task == NULL) {
        return NULL;
    }
    job = task->ctx;
    job->r = r;
    job->task = task;
    job->model = mcf->model;
    job->model_name = (const char *) mcf->model_dir.data;
    job->public_name = (const char *) mcf->model_name.data;
    return job;
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
    ngx_thread_task_t              *task = job->task;

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_musicgen_module);
    mcf = ngx_http_get_module_main_conf(r, ngx_http_musicgen_module);

    /* back-pressure, after validation and the 304 (a bad request is a 400
     * whatever the load, a cached one needs no generation): musicgen_batch
     * jobs decode together in a worker, at most musicgen_queue more wait for
     * a place */
    if (mcf->active >= (ngx_uint_t) (mcf->batch + mcf->queue)) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "musicgen: queue full (%ui jobs), answering 503", mcf->active);
        mcf->stats.rejected++;
        if (ngx_http_musicgen_add_header(r, "Retry-After", "10") != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
        return ngx_http_musicgen_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                       "the generation queue is full, retry later", NULL);
    }
    task->handler = ngx_http_musicgen_job_thread;
    task->event.handler = ngx_http_musicgen_job_done;
    task->event.data = job;
    if (ngx_thread_task_post(lcf->pool, task) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    mcf->active++;
    job->timer.handler = ngx_http_musicgen_job_timeout;
    job->timer.data = job;
    job->timer.log = r->connection->log;
    ngx_add_timer(&job->timer, lcf->timeout);
    ngx_http_set_ctx(r, job, ngx_http_musicgen_module);
    r->read_event_handler = ngx_http_musicgen_watch_client;
    r->main->count++;
    return NGX_DONE;
}
