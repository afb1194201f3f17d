/* HTTP jobs: the response JSON, error JSON, the ETag of seeded requests,
 * and the job's encoded bytes: the file the engine's audio makes through
 * the encoder, in every format and at every level. */
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "test_util.h"
#include "service/base64.h"
#include "service/job.h"

static void test_error_json(void)
{
    size_t len = 0;
    char *j = mg_job_error_json("duration: must be in [1, 30]", "duration", &len);
    CHECK(j && !strcmp(j, "{\"success\":false,\"error\":\"duration: must be in [1, 30]\",\"field\":\"duration\"}") &&
          len == strlen(j), "error JSON: %s", j ? j : "(null)");
    free(j);
    j = mg_job_error_json("bad \"quote\" \xff", "", NULL);
    CHECK(j && strstr(j, "not valid UTF-8") && !strstr(j, "field"), "invalid UTF-8 message replaced: %s", j ? j : "(null)");
    free(j);
}

/* The size promised before generating is the size generated, for durations
 * on and off the frame grid (1.01 s is 50.5 frames at 50 Hz as written, just
 * under it as a float: the rounding must be the engine's); nothing is
 * promised for FLAC. */
static void test_audio_size(mg_model *m, const mg_request_limits *lim)
{
    static const char *bodies[] = {
        "{\"prompt\": \"calm piano\", \"duration\": 1.01, \"seed\": 3}",
        "{\"prompt\": \"calm piano\", \"duration\": 1.37, \"seed\": 3}",
        "{\"prompt\": \"calm piano\", \"duration\": 2, \"seed\": 3}",
    };
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        mg_error err = {0};
        mg_request req = {0};
        mg_job_result res;
        size_t size = 1;
        if (mg_request_parse_json(bodies[i], strlen(bodies[i]), lim, &req, &err) != MG_OK) {
            CHECK(0, "parse %s: %s", bodies[i], err.msg);
            continue;
        }
        CHECK(mg_job_audio_size(m, &req, NULL, &size, &err) == MG_OK, "size of %s: %s", bodies[i], err.msg);
        if (mg_job_run(m, &req, NULL, 0, "tiny", &res, &err) == MG_OK) {
            CHECK(size == res.audio_len, "%s: %zu bytes predicted, %zu made", bodies[i], size,
                  res.audio_len);
            mg_job_result_free(&res);
        } else {
            CHECK(0, "run %s: %s", bodies[i], err.msg);
        }
        req.format = MG_AUDIO_FLAC;
        CHECK(mg_job_audio_size(m, &req, NULL, &size, &err) == MG_OK && size == 0,
              "flac: no size promised (%zu)", size);
        mg_request_free(&req);
    }
}

/* A job's bytes are the file mg_audio_encode_planar makes of the audio
 * mg_generate gives for the same seed and parameters (both channels of a
 * stereo model's): one encoder, whatever the front end does with the
 * bytes. */
