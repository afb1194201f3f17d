/* Request parsing: JSON bodies and query strings, every error naming its
 * field, limits, defaults, the analysis form, and random inputs in
 * exact-size buffers (ASan catches a read past len). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "service/base64.h"
#include "service/request.h"

/* the range mg_duration_limits gives for musicgen_max_duration 30 (test_duration.c) */
static const mg_request_limits LIM = {
    .duration = {.min = MG_MIN_DURATION, .max = 30, .dflt = MG_DEFAULT_DURATION},
    .default_format = MG_AUDIO_WAV,
    .max_top_k = 2048, .max_guidance = 10,
};

/* Copies s[0..len) into an exact-size heap buffer (no NUL after it). */
static char *exact(const char *s, size_t len)
{
    char *b = malloc(len ? len : 1);
    if (b && len)
        memcpy(b, s, len);
    return b;
}

static mg_code parse(int query, const char *s, size_t len, mg_request *r, mg_error *e)
{
    char *b = exact(s, len);
    if (!b)
        return MG_ERR_NOMEM;
    memset(e, 0, sizeof *e);
    mg_code rc = query ? mg_request_parse_query(b, len, &LIM, r, e)
                       : mg_request_parse_json(b, len, &LIM, r, e);
    free(b);
    return rc;
}

static mg_code pj(const char *s, mg_request *r, mg_error *e) { return parse(0, s, strlen(s), r, e); }
static mg_code pq(const char *s, mg_request *r, mg_error *e) { return parse(1, s, strlen(s), r, e); }

/* ---- errors ---- */

typedef struct {
    int         query;
    const char *in;
    const char *field;  /* expected err.field */
    const char *msg;    /* substring of err.msg */
} bad_case;

