/* ngx_http_musicgen_module: text-to-music over HTTP. nginx glue only: the
 * engine (src/, musicgen.h) does parsing, generation and encoding.
 *
 *   load_module modules/ngx_http_musicgen_module.so;
 *   http {
 *       musicgen_model /var/lib/musicgen/musicgen-small;
 *       server { location /generate { musicgen on; } }
 *   }
 *
 * Generation runs on the engine's scheduler thread, never on the event loop
 * and without a thread per request: the engine's callbacks wake the worker's
 * event loop (an eventfd), which encodes and sends the audio as it comes.
 *
 * This file is the module's entry: its directive table, its configuration
 * (created, defaulted, merged and checked at nginx -t). The rest is in
 * src/nginx/, one file per part:
 *   ngx_http_musicgen_directives.c  directive handlers that check their values
 *   ngx_http_musicgen_models.c      the models (musicgen_model): declared, merged, loaded
 *   ngx_http_musicgen_worker.c      worker start and exit: the model's load
 *   ngx_http_musicgen_handler.c     the content handler: method, body, parse
 *   ngx_http_musicgen_parser.c      the parser thread: large bodies parsed off the event loop
 *   ngx_http_musicgen_job.c         the job: queued, pumped, streamed, timeout, cancel
 *   ngx_http_musicgen_wakeup.c      the eventfd the engine wakes the event loop with
 *   ngx_http_musicgen_response.c    sending, errors, CORS, cache headers
 *   ngx_http_musicgen_status.c      musicgen_status
 *   ngx_http_musicgen_openapi.c     musicgen_openapi: the API's OpenAPI document
 *   ngx_http_musicgen_access.c      the nginx -t warning for state pages without allow/deny
 *   ngx_http_musicgen_metrics.c     musicgen_metrics: all workers' counters, shared memory
 *   ngx_http_musicgen_variables.c   the $musicgen_* variables for log_format */
#include "nginx/ngx_http_musicgen_module.h"
#include "nginx/ngx_http_musicgen_access.h"
#include "nginx/ngx_http_musicgen_directives.h"
#include "nginx/ngx_http_musicgen_models.h"
#include "nginx/ngx_http_musicgen_openapi.h"
#include "nginx/ngx_http_musicgen_metrics.h"
#include "nginx/ngx_http_musicgen_status.h"
#include "nginx/ngx_http_musicgen_variables.h"
#include "nginx/ngx_http_musicgen_worker.h"

/* musicgen_max_duration when unset: seconds */
#define NGX_HTTP_MUSICGEN_MAX_DURATION  30

static void *ngx_http_musicgen_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_musicgen_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_http_musicgen_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_musicgen_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child);

static ngx_int_t ngx_http_musicgen_check_longform(ngx_conf_t *cf, const mg_model_info *info,
    const ngx_str_t *name, double max, ngx_http_musicgen_loc_conf_t *conf);

