/* Continuous batching: one scheduler thread per model decodes every active
 * generation in one batched decoder step, each at its own position with its
 * own caches; generations join (T5 + cross-attention K/V) and leave (EnCodec)
 * between steps. A generation's tokens depend only on its own inputs and
 * seed: sampling draws from (seed, step, row) and every row's arithmetic is
 * the same whatever else is in the step. */
#ifndef MG_SCHEDULER_IMPL_H
#define MG_SCHEDULER_IMPL_H
#include "runtime/musicgen.h"

typedef struct mg_sched mg_sched;
struct mg_gen_job;

/* Starts the thread that runs m's generations, max_batch at a time. */
mg_code mg_sched_create(mg_sched **out, mg_model *m, int max_batch, mg_error *err);
/* Stops the thread; generations still queued or running end with
 * MG_ERR_CANCELLED (their `finished` called on the scheduler thread before
 * this returns). */
void    mg_sched_destroy(mg_sched *s);
/* Queues j without waiting: MG_OK, and j->finished(j) is called once on the
 * scheduler thread when it is over (j->rc its outcome); or the error (the
 * scheduler is stopping) and j->finished is never called. */
mg_code mg_sched_submit(mg_sched *s, struct mg_gen_job *j);
/* Generations decoding now and waiting to join. */
void    mg_sched_load(mg_sched *s, int *running, int *waiting);
#endif