static void test_job_bytes(mg_model *m, const mg_request_limits *lim)
{
    static const char *formats[] = {"wav", "flac", "ogg", "mp3"};
    static const mg_level levels[] = {MG_LEVEL_LIMIT, MG_LEVEL_CLIP, MG_LEVEL_OFF};
    static const float durations[] = {1, 1.37f};
    for (size_t d = 0; d < sizeof durations / sizeof durations[0]; d++) {
        char body[200];
        snprintf(body, sizeof body, "{\"prompt\": \"calm piano\", \"duration\": %.2f, \"seed\": 4}",
                 durations[d]);
        mg_request req = {0};
        mg_error err = {0};
        if (mg_request_parse_json(body, strlen(body), lim, &req, &err) != MG_OK) {
            CHECK(0, "parse: %s", err.msg);
            continue;
        }
        mg_gen_params p;
        mg_gen_params_default(m, &p);
        p.duration = req.duration;
        p.seed = req.seed;
        const char *prompts[1] = {req.prompt};
        mg_gen_result gen;
        if (mg_generate(m, prompts, 1, &p, NULL, &gen, &err) != MG_OK) {
            CHECK(0, "generate: %s", err.msg);
            mg_request_free(&req);
            continue;
        }
        for (size_t f = 0; f < sizeof formats / sizeof formats[0]; f++)
            for (size_t l = 0; l < sizeof levels / sizeof levels[0]; l++) {
                mg_audio_format_parse(formats[f], strlen(formats[f]), &req.format, &err);
                mg_job_settings set = {.level = levels[l]};
                mg_job_result res;
                mg_code rc = mg_job_run(m, &req, &set, 0, "tiny", &res, &err);
                if (req.format == MG_AUDIO_FLAC && levels[l] == MG_LEVEL_OFF) {
                    CHECK(rc == MG_ERR_INVALID && !strcmp(err.field, "level"),
                          "flac at level off: refused naming level (%s)", err.msg);
                    continue;
                }
                uint8_t *want = NULL;
                size_t want_len = 0;
                CHECK(rc == MG_OK && mg_audio_encode_planar(gen.audio, gen.channels, gen.n_samples,
                                                            gen.sample_rate, req.format, levels[l],
                                                            &want, &want_len, &err) == MG_OK &&
                      res.audio_len == want_len && !memcmp(res.audio, want, want_len),
                      "%d channels, %.2f s %s at level %s: the job's %zu bytes are the encoder's %zu",
                      gen.channels, durations[d], formats[f], mg_level_name(levels[l]),
                      rc == MG_OK ? res.audio_len : 0, want_len);
                size_t size = 1;
                CHECK(mg_job_audio_size(m, &req, &set, &size, &err) == MG_OK &&
                      (req.format == MG_AUDIO_WAV ? size == want_len : size == 0),
                      "%s at level %s: %zu bytes announced", formats[f], mg_level_name(levels[l]),
                      size);
                free(want);
                if (rc == MG_OK) {
                    /* the times a log line and the metrics take: each a
                     * later moment of the same job */
                    CHECK(res.queue_seconds > 0 && res.queue_seconds <= res.first_audio_seconds &&
                          res.first_audio_seconds <= res.compute_seconds,
                          "%s: first step after %g s, first audio after %g s, done after %g s",
                          formats[f], res.queue_seconds, res.first_audio_seconds,
                          res.compute_seconds);
                    mg_job_result_free(&res);
                }
            }
        mg_gen_result_free(&gen);
        mg_request_free(&req);
    }
}

/* A front end may let go of a job at once: the engine keeps its own
 * reference until it is done, and still signals a wake-up that lives. */
typedef struct {
    pthread_mutex_t lock;
    int             wakes;
} wake_count;

static void count_wake(void *ud)
{
    wake_count *w = ud;
    pthread_mutex_lock(&w->lock);
    w->wakes++;
    pthread_mutex_unlock(&w->lock);
}

static void test_release_early(mg_model *m, const mg_request *req)
{
    wake_count w = {.wakes = 0};
    pthread_mutex_init(&w.lock, NULL);
    mg_job *j = NULL;
    mg_error err = {0};
    CHECK(mg_job_submit(m, req, NULL, count_wake, &w, &j, &err) == MG_OK, "submit: %s", err.msg);
    mg_job_release(j);
    /* the model's next generation runs after the released one ended */
    mg_job_result res;
    CHECK(mg_job_run(m, req, NULL, 0, "tiny", &res, &err) == MG_OK, "run after: %s", err.msg);
    mg_job_result_free(&res);
    int running = -1, waiting = -1;
    mg_model_activity(m, &running, &waiting);
    pthread_mutex_lock(&w.lock);
    CHECK(w.wakes >= 1 && running == 0 && waiting == 0,
          "a released job ends (its wake-up called %d times), nothing left running", w.wakes);
    pthread_mutex_unlock(&w.lock);
    pthread_mutex_destroy(&w.lock);
}

/* A 16-bit PCM WAV of frames * channels interleaved samples at 32 kHz, as a
 * request's audio_prompt: bare base64, malloc'd. */
static char *wav_base64(const float *x, size_t frames, int channels)
{
    size_t data = frames * channels * 2, n = 44 + data;
    uint8_t *w = malloc(n);
    char *b64 = w ? malloc(mg_base64_len(n) + 1) : NULL;
    if (!b64) {
        free(w);
        return NULL;
    }
    uint32_t rate = 32000, byte_rate = rate * channels * 2;
    uint32_t fields[] = {(uint32_t)(36 + data), 16, (uint32_t)(1 | channels << 16), rate, byte_rate,
                         (uint32_t)(channels * 2 | 16 << 16), (uint32_t)data};
    memcpy(w, "RIFF", 4);
    memcpy(w + 4, &fields[0], 4);
    memcpy(w + 8, "WAVEfmt ", 8);
    memcpy(w + 16, &fields[1], 20);
    memcpy(w + 36, "data", 4);
    memcpy(w + 40, &fields[6], 4);
    for (size_t i = 0; i < frames * channels; i++) {
        int16_t v = (int16_t)lrintf(x[i / channels] * 32767.0f);
        memcpy(w + 44 + 2 * i, &v, 2);
    }
    mg_base64_encode(w, n, b64);
    free(w);
    return b64;
}

