/* A worker's life: it loads the model when it starts (a failure is logged
 * and requests get 503 until a reload) with the wake-up its jobs' callbacks
 * signal, and frees both when it exits: the model first, since freeing it
 * ends every generation left, whose callbacks still signal. */
#include "nginx/ngx_http_musicgen_module.h"
#include "nginx/ngx_http_musicgen_job.h"
#include "nginx/ngx_http_musicgen_metrics.h"
#include "nginx/ngx_http_musicgen_wakeup.h"
#include "nginx/ngx_http_musicgen_worker.h"

ngx_int_t
ngx_http_musicgen_init_process(ngx_cycle_t *cycle)
{
    ngx_http_musicgen_main_conf_t  *mcf;
    mg_model_options                opt;
    mg_error                        err;
    char                            dir[4096];

    mcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_musicgen_module);
    if (mcf == NULL || mcf->model_dir.data == NULL) {
        return NGX_OK;
    }
    ngx_queue_init(&mcf->jobs);
    mcf->wakeup = ngx_http_musicgen_wakeup_open(cycle, ngx_http_musicgen_jobs_wake, mcf);
    if (mcf->wakeup == NULL) {
        /* requests get 503, as when the model does not load */
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "musicgen: no wake-up for the event loop: the model is not loaded");
        return NGX_OK;
    }
    ngx_memzero(&err, sizeof(err));
    ngx_snprintf((u_char *) dir, sizeof(dir), "%V%Z", &mcf->model_dir);
    ngx_memzero(&opt, sizeof(opt));
    opt.n_threads = (int) mcf->threads;
    opt.max_batch = (int) mcf->batch;
    opt.device = mcf->device.data ? (const char *) mcf->device.data : "auto";
    opt.dtype = mcf->dtype.data ? (const char *) mcf->dtype.data : NULL;
    opt.weights_cache = mcf->weights_cache.data ? (const char *) mcf->weights_cache.data : NULL;
    opt.backend = &mcf->backend;
    if (mg_model_load(&mcf->model, dir, &opt, &err) != MG_OK) {
        /* requests get 503 while the model is not loaded */
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0, "musicgen: loading \"%s\": %s", dir, err.msg);
        mcf->model = NULL;
    } else {
        ngx_log_error(NGX_LOG_NOTICE, cycle->log, 0,
                      "musicgen: model \"%s\" loaded on %s (musicgen_device %s), %s weights",
                      dir, mg_model_device(mcf->model), opt.device, mg_model_dtype(mcf->model));
        if (*mg_model_load_note(mcf->model)) {
            ngx_log_error(NGX_LOG_NOTICE, cycle->log, 0, "musicgen: %s",
                          mg_model_load_note(mcf->model));
        }
    }
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
    if (mcf->model) {
        mg_model_free(mcf->model);
        mcf->model = NULL;
    }
    if (mcf->jobs.next) {
        ngx_http_musicgen_jobs_release(mcf);
    }
    ngx_http_musicgen_metrics_worker_exit(mcf);
    ngx_http_musicgen_wakeup_close(mcf->wakeup);
    mcf->wakeup = NULL;
}
