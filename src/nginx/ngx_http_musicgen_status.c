/* musicgen_status: the location that reports this worker's model, queue
 * and totals as JSON (mg_job_status_json). musicgen_metrics shows every
 * worker's together, from the same counting (ngx_http_musicgen_metrics_job_end)
 * and the same queued/running figures (mcf->active, mg_model_activity). */
#include "nginx/ngx_http_musicgen_module.h"
#include "nginx/ngx_http_musicgen_response.h"
#include "nginx/ngx_http_musicgen_status.h"

/* musicgen_status: this worker's model, queue and totals as JSON. */
static ngx_int_t
ngx_http_musicgen_status_handler(ngx_http_request_t *r)
{
    ngx_http_musicgen_main_conf_t  *mcf;
    char                           *text;
    size_t                          len = 0;
    ngx_int_t                       rc;
    int                             running, waiting;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }
    if (ngx_http_discard_request_body(r) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    mcf = ngx_http_get_module_main_conf(r, ngx_http_musicgen_module);
    mcf->stats.model = (const char *) mcf->model_dir.data;
    mcf->stats.device = mcf->model ? mg_model_device(mcf->model)
                      : mcf->device.data ? (const char *) mcf->device.data : "auto";
    mcf->stats.loaded = mcf->model != NULL;
    /* jobs queued but not yet in the engine's batch */
    running = 0;
    if (mcf->model) {
        mg_model_activity(mcf->model, &running, &waiting);
    }
    mcf->stats.running = (unsigned) running;
    mcf->stats.queued = mcf->active > (ngx_uint_t) running ? (unsigned) (mcf->active - running) : 0;
    text = mg_job_status_json(&mcf->stats, &len);
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
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_musicgen_status_handler;
    return NGX_CONF_OK;
}
