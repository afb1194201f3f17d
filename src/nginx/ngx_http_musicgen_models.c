/* Several models in one nginx. musicgen_model declares each at the http
 * level (its folder checked at nginx -t, as one model always was); every
 * location is merged with all of them: its default (musicgen_default_model,
 * inherited, else the one-argument musicgen_model, else the first) and, per
 * model, the duration range and limits a request naming it is checked
 * against. A worker loads each model once at start; requests choose one by
 * name (the service layer's "model" field), so the locations share them. */
#include "nginx/ngx_http_musicgen_module.h"
#include "nginx/ngx_http_musicgen_models.h"

/* a name a request writes in a URL or JSON and the log shows as it is */
#define NGX_HTTP_MUSICGEN_MODEL_NAME_MAX  64

static ngx_int_t
ngx_http_musicgen_model_name_ok(const ngx_str_t *name)
{
    size_t  i;
    u_char  c;

    if (name->len == 0 || name->len > NGX_HTTP_MUSICGEN_MODEL_NAME_MAX) {
        return 0;
    }
    for (i = 0; i < name->len; i++) {
        c = name->data[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
              || c == '.' || c == '_' || c == '-'))
        {
            return 0;
        }
    }
    return 1;
}

/* "a, b, c" (cut short when buf is full), for the errors that name a model
 * there is not. */
static u_char *
ngx_http_musicgen_models_names(ngx_http_musicgen_main_conf_t *mcf, u_char *buf, size_t size)
{
    ngx_http_musicgen_model_t  *m = mcf->models->elts;
    u_char                     *p = buf, *end = buf + size - 1;
    ngx_uint_t                  i;

    for (i = 0; i < mcf->models->nelts; i++) {
        p = ngx_slprintf(p, end, "%s%V", i ? ", " : "", &m[i].name);
    }
    *p = '\0';
    return buf;
}

/* The folder's last component: the one-argument form's name. */
static ngx_str_t
ngx_http_musicgen_folder_name(const ngx_str_t *dir)
{
    ngx_str_t  name;
    u_char    *start, *end;

    end = dir->data + dir->len;
    while (end > dir->data + 1 && end[-1] == '/') {
        end--;
    }
    for (start = end; start > dir->data && start[-1] != '/'; start--) { /* void */ }
    name.data = start;
    name.len = end - start;
    return name;
}

/* musicgen_model DIR | NAME DIR. The folder is inspected here (config.json,
 * the safetensors header: mg_model_inspect), so a broken model fails
 * nginx -t rather than a worker; the weights are mapped at worker start. */