/* The number under key in a JSON object's text; NaN when there is none. */
static double json_number(const char *text, const char *key)
{
    json_t *o = text ? json_loads(text, 0, NULL) : NULL;
    json_t *v = json_object_get(o, key);
    double x = json_is_number(v) ? json_number_value(v) : NAN;
    json_decref(o);
    return x;
}

/* A request with `audio` (base64 WAV) as its audio_prompt, parsed. */
static mg_code parse_with_audio(const char *audio, const char *rest, const mg_request_limits *lim,
                                mg_request *req, mg_error *err)
{
    size_t n = strlen(audio) + strlen(rest) + 100;
    char *body = malloc(n);
    if (!body)
        return MG_ERR_NOMEM;
    snprintf(body, n, "{\"prompt\": \"calm piano\", \"audio_prompt\": \"%s\"%s}", audio, rest);
    mg_code rc = mg_request_parse_json(body, strlen(body), lim, req, err);
    free(body);
    return rc;
}

/* audio_prompt: the clip begins with the kept prompt and lasts `duration`
 * (the promised size is the size made), the JSON says what was kept and cut,
 * a two-channel file is downmixed (the same channel twice gives the mono
 * file's bytes), the ETag follows the audio, and a duration not past the
 * prompt is refused naming duration. */
static void test_audio_prompt(mg_model *m, const mg_request_limits *lim)
{
    size_t frames = 48000; /* 1.5 s */
    float *x = malloc(frames * sizeof *x);
    for (size_t i = 0; x && i < frames; i++)
        x[i] = 0.4f * sinf((float)i * 0.0863f) + 0.1f * sinf((float)i * 0.0071f);
    char *mono = x ? wav_base64(x, frames, 1) : NULL, *stereo = x ? wav_base64(x, frames, 2) : NULL;
    if (x)
        x[100] = -x[100];
    char *changed = x ? wav_base64(x, frames, 1) : NULL;
    free(x);
    if (!mono || !stereo || !changed) {
        CHECK(0, "test WAVs");
        free(mono), free(stereo), free(changed);
        return;
    }
    mg_request req = {0}, req2 = {0};
    mg_error err = {0};
    mg_job_result res = {0}, res2 = {0};
    size_t size = 0;
    /* 2.5 s in all: the 1.5 s prompt and 1 s more */
    CHECK(parse_with_audio(mono, ", \"duration\": 2.5, \"seed\": 5", lim, &req, &err) == MG_OK,
          "parse: %s", err.msg);
    CHECK(mg_job_audio_size(m, &req, NULL, &size, &err) == MG_OK && size == 44 + 80000 * 2,
          "size promised: %zu: %s", size, err.msg);
    mg_code rc = mg_job_run(m, &req, NULL, 1, "tiny", &res, &err);
    CHECK(rc == MG_OK && res.audio_len == size && res.prompt_seconds == 1.5 &&
              res.prompt_trimmed_seconds == 0,
          "2.5 s made (%zu bytes), prompt %g s kept, %g cut: %s", res.audio_len,
          res.prompt_seconds, res.prompt_trimmed_seconds, err.msg);
    CHECK(json_number(res.json, "prompt_seconds") == 1.5 &&
              isnan(json_number(res.json, "prompt_trimmed_seconds")) &&
              json_number(res.json, "duration") == 2.5,
          "JSON: prompt_seconds, no prompt_trimmed_seconds");
    CHECK(parse_with_audio(stereo, ", \"duration\": 2.5, \"seed\": 5", lim, &req2, &err) == MG_OK &&
              req2.audio_prompt.channels == 2, "parse stereo: %s", err.msg);
    rc = mg_job_run(m, &req2, NULL, 0, "tiny", &res2, &err);
    CHECK(rc == MG_OK && res2.audio_len == res.audio_len &&
              memcmp(res2.audio, res.audio, res.audio_len) == 0,
          "the same channel twice: the mono file's bytes: %s", err.msg);
    mg_job_result_free(&res2);
    char a[24], b[24];
    CHECK(mg_job_etag(m, &req, NULL, "tiny", a, &err) == MG_OK &&
              mg_job_etag(m, &req, NULL, "tiny", b, &err) == MG_OK && !strcmp(a, b),
          "same audio, same ETag");
    mg_request_free(&req2);
    CHECK(parse_with_audio(changed, ", \"duration\": 2.5, \"seed\": 5", lim, &req2, &err) == MG_OK &&
              mg_job_etag(m, &req2, NULL, "tiny", b, &err) == MG_OK && strcmp(a, b),
          "other audio, other ETag");
    mg_request_free(&req2);
    mg_job_result_free(&res);
    /* a window stride of 29.1 s leaves 45 frames (0.9 s) of the 30 s window to a prompt */
    mg_job_settings stride = {.extend_stride = 29.1f};
    mg_prompt_audio_fit fit;
    CHECK(mg_job_prompt_fit(m, &req, &stride, &fit, &err) == MG_OK && fit.frames == 45 &&
              fit.trimmed_frames == 30, "fit: %d frames kept, %d cut", fit.frames,
          fit.trimmed_frames);
    rc = mg_job_run(m, &req, &stride, 1, "tiny", &res, &err);
    CHECK(rc == MG_OK && res.audio_len == size && res.prompt_seconds == 0.9 &&
              json_number(res.json, "prompt_seconds") == 0.9 &&
              json_number(res.json, "prompt_trimmed_seconds") == 0.6,
          "trimmed: %g s kept, %g cut, %zu bytes: %s", res.prompt_seconds,
          res.prompt_trimmed_seconds, res.audio_len, err.msg);
    mg_job_result_free(&res);
    mg_request_free(&req);
    CHECK(parse_with_audio(mono, ", \"duration\": 1.5", lim, &req, &err) == MG_OK &&
              mg_job_audio_size(m, &req, NULL, &size, &err) == MG_ERR_INVALID &&
              !strcmp(err.field, "duration") &&
              mg_job_run(m, &req, NULL, 0, "tiny", &res, &err) == MG_ERR_INVALID &&
              !strcmp(err.field, "duration"),
          "duration not past the prompt refused naming duration: %s", err.msg);
    mg_request_free(&req);
    free(mono), free(stereo), free(changed);
}

