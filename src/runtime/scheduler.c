/* The scheduler thread's loop: admit waiting generations between steps, run
 * one batched decoder step for the active ones, select their tokens, advance
 * them, retire those that are done (their audio in shared EnCodec batches),
 * and recover the device when it was lost. */
#include "runtime/scheduler_impl.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/cpu_pool.h"
#include "runtime/gen_job_impl.h"
#include "runtime/recover_impl.h"

struct mg_sched {
    mg_model        *m;
    int              max_batch;
    pthread_t        thread;
    pthread_mutex_t  lock;       /* queue, counters, stop */
    pthread_cond_t   wake;       /* work arrived or stop */
    mg_gen_job      *head, *tail;
    int              n_waiting, n_running;
    int              stop;
    /* owned by the thread */
    mg_gen_job     **active;
    int              n_active;
    mg_dec_state   **states;
    const int32_t  **ids;
    mg_tensor      **logits;
    mg_select_call  *calls;      /* the step's joint token selection */
    uint8_t         *selected;   /* per active job: its tokens came from calls */
    mg_gen_job     **ending;     /* finished this step, waiting for their audio */
    int              n_ending;
    mg_gen_job     **ending_rest; /* scratch: ending ones of other frame counts */
    mg_dec_batch     work;
};

/* A running job is done: it stops counting as running before its owner
 * hears of it, so a status read after the response never sees it still
 * running. */
static void finish(mg_sched *s, mg_gen_job *j, mg_code rc)
{
    pthread_mutex_lock(&s->lock);
    s->n_running--;
    j->rc = rc;
    pthread_mutex_unlock(&s->lock);
    j->finished(j);
}

static int cancelled(const mg_gen_job *j)
{
    return atomic_load_explicit(&j->cancel, memory_order_relaxed) != 0;
}

static mg_code cancel_error(mg_gen_job *j)
{
    return mg_fail(j->err, MG_ERR_CANCELLED, "generation cancelled");
}

/* Before a step: cancelled jobs leave the batch, and cancelled waiting ones
 * the queue (a full batch would otherwise keep them waiting for a place
 * only to end them then). */
static void drop_cancelled(mg_sched *s)
{
    int kept = 0;
    for (int i = 0; i < s->n_active; i++) {
        mg_gen_job *j = s->active[i];
        if (!cancelled(j)) {
            s->active[kept++] = j;
            continue;
        }
        pthread_mutex_lock(&s->m->run); /* its state may live on the device */
        mg_gen_job_release(s->m, j);
        pthread_mutex_unlock(&s->m->run);
        finish(s, j, cancel_error(j));
    }
    s->n_active = kept;
    mg_gen_job *gone = NULL;
    pthread_mutex_lock(&s->lock);
    for (mg_gen_job **link = &s->head, *prev = NULL; *link;) {
        mg_gen_job *j = *link;
        if (!cancelled(j)) {
            prev = j;
            link = &j->next;
            continue;
        }
        *link = j->next;
        if (s->tail == j)
            s->tail = prev;
        s->n_waiting--;
        j->next = gone;
        gone = j;
    }
    pthread_mutex_unlock(&s->lock);
    while (gone) {
        mg_gen_job *j = gone;
        gone = j->next;
        j->rc = cancel_error(j);
        j->finished(j);
    }
}

/* Fails every active job with the step's error (a backend failure is not
 * any one job's fault, and leaves no job a consistent state). */
static void fail_active(mg_sched *s, mg_code rc, const mg_error *e)
{
    for (int i = 0; i < s->n_active; i++) {
        mg_gen_job *j = s->active[i];
        if (j->err && e)
            *j->err = *e;
        mg_gen_job_release(s->m, j);
        finish(s, j, rc);
    }
    s->n_active = 0;
}

/* After a failure, with m->run held: when the device is lost, every active
 * job's state died with it. They fail (their caller may retry), the step's
 * workspace goes, and the runtime re-creates the backend. */
static void recover_if_lost(mg_sched *s)
{
    if (!mg_runtime_device_lost(s->m))
        return;
    mg_error e = {0};
    mg_fail(&e, MG_ERR_DEVICE, "the device failed while this generation ran; it was re-initialised");
    fail_active(s, MG_ERR_DEVICE, &e);
    mg_dec_batch_free(&s->work);
    mg_error re = {0};
    mg_runtime_recover(s->m, &re); /* on failure the model is broken: admissions fail fast */
}

/* Sleeps until a generation waits or runs, or the scheduler stops; 0 when
 * it stops. */
static int wait_for_work(mg_sched *s)
{
    pthread_mutex_lock(&s->lock);
    while (!s->stop && !s->head && s->n_active == 0)
        pthread_cond_wait(&s->wake, &s->lock);
    int go = !s->stop;
    pthread_mutex_unlock(&s->lock);
    return go;
}

/* The next waiting job when the batch has room (running from here on), else
 * NULL. */
