/* musicgen_metrics: the module's counters in Prometheus' text exposition
 * format (version 0.0.4), for every worker process together.
 *
 * Each worker adds its events to one shared memory zone ("musicgen_metrics"):
 * atomic counters, so no lock is taken on a request's path. nginx keeps a
 * zone of the same name, size and module across a reload, so the counters of
 * a worker that exits stay in the totals, and the new workers add to them.
 * The gauges (jobs queued and running, workers with the model loaded) are
 * kept as sums of each worker's changes: a worker takes back its share when
 * it exits. The size follows the layout, so a module whose layout changed
 * gets a fresh zone on a reload rather than misreading the old one.
 *
 * musicgen_status (ngx_http_musicgen_status.c) shows the same events for the
 * worker that answers it: both are counted in ngx_http_musicgen_metrics_job_end. */
#include "nginx/ngx_http_musicgen_module.h"
#include "nginx/ngx_http_musicgen_metrics.h"
#include "nginx/ngx_http_musicgen_response.h"

#define NGX_HTTP_MUSICGEN_METRICS_MODELS   8   /* models in one nginx */
#define NGX_HTTP_MUSICGEN_METRICS_LOADS    4   /* devices and weight formats per model */
#define NGX_HTTP_MUSICGEN_METRICS_BUCKETS  10  /* histogram buckets, +Inf not counted */
#define NGX_HTTP_MUSICGEN_METRICS_LABEL    64  /* a label value's bytes, NUL included */
#define NGX_HTTP_MUSICGEN_STATUS_MIN       100
#define NGX_HTTP_MUSICGEN_STATUS_MAX       599

/* generations_total's result label, in the order of the counters */
enum {
    NGX_HTTP_MUSICGEN_GEN_COMPLETED = 0,
    NGX_HTTP_MUSICGEN_GEN_FAILED,
    NGX_HTTP_MUSICGEN_GEN_CANCELLED,
    NGX_HTTP_MUSICGEN_GEN_TIMED_OUT,
    NGX_HTTP_MUSICGEN_GEN_RESULTS
};

static const char *ngx_http_musicgen_gen_results[NGX_HTTP_MUSICGEN_GEN_RESULTS] = {
    "completed", "failed", "cancelled", "timed_out"
};

/* A histogram bucket's upper bound, as its le label and in microseconds. */
typedef struct {
    const char        *le;
    ngx_atomic_uint_t  us;
} ngx_http_musicgen_bound_t;

/* time to first audio: a streamed clip's first sound is due within a
 * second or two of the request */
static const ngx_http_musicgen_bound_t ngx_http_musicgen_first_audio_bounds[] = {
    { "0.05", 50000 }, { "0.1", 100000 }, { "0.25", 250000 }, { "0.5", 500000 },
    { "1", 1000000 }, { "2.5", 2500000 }, { "5", 5000000 }, { "10", 10000000 },
    { "30", 30000000 }, { "60", 60000000 }
};

/* a whole generation: seconds of audio take seconds to minutes */
static const ngx_http_musicgen_bound_t ngx_http_musicgen_total_bounds[] = {
    { "0.5", 500000 }, { "1", 1000000 }, { "2.5", 2500000 }, { "5", 5000000 },
    { "10", 10000000 }, { "30", 30000000 }, { "60", 60000000 }, { "120", 120000000 },
    { "300", 300000000 }, { "600", 600000000 }
};

/* Observations per bucket (not cumulative: the output sums them; the last
 * is past every bound) and their sum. The count is the buckets' sum, so a
 * scrape never sees a count that disagrees with its +Inf bucket. */
typedef struct {
    ngx_atomic_t  bucket[NGX_HTTP_MUSICGEN_METRICS_BUCKETS + 1];
    ngx_atomic_t  sum_us;
} ngx_http_musicgen_histogram_t;

/* A model's load state on one device with one weight format. */
typedef struct {
    u_char        device[NGX_HTTP_MUSICGEN_METRICS_LABEL];
    u_char        weights[NGX_HTTP_MUSICGEN_METRICS_LABEL];
    ngx_atomic_t  loaded;    /* gauge: worker processes that hold it */
    ngx_atomic_t  failures;  /* counter: worker processes that failed to load it */
} ngx_http_musicgen_load_t;

