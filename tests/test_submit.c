/* The asynchronous engine API (mg_generate_submit, mg_gen_task_cancel): a
 * submit returns at once, on_done comes once on the scheduler thread with
 * the result mg_generate_ids gives, the caller's buffers may go as soon as
 * submit returns, a cancel takes effect before the next step (or takes a
 * waiting generation out of the queue), and a model freed with generations
 * queued ends each of them through on_done. */
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "runtime/musicgen.h"

static const int32_t IDS[2 * 5] = {100, 200, 300, 1, 0, 7, 8, 9, 10, 1};
static const uint8_t MASK[2 * 5] = {1, 1, 1, 1, 0, 1, 1, 1, 1, 1};

/* What one submitted generation saw. */
typedef struct {
    sem_t          done;          /* posted by on_done */
    int            calls;         /* on_done calls */
    pthread_t      thread;        /* on_done's */
    mg_code        rc;
    mg_error       err;
    mg_gen_result  res;           /* moved out of on_done's */
    int            last_step;     /* the progress hook's last step */
    mg_gen_task   *task;
    int            cancel_at;     /* the progress hook cancels at this step (0: never) */
    sem_t         *hold;          /* the progress hook waits on it at its first step */
} run;

static void run_init(run *r)
{
    memset(r, 0, sizeof *r);
    sem_init(&r->done, 0, 0);
}

static void on_done(void *ud, mg_code rc, const mg_error *err, mg_gen_result *res)
{
    run *r = ud;
    r->calls++;
    r->thread = pthread_self();
    r->rc = rc;
    r->err = *err;
    r->res = *res;
    memset(res, 0, sizeof *res);
    sem_post(&r->done);
}

static int progress(void *ud, int step, int total)
{
    run *r = ud;
    (void)total;
    r->last_step = step;
    if (r->hold && step == 1)
        sem_wait(r->hold);
    if (r->cancel_at && step == r->cancel_at)
        mg_gen_task_cancel(r->task);
    return 0;
}

static void params(mg_model *m, mg_gen_params *p)
{
    mg_gen_params_default(m, p);
    p->max_new_tokens = 20;
    p->seed = 77;
    p->sampling.do_sample = 1;
    p->sampling.top_k = 10;
    p->sampling.guidance_scale = 3;
}

/* The result arrives through on_done, on another thread, equal to the
 * blocking call's; the inputs are copied at submit. */
static void test_result(mg_model *m)
{
    mg_gen_params p;
    params(m, &p);
    mg_gen_result want;
    mg_error err = {0};
    if (mg_generate_ids(m, IDS, MASK, 2, 5, &p, NULL, &want, &err) != MG_OK) {
        CHECK(0, "blocking generation: %s", err.msg);
        return;
    }
    int32_t *ids = malloc(sizeof IDS);
    uint8_t *mask = malloc(sizeof MASK);
    mg_gen_params *pp = malloc(sizeof *pp);
    run r;
    run_init(&r);
    if (!ids || !mask || !pp) {
        CHECK(0, "alloc");
        free(ids), free(mask), free(pp);
        mg_gen_result_free(&want);
        return;
    }
    memcpy(ids, IDS, sizeof IDS);
    memcpy(mask, MASK, sizeof MASK);
    *pp = p;
    mg_code rc = mg_generate_submit(m, ids, mask, 2, 5, pp, NULL, on_done, &r, &r.task, &err);
    CHECK(rc == MG_OK && r.task != NULL, "submit: %s", err.msg);
    /* the caller's copies may go at once */
    memset(ids, 0xff, sizeof IDS);
    memset(pp, 0xff, sizeof *pp);
    free(ids), free(mask), free(pp);
    if (rc == MG_OK) {
        sem_wait(&r.done);
        CHECK(r.calls == 1 && r.rc == MG_OK, "on_done once, MG_OK: %d calls, %s", r.calls,
              r.err.msg);
        CHECK(!pthread_equal(r.thread, pthread_self()), "on_done runs on the scheduler thread");
        CHECK(r.res.codes && r.res.frames == want.frames && r.res.n_samples == want.n_samples &&
              !memcmp(r.res.codes, want.codes, (size_t)want.batch * 4 * want.frames * 4) &&
              !memcmp(r.res.audio, want.audio, (size_t)want.batch * want.n_samples * 4),
              "the same codes and audio as mg_generate_ids");
        mg_gen_result_free(&r.res);
    }
    mg_gen_result_free(&want);
    /* an error of the generation comes through on_done */
    run bad;
    run_init(&bad);
    p.max_new_tokens = 0;
    p.duration = 1e6f;
    rc = mg_generate_submit(m, IDS, MASK, 2, 5, &p, NULL, on_done, &bad, NULL, &err);
    CHECK(rc == MG_OK, "a submit with a bad duration is queued: %s", err.msg);
    if (rc == MG_OK) {
        sem_wait(&bad.done);
        CHECK(bad.calls == 1 && bad.rc == MG_ERR_INVALID && strstr(bad.err.msg, "duration") &&
              bad.res.codes == NULL, "bad duration through on_done: %s", bad.err.msg);
    }
    /* arguments submit can refuse itself: no on_done */
    run none;
    run_init(&none);
    CHECK(mg_generate_submit(m, IDS, MASK, 2, 5, &p, NULL, NULL, &none, NULL, &err) ==
          MG_ERR_INVALID, "no on_done: refused");
    CHECK(mg_generate_submit(m, IDS, MASK, 0, 5, &p, NULL, on_done, &none, NULL, &err) ==
          MG_ERR_INVALID && !strcmp(err.field, "prompt"), "empty batch: %s", err.msg);
    usleep(1000);
    CHECK(none.calls == 0, "a refused submit never calls on_done");
}

