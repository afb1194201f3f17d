/* The variables a log_format can show of a musicgen request:
 *
 *   $musicgen_prompt_hash       CRC32 of the prompt, 8 hex digits
 *   $musicgen_seconds           seconds of audio generated
 *   $musicgen_compute_time      seconds from queueing to the last encoded byte
 *   $musicgen_queue_time        seconds from queueing to the first decoding step
 *   $musicgen_first_audio_time  seconds from queueing to the first audio
 *   $musicgen_seed              the seed used (drawn when the request had none)
 *   $musicgen_model             the model's name
 *   $musicgen_result            ok, cancelled, timeout, rejected or error
 *
 * A variable that has no value for the request (not a musicgen location; no
 * generation; a generation that did not complete, for the times) is not
 * found, which the access log writes as "-". */
#include "nginx/ngx_http_musicgen_module.h"
#include "nginx/ngx_http_musicgen_job.h"
#include "nginx/ngx_http_musicgen_metrics.h"
#include "nginx/ngx_http_musicgen_models.h"
#include "nginx/ngx_http_musicgen_variables.h"

typedef enum {
    NGX_HTTP_MUSICGEN_VAR_PROMPT_HASH,
    NGX_HTTP_MUSICGEN_VAR_SECONDS,
    NGX_HTTP_MUSICGEN_VAR_COMPUTE_TIME,
    NGX_HTTP_MUSICGEN_VAR_QUEUE_TIME,
    NGX_HTTP_MUSICGEN_VAR_FIRST_AUDIO_TIME,
    NGX_HTTP_MUSICGEN_VAR_SEED,
    NGX_HTTP_MUSICGEN_VAR_MODEL,
    NGX_HTTP_MUSICGEN_VAR_RESULT
} ngx_http_musicgen_var_e;

static ngx_int_t ngx_http_musicgen_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);

static ngx_http_variable_t ngx_http_musicgen_vars[] = {
    { ngx_string("musicgen_prompt_hash"), NULL, ngx_http_musicgen_variable,
      NGX_HTTP_MUSICGEN_VAR_PROMPT_HASH, NGX_HTTP_VAR_NOCACHEABLE, 0 },
    { ngx_string("musicgen_seconds"), NULL, ngx_http_musicgen_variable,
      NGX_HTTP_MUSICGEN_VAR_SECONDS, NGX_HTTP_VAR_NOCACHEABLE, 0 },
    { ngx_string("musicgen_compute_time"), NULL, ngx_http_musicgen_variable,
      NGX_HTTP_MUSICGEN_VAR_COMPUTE_TIME, NGX_HTTP_VAR_NOCACHEABLE, 0 },
    { ngx_string("musicgen_queue_time"), NULL, ngx_http_musicgen_variable,
      NGX_HTTP_MUSICGEN_VAR_QUEUE_TIME, NGX_HTTP_VAR_NOCACHEABLE, 0 },
    { ngx_string("musicgen_first_audio_time"), NULL, ngx_http_musicgen_variable,
      NGX_HTTP_MUSICGEN_VAR_FIRST_AUDIO_TIME, NGX_HTTP_VAR_NOCACHEABLE, 0 },
    { ngx_string("musicgen_seed"), NULL, ngx_http_musicgen_variable,
      NGX_HTTP_MUSICGEN_VAR_SEED, NGX_HTTP_VAR_NOCACHEABLE, 0 },
    { ngx_string("musicgen_model"), NULL, ngx_http_musicgen_variable,
      NGX_HTTP_MUSICGEN_VAR_MODEL, NGX_HTTP_VAR_NOCACHEABLE, 0 },
    { ngx_string("musicgen_result"), NULL, ngx_http_musicgen_variable,
      NGX_HTTP_MUSICGEN_VAR_RESULT, NGX_HTTP_VAR_NOCACHEABLE, 0 },
      ngx_http_null_variable
};

/* $musicgen_model: the model the request chose, else (a request refused
 * before it chose one) the location's default. */
static const char *
ngx_http_musicgen_variable_model(ngx_http_musicgen_main_conf_t *mcf,
    ngx_http_musicgen_loc_conf_t *lcf, const ngx_http_musicgen_job_t *job)
{
    ngx_http_musicgen_model_t  *slot;

    slot = job && job->slot ? job->slot
                            : ngx_http_musicgen_models_get(mcf, lcf->limits.n_models
                                                                ? lcf->limits.default_model
                                                                : mcf->default_model);
    return slot ? (const char *) slot->name.data : NULL;
}

/* A request no job decided (an answer from the handler: a refusal, a HEAD,
 * a 304, a preflight; or nginx's own error page): its status tells. */
