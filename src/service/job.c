#include "service/job.h"

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "io/audio.h"
#include "io/audio_stream.h"
#include "io/channels.h"
#include "service/audio_prompt.h"
#include "service/base64.h"
#include "service/prompt.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* A seed for requests without one: not reproducible on purpose. */
static uint64_t fresh_seed(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t x = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ (uint64_t)(uintptr_t)&ts;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return x & ((1ull << 53) - 1);
}

void mg_job_result_free(mg_job_result *res)
{
    free(res->audio);
    free(res->json);
    memset(res, 0, sizeof *res);
}

/* s as a JSON string, or replacement when s is not valid UTF-8 (jansson
 * refuses it); NULL only when out of memory. */
static json_t *text_or(const char *s, const char *replacement)
{
    size_t n = strlen(s);
    for (size_t i = 0; i < n;) {
        size_t l = mg_utf8_seq_len((const unsigned char *)s + i, n - i);
        if (!l)
            return json_string(replacement);
        i += l;
    }
    return json_stringn(s, n);
}

typedef struct {
    char  *text;
    size_t len, cap;
    int    failed;
} dump_buf;

static int dump_append(const char *bytes, size_t n, void *data)
{
    dump_buf *b = data;
    if (b->failed)
        return -1;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->text, cap);
        if (!p) {
            b->failed = 1;
            return -1;
        }
        b->text = p;
        b->cap = cap;
    }
    memcpy(b->text + b->len, bytes, n);
    b->len += n;
    b->text[b->len] = '\0';
    return 0;
}

/* json_dumps, except that a failed allocation always fails the whole text:
 * jansson's own dumper ignores a failure to append an object key and goes
 * on, leaving a corrupt body (tests/test_fault_alloc.c checks ours never does). */
static char *dump_json(const json_t *o, size_t *len)
{
    dump_buf b = {0};
    if (json_dump_callback(o, dump_append, &b, JSON_COMPACT) != 0 || b.failed || !b.text) {
        free(b.text);
        return NULL;
    }
    if (len)
        *len = b.len;
    return b.text;
}

/* Adds v (stolen) to o; 0 when v is NULL or o could not grow (out of memory):
 * a response is complete or not sent at all. */
static int set(json_t *o, const char *key, json_t *v)
{
    return json_object_set_new(o, key, v) == 0;
}

static mg_code build_json(const mg_job_outcome *res, const mg_request *req, const uint8_t *audio,
                          size_t audio_len, const char *model_name, char **out, size_t *out_len,
                          mg_error *err)
{
    char *url = NULL;
    size_t url_len = 0;
    mg_code rc = mg_audio_data_url(audio, audio_len, req->format, &url, &url_len, err);
    if (rc != MG_OK)
        return rc;
    const char *b64 = strchr(url, ',') + 1;
    json_t *o = json_object();
    int ok = o != NULL;
    ok = ok && set(o, "success", json_true());
    ok = ok && set(o, "audioUrl", json_stringn(url, url_len));
    ok = ok && set(o, "audio_base64", json_string(b64));
    ok = ok && set(o, "prompt", json_string(req->prompt));
    ok = ok && set(o, "prompt_from_analysis", json_boolean(req->from_analysis));
    ok = ok && set(o, "duration", json_real(res->audio_seconds));
    ok = ok && set(o, "sample_rate", json_integer(res->sample_rate));
    ok = ok && set(o, "channels", json_integer(res->channels));
    ok = ok && set(o, "size_bytes", json_integer((json_int_t)audio_len));
    ok = ok && set(o, "generation_time_seconds", json_real(res->compute_seconds));
    ok = ok && set(o, "format", json_string(mg_audio_format_name(req->format)));
    ok = ok && set(o, "seed", json_integer((json_int_t)res->seed));
    ok = ok && set(o, "model", json_string(model_name ? model_name : ""));
    if (ok && req->audio_prompt.samples)
        ok = set(o, "prompt_seconds", json_real(res->prompt_seconds));
    if (ok && res->prompt_trimmed_seconds > 0)
        ok = set(o, "prompt_trimmed_seconds", json_real(res->prompt_trimmed_seconds));
    size_t text_len = 0;
    char *text = ok ? dump_json(o, &text_len) : NULL;
    json_decref(o);
    free(url);
    if (!text)
        return mg_fail(err, MG_ERR_NOMEM, "out of memory building the response");
    *out = text;
    *out_len = text_len;
    return MG_OK;
}