/* A cancel from the progress hook at step 3 ends the generation before step
 * 4; a waiting generation cancelled leaves the queue without starting. */
static void test_cancel(mg_model *m)
{
    mg_gen_params p;
    params(m, &p);
    mg_gen_hooks ha, hb;
    sem_t hold;
    sem_init(&hold, 0, 0);
    run a, b;
    run_init(&a);
    run_init(&b);
    a.cancel_at = 3;
    a.hold = &hold;
    ha = (mg_gen_hooks){.progress = progress, .ud = &a};
    hb = (mg_gen_hooks){.progress = progress, .ud = &b};
    mg_error err = {0};
    mg_code ra = mg_generate_submit(m, IDS, MASK, 2, 5, &p, &ha, on_done, &a, &a.task, &err);
    mg_code rb = mg_generate_submit(m, IDS, MASK, 2, 5, &p, &hb, on_done, &b, &b.task, &err);
    CHECK(ra == MG_OK && rb == MG_OK, "submits: %s", err.msg);
    if (rb == MG_OK)
        mg_gen_task_cancel(b.task); /* b waits: the batch holds one, a, held at its step 1 */
    sem_post(&hold);
    if (ra == MG_OK) {
        sem_wait(&a.done);
        CHECK(a.calls == 1 && a.rc == MG_ERR_CANCELLED && a.last_step == 3,
              "cancelled at step 3, no step after: rc %d, last step %d", a.rc, a.last_step);
    }
    if (rb == MG_OK) {
        sem_wait(&b.done);
        CHECK(b.calls == 1 && b.rc == MG_ERR_CANCELLED && b.last_step == 0,
              "a waiting generation cancelled never starts: rc %d, last step %d", b.rc,
              b.last_step);
    }
    int running = -1, waiting = -1;
    mg_model_activity(m, &running, &waiting);
    CHECK(running == 0 && waiting == 0, "nothing left running (%d) or waiting (%d)", running,
          waiting);
    sem_destroy(&hold);
}

/* Freeing the model ends every generation still queued or running, each
 * through its on_done, before mg_model_free returns. */
static void test_shutdown(const char *dir)
{
    mg_model *m = NULL;
    mg_error err = {0};
    mg_model_options opt = {.n_threads = 1, .max_batch = 1};
    if (mg_model_load(&m, dir, &opt, &err) != MG_OK) {
        CHECK(0, "load: %s", err.msg);
        return;
    }
    mg_gen_params p;
    params(m, &p);
    enum { N = 3 };
    run r[N];
    int queued = 0;
    for (int i = 0; i < N; i++) {
        run_init(&r[i]);
        queued += mg_generate_submit(m, IDS, MASK, 2, 5, &p, NULL, on_done, &r[i], NULL, &err) ==
                  MG_OK;
    }
    CHECK(queued == N, "%d of %d queued", queued, N);
    mg_model_free(m);
    int once = 1;
    for (int i = 0; i < N; i++) {
        once &= r[i].calls == 1 && (r[i].rc == MG_OK || r[i].rc == MG_ERR_CANCELLED);
        mg_gen_result_free(&r[i].res);
    }
    CHECK(once, "every generation ended through on_done exactly once");
}

int main(void)
{
    char dir[4200], probe[4300];
    snprintf(dir, sizeof dir, "%s/tiny-proj", check_golden_dir());
    snprintf(probe, sizeof probe, "%s/model.safetensors", dir);
    if (access(probe, R_OK) != 0) {
        SKIP("golden tiny-proj model not found at %s", dir);
        return check_summary("test_submit");
    }
    mg_model *m = NULL;
    mg_error err = {0};
    mg_model_options opt = {.n_threads = 1, .max_batch = 1};
    if (mg_model_load(&m, dir, &opt, &err) != MG_OK) {
        CHECK(0, "load: %s", err.msg);
        return check_summary("test_submit");
    }
    test_result(m);
    test_cancel(m);
    mg_model_free(m);
    test_shutdown(dir);
    return check_summary("test_submit");
}
