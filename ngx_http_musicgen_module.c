/* ngx_http_musicgen_module: text-to-music over HTTP. nginx glue only: the
 * engine (src/, musicgen.h) does parsing, generation and encoding.
 *
 *   load_module modules/ngx_http_musicgen_module.so;
 *   http {
 *       musicgen_model /var/lib/musicgen/musicgen-small;
 *       server { location /generate { musicgen on; } }
 *   }
 *
 * Generation runs on an nginx thread pool (musicgen_thread_pool, "default"),
 * never on the event loop: the pool's completion event brings the result back
 * to the loop. Thread pools rather than an eventfd of our own because nginx
 * already owns their lifecycle across reloads and worker exits. */
#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <ngx_thread_pool.h>

#include <math.h>

#include "runtime/duration.h"
#include "runtime/model_info.h"
#include "runtime/musicgen.h"
#include "service/job.h"
#include "service/request.h"

#if !(NGX_THREADS)
#error ngx_http_musicgen_module needs nginx built --with-threads
#endif

/* musicgen_max_duration when unset: seconds */
#define NGX_HTTP_MUSICGEN_MAX_DURATION  30

typedef struct {
    ngx_str_t   model_dir;    /* musicgen_model */
    ngx_str_t   model_name;   /* its last component (NUL-terminated): responses name the
                               * model without disclosing where it lives on disk */
    ngx_int_t   threads;      /* musicgen_threads: engine CPU threads per worker */
    ngx_str_t   device;       /* musicgen_device: cpu | auto | cuda | cuda:N (NUL-terminated) */
    ngx_str_t   dtype;        /* musicgen_dtype: f32 | bf16 | q8 (NUL-terminated) */
    ngx_str_t   weights_cache; /* musicgen_weights_cache: folder or off (NUL-terminated) */
    mg_model   *model;        /* loaded at worker start */
    mg_model_info info;       /* read at config time (nginx -t checks the folder) */
    ngx_int_t   batch;        /* musicgen_batch: generations decoded together */
    ngx_int_t   queue;        /* musicgen_queue: jobs that may wait for a place in the batch */
    ngx_uint_t  active;       /* jobs posted and not finished, in this worker */
    mg_job_stats stats;       /* this worker's totals (musicgen_status) */
} ngx_http_musicgen_main_conf_t;

typedef struct {
    ngx_flag_t          enable;
    ngx_str_t           pool_name;
    ngx_thread_pool_t  *pool;
    double              max_duration, default_duration;  /* as written; unset: NGX_CONF_UNSET */
    mg_duration_range   duration;    /* decided from them and the model at nginx -t */
    ngx_int_t           format;      /* mg_audio_format, NGX_CONF_UNSET: wav */
    ngx_array_t        *cors;        /* of ngx_str_t; "*" allowed */
    ngx_msec_t          timeout;     /* musicgen_timeout: 504 past it */
} ngx_http_musicgen_loc_conf_t;

typedef struct {
    ngx_http_request_t *r;
    mg_model           *model;
    mg_request          req;
    int                 want_json;
    volatile int        cancel;
    mg_job_result       res;
    mg_error            err;
    mg_code             rc;
    const char         *model_name;  /* the folder: the ETag's model identity */
    const char         *public_name; /* in the JSON response */
    char                etag[24];    /* "" unless the response is cacheable */
    ngx_event_t         timer;       /* musicgen_timeout */
    unsigned            timed_out:1;
} ngx_http_musicgen_job_t;