static const bad_case bad[] = {
    /* not JSON / not an object */
    { 0, "", "", "empty" },
    { 0, "not json", "", "not valid JSON" },
    { 0, "{\"prompt\": \"a\"", "", "not valid JSON" },
    { 0, "[1, 2]", "", "must be a JSON object" },
    /* "model" when the caller names no models */
    { 0, "{\"prompt\": \"a\", \"model\": \"small\"}", "model", "does not choose models by name" },
    { 1, "prompt=a&model=small", "model", "does not choose models by name" },
    { 0, "\"prompt\"", "", "must be a JSON object" },
    { 0, "null", "", "must be a JSON object" },
    { 0, "{\"prompt\": NaN}", "", "not valid JSON" },
    { 0, "{\"prompt\": \"a\", \"duration\": Infinity}", "", "not valid JSON" },
    { 0, "{\"prompt\": \"a\", \"duration\": 1e999}", "", "not valid JSON" },
    { 0, "{\"prompt\": \"\xff\"}", "", "not valid JSON" },
    { 0, "{\"prompt\": \"a\\u0000b\"}", "prompt", "must not contain control characters" },
    { 0, "{\"mood\": \"calm\\u0000\", \"genres\": [\"jazz\"]}", "mood", "must not contain control characters" },
    { 0, "{\"genres\": [\"ja\\u0000zz\"]}", "genres", "must not contain control characters" },
    { 0, "{\"prompt\": \"x\", \"format\": \"wav\\u0000\"}", "format", "unknown audio format" },
    { 0, "{\"pro\\u0000mpt\": \"x\"}", "", "not valid JSON" },
    /* duplicates */
    { 0, "{\"prompt\": \"a\", \"prompt\": \"b\"}", "prompt", "duplicate" },
    { 0, "{\"analysis\": {\"mood\": \"a\", \"mood\": \"b\"}}", "mood", "duplicate" },
    { 0, "{\"mood\": \"a\", \"tempo\": 100, \"tempo_bpm\": 100}", "tempo_bpm", "given twice" },
    { 0, "{\"mood\": \"a\", \"tempo\": null, \"tempo_bpm\": 100}", "tempo_bpm", "given twice" },
    { 0, "{\"mood\": \"a\", \"styleLevel\": 1, \"style_level\": 1}", "style_level", "given twice" },
    /* prompt */
    { 0, "{}", "prompt", "required" },
    { 0, "{\"prompt\": null}", "prompt", "required" },
    { 0, "{\"duration\": 5, \"seed\": 1}", "prompt", "required" },
    { 0, "{\"prompt\": \"\"}", "prompt", "empty" },
    { 0, "{\"prompt\": \" \\t\\n\\r \"}", "prompt", "empty" },
    { 0, "{\"prompt\": \"\", \"mood\": \"calm\"}", "prompt", "empty" },
    { 0, "{\"prompt\": 5}", "prompt", "must be a string" },
    { 0, "{\"prompt\": [\"a\"]}", "prompt", "must be a string" },
    { 0, "{\"prompt\": \"a\\u0001b\"}", "prompt", "control" },
    { 0, "{\"prompt\": \"a\\u007fb\"}", "prompt", "control" },
    /* sampling fields */
    { 0, "{\"prompt\": \"a\", \"duration\": 0.5}", "duration", "at least 1" },
    { 0, "{\"prompt\": \"a\", \"duration\": 30.01}", "duration", "at most 30" },
    { 0, "{\"prompt\": \"a\", \"duration\": -5}", "duration", "at least" },
    { 0, "{\"prompt\": \"a\", \"duration\": \"10\"}", "duration", "must be a number" },
    { 0, "{\"prompt\": \"a\", \"duration\": true}", "duration", "must be a number" },
    { 0, "{\"prompt\": \"a\", \"temperature\": 0.05}", "temperature", "at least 0.1" },
    { 0, "{\"prompt\": \"a\", \"temperature\": 2.5}", "temperature", "at most 2" },
    { 0, "{\"prompt\": \"a\", \"top_k\": -1}", "top_k", "at least 0" },
    { 0, "{\"prompt\": \"a\", \"top_k\": 2049}", "top_k", "at most 2048" },
    { 0, "{\"prompt\": \"a\", \"top_k\": 1.5}", "top_k", "integer" },
    { 0, "{\"prompt\": \"a\", \"top_k\": \"40\"}", "top_k", "integer" },
    { 0, "{\"prompt\": \"a\", \"top_p\": 0}", "top_p", "above 0" },
    { 0, "{\"prompt\": \"a\", \"top_p\": 1.5}", "top_p", "at most 1" },
    { 0, "{\"prompt\": \"a\", \"guidance_scale\": 11}", "guidance_scale", "at most 10" },
    { 0, "{\"prompt\": \"a\", \"guidance_scale\": -1}", "guidance_scale", "at least 0" },
    { 0, "{\"prompt\": \"a\", \"seed\": -1}", "seed", "at least 0" },
    { 0, "{\"prompt\": \"a\", \"seed\": 9007199254740993}", "seed", "out of range" },
    { 0, "{\"prompt\": \"a\", \"seed\": 1e300}", "seed", "at most" },
    { 0, "{\"prompt\": \"a\", \"seed\": 1.5}", "seed", "integer" },
    { 0, "{\"prompt\": \"a\", \"format\": \"aac\"}", "format", "unknown audio format" },
    { 0, "{\"prompt\": \"a\", \"format\": 3}", "format", "must be a string" },
    { 0, "{\"prompt\": \"a\", \"format\": \"\"}", "format", "unknown audio format" },
    /* unknown keys */
    { 0, "{\"prompt\": \"a\", \"temprature\": 1}", "temprature", "unknown field" },
    { 0, "{\"prompt\": \"a\", \"Prompt\": \"b\"}", "Prompt", "unknown field" },
    { 0, "{\"analysis\": {\"mood\": \"a\", \"moood\": 1}}", "analysis.moood", "unknown field" },
    /* analysis fields */
    { 0, "{\"mood\": 5}", "mood", "must be a string" },
    { 0, "{\"mood\": \"  \"}", "mood", "empty" },
    { 0, "{\"mood\": \"calm\", \"energy\": 11}", "energy", "at most 10" },
    { 0, "{\"mood\": \"calm\", \"energy\": \"high\"}", "energy", "must be a number" },
    { 0, "{\"mood\": \"calm\", \"genres\": \"rock\"}", "genres", "array of strings" },
    { 0, "{\"mood\": \"calm\", \"genres\": [1]}", "genres", "genres[0]: must be a string" },
    { 0, "{\"mood\": \"calm\", \"genres\": [\"a\", \"\"]}", "genres", "genres[1]: must not be empty" },
    { 0, "{\"mood\": \"calm\", \"genres\": [\"a\",\"b\",\"c\",\"d\",\"e\",\"f\",\"g\",\"h\",\"i\"]}",
      "genres", "too many" },
    { 0, "{\"mood\": \"calm\", \"tempo\": 10}", "tempo", "at least 20" },
    { 0, "{\"mood\": \"calm\", \"tempo_bpm\": 400}", "tempo_bpm", "at most 300" },
    { 0, "{\"mood\": \"calm\", \"styleLevel\": \"x\"}", "styleLevel", "must be a number" },
    { 0, "{\"mood\": \"calm\", \"vocalType\": \"\"}", "vocalType", "empty" },
    { 0, "{\"mood\": \"calm\", \"instruments\": [\" \"]}", "instruments", "empty" },
    { 0, "{\"prompt\": \"a\", \"energy\": 99}", "energy", "at most 10" },  /* checked though prompt wins */
    { 0, "{\"analysis\": 5}", "analysis", "must be an object" },
    { 0, "{\"analysis\": {}}", "prompt", "required" },
    { 0, "{\"analysis\": {\"mood\": 5}}", "analysis.mood", "must be a string" },
    { 0, "{\"analysis\": {\"duration\": 5}}", "analysis.duration", "not an analysis field" },
    { 0, "{\"mood\": \"calm\", \"analysis\": {\"energy\": 3}}", "analysis", "both" },
    /* query strings */
    { 1, "", "prompt", "required" },
    { 1, "prompt", "prompt", "empty" },
    { 1, "prompt=", "prompt", "empty" },
    { 1, "prompt=+++", "prompt", "empty" },
    { 1, "prompt=%zz", "prompt", "bad %-escape" },
    { 1, "prompt=abc%", "prompt", "bad %-escape" },
    { 1, "prompt=abc%4", "prompt", "bad %-escape" },
    { 1, "prompt=%4g", "prompt", "bad %-escape" },
    { 1, "prompt=%ff", "prompt", "invalid UTF-8" },
    { 1, "prompt=%c3", "prompt", "invalid UTF-8" },
    { 1, "prompt=%ed%a0%80", "prompt", "invalid UTF-8" },
    { 1, "prompt=a%00b", "prompt", "NUL" },
    { 1, "prompt=a%01b", "prompt", "control" },
    { 1, "%zz=1", "", "query string key: bad %-escape" },
    { 1, "%ff=1", "", "query string key: invalid UTF-8" },
    { 1, "prompt=a&prompt=b", "prompt", "more than once" },
    { 1, "prompt=a&pr%6fmpt=b", "prompt", "more than once" },
    { 1, "prompt=a&raw=1&raw=2", "raw", "more than once" },
    { 1, "prompt=a&duration=nan", "duration", "must be a number" },
    { 1, "prompt=a&duration=NaN", "duration", "must be a number" },
    { 1, "prompt=a&duration=inf", "duration", "must be a number" },
    { 1, "prompt=a&duration=-Infinity", "duration", "must be a number" },
    { 1, "prompt=a&duration=1e999", "duration", "finite" },
    { 1, "prompt=a&duration=0x10", "duration", "must be a number" },
    { 1, "prompt=a&duration=+5", "duration", "must be a number" },
    { 1, "prompt=a&duration=%205", "duration", "must be a number" },
    { 1, "prompt=a&duration=5abc", "duration", "must be a number" },
    { 1, "prompt=a&duration=5.", "duration", "must be a number" },
    { 1, "prompt=a&duration=", "duration", "must be a number" },
    { 1, "prompt=a&duration=31", "duration", "at most 30" },
    { 1, "prompt=a&seed=-1", "seed", "at least 0" },
    { 1, "prompt=a&seed=9007199254740993", "seed", "out of range" },
    { 1, "prompt=a&seed=99999999999999999999999", "seed", "at most" },
    { 1, "prompt=a&seed=1.5", "seed", "integer" },
    { 1, "prompt=a&top_k=4.5", "top_k", "integer" },
    { 1, "prompt=a&top_p=0", "top_p", "above 0" },
    { 1, "prompt=a&format=aac", "format", "unknown audio format" },
    { 1, "prompt=a&temprature=1", "temprature", "unknown field" },
    { 1, "analysis=x", "analysis", "query string" },
    { 1, "mood=calm&genres=rock,", "genres", "genres[1]: must not be empty" },
    { 1, "mood=calm&tempo=120&tempo_bpm=120", "tempo_bpm", "given twice" },
    { 1, "mood=calm&energy=11", "energy", "at most 10" },
    { 1, "=5&prompt=a", "", "empty key" },
    /* extend_stride: a finite positive number (the engine checks the window) */
    { 0, "{\"prompt\": \"a\", \"extend_stride\": 0}", "extend_stride", "above 0" },
    { 0, "{\"prompt\": \"a\", \"extend_stride\": -3}", "extend_stride", "above 0" },
    { 0, "{\"prompt\": \"a\", \"extend_stride\": 30.5}", "extend_stride", "at most 30" },
    { 0, "{\"prompt\": \"a\", \"extend_stride\": \"18\"}", "extend_stride", "must be a number" },
    { 1, "prompt=a&extend_stride=nan", "extend_stride", "must be a number" },
    { 1, "prompt=a&extend_stride=1e999", "extend_stride", "finite" },
    { 1, "prompt=a&extend_stride=0", "extend_stride", "above 0" },
    /* audio_prompt: decoded while parsing, so bad audio fails before generation */
    { 0, "{\"prompt\": \"a\", \"audio_prompt\": 5}", "audio_prompt", "must be a string" },
    { 0, "{\"prompt\": \"a\", \"audio_prompt\": \"\"}", "audio_prompt", "empty" },
    { 0, "{\"prompt\": \"a\", \"audio_prompt\": \"data:audio/wav;base64,\"}", "audio_prompt", "empty" },
    { 0, "{\"prompt\": \"a\", \"audio_prompt\": \"UklGR*==\"}", "audio_prompt", "not valid base64" },
    { 0, "{\"prompt\": \"a\", \"audio_prompt\": \"aGVsbG8gd29ybGQh\"}", "audio_prompt", "not an audio file" },
    { 0, "{\"prompt\": \"a\", \"audio_prompt\": \"data:image/png;base64,iVBORw0KGgo=\"}",
      "audio_prompt", "not audio" },
    { 0, "{\"prompt\": \"a\", \"audio_prompt\": \"data:audio/wav,RIFF\"}", "audio_prompt", "base64" },
    { 0, "{\"prompt\": \"\", \"audio_prompt\": \"aGVsbG8=\"}", "prompt", "empty" },
    { 1, "prompt=a&audio_prompt=UklGRg%3D%3D", "audio_prompt", "JSON body" },
    { 0, "{\"\": 1, \"prompt\": \"a\"}", "", "empty key" },
};

