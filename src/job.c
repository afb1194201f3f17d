#include "job.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "audio.h"
#include "base64.h"

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
    if (o) {
        json_object_set_new(o, "success", json_true());
        json_object_set_new(o, "audioUrl", json_stringn(url, url_len));
        json_object_set_new(o, "audio_base64", json_string(b64));
        json_object_set_new(o, "prompt", json_string(req->prompt));
        json_object_set_new(o, "prompt_from_analysis", json_boolean(req->from_analysis));
        json_object_set_new(o, "duration", json_real(res->audio_seconds));
        json_object_set_new(o, "sample_rate", json_integer(sample_rate));
        json_object_set_new(o, "size_bytes", json_integer((json_int_t)res->audio_len));
        json_object_set_new(o, "generation_time_seconds", json_real(res->compute_seconds));
        json_object_set_new(o, "format", json_string(mg_audio_format_name(res->format)));
        json_object_set_new(o, "seed", json_integer((json_int_t)res->seed));
        json_object_set_new(o, "model", json_string(model_name ? model_name : ""));
    }
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    free(url);
    if (!text)
        return mg_fail(err, MG_ERR_NOMEM, "out of memory building the response");
    *out = text;
    *out_len = strlen(text);
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
    if (!o)
        return NULL;
    json_t *e = json_string(msg); /* NULL when msg quotes invalid UTF-8 from the client */
    json_object_set_new(o, "success", json_false());
    json_object_set_new(o, "error", e ? e : json_string("invalid request (the message was not valid UTF-8)"));
    if (field && field[0]) {
        json_t *f = json_string(field);
        json_object_set_new(o, "field", f ? f : json_string("?"));
    }
    char *text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (text && len)
        *len = strlen(text);
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
    json_t *model = json_string(s->model ? s->model : "");
    json_object_set_new(o, "model", model ? model : json_string("?"));
    json_object_set_new(o, "device", json_string(s->device ? s->device : "cpu"));
    json_object_set_new(o, "loaded", json_boolean(s->loaded));
    json_object_set_new(o, "running", json_integer(s->running));
    json_object_set_new(o, "queue_depth", json_integer(s->queued));
    json_object_set_new(t, "completed", json_integer((json_int_t)s->completed));
    json_object_set_new(t, "failed", json_integer((json_int_t)s->failed));
    json_object_set_new(t, "rejected", json_integer((json_int_t)s->rejected));
    json_object_set_new(t, "timed_out", json_integer((json_int_t)s->timed_out));
    json_object_set_new(t, "audio_seconds", json_real(s->audio_seconds));
    json_object_set_new(t, "compute_seconds", json_real(s->compute_seconds));
    json_object_set_new(o, "totals", t);
    json_object_set_new(o, "compute_seconds_per_audio_second",
                        s->audio_seconds > 0 ? json_real(s->compute_seconds / s->audio_seconds)
                                             : json_null());
    char *text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (text && len)
        *len = strlen(text);
    return text;
}