/* The parameters a request runs with: the model's defaults, then the request. */
static void job_params(const mg_model *m, const mg_request *req, const mg_job_settings *set,
                       mg_gen_params *p)
{
    mg_gen_params_default(m, p);
    p->duration = req->duration;
    /* The window stride of long-form generation: the request's own, else the
     * server's setting (0: the engine's default). */
    p->extend_stride = req->has_extend_stride ? req->extend_stride
                       : set ? set->extend_stride : 0;
    if (req->has_temperature) p->sampling.temperature = req->temperature;
    if (req->has_top_k) p->sampling.top_k = req->top_k;
    if (req->has_top_p) p->sampling.top_p = req->top_p;
    if (req->has_guidance) p->sampling.guidance_scale = req->guidance_scale;
    p->seed = req->seed;
    /* Its length decides the frames (mg_gen_steps); the engine gets a mono
     * copy (mono_prompt) when the file has two channels. */
    if (req->audio_prompt.samples) {
        p->prompt_audio = req->audio_prompt.samples;
        p->prompt_samples = (int64_t)req->audio_prompt.frames;
    }
}

/* An engine error naming its prompt_audio: the request's field is audio_prompt. */
static mg_code request_field(mg_code rc, mg_error *err)
{
    static const char engine[] = "prompt_audio";
    if (rc == MG_OK || !err || strcmp(err->field, engine) != 0)
        return rc;
    const char *rest = strncmp(err->msg, engine, strlen(engine)) == 0
                       ? err->msg + strlen(engine) : err->msg;
    char msg[sizeof err->msg];
    snprintf(msg, sizeof msg, "%.*s", (int)(sizeof msg - 1), rest);
    return mg_fail_field(err, rc, MG_AUDIO_PROMPT_FIELD, "%s%s", MG_AUDIO_PROMPT_FIELD, msg);
}

mg_code mg_job_prompt_fit(const mg_model *m, const mg_request *req, const mg_job_settings *set,
                          mg_prompt_audio_fit *fit, mg_error *err)
{
    memset(fit, 0, sizeof *fit);
    if (!req->audio_prompt.samples)
        return MG_OK;
    mg_gen_params p;
    job_params(m, req, set, &p);
    return request_field(mg_gen_prompt_audio_fit(m, p.prompt_samples, p.extend_stride, fit, err),
                         err);
}

/* The request's audio prompt as the engine takes it, planar in the model's
 * channels: the request's own samples (mono to a mono model), or *owned, a
 * copy (freed by the caller): a stereo prompt to a mono model downmixed, a
 * mono one to a stereo model on both channels (io/channels.h). */
static mg_code model_prompt(const mg_request *req, int channels, float **owned,
                            const float **planar, mg_error *err)
{
    const mg_decoded_audio *a = &req->audio_prompt;
    *owned = NULL;
    *planar = a->samples;
    if (!a->samples || (a->channels == 1 && channels == 1))
        return MG_OK;
    *owned = malloc(a->frames * (size_t)channels * sizeof **owned);
    if (!*owned)
        return mg_fail(err, MG_ERR_NOMEM, "out of memory for the audio prompt");
    mg_channels_to_planar(a->samples, a->channels, a->frames, channels, *owned);
    *planar = *owned;
    return MG_OK;
}

