/* What an mg_model handle (musicgen.h) is inside the engine: a model's
 * parts, the scheduler that decodes every generation on them, and the
 * device-recovery state. */
#ifndef MG_RUNTIME_IMPL_H
#define MG_RUNTIME_IMPL_H
#include <pthread.h>
#include "runtime/model_impl.h"
#include "runtime/scheduler_impl.h"

struct mg_model {
    mg_model_parts parts;
    /* the backend to one user at a time (its pool and scratch are shared) */
    pthread_mutex_t run;
    mg_sched       *sched;
    /* The scheduler decodes the audio of generations that end in the same
     * step as one EnCodec batch where the backend says a batch costs about
     * one decode (caps.batched_encodec_cheap); elsewhere each alone, so the
     * first response is not held back. */
    int             encodec_batch_jobs;
    /* a lost device could not be re-created (recover_impl.h): jobs fail fast */
    int             broken;
    char            broken_msg[256];
};
#endif
