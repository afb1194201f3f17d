/* The worker's parser thread. A JSON body with an audio_prompt costs up to
 * half a second of one core to parse (jansson over 10-15 MB, base64,
 * libsndfile's decode, libsoxr's resample: docs/PERFORMANCE.md), during
 * which every other connection of the worker would wait. Such bodies, and
 * any above NGX_HTTP_MUSICGEN_PARSE_INLINE_MAX, are parsed here instead
 * (ngx_http_musicgen_handler.c decides), one at a time, by the same
 * mg_request_parse_json the handler calls on the loop, with the same
 * limits; the result comes back through the worker's wake-up
 * (ngx_http_musicgen_wakeup.c), and the handler goes on from it as from
 * an inline parse.
 *
 * One thread per worker, not per request: the queue in front of it is
 * bounded, and a full one is answered 503 (the body waits in memory, so
 * waiting for room would let clients pile bodies up without limit).
 *
 * What the thread touches is its own: a private copy of the body (malloc'd,
 * never the request's pool), the location's limits (configuration, alive
 * until the worker exits) and the parse record. The request is touched on
 * the event loop only. A request finalized while its body is parsed (the
 * client went away) cuts its record loose: a record still waiting is freed
 * at once, one being parsed or done is freed when it comes back.
 *
 * musicgen_timeout watches the parse as it watches the generation (a 504
 * past it), and its timer is also what keeps a worker that shuts down
 * gracefully (a reload) alive until the parse is answered: nginx lets such
 * a worker exit once no timer is left. */
#include <pthread.h>
#include <signal.h>

#include "nginx/ngx_http_musicgen_module.h"
#include "nginx/ngx_http_musicgen_metrics.h"
#include "nginx/ngx_http_musicgen_parser.h"
#include "nginx/ngx_http_musicgen_response.h"
#include "nginx/ngx_http_musicgen_wakeup.h"

typedef enum {
    NGX_HTTP_MUSICGEN_PARSE_WAITING = 0,
    NGX_HTTP_MUSICGEN_PARSE_RUNNING,
    NGX_HTTP_MUSICGEN_PARSE_DONE
} ngx_http_musicgen_parse_state_e;

/* One body's parse, from the hand-over until the event loop takes the
 * result. */
struct ngx_http_musicgen_parse_s {
    struct ngx_http_musicgen_parse_s *next;   /* in waiting or done */
    ngx_http_musicgen_parser_t       *parser;
    u_char                           *body;   /* the private copy; NULL once parsed */
    size_t                            len;
    const mg_request_limits          *limits;
    mg_request                        req;    /* the thread's result */
    mg_error                          err;
    mg_code                           rc;
    ngx_http_musicgen_parse_state_e   state;  /* under the parser's lock */
    /* event loop only: the request's job; NULL once the request is gone */
    ngx_http_musicgen_job_t          *job;
};

typedef struct ngx_http_musicgen_parse_s  ngx_http_musicgen_parse_t;

struct ngx_http_musicgen_parser_s {
    pthread_t                    thread;
    pthread_mutex_t              lock;
    pthread_cond_t               cond;     /* a body waits, or stop */
    /* under lock: bodies in arrival order, and results not yet taken */
    ngx_http_musicgen_parse_t   *waiting, **waiting_last;
    ngx_http_musicgen_parse_t   *done, **done_last;
    int                          stop;
    /* event loop only: records handed over and not yet freed */
    ngx_uint_t                   held;
    ngx_uint_t                   max;
    void                        *wakeup;
    ngx_http_musicgen_parsed_pt  parsed;
};

static void
ngx_http_musicgen_parse_free(ngx_http_musicgen_parse_t *t)
{
    ngx_free(t->body);
    mg_request_free(&t->req);
    ngx_free(t);
}