static uint64_t fnv1a(uint64_t h, const void *data, size_t n)
{
    const uint8_t *b = data;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

mg_code mg_job_etag(const mg_model *m, const mg_request *req, const mg_job_settings *set,
                    const char *model_id, char out[24], mg_error *err)
{
    if (!req->has_seed)
        return mg_fail_field(err, MG_ERR_INVALID, "seed", "seed: needed for a cacheable response");
    mg_gen_params p;
    job_params(m, req, set, &p);
    uint64_t h = 0xcbf29ce484222325ull;
    const mg_config *c = mg_model_config(m);
    h = fnv1a(h, model_id, strlen(model_id) + 1);
    h = fnv1a(h, c, sizeof *c); /* shapes and generation defaults */
    h = fnv1a(h, req->prompt, strlen(req->prompt) + 1);
    /* version 2: the output level stage */
    int32_t ints[5] = {p.sampling.do_sample, p.sampling.top_k, (int32_t)req->format, 2,
                       (int32_t)(set ? set->level : MG_LEVEL_LIMIT)};
    float floats[5] = {p.duration, p.sampling.temperature, p.sampling.top_p, p.sampling.guidance_scale,
                       p.extend_stride};
    h = fnv1a(h, ints, sizeof ints);
    h = fnv1a(h, floats, sizeof floats);
    h = fnv1a(h, &p.seed, sizeof p.seed);
    /* the audio a continuation starts from (0 without one) */
    h = fnv1a(h, &req->audio_prompt_hash, sizeof req->audio_prompt_hash);
    snprintf(out, 24, "\"mg-%016llx\"", (unsigned long long)h);
    return MG_OK;
}

/* The encoder's parameters for a request: the sample count its duration
 * makes (mg_gen_steps: frames times the codec's hop). */
static mg_code stream_params(const mg_model *m, const mg_request *req, const mg_job_settings *set,
                             mg_audio_stream_params *sp, mg_error *err)
{
    mg_gen_params p;
    job_params(m, req, set, &p);
    int steps = 0, frames = 0;
    mg_code rc = request_field(mg_gen_steps(m, &p, &steps, &frames, err), err);
    if (rc != MG_OK)
        return rc;
    const mg_config *c = mg_model_config(m);
    *sp = (mg_audio_stream_params){.format = req->format, .sample_rate = c->sample_rate,
                                   .channels = c->audio_channels, .frames = (size_t)frames * (size_t)c->hop,
                                   .level = set ? set->level : MG_LEVEL_LIMIT};
    return MG_OK;
}

mg_code mg_job_audio_size(const mg_model *m, const mg_request *req, const mg_job_settings *set,
                          size_t *size, mg_error *err)
{
    *size = 0;
    mg_audio_stream_params sp;
    mg_code rc = stream_params(m, req, set, &sp, err);
    if (rc == MG_OK)
        *size = mg_audio_stream_size(&sp);
    return rc;
}

/* An HTTP generation shared by the engine (its hooks and completion, on the
 * scheduler thread) and the front end (one thread: nginx's event loop).
 * Reference-counted: the front end's reference and the engine's (dropped
 * when on_done ran), so whichever side is last frees it; the front end may
 * go (a client that went away) while the engine still runs it. */
struct mg_job {
    pthread_mutex_t lock;
    /* under lock: audio from on_audio not yet taken by the front end, and
     * the generation's outcome */
    float          *pending;      /* n_pending interleaved frames (cap_pending floats) */
    size_t          n_pending, cap_pending;
    int             news;         /* pending audio or the end, not yet pumped */
    int             ended;
    int             out_of_memory; /* on_audio could not keep a chunk */
    mg_code         rc;
    mg_error        err;
    mg_gen_task    *task;         /* until on_done: what cancel reaches */
    /* set by any thread: the hooks refuse from now on */
    _Atomic int     cancel;
    _Atomic int     refs;
    /* constant after submit */
    mg_job_wake_fn  wake;
    void           *wake_ud;
    mg_gen_hooks    hooks;
    uint64_t        seed;
    int             sample_rate, channels;
    double          prompt_seconds, prompt_trimmed_seconds;
    double          t0;
    /* the scheduler thread's, read after the end (job_done's lock orders
     * them): its first step, its first audio; 0 until then */
    double          t_first_step, t_first_audio;
    /* the front end's alone: the encoder, the bytes it made since the last
     * pump, the samples it took */
    mg_audio_stream *enc;
    uint8_t        *bytes;
    size_t          n_bytes, cap_bytes;
    int             bytes_failed;
    size_t          n_written;
    int             finished;     /* pump reported the end */
    double          compute_seconds;
};

static int job_cancelled(void *ud, int step, int total)
{
    mg_job *j = ud;
    (void)step, (void)total;
    if (j->t_first_step == 0)
        j->t_first_step = now_s();
    return atomic_load(&j->cancel) != 0;
}

static int grow(float **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 1;
    size_t c = *cap ? *cap : 16384;
    while (c < need)
        c *= 2;
    float *p = realloc(*buf, c * sizeof *p);
    if (!p)
        return 0;
    *buf = p;
    *cap = c;
    return 1;
}

/* Scheduler thread: keep the chunk (planar [channels, n]) for the front end,
 * as the encoder's interleaved frames, and wake it. */
static int job_audio(void *ud, const float *audio, int batch, size_t offset, size_t n)
{
    mg_job *j = ud;
    const size_t C = (size_t)j->channels;
    (void)batch, (void)offset; /* one item; the engine hands samples in order */
    if (atomic_load(&j->cancel))
        return 1;
    pthread_mutex_lock(&j->lock);
    int kept = grow(&j->pending, &j->cap_pending, (j->n_pending + n) * C);
    if (kept) {
        mg_channels_interleave(audio, j->channels, n, n, j->pending + j->n_pending * C);
        j->n_pending += n;
        j->news = 1;
        if (j->t_first_audio == 0)
            j->t_first_audio = now_s();
    } else {
        j->out_of_memory = 1;
    }
    pthread_mutex_unlock(&j->lock);
    if (kept)
        j->wake(j->wake_ud);
    return !kept;
}

static void job_free(mg_job *j)
{
    pthread_mutex_destroy(&j->lock);
    mg_audio_stream_free(j->enc);
    free(j->pending);
    free(j->bytes);
    free(j);
}

/* The encoder's sink: kept until the pump hands them on. */
static int keep_bytes(void *ud, const uint8_t *bytes, size_t n)
{
    mg_job *j = ud;
    if (j->n_bytes + n > j->cap_bytes) {
        size_t cap = j->cap_bytes ? j->cap_bytes : 65536;
        while (cap < j->n_bytes + n)
            cap *= 2;
        uint8_t *p = realloc(j->bytes, cap);
        if (!p) {
            j->bytes_failed = 1;
            return 1;
        }
        j->bytes = p;
        j->cap_bytes = cap;
    }
    memcpy(j->bytes + j->n_bytes, bytes, n);
    j->n_bytes += n;
    return 0;
}

void mg_job_release(mg_job *j)
{
    if (!j)
        return;
    mg_job_cancel(j); /* nobody will read what it makes */
    if (atomic_fetch_sub(&j->refs, 1) == 1)
        job_free(j);
}

/* Scheduler thread: the generation is over. The audio came through
 * job_audio; the result's own copy is not needed. */
static void job_done(void *ud, mg_code rc, const mg_error *err, mg_gen_result *res)
{
    mg_job *j = ud;
    (void)res;
    pthread_mutex_lock(&j->lock);
    j->task = NULL;
    j->ended = 1;
    j->news = 1;
    j->rc = rc;
    if (j->out_of_memory) /* it cancelled the generation: the cause is the memory */
        j->rc = mg_fail(&j->err, MG_ERR_NOMEM, "out of memory keeping the audio");
    else if (rc != MG_OK) {
        j->err = *err;
        request_field(rc, &j->err);
    }
    pthread_mutex_unlock(&j->lock);
    j->wake(j->wake_ud);
    if (atomic_fetch_sub(&j->refs, 1) == 1)
        job_free(j);
}

/* Out of memory inside the encoder's sink reads as a cancel: say what it
 * was. */
static mg_code encoder_error(mg_job *j, mg_code rc, mg_error *err)
{
    if (j->bytes_failed)
        return mg_fail(err, MG_ERR_NOMEM, "out of memory keeping the encoded audio");
    return rc;
}

mg_code mg_job_submit(mg_model *m, const mg_request *req, const mg_job_settings *set,
                      mg_job_wake_fn wake, void *wake_ud, mg_job **out, mg_error *err)
{
    *out = NULL;
    mg_audio_stream_params sp;
    mg_code rc = stream_params(m, req, set, &sp, err);
    if (rc != MG_OK)
        return rc;
    mg_job *j = calloc(1, sizeof *j);
    if (!j)
        return mg_fail(err, MG_ERR_NOMEM, "out of memory");
    if (pthread_mutex_init(&j->lock, NULL) != 0) {
        free(j);
        return mg_fail(err, MG_ERR_NOMEM, "out of memory");
    }
    /* the encoder first: a format the level cannot go with is refused
     * before anything is generated */
    rc = encoder_error(j, mg_audio_stream_open(&j->enc, &sp, keep_bytes, j, err), err);
    if (rc != MG_OK) {
        job_free(j);
        return rc;
    }
    j->t0 = now_s();
    j->wake = wake;
    j->wake_ud = wake_ud;
    j->sample_rate = mg_model_config(m)->sample_rate;
    j->channels = mg_model_config(m)->audio_channels;
    atomic_init(&j->cancel, 0);
    atomic_init(&j->refs, 2); /* the caller's and the engine's */
    mg_gen_params p;
    job_params(m, req, set, &p);
    if (!req->has_seed)
        p.seed = fresh_seed();
    j->seed = p.seed;
    j->hooks = (mg_gen_hooks){.progress = job_cancelled, .on_audio = job_audio, .ud = j};
    mg_prompt_audio_fit fit;
    float *planar = NULL;
    rc = mg_job_prompt_fit(m, req, set, &fit, err);
    if (rc == MG_OK)
        rc = model_prompt(req, j->channels, &planar, &p.prompt_audio, err);
    /* the clip's first seconds (the kept frames), and the audio cut before them */
    j->prompt_seconds = (double)fit.frames * mg_model_config(m)->hop / j->sample_rate;
    j->prompt_trimmed_seconds = (double)fit.first_sample / j->sample_rate;
    const char *prompts[1] = {req->prompt};
    pthread_mutex_lock(&j->lock); /* on_done may come before submit returns */
    if (rc == MG_OK)
        rc = mg_generate_submit_prompts(m, prompts, 1, &p, &j->hooks, job_done, j, &j->task, err);
    pthread_mutex_unlock(&j->lock);
    free(planar); /* submit keeps its own copy */
    if (rc != MG_OK) {
        job_free(j);
        return rc;
    }
    *out = j;
    return MG_OK;
}

void mg_job_cancel(mg_job *j)
{
    atomic_store(&j->cancel, 1);
    pthread_mutex_lock(&j->lock);
    mg_gen_task_cancel(j->task); /* NULL once on_done ran */
    pthread_mutex_unlock(&j->lock);
}

int mg_job_has_news(mg_job *j)
{
    pthread_mutex_lock(&j->lock);
    int news = j->news;
    pthread_mutex_unlock(&j->lock);
    return news;
}

/* The encoder's bytes so far to the caller's sink. */
static mg_code hand_bytes(mg_job *j, mg_job_sink_fn sink, void *ud, mg_error *err)
{
    size_t n = j->n_bytes;
    j->n_bytes = 0;
    if (n && sink(ud, j->bytes, n))
        return mg_fail(err, MG_ERR_CANCELLED, "the audio's consumer stopped");
    return MG_OK;
}

mg_code mg_job_pump(mg_job *j, mg_job_sink_fn sink, void *ud, int *ended, mg_error *err)
{
    *ended = 0;
    if (j->finished)
        return mg_fail(err, MG_ERR_INVALID, "mg_job_pump: the job has ended");
    /* the samples are taken out under the lock and encoded outside it, so
     * the scheduler thread never waits for the encoder */
    pthread_mutex_lock(&j->lock);
    int over = j->ended;
    mg_code gen_rc = j->rc;
    if (over && gen_rc != MG_OK && err)
        *err = j->err;
    float *chunk = j->pending;
    size_t n = j->n_pending;
    j->pending = NULL;
    j->n_pending = j->cap_pending = 0;
    j->news = 0;
    pthread_mutex_unlock(&j->lock);
    mg_code rc = MG_OK;
    if (n && gen_rc == MG_OK) {
        rc = encoder_error(j, mg_audio_stream_write(j->enc, chunk, n, err), err);
        j->n_written += n;
    }
    free(chunk);
    if (rc == MG_OK && over && gen_rc == MG_OK)
        rc = encoder_error(j, mg_audio_stream_finish(j->enc, err), err);
    if (rc == MG_OK)
        rc = hand_bytes(j, sink, ud, err);
    if (rc != MG_OK) {
        /* an encoder (or sink) failure ends the job as the engine's would */
        mg_job_cancel(j);
        over = 1;
    } else if (over) {
        rc = gen_rc;
    }
    if (!over)
        return MG_OK;
    j->finished = 1;
    *ended = 1;
    j->compute_seconds = now_s() - j->t0;
    return rc;
}

void mg_job_summary(const mg_job *j, mg_job_outcome *out)
{
    out->seed = j->seed;
    out->sample_rate = j->sample_rate;
    out->channels = j->channels;
    out->audio_seconds = (double)j->n_written / j->sample_rate;
    out->compute_seconds = j->compute_seconds;
    out->queue_seconds = j->t_first_step > 0 ? j->t_first_step - j->t0 : 0;
    out->first_audio_seconds = j->t_first_audio > 0 ? j->t_first_audio - j->t0 : 0;
    out->prompt_seconds = j->prompt_seconds;
    out->prompt_trimmed_seconds = j->prompt_trimmed_seconds;
}

mg_code mg_job_json(const mg_request *req, const mg_job_outcome *o, const uint8_t *audio,
                    size_t len, const char *model_name, char **out, size_t *out_len,
                    mg_error *err)
{
    return build_json(o, req, audio, len, model_name, out, out_len, err);
}

/* The blocking form: the same job, woken through a condition variable. */
typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t  cond;
    int             woken;
} run_wait;