static ngx_int_t ngx_http_musicgen_init_process(ngx_cycle_t *cycle);
static void ngx_http_musicgen_exit_process(ngx_cycle_t *cycle);
static void *ngx_http_musicgen_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_musicgen_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_http_musicgen_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_musicgen_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child);
static char *ngx_http_musicgen(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
static char *ngx_http_musicgen_model(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
static char *ngx_http_musicgen_device(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
static char *ngx_http_musicgen_dtype(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
static char *ngx_http_musicgen_weights_cache(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
static char *ngx_http_musicgen_seconds(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
static char *ngx_http_musicgen_format(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
static char *ngx_http_musicgen_cors_origins(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
static ngx_int_t ngx_http_musicgen_handler(ngx_http_request_t *r);
static char *ngx_http_musicgen_status(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);

static ngx_command_t ngx_http_musicgen_commands[] = {
    { ngx_string("musicgen"),
      NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_http_musicgen,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_musicgen_loc_conf_t, enable),
      NULL },
    { ngx_string("musicgen_model"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_musicgen_model,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
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
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_musicgen_loc_conf_t, pool_name),
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
    NULL,                                  /* preconfiguration */
    NULL,                                  /* postconfiguration */
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


/* ---------------------------------------------------------------- config */

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
    return NGX_CONF_OK;
}

/* Checks the folder at config time (nginx -t): config.json parses and the
 * safetensors header is sound (mg_model_inspect). The weights are mapped at
 * worker start. */
static char *
ngx_http_musicgen_model(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_musicgen_main_conf_t *mcf = conf;
    ngx_str_t      *value = cf->args->elts;
    mg_error        err;
    char            path[4096];
    u_char         *start, *end;

    if (mcf->model_dir.data) {
        return "is duplicate";
    }
    if (ngx_conf_full_name(cf->cycle, &value[1], 0) != NGX_OK) {
        return NGX_CONF_ERROR;
    }
    mcf->model_dir = value[1];
    if (value[1].len + sizeof("/model.safetensors") > sizeof(path)) {
        return "is too long";
    }
    end = value[1].data + value[1].len;
    while (end > value[1].data + 1 && end[-1] == '/') {
        end--;
    }
    for (start = end; start > value[1].data && start[-1] != '/'; start--) { /* void */ }
    mcf->model_name.len = end - start;
    mcf->model_name.data = ngx_pnalloc(cf->pool, mcf->model_name.len + 1);
    if (mcf->model_name.data == NULL) {
        return NGX_CONF_ERROR;
    }
    ngx_cpystrn(mcf->model_name.data, start, mcf->model_name.len + 1);
    ngx_memzero(&err, sizeof(err));
    ngx_snprintf((u_char *) path, sizeof(path), "%V%Z", &value[1]);
    if (mg_model_inspect(path, &mcf->info, &err) != MG_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "musicgen_model: %s", err.msg);
        return NGX_CONF_ERROR;
    }
    return NGX_CONF_OK;
}

/* cpu | auto | cuda | cuda:N. A build without the CUDA backend refuses cuda
 * at nginx -t rather than silently running on the CPU; "auto" takes the GPU
 * when the worker finds one usable, else the CPU, and logs which. */
static char *
ngx_http_musicgen_device(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_musicgen_main_conf_t  *mcf = conf;
    ngx_str_t                      *value = cf->args->elts;

    if (mcf->device.data) {
        return "is duplicate";
    }
    if (ngx_strcmp(value[1].data, "cpu") == 0 || ngx_strcmp(value[1].data, "auto") == 0) {
        mcf->device = value[1];
        return NGX_CONF_OK;
    }
    if (ngx_strncmp(value[1].data, "cuda", 4) == 0
        && (value[1].len == 4 || (value[1].data[4] == ':' && value[1].len > 5
            && ngx_atoi(value[1].data + 5, value[1].len - 5) != NGX_ERROR)))
    {
#ifdef MG_HAVE_CUDA
        mcf->device = value[1];
        return NGX_CONF_OK;
#else
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "musicgen_device \"%V\": this module was built without the CUDA "
                           "backend (no nvcc at build time); use cpu or auto", &value[1]);
        return NGX_CONF_ERROR;
#endif
    }
    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "musicgen_device \"%V\": expected cpu, auto, cuda or cuda:N", &value[1]);
    return NGX_CONF_ERROR;
}

/* The matrix weights' format; the engine says at worker start whether the
 * chosen device implements it. */
static char *
ngx_http_musicgen_dtype(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_musicgen_main_conf_t  *mcf = conf;
    ngx_str_t                      *value = cf->args->elts;

    if (mcf->dtype.data) {
        return "is duplicate";
    }
    if (ngx_strcmp(value[1].data, "f32") != 0 && ngx_strcmp(value[1].data, "bf16") != 0
        && ngx_strcmp(value[1].data, "q8") != 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "musicgen_dtype \"%V\": expected f32, bf16 or q8", &value[1]);
        return NGX_CONF_ERROR;
    }
    mcf->dtype = value[1];
    return NGX_CONF_OK;
}

/* Where workers keep bf16/q8 weights converted (and share them through the
 * page cache); the folder must exist, the workers' user should be able to
 * write it (else each worker converts at start and logs why). */
static char *
ngx_http_musicgen_weights_cache(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_musicgen_main_conf_t  *mcf = conf;
    ngx_str_t                      *value = cf->args->elts;
    ngx_file_info_t                 fi;

    if (mcf->weights_cache.data) {
        return "is duplicate";
    }
    if (ngx_strcmp(value[1].data, "off") != 0
        && (ngx_file_info(value[1].data, &fi) == NGX_FILE_ERROR || !ngx_is_dir(&fi)))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "musicgen_weights_cache \"%V\": not a folder (or \"off\")", &value[1]);
        return NGX_CONF_ERROR;
    }
    mcf->weights_cache = value[1];
    return NGX_CONF_OK;
}

static char *
ngx_http_musicgen(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;
    char                      *rv;

    rv = ngx_conf_set_flag_slot(cf, cmd, conf);
    if (rv != NGX_CONF_OK) {
        return rv;
    }
    if (((ngx_http_musicgen_loc_conf_t *) conf)->enable) {
        clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
        clcf->handler = ngx_http_musicgen_handler;
    }
    return NGX_CONF_OK;
}

/* A positive number of seconds; its range is decided at merge time, with the
 * model's (mg_duration_limits). */
static char *
ngx_http_musicgen_seconds(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    double     *field = (double *) ((char *) conf + cmd->offset);
    ngx_str_t  *value = cf->args->elts;
    char        buf[32], *end;
    double      v;

    if (*field != NGX_CONF_UNSET) {
        return "is duplicate";
    }
    if (value[1].len == 0 || value[1].len >= sizeof(buf)) {
        return "must be a number of seconds";
    }
    ngx_memcpy(buf, value[1].data, value[1].len);
    buf[value[1].len] = '\0';
    v = strtod(buf, &end);
    if (*end != '\0' || !(v > 0) || !isfinite(v)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" must be a positive number of seconds, not \"%V\"",
                           &cmd->name, &value[1]);
        return NGX_CONF_ERROR;
    }
    *field = v;
    return NGX_CONF_OK;
}

static char *
ngx_http_musicgen_format(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_musicgen_loc_conf_t *lcf = conf;
    ngx_str_t       *value = cf->args->elts;
    mg_audio_format  fmt;
    mg_error         err;

    if (lcf->format != NGX_CONF_UNSET) {
        return "is duplicate";
    }
    if (mg_audio_format_parse((const char *) value[1].data, value[1].len, &fmt, &err) != MG_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "musicgen_format: %s", err.msg);
        return NGX_CONF_ERROR;
    }
    lcf->format = fmt;
    return NGX_CONF_OK;
}

