/* One HTTP generation job, front-end neutral: a validated request in, the
 * encoded audio out as it is made, and (optionally) the reference service's
 * JSON body. The job runs on the engine's scheduler without a thread of the
 * front end's: the engine's callbacks only keep the audio and call the
 * front end's wake function; the front end then pumps the job on its own
 * thread, where the audio is encoded. */
#ifndef MG_JOB_H
#define MG_JOB_H
#include <stddef.h>
#include <stdint.h>
#include "runtime/musicgen.h"
#include "io/level.h"
#include "service/request.h"

typedef struct mg_job mg_job;

/* The server's settings a job runs with (NULL: the defaults). */
typedef struct {
    mg_level level;           /* the output level stage (io/level.h); default limit */
    float    extend_stride;   /* long-form window stride, seconds (0: the engine's default) */
} mg_job_settings;

/* Called on the scheduler thread when the job has new audio or has ended:
 * it must only signal the front end's thread (which then calls
 * mg_job_pump). wake_ud must stay valid until the model is freed. */
typedef void (*mg_job_wake_fn)(void *wake_ud);
/* Where encoded bytes go, in order; non-zero: stop (the pump fails
 * MG_ERR_CANCELLED). */
typedef int (*mg_job_sink_fn)(void *ud, const uint8_t *bytes, size_t n);

/* Queues the request's generation on m with the model's generation defaults
 * for the fields the request leaves out (a seed drawn when it has none).
 * The job is reference-counted: the caller's reference (mg_job_release) and
 * the engine's (dropped when the generation is over), so the caller may let
 * go while the engine still runs it. The audio is encoded as a stream
 * (io/audio_stream.h) of the sample count the duration makes. Errors, the
 * job then not existing: a duration the model cannot make, a format the
 * level cannot go with (field "level"), those of mg_generate_submit. */
mg_code mg_job_submit(mg_model *m, const mg_request *req, const mg_job_settings *set,
                      mg_job_wake_fn wake, void *wake_ud, mg_job **out, mg_error *err);
/* Any thread: ends the generation before its next step. */
void    mg_job_cancel(mg_job *j);
/* The caller's reference: cancels the generation if it still runs. */
void    mg_job_release(mg_job *j);
/* Whether a pump has something to do (audio arrived, or the end). */
int     mg_job_has_news(mg_job *j);
/* The front end's thread: encodes the audio that arrived since the last
 * call into sink. *ended = 1 once the generation is over and its last bytes
 * went to sink; the return value is then the generation's outcome (before
 * that, MG_OK or an encoding error). Not to be called after *ended. */
mg_code mg_job_pump(mg_job *j, mg_job_sink_fn sink, void *ud, int *ended, mg_error *err);

typedef struct {
    uint64_t seed;             /* the seed used (drawn when the request had none) */
    int      sample_rate;
    int      channels;         /* of the audio: 1 mono, 2 stereo (the model's) */
    double   audio_seconds, compute_seconds;
    /* from the submission to the generation's first decoding step (the
     * wait for a place in the batch, then the text encoder and that step)
     * and to its first audio handed to the front end; both within
     * compute_seconds, which runs to the last encoded byte */
    double   queue_seconds, first_audio_seconds;
    /* the audio prompt's seconds the clip begins with, and those cut from
     * its front to fit a window (mg_job_prompt_fit); 0 without one */
    double   prompt_seconds, prompt_trimmed_seconds;
} mg_job_outcome;
/* After the pump said *ended with MG_OK. */
void    mg_job_summary(const mg_job *j, mg_job_outcome *out);
/* The reference service's JSON for a finished job's encoded audio:
 * {"success":true,"audioUrl":"data:...","audio_base64":...,"sample_rate":...,
 * "channels":...,...}, with
 * "prompt_seconds" when the request had an audio_prompt and
 * "prompt_trimmed_seconds" when part of it was cut; malloc'd. */
mg_code mg_job_json(const mg_request *req, const mg_job_outcome *o, const uint8_t *audio,
                    size_t len, const char *model_name, char **out, size_t *out_len,
                    mg_error *err);