static void run_wake(void *ud)
{
    run_wait *w = ud;
    pthread_mutex_lock(&w->lock);
    w->woken = 1;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

typedef struct {
    uint8_t *bytes;
    size_t   len, cap;
    int      failed;  /* out of memory: the job ends NOMEM, not cancelled */
} byte_buf;

static int collect_bytes(void *ud, const uint8_t *bytes, size_t n)
{
    byte_buf *b = ud;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 65536;
        while (cap < b->len + n)
            cap *= 2;
        uint8_t *p = realloc(b->bytes, cap);
        if (!p) {
            b->failed = 1;
            return 1;
        }
        b->bytes = p;
        b->cap = cap;
    }
    memcpy(b->bytes + b->len, bytes, n);
    b->len += n;
    return 0;
}

mg_code mg_job_run(mg_model *m, const mg_request *req, const mg_job_settings *set,
                   int want_json, const char *model_name, mg_job_result *out, mg_error *err)
{
    memset(out, 0, sizeof *out);
    run_wait w = {.woken = 0};
    pthread_mutex_init(&w.lock, NULL);
    pthread_cond_init(&w.cond, NULL);
    mg_job *j = NULL;
    byte_buf b = {0};
    mg_code rc = mg_job_submit(m, req, set, run_wake, &w, &j, err);
    for (int ended = 0; rc == MG_OK && !ended;) {
        pthread_mutex_lock(&w.lock);
        while (!w.woken)
            pthread_cond_wait(&w.cond, &w.lock);
        w.woken = 0;
        pthread_mutex_unlock(&w.lock);
        rc = mg_job_pump(j, collect_bytes, &b, &ended, err);
    }
    if (rc != MG_OK && b.failed)
        rc = mg_fail(err, MG_ERR_NOMEM, "out of memory collecting the audio");
    mg_job_outcome o = {0};
    if (j) {
        mg_job_summary(j, &o);
        /* a job that stopped early (a failed pump) is still the engine's until
         * its on_done: the blocking form returns only once the model has let
         * it go, so a caller that looks next sees nothing running */
        mg_job_cancel(j);
        pthread_mutex_lock(&w.lock);
        for (;;) {
            pthread_mutex_lock(&j->lock);
            int over = j->ended;
            pthread_mutex_unlock(&j->lock);
            if (over)
                break;
            while (!w.woken)
                pthread_cond_wait(&w.cond, &w.lock);
            w.woken = 0;
        }
        pthread_mutex_unlock(&w.lock);
        mg_job_release(j);
    }
    pthread_mutex_destroy(&w.lock);
    pthread_cond_destroy(&w.cond);
    if (rc == MG_OK && want_json)
        rc = mg_job_json(req, &o, b.bytes, b.len, model_name, &out->json, &out->json_len, err);
    if (rc != MG_OK) {
        free(b.bytes);
        mg_job_result_free(out);
        return rc;
    }
    out->audio = b.bytes;
    out->audio_len = b.len;
    out->format = req->format;
    out->seed = o.seed;
    out->audio_seconds = o.audio_seconds;
    out->compute_seconds = o.compute_seconds;
    out->queue_seconds = o.queue_seconds;
    out->first_audio_seconds = o.first_audio_seconds;
    out->prompt_seconds = o.prompt_seconds;
    out->prompt_trimmed_seconds = o.prompt_trimmed_seconds;
    return MG_OK;
}