/* Every argument is an origin ("*" allows any). */
static char *
ngx_http_musicgen_cors_origins(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_musicgen_loc_conf_t *lcf = conf;
    ngx_str_t   *value = cf->args->elts, *o;
    ngx_uint_t   i;

    if (lcf->cors != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }
    lcf->cors = ngx_array_create(cf->pool, cf->args->nelts - 1, sizeof(ngx_str_t));
    if (lcf->cors == NULL) {
        return NGX_CONF_ERROR;
    }
    for (i = 1; i < cf->args->nelts; i++) {
        if (value[i].len == 0 || (value[i].len > 1 && ngx_strlchr(value[i].data,
                                  value[i].data + value[i].len, '*') != NULL))
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "musicgen_cors_origins: \"%V\" is not \"*\" or an origin like https://app.example",
                               &value[i]);
            return NGX_CONF_ERROR;
        }
        o = ngx_array_push(lcf->cors);
        if (o == NULL) {
            return NGX_CONF_ERROR;
        }
        *o = value[i];
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
    lcf->max_duration = NGX_CONF_UNSET;
    lcf->default_duration = NGX_CONF_UNSET;
    lcf->format = NGX_CONF_UNSET;
    lcf->cors = NGX_CONF_UNSET_PTR;
    lcf->timeout = NGX_CONF_UNSET_MSEC;
    return lcf;
}