static void test_errors(void)
{
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        mg_request r;
        mg_error   e;
        mg_code    rc = bad[i].query ? pq(bad[i].in, &r, &e) : pj(bad[i].in, &r, &e);
        CHECK(rc == MG_ERR_INVALID, "bad %zu (%s): code %d", i, bad[i].in, rc);
        CHECK(strcmp(e.field, bad[i].field) == 0, "bad %zu (%s): field \"%s\", want \"%s\" (%s)",
              i, bad[i].in, e.field, bad[i].field, e.msg);
        CHECK(strstr(e.msg, bad[i].msg) != NULL, "bad %zu (%s): message \"%s\" lacks \"%s\"", i,
              bad[i].in, e.msg, bad[i].msg);
        CHECK(r.prompt == NULL, "bad %zu: prompt left allocated", i);
        mg_request_free(&r);
    }
}

/* ---- accepted requests ---- */

static void test_direct(void)
{
    mg_request r;
    mg_error   e;
    mg_code rc = pj("{\"prompt\": \"  calm piano\\n\", \"duration\": 12.5, \"temperature\": 0.7, "
                    "\"top_k\": 250.0, \"top_p\": 0.9, \"guidance_scale\": 3, "
                    "\"seed\": 9007199254740992, \"format\": \"FLAC\"}", &r, &e);
    CHECK(rc == MG_OK, "direct: %s", e.msg);
    if (rc == MG_OK) {
        CHECK(strcmp(r.prompt, "calm piano") == 0, "direct: prompt \"%s\"", r.prompt);
        CHECK(!r.from_analysis, "direct: from_analysis");
        CHECK(r.duration == 12.5f, "direct: duration %g", r.duration);
        CHECK(r.has_temperature && fabsf(r.temperature - 0.7f) < 1e-6f, "direct: temperature");
        CHECK(r.has_top_k && r.top_k == 250, "direct: top_k %d", r.top_k);
        CHECK(r.has_top_p && fabsf(r.top_p - 0.9f) < 1e-6f, "direct: top_p");
        CHECK(r.has_guidance && r.guidance_scale == 3, "direct: guidance");
        CHECK(r.has_seed && r.seed == 9007199254740992ull, "direct: seed");
        CHECK(r.format == MG_AUDIO_FLAC, "direct: format");
    }
    mg_request_free(&r);
    mg_request_free(&r);  /* twice is safe */

    /* defaults; null is "not given"; ignored extras */
    rc = pj("{\"prompt\": \"x\", \"seed\": null, \"format\": null, \"description\": {\"a\": 1}, "
            "\"colors\": [\"#fff\"], \"title\": 5}", &r, &e);
    CHECK(rc == MG_OK, "defaults: %s", e.msg);
    if (rc == MG_OK) {
        CHECK(r.duration == LIM.duration.dflt, "defaults: duration %g", r.duration);
        CHECK(!r.has_temperature && !r.has_top_k && !r.has_top_p && !r.has_guidance &&
              !r.has_seed, "defaults: has_* set");
        CHECK(r.format == MG_AUDIO_WAV, "defaults: format");
    }
    mg_request_free(&r);

    /* boundaries */
    static const char *const edges[] = {
        "{\"prompt\": \"x\", \"duration\": 1}", "{\"prompt\": \"x\", \"duration\": 30}",
        "{\"prompt\": \"x\", \"temperature\": 0.1}", "{\"prompt\": \"x\", \"temperature\": 2}",
        "{\"prompt\": \"x\", \"top_k\": 0}", "{\"prompt\": \"x\", \"top_k\": 2048}",
        "{\"prompt\": \"x\", \"top_p\": 1}", "{\"prompt\": \"x\", \"top_p\": 1e-9}",
        "{\"prompt\": \"x\", \"guidance_scale\": 0}", "{\"prompt\": \"x\", \"guidance_scale\": 10}",
        "{\"prompt\": \"x\", \"seed\": 0}", "{\"prompt\": \"x\", \"format\": \"opus\"}",
        "{\"prompt\": \"x\", \"format\": \"mp3\"}", "{\"prompt\": \"x\", \"format\": \"Ogg\"}",
    };
    for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++) {
        rc = pj(edges[i], &r, &e);
        CHECK(rc == MG_OK, "edge %s: %s", edges[i], e.msg);
        mg_request_free(&r);
    }

    /* the prompt's length is counted in characters, after trimming */
    char body[2200];
    int  k = snprintf(body, sizeof body, "{\"prompt\": \"  ");
    for (int i = 0; i < 500; i++)
        k += snprintf(body + k, sizeof body - k, "\xc3\xa9");
    snprintf(body + k, sizeof body - k, "  \"}");
    rc = pj(body, &r, &e);
    CHECK(rc == MG_OK && strlen(r.prompt) == 1000, "500 two-byte characters: %s", e.msg);
    mg_request_free(&r);
    k = snprintf(body, sizeof body, "{\"prompt\": \"");
    for (int i = 0; i < 501; i++)
        body[k++] = 'a';
    snprintf(body + k, sizeof body - k, "\"}");
    rc = pj(body, &r, &e);
    CHECK(rc == MG_ERR_INVALID && strcmp(e.field, "prompt") == 0 && strstr(e.msg, "too long"),
          "501 characters: %s", e.msg);
    mg_request_free(&r);

    /* other limits: max_top_k / max_guidance defaults, the range mg_duration_limits
     * decides for an operator's maximum of 5 s (the default then 5 s, not 10) */
    mg_request_limits lim = { .default_format = MG_AUDIO_OGG };
    CHECK(mg_duration_limits(NULL, 5, 0, &lim.duration, &e) == MG_OK, "limits: %s", e.msg);
    const char *b = "{\"prompt\": \"x\", \"top_k\": 2048, \"guidance_scale\": 10}";
    rc = mg_request_parse_json(b, strlen(b), &lim, &r, &e);
    CHECK(rc == MG_OK && r.duration == 5 && r.format == MG_AUDIO_OGG, "limits: %s", e.msg);
    mg_request_free(&r);
    b = "{\"prompt\": \"x\", \"duration\": 6}";
    rc = mg_request_parse_json(b, strlen(b), &lim, &r, &e);
    CHECK(rc == MG_ERR_INVALID && strcmp(e.field, "duration") == 0
          && strstr(e.msg, "duration: must be at least 1 and at most 5 (got 6)"),
          "limits: max_duration: %s", e.msg);
    /* a model whose window is shorter than a second: the range's minimum is the parser's */
    mg_model_info brief = {.frame_rate = 50, .max_frames = 25, .max_duration = 0.5};
    CHECK(mg_duration_limits(&brief, 0, 0, &lim.duration, &e) == MG_OK, "limits: %s", e.msg);
    b = "prompt=x&duration=0.5";
    rc = mg_request_parse_query(b, strlen(b), &lim, &r, &e);
    CHECK(rc == MG_OK && r.duration == 0.5f, "limits: a 0.5 s window: %s", e.msg);
    mg_request_free(&r);
    b = "prompt=x";
    rc = mg_request_parse_query(b, strlen(b), &lim, &r, &e);
    CHECK(rc == MG_OK && r.duration == 0.5f, "limits: the default within a 0.5 s window: %s", e.msg);
    mg_request_free(&r);
    b = "prompt=x&duration=0.51";
    rc = mg_request_parse_query(b, strlen(b), &lim, &r, &e);
    CHECK(rc == MG_ERR_INVALID && strstr(e.msg, "at least 0.5 and at most 0.5"),
          "limits: past a 0.5 s window: %s", e.msg);
    /* a range no mg_duration_limits call gives (the body is valid under LIM) */
    b = "{\"prompt\": \"x\", \"duration\": 5}";
    lim.duration = (mg_duration_range){.min = 1, .max = 0, .dflt = 1};
    rc = mg_request_parse_json(b, strlen(b), &lim, &r, &e);
    CHECK(rc == MG_ERR_INVALID && r.prompt == NULL, "bad limits accepted");
    lim.duration = (mg_duration_range){.min = 0, .max = 30, .dflt = 10};
    rc = mg_request_parse_json(b, strlen(b), &lim, &r, &e);
    CHECK(rc == MG_ERR_INVALID && r.prompt == NULL, "a zero minimum accepted");
    lim.duration = (mg_duration_range){.min = 1, .max = 30, .dflt = 31};
    rc = mg_request_parse_json(b, strlen(b), &lim, &r, &e);
    CHECK(rc == MG_ERR_INVALID && r.prompt == NULL, "a default past the maximum accepted");
    rc = mg_request_parse_json(b, strlen(b), NULL, &r, &e);
    CHECK(rc == MG_ERR_INVALID, "NULL limits accepted");
    rc = mg_request_parse_json(NULL, 0, &LIM, &r, &e);
    CHECK(rc == MG_ERR_INVALID && strcmp(e.field, "") == 0, "NULL body accepted");
}

