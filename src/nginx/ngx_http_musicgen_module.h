/* What the module's files share: nginx's headers and the engine's public
 * ones, the configuration types, and the module itself. Only the files under
 * src/nginx/ and the module's entry (ngx_http_musicgen_module.c) see nginx
 * types; the engine below them never does. */
#ifndef _NGX_HTTP_MUSICGEN_MODULE_H_INCLUDED_
#define _NGX_HTTP_MUSICGEN_MODULE_H_INCLUDED_

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "runtime/duration.h"
#include "runtime/model_info.h"
#include "runtime/musicgen.h"
#include "service/job.h"
#include "service/request.h"

/* the shared metrics zone and this worker's share (ngx_http_musicgen_metrics.c) */
typedef struct ngx_http_musicgen_metrics_s  ngx_http_musicgen_metrics_t;

/* A model this nginx serves (musicgen_model [NAME] DIR): its folder is
 * checked at nginx -t, each worker loads it once, and every location shares
 * it (ngx_http_musicgen_models.c). */
typedef struct {
    ngx_str_t     name;       /* requests' "model" and musicgen_default_model call it so
                               * (NUL-terminated); the one-argument form: the folder's last
                               * component. Responses name the model by it, never by its path */
    ngx_str_t     dir;        /* its folder, full path (NUL-terminated) */
    ngx_str_t     etag_id;    /* name and folder: the ETag's model identity (NUL-terminated) */
    mg_model_info info;       /* read at config time (nginx -t checks the folder) */
    mg_model     *model;      /* this worker's, loaded at worker start; NULL: not loaded */
    ngx_uint_t    active;     /* this worker's jobs on it */
} ngx_http_musicgen_model_t;

typedef struct {
    ngx_array_t *models;      /* of ngx_http_musicgen_model_t; NULL: none */
    ngx_uint_t   default_model; /* index: the one-argument musicgen_model, else the first */
    ngx_flag_t   has_unnamed;   /* a one-argument musicgen_model was given */
    ngx_int_t   threads;      /* musicgen_threads: engine CPU threads per worker */
    ngx_str_t   device;       /* musicgen_device: cpu | auto | cuda | cuda:N (NUL-terminated) */
    ngx_str_t   dtype;        /* musicgen_dtype: f32 | bf16 | q8 (NUL-terminated) */
    ngx_str_t   weights_cache; /* musicgen_weights_cache: folder or off (NUL-terminated) */
    mg_backend_options backend; /* defaults, plus the paths musicgen_cuda_opt_in names */
    ngx_flag_t  cuda_opt_in_set;
    ngx_int_t   batch;        /* musicgen_batch: generations decoded together */
    ngx_int_t   queue;        /* musicgen_queue: jobs that may wait for a place in the batch */
    ngx_uint_t  active;       /* jobs queued and not finished, in this worker */
    mg_job_stats stats;       /* this worker's totals (musicgen_status) */
    ngx_http_musicgen_metrics_t *metrics; /* all workers' totals (musicgen_metrics); NULL: none */
    /* this worker's: its jobs (ngx_http_musicgen_job_t, while the request
     * holds its generation) and the wake-up the engine's callbacks signal */
    ngx_queue_t jobs;
    struct ngx_http_musicgen_wakeup_s *wakeup;
    /* this worker's parser thread for large bodies; NULL: parse inline */
    struct ngx_http_musicgen_parser_s *parser;
} ngx_http_musicgen_main_conf_t;

typedef struct {
    ngx_flag_t          enable;
    ngx_flag_t          stream;      /* musicgen_stream: raw audio sent as it is made */
    double              max_duration, default_duration;  /* as written; unset: NGX_CONF_UNSET */
    ngx_str_t           model;       /* musicgen_default_model NAME; unset: data NULL */
    /* what requests are checked against, decided at nginx -t: per model, the
     * duration range (from the two above and the model) and its limits, and
     * the model a request naming none gets */
    mg_request_limits   limits;
    ngx_int_t           format;      /* mg_audio_format, NGX_CONF_UNSET: wav */
    ngx_array_t        *cors;        /* of ngx_str_t; "*" allowed */
    ngx_msec_t          timeout;     /* musicgen_timeout: 504 past it */
    ngx_int_t           level;       /* musicgen_level: mg_level, NGX_CONF_UNSET: limit */
    double              extend_stride; /* musicgen_extend_stride, seconds (unset: the engine's 18) */
    mg_job_settings     settings;    /* the two, as jobs take them */
    const char         *access_guarded; /* the directive that makes this location report
                                         * the server's state (musicgen_status, ...): it
                                         * should set allow/deny, warned at nginx -t */
} ngx_http_musicgen_loc_conf_t;

extern ngx_module_t  ngx_http_musicgen_module;

#endif /* _NGX_HTTP_MUSICGEN_MODULE_H_INCLUDED_ */
