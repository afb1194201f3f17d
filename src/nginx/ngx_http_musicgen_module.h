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

typedef struct {
    ngx_str_t   model_dir;    /* musicgen_model */
    ngx_str_t   model_name;   /* its last component (NUL-terminated): responses name the
                               * model without disclosing where it lives on disk */
    ngx_int_t   threads;      /* musicgen_threads: engine CPU threads per worker */
    ngx_str_t   device;       /* musicgen_device: cpu | auto | cuda | cuda:N (NUL-terminated) */
    ngx_str_t   dtype;        /* musicgen_dtype: f32 | bf16 | q8 (NUL-terminated) */
    ngx_str_t   weights_cache; /* musicgen_weights_cache: folder or off (NUL-terminated) */
    mg_backend_options backend; /* defaults, plus the paths musicgen_cuda_opt_in names */
    ngx_flag_t  cuda_opt_in_set;
    mg_model   *model;        /* loaded at worker start */
    mg_model_info info;       /* read at config time (nginx -t checks the folder) */
    ngx_int_t   batch;        /* musicgen_batch: generations decoded together */
    ngx_int_t   queue;        /* musicgen_queue: jobs that may wait for a place in the batch */
    ngx_uint_t  active;       /* jobs queued and not finished, in this worker */
    mg_job_stats stats;       /* this worker's totals (musicgen_status) */
    ngx_http_musicgen_metrics_t *metrics; /* all workers' totals (musicgen_metrics); NULL: none */
    /* this worker's: its jobs (ngx_http_musicgen_job_t, while the request
     * holds its generation) and the wake-up the engine's callbacks signal */
    ngx_queue_t jobs;
    struct ngx_http_musicgen_wakeup_s *wakeup;
} ngx_http_musicgen_main_conf_t;

typedef struct {
    ngx_flag_t          enable;
    ngx_flag_t          stream;      /* musicgen_stream: raw audio sent as it is made */
    double              max_duration, default_duration;  /* as written; unset: NGX_CONF_UNSET */
    mg_duration_range   duration;    /* decided from them and the model at nginx -t */
    ngx_int_t           format;      /* mg_audio_format, NGX_CONF_UNSET: wav */
    ngx_array_t        *cors;        /* of ngx_str_t; "*" allowed */
    ngx_msec_t          timeout;     /* musicgen_timeout: 504 past it */
    ngx_int_t           level;       /* musicgen_level: mg_level, NGX_CONF_UNSET: limit */
    double              extend_stride; /* musicgen_extend_stride, seconds (unset: the engine's 18) */
    mg_job_settings     settings;    /* the two, as jobs take them */
} ngx_http_musicgen_loc_conf_t;

extern ngx_module_t  ngx_http_musicgen_module;

#endif /* _NGX_HTTP_MUSICGEN_MODULE_H_INCLUDED_ */
