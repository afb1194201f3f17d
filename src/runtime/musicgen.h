/* libmusicgen: text-to-music with Meta's MusicGen (Hugging Face layout), in C.
 * The API front ends (CLI, nginx module, benchmarks, tools) generate with.
 * They include public headers only: a header named *_impl.h is internal to
 * its layer (tests may include it; tests/test_public_headers.sh checks the
 * front ends). model_parts.h reaches a loaded model's parts. */
#ifndef MUSICGEN_H
#define MUSICGEN_H
#include <stddef.h>
#include <stdint.h>
#include "backend/options.h"
#include "base/error.h"
#include "io/config.h"
#include "model/sampling.h"

/* A model may be shared by threads: concurrent generations are decoded
 * together, one batched step for all of them (continuous batching, up to
 * max_batch at once; more wait). A generation's output depends only on its
 * own prompt, parameters and seed, never on what runs beside it. */
typedef struct mg_model mg_model;

#define MG_MAX_BATCH 64   /* prompts per mg_generate call, and generations per step */
#define MG_DEFAULT_BATCH 8

typedef struct {
    int         n_threads;   /* CPU workers; <= 0: all cores */
    const char *device;      /* "cpu" (NULL = "cpu"), "cuda", "cuda:N", "auto" */
    const char *dtype;       /* matrix weight format: "f32", "bf16", "q8" (CPU only); NULL:
                              * f32 on the CPU, bf16 on CUDA */
    int         max_batch;   /* generations decoded together (<= 0: MG_DEFAULT_BATCH) */
    /* Folder where converted bf16/q8 CPU weights are cached between loads
     * (weights_cache.h), as <folder name>-<path hash>.<dtype>.musicgen-cache.safetensors;
     * NULL or "off": convert at every load. */
    const char *weights_cache;
    /* The backend's switches (backend/options.h: CPU kernel level, 8-bit
     * attention caches, the CUDA backend's paths), copied at load; NULL: the
     * defaults. The CLI, benchmarks and golden checker fill them from
     * MG_CPU_ISA and MG_CUDA_*; the library never reads the environment. */
    const mg_backend_options *backend;
} mg_model_options;

/* Loads DIR/config.json, generation_config.json, model.safetensors or the
 * shards model.safetensors.index.json names (mmap) and spiece.model
 * (optional: without it only token-id input works). */
mg_code mg_model_load(mg_model **out, const char *dir, const mg_model_options *opt,
                      mg_error *err);
void    mg_model_free(mg_model *m);
const mg_config *mg_model_config(const mg_model *m);
/* What the load did with the converted-weights cache (mapped, written, not
 * written and why), or "" when there was none to use: for the log. */
const char *mg_model_load_note(const mg_model *m);
/* The backend the model runs on ("cpu", "cuda:0", ...) and its weight format. */
const char *mg_model_device(const mg_model *m);
const char *mg_model_dtype(const mg_model *m);
/* Generations being decoded now, and waiting to join the batch. */
void        mg_model_activity(const mg_model *m, int *running, int *waiting);
int     mg_model_has_tokenizer(const mg_model *m);

typedef struct {
    /* Seconds of audio, a code prompt included (used when max_new_tokens ==
     * 0): up to MG_MAX_DURATION (duration.h); past the model's window the
     * clip is generated window by window (long-form, see extend_stride). */
    float       duration;
    /* Decoder steps after the prompt, in one window, as Hugging Face's
     * max_new_tokens: frames = prompt_frames + max_new_tokens + 1 - K. */
    int         max_new_tokens;
    mg_sampling sampling;
    uint64_t    seed;
    /* Continuation: codes the generation continues, in the undelayed layout
     * [batch, K, prompt_frames] (as EnCodec makes them from audio), each in
     * [0, codebook size); NULL: none. At most the model's window less one
     * frame. The result's codes and audio begin with them. */
    const int32_t *prompt_codes;
    int            prompt_frames;
    int            prompt_batch;   /* items in prompt_codes; 0: the generation's batch */
    /* Long-form generation past the model's window: seconds of new audio each
     * window after the first adds, in (0, window); each window is prompted
     * with the last window - stride seconds of the one before (0: the
     * default, MG_DEFAULT_EXTEND_STRIDE or half a shorter window). */
    float          extend_stride;
    /* Continuation from audio: samples at the model's sample rate,
     * [batch, channels, prompt_samples] (channels = the model's
     * audio_channels, left first; prompt_batch items when set), that the
     * generation encodes with EnCodec on the scheduler thread (the model's
     * backend held, never on the caller's) and then continues as it would
     * prompt_codes; NULL: none (never with prompt_codes). A prompt longer
     * than a window's prompt (window - extend_stride) keeps its end
     * (mg_gen_prompt_audio_fit); duration counts the kept part. */
    const float   *prompt_audio;
    int64_t        prompt_samples;
} mg_gen_params;

/* The part of n_samples of prompt audio a generation keeps. A prompt of at
 * most the frames a long-form window keeps of the one before (window -
 * stride, the stride being extend_stride as in mg_gen_params) is kept whole,
 * its frames counted as the encoder does (ceil(n_samples / hop): a part frame
 * at the end is padded); a longer one keeps its last window - stride whole
 * frames, as a window keeps the end of the one before. The engine and the
 * front ends that size a response before submitting decide it here. */
typedef struct {
    int     frames;          /* kept: the clip's first frames are their codes */
    int     trimmed_frames;  /* frames cut from the front (a part frame counted as one) */
    int64_t first_sample;    /* where the kept samples start: the samples cut */
    int64_t samples;         /* kept */
} mg_prompt_audio_fit;
/* Errors MG_ERR_INVALID naming "prompt_audio" (less than one frame) or
 * "extend_stride" (out of range). */
