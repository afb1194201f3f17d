/* The module's counters shared by every worker process
 * (ngx_http_musicgen_metrics.c): a shared memory zone the events of each
 * worker add to, served by musicgen_metrics in Prometheus' text format. */
#ifndef _NGX_HTTP_MUSICGEN_METRICS_H_INCLUDED_
#define _NGX_HTTP_MUSICGEN_METRICS_H_INCLUDED_

#include "nginx/ngx_http_musicgen_module.h"
#include "nginx/ngx_http_musicgen_job.h"

/* The zone (created once per configuration, found again on a reload with
 * its counters) and this worker's place in it; NGX_ERROR when out of
 * memory. Called for a configuration with a model or a musicgen_metrics
 * location. */
ngx_int_t ngx_http_musicgen_metrics_zone(ngx_conf_t *cf, ngx_http_musicgen_main_conf_t *mcf);
/* The musicgen_metrics directive. */
char *ngx_http_musicgen_metrics(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
/* postconfiguration: the log-phase handler that counts the requests of
 * musicgen locations by status. */
ngx_int_t ngx_http_musicgen_metrics_init(ngx_conf_t *cf);

/* Worker start, after the models' loads (a model's slot->model NULL: it
 * failed), and worker exit, after its jobs are released: the load states and
 * the gauges. Models are known by their names (musicgen_model NAME DIR). */
void ngx_http_musicgen_metrics_worker_start(ngx_http_musicgen_main_conf_t *mcf);
void ngx_http_musicgen_metrics_worker_exit(ngx_http_musicgen_main_conf_t *mcf);

/* The job ended with result (o: its outcome, for NGX_HTTP_MUSICGEN_RESULT_OK):
 * kept for the log variables, counted in this worker's musicgen_status
 * totals and in the shared metrics. Once per job. */
void ngx_http_musicgen_metrics_job_end(ngx_http_musicgen_job_t *job,
    ngx_http_musicgen_result_e result, const mg_job_outcome *o);
/* The worker's jobs queued and running changed: the shared gauges follow. */
void ngx_http_musicgen_metrics_activity(ngx_http_musicgen_main_conf_t *mcf);

#endif /* _NGX_HTTP_MUSICGEN_METRICS_H_INCLUDED_ */
