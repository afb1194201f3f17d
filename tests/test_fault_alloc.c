/* Allocation failure inside a job: every malloc/calloc/realloc/posix_memalign/
 * strdup the engine makes during one generation is made to fail in turn (the
 * binary is linked with -Wl,--wrap for those, see the Makefile; jansson's
 * allocations go through the same hook). Each run must end in MG_ERR_NOMEM
 * (or succeed with the same bytes, where a failure has a fallback), free its
 * place in the scheduler, and leave the model able to serve the next job
 * bit for bit. Under SAN=1, ASan checks every one of those error paths for
 * leaks and invalid accesses. Model loading is not armed: only the job. */
#include <jansson.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "service/job.h"

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
int   __real_posix_memalign(void **p, size_t align, size_t n);
char *__real_strdup(const char *s);
char *__real_strndup(const char *s, size_t n);

/* The hook's state: test-only, shared by the job's threads. fail_at < 0: off. */
static atomic_long alloc_count;
static atomic_long fail_at = -1;

static int should_fail(void)
{
    long f = atomic_load(&fail_at);
    if (f < 0)
        return 0;
    return atomic_fetch_add(&alloc_count, 1) == f;
}

void *__wrap_malloc(size_t n) { return should_fail() ? NULL : __real_malloc(n); }
void *__wrap_calloc(size_t n, size_t size) { return should_fail() ? NULL : __real_calloc(n, size); }
void *__wrap_realloc(void *p, size_t n) { return should_fail() ? NULL : __real_realloc(p, n); }
int   __wrap_posix_memalign(void **p, size_t align, size_t n)
{
    return should_fail() ? 12 /* ENOMEM */ : __real_posix_memalign(p, align, n);
}
char *__wrap_strdup(const char *s) { return should_fail() ? NULL : __real_strdup(s); }
char *__wrap_strndup(const char *s, size_t n) { return should_fail() ? NULL : __real_strndup(s, n); }
static void *json_fault_malloc(size_t n) { return should_fail() ? NULL : __real_malloc(n); }

/* The same response JSON but for the time it took. */
static int same_json(const char *a, const char *b)
{
    if (!a || !b)
        return 0;
    json_t *ja = json_loads(a, 0, NULL), *jb = json_loads(b, 0, NULL);
    int same = 0;
    if (ja && jb) {
        json_object_del(ja, "generation_time_seconds");
        json_object_del(jb, "generation_time_seconds");
        same = json_equal(ja, jb);
    }
    json_decref(ja);
    json_decref(jb);
    return same;
}

/* Counts (fail_at = LONG_MAX) or fails the fail_at-th allocation of one job. */
static mg_code run_job(mg_model *m, const mg_request *req, long fail, mg_job_result *res, mg_error *err,
                       long *n_allocs)
{
    atomic_store(&alloc_count, 0);
    atomic_store(&fail_at, fail);
    mg_code rc = mg_job_run(m, req, NULL, 1, "tiny", res, err);
    atomic_store(&fail_at, -1);
    if (n_allocs)
        *n_allocs = atomic_load(&alloc_count);
    return rc;
}