typedef struct {
    u_char                         name[NGX_HTTP_MUSICGEN_METRICS_LABEL];
    ngx_atomic_t                   generations[NGX_HTTP_MUSICGEN_GEN_RESULTS];
    ngx_atomic_t                   rejected;       /* queue full */
    ngx_atomic_t                   audio_us, compute_us;
    ngx_atomic_t                   active, running; /* gauges: sums of signed changes */
    ngx_http_musicgen_histogram_t  first_audio, total;
    ngx_uint_t                     n_loads;        /* under the zone's mutex */
    ngx_http_musicgen_load_t       loads[NGX_HTTP_MUSICGEN_METRICS_LOADS];
} ngx_http_musicgen_model_metrics_t;

/* The zone's one allocation. Entries are added under the slab pool's mutex
 * and never removed; the counters in them are atomic. */
typedef struct {
    ngx_atomic_t                       requests[NGX_HTTP_MUSICGEN_STATUS_MAX
                                                - NGX_HTTP_MUSICGEN_STATUS_MIN + 1];
    ngx_uint_t                         n_models;
    ngx_http_musicgen_model_metrics_t  models[NGX_HTTP_MUSICGEN_METRICS_MODELS];
} ngx_http_musicgen_shm_t;

/* One model's entries for this worker, and what the worker added to its
 * gauges (taken back when it exits). */
typedef struct {
    ngx_http_musicgen_model_metrics_t  *model;  /* NULL: not counted */
    ngx_http_musicgen_load_t           *load;   /* its load state; NULL: none */
    ngx_flag_t                          loaded; /* counted in load->loaded */
    ngx_uint_t                          active, running;
} ngx_http_musicgen_metrics_share_t;

/* A configuration's zone, and this worker's share of each model's entry
 * (by the model's index in the main conf's models). */
struct ngx_http_musicgen_metrics_s {
    ngx_shm_zone_t                     *zone;
    ngx_http_musicgen_metrics_share_t   share[NGX_HTTP_MUSICGEN_METRICS_MODELS];
};

static ngx_str_t  ngx_http_musicgen_metrics_zone_name = ngx_string("musicgen_metrics");

static ngx_int_t
ngx_http_musicgen_metrics_init_zone(ngx_shm_zone_t *zone, void *data)
{
    ngx_slab_pool_t          *shpool;
    ngx_http_musicgen_shm_t  *sh;

    if (data) {
        /* a reload: the previous configuration's zone, counters and all */
        zone->data = data;
        return NGX_OK;
    }
    shpool = (ngx_slab_pool_t *) zone->shm.addr;
    if (zone->shm.exists) {
        zone->data = shpool->data;
        return NGX_OK;
    }
    sh = ngx_slab_calloc(shpool, sizeof(ngx_http_musicgen_shm_t));
    if (sh == NULL) {
        return NGX_ERROR;
    }
    shpool->data = sh;
    zone->data = sh;
    return NGX_OK;
}

ngx_int_t
ngx_http_musicgen_metrics_zone(ngx_conf_t *cf, ngx_http_musicgen_main_conf_t *mcf)
{
    ngx_http_musicgen_metrics_t  *mm;
    size_t                        size;

    if (mcf->metrics) {
        return NGX_OK;
    }
    mm = ngx_pcalloc(cf->pool, sizeof(ngx_http_musicgen_metrics_t));
    if (mm == NULL) {
        return NGX_ERROR;
    }
    /* the slab pool's header and its page bookkeeping come out of the zone */
    size = ngx_align(sizeof(ngx_http_musicgen_shm_t), ngx_pagesize) + 8 * ngx_pagesize;
    mm->zone = ngx_shared_memory_add(cf, &ngx_http_musicgen_metrics_zone_name, size,
                                     &ngx_http_musicgen_module);
    if (mm->zone == NULL) {
        return NGX_ERROR;
    }
    mm->zone->init = ngx_http_musicgen_metrics_init_zone;
    mcf->metrics = mm;
    return NGX_OK;
}