char *
ngx_http_musicgen_model(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_musicgen_main_conf_t  *mcf = conf;
    ngx_http_musicgen_model_t      *m;
    ngx_str_t                      *value = cf->args->elts;
    ngx_str_t                       dir, name;
    ngx_uint_t                      i, named = cf->args->nelts == 3;
    mg_error                        err;

    if (!named && mcf->has_unnamed) {
        return "is duplicate (more models: musicgen_model NAME DIR)";
    }
    dir = value[named ? 2 : 1];
    if (ngx_conf_full_name(cf->cycle, &dir, 0) != NGX_OK) {
        return NGX_CONF_ERROR;
    }
    if (dir.len + sizeof("/model.safetensors.index.json") > 4096) {
        return "is too long";
    }
    name = named ? value[1] : ngx_http_musicgen_folder_name(&dir);
    if (named && !ngx_http_musicgen_model_name_ok(&name)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "musicgen_model \"%V\": a model's name is 1 to %d letters, digits, "
                           "'.', '_' or '-'", &name, NGX_HTTP_MUSICGEN_MODEL_NAME_MAX);
        return NGX_CONF_ERROR;
    }
    if (mcf->models == NULL) {
        mcf->models = ngx_array_create(cf->pool, 2, sizeof(ngx_http_musicgen_model_t));
        if (mcf->models == NULL) {
            return NGX_CONF_ERROR;
        }
    }
    m = mcf->models->elts;
    for (i = 0; i < mcf->models->nelts; i++) {
        if (m[i].name.len == name.len && ngx_strncmp(m[i].name.data, name.data, name.len) == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "musicgen_model \"%V\": a model of that name is already defined "
                               "(each needs its own: musicgen_model NAME DIR)", &name);
            return NGX_CONF_ERROR;
        }
    }
    m = ngx_array_push(mcf->models);
    if (m == NULL) {
        return NGX_CONF_ERROR;
    }
    ngx_memzero(m, sizeof(*m));
    m->name.len = name.len;
    m->dir.len = dir.len;
    m->name.data = ngx_pnalloc(cf->pool, name.len + 1);
    m->dir.data = ngx_pnalloc(cf->pool, dir.len + 1);
    m->etag_id.data = ngx_pnalloc(cf->pool, name.len + 1 + dir.len + 1);
    if (m->name.data == NULL || m->dir.data == NULL || m->etag_id.data == NULL) {
        return NGX_CONF_ERROR;
    }
    ngx_cpystrn(m->name.data, name.data, name.len + 1);
    ngx_cpystrn(m->dir.data, dir.data, dir.len + 1);
    /* the name too: two names on one folder are two URLs' worth of files */
    m->etag_id.len = ngx_sprintf(m->etag_id.data, "%V\n%V%Z", &name, &dir) - m->etag_id.data - 1;
    if (!named) {
        mcf->has_unnamed = 1;
        mcf->default_model = mcf->models->nelts - 1;
    }
    ngx_memzero(&err, sizeof(err));
    if (mg_model_inspect((const char *) m->dir.data, &m->info, &err) != MG_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "musicgen_model: %s", err.msg);
        return NGX_CONF_ERROR;
    }
    return NGX_CONF_OK;
}

char *
ngx_http_musicgen_models_merge(ngx_conf_t *cf, ngx_http_musicgen_loc_conf_t *prev,
    ngx_http_musicgen_loc_conf_t *conf, double max)
{
    ngx_http_musicgen_main_conf_t  *mcf;
    ngx_http_musicgen_model_t      *m;
    mg_request_model               *rm;
    ngx_uint_t                      i, n, def;
    mg_error                        err;
    u_char                          names[512];

    if (conf->model.data == NULL) {
        conf->model = prev->model;
    }
    mcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_musicgen_module);
    n = mcf->models ? mcf->models->nelts : 0;
    ngx_memzero(&err, sizeof(err));
    if (n == 0) {
        if (conf->model.data) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "musicgen_default_model \"%V\": no "
                               "musicgen_model is defined at the http level", &conf->model);
            return NGX_CONF_ERROR;
        }
        /* no model to check against: the values alone (a musicgen location
         * without a model fails below, in the module's merge) */
        if (mg_duration_limits(NULL, max, conf->default_duration, &conf->limits.duration, &err)
            != MG_OK)
        {
            /* err.msg starts with the field: max_duration or default_duration */
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "musicgen_%s", err.msg);
            return NGX_CONF_ERROR;
        }
        return NGX_CONF_OK;
    }
    m = mcf->models->elts;
    def = mcf->default_model;
    if (conf->model.data) {
        for (def = 0; def < n; def++) {
            if (m[def].name.len == conf->model.len
                && ngx_strncmp(m[def].name.data, conf->model.data, conf->model.len) == 0)
            {
                break;
            }
        }
        if (def == n) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "musicgen_default_model \"%V\": no "
                               "musicgen_model has that name (there are: %s)", &conf->model,
                               ngx_http_musicgen_models_names(mcf, names, sizeof(names)));
            return NGX_CONF_ERROR;
        }
    }
    rm = ngx_pcalloc(cf->pool, n * sizeof(mg_request_model));
    if (rm == NULL) {
        return NGX_CONF_ERROR;
    }
    for (i = 0; i < n; i++) {
        /* the range requests naming this model are checked against: nginx -t
         * fails a maximum the model cannot generate, not the first long request */
        if (mg_duration_limits(&m[i].info, max, conf->default_duration, &rm[i].duration, &err)
            != MG_OK)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "musicgen_%s (model \"%V\")", err.msg,
                               &m[i].name);
            return NGX_CONF_ERROR;
        }
        /* a window must move on: the stride is shorter than every model's window */
        if (conf->extend_stride != NGX_CONF_UNSET
            && !(conf->extend_stride < m[i].info.max_duration))
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"musicgen_extend_stride\" must be shorter than the model's "
                               "window (%.2f s): model \"%V\"", m[i].info.max_duration,
                               &m[i].name);
            return NGX_CONF_ERROR;
        }
        rm[i].name = (const char *) m[i].name.data;
        rm[i].max_top_k = m[i].info.decoder_vocab;
        rm[i].audio_rate = m[i].info.sample_rate;
    }
    conf->limits.models = rm;
    conf->limits.n_models = n;
    conf->limits.default_model = def;
    return NGX_CONF_OK;
}