static void test_analysis(void)
{
    mg_request r;
    mg_error   e;
    /* the front end's example, with sampling fields and extras */
    mg_code rc = pj("{\"mood\": \"joyful\", \"energy\": 8, \"genres\": [\"electronic\"], "
                    "\"tempo_bpm\": 120, \"styleLevel\": 7, \"vocalType\": \"instrumental\", "
                    "\"colors\": [\"#ff0\"], \"description\": \"a sunny beach\", "
                    "\"duration\": 8, \"seed\": 7, \"format\": \"mp3\"}", &r, &e);
    CHECK(rc == MG_OK, "analysis: %s", e.msg);
    if (rc == MG_OK) {
        printf("analysis prompt: %s\n", r.prompt);
        CHECK(r.from_analysis, "analysis: from_analysis");
        CHECK(strstr(r.prompt, "modern electronic, uplifting cheerful, moderate upbeat tempo, "
                               "with synthesizers, electronic drums, bass") == r.prompt,
              "analysis: prompt \"%s\"", r.prompt);
        CHECK(strstr(r.prompt, "powerful driving dynamics, high quality production"),
              "analysis: prompt end \"%s\"", r.prompt);
        CHECK(r.duration == 8 && r.has_seed && r.seed == 7 && r.format == MG_AUDIO_MP3,
              "analysis: sampling fields");
    }
    char *first = r.prompt;
    r.prompt = NULL;

    /* the same in an "analysis" wrapper, with the other spellings */
    rc = pj("{\"analysis\": {\"mood\": \"joyful\", \"energy\": 8, \"genres\": [\"electronic\"], "
            "\"tempo\": 120, \"style_level\": 7, \"vocal_type\": \"instrumental\", "
            "\"description\": \"x\"}, \"duration\": 8}", &r, &e);
    CHECK(rc == MG_OK && first && strcmp(r.prompt, first) == 0, "wrapper: %s / %s", e.msg,
          rc == MG_OK ? r.prompt : "");
    mg_request_free(&r);

    /* and as a query string */
    rc = pq("mood=joyful&energy=8&genres=electronic&tempoBpm=120&styleLevel=7"
            "&vocalType=instrumental&duration=8&raw=%zz", &r, &e);
    CHECK(rc == MG_OK && first && strcmp(r.prompt, first) == 0, "query analysis: %s", e.msg);
    mg_request_free(&r);
    free(first);

    /* unknown mood and genre still give a prompt */
    rc = pj("{\"mood\": \"flibbertigibbet\", \"genres\": [\"zydecore\"]}", &r, &e);
    CHECK(rc == MG_OK && r.from_analysis && strstr(r.prompt, "flibbertigibbet") &&
          strstr(r.prompt, "zydecore"), "unknown mood/genre: %s", rc ? e.msg : r.prompt);
    mg_request_free(&r);

    /* energy alone is enough */
    rc = pj("{\"energy\": 2}", &r, &e);
    CHECK(rc == MG_OK && r.from_analysis, "energy only: %s", e.msg);
    mg_request_free(&r);

    /* both forms: the prompt wins */
    rc = pj("{\"prompt\": \"solo violin\", \"mood\": \"dark\", \"genres\": [\"metal\"]}", &r, &e);
    CHECK(rc == MG_OK && !r.from_analysis && strcmp(r.prompt, "solo violin") == 0,
          "both: %s", e.msg);
    mg_request_free(&r);

    /* comma-separated lists in a query */
    rc = pq("genres=rock,jazz&instruments=cello,harp&mood=calm", &r, &e);
    CHECK(rc == MG_OK && strstr(r.prompt, "with cello, harp") &&
          strstr(r.prompt, "jazz influences"), "query lists: %s", rc ? e.msg : r.prompt);
    mg_request_free(&r);
}