mg_code mg_gen_prompt_audio_fit(const mg_model *m, int64_t n_samples, float extend_stride,
                                mg_prompt_audio_fit *out, mg_error *err);

/* Defaults from generation_config.json (do_sample, top_k, guidance, ...). */
void mg_gen_params_default(const mg_model *m, mg_gen_params *p);
/* Frames (the prompt's included) and decoder steps (all windows') a
 * generation makes; error naming the field if the model cannot make it. */
mg_code mg_gen_steps(const mg_model *m, const mg_gen_params *p, int *steps, int *frames,
                     mg_error *err);

/* Called after every decode step; return non-zero to cancel. */
typedef int (*mg_progress_fn)(void *ud, int step, int total);
/* Observer of each step (golden checks): raw logits [raw_rows, V] (cond rows
 * then uncond rows under guidance), processed scores and chosen tokens
 * [rows, V] / [rows] before the delay pattern overwrites forced columns. */
typedef void (*mg_step_fn)(void *ud, int step, const float *raw, int raw_rows,
                           const float *scores, const int32_t *tokens, int rows, int V);

typedef struct {
    /* total = decoder columns of the last window (1 + its prompt + its steps) */
    int      batch, frames, total;
    int32_t *sequence;   /* [batch*K, total] the last window's delay layout, final pads in */
    int32_t *codes;      /* [batch, K, frames] */
    float   *audio;      /* [batch, channels, frames*hop], left first */
    size_t   n_samples;  /* per channel of a batch item */
    int      channels;   /* the model's audio_channels: 1 mono, 2 stereo */
    int      sample_rate;
    double   t5_ms, decode_ms, encodec_ms;
    int      steps;
    /* the code prompt the clip begins with (prompt_codes' frames, or the
     * frames kept of prompt_audio) and the frames of prompt_audio cut from
     * its front to fit (mg_gen_prompt_audio_fit) */
    int      prompt_frames, prompt_trimmed_frames;
} mg_gen_result;

typedef struct {
    mg_progress_fn progress;
    mg_step_fn     on_step;
    void          *ud;
    int            skip_audio; /* stop after the codes (no EnCodec) */
    /* Audio as it becomes final, in order: samples [offset, offset + n) of
     * every channel of every item, laid out [batch, channels, n]. Called on the scheduler thread, so it
     * must only copy and signal; non-zero cancels the generation. */
    int          (*on_audio)(void *ud, const float *audio, int batch, size_t offset, size_t n);
} mg_gen_hooks;

/* Prompts -> audio: mg_generate_submit_prompts, then waits for on_done. */
mg_code mg_generate(mg_model *m, const char *const *prompts, int batch, const mg_gen_params *p,
                    const mg_gen_hooks *hooks, mg_gen_result *res, mg_error *err);
/* Token ids (right-padded, mask 1/0) -> audio: mg_generate_submit, then
 * waits for on_done. */
mg_code mg_generate_ids(mg_model *m, const int32_t *ids, const uint8_t *mask, int batch,
                        int len, const mg_gen_params *p, const mg_gen_hooks *hooks,
                        mg_gen_result *res, mg_error *err);
void    mg_gen_result_free(mg_gen_result *res);

/* Asynchronous generation: submit queues the generation and returns at
 * once; no thread of the caller's waits or runs while it is decoded.
 *
 * on_done is called exactly once for every submit that returned MG_OK, on
 * the model's scheduler thread (never inside submit), when the generation
 * is over: rc MG_OK with *res filled, or the error (*err, valid during the
 * call) with *res empty. A submit that fails (bad arguments, out of memory,
 * the model shutting down) returns the error in *err and never calls
 * on_done. *res is valid until on_done returns: to keep its buffers, copy
 * the struct and zero *res (then free them with mg_gen_result_free);
 * whatever is left in *res is freed after on_done. on_done runs while the
 * scheduler holds the model, so it must only copy and signal (never wait
 * for another generation, never free the model).
 *
 * submit copies ids, mask, *p (prompt_codes included) and *hooks: the
 * caller's buffers may go when it returns. hooks->ud and ud must stay valid
 * until on_done ran; the hooks are called on the scheduler thread and
 * on_audio may be called many times (samples in order, as they become
 * final).
 *
 * *task (may be NULL) is a handle for mg_gen_task_cancel, valid until
 * on_done starts: the task is freed when on_done returns, so a caller that
 * may cancel from another thread must order its cancel before on_done (one
 * mutex around its cancel and its on_done's first step does it). */
typedef struct mg_gen_task mg_gen_task;
typedef void (*mg_gen_done_fn)(void *ud, mg_code rc, const mg_error *err, mg_gen_result *res);

mg_code mg_generate_submit(mg_model *m, const int32_t *ids, const uint8_t *mask, int batch,
                           int len, const mg_gen_params *p, const mg_gen_hooks *hooks,
                           mg_gen_done_fn on_done, void *ud, mg_gen_task **task, mg_error *err);
/* The same from text prompts (tokenized on the caller's thread). */
mg_code mg_generate_submit_prompts(mg_model *m, const char *const *prompts, int batch,
                                   const mg_gen_params *p, const mg_gen_hooks *hooks,
                                   mg_gen_done_fn on_done, void *ud, mg_gen_task **task,
                                   mg_error *err);
/* Asks the scheduler to end the generation: it takes effect before its next
 * decoder step (a waiting one leaves the queue), and on_done then gets
 * MG_ERR_CANCELLED, unless the generation ended first. Safe from any thread
 * until on_done starts; NULL is ignored. */
void    mg_gen_task_cancel(mg_gen_task *t);
#endif
