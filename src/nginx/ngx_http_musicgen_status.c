/* musicgen_status: the location that reports this worker's models, queue
 * and totals as JSON (mg_job_status_json). musicgen_metrics shows every
 * worker's together, from the same counting (ngx_http_musicgen_metrics_job_end)
 * and the same queued/running figures (each model's active jobs,
 * mg_model_activity). */
#include "nginx/ngx_http_musicgen_module.h"
#include "nginx/ngx_http_musicgen_response.h"
#include "nginx/ngx_http_musicgen_status.h"

/* One model's part of the status: what it is, where it runs, its jobs. */
static void
ngx_http_musicgen_status_model(ngx_http_musicgen_main_conf_t *mcf,
    ngx_http_musicgen_model_t *m, mg_job_model_status *st)
{
    int  running = 0, waiting = 0;

    st->name = (const char *) m->name.data;
    st->folder = (const char *) m->dir.data;
    st->loaded = m->model != NULL;
    st->device = m->model ? mg_model_device(m->model)
               : mcf->device.data ? (const char *) mcf->device.data : "auto";
    st->weights = m->model ? mg_model_dtype(m->model) : NULL;
    if (m->model) {
        mg_model_activity(m->model, &running, &waiting);
    }
    /* jobs queued but not yet in the engine's batch */
    st->running = (unsigned) running;
    st->queued = m->active > (ngx_uint_t) running ? (unsigned) (m->active - running) : 0;
}

/* musicgen_status: this worker's models, queue and totals as JSON. The
 * top-level model, device and loaded are the location's default model's. */
static ngx_int_t
ngx_http_musicgen_status_handler(ngx_http_request_t *r)
{
    ngx_http_musicgen_main_conf_t  *mcf;
    ngx_http_musicgen_loc_conf_t   *lcf;
    ngx_http_musicgen_model_t      *m;
    mg_job_model_status            *models, *dflt;
    char                           *text;
    size_t                          len = 0;
    ngx_int_t                       rc;
    ngx_uint_t                      i, n, running = 0;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }
    if (ngx_http_discard_request_body(r) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    mcf = ngx_http_get_module_main_conf(r, ngx_http_musicgen_module);
    lcf = ngx_http_get_module_loc_conf(r, ngx_http_musicgen_module);
    n = mcf->models ? mcf->models->nelts : 0;
    models = ngx_pcalloc(r->pool, (n ? n : 1) * sizeof(mg_job_model_status));
    if (models == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    m = n ? mcf->models->elts : NULL;
    for (i = 0; i < n; i++) {
        ngx_http_musicgen_status_model(mcf, &m[i], &models[i]);
        running += models[i].running;
    }
    dflt = n ? &models[lcf->limits.default_model] : NULL;
    mcf->stats.model = dflt ? dflt->folder : NULL;
    mcf->stats.device = dflt ? dflt->device
                      : mcf->device.data ? (const char *) mcf->device.data : "auto";
    mcf->stats.loaded = dflt ? dflt->loaded : 0;
    mcf->stats.running = (unsigned) running;
    mcf->stats.queued = mcf->active > running ? (unsigned) (mcf->active - running) : 0;
    mcf->stats.models = models;
    mcf->stats.n_models = n;
    text = mg_job_status_json(&mcf->stats, &len);
    mcf->stats.models = NULL;
    mcf->stats.n_models = 0;
    if (text == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    if (ngx_http_musicgen_add_header(r, "Cache-Control", "no-store") != NGX_OK) {
        free(text);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    rc = ngx_http_musicgen_send(r, NGX_HTTP_OK, "application/json", (u_char *) text, len);
    free(text);
    return rc;
}

char *
ngx_http_musicgen_status(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t      *clcf;
    ngx_http_musicgen_loc_conf_t  *lcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_musicgen_status_handler;
    /* it names the model's folder: checked for allow/deny when merged */
    lcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_musicgen_module);
    lcf->access_guarded = "musicgen_status";
    return NGX_CONF_OK;
}