/* A 0.5 s stereo WAV at 44.1 kHz (16-bit) written by hand: left a ramp,
 * right silence, so the decoded channels are told apart. */
static size_t stereo_wav(uint8_t *out, size_t frames)
{
    static const uint8_t hdr[36] = { 'R', 'I', 'F', 'F', 0, 0, 0, 0, 'W', 'A', 'V', 'E', 'f', 'm', 't',
                                     ' ', 16, 0, 0, 0, 1, 0, 2, 0, 0x44, 0xac, 0, 0, 0x10, 0xb1, 2,
                                     0, 4, 0, 16, 0 };
    size_t data = frames * 4;
    memcpy(out, hdr, sizeof hdr);
    uint32_t riff = (uint32_t)(36 + 8 + data);
    for (int i = 0; i < 4; i++)
        out[4 + i] = (uint8_t)(riff >> (8 * i));
    memcpy(out + 36, "data", 4);
    for (int i = 0; i < 4; i++)
        out[40 + i] = (uint8_t)((uint32_t)data >> (8 * i));
    for (size_t f = 0; f < frames; f++) {
        int16_t l = (int16_t)(8000 * ((double)f / (double)frames - 0.5) * 2);
        out[44 + 4 * f] = (uint8_t)l, out[45 + 4 * f] = (uint8_t)((uint16_t)l >> 8);
        out[46 + 4 * f] = 0, out[47 + 4 * f] = 0;
    }
    return 44 + data;
}

