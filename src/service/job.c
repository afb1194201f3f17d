#include "service/job.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "io/audio.h"
#include "service/base64.h"
#include "service/prompt.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int poll_cancel(void *ud, int step, int total)
{
    const volatile int *cancel = ud;
    return cancel && *cancel;
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

static mg_code build_json(const mg_job_result *res, const mg_request *req, int sample_rate,
                          const char *model_name, char **out, size_t *out_len, mg_error *err)
{
    char *url = NULL;
    size_t url_len = 0;
    mg_code rc = mg_audio_data_url(res->audio, res->audio_len, res->format, &url, &url_len, err);
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
    ok = ok && set(o, "sample_rate", json_integer(sample_rate));
    ok = ok && set(o, "size_bytes", json_integer((json_int_t)res->audio_len));
    ok = ok && set(o, "generation_time_seconds", json_real(res->compute_seconds));
    ok = ok && set(o, "format", json_string(mg_audio_format_name(res->format)));
    ok = ok && set(o, "seed", json_integer((json_int_t)res->seed));
    ok = ok && set(o, "model", json_string(model_name ? model_name : ""));
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
static void job_params(const mg_model *m, const mg_request *req, mg_gen_params *p)
{
    mg_gen_params_default(m, p);
    p->duration = req->duration;
    if (req->has_temperature) p->sampling.temperature = req->temperature;
    if (req->has_top_k) p->sampling.top_k = req->top_k;
    if (req->has_top_p) p->sampling.top_p = req->top_p;
    if (req->has_guidance) p->sampling.guidance_scale = req->guidance_scale;
    p->seed = req->seed;
}

static uint64_t fnv1a(uint64_t h, const void *data, size_t n)
{
    const uint8_t *b = data;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

mg_code mg_job_etag(const mg_model *m, const mg_request *req, const char *model_id,
                    char out[24], mg_error *err)
{
    if (!req->has_seed)
        return mg_fail_field(err, MG_ERR_INVALID, "seed", "seed: needed for a cacheable response");
    mg_gen_params p;
    job_params(m, req, &p);
    uint64_t h = 0xcbf29ce484222325ull;
    const mg_config *c = mg_model_config(m);
    h = fnv1a(h, model_id, strlen(model_id) + 1);
    h = fnv1a(h, c, sizeof *c); /* shapes and generation defaults */
    h = fnv1a(h, req->prompt, strlen(req->prompt) + 1);
    int32_t ints[4] = {p.sampling.do_sample, p.sampling.top_k, (int32_t)req->format, 1 /* version */};
    float floats[4] = {p.duration, p.sampling.temperature, p.sampling.top_p, p.sampling.guidance_scale};
    h = fnv1a(h, ints, sizeof ints);
    h = fnv1a(h, floats, sizeof floats);
    h = fnv1a(h, &p.seed, sizeof p.seed);
    snprintf(out, 24, "\"mg-%016llx\"", (unsigned long long)h);
    return MG_OK;
}

mg_code mg_job_audio_size(const mg_model *m, const mg_request *req, size_t *size, mg_error *err)
{
    *size = 0;
    mg_gen_params p;
    job_params(m, req, &p);
    int steps = 0, frames = 0;
    mg_code rc = mg_gen_steps(m, &p, &steps, &frames, err);
    if (rc != MG_OK)
        return rc;
    *size = mg_audio_encoded_size((size_t)frames * (size_t)mg_model_config(m)->hop, req->format);
    return MG_OK;
}

mg_code mg_job_run(mg_model *m, const mg_request *req, int want_json, const char *model_name,
                   const volatile int *cancel, mg_job_result *out, mg_error *err)
{
    memset(out, 0, sizeof *out);
    double t0 = now_s();
    mg_gen_params p;
    job_params(m, req, &p);
    if (!req->has_seed)
        p.seed = fresh_seed();
    mg_gen_hooks hooks = {.progress = poll_cancel, .ud = (void *)cancel};
    mg_gen_result gen;
    const char *prompts[1] = {req->prompt};
    mg_code rc = mg_generate(m, prompts, 1, &p, &hooks, &gen, err);
    if (rc != MG_OK)
        return rc;
    out->format = req->format;
    out->seed = p.seed;
    out->audio_seconds = (double)gen.n_samples / gen.sample_rate;
    rc = mg_audio_encode(gen.audio, gen.n_samples, gen.sample_rate, req->format, &out->audio,
                         &out->audio_len, err);
    int sample_rate = gen.sample_rate;
    mg_gen_result_free(&gen);
    out->compute_seconds = now_s() - t0;
    if (rc == MG_OK && want_json)
        rc = build_json(out, req, sample_rate, model_name, &out->json, &out->json_len, err);
    if (rc != MG_OK)
        mg_job_result_free(out);
    return rc;
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
    ok = ok && set(t, "audio_seconds", json_real(s->audio_seconds));
    ok = ok && set(t, "compute_seconds", json_real(s->compute_seconds));
    ok = ok && set(o, "totals", json_incref(t));
    ok = ok && set(o, "compute_seconds_per_audio_second",
                   s->audio_seconds > 0 ? json_real(s->compute_seconds / s->audio_seconds)
                                        : json_null());
    json_decref(t);
    if (!ok) {
        json_decref(o);
        return NULL;
    }
    char *text = dump_json(o, len);
    json_decref(o);
    return text;
}