static void test_jobs(const char *dir)
{
    mg_model *m = NULL;
    mg_error err = {0};
    mg_model_options opt = {.n_threads = 1};
    if (mg_model_load(&m, dir, &opt, &err) != MG_OK) {
        CHECK(0, "load: %s", err.msg);
        return;
    }
    mg_request_limits lim = {.duration = {.min = MG_MIN_DURATION, .max = 30, .dflt = 1},
                             .default_format = MG_AUDIO_WAV};
    const char *body = "{\"prompt\": \"calm piano\", \"duration\": 1, \"seed\": 9}";
    mg_request req = {0}, other = {0};
    CHECK(mg_request_parse_json(body, strlen(body), &lim, &req, &err) == MG_OK, "parse: %s", err.msg);
    mg_job_result res;
    CHECK(mg_job_run(m, &req, NULL, 1, "tiny", &res, &err) == MG_OK, "run: %s", err.msg);
    CHECK(res.audio_len == 44 + 32000 * 2 && !memcmp(res.audio, "RIFF", 4), "1 s of 16-bit WAV (%zu bytes)", res.audio_len);
    CHECK(res.json && strstr(res.json, "\"audioUrl\":\"data:audio/wav;base64,UklGR") &&
          strstr(res.json, "\"seed\":9") && strstr(res.json, "\"model\":\"tiny\"") &&
          strstr(res.json, "\"prompt\":\"calm piano\""), "reference-shaped JSON");
    mg_job_result res2;
    CHECK(mg_job_run(m, &req, NULL, 0, "tiny", &res2, &err) == MG_OK && !res2.json &&
          res2.audio_len == res.audio_len && !memcmp(res.audio, res2.audio, res.audio_len),
          "same seed, same bytes; raw mode has no JSON");
    mg_job_result_free(&res);
    mg_job_result_free(&res2);

    char a[24], b[24];
    CHECK(mg_job_etag(m, &req, NULL, "tiny", a, &err) == MG_OK && mg_job_etag(m, &req, NULL, "tiny", b, &err) == MG_OK &&
          !strcmp(a, b) && strlen(a) == 21 && a[0] == '"', "stable ETag %s", a);
    const char *variants[] = {
        "{\"prompt\": \"calm piano\", \"duration\": 1, \"seed\": 10}",
        "{\"prompt\": \"calm piano!\", \"duration\": 1, \"seed\": 9}",
        "{\"prompt\": \"calm piano\", \"duration\": 2, \"seed\": 9}",
        "{\"prompt\": \"calm piano\", \"duration\": 1, \"seed\": 9, \"format\": \"flac\"}",
        "{\"prompt\": \"calm piano\", \"duration\": 1, \"seed\": 9, \"top_k\": 5}",
    };
    for (size_t i = 0; i < sizeof variants / sizeof variants[0]; i++) {
        CHECK(mg_request_parse_json(variants[i], strlen(variants[i]), &lim, &other, &err) == MG_OK &&
              mg_job_etag(m, &other, NULL, "tiny", b, &err) == MG_OK && strcmp(a, b), "ETag changes: %s", variants[i]);
        mg_request_free(&other);
    }
    CHECK(mg_job_etag(m, &req, NULL, "other-model", b, &err) == MG_OK && strcmp(a, b), "ETag depends on the model");
    mg_job_settings clip = {.level = MG_LEVEL_CLIP}, stride = {.extend_stride = 10};
    CHECK(mg_job_etag(m, &req, &clip, "tiny", b, &err) == MG_OK && strcmp(a, b),
          "ETag depends on the level");
    CHECK(mg_job_etag(m, &req, &stride, "tiny", b, &err) == MG_OK && strcmp(a, b),
          "ETag depends on the long-form stride");
    test_job_bytes(m, &lim);
    test_audio_prompt(m, &lim);
    test_release_early(m, &req);
    req.has_seed = 0;
    test_audio_size(m, &lim);
    CHECK(mg_job_etag(m, &req, NULL, "tiny", b, &err) == MG_ERR_INVALID && !strcmp(err.field, "seed"),
          "no seed, no ETag");
    mg_request_free(&req);
    mg_model_free(m);
}