static mg_gen_job *dequeue(mg_sched *s)
{
    pthread_mutex_lock(&s->lock);
    mg_gen_job *j = s->n_active < s->max_batch ? s->head : NULL;
    if (j) {
        s->head = j->next;
        if (!s->head)
            s->tail = NULL;
        s->n_waiting--;
        s->n_running++;
    }
    pthread_mutex_unlock(&s->lock);
    return j;
}

/* Between steps, waiting jobs join the batch (T5, their decoding state) or
 * are answered with their error at once. */
static void admit(mg_sched *s)
{
    mg_model *m = s->m;
    mg_gen_job *j;
    while ((j = dequeue(s))) {
        pthread_mutex_lock(&m->run);
        mg_code rc = m->broken ? mg_fail(j->err, MG_ERR_DEVICE,
                                         "the device was lost and could not be re-initialised: %s",
                                         m->broken_msg)
                     : cancelled(j) ? cancel_error(j)
                                    : mg_gen_job_start(m, j);
        if (rc == MG_OK)
            s->active[s->n_active++] = j;
        else {
            mg_gen_job_release(m, j);
            finish(s, j, rc);
            recover_if_lost(s);
        }
        pthread_mutex_unlock(&m->run);
    }
}

/* One decoder step for every active job, each at its own position. */
static mg_code decode(mg_sched *s, mg_error *e)
{
    for (int i = 0; i < s->n_active; i++) {
        s->states[i] = &s->active[i]->st;
        s->ids[i] = s->active[i]->step_ids;
        s->logits[i] = s->active[i]->logits;
    }
    return mg_decoder_step(&s->m->parts.dec, &s->work, s->states, s->n_active, s->ids, s->logits,
                           e);
}

/* Every job's tokens in one backend call (one device wait), except those
 * whose step hook reads the scores: they select their own after the step. */
static mg_code select_tokens(mg_sched *s, mg_error *e)
{
    mg_model *m = s->m;
    int n_calls = 0;
    for (int i = 0; i < s->n_active; i++) {
        s->selected[i] = (uint8_t)mg_gen_job_select_call(m, s->active[i], &s->calls[n_calls]);
        n_calls += s->selected[i];
    }
    return n_calls ? mg_select_tokens_many(m->parts.be, n_calls, s->calls,
                                           m->parts.cfg.dec_vocab, e)
                   : MG_OK;
}

/* A job that has its last token, or failed: answered now, or (its codes
 * taken) queued in s->ending for the step's shared EnCodec batches.
 * Returns 1 when it failed. */
static int retire(mg_sched *s, mg_gen_job *j, mg_code rc)
{
    mg_model *m = s->m;
    if (rc == MG_OK && m->encodec_batch_jobs) {
        int needs_audio;
        rc = mg_gen_job_codes(m, j, &needs_audio);
        if (rc == MG_OK && needs_audio) {
            s->ending[s->n_ending++] = j;
            return 0;
        }
    } else if (rc == MG_OK) {
        rc = mg_gen_job_finish(m, j);
    }
    mg_gen_job_release(m, j);
    finish(s, j, rc);
    return rc != MG_OK;
}

/* Each job takes its tokens (a failed joint selection, `sel`, fails the
 * jobs in it) and goes on, or retires. Returns 1 when some job failed. */
static int advance(mg_sched *s, mg_code sel, const mg_error *e)
{
    int kept = 0, failed = 0;
    s->n_ending = 0;
    for (int i = 0; i < s->n_active; i++) {
        mg_gen_job *j = s->active[i];
        mg_code rc;
        if (s->selected[i] && sel != MG_OK) {
            if (j->err)
                *j->err = *e;
            rc = sel;
        } else {
            rc = mg_gen_job_after_step(s->m, j, s->selected[i]);
        }
        if (rc == MG_OK && j->t < j->steps)
            s->active[kept++] = j;
        else
            failed |= retire(s, j, rc);
    }
    s->n_active = kept;
    return failed;
}

/* The audio of the jobs that ended in this step: one EnCodec batch per
 * frame count. Returns 1 when a batch failed. */
static int encode_audio(mg_sched *s)
{
    int failed = 0;
    while (s->n_ending > 0) {
        int frames = s->ending[0]->frames, group = 0, rest = 0;
        for (int i = 0; i < s->n_ending; i++) {
            mg_gen_job *j = s->ending[i];
            if (j->frames == frames)
                s->ending[group++] = j;
            else
                s->ending_rest[rest++] = j;
        }
        mg_code rc = mg_gen_jobs_audio(s->m, s->ending, group);
        failed |= rc != MG_OK;
        for (int i = 0; i < group; i++) {
            mg_gen_job *j = s->ending[i];
            mg_code jrc = rc == MG_OK ? mg_gen_job_hand_audio(j) : rc;
            mg_gen_job_release(s->m, j);
            finish(s, j, jrc);
        }
        memcpy(s->ending, s->ending_rest, (size_t)rest * sizeof *s->ending);
        s->n_ending = rest;
    }
    return failed;
}

/* One step of the batch, with the backend to itself. A failed decoder step
 * fails every active job; any failure may mean the device was lost, which
 * also ends the jobs still running. */