static ngx_http_musicgen_shm_t *
ngx_http_musicgen_metrics_shm(ngx_http_musicgen_main_conf_t *mcf)
{
    return mcf->metrics && mcf->metrics->zone ? mcf->metrics->zone->data : NULL;
}

/* s into a label slot, cut to fit. */
static void
ngx_http_musicgen_metrics_label_copy(u_char *dst, const char *s)
{
    ngx_cpystrn(dst, (u_char *) s, NGX_HTTP_MUSICGEN_METRICS_LABEL);
}

static ngx_flag_t
ngx_http_musicgen_metrics_label_is(const u_char *slot, const char *s)
{
    u_char  cut[NGX_HTTP_MUSICGEN_METRICS_LABEL];

    ngx_http_musicgen_metrics_label_copy(cut, s);
    return ngx_strcmp(slot, cut) == 0;
}

/* A model's entry and its load state's (device, weights), found or added
 * under the zone's mutex, into the worker's share sh_out; NULL when the
 * tables are full (logged). Entries are keyed by the model's name. */
static void
ngx_http_musicgen_metrics_find(ngx_http_musicgen_main_conf_t *mcf,
    ngx_http_musicgen_metrics_share_t *share, const char *name, ngx_log_t *log,
    const char *device, const char *weights)
{
    ngx_http_musicgen_metrics_t        *mm = mcf->metrics;
    ngx_http_musicgen_shm_t            *sh = ngx_http_musicgen_metrics_shm(mcf);
    ngx_slab_pool_t                    *shpool;
    ngx_http_musicgen_model_metrics_t  *m = NULL;
    ngx_http_musicgen_load_t           *l = NULL;
    ngx_uint_t                          i;

    shpool = (ngx_slab_pool_t *) mm->zone->shm.addr;
    ngx_shmtx_lock(&shpool->mutex);
    for (i = 0; i < sh->n_models; i++) {
        if (ngx_http_musicgen_metrics_label_is(sh->models[i].name, name)) {
            m = &sh->models[i];
            break;
        }
    }
    if (m == NULL && sh->n_models < NGX_HTTP_MUSICGEN_METRICS_MODELS) {
        m = &sh->models[sh->n_models++];
        ngx_http_musicgen_metrics_label_copy(m->name, name);
    }
    for (i = 0; m && i < m->n_loads; i++) {
        if (ngx_http_musicgen_metrics_label_is(m->loads[i].device, device)
            && ngx_http_musicgen_metrics_label_is(m->loads[i].weights, weights))
        {
            l = &m->loads[i];
            break;
        }
    }
    if (m && l == NULL && m->n_loads < NGX_HTTP_MUSICGEN_METRICS_LOADS) {
        l = &m->loads[m->n_loads++];
        ngx_http_musicgen_metrics_label_copy(l->device, device);
        ngx_http_musicgen_metrics_label_copy(l->weights, weights);
    }
    ngx_shmtx_unlock(&shpool->mutex);
    if (m == NULL || l == NULL) {
        ngx_log_error(NGX_LOG_WARN, log, 0, "musicgen: the metrics zone has no room for model "
                      "\"%s\" on %s with %s weights: it is left out of musicgen_metrics",
                      name, device, weights);
    }
    share->model = m;
    share->load = l;
}

void
ngx_http_musicgen_metrics_worker_start(ngx_http_musicgen_main_conf_t *mcf)
{
    ngx_http_musicgen_metrics_share_t  *share;
    ngx_http_musicgen_model_t          *slot;
    ngx_uint_t                          i;

    if (ngx_http_musicgen_metrics_shm(mcf) == NULL || mcf->models == NULL) {
        return;
    }
    slot = mcf->models->elts;
    for (i = 0; i < mcf->models->nelts && i < NGX_HTTP_MUSICGEN_METRICS_MODELS; i++) {
        share = &mcf->metrics->share[i];
        if (slot[i].model) {
            ngx_http_musicgen_metrics_find(mcf, share, (const char *) slot[i].name.data,
                                           ngx_cycle->log, mg_model_device(slot[i].model),
                                           mg_model_dtype(slot[i].model));
        } else {
            /* where it was asked to load: the device as configured, no weights */
            ngx_http_musicgen_metrics_find(mcf, share, (const char *) slot[i].name.data,
                                           ngx_cycle->log,
                                           mcf->device.data ? (const char *) mcf->device.data
                                                            : "auto",
                                           "none");
        }
        if (share->load == NULL) {
            continue;
        }
        if (slot[i].model) {
            ngx_atomic_fetch_add(&share->load->loaded, 1);
            share->loaded = 1;
        } else {
            ngx_atomic_fetch_add(&share->load->failures, 1);
        }
    }
    if (mcf->models->nelts > NGX_HTTP_MUSICGEN_METRICS_MODELS) {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0, "musicgen: musicgen_metrics counts the "
                      "first %d models only", NGX_HTTP_MUSICGEN_METRICS_MODELS);
    }
}