ngx_http_musicgen_model_t *
ngx_http_musicgen_models_get(ngx_http_musicgen_main_conf_t *mcf, ngx_uint_t i)
{
    if (mcf->models == NULL || i >= mcf->models->nelts) {
        return NULL;
    }
    return &((ngx_http_musicgen_model_t *) mcf->models->elts)[i];
}

ngx_uint_t
ngx_http_musicgen_models_loaded(ngx_http_musicgen_main_conf_t *mcf)
{
    ngx_http_musicgen_model_t  *m;
    ngx_uint_t                  i, loaded = 0;

    m = mcf->models ? mcf->models->elts : NULL;
    for (i = 0; m && i < mcf->models->nelts; i++) {
        loaded += m[i].model != NULL;
    }
    return loaded;
}

void
ngx_http_musicgen_models_load(ngx_cycle_t *cycle, ngx_http_musicgen_main_conf_t *mcf)
{
    ngx_http_musicgen_model_t  *m = mcf->models->elts;
    mg_model_options            opt;
    mg_error                    err;
    ngx_uint_t                  i;

    ngx_memzero(&opt, sizeof(opt));
    opt.n_threads = (int) mcf->threads;
    opt.max_batch = (int) mcf->batch;
    opt.device = mcf->device.data ? (const char *) mcf->device.data : "auto";
    opt.dtype = mcf->dtype.data ? (const char *) mcf->dtype.data : NULL;
    opt.weights_cache = mcf->weights_cache.data ? (const char *) mcf->weights_cache.data : NULL;
    opt.backend = &mcf->backend;
    for (i = 0; i < mcf->models->nelts; i++) {
        ngx_memzero(&err, sizeof(err));
        if (mg_model_load(&m[i].model, (const char *) m[i].dir.data, &opt, &err) != MG_OK) {
            /* its requests get 503 while it is not loaded; the others are served */
            ngx_log_error(NGX_LOG_EMERG, cycle->log, 0, "musicgen: loading \"%V\": %s (model \"%V\")",
                          &m[i].dir, err.msg, &m[i].name);
            m[i].model = NULL;
            continue;
        }
        ngx_log_error(NGX_LOG_NOTICE, cycle->log, 0,
                      "musicgen: model \"%V\" loaded from \"%V\" on %s (musicgen_device %s), %s weights",
                      &m[i].name, &m[i].dir, mg_model_device(m[i].model), opt.device,
                      mg_model_dtype(m[i].model));
        if (*mg_model_load_note(m[i].model)) {
            ngx_log_error(NGX_LOG_NOTICE, cycle->log, 0, "musicgen: model \"%V\": %s", &m[i].name,
                          mg_model_load_note(m[i].model));
        }
    }
}

void
ngx_http_musicgen_models_free(ngx_http_musicgen_main_conf_t *mcf)
{
    ngx_http_musicgen_model_t  *m;
    ngx_uint_t                  i;

    m = mcf->models ? mcf->models->elts : NULL;
    for (i = 0; m && i < mcf->models->nelts; i++) {
        if (m[i].model) {
            mg_model_free(m[i].model);
            m[i].model = NULL;
        }
    }
}
