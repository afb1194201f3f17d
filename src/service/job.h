/* One HTTP generation job, front-end neutral: a validated request in, the
 * encoded audio and (optionally) the reference service's JSON body out. The
 * nginx glue runs mg_job_run on a worker thread. */
#ifndef MG_JOB_H
#define MG_JOB_H
#include <stddef.h>
#include <stdint.h>
#include "runtime/musicgen.h"
#include "service/request.h"

typedef struct {
    uint8_t        *audio;        /* encoded file (wav/flac/ogg/mp3) */
    size_t          audio_len;
    mg_audio_format format;
    char           *json;         /* {"success":true,"audioUrl":"data:...",...} when asked */
    size_t          json_len;
    double          audio_seconds, compute_seconds;
    uint64_t        seed;         /* the seed used (drawn when the request had none) */
} mg_job_result;

/* Runs the request on the model with the model's generation defaults for the
 * fields the request leaves out. *cancel (may be NULL) is polled between
 * decoder steps. model_name appears in the JSON. */
mg_code mg_job_run(mg_model *m, const mg_request *req, int want_json, const char *model_name,
                   const volatile int *cancel, mg_job_result *out, mg_error *err);
void    mg_job_result_free(mg_job_result *res);
/* A strong ETag ("mg-" + 16 hex digits, quoted) for a seeded request: a hash
 * of the model identity and every effective generation parameter, so the
 * same URL on the same model is the same file. Returns MG_ERR_INVALID when
 * the request has no seed (its audio is not reproducible). */
mg_code mg_job_etag(const mg_model *m, const mg_request *req, const char *model_id,
                    char out[24], mg_error *err);
/* The length of the file mg_job_run's raw response will carry, known before
 * generating when the format's size follows from the sample count (WAV; see
 * mg_audio_encoded_size): the frames the engine makes for the request's
 * duration (mg_gen_steps) times the codec's hop. *size is 0 for the other
 * formats. Errors are those mg_job_run would give for the duration. */
mg_code mg_job_audio_size(const mg_model *m, const mg_request *req, size_t *size, mg_error *err);

/* A worker's running totals, for the status endpoint. */
typedef struct {
    const char *model;       /* model folder */
    const char *device;      /* "cpu" */
    unsigned    loaded;      /* the model is loaded */
    unsigned    running, queued;
    uint64_t    completed, failed, rejected, timed_out;
    double      audio_seconds, compute_seconds;
} mg_job_stats;

/* {"model":..., "device":..., "queue_depth":..., "running":..., "totals":{...},
 *  "compute_seconds_per_audio_second":...}; malloc'd. */
char   *mg_job_status_json(const mg_job_stats *s, size_t *len);

/* {"success":false,"error":msg,"field":field} (field omitted when empty);
 * malloc'd, NUL-terminated. Invalid UTF-8 in msg is replaced, never dropped. */
char   *mg_job_error_json(const char *msg, const char *field, size_t *len);
#endif