/* The shared gauges take the worker's change from what it added last. */
static void
ngx_http_musicgen_metrics_publish(ngx_http_musicgen_metrics_share_t *share, ngx_uint_t active,
    ngx_uint_t running)
{
    if (share->model == NULL) {
        return;
    }
    ngx_atomic_fetch_add(&share->model->active, (ngx_atomic_int_t) (active - share->active));
    ngx_atomic_fetch_add(&share->model->running, (ngx_atomic_int_t) (running - share->running));
    share->active = active;
    share->running = running;
}

void
ngx_http_musicgen_metrics_activity(ngx_http_musicgen_main_conf_t *mcf)
{
    ngx_http_musicgen_model_t  *slot;
    ngx_uint_t                  i;
    int                         running, waiting;

    if (mcf->metrics == NULL || mcf->models == NULL) {
        return;
    }
    slot = mcf->models->elts;
    for (i = 0; i < mcf->models->nelts && i < NGX_HTTP_MUSICGEN_METRICS_MODELS; i++) {
        running = 0;
        waiting = 0;
        if (slot[i].model) {
            mg_model_activity(slot[i].model, &running, &waiting);
        }
        ngx_http_musicgen_metrics_publish(&mcf->metrics->share[i], slot[i].active,
                                          ngx_min((ngx_uint_t) running, slot[i].active));
    }
}

void
ngx_http_musicgen_metrics_worker_exit(ngx_http_musicgen_main_conf_t *mcf)
{
    ngx_http_musicgen_metrics_share_t  *share;
    ngx_uint_t                          i;

    if (mcf->metrics == NULL) {
        return;
    }
    for (i = 0; i < NGX_HTTP_MUSICGEN_METRICS_MODELS; i++) {
        share = &mcf->metrics->share[i];
        ngx_http_musicgen_metrics_publish(share, 0, 0);
        if (share->loaded) {
            ngx_atomic_fetch_add(&share->load->loaded, (ngx_atomic_int_t) -1);
            share->loaded = 0;
        }
        share->model = NULL;
        share->load = NULL;
    }
}

static void
ngx_http_musicgen_histogram_observe(ngx_http_musicgen_histogram_t *h,
    const ngx_http_musicgen_bound_t *bounds, double seconds)
{
    ngx_atomic_uint_t  us;
    ngx_uint_t         i;

    us = seconds > 0 ? (ngx_atomic_uint_t) (seconds * 1e6 + 0.5) : 0;
    for (i = 0; i < NGX_HTTP_MUSICGEN_METRICS_BUCKETS && us > bounds[i].us; i++) {
        /* the first bound at or above it */
    }
    ngx_atomic_fetch_add(&h->sum_us, us);
    ngx_atomic_fetch_add(&h->bucket[i], 1);
}

