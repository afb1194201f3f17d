/* The directives that need more than nginx's slot setters: each checks its
 * value at nginx -t. Ranges that depend on the model (the durations) are
 * decided when the location is merged (ngx_http_musicgen_module.c). */
#include "nginx/ngx_http_musicgen_module.h"
#include "nginx/ngx_http_musicgen_directives.h"
#include "nginx/ngx_http_musicgen_handler.h"

#include <math.h>

/* musicgen on | off: on makes the location's content handler ours. */
char *
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

/* cpu | auto | cuda | cuda:N. A build without the CUDA backend refuses cuda
 * at nginx -t rather than silently running on the CPU; "auto" takes the GPU
 * when the worker finds one usable, else the CPU, and logs which. */
char *
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
char *
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

/* The CUDA paths that are off by default because they have not run on a GPU
 * (backend/options.h): an operator who has checked them on theirs
 * (mg-kernel-test, the golden parity) switches them on by name. */
char *
ngx_http_musicgen_cuda_opt_in(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_musicgen_main_conf_t  *mcf = conf;
    ngx_str_t                      *value = cf->args->elts;
    ngx_uint_t                      i;

    if (mcf->cuda_opt_in_set) {
        return "is duplicate";
    }
    mcf->cuda_opt_in_set = 1;
    for (i = 1; i < cf->args->nelts; i++) {
        if (ngx_strcmp(value[i].data, "conv_bf16") == 0) {
            mcf->backend.cuda_conv_bf16 = 1;
        } else if (ngx_strcmp(value[i].data, "kv_bf16") == 0) {
            mcf->backend.cuda_kv_bf16 = 1;
        } else if (ngx_strcmp(value[i].data, "select_many") == 0) {
            mcf->backend.cuda_select_many = 1;
        } else {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "musicgen_cuda_opt_in \"%V\": unknown path (expected conv_bf16, "
                               "kv_bf16 or select_many)", &value[i]);
            return NGX_CONF_ERROR;
        }
    }
    return NGX_CONF_OK;
}

/* Where workers keep bf16/q8 weights converted (and share them through the
 * page cache); the folder must exist, the workers' user should be able to
 * write it (else each worker converts at start and logs why). */
char *
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

/* A positive number of seconds; its range is decided at merge time, with the
 * model's (mg_duration_limits). */
char *
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

char *
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
char *
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

/* musicgen_thread_pool NAME: generations no longer take a thread of an
 * nginx pool (they run on the engine's scheduler and wake the event loop),
 * so the directive does nothing; it is still accepted, with a warning at
 * nginx -t, so that configurations written for the pool keep loading. */
char *
ngx_http_musicgen_thread_pool(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                       "\"musicgen_thread_pool\" is deprecated and ignored: generations run "
                       "on the engine's scheduler thread, so there is no pool to size "
                       "(remove the directive)");
    return NGX_CONF_OK;
}

/* musicgen_level limit | clip | off: the output level stage (io/level.h). */
char *
ngx_http_musicgen_level(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_musicgen_loc_conf_t *lcf = conf;
    ngx_str_t  *value = cf->args->elts;
    mg_level    level;
    mg_error    err;

    if (lcf->level != NGX_CONF_UNSET) {
        return "is duplicate";
    }
    ngx_memzero(&err, sizeof(err));
    if (mg_level_parse((const char *) value[1].data, value[1].len, &level, &err) != MG_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "musicgen_%s", err.msg);
        return NGX_CONF_ERROR;
    }
    lcf->level = level;
    return NGX_CONF_OK;
}
