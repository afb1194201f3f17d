/* One generation (one mg_generate_ids call, batch prompts) from admission to
 * its codes and audio: the steps the scheduler runs it through, with the
 * model's backend to itself (m->run held). */
#ifndef MG_GEN_JOB_IMPL_H
#define MG_GEN_JOB_IMPL_H
#include "runtime/runtime_impl.h"

typedef struct mg_gen_job {
    /* inputs */
    const int32_t       *ids;
    const uint8_t       *mask;
    int                  batch, len;
    const mg_gen_params *p;
    const mg_gen_hooks  *hooks;
    mg_gen_result       *res;
    /* decoding state, from mg_gen_job_start to mg_gen_job_release */
    int           steps, frames, total, t, n_seq;
    int32_t      *seq, *step_ids, *tokens;
    float        *scores, *raw;
    mg_dec_state  st;
    int           have_state;
    mg_tensor    *logits;
    double        t_decode0;
    /* outcome, and the scheduler's queue link (set under its lock) */
    mg_code             rc;
    mg_error           *err;
    struct mg_gen_job  *next;
    /* Set by any thread (mg_gen_task_cancel); the scheduler reads it before
     * each step and ends the job MG_ERR_CANCELLED. */
    _Atomic int         cancel;
    /* Called once on the scheduler thread when the job is over (j->rc set,
     * j no longer counted as running): the owner's completion. */
    void              (*finished)(struct mg_gen_job *j);
} mg_gen_job;

/* Checks the parameters, runs T5 and sets up the decoding state and buffers. */
mg_code mg_gen_job_start(mg_model *m, mg_gen_job *j);
/* 1 and *call filled when j's token selection may join the step's
 * select_tokens_many; 0: after_step selects itself (a step hook reads the
 * scores). */
int     mg_gen_job_select_call(mg_model *m, const mg_gen_job *j, mg_select_call *call);
/* After a decoder step: samples (unless `selected`: j->tokens already hold
 * the step's tokens), advances the sequence and calls the hooks. */
mg_code mg_gen_job_after_step(mg_model *m, mg_gen_job *j, int selected);
/* The codes (the decoding state freed; *needs_audio = 1 when EnCodec is
 * still to run), then EnCodec for n generations of one frame count in one
 * batch (a failure fails them all). */
mg_code mg_gen_job_codes(mg_model *m, mg_gen_job *j, int *needs_audio);
mg_code mg_gen_jobs_audio(mg_model *m, mg_gen_job *const *jobs, int n);
/* Calls the on_audio hook with the job's finished audio (after
 * mg_gen_jobs_audio). */
mg_code mg_gen_job_hand_audio(mg_gen_job *j);
/* Both halves for one generation alone, then the audio handed on. */
mg_code mg_gen_job_finish(mg_model *m, mg_gen_job *j);
/* Frees the decoding state (whatever start managed to take). */
void    mg_gen_job_release(mg_model *m, mg_gen_job *j);
#endif
