/* HTTP jobs: the response JSON, error JSON, and the ETag of seeded requests. */
#include <string.h>
#include <unistd.h>

#include "check.h"
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
    req.has_seed = 0;
    test_audio_size(m, &lim);
    CHECK(mg_job_etag(m, &req, NULL, "tiny", b, &err) == MG_ERR_INVALID && !strcmp(err.field, "seed"),
          "no seed, no ETag");
    mg_request_free(&req);
    mg_model_free(m);
}

int main(void)
{
    test_error_json();
    char dir[4200], probe[4300];
    snprintf(dir, sizeof dir, "%s/tiny-a", check_golden_dir());
    snprintf(probe, sizeof probe, "%s/spiece.model", dir);
    if (access(probe, R_OK) != 0)
        SKIP("golden tiny-a model with spiece.model not found at %s", dir);
    else
        test_jobs(dir);
    return check_summary("test_job");
}