void
ngx_http_musicgen_metrics_job_end(ngx_http_musicgen_job_t *job, ngx_http_musicgen_result_e result,
    const mg_job_outcome *o)
{
    ngx_http_musicgen_main_conf_t      *mcf;
    ngx_http_musicgen_model_metrics_t  *m;
    ngx_uint_t                          gen, i;

    mcf = ngx_http_get_module_main_conf(job->r, ngx_http_musicgen_module);
    job->result = result;
    switch (result) {
    case NGX_HTTP_MUSICGEN_RESULT_OK:
        job->outcome = *o;
        mcf->stats.completed++;
        mcf->stats.audio_seconds += o->audio_seconds;
        mcf->stats.compute_seconds += o->compute_seconds;
        gen = NGX_HTTP_MUSICGEN_GEN_COMPLETED;
        break;
    case NGX_HTTP_MUSICGEN_RESULT_CANCELLED:
        mcf->stats.cancelled++;
        gen = NGX_HTTP_MUSICGEN_GEN_CANCELLED;
        break;
    case NGX_HTTP_MUSICGEN_RESULT_TIMEOUT:
        mcf->stats.timed_out++;
        gen = NGX_HTTP_MUSICGEN_GEN_TIMED_OUT;
        break;
    case NGX_HTTP_MUSICGEN_RESULT_REJECTED:
        mcf->stats.rejected++;
        gen = NGX_HTTP_MUSICGEN_GEN_RESULTS;
        break;
    default:
        mcf->stats.failed++;
        gen = NGX_HTTP_MUSICGEN_GEN_FAILED;
        break;
    }
    /* the model the request chose; none yet: a request refused before that */
    m = NULL;
    if (mcf->metrics && job->slot && mcf->models) {
        i = job->slot - (ngx_http_musicgen_model_t *) mcf->models->elts;
        m = i < NGX_HTTP_MUSICGEN_METRICS_MODELS ? mcf->metrics->share[i].model : NULL;
    }
    if (m == NULL) {
        return;
    }
    if (gen == NGX_HTTP_MUSICGEN_GEN_RESULTS) {
        ngx_atomic_fetch_add(&m->rejected, 1);
        return;
    }
    ngx_atomic_fetch_add(&m->generations[gen], 1);
    if (gen != NGX_HTTP_MUSICGEN_GEN_COMPLETED) {
        return;
    }
    ngx_atomic_fetch_add(&m->audio_us, (ngx_atomic_uint_t) (o->audio_seconds * 1e6 + 0.5));
    ngx_atomic_fetch_add(&m->compute_us, (ngx_atomic_uint_t) (o->compute_seconds * 1e6 + 0.5));
    ngx_http_musicgen_histogram_observe(&m->first_audio, ngx_http_musicgen_first_audio_bounds,
                                        o->first_audio_seconds);
    ngx_http_musicgen_histogram_observe(&m->total, ngx_http_musicgen_total_bounds,
                                        o->compute_seconds);
}

/* Log phase: a musicgen location's request, by the status it got. */
static ngx_int_t
ngx_http_musicgen_metrics_log(ngx_http_request_t *r)
{
    ngx_http_musicgen_loc_conf_t   *lcf;
    ngx_http_musicgen_main_conf_t  *mcf;
    ngx_http_musicgen_shm_t        *sh;
    ngx_uint_t                      status;

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_musicgen_module);
    mcf = ngx_http_get_module_main_conf(r, ngx_http_musicgen_module);
    sh = ngx_http_musicgen_metrics_shm(mcf);
    if (!lcf->enable || sh == NULL || r != r->main) {
        return NGX_OK;
    }
    status = r->err_status ? r->err_status : r->headers_out.status;
    if (status >= NGX_HTTP_MUSICGEN_STATUS_MIN && status <= NGX_HTTP_MUSICGEN_STATUS_MAX) {
        ngx_atomic_fetch_add(&sh->requests[status - NGX_HTTP_MUSICGEN_STATUS_MIN], 1);
    }
    return NGX_OK;
}

ngx_int_t
ngx_http_musicgen_metrics_init(ngx_conf_t *cf)
{
    ngx_http_core_main_conf_t  *cmcf;
    ngx_http_handler_pt        *h;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);
    h = ngx_array_push(&cmcf->phases[NGX_HTTP_LOG_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }
    *h = ngx_http_musicgen_metrics_log;
    return NGX_OK;
}

/* The exposition's text, written into [p, end): ngx_slprintf stops at end,
 * and the buffer is sized for the zone's full tables. */
typedef struct {
    u_char  *p, *end;
} ngx_http_musicgen_text_t;