/* The job's bytes for a stereo model (musicgen-mkmodel --stereo beside the
 * test binary): 2-channel files, the JSON saying so. */
static void test_stereo_jobs(const char *argv0)
{
    char tmp[4200], dir[4200];
    mg_model *m = NULL;
    mg_error err = {0};
    mg_model_options opt = {.n_threads = 1};
    if (tu_mkmodel(argv0, "--shape tiny --stereo --seed 2", tmp, sizeof tmp, dir, sizeof dir) ||
        mg_model_load(&m, dir, &opt, &err) != MG_OK) {
        CHECK(0, "a stereo model: %s", err.msg);
        tu_remove_dir(tmp);
        return;
    }
    mg_request_limits lim = {.duration = {.min = MG_MIN_DURATION, .max = 30, .dflt = 1},
                             .default_format = MG_AUDIO_WAV};
    test_job_bytes(m, &lim);
    const char *body = "{\"prompt\": \"wide pads\", \"duration\": 1, \"seed\": 9}";
    mg_request req = {0};
    mg_job_result res;
    CHECK(mg_request_parse_json(body, strlen(body), &lim, &req, &err) == MG_OK &&
              mg_job_run(m, &req, NULL, 1, "stereo", &res, &err) == MG_OK,
          "stereo run: %s", err.msg);
    if (!err.msg[0]) {
        CHECK(res.audio_len == 44 + 32000 * 2 * 2 && res.json &&
                  strstr(res.json, "\"sample_rate\":32000,\"channels\":2"),
              "1 s of 16-bit stereo WAV (%zu bytes), the JSON says 2 channels", res.audio_len);
        mg_job_result_free(&res);
    }
    mg_request_free(&req);
    mg_model_free(m);
    tu_remove_dir(tmp);
}

int main(int argc, char **argv)
{
    test_error_json();
    test_stereo_jobs(argc > 0 ? argv[0] : "");
    char dir[4200], probe[4300];
    snprintf(dir, sizeof dir, "%s/tiny-a", check_golden_dir());
    snprintf(probe, sizeof probe, "%s/spiece.model", dir);
    if (access(probe, R_OK) != 0)
        SKIP("golden tiny-a model with spiece.model not found at %s", dir);
    else
        test_jobs(dir);
    return check_summary("test_job");
}
