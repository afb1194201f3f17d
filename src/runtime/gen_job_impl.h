/* One generation (one mg_generate_ids call, batch prompts) from admission to
 * its codes and audio: the steps the scheduler runs it through, with the
 * model's backend to itself (m->run held). */
#ifndef MG_GEN_JOB_IMPL_H
#define MG_GEN_JOB_IMPL_H
#include "runtime/gen_plan_impl.h"
#include "runtime/runtime_impl.h"
#include "model/encodec_stream.h"

typedef struct mg_gen_job {
    /* inputs */
    const int32_t       *ids;
    const uint8_t       *mask;
    int                  batch, len;
    const mg_gen_params *p;
    const mg_gen_hooks  *hooks;
    mg_gen_result       *res;
    /* decoding state, from mg_gen_job_start to mg_gen_job_release: t counts
     * the token selections of all windows (the sampler's step, so that no
     * window repeats another's draws), col the current window's last
     * filled column, total its columns (seq's row stride) */
    int           steps, frames, total, t, col, n_seq;
    int32_t      *seq, *step_ids, *tokens;
    mg_gen_plan   plan;
    mg_gen_window win;      /* the window being decoded, number win_index */
    int           win_index;
    int32_t      *codes;    /* [batch, K, frames]: the prompt, then each window's new frames */
    int32_t      *prefill;  /* host [n_seq, K, columns] ids of a window's prefill */
    float        *scores, *raw;
    mg_dec_state  st;
    int           have_state;
    mg_tensor    *logits;
    double        t_decode0;
    /* EnCodec as the frames complete (a backend with caps.lstm_state):
     * the stream, the frames it was given ([batch, K, frames], the first
     * audio_fed filled) and whether on_audio already saw the audio */
    mg_encodec_stream *audio;
    int32_t           *audio_codes;
    int                audio_fed, audio_streamed;
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
/* While the job decodes (after mg_gen_job_start, before mg_gen_job_codes):
 * the clip's frames [0, n) whose codes are final (a prompt's, every frame of
 * finished windows, and the current window's frames whose every codebook is
 * chosen; D = the delay pattern's span, mg_config.ec_codebooks), i.e. what
 * EnCodec may decode already; and frames [from, from + n)
 * of them (from + n at most that count) into codes [batch, K, n] (C: the
 * model's audio channels). */
int     mg_gen_job_final_frames(const mg_gen_job *j, int D);
void    mg_gen_job_copy_frames(const mg_gen_job *j, int K, int C, int from, int n, int32_t *codes);
/* The codes (the decoding state freed; *needs_audio = 1 when EnCodec is
 * still to run), then EnCodec for n generations of one frame count in one
 * batch (a failure fails them all). */
mg_code mg_gen_job_codes(mg_model *m, mg_gen_job *j, int *needs_audio);
mg_code mg_gen_jobs_audio(mg_model *m, mg_gen_job *const *jobs, int n);
/* After a step: hands the frames completed since the last chunk to the
 * job's EnCodec stream once they make a chunk (a first one of
 * MG_AUDIO_FIRST_FRAMES past the look-ahead, then a quarter of the audio out
 * so far, at least MG_AUDIO_FIRST_FRAMES and up to MG_AUDIO_MAX_FRAMES);
 * their audio goes to res->audio and the
 * on_audio hook. Nothing without caps.lstm_state or with skip_audio. */
mg_code mg_gen_job_feed_audio(mg_model *m, mg_gen_job *j);
enum { MG_AUDIO_FIRST_FRAMES = 8, MG_AUDIO_MAX_FRAMES = 50, MG_AUDIO_GROWTH_DIVISOR = 4 };
/* Calls the on_audio hook with the job's finished audio (after
 * mg_gen_jobs_audio; a streamed job's audio was handed on as it came). */
mg_code mg_gen_job_hand_audio(mg_gen_job *j);
/* Both halves for one generation alone, then the audio handed on. */
mg_code mg_gen_job_finish(mg_model *m, mg_gen_job *j);
/* Frees the decoding state (whatever start managed to take). */
void    mg_gen_job_release(mg_model *m, mg_gen_job *j);
#endif