static void *
ngx_http_musicgen_parser_main(void *data)
{
    ngx_http_musicgen_parser_t  *p = data;
    ngx_http_musicgen_parse_t   *t;

    pthread_mutex_lock(&p->lock);
    for ( ;; ) {
        while (!p->stop && p->waiting == NULL) {
            pthread_cond_wait(&p->cond, &p->lock);
        }
        if (p->stop) {
            break;
        }
        t = p->waiting;
        p->waiting = t->next;
        if (p->waiting == NULL) {
            p->waiting_last = &p->waiting;
        }
        t->state = NGX_HTTP_MUSICGEN_PARSE_RUNNING;
        pthread_mutex_unlock(&p->lock);

        t->rc = mg_request_parse_json((const char *) t->body, t->len, t->limits, &t->req, &t->err);
        /* the copy is the largest part of what waits for the loop */
        ngx_free(t->body);
        t->body = NULL;

        pthread_mutex_lock(&p->lock);
        t->next = NULL;
        t->state = NGX_HTTP_MUSICGEN_PARSE_DONE;
        *p->done_last = t;
        p->done_last = &t->next;
        pthread_mutex_unlock(&p->lock);
        ngx_http_musicgen_wakeup_signal(p->wakeup);
        pthread_mutex_lock(&p->lock);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

ngx_http_musicgen_parser_t *
ngx_http_musicgen_parser_create(ngx_cycle_t *cycle, void *wakeup, ngx_uint_t max,
    ngx_http_musicgen_parsed_pt parsed)
{
    ngx_http_musicgen_parser_t  *p;
    sigset_t                     all, old;
    int                          err;

    p = ngx_alloc(sizeof(ngx_http_musicgen_parser_t), cycle->log);
    if (p == NULL) {
        return NULL;
    }
    ngx_memzero(p, sizeof(ngx_http_musicgen_parser_t));
    p->waiting_last = &p->waiting;
    p->done_last = &p->done;
    p->max = max;
    p->wakeup = wakeup;
    p->parsed = parsed;
    if (pthread_mutex_init(&p->lock, NULL) != 0) {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, 0, "musicgen: parser: mutex init failed");
        ngx_free(p);
        return NULL;
    }
    if (pthread_cond_init(&p->cond, NULL) != 0) {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, 0, "musicgen: parser: cond init failed");
        pthread_mutex_destroy(&p->lock);
        ngx_free(p);
        return NULL;
    }
    /* the thread inherits a mask blocking every signal: nginx's signals
     * (reload, quit) must reach the event loop's thread, whose epoll_wait
     * they interrupt, never this one */
    sigfillset(&all);
    sigdelset(&all, SIGILL);
    sigdelset(&all, SIGFPE);
    sigdelset(&all, SIGSEGV);
    sigdelset(&all, SIGBUS);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    err = pthread_create(&p->thread, NULL, ngx_http_musicgen_parser_main, p);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err != 0) {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, err, "musicgen: parser: pthread_create() failed");
        pthread_cond_destroy(&p->cond);
        pthread_mutex_destroy(&p->lock);
        ngx_free(p);
        return NULL;
    }
    return p;
}

/* Frees a list of records, letting their jobs (requests never answered at
 * worker exit) forget them. */
static void
ngx_http_musicgen_parse_free_list(ngx_http_musicgen_parse_t *t)
{
    ngx_http_musicgen_parse_t  *next;

    for ( ; t; t = next) {
        next = t->next;
        if (t->job) {
            t->job->parse = NULL;
        }
        ngx_http_musicgen_parse_free(t);
    }
}

void
ngx_http_musicgen_parser_destroy(ngx_http_musicgen_parser_t *p)
{
    if (p == NULL) {
        return;
    }
    pthread_mutex_lock(&p->lock);
    p->stop = 1;
    pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->lock);
    pthread_join(p->thread, NULL);
    ngx_http_musicgen_parse_free_list(p->waiting);
    ngx_http_musicgen_parse_free_list(p->done);
    pthread_cond_destroy(&p->cond);
    pthread_mutex_destroy(&p->lock);
    ngx_free(p);
}

/* The request is going (its pool's cleanup, or a timeout): its record is
 * cut loose. One still waiting leaves the queue and is freed; one being
 * parsed, or parsed and not yet taken, is freed by
 * ngx_http_musicgen_parser_wake. */
