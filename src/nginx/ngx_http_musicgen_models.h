/* Several models in one nginx: musicgen_model [NAME] DIR declares one (http
 * level), musicgen_default_model NAME picks a location's default, and a
 * request's "model" field picks among them all (service/request.h). Each
 * worker loads every model once; the locations share them. */
#ifndef _NGX_HTTP_MUSICGEN_MODELS_H_INCLUDED_
#define _NGX_HTTP_MUSICGEN_MODELS_H_INCLUDED_

#include "nginx/ngx_http_musicgen_module.h"

/* musicgen_model DIR | NAME DIR (the directive's handler: checks the folder
 * and the name at nginx -t). musicgen_default_model NAME is a string slot,
 * checked when the location is merged. */
char *ngx_http_musicgen_model(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);

/* A location's merge: its default model (inherited, else the http level's)
 * and, for every model, the duration range from max and the location's
 * musicgen_default_duration, its limits and the long-form stride's check,
 * into conf->limits. NGX_CONF_OK, or NGX_CONF_ERROR having logged why. */
char *ngx_http_musicgen_models_merge(ngx_conf_t *cf, ngx_http_musicgen_loc_conf_t *prev,
    ngx_http_musicgen_loc_conf_t *conf, double max);

/* The model at index i of the http level's list (a request's req.model). */
ngx_http_musicgen_model_t *ngx_http_musicgen_models_get(ngx_http_musicgen_main_conf_t *mcf,
    ngx_uint_t i);
/* Whether this worker has at least one model loaded. */
ngx_uint_t ngx_http_musicgen_models_loaded(ngx_http_musicgen_main_conf_t *mcf);

/* Worker start: each model loaded once (a failure is logged; that model's
 * requests get 503). Worker exit: each freed. */
void ngx_http_musicgen_models_load(ngx_cycle_t *cycle, ngx_http_musicgen_main_conf_t *mcf);
void ngx_http_musicgen_models_free(ngx_http_musicgen_main_conf_t *mcf);

#endif /* _NGX_HTTP_MUSICGEN_MODELS_H_INCLUDED_ */