static void
ngx_http_musicgen_text_family(ngx_http_musicgen_text_t *t, const char *name, const char *type,
    const char *help)
{
    t->p = ngx_slprintf(t->p, t->end, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A label value as the format escapes it: backslash, double quote, newline. */
static void
ngx_http_musicgen_text_label(ngx_http_musicgen_text_t *t, const u_char *v)
{
    for ( ; *v && t->p + 2 <= t->end; v++) {
        if (*v == '\\' || *v == '"') {
            *t->p++ = '\\';
            *t->p++ = *v;
        } else if (*v == '\n') {
            *t->p++ = '\\';
            *t->p++ = 'n';
        } else {
            *t->p++ = *v;
        }
    }
}

/* `name{model="...",` : a model's sample up to its other labels. */
static void
ngx_http_musicgen_text_model(ngx_http_musicgen_text_t *t, const char *name,
    const ngx_http_musicgen_model_metrics_t *m)
{
    t->p = ngx_slprintf(t->p, t->end, "%s{model=\"", name);
    ngx_http_musicgen_text_label(t, m->name);
    t->p = ngx_slprintf(t->p, t->end, "\"");
}

/* microseconds as seconds */
static void
ngx_http_musicgen_text_seconds(ngx_http_musicgen_text_t *t, ngx_atomic_uint_t us)
{
    t->p = ngx_slprintf(t->p, t->end, "%uA.%06uA\n", us / 1000000, us % 1000000);
}

static void
ngx_http_musicgen_text_histograms(ngx_http_musicgen_text_t *t, ngx_http_musicgen_shm_t *sh,
    const char *name, size_t offset, const ngx_http_musicgen_bound_t *bounds)
{
    ngx_http_musicgen_histogram_t  *h;
    ngx_atomic_uint_t               cumulative;
    ngx_uint_t                      i, b;
    char                            sample[64];

    for (i = 0; i < sh->n_models; i++) {
        h = (ngx_http_musicgen_histogram_t *) ((u_char *) &sh->models[i] + offset);
        cumulative = 0;
        ngx_snprintf((u_char *) sample, sizeof(sample), "%s_bucket%Z", name);
        for (b = 0; b <= NGX_HTTP_MUSICGEN_METRICS_BUCKETS; b++) {
            cumulative += h->bucket[b];
            ngx_http_musicgen_text_model(t, sample, &sh->models[i]);
            t->p = ngx_slprintf(t->p, t->end, ",le=\"%s\"} %uA\n",
                                b < NGX_HTTP_MUSICGEN_METRICS_BUCKETS ? bounds[b].le : "+Inf",
                                cumulative);
        }
        ngx_snprintf((u_char *) sample, sizeof(sample), "%s_sum%Z", name);
        ngx_http_musicgen_text_model(t, sample, &sh->models[i]);
        t->p = ngx_slprintf(t->p, t->end, "} ");
        ngx_http_musicgen_text_seconds(t, h->sum_us);
        ngx_snprintf((u_char *) sample, sizeof(sample), "%s_count%Z", name);
        ngx_http_musicgen_text_model(t, sample, &sh->models[i]);
        t->p = ngx_slprintf(t->p, t->end, "} %uA\n", cumulative);
    }
}

/* One sample per model of the counter or gauge at offset (an ngx_atomic_t
 * in ngx_http_musicgen_model_metrics_t): a count, or microseconds shown as
 * seconds. */
static void
ngx_http_musicgen_text_per_model(ngx_http_musicgen_text_t *t, ngx_http_musicgen_shm_t *sh,
    const char *name, size_t offset, ngx_flag_t seconds)
{
    ngx_atomic_uint_t  v;
    ngx_uint_t         i;

    for (i = 0; i < sh->n_models; i++) {
        v = *(ngx_atomic_t *) ((u_char *) &sh->models[i] + offset);
        ngx_http_musicgen_text_model(t, name, &sh->models[i]);
        t->p = ngx_slprintf(t->p, t->end, "} ");
        if (seconds) {
            ngx_http_musicgen_text_seconds(t, v);
        } else {
            t->p = ngx_slprintf(t->p, t->end, "%uA\n", v);
        }
    }
}

/* A gauge kept as a sum of signed changes: never shown below 0 (a worker
 * killed before it took its share back). */
static ngx_atomic_uint_t
ngx_http_musicgen_gauge(ngx_atomic_uint_t v)
{
    return (ngx_atomic_int_t) v < 0 ? 0 : v;
}

static void
ngx_http_musicgen_metrics_text(ngx_http_musicgen_text_t *t, ngx_http_musicgen_shm_t *sh)
{
    ngx_http_musicgen_model_metrics_t  *m;
    ngx_http_musicgen_load_t           *l;
    ngx_atomic_uint_t                   active, running;
    ngx_uint_t                          i, j;

    ngx_http_musicgen_text_family(t, "musicgen_requests_total", "counter",
        "Requests to musicgen locations, by HTTP status.");
    for (i = 0; i < sizeof(sh->requests) / sizeof(sh->requests[0]); i++) {
        if (sh->requests[i]) {
            t->p = ngx_slprintf(t->p, t->end, "musicgen_requests_total{status=\"%ui\"} %uA\n",
                                i + NGX_HTTP_MUSICGEN_STATUS_MIN, sh->requests[i]);
        }
    }
    ngx_http_musicgen_text_family(t, "musicgen_generations_total", "counter",
        "Generations that ended, by model and result.");
    for (i = 0; i < sh->n_models; i++) {
        for (j = 0; j < NGX_HTTP_MUSICGEN_GEN_RESULTS; j++) {
            ngx_http_musicgen_text_model(t, "musicgen_generations_total", &sh->models[i]);
            t->p = ngx_slprintf(t->p, t->end, ",result=\"%s\"} %uA\n",
                                ngx_http_musicgen_gen_results[j], sh->models[i].generations[j]);
        }
    }
    ngx_http_musicgen_text_family(t, "musicgen_queue_rejections_total", "counter",
        "Requests refused with 503 because the generation queue was full.");
    ngx_http_musicgen_text_per_model(t, sh, "musicgen_queue_rejections_total",
        offsetof(ngx_http_musicgen_model_metrics_t, rejected), 0);
    ngx_http_musicgen_text_family(t, "musicgen_audio_seconds_total", "counter",
        "Seconds of audio generated by completed generations.");
    ngx_http_musicgen_text_per_model(t, sh, "musicgen_audio_seconds_total",
        offsetof(ngx_http_musicgen_model_metrics_t, audio_us), 1);
    ngx_http_musicgen_text_family(t, "musicgen_compute_seconds_total", "counter",
        "Seconds completed generations took, from queueing to their last encoded byte.");
    ngx_http_musicgen_text_per_model(t, sh, "musicgen_compute_seconds_total",
        offsetof(ngx_http_musicgen_model_metrics_t, compute_us), 1);

    ngx_http_musicgen_text_family(t, "musicgen_queue_depth", "gauge",
        "Jobs waiting for a place in the batch, all workers.");
    for (i = 0; i < sh->n_models; i++) {
        m = &sh->models[i];
        active = ngx_http_musicgen_gauge(m->active);
        running = ngx_http_musicgen_gauge(m->running);
        ngx_http_musicgen_text_model(t, "musicgen_queue_depth", m);
        t->p = ngx_slprintf(t->p, t->end, "} %uA\n", active > running ? active - running : 0);
    }
    ngx_http_musicgen_text_family(t, "musicgen_running_jobs", "gauge",
        "Jobs in the engine's batch, all workers.");
    for (i = 0; i < sh->n_models; i++) {
        ngx_http_musicgen_text_model(t, "musicgen_running_jobs", &sh->models[i]);
        t->p = ngx_slprintf(t->p, t->end, "} %uA\n",
                            ngx_http_musicgen_gauge(sh->models[i].running));
    }

    ngx_http_musicgen_text_family(t, "musicgen_first_audio_seconds", "histogram",
        "Time from queueing to the first audio of completed generations.");
    ngx_http_musicgen_text_histograms(t, sh, "musicgen_first_audio_seconds",
        offsetof(ngx_http_musicgen_model_metrics_t, first_audio),
        ngx_http_musicgen_first_audio_bounds);
    ngx_http_musicgen_text_family(t, "musicgen_generation_seconds", "histogram",
        "Time from queueing to the last encoded byte of completed generations.");
    ngx_http_musicgen_text_histograms(t, sh, "musicgen_generation_seconds",
        offsetof(ngx_http_musicgen_model_metrics_t, total), ngx_http_musicgen_total_bounds);

    ngx_http_musicgen_text_family(t, "musicgen_model_loaded", "gauge",
        "Worker processes holding the model, by model, device and weights format.");
    for (i = 0; i < sh->n_models; i++) {
        for (j = 0; j < sh->models[i].n_loads; j++) {
            l = &sh->models[i].loads[j];
            ngx_http_musicgen_text_model(t, "musicgen_model_loaded", &sh->models[i]);
            t->p = ngx_slprintf(t->p, t->end, ",device=\"");
            ngx_http_musicgen_text_label(t, l->device);
            t->p = ngx_slprintf(t->p, t->end, "\",weights=\"");
            ngx_http_musicgen_text_label(t, l->weights);
            t->p = ngx_slprintf(t->p, t->end, "\"} %uA\n", ngx_http_musicgen_gauge(l->loaded));
        }
    }
    ngx_http_musicgen_text_family(t, "musicgen_model_load_failures_total", "counter",
        "Worker processes that failed to load the model, by model and device asked for.");
    for (i = 0; i < sh->n_models; i++) {
        for (j = 0; j < sh->models[i].n_loads; j++) {
            l = &sh->models[i].loads[j];
            ngx_http_musicgen_text_model(t, "musicgen_model_load_failures_total", &sh->models[i]);
            t->p = ngx_slprintf(t->p, t->end, ",device=\"");
            ngx_http_musicgen_text_label(t, l->device);
            t->p = ngx_slprintf(t->p, t->end, "\"} %uA\n", l->failures);
        }
    }
}

static ngx_int_t
ngx_http_musicgen_metrics_handler(ngx_http_request_t *r)
{
    ngx_http_musicgen_main_conf_t  *mcf;
    ngx_http_musicgen_shm_t        *sh;
    ngx_http_musicgen_text_t        t;
    ngx_slab_pool_t                *shpool;
    u_char                         *text;
    size_t                          size;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }
    if (ngx_http_discard_request_body(r) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    mcf = ngx_http_get_module_main_conf(r, ngx_http_musicgen_module);
    sh = ngx_http_musicgen_metrics_shm(mcf);
    if (sh == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    /* every line at its longest: 160 bytes plus its labels, escaped */
    size = 4096 + 64 * (sizeof(sh->requests) / sizeof(sh->requests[0]))
           + NGX_HTTP_MUSICGEN_METRICS_MODELS
             * (2 * (NGX_HTTP_MUSICGEN_METRICS_BUCKETS + 3) + 12
                + 2 * NGX_HTTP_MUSICGEN_METRICS_LOADS)
             * (160 + 6 * NGX_HTTP_MUSICGEN_METRICS_LABEL);
    text = ngx_pnalloc(r->pool, size);
    if (text == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    t.p = text;
    t.end = text + size;
    /* the tables' entries (not their counters) are added under the mutex */
    shpool = (ngx_slab_pool_t *) mcf->metrics->zone->shm.addr;
    ngx_shmtx_lock(&shpool->mutex);
    ngx_http_musicgen_metrics_text(&t, sh);
    ngx_shmtx_unlock(&shpool->mutex);
    if (ngx_http_musicgen_add_header(r, "Cache-Control", "no-store") != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    return ngx_http_musicgen_send(r, NGX_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8",
                                  text, (size_t) (t.p - text));
}

char *
ngx_http_musicgen_metrics(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t       *clcf;
    ngx_http_musicgen_main_conf_t  *mcf;
    ngx_http_musicgen_loc_conf_t   *lcf;

    mcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_musicgen_module);
    if (ngx_http_musicgen_metrics_zone(cf, mcf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }
    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_musicgen_metrics_handler;
    /* the server's state: the location merge warns without allow/deny */
    lcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_musicgen_module);
    lcf->access_guarded = "musicgen_metrics";
    return NGX_CONF_OK;
}