char *mg_job_error_json(const char *msg, const char *field, size_t *len)
{
    json_t *o = json_object();
    /* msg may quote invalid UTF-8 from the client */
    json_t *e = text_or(msg, "invalid request (the message was not valid UTF-8)");
    if (!o) {
        json_decref(e);
        return NULL;
    }
    int ok = set(o, "success", json_false());
    if (ok)
        ok = set(o, "error", e);
    else
        json_decref(e);
    if (ok && field && field[0]) {
        ok = set(o, "field", text_or(field, "?"));
    }
    char *text = ok ? dump_json(o, len) : NULL;
    json_decref(o);
    return text;
}

/* [{"name":..., "folder":..., ...}, ...]; NULL when out of memory. */
static json_t *models_status_json(const mg_job_model_status *m, size_t n)
{
    json_t *a = json_array();
    int     ok = a != NULL;
    for (size_t i = 0; ok && i < n; i++) {
        json_t *e = json_object();
        ok = e != NULL;
        ok = ok && set(e, "name", text_or(m[i].name ? m[i].name : "", "?"));
        ok = ok && set(e, "folder", text_or(m[i].folder ? m[i].folder : "", "?"));
        ok = ok && set(e, "loaded", json_boolean(m[i].loaded));
        ok = ok && set(e, "device", text_or(m[i].device ? m[i].device : "", "?"));
        ok = ok && set(e, "weights", m[i].weights ? text_or(m[i].weights, "?") : json_null());
        ok = ok && set(e, "running", json_integer(m[i].running));
        ok = ok && set(e, "queue_depth", json_integer(m[i].queued));
        ok = ok && json_array_append(a, e) == 0;
        json_decref(e);
    }
    if (!ok) {
        json_decref(a);
        return NULL;
    }
    return a;
}

