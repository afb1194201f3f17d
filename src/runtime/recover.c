#include "runtime/recover_impl.h"

#include <stdio.h>

int mg_runtime_device_lost(const mg_model *m)
{
    mg_backend *be = m->parts.be;
    return be && be->ops->lost && be->ops->lost(be);
}

mg_code mg_runtime_recover(mg_model *m, mg_error *err)
{
    mg_model_parts *p = &m->parts;
    char device[sizeof p->device], dtype[sizeof p->dtype];
    snprintf(device, sizeof device, "%s", p->device);
    snprintf(dtype, sizeof dtype, "%s", p->dtype);
    mg_model_free_weights(p);
    mg_loader_drop_copies(&p->ld);
    if (p->be)
        p->be->ops->destroy(p->be);
    p->be = p->ld.be = NULL;
    /* the same device and format as before, not "auto" again */
    mg_backend_options backend = p->backend_opts;
    mg_model_options opt = {.n_threads = p->n_threads, .device = device, .dtype = dtype,
                            .backend = &backend};
    mg_code rc = mg_model_pick_backend(p, &opt, err);
    if (rc == MG_OK) {
        p->ld.be = p->be;
        if (!p->wcache.valid || p->wcache.stale)
            p->ld.wcache = NULL; /* nothing is written again: do not record */
        rc = mg_model_load_weights(p, err);
    }
    if (rc != MG_OK) {
        mg_model_free_weights(p);
        m->broken = 1;
        snprintf(m->broken_msg, sizeof m->broken_msg, "%.200s", err->msg);
    }
    return rc;
}
