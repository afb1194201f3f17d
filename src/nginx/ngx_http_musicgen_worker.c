/* A worker's life: it loads every model when it starts (a failure is logged
 * and that model's requests get 503 until a reload) with the wake-up its
 * jobs' callbacks and its parser thread signal, and frees them when it
 * exits: the parser and the models first, since the thread and the
 * callbacks of the generations a model's free ends still signal. */
#include "nginx/ngx_http_musicgen_module.h"
#include "nginx/ngx_http_musicgen_handler.h"
#include "nginx/ngx_http_musicgen_job.h"
#include "nginx/ngx_http_musicgen_models.h"
#include "nginx/ngx_http_musicgen_metrics.h"
#include "nginx/ngx_http_musicgen_parser.h"
#include "nginx/ngx_http_musicgen_wakeup.h"
#include "nginx/ngx_http_musicgen_worker.h"

/* The wake-up's handler: parsed bodies go on to their jobs, then the jobs
 * with news are pumped. */
static void
ngx_http_musicgen_worker_wake(void *data)
{
    ngx_http_musicgen_main_conf_t  *mcf = data;

    ngx_http_musicgen_parser_wake(mcf->parser);
    ngx_http_musicgen_jobs_wake(mcf);
}

ngx_int_t
ngx_http_musicgen_init_process(ngx_cycle_t *cycle)
{
    ngx_http_musicgen_main_conf_t  *mcf;

    mcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_musicgen_module);
    if (mcf == NULL || mcf->models == NULL) {
        return NGX_OK;
    }
    ngx_queue_init(&mcf->jobs);
    mcf->wakeup = ngx_http_musicgen_wakeup_open(cycle, ngx_http_musicgen_worker_wake, mcf);
    if (mcf->wakeup == NULL) {
        /* requests get 503, as when the models do not load */
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "musicgen: no wake-up for the event loop: the models are not loaded");
        return NGX_OK;
    }
    ngx_http_musicgen_models_load(cycle, mcf);
    /* as many bodies wait for the parser as jobs may wait for the model;
     * without the thread (logged), bodies are parsed on the loop */
    mcf->parser = ngx_http_musicgen_parser_create(cycle, mcf->wakeup,
                                                  (ngx_uint_t) (mcf->batch + mcf->queue),
                                                  ngx_http_musicgen_body_parsed);
    ngx_http_musicgen_metrics_worker_start(mcf);
    return NGX_OK;
}

void
ngx_http_musicgen_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_musicgen_main_conf_t  *mcf;

    mcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_musicgen_module);
    if (mcf == NULL) {
        return;
    }
    /* the parser signals the wake-up: it stops before that closes */
    ngx_http_musicgen_parser_destroy(mcf->parser);
    mcf->parser = NULL;
    ngx_http_musicgen_models_free(mcf);
    if (mcf->jobs.next) {
        ngx_http_musicgen_jobs_release(mcf);
    }
    ngx_http_musicgen_metrics_worker_exit(mcf);
    ngx_http_musicgen_wakeup_close(mcf->wakeup);
    mcf->wakeup = NULL;
}