static void test_fault_sweep(const char *dir)
{
    mg_model *m = NULL;
    mg_error err = {0};
    mg_model_options opt = {.n_threads = 2};
    if (mg_model_load(&m, dir, &opt, &err) != MG_OK) {
        CHECK(0, "load: %s", err.msg);
        return;
    }
    json_set_alloc_funcs(json_fault_malloc, free);
    mg_request_limits lim = {.duration = {.min = MG_MIN_DURATION, .max = 30, .dflt = 1},
                             .default_format = MG_AUDIO_WAV};
    const char *body = "{\"prompt\": \"calm piano with soft drums\", \"duration\": 1, \"seed\": 3}";
    mg_request req = {0};
    CHECK(mg_request_parse_json(body, strlen(body), &lim, &req, &err) == MG_OK, "parse: %s", err.msg);

    mg_job_result base;
    long total = 0;
    mg_code rc = run_job(m, &req, 0x7fffffffL, &base, &err, &total);
    CHECK(rc == MG_OK && total > 10, "baseline job: %s, %ld allocations", mg_code_name(rc), total);
    if (rc != MG_OK) {
        mg_request_free(&req);
        mg_model_free(m);
        return;
    }
    /* every allocation of the first 200 and of the last 100, and a spread between */
    long stride = total > 600 ? total / 300 : 1, tried = 0, nomem = 0, bad = 0;
    for (long k = 0; k < total; k += (k < 200 || k >= total - 100) ? 1 : stride) {
        mg_job_result res;
        mg_error e = {0};
        rc = run_job(m, &req, k, &res, &e, NULL);
        tried++;
        int running = -1, waiting = -1;
        mg_model_activity(m, &running, &waiting);
        if (rc == MG_ERR_NOMEM) {
            nomem++;
        } else if (rc == MG_OK) {
            /* the failed allocation had a fallback: the output must not change */
            if (res.audio_len != base.audio_len || memcmp(res.audio, base.audio, base.audio_len)) {
                bad++;
                printf("FAIL allocation %ld failed silently: different audio\n", k);
            } else if (!same_json(res.json, base.json)) {
                bad++;
                printf("FAIL allocation %ld failed silently: JSON %s\n", k, res.json ? res.json : "(none)");
            }
            mg_job_result_free(&res);
        } else {
            bad++;
            printf("FAIL allocation %ld: %s (%s), expected NOMEM\n", k, mg_code_name(rc), e.msg);
        }
        if (running != 0 || waiting != 0) {
            bad++;
            printf("FAIL allocation %ld: %d running, %d waiting after the job\n", k, running, waiting);
        }
    }
    printf("%ld of the job's %ld allocations failed in turn: %ld NOMEM, %ld recovered, %ld wrong\n",
           tried, total, nomem, tried - nomem - bad, bad);
    CHECK(bad == 0 && nomem > 0, "%ld of %ld allocations failed in turn: %ld NOMEM, %ld wrong", tried,
          total, nomem, bad);
    mg_job_result after;
    rc = run_job(m, &req, -1, &after, &err, NULL);
    CHECK(rc == MG_OK && after.audio_len == base.audio_len && !memcmp(after.audio, base.audio, base.audio_len),
          "after every failure the model serves the same bytes again");
    if (rc == MG_OK)
        mg_job_result_free(&after);
    mg_job_result_free(&base);
    json_set_alloc_funcs(malloc, free);
    mg_request_free(&req);
    mg_model_free(m);
}

/* The error and status bodies are complete or not made at all. */
static void test_fault_bodies(void)
{
    json_set_alloc_funcs(json_fault_malloc, free);
    char *full = mg_job_error_json("duration: must be in [1, 30]", "duration", NULL);
    /* two models, one not loaded (weights null) */
    const mg_job_model_status models[] = {
        {.name = "m", .folder = "/srv/m", .device = "cpu", .weights = "q8", .loaded = 1, .running = 1},
        {.name = "n", .folder = "/srv/n", .device = "auto", .queued = 2},
    };
    mg_job_stats st = {.model = "m", .device = "cpu", .loaded = 1, .completed = 3, .audio_seconds = 2,
                       .compute_seconds = 1, .models = models, .n_models = 2};
    char *full_status = mg_job_status_json(&st, NULL);
    CHECK(full_status && strstr(full_status, "\"models\":[{\"name\":\"m\",\"folder\":\"/srv/m\","
                                "\"loaded\":true,\"device\":\"cpu\",\"weights\":\"q8\",\"running\":1,"
                                "\"queue_depth\":0},{\"name\":\"n\",\"folder\":\"/srv/n\",\"loaded\":false,"
                                "\"device\":\"auto\",\"weights\":null,\"running\":0,\"queue_depth\":2}]"),
          "status JSON lists the models: %s", full_status ? full_status : "(none)");
    int bad = 0;
    for (long k = 0; k < 160; k++) {
        atomic_store(&alloc_count, 0);
        atomic_store(&fail_at, k);
        char *e = mg_job_error_json("duration: must be in [1, 30]", "duration", NULL);
        atomic_store(&alloc_count, 0);
        char *t = mg_job_status_json(&st, NULL);
        atomic_store(&fail_at, -1);
        if ((e && strcmp(e, full)) || (t && strcmp(t, full_status))) {
            bad++;
            printf("incomplete at %ld: %s %s\n", k, e ? e : "-", t ? t : "-");
        }
        free(e);
        free(t);
    }
    json_set_alloc_funcs(malloc, free);
    CHECK(full && full_status && bad == 0, "error/status JSON under allocation failure: %d incomplete", bad);
    free(full);
    free(full_status);
}

int main(void)
{
    test_fault_bodies();
    char dir[4200], probe[4300];
    snprintf(dir, sizeof dir, "%s/tiny-a", check_golden_dir());
    snprintf(probe, sizeof probe, "%s/spiece.model", dir);
    if (access(probe, R_OK) != 0)
        SKIP("golden tiny-a model with spiece.model not found at %s", dir);
    else
        test_fault_sweep(dir);
    return check_summary("test_fault_alloc");
}