static void test_audio_prompt(void)
{
    enum { FRAMES = 22050 };
    static uint8_t wav[44 + FRAMES * 4];
    size_t len = stereo_wav(wav, FRAMES);
    char  *url = NULL, *body = NULL;
    size_t url_len = 0;
    mg_error e;
    CHECK(mg_audio_data_url(wav, len, MG_AUDIO_WAV, &url, &url_len, &e) == MG_OK, "%s", e.msg);
    body = url ? malloc(url_len + 64) : NULL;
    if (!body) {
        CHECK(0, "out of memory");
        free(url);
        return;
    }
    int n = snprintf(body, url_len + 64, "{\"prompt\": \"a\", \"audio_prompt\": \"%s\"}", url);
    mg_request r;
    mg_code rc = parse(0, body, (size_t)n, &r, &e);
    CHECK(rc == MG_OK, "audio_prompt: %s", e.msg);
    if (rc == MG_OK) {
        /* 0.5 s at 44.1 kHz is 16000 frames at 32 kHz; both channels kept */
        CHECK(r.audio_prompt.samples && r.audio_prompt.frames == 16000 &&
              r.audio_prompt.channels == 2 && r.audio_prompt.rate == 32000 &&
              r.audio_prompt.source_rate == 44100, "audio_prompt: %zu frames, %d channels",
              r.audio_prompt.frames, r.audio_prompt.channels);
        float l = r.audio_prompt.samples[2 * 8000], rr = r.audio_prompt.samples[2 * 8000 + 1];
        CHECK(fabsf(l) < 0.01f && fabsf(rr) < 1e-6f, "audio_prompt middle: %g %g", l, rr);
        float l3 = r.audio_prompt.samples[2 * 12000];
        CHECK(fabsf(l3 - 0.122f) < 0.01f, "audio_prompt at 3/4: %g", l3);  /* 4000 / 32768 */
        CHECK(r.audio_prompt_hash != 0 && !r.has_extend_stride, "audio_prompt hash");
        uint64_t h = r.audio_prompt_hash;
        mg_request_free(&r);
        CHECK(r.audio_prompt.samples == NULL && r.prompt == NULL, "free clears");
        /* the same file gives the same hash; another file another */
        rc = parse(0, body, (size_t)n, &r, &e);
        CHECK(rc == MG_OK && r.audio_prompt_hash == h, "hash stable");
        mg_request_free(&r);
        wav[100] ^= 1;
        free(url);
        url = NULL;
        CHECK(mg_audio_data_url(wav, len, MG_AUDIO_WAV, &url, &url_len, &e) == MG_OK, "%s", e.msg);
        n = url ? snprintf(body, url_len + 64, "{\"prompt\": \"a\", \"audio_prompt\": \"%s\"}",
                           url) : 0;
        rc = parse(0, body, (size_t)n, &r, &e);
        CHECK(rc == MG_OK && r.audio_prompt_hash != h, "hash differs for another file");
        mg_request_free(&r);
        /* a bad one after a good prompt: nothing is left to free */
        memcpy(body + n - 10, "!!", 2);
        rc = parse(0, body, (size_t)n, &r, &e);
        CHECK(rc == MG_ERR_INVALID && strcmp(e.field, "audio_prompt") == 0 && !r.prompt &&
              !r.audio_prompt.samples, "bad base64 after a prompt: %s", e.msg);
    }
    free(url);
    free(body);

    /* extend_stride in both forms */
    rc = pj("{\"prompt\": \"a\", \"extend_stride\": 18}", &r, &e);
    CHECK(rc == MG_OK && r.has_extend_stride && r.extend_stride == 18.0f && !r.audio_prompt.samples,
          "extend_stride json: %s", e.msg);
    mg_request_free(&r);
    rc = pq("prompt=a&extend_stride=7.5", &r, &e);
    CHECK(rc == MG_OK && r.has_extend_stride && r.extend_stride == 7.5f, "extend_stride query: %s",
          e.msg);
    mg_request_free(&r);
    rc = pj("{\"prompt\": \"a\", \"extend_stride\": null}", &r, &e);
    CHECK(rc == MG_OK && !r.has_extend_stride, "extend_stride null: %s", e.msg);
    mg_request_free(&r);
}

static void test_query(void)
{
    mg_request r;
    mg_error   e;
    mg_code rc = pq("&&prompt=calm+piano%20%C3%A9t%c3%a9&duration=12.5&seed=1e3&top_k=40"
                    "&format=mp3&description=x&&", &r, &e);
    CHECK(rc == MG_OK, "query: %s", e.msg);
    if (rc == MG_OK) {
        CHECK(strcmp(r.prompt, "calm piano \xc3\xa9t\xc3\xa9") == 0, "query: prompt \"%s\"",
              r.prompt);
        CHECK(r.duration == 12.5f && r.seed == 1000 && r.top_k == 40 && r.format == MG_AUDIO_MP3,
              "query: values");
    }
    mg_request_free(&r);

    /* the length is honoured: "&duration=5" lies past len */
    const char *s = "prompt=ab&duration=5";
    rc = parse(1, s, 9, &r, &e);
    CHECK(rc == MG_OK && strcmp(r.prompt, "ab") == 0 && r.duration == LIM.duration.dflt,
          "query length: %s", e.msg);
    mg_request_free(&r);
    rc = parse(1, "prompt=a%4", 9, &r, &e);  /* an escape cut by len */
    CHECK(rc == MG_ERR_INVALID && strcmp(e.field, "prompt") == 0, "cut escape: %s", e.msg);
    rc = parse(0, "{\"prompt\": \"a\"}xyz", 15, &r, &e);
    CHECK(rc == MG_OK && strcmp(r.prompt, "a") == 0, "json length: %s", e.msg);
    mg_request_free(&r);
    rc = parse(0, "{\"prompt\": \"a\"}", 14, &r, &e);
    CHECK(rc == MG_ERR_INVALID && strcmp(e.field, "") == 0, "json cut: %s", e.msg);
    rc = mg_request_parse_query(NULL, 0, &LIM, &r, &e);
    CHECK(rc == MG_ERR_INVALID && strcmp(e.field, "prompt") == 0, "NULL query: %s", e.msg);
}