static void step(mg_sched *s)
{
    mg_model *m = s->m;
    mg_error e = {0};
    pthread_mutex_lock(&m->run);
    mg_code rc = decode(s, &e);
    if (rc != MG_OK) {
        fail_active(s, rc, &e);
        recover_if_lost(s);
    } else {
        mg_code sel = select_tokens(s, &e);
        int failed = advance(s, sel, &e);
        failed |= encode_audio(s);
        if (failed)
            recover_if_lost(s);
    }
    pthread_mutex_unlock(&m->run);
}

/* Stopping: whatever is left, running or waiting, ends cancelled. */
static void shut_down(mg_sched *s)
{
    mg_error e = {0};
    mg_fail(&e, MG_ERR_CANCELLED, "the model is shutting down");
    fail_active(s, MG_ERR_CANCELLED, &e);
    pthread_mutex_lock(&s->lock);
    mg_gen_job *left = s->head;
    s->head = s->tail = NULL;
    s->n_waiting = s->n_running = 0;
    pthread_mutex_unlock(&s->lock);
    while (left) {
        mg_gen_job *j = left;
        left = j->next;
        if (j->err)
            *j->err = e;
        j->rc = MG_ERR_CANCELLED;
        j->finished(j);
    }
}

static void *sched_main(void *arg)
{
    mg_sched *s = arg;
    while (wait_for_work(s)) {
        drop_cancelled(s);
        admit(s);
        if (s->n_active > 0)
            step(s);
    }
    shut_down(s);
    return NULL;
}

static void free_arrays(mg_sched *s)
{
    free(s->active);
    free(s->states);
    free(s->ids);
    free(s->logits);
    free(s->calls);
    free(s->selected);
    free(s->ending);
    free(s->ending_rest);
    free(s);
}

mg_code mg_sched_create(mg_sched **out, mg_model *m, int max_batch, mg_error *err)
{
    *out = NULL;
    if (max_batch < 1 || max_batch > MG_MAX_BATCH)
        return mg_fail_field(err, MG_ERR_INVALID, "max_batch", "max_batch: must be in [1, %d]",
                             MG_MAX_BATCH);
    mg_sched *s = calloc(1, sizeof *s);
    if (!s)
        return mg_fail(err, MG_ERR_NOMEM, "scheduler: out of memory");
    s->m = m;
    s->max_batch = max_batch;
    s->active = calloc((size_t)max_batch, sizeof *s->active);
    s->states = calloc((size_t)max_batch, sizeof *s->states);
    s->ids = calloc((size_t)max_batch, sizeof *s->ids);
    s->logits = calloc((size_t)max_batch, sizeof *s->logits);
    s->calls = calloc((size_t)max_batch, sizeof *s->calls);
    s->selected = calloc((size_t)max_batch, sizeof *s->selected);
    s->ending = calloc((size_t)max_batch, sizeof *s->ending);
    s->ending_rest = calloc((size_t)max_batch, sizeof *s->ending_rest);
    if (!s->active || !s->states || !s->ids || !s->logits || !s->calls || !s->selected ||
        !s->ending || !s->ending_rest) {
        free_arrays(s);
        return mg_fail(err, MG_ERR_NOMEM, "scheduler: out of memory");
    }
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->wake, NULL);
    /* the scheduler thread runs kernels too (cpu_pool.h) */
    pthread_attr_t attr;
    int attr_ok = pthread_attr_init(&attr) == 0;
    int have_attr = attr_ok && pthread_attr_setstacksize(&attr, MG_KERNEL_THREAD_STACK) == 0;
    int started = pthread_create(&s->thread, have_attr ? &attr : NULL, sched_main, s) == 0;
    if (attr_ok)
        pthread_attr_destroy(&attr);
    if (!started) {
        pthread_mutex_destroy(&s->lock);
        pthread_cond_destroy(&s->wake);
        free_arrays(s);
        return mg_fail(err, MG_ERR_NOMEM, "scheduler: cannot start its thread");
    }
    *out = s;
    return MG_OK;
}

void mg_sched_destroy(mg_sched *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->lock);
    s->stop = 1;
    pthread_cond_broadcast(&s->wake);
    pthread_mutex_unlock(&s->lock);
    pthread_join(s->thread, NULL);
    mg_dec_batch_free(&s->work);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->wake);
    free_arrays(s);
}

mg_code mg_sched_submit(mg_sched *s, mg_gen_job *j)
{
    pthread_mutex_lock(&s->lock);
    if (s->stop) {
        pthread_mutex_unlock(&s->lock);
        return mg_fail(j->err, MG_ERR_CANCELLED, "the model is shutting down");
    }
    j->next = NULL;
    if (s->tail)
        s->tail->next = j;
    else
        s->head = j;
    s->tail = j;
    s->n_waiting++;
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->lock);
    return MG_OK;
}

void mg_sched_load(mg_sched *s, int *running, int *waiting)
{
    pthread_mutex_lock(&s->lock);
    *running = s->n_running;
    *waiting = s->n_waiting;
    pthread_mutex_unlock(&s->lock);
}
