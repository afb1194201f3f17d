/* Whether a location that reports the server's state (musicgen_status names
 * the model's folder; musicgen_metrics its load) is closed by allow/deny.
 * The access module's configuration is private to it, so it is found by
 * name among the cycle's modules (a binary built without it has none) and
 * read through a copy of its layout: three rule arrays, NULL when the
 * location and its parents set no rule of that address family. That layout
 * has been the same in every nginx since IPv6 and unix-socket rules came. */
#include "nginx/ngx_http_musicgen_module.h"
#include "nginx/ngx_http_musicgen_access.h"

/* ngx_http_access_loc_conf_t (src/http/modules/ngx_http_access_module.c) */
typedef struct {
    ngx_array_t  *rules;
#if (NGX_HAVE_INET6)
    ngx_array_t  *rules6;
#endif
#if (NGX_HAVE_UNIX_DOMAIN)
    ngx_array_t  *rules_un;
#endif
} ngx_http_musicgen_access_rules_t;

static ngx_module_t *
ngx_http_musicgen_find_module(ngx_conf_t *cf, const char *name)
{
    ngx_uint_t  i;

    for (i = 0; i < cf->cycle->modules_n; i++) {
        if (ngx_strcmp(cf->cycle->modules[i]->name, name) == 0) {
            return cf->cycle->modules[i];
        }
    }
    return NULL;
}

ngx_int_t
ngx_http_musicgen_warn_if_open(ngx_conf_t *cf, const char *directive)
{
    ngx_module_t                      *access;
    ngx_http_musicgen_access_rules_t  *rules;
    ngx_http_core_loc_conf_t          *clcf;

    access = ngx_http_musicgen_find_module(cf, "ngx_http_access_module");
    if (access == NULL) {
        return 0;
    }
    rules = ((ngx_http_conf_ctx_t *) cf->ctx)->loc_conf[access->ctx_index];
    if (rules->rules != NULL
#if (NGX_HAVE_INET6)
        || rules->rules6 != NULL
#endif
#if (NGX_HAVE_UNIX_DOMAIN)
        || rules->rules_un != NULL
#endif
       )
    {
        return 0;
    }
    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    /* at merge time the parser's position is the end of the http block:
     * the location's name says where */
    ngx_log_error(NGX_LOG_WARN, cf->log, 0,
                  "\"%s\" in location \"%V\" has no \"allow\" or \"deny\": anyone who "
                  "reaches the server can read it (add e.g. \"allow 127.0.0.1; deny all;\")",
                  directive, &clcf->name);
    return 1;
}
