/* Continuous batching: one scheduler thread per model decodes every active
 * generation in one batched decoder step, each at its own position with its
 * own caches; generations join (T5 + cross-attention K/V) and leave (EnCodec)
 * between steps. A generation's tokens depend only on its own inputs and
 * seed: sampling draws from (seed, step, row) and every row's arithmetic is
 * the same whatever else is in the step. */
#ifndef MG_SCHEDULER_H
#define MG_SCHEDULER_H
#include <pthread.h>
#include "model/decoder.h"
#include "runtime/musicgen.h"

typedef struct mg_sched mg_sched;

/* One generation (one mg_generate_ids call, batch prompts) as the scheduler
 * sees it. The fields below "inputs" belong to generate.c's lifecycle. */
typedef struct mg_gen_job {
    /* inputs */
    const int32_t       *ids;
    const uint8_t       *mask;
    int                  batch, len;
    const mg_gen_params *p;
    const mg_gen_hooks  *hooks;
    mg_gen_result       *res;
    /* lifecycle */
    int           steps, frames, total, t, n_seq;
    int32_t      *seq, *step_ids, *tokens;
    float        *scores, *raw;
    mg_dec_state  st;
    int           have_state;
    mg_tensor    *logits;
    double        t_decode0;
    /* outcome */
    mg_code             rc;
    mg_error           *err;
    int                 done;
    struct mg_gen_job  *next;
} mg_gen_job;

/* The lifecycle (generate.c), called by the scheduler thread with the
 * model's backend to itself. */
mg_code mg_gen_job_start(mg_model *m, mg_gen_job *j);       /* T5, state, buffers */
/* 1 and *call filled when j's token selection may join the step's
 * select_tokens_many; 0: after_step selects itself (a step hook reads the
 * scores). */
int     mg_gen_job_select_call(mg_model *m, const mg_gen_job *j, mg_select_call *call);
/* sample (unless `selected`: j->tokens already hold the step's tokens),
 * advance, hooks */
mg_code mg_gen_job_after_step(mg_model *m, mg_gen_job *j, int selected);
mg_code mg_gen_job_finish(mg_model *m, mg_gen_job *j);      /* codes, EnCodec */
/* The two halves of finish: the codes (the decoding state freed; *needs_audio
 * = 1 when EnCodec is still to run), then EnCodec for n generations of one
 * frame count in one batch (a failure fails them all). */
mg_code mg_gen_job_codes(mg_model *m, mg_gen_job *j, int *needs_audio);
mg_code mg_gen_jobs_audio(mg_model *m, mg_gen_job *const *jobs, int n);
void    mg_gen_job_release(mg_model *m, mg_gen_job *j);     /* frees the decoding state */

mg_code mg_sched_create(mg_sched **out, mg_model *m, int max_batch, mg_error *err);
/* Stops the thread; generations still queued or running end with
 * MG_ERR_CANCELLED. */
void    mg_sched_destroy(mg_sched *s);
/* Queues j and waits until it is done; returns j->rc. */
mg_code mg_sched_run(mg_sched *s, mg_gen_job *j);
/* Generations decoding now and waiting to join. */
void    mg_sched_load(mg_sched *s, int *running, int *waiting);
#endif