typedef struct {
    uint8_t        *audio;        /* encoded file (wav/flac/ogg/mp3) */
    size_t          audio_len;
    mg_audio_format format;
    char           *json;         /* {"success":true,"audioUrl":"data:...",...} when asked */
    size_t          json_len;
    double          audio_seconds, compute_seconds;
    double          queue_seconds, first_audio_seconds; /* as mg_job_outcome's */
    uint64_t        seed;         /* the seed used (drawn when the request had none) */
    double          prompt_seconds, prompt_trimmed_seconds; /* as mg_job_outcome's */
} mg_job_result;

/* The whole job on the calling thread (submit, pump until the end):
 * for tests and tools. model_name appears in the JSON. */
mg_code mg_job_run(mg_model *m, const mg_request *req, const mg_job_settings *set,
                   int want_json, const char *model_name, mg_job_result *out, mg_error *err);
void    mg_job_result_free(mg_job_result *res);
/* A strong ETag ("mg-" + 16 hex digits, quoted) for a seeded request: a hash
 * of the model identity, every effective generation parameter and the
 * output level, so the same URL on the same model and settings is the same
 * file. Returns MG_ERR_INVALID when
 * the request has no seed (its audio is not reproducible). */
mg_code mg_job_etag(const mg_model *m, const mg_request *req, const mg_job_settings *set,
                    const char *model_id, char out[24], mg_error *err);
/* The length of the file mg_job_run's raw response will carry, known before
 * generating when the format's size follows from the sample count (WAV, at
 * every level; see mg_audio_stream_size): the frames the engine makes for
 * the request's duration (mg_gen_steps, the kept audio prompt included)
 * times the codec's hop. *size is 0 for the other formats. Errors are those mg_job_run would give for the duration. */
mg_code mg_job_audio_size(const mg_model *m, const mg_request *req, const mg_job_settings *set,
                          size_t *size, mg_error *err);

/* The part of the request's audio_prompt the clip begins with (engine's
 * mg_gen_prompt_audio_fit at the job's extend_stride): what mg_job_submit
 * gives the engine and mg_job_audio_size counts, for a front end's header
 * before the audio. All zero without an audio_prompt. Errors name
 * "audio_prompt" (shorter than a frame) or "extend_stride". */
mg_code mg_job_prompt_fit(const mg_model *m, const mg_request *req, const mg_job_settings *set,
                          mg_prompt_audio_fit *fit, mg_error *err);

/* One of a worker's models, for the status endpoint. */
typedef struct {
    const char *name;        /* what requests call it ("model") */
    const char *folder;      /* its folder */
    const char *device;      /* where it runs ("cpu", "cuda:0"); not loaded: the device asked for */
    const char *weights;     /* its weights' format ("f32", "bf16", "q8"); NULL: not loaded */
    unsigned    loaded;
    unsigned    running, queued;
} mg_job_model_status;

/* A worker's running totals, for the status endpoint. */
typedef struct {
    const char *model;       /* model folder */
    const char *device;      /* "cpu" */
    unsigned    loaded;      /* the model is loaded */
    unsigned    running, queued;
    uint64_t    completed, failed, rejected, timed_out, cancelled;
    double      audio_seconds, compute_seconds;
    const mg_job_model_status *models;  /* every model the worker serves (n_models of them) */
    size_t      n_models;
} mg_job_stats;

/* {"model":..., "device":..., "queue_depth":..., "running":..., "totals":{...},
 *  "compute_seconds_per_audio_second":..., "models":[{"name":..., "folder":...,
 *  "loaded":..., "device":..., "weights":..., "running":..., "queue_depth":...}, ...]}
 * ("models" only when n_models > 0); malloc'd. */
char   *mg_job_status_json(const mg_job_stats *s, size_t *len);

/* {"success":false,"error":msg,"field":field} (field omitted when empty);
 * malloc'd, NUL-terminated. Invalid UTF-8 in msg is replaced, never dropped. */
char   *mg_job_error_json(const char *msg, const char *field, size_t *len);
#endif
