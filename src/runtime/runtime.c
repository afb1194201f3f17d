/* The handle front ends hold: a model's parts with the scheduler that runs
 * generations on them. */
#include "runtime/runtime_impl.h"
#include "runtime/model_parts.h"

#include <stdlib.h>

mg_code mg_model_load(mg_model **out, const char *dir, const mg_model_options *opt,
                      mg_error *err)
{
    *out = NULL;
    mg_model *m = calloc(1, sizeof *m);
    if (!m)
        return mg_fail(err, MG_ERR_NOMEM, "out of memory");
    mg_code rc = mg_model_parts_open(&m->parts, dir, opt, err);
    if (rc != MG_OK) {
        free(m);
        return rc;
    }
    mg_backend_caps caps;
    mg_backend_get_caps(m->parts.be, &caps);
    m->encodec_batch_jobs = caps.batched_encodec_cheap;
    pthread_mutex_init(&m->run, NULL);
    rc = mg_sched_create(&m->sched, m, opt && opt->max_batch > 0 ? opt->max_batch
                                                                  : MG_DEFAULT_BATCH, err);
    if (rc != MG_OK) {
        mg_model_free(m);
        return rc;
    }
    *out = m;
    return MG_OK;
}

void mg_model_free(mg_model *m)
{
    if (!m)
        return;
    mg_sched_destroy(m->sched); /* first: its thread runs on the parts */
    mg_model_parts_close(&m->parts);
    pthread_mutex_destroy(&m->run);
    free(m);
}

const mg_config *mg_model_config(const mg_model *m) { return &m->parts.cfg; }
const char *mg_model_load_note(const mg_model *m) { return m->parts.wcache.note; }
const char *mg_model_device(const mg_model *m) { return m->parts.device; }
const char *mg_model_dtype(const mg_model *m) { return m->parts.dtype; }
int mg_model_has_tokenizer(const mg_model *m) { return m->parts.tok != NULL; }

void mg_model_activity(const mg_model *m, int *running, int *waiting)
{
    mg_sched_load(m->sched, running, waiting);
}

mg_backend   *mg_model_backend(mg_model *m) { return m->parts.be; }
mg_t5        *mg_model_t5(mg_model *m) { return &m->parts.t5; }
mg_decoder   *mg_model_decoder(mg_model *m) { return &m->parts.dec; }
mg_encodec   *mg_model_encodec(mg_model *m) { return m->parts.ec; }
mg_tokenizer *mg_model_tokenizer(mg_model *m) { return m->parts.tok; }