static ngx_command_t ngx_http_musicgen_commands[] = {
    { ngx_string("musicgen"),
      NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_http_musicgen,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_musicgen_loc_conf_t, enable),
      NULL },
    { ngx_string("musicgen_model"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE12,
      ngx_http_musicgen_model,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },
    { ngx_string("musicgen_default_model"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_musicgen_loc_conf_t, model),
      NULL },
    { ngx_string("musicgen_device"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_musicgen_device,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },
    { ngx_string("musicgen_dtype"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_musicgen_dtype,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },
    { ngx_string("musicgen_weights_cache"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_musicgen_weights_cache,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },
    { ngx_string("musicgen_cuda_opt_in"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_musicgen_cuda_opt_in,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },
    { ngx_string("musicgen_threads"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_musicgen_main_conf_t, threads),
      NULL },
    { ngx_string("musicgen_status"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_musicgen_status,
      0,
      0,
      NULL },
    { ngx_string("musicgen_openapi"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_musicgen_openapi,
      0,
      0,
      NULL },
    { ngx_string("musicgen_metrics"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_musicgen_metrics,
      0,
      0,
      NULL },
    { ngx_string("musicgen_batch"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_musicgen_main_conf_t, batch),
      NULL },
    { ngx_string("musicgen_queue"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_musicgen_main_conf_t, queue),
      NULL },
    { ngx_string("musicgen_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_musicgen_loc_conf_t, timeout),
      NULL },
    { ngx_string("musicgen_thread_pool"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_musicgen_thread_pool,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },
    { ngx_string("musicgen_level"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_musicgen_level,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },
    { ngx_string("musicgen_extend_stride"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_musicgen_seconds,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_musicgen_loc_conf_t, extend_stride),
      NULL },
    { ngx_string("musicgen_stream"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_musicgen_loc_conf_t, stream),
      NULL },
    { ngx_string("musicgen_max_duration"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_musicgen_seconds,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_musicgen_loc_conf_t, max_duration),
      NULL },
    { ngx_string("musicgen_default_duration"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_musicgen_seconds,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_musicgen_loc_conf_t, default_duration),
      NULL },
    { ngx_string("musicgen_format"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_musicgen_format,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },
    { ngx_string("musicgen_cors_origins"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_musicgen_cors_origins,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_musicgen_loc_conf_t, cors),
      NULL },
      ngx_null_command
};

static ngx_http_module_t ngx_http_musicgen_module_ctx = {
    ngx_http_musicgen_add_variables,       /* preconfiguration */
    ngx_http_musicgen_metrics_init,        /* postconfiguration */
    ngx_http_musicgen_create_main_conf,
    ngx_http_musicgen_init_main_conf,
    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */
    ngx_http_musicgen_create_loc_conf,
    ngx_http_musicgen_merge_loc_conf
};

ngx_module_t ngx_http_musicgen_module = {
    NGX_MODULE_V1,
    &ngx_http_musicgen_module_ctx,
    ngx_http_musicgen_commands,
    NGX_HTTP_MODULE,
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_musicgen_init_process,
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_musicgen_exit_process,
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static void *
ngx_http_musicgen_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_musicgen_main_conf_t  *mcf;

    mcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_musicgen_main_conf_t));
    if (mcf == NULL) {
        return NULL;
    }
    mcf->threads = NGX_CONF_UNSET;
    mcf->queue = NGX_CONF_UNSET;
    mcf->batch = NGX_CONF_UNSET;
    mg_backend_options_default(&mcf->backend);
    return mcf;
}

static char *
ngx_http_musicgen_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_musicgen_main_conf_t *mcf = conf;

    if (mcf->threads == NGX_CONF_UNSET) {
        mcf->threads = 0;
    }
    if (mcf->queue == NGX_CONF_UNSET) {
        mcf->queue = 16;
    }
    if (mcf->batch == NGX_CONF_UNSET) {
        mcf->batch = MG_DEFAULT_BATCH;
    }
    if (mcf->batch < 1 || mcf->batch > MG_MAX_BATCH) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "\"musicgen_batch\" must be between 1 and %d",
                           MG_MAX_BATCH);
        return NGX_CONF_ERROR;
    }
    if (mcf->queue < 0 || mcf->queue > 100000) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "\"musicgen_queue\" must be between 0 and 100000");
        return NGX_CONF_ERROR;
    }
    if (mcf->threads < 0 || mcf->threads > 256) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"musicgen_threads\" must be between 0 (all cores) and 256");
        return NGX_CONF_ERROR;
    }
    /* a model's workers count their events in the shared zone */
    if (mcf->models && ngx_http_musicgen_metrics_zone(cf, mcf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }
    return NGX_CONF_OK;
}

static void *
ngx_http_musicgen_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_musicgen_loc_conf_t  *lcf;

    lcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_musicgen_loc_conf_t));
    if (lcf == NULL) {
        return NULL;
    }
    lcf->enable = NGX_CONF_UNSET;
    lcf->stream = NGX_CONF_UNSET;
    lcf->max_duration = NGX_CONF_UNSET;
    lcf->default_duration = NGX_CONF_UNSET;
    lcf->format = NGX_CONF_UNSET;
    lcf->cors = NGX_CONF_UNSET_PTR;
    lcf->timeout = NGX_CONF_UNSET_MSEC;
    lcf->level = NGX_CONF_UNSET;
    lcf->extend_stride = NGX_CONF_UNSET;
    return lcf;
}