static const char *
ngx_http_musicgen_result_of_status(ngx_http_request_t *r)
{
    ngx_uint_t  status = r->err_status ? r->err_status : r->headers_out.status;

    if (status == NGX_HTTP_CLIENT_CLOSED_REQUEST) {
        return "cancelled";
    }
    if (status >= NGX_HTTP_INTERNAL_SERVER_ERROR && status != NGX_HTTP_SERVICE_UNAVAILABLE) {
        return "error";
    }
    /* a 4xx, or a 503: the model not loaded */
    return status >= NGX_HTTP_BAD_REQUEST ? "rejected" : "ok";
}

static const char *
ngx_http_musicgen_result_name(ngx_http_request_t *r, const ngx_http_musicgen_job_t *job)
{
    switch (job ? job->result : NGX_HTTP_MUSICGEN_RESULT_NONE) {
    case NGX_HTTP_MUSICGEN_RESULT_OK:
        return "ok";
    case NGX_HTTP_MUSICGEN_RESULT_CANCELLED:
        return "cancelled";
    case NGX_HTTP_MUSICGEN_RESULT_TIMEOUT:
        return "timeout";
    case NGX_HTTP_MUSICGEN_RESULT_REJECTED:
        return "rejected";
    case NGX_HTTP_MUSICGEN_RESULT_ERROR:
        return "error";
    default:
        return ngx_http_musicgen_result_of_status(r);
    }
}

/* The outcome's seconds, when the generation completed. */
static double
ngx_http_musicgen_outcome_seconds(const mg_job_outcome *o, uintptr_t data)
{
    switch (data) {
    case NGX_HTTP_MUSICGEN_VAR_SECONDS:
        return o->audio_seconds;
    case NGX_HTTP_MUSICGEN_VAR_COMPUTE_TIME:
        return o->compute_seconds;
    case NGX_HTTP_MUSICGEN_VAR_QUEUE_TIME:
        return o->queue_seconds;
    default:
        return o->first_audio_seconds;
    }
}

static ngx_int_t
ngx_http_musicgen_variable(ngx_http_request_t *r, ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_musicgen_loc_conf_t   *lcf;
    ngx_http_musicgen_main_conf_t  *mcf;
    ngx_http_musicgen_job_t        *job;
    const char                     *s = NULL;
    u_char                         *p;
    /* the longest: a 64-bit seed in decimal, or seconds as %.3f */
    u_char                          buf[NGX_INT64_LEN + 8];

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_musicgen_module);
    mcf = ngx_http_get_module_main_conf(r, ngx_http_musicgen_module);
    job = ngx_http_get_module_ctx(r, ngx_http_musicgen_module);
    v->not_found = 1;
    if (job == NULL && !lcf->enable) {
        return NGX_OK;
    }
    p = NULL;
    switch (data) {
    case NGX_HTTP_MUSICGEN_VAR_MODEL:
        /* the model the request chose; none chosen yet: the location's default */
        s = ngx_http_musicgen_variable_model(mcf, lcf, job);
        break;
    case NGX_HTTP_MUSICGEN_VAR_RESULT:
        s = ngx_http_musicgen_result_name(r, job);
        break;
    case NGX_HTTP_MUSICGEN_VAR_PROMPT_HASH:
        if (job && job->has_request) {
            p = ngx_snprintf(buf, sizeof(buf), "%08xD", job->prompt_hash);
        }
        break;
    case NGX_HTTP_MUSICGEN_VAR_SEED:
        if (job && job->result == NGX_HTTP_MUSICGEN_RESULT_OK) {
            p = ngx_snprintf(buf, sizeof(buf), "%uL", job->outcome.seed);
        } else if (job && job->has_seed) {
            p = ngx_snprintf(buf, sizeof(buf), "%uL", job->seed);
        }
        break;
    case NGX_HTTP_MUSICGEN_VAR_SECONDS:
        if (job && job->result == NGX_HTTP_MUSICGEN_RESULT_OK) {
            p = ngx_snprintf(buf, sizeof(buf), "%.2f",
                             ngx_http_musicgen_outcome_seconds(&job->outcome, data));
        }
        break;
    default:
        if (job && job->result == NGX_HTTP_MUSICGEN_RESULT_OK) {
            p = ngx_snprintf(buf, sizeof(buf), "%.3f",
                             ngx_http_musicgen_outcome_seconds(&job->outcome, data));
        }
        break;
    }
    if (s) {
        v->data = (u_char *) s;
        v->len = ngx_strlen(s);
    } else if (p) {
        v->len = p - buf;
        v->data = ngx_pnalloc(r->pool, v->len);
        if (v->data == NULL) {
            return NGX_ERROR;
        }
        ngx_memcpy(v->data, buf, v->len);
    } else {
        return NGX_OK;
    }
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;
    return NGX_OK;
}

ngx_int_t
ngx_http_musicgen_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_http_musicgen_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }
        var->get_handler = v->get_handler;
        var->data = v->data;
    }
    return NGX_OK;
}