char *mg_job_status_json(const mg_job_stats *s, size_t *len)
{
    json_t *o = json_object(), *t = json_object();
    if (!o || !t) {
        json_decref(o);
        json_decref(t);
        return NULL;
    }
    int ok = set(o, "model", text_or(s->model ? s->model : "", "?"));
    ok = ok && set(o, "device", json_string(s->device ? s->device : "cpu"));
    ok = ok && set(o, "loaded", json_boolean(s->loaded));
    ok = ok && set(o, "running", json_integer(s->running));
    ok = ok && set(o, "queue_depth", json_integer(s->queued));
    ok = ok && set(t, "completed", json_integer((json_int_t)s->completed));
    ok = ok && set(t, "failed", json_integer((json_int_t)s->failed));
    ok = ok && set(t, "rejected", json_integer((json_int_t)s->rejected));
    ok = ok && set(t, "timed_out", json_integer((json_int_t)s->timed_out));
    ok = ok && set(t, "cancelled", json_integer((json_int_t)s->cancelled));
    ok = ok && set(t, "audio_seconds", json_real(s->audio_seconds));
    ok = ok && set(t, "compute_seconds", json_real(s->compute_seconds));
    ok = ok && set(o, "totals", json_incref(t));
    ok = ok && set(o, "compute_seconds_per_audio_second",
                   s->audio_seconds > 0 ? json_real(s->compute_seconds / s->audio_seconds)
                                        : json_null());
    json_decref(t);
    if (ok && s->n_models > 0)
        ok = set(o, "models", models_status_json(s->models, s->n_models));
    if (!ok) {
        json_decref(o);
        return NULL;
    }
    char *text = dump_json(o, len);
    json_decref(o);
    return text;
}