static char *
ngx_http_musicgen_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_musicgen_loc_conf_t   *prev = parent, *conf = child;
    ngx_http_musicgen_main_conf_t  *mcf;
    ngx_http_musicgen_model_t      *models;
    ngx_uint_t                      i;
    double                          max;

    ngx_conf_merge_value(conf->enable, prev->enable, 0);
    ngx_conf_merge_value(conf->stream, prev->stream, 1);
    if (conf->max_duration == NGX_CONF_UNSET) {
        /* unset everywhere: NGX_HTTP_MUSICGEN_MAX_DURATION, below */
        conf->max_duration = prev->max_duration;
    }
    if (conf->default_duration == NGX_CONF_UNSET) {
        /* the parent's; unset there too, mg_duration_limits gives MG_DEFAULT_DURATION */
        conf->default_duration = prev->default_duration;
    }
    ngx_conf_merge_value(conf->format, prev->format, MG_AUDIO_WAV);
    ngx_conf_merge_ptr_value(conf->cors, prev->cors, NULL);
    ngx_conf_merge_msec_value(conf->timeout, prev->timeout, 300000);
    ngx_conf_merge_value(conf->level, prev->level, MG_LEVEL_LIMIT);
    if (conf->extend_stride == NGX_CONF_UNSET) {
        conf->extend_stride = prev->extend_stride;
    }

    max = conf->max_duration;
    if (max == NGX_CONF_UNSET) {
        /* the built-in maximum: past a model's window, the engine generates
         * window by window */
        max = NGX_HTTP_MUSICGEN_MAX_DURATION;
    }
    /* per model: the duration range, limits and stride check requests meet */
    if (ngx_http_musicgen_models_merge(cf, prev, conf, max) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }
    conf->limits.default_format = (mg_audio_format) conf->format;
    if (conf->level == MG_LEVEL_OFF && conf->format == MG_AUDIO_FLAC) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"musicgen_level off\" (float samples) cannot go with "
                           "\"musicgen_format flac\" (16-bit): use clip, or wav");
        return NGX_CONF_ERROR;
    }
    if (conf->access_guarded) {
        ngx_http_musicgen_warn_if_open(cf, conf->access_guarded);
    }
    conf->settings.level = (mg_level) conf->level;
    /* unset: 0, the engine's default (18 s, audiocraft's) */
    conf->settings.extend_stride = conf->extend_stride == NGX_CONF_UNSET
                                   ? 0 : (float) conf->extend_stride;
    if (!conf->enable) {
        return NGX_CONF_OK;
    }
    mcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_musicgen_module);
    if (mcf->models == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"musicgen on\" needs \"musicgen_model DIR\" at the http level");
        return NGX_CONF_ERROR;
    }
    /* where requests are served: the levels above may keep the built-in
     * maximum that the location lowers */
    models = mcf->models->elts;
    for (i = 0; i < mcf->models->nelts; i++) {
        if (ngx_http_musicgen_check_longform(cf, &models[i].info, &models[i].name,
                                             conf->limits.models[i].duration.max, conf)
            != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }
    }
    return NGX_CONF_OK;
}

/* What the engine would refuse on every request, refused at nginx -t
 * instead: a musicgen_extend_stride under one frame (every plan needs a
 * stride), and a maximum duration past the model's window when the model
 * cannot generate window by window with the location's stride (a window
 * too short to keep a prompt and still advance: a stride of at least one
 * frame and less than the window is needed). */
static ngx_int_t
ngx_http_musicgen_check_longform(ngx_conf_t *cf, const mg_model_info *info,
    const ngx_str_t *name, double max, ngx_http_musicgen_loc_conf_t *conf)
{
    mg_error  err;
    int       stride = 0;
    char      msg[256];

    ngx_memzero(&err, sizeof(err));
    if (mg_extend_stride_frames(info, conf->extend_stride == NGX_CONF_UNSET
                                      ? 0 : conf->extend_stride, &stride, &err) != MG_OK)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "musicgen_%s", err.msg);
        return NGX_ERROR;
    }
    if (mg_duration_frames(info, max) > info->max_frames
        && !(stride >= 1 && stride < info->max_frames))
    {
        /* nginx's formats have no %g: seconds as an operator writes them */
        snprintf(msg, sizeof(msg), "musicgen_max_duration %.10g s is past the model's window "
                 "(%.10g s), and a window of %d frame%s is too short for long-form "
                 "generation: set musicgen_max_duration to at most %.10g (model \"%.*s\")",
                 max, info->max_duration, info->max_frames,
                 info->max_frames == 1 ? "" : "s", info->max_duration,
                 (int) name->len, (const char *) name->data);
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "%s", msg);
        return NGX_ERROR;
    }
    return NGX_OK;
}