static char *
ngx_http_musicgen_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_musicgen_loc_conf_t   *prev = parent, *conf = child;
    ngx_http_musicgen_main_conf_t  *mcf;
    mg_error                        err;

    ngx_conf_merge_value(conf->enable, prev->enable, 0);
    ngx_conf_merge_str_value(conf->pool_name, prev->pool_name, "default");
    if (conf->max_duration == NGX_CONF_UNSET) {
        conf->max_duration = prev->max_duration == NGX_CONF_UNSET
                             ? NGX_HTTP_MUSICGEN_MAX_DURATION : prev->max_duration;
    }
    if (conf->default_duration == NGX_CONF_UNSET) {
        conf->default_duration = prev->default_duration;  /* unset: the engine's default */
    }
    ngx_conf_merge_value(conf->format, prev->format, MG_AUDIO_WAV);
    ngx_conf_merge_ptr_value(conf->cors, prev->cors, NULL);
    ngx_conf_merge_msec_value(conf->timeout, prev->timeout, 300000);

    /* the range requests are checked against: nginx -t fails a maximum the
     * model cannot generate, not the first long request */
    mcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_musicgen_module);
    ngx_memzero(&err, sizeof(err));
    if (mg_duration_limits(mcf->model_dir.data ? &mcf->info : NULL, conf->max_duration,
                           conf->default_duration, &conf->duration, &err) != MG_OK)
    {
        /* err.msg starts with the field: max_duration or default_duration */
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "musicgen_%s", err.msg);
        return NGX_CONF_ERROR;
    }
    if (!conf->enable) {
        return NGX_CONF_OK;
    }
    if (mcf->model_dir.data == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"musicgen on\" needs \"musicgen_model DIR\" at the http level");
        return NGX_CONF_ERROR;
    }
    conf->pool = ngx_thread_pool_add(cf, &conf->pool_name);
    if (conf->pool == NULL) {
        return NGX_CONF_ERROR;
    }
    return NGX_CONF_OK;
}


/* ------------------------------------------------------------- lifecycle */

static ngx_int_t
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
    ngx_memzero(&err, sizeof(err));
    ngx_snprintf((u_char *) dir, sizeof(dir), "%V%Z", &mcf->model_dir);
    ngx_memzero(&opt, sizeof(opt));
    opt.n_threads = (int) mcf->threads;
    opt.max_batch = (int) mcf->batch;
    opt.device = mcf->device.data ? (const char *) mcf->device.data : "auto";
    opt.dtype = mcf->dtype.data ? (const char *) mcf->dtype.data : NULL;
    opt.weights_cache = mcf->weights_cache.data ? (const char *) mcf->weights_cache.data : NULL;
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
    return NGX_OK;
}

static void
ngx_http_musicgen_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_musicgen_main_conf_t  *mcf;

    mcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_musicgen_module);
    if (mcf && mcf->model) {
        mg_model_free(mcf->model);
        mcf->model = NULL;
    }
}


/* ------------------------------------------------------------- responses */

/* Access-Control-Allow-Origin from the allow-list, on every response. */
static ngx_int_t
ngx_http_musicgen_cors(ngx_http_request_t *r, ngx_http_musicgen_loc_conf_t *lcf)
{
    ngx_str_t        *allowed, origin = ngx_null_string, *match = NULL;
    ngx_table_elt_t  *h;
    ngx_list_part_t  *part;
    ngx_uint_t        i, any = 0;

    if (lcf->cors == NULL) {
        return NGX_OK;
    }
    part = &r->headers_in.headers.part;
    h = part->elts;
    for (i = 0; /* void */; i++) {
        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }
            part = part->next;
            h = part->elts;
            i = 0;
        }
        if (h[i].key.len == 6 && ngx_strncasecmp(h[i].key.data, (u_char *) "origin", 6) == 0) {
            origin = h[i].value;
        }
    }
    allowed = lcf->cors->elts;
    for (i = 0; i < lcf->cors->nelts; i++) {
        if (allowed[i].len == 1 && allowed[i].data[0] == '*') {
            any = 1;
        } else if (origin.len && origin.len == allowed[i].len
                   && ngx_strncasecmp(origin.data, allowed[i].data, origin.len) == 0) {
            match = &allowed[i];
        }
    }
    if (!any) {
        h = ngx_list_push(&r->headers_out.headers);
        if (h == NULL) {
            return NGX_ERROR;
        }
        h->hash = 1;
        ngx_str_set(&h->key, "Vary");
        ngx_str_set(&h->value, "Origin");
    }
    if (!any && !match) {
        return NGX_OK;
    }
    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }
    h->hash = 1;
    ngx_str_set(&h->key, "Access-Control-Allow-Origin");
    if (any) {
        ngx_str_set(&h->value, "*");
    } else {
        h->value = *match; /* the configured origin: never bytes the client sent */
    }
    return NGX_OK;
}

