/* Device-loss recovery: a backend that failed in a way only a new backend
 * recovers from (a CUDA context killed by a kernel fault) is re-created on
 * the same device and format, and every weight is loaded again. */
#ifndef MG_RECOVER_IMPL_H
#define MG_RECOVER_IMPL_H
#include "runtime/runtime_impl.h"

/* 1 when m's backend reports itself lost. */
int     mg_runtime_device_lost(const mg_model *m);
/* Re-creates the backend and reloads the weights; the caller (the scheduler,
 * holding m->run) has released every job's state first. On failure m is
 * marked broken (m->broken_msg says why) and new generations fail fast. */
mg_code mg_runtime_recover(mg_model *m, mg_error *err);
#endif
