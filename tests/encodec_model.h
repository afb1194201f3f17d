/* An EnCodec model alone (backend, loader, config, decoder) for the EnCodec
 * tests: opened from a model folder, closed whatever part of it opened. */
#ifndef MG_TEST_ENCODEC_MODEL_H
#define MG_TEST_ENCODEC_MODEL_H
#include <stdio.h>
#include <string.h>

#include "backend/backend.h"
#include "cpu/cpu_backend.h"
#include "io/config.h"
#include "io/loader.h"
#include "model/encodec.h"

typedef struct {
    mg_backend *be;
    mg_loader   ld;
    mg_config   cfg;
    mg_encodec *ec;
    int         ld_open;
} model;

static inline void model_close(model *m)
{
    mg_encodec_free(m->ec);
    if (m->ld_open)
        mg_loader_close(&m->ld);
    if (m->be)
        m->be->ops->destroy(m->be);
    memset(m, 0, sizeof *m);
}

/* Opens dir's config with weights from `weights` (a path, or a file name in
 * dir) on a CPU backend of `threads` threads for weight format wdt; returns
 * the load code (the caller closes the model either way). */
static inline mg_code model_open_dt(model *m, const char *dir, const char *weights, int threads,
                                    mg_dtype wdt, mg_error *err)
{
    memset(m, 0, sizeof *m);
    char path[4200];
    mg_code rc = mg_backend_cpu_create(&m->be, threads, wdt, NULL, err);
    if (rc == MG_OK)
        rc = mg_config_load(&m->cfg, dir, err);
    if (rc == MG_OK) {
        snprintf(path, sizeof path, "%.2000s/%.2000s", dir, weights);
        rc = mg_loader_open(&m->ld, weights[0] == '/' ? weights : path, m->be, err);
        m->ld_open = rc == MG_OK;
    }
    if (rc == MG_OK)
        rc = mg_encodec_load(&m->ec, &m->ld, &m->cfg, err);
    return rc;
}
#endif