static ngx_int_t
ngx_http_musicgen_add_header(ngx_http_request_t *r, const char *key, const char *value)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }
    h->hash = 1;
    h->key.data = (u_char *) key;
    h->key.len = ngx_strlen(key);
    h->value.data = (u_char *) value;
    h->value.len = ngx_strlen(value);
    return NGX_OK;
}

/* Sends body (copied into the request pool) with a status and type. */
static ngx_int_t
ngx_http_musicgen_send(ngx_http_request_t *r, ngx_uint_t status, const char *type,
    const u_char *body, size_t len)
{
    ngx_http_musicgen_loc_conf_t  *lcf;
    ngx_buf_t                     *b;
    ngx_chain_t                    out;
    ngx_int_t                      rc;

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_musicgen_module);
    if (ngx_http_musicgen_cors(r, lcf) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    r->headers_out.status = status;
    r->headers_out.content_type.data = (u_char *) type;
    r->headers_out.content_type.len = ngx_strlen(type);
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_length_n = status == NGX_HTTP_NOT_MODIFIED ? -1 : (off_t) len;
    if (len == 0 || r->method == NGX_HTTP_HEAD) {
        r->header_only = 1;
        return ngx_http_send_header(r);
    }
    b = ngx_create_temp_buf(r->pool, len);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    b->last = ngx_cpymem(b->pos, body, len);
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;
    rc = ngx_http_send_header(r);
    if (rc == NGX_ERROR || rc > NGX_OK) {
        return rc;
    }
    out.buf = b;
    out.next = NULL;
    return ngx_http_output_filter(r, &out);
}