static void
ngx_http_musicgen_parse_cancel(void *data)
{
    ngx_http_musicgen_job_t     *job = data;
    ngx_http_musicgen_parse_t   *t = job->parse, **pp;
    ngx_http_musicgen_parser_t  *p;

    if (t == NULL) {
        return;
    }
    job->parse = NULL;
    if (job->timer.timer_set) {
        ngx_del_timer(&job->timer);
    }
    t->job = NULL;
    p = t->parser;
    pthread_mutex_lock(&p->lock);
    if (t->state != NGX_HTTP_MUSICGEN_PARSE_WAITING) {
        pthread_mutex_unlock(&p->lock);
        return;
    }
    for (pp = &p->waiting; *pp != t; pp = &(*pp)->next) { /* void */ }
    *pp = t->next;
    if (p->waiting_last == &t->next) {
        p->waiting_last = pp;
    }
    pthread_mutex_unlock(&p->lock);
    p->held--;
    ngx_http_musicgen_parse_free(t);
}

/* musicgen_timeout while the body waits for the thread or is parsed. */
static void
ngx_http_musicgen_parse_timeout(ngx_event_t *ev)
{
    ngx_http_musicgen_job_t  *job = ev->data;
    ngx_http_request_t       *r = job->r;
    ngx_connection_t         *c = r->connection;

    ngx_log_error(NGX_LOG_WARN, c->log, 0, "musicgen: parsing the request timed out");
    ngx_http_musicgen_parse_cancel(job);
    ngx_http_musicgen_metrics_job_end(job, NGX_HTTP_MUSICGEN_RESULT_TIMEOUT, NULL);
    ngx_http_finalize_request(r, ngx_http_musicgen_error(r, NGX_HTTP_GATEWAY_TIME_OUT,
                              "parsing the request took longer than musicgen_timeout", NULL));
    ngx_http_run_posted_requests(c);
}

ngx_int_t
ngx_http_musicgen_parser_submit(ngx_http_musicgen_parser_t *p, ngx_http_musicgen_job_t *job,
    u_char *body, size_t len, const mg_request_limits *lim)
{
    ngx_http_request_t            *r = job->r;
    ngx_http_musicgen_loc_conf_t  *lcf;
    ngx_http_musicgen_parse_t     *t;
    ngx_pool_cleanup_t            *cln;

    if (p->held >= p->max) {
        ngx_free(body);
        return NGX_BUSY;
    }
    cln = ngx_pool_cleanup_add(r->pool, 0);
    t = cln ? ngx_alloc(sizeof(ngx_http_musicgen_parse_t), r->connection->log) : NULL;
    if (t == NULL) {
        ngx_free(body);
        return NGX_ERROR;
    }
    ngx_memzero(t, sizeof(ngx_http_musicgen_parse_t));
    t->parser = p;
    t->body = body;
    t->len = len;
    t->limits = lim;
    t->job = job;
    job->parse = t;
    cln->handler = ngx_http_musicgen_parse_cancel;
    cln->data = job;
    p->held++;

    pthread_mutex_lock(&p->lock);
    *p->waiting_last = t;
    p->waiting_last = &t->next;
    pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->lock);

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_musicgen_module);
    job->timer.handler = ngx_http_musicgen_parse_timeout;
    job->timer.data = job;
    job->timer.log = r->connection->log;
    ngx_add_timer(&job->timer, lcf->timeout);
    /* held until parsed; a client that goes away meanwhile ends the
     * request (ngx_http_musicgen_parse_cancel lets the record go) */
    r->read_event_handler = ngx_http_test_reading;
    r->main->count++;
    return NGX_OK;
}

void
ngx_http_musicgen_parser_wake(ngx_http_musicgen_parser_t *p)
{
    ngx_http_musicgen_parse_t  *t, *next;
    ngx_http_musicgen_job_t    *job;
    ngx_connection_t           *c;

    if (p == NULL) {
        return;
    }
    pthread_mutex_lock(&p->lock);
    t = p->done;
    p->done = NULL;
    p->done_last = &p->done;
    pthread_mutex_unlock(&p->lock);

    for ( ; t; t = next) {
        next = t->next;
        p->held--;
        job = t->job;
        if (job == NULL) {
            ngx_http_musicgen_parse_free(t);
            continue;
        }
        job->parse = NULL;
        if (job->timer.timer_set) {
            ngx_del_timer(&job->timer);
        }
        /* the request's from here, as after an inline parse */
        job->req = t->req;
        ngx_memzero(&t->req, sizeof(mg_request));
        c = job->r->connection;
        job->r->read_event_handler = ngx_http_block_reading;
        p->parsed(job, t->rc, &t->err);
        ngx_http_musicgen_parse_free(t);
        ngx_http_run_posted_requests(c);
    }
}