/* Random and mutated inputs: must not crash or leak; results consistent. */
/* ---- named models: "model" picks one, its limits then hold ---- */

static void test_models(void)
{
    /* "big": musicgen_max_duration 30, a 2048-code vocabulary, 32 kHz; "short":
     * a 5 s maximum, 64 codes, 24 kHz; a request naming none gets "short" */
    const mg_request_model models[] = {
        {.name = "big", .duration = {.min = 1, .max = 30, .dflt = 10}, .max_top_k = 2048,
         .audio_rate = 32000},
        {.name = "short", .duration = {.min = 1, .max = 5, .dflt = 5}, .max_top_k = 64,
         .audio_rate = 24000},
    };
    mg_request_limits lim = {.default_format = MG_AUDIO_WAV, .models = models, .n_models = 2,
                             .default_model = 1};
    mg_request r;
    mg_error   e;
    const char *b;
    mg_code     rc;
#define PARSE_JSON(body) (b = (body), memset(&e, 0, sizeof e), \
                          mg_request_parse_json(b, strlen(b), &lim, &r, &e))
#define PARSE_QUERY(q)   (b = (q), memset(&e, 0, sizeof e), \
                          mg_request_parse_query(b, strlen(b), &lim, &r, &e))

    /* none named: the default model, with its default duration */
    rc = PARSE_JSON("{\"prompt\": \"a\"}");
    CHECK(rc == MG_OK && r.model == 1 && r.duration == 5, "default model: %s", e.msg);
    mg_request_free(&r);
    rc = PARSE_JSON("{\"prompt\": \"a\", \"model\": null}");
    CHECK(rc == MG_OK && r.model == 1, "model null is the default: %s", e.msg);
    mg_request_free(&r);
    /* named, in both forms: that model's duration range and top_k ceiling */
    rc = PARSE_JSON("{\"prompt\": \"a\", \"model\": \"big\", \"duration\": 20, \"top_k\": 2048}");
    CHECK(rc == MG_OK && r.model == 0 && r.duration == 20 && r.top_k == 2048, "big: %s", e.msg);
    mg_request_free(&r);
    rc = PARSE_QUERY("prompt=a&model=big");
    CHECK(rc == MG_OK && r.model == 0 && r.duration == 10, "big by query, its default: %s", e.msg);
    mg_request_free(&r);
    rc = PARSE_QUERY("model=short&prompt=a&duration=5");
    CHECK(rc == MG_OK && r.model == 1 && r.duration == 5, "short by query: %s", e.msg);
    mg_request_free(&r);
    /* what one model allows the other refuses, naming the field and the chosen model's limit */
    rc = PARSE_JSON("{\"prompt\": \"a\", \"duration\": 20}");
    CHECK(rc == MG_ERR_INVALID && strcmp(e.field, "duration") == 0
          && strstr(e.msg, "at most 5 (got 20)") && r.prompt == NULL,
          "the default's maximum: %s", e.msg);
    rc = PARSE_QUERY("prompt=a&model=short&top_k=100");
    CHECK(rc == MG_ERR_INVALID && strcmp(e.field, "top_k") == 0 && strstr(e.msg, "at most 64"),
          "short's top_k: %s", e.msg);
    rc = PARSE_QUERY("prompt=a&model=big&top_k=100");
    CHECK(rc == MG_OK && r.top_k == 100, "big's top_k: %s", e.msg);
    mg_request_free(&r);
    /* an unknown name: 400 naming "model", listing the names there are; the
     * name is checked before the fields whose limits it decides */
    rc = PARSE_JSON("{\"prompt\": \"a\", \"model\": \"medium\", \"duration\": 999}");
    CHECK(rc == MG_ERR_INVALID && strcmp(e.field, "model") == 0
          && strstr(e.msg, "model: unknown model \"medium\" (this server has: big, short)")
          && r.prompt == NULL, "unknown model: %s", e.msg);
    rc = PARSE_QUERY("prompt=a&model=Big");
    CHECK(rc == MG_ERR_INVALID && strcmp(e.field, "model") == 0 && strstr(e.msg, "\"Big\""),
          "names are exact (case): %s", e.msg);
    rc = PARSE_QUERY("prompt=a&model=");
    CHECK(rc == MG_ERR_INVALID && strcmp(e.field, "model") == 0 && strstr(e.msg, "unknown model \"\""),
          "an empty name: %s", e.msg);
    rc = PARSE_QUERY("prompt=a&model=big%20");
    CHECK(rc == MG_ERR_INVALID && strcmp(e.field, "model") == 0, "a name with a space after: %s",
          e.msg);
    rc = PARSE_JSON("{\"prompt\": \"a\", \"model\": \"big\\u0000x\"}");
    CHECK(rc == MG_ERR_INVALID && strcmp(e.field, "model") == 0, "a name past a NUL: %s", e.msg);
    rc = PARSE_JSON("{\"prompt\": \"a\", \"model\": 1}");
    CHECK(rc == MG_ERR_INVALID && strcmp(e.field, "model") == 0 && strstr(e.msg, "must be a string"),
          "a number: %s", e.msg);
    rc = PARSE_QUERY("prompt=a&model=big&model=short");
    CHECK(rc == MG_ERR_INVALID && strcmp(e.field, "model") == 0, "given twice: %s", e.msg);
    rc = PARSE_JSON("{\"prompt\": \"a\", \"analysis\": {\"model\": \"big\"}}");
    CHECK(rc == MG_ERR_INVALID && strcmp(e.field, "analysis.model") == 0,
          "inside analysis: %s", e.msg);

    /* an audio_prompt is resampled to the chosen model's rate */
    enum { FRAMES = 4410 };
    static uint8_t wav[44 + FRAMES * 4];
    size_t len = stereo_wav(wav, FRAMES);
    char  *url = NULL, *body = NULL;
    size_t url_len = 0;
    CHECK(mg_audio_data_url(wav, len, MG_AUDIO_WAV, &url, &url_len, &e) == MG_OK, "%s", e.msg);
    body = url ? malloc(url_len + 64) : NULL;
    CHECK(body != NULL, "out of memory");
    if (body) {
        snprintf(body, url_len + 64, "{\"prompt\": \"a\", \"audio_prompt\": \"%s\"}", url);
        rc = PARSE_JSON(body);
        CHECK(rc == MG_OK && r.audio_prompt.rate == 24000 && r.audio_prompt.frames == 2400,
              "audio_prompt at the default model's rate: %s", e.msg);
        mg_request_free(&r);
        snprintf(body, url_len + 64, "{\"model\": \"big\", \"prompt\": \"a\", "
                 "\"audio_prompt\": \"%s\"}", url);
        rc = PARSE_JSON(body);
        CHECK(rc == MG_OK && r.audio_prompt.rate == 32000 && r.audio_prompt.frames == 3200,
              "audio_prompt at big's rate: %s", e.msg);
        mg_request_free(&r);
    }
    free(body);
    free(url);

    /* limits that make no sense are the caller's error, whatever the body */
    lim.default_model = 2;
    rc = PARSE_JSON("{\"prompt\": \"a\"}");
    CHECK(rc == MG_ERR_INVALID && strstr(e.msg, "default_model 2"), "default past the list: %s",
          e.msg);
    lim.default_model = 0;
    mg_request_model unnamed[] = {models[0], models[1]};
    unnamed[1].name = "";
    lim.models = unnamed;
    rc = PARSE_JSON("{\"prompt\": \"a\"}");
    CHECK(rc == MG_ERR_INVALID && strstr(e.msg, "model 1 has no name"), "unnamed: %s", e.msg);
    unnamed[1] = models[1];
    unnamed[1].duration.dflt = 6;
    rc = PARSE_JSON("{\"prompt\": \"a\"}");
    CHECK(rc == MG_ERR_INVALID && strstr(e.msg, "of model short"), "a bad range: %s", e.msg);