/* {"success": false, "error": msg, "field": field} */
static ngx_int_t
ngx_http_musicgen_error(ngx_http_request_t *r, ngx_uint_t status, const char *msg,
    const char *field)
{
    char      *text;
    size_t     len = 0;
    ngx_int_t  rc;

    text = mg_job_error_json(msg, field, &len);
    if (text == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    rc = ngx_http_musicgen_send(r, status, "application/json", (u_char *) text, len);
    free(text);
    return rc;
}


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
    /* jobs posted but not yet in the engine's batch wait in the thread pool */
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

static char *
ngx_http_musicgen_status(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_musicgen_status_handler;
    return NGX_CONF_OK;
}


/* ------------------------------------------------------------------ jobs */

/* A seeded request is a pure function of its URL and the model: cacheable
 * forever under a strong ETag. Anything else must not be cached. */
static ngx_int_t
ngx_http_musicgen_cache_headers(ngx_http_request_t *r, ngx_http_musicgen_job_t *job)
{
    if (job->etag[0] == '\0') {
        return ngx_http_musicgen_add_header(r, "Cache-Control", "no-store");
    }
    if (ngx_http_musicgen_add_header(r, "ETag", job->etag) != NGX_OK) {
        return NGX_ERROR;
    }
    return ngx_http_musicgen_add_header(r, "Cache-Control", "public, max-age=31536000, immutable");
}

/* If-None-Match: "*" or a list containing our (strong) ETag. */
static int
ngx_http_musicgen_etag_matches(ngx_http_request_t *r, const char *etag)
{
    ngx_str_t  *v;

    if (r->headers_in.if_none_match == NULL) {
        return 0;
    }
    v = &r->headers_in.if_none_match->value;
    if (v->len == 1 && v->data[0] == '*') {
        return 1;
    }
    return ngx_strlcasestrn(v->data, v->data + v->len, (u_char *) etag,
                            ngx_strlen(etag) - 1) != NULL;
}

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
        } else if (ngx_http_musicgen_cache_headers(r, job) != NGX_OK) {
            rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        } else {
            rc = ngx_http_musicgen_send(r, NGX_HTTP_OK, mg_audio_mime(job->res.format),
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

static ngx_int_t
ngx_http_musicgen_start(ngx_http_request_t *r, const char *data, size_t len, int is_query)
{
    ngx_http_musicgen_loc_conf_t   *lcf;
    ngx_http_musicgen_main_conf_t  *mcf;
    ngx_http_musicgen_job_t        *job;
    ngx_thread_task_t              *task;
    ngx_pool_cleanup_t             *cln;
    mg_request_limits               lim;
    mg_error                        err;

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_musicgen_module);
    mcf = ngx_http_get_module_main_conf(r, ngx_http_musicgen_module);
    if (mcf->model == NULL) {
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
    task = ngx_thread_task_alloc(r->pool, sizeof(ngx_http_musicgen_job_t));
    if (task == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    job = task->ctx;
    job->r = r;
    job->model = mcf->model;
    job->model_name = (const char *) mcf->model_dir.data;
    job->public_name = (const char *) mcf->model_name.data;

    ngx_memzero(&lim, sizeof(lim));
    lim.duration = lcf->duration;
    lim.default_format = (mg_audio_format) lcf->format;
    lim.max_top_k = mcf->info.decoder_vocab;
    ngx_memzero(&err, sizeof(err));
    if ((is_query ? mg_request_parse_query(data, len, &lim, &job->req, &err)
                  : mg_request_parse_json(data, len, &lim, &job->req, &err)) != MG_OK)
    {
        return ngx_http_musicgen_error(r, err.code == MG_ERR_NOMEM
                                          ? NGX_HTTP_INTERNAL_SERVER_ERROR : NGX_HTTP_BAD_REQUEST,
                                       err.msg, err.field);
    }
    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        mg_request_free(&job->req);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    cln->handler = ngx_http_musicgen_job_cleanup;
    cln->data = job;
    job->want_json = !ngx_http_musicgen_wants_raw(r);

    if (is_query && job->req.has_seed
        && mg_job_etag(mcf->model, &job->req, job->model_name, job->etag, &err) == MG_OK
        && ngx_http_musicgen_etag_matches(r, job->etag))
    {
        /* the client has this exact file: no generation at all */
        if (ngx_http_musicgen_cache_headers(r, job) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
        return ngx_http_musicgen_send(r, NGX_HTTP_NOT_MODIFIED, mg_audio_mime(job->req.format),
                                      NULL, 0);
    }

    /* back-pressure, after validation and the 304 (a bad request is a 400
     * whatever the load, a cached one needs no generation): musicgen_batch jobs decode together in a worker, at most
     * musicgen_queue more wait for a place */
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

static void
ngx_http_musicgen_body(ngx_http_request_t *r)
{
    ngx_chain_t  *cl;
    ngx_buf_t    *b;
    u_char       *body, *p;
    size_t        len = 0;
    ssize_t       n;
    ngx_int_t     rc;

    if (r->request_body == NULL) {
        ngx_http_finalize_request(r, ngx_http_musicgen_error(r, NGX_HTTP_BAD_REQUEST,
                                  "the request has no body", "prompt"));
        return;
    }
    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;
        len += b->in_file ? (size_t) (b->file_last - b->file_pos) : (size_t) (b->last - b->pos);
    }
    body = ngx_pnalloc(r->pool, len + 1);
    if (body == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }
    p = body;
    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;
        if (b->in_file) {
            n = ngx_read_file(b->file, p, (size_t) (b->file_last - b->file_pos), b->file_pos);
            if (n != b->file_last - b->file_pos) {
                ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
                return;
            }
            p += n;
        } else {
            p = ngx_cpymem(p, b->pos, b->last - b->pos);
        }
    }
    rc = ngx_http_musicgen_start(r, (const char *) body, len, 0);
    if (rc == NGX_DONE) {
        /* the body reader's reference is ours until the job finishes */
        ngx_http_finalize_request(r, NGX_DONE);
        return;
    }
    ngx_http_finalize_request(r, rc);
}

static ngx_int_t
ngx_http_musicgen_handler(ngx_http_request_t *r)
{
    ngx_str_t  *ct;
    ngx_int_t   rc;

    if (r->method == NGX_HTTP_OPTIONS) {
        /* CORS preflight */
        if (ngx_http_discard_request_body(r) != NGX_OK
            || ngx_http_musicgen_add_header(r, "Access-Control-Allow-Methods",
                                            "GET, POST, OPTIONS") != NGX_OK
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
    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }
    return NGX_DONE;
}