#undef PARSE_JSON
#undef PARSE_QUERY
}

static void test_fuzz(void)
{
    static const char *const seeds[] = {
        "{\"prompt\": \"calm piano\", \"duration\": 5, \"seed\": 3, \"format\": \"ogg\"}",
        "{\"mood\": \"joyful\", \"energy\": 8, \"genres\": [\"rock\", \"jazz\"], \"tempo\": 99}",
        "{\"analysis\": {\"mood\": \"sad\", \"instruments\": [\"cello\"]}, \"top_p\": 0.5}",
        "prompt=calm+piano&duration=5&seed=3&format=ogg",
        "mood=joyful&energy=8&genres=rock,jazz&tempo=99&raw=1",
        "prompt=%C3%A9t%C3%A9&top_k=4&top_p=0.5",
    };
    static const char alphabet[] = "{}[]\":,=&%+-.0123456789eE abcfgmnoprstuz\\\xc3\xa9\xff";
    uint64_t x = 0x9e3779b97f4a7c15ull;
    int ok = 0, bad_ok = 0, bad_err = 0;
    for (int it = 0; it < 20000; it++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        const char *sd = seeds[it % 6];
        size_t      n = strlen(sd);
        char        buf[160];
        memcpy(buf, sd, n);
        int edits = 1 + (int)(x % 4);
        for (int k = 0; k < edits; k++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            size_t pos = (size_t)((x >> 8) % n);
            char   c = alphabet[(x >> 24) % (sizeof alphabet - 1)];
            if ((x >> 40) % 3 == 0 && n < sizeof buf - 1) {  /* insert */
                memmove(buf + pos + 1, buf + pos, n - pos);
                buf[pos] = c;
                n++;
            } else if ((x >> 40) % 3 == 1 && n > 1) {        /* delete */
                memmove(buf + pos, buf + pos + 1, n - pos - 1);
                n--;
            } else {
                buf[pos] = c;
            }
        }
        if ((x >> 50) % 5 == 0)
            n = (size_t)((x >> 20) % (n + 1));              /* truncate */
        mg_request r;
        mg_error   e;
        mg_code    rc = parse(it % 6 >= 3, buf, n, &r, &e);
        if (rc == MG_OK) {
            ok++;
            bad_ok += !r.prompt || !r.prompt[0] || r.duration < 1 || r.duration > 30;
        } else {
            bad_err += rc != MG_ERR_INVALID || r.prompt != NULL || e.msg[0] == 0;
        }
        mg_request_free(&r);
    }
    printf("fuzz: %d of 20000 accepted\n", ok);
    CHECK(bad_ok == 0, "fuzz: %d accepted requests malformed", bad_ok);
    CHECK(bad_err == 0, "fuzz: %d errors malformed", bad_err);
    CHECK(ok > 100, "fuzz: only %d accepted (mutations too strong?)", ok);
}

int main(void)
{
    test_errors();
    test_direct();
    test_analysis();
    test_query();
    test_audio_prompt();
    test_models();
    test_fuzz();
    return check_summary("request");
}
