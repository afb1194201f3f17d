/* The public entry points: prompts or token ids in, a generation queued on
 * the model's scheduler (a task owning copies of its inputs), the result
 * handed to the caller's completion, or waited for; the generation
 * parameters' defaults and checks. */
#include "runtime/gen_job_impl.h"
#include "runtime/duration.h"
#include "runtime/gen_plan_impl.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

void mg_gen_params_default(const mg_model *m, mg_gen_params *p)
{
    const mg_config *c = mg_model_config(m);
    memset(p, 0, sizeof *p);
    p->duration = (float)MG_DEFAULT_DURATION;
    p->sampling.do_sample = c->do_sample;
    p->sampling.temperature = c->temperature;
    p->sampling.top_k = c->top_k;
    p->sampling.top_p = c->top_p;
    p->sampling.guidance_scale = c->guidance_scale;
}

mg_code mg_gen_steps(const mg_model *m, const mg_gen_params *p, int *steps, int *frames,
                     mg_error *err)
{
    mg_gen_plan plan;
    mg_code rc = mg_gen_plan_make(m, p, &plan, err);
    if (rc != MG_OK)
        return rc;
    *steps = plan.steps;
    *frames = plan.frames;
    return MG_OK;
}

void mg_gen_result_free(mg_gen_result *res)
{
    free(res->sequence);
    free(res->codes);
    free(res->audio);
    memset(res, 0, sizeof *res);
}

/* A submitted generation: the scheduler's job first (the scheduler hands
 * back the job, the task is around it), and copies of every input the job
 * points to, so the caller's buffers may go as soon as submit returns. */
struct mg_gen_task {
    mg_gen_job     job;
    mg_gen_params  params;
    mg_gen_hooks   hooks;
    int32_t       *ids, *prompt_codes;
    float         *prompt_audio;
    uint8_t       *mask;
    mg_gen_result  res;
    mg_error       err;
    mg_gen_done_fn on_done;
    void          *ud;
};

static void task_free(mg_gen_task *t)
{
    mg_gen_result_free(&t->res);
    free(t->ids);
    free(t->mask);
    free(t->prompt_codes);
    free(t->prompt_audio);
    free(t);
}

/* Scheduler thread: the job is over. Whatever on_done leaves in the result
 * is freed with the task. */
static void task_finished(mg_gen_job *j)
{
    mg_gen_task *t = (mg_gen_task *)j;
    if (j->rc != MG_OK)
        mg_gen_result_free(&t->res);
    else
        t->err.code = MG_OK;
    t->on_done(t->ud, j->rc, &t->err, &t->res);
    task_free(t);
}

static void *copy_of(const void *src, size_t bytes)
{
    void *p = malloc(bytes ? bytes : 1);
    if (p && bytes)
        memcpy(p, src, bytes);
    return p;
}

mg_code mg_generate_submit(mg_model *m, const int32_t *ids, const uint8_t *mask, int batch,
                           int len, const mg_gen_params *p, const mg_gen_hooks *hooks,
                           mg_gen_done_fn on_done, void *ud, mg_gen_task **task, mg_error *err)
{
    if (task)
        *task = NULL;
    if (!m || !on_done)
        return mg_fail(err, MG_ERR_INVALID, "mg_generate_submit: a model and on_done are needed");
    if (!p)
        return mg_fail(err, MG_ERR_INVALID, "mg_generate_submit: parameters are needed");
    if (!ids || !mask || batch < 1 || len < 1)
        return mg_fail_field(err, MG_ERR_INVALID, "prompt", "prompt: empty batch");
    /* T5's position bias grows with len^2: the tokenizer's own limit bounds it */
    if (batch > MG_MAX_BATCH || len > MG_TOKENIZER_MAX_TOKENS)
        return mg_fail_field(err, MG_ERR_INVALID, "prompt", "prompt: at most %d prompts of %d tokens",
                             MG_MAX_BATCH, MG_TOKENIZER_MAX_TOKENS);
    const mg_config *c = mg_model_config(m);
    int K = c->num_codebooks;
    if (p->prompt_codes && p->prompt_frames < 0)
        return mg_fail_field(err, MG_ERR_INVALID, "prompt_frames", "prompt_frames: must be >= 0");
    /* the copies below take batch items: a prompt of another count is refused first */
    if ((p->prompt_codes || p->prompt_audio) && p->prompt_batch != 0 && p->prompt_batch != batch)
        return mg_fail_field(err, MG_ERR_INVALID, p->prompt_audio ? "prompt_audio" : "prompt_codes",
                             "%s: %d items for a batch of %d",
                             p->prompt_audio ? "prompt_audio" : "prompt_codes", p->prompt_batch,
                             batch);
    if (p->prompt_audio && (p->prompt_samples < 1 ||
                            p->prompt_samples > (int64_t)(MG_MAX_DURATION * c->sample_rate)))
        return mg_fail_field(err, MG_ERR_INVALID, "prompt_audio", "prompt_audio: %lld samples, "
                             "outside [1, %.0f s]", (long long)p->prompt_samples, MG_MAX_DURATION);
    mg_gen_task *t = calloc(1, sizeof *t);
    if (!t)
        return mg_fail(err, MG_ERR_NOMEM, "out of memory");
    size_t n = (size_t)batch * (size_t)len;
    t->ids = copy_of(ids, n * sizeof *ids);
    t->mask = copy_of(mask, n);
    t->params = *p;
    if (p->prompt_codes) {
        t->prompt_codes = copy_of(p->prompt_codes,
                                  (size_t)batch * K * (size_t)p->prompt_frames * sizeof(int32_t));
        t->params.prompt_codes = t->prompt_codes;
    }
    if (p->prompt_audio) {
        t->prompt_audio = copy_of(p->prompt_audio, (size_t)batch * c->audio_channels *
                                                       (size_t)p->prompt_samples * sizeof(float));
        t->params.prompt_audio = t->prompt_audio;
    }
    if (!t->ids || !t->mask || (p->prompt_codes && !t->prompt_codes) ||
        (p->prompt_audio && !t->prompt_audio)) {
        task_free(t);
        return mg_fail(err, MG_ERR_NOMEM, "out of memory");
    }
    if (hooks)
        t->hooks = *hooks;
    t->on_done = on_done;
    t->ud = ud;
    t->job = (mg_gen_job){.ids = t->ids, .mask = t->mask, .batch = batch, .len = len,
                          .p = &t->params, .hooks = hooks ? &t->hooks : NULL, .res = &t->res,
                          .err = &t->err, .finished = task_finished};
    /* the task may be over (and freed) as soon as it is queued */
    if (task)
        *task = t;
    mg_code rc = mg_sched_submit(m->sched, &t->job);
    if (rc != MG_OK) {
        if (task)
            *task = NULL;
        if (err)
            *err = t->err;
        task_free(t);
    }
    return rc;
}

/* Prompts -> right-padded token ids and their mask; malloc'd. */
static mg_code tokenize_prompts(mg_model *m, const char *const *prompts, int batch,
                                int32_t **ids_out, uint8_t **mask_out, int *len_out, mg_error *err)
{
    if (!m->parts.tok)
        return mg_fail(err, MG_ERR_NOT_FOUND,
                       "the model folder has no spiece.model: text prompts cannot be tokenized");
    if (!prompts || batch < 1 || batch > MG_MAX_BATCH)
        return mg_fail_field(err, MG_ERR_INVALID, "prompt", "prompt: between 1 and %d prompts", MG_MAX_BATCH);
    for (int b = 0; b < batch; b++)
        if (!prompts[b])
            return mg_fail_field(err, MG_ERR_INVALID, "prompt", "prompt %d is missing", b);
    int32_t **each = calloc((size_t)batch, sizeof *each);
    int *n = calloc((size_t)batch, sizeof *n);
    int32_t *ids = NULL;
    uint8_t *mask = NULL;
    mg_code rc = each && n ? MG_OK : mg_fail(err, MG_ERR_NOMEM, "out of memory");
    int len = 0;
    for (int b = 0; rc == MG_OK && b < batch; b++) {
        rc = mg_tokenize(m->parts.tok, prompts[b], strlen(prompts[b]), 0, &each[b], &n[b], err);
        if (rc == MG_OK && n[b] > len)
            len = n[b];
    }
    if (rc == MG_OK) {
        ids = calloc((size_t)batch * len, sizeof *ids);
        mask = calloc((size_t)batch * len, 1);
        if (!ids || !mask)
            rc = mg_fail(err, MG_ERR_NOMEM, "out of memory");
    }
    if (rc == MG_OK) {
        for (int b = 0; b < batch; b++)
            for (int i = 0; i < n[b]; i++) {
                ids[(int64_t)b * len + i] = each[b][i];
                mask[(int64_t)b * len + i] = 1;
            }
        *ids_out = ids;
        *mask_out = mask;
        *len_out = len;
    } else {
        free(ids);
        free(mask);
    }
    for (int b = 0; each && b < batch; b++)
        free(each[b]);
    free(each);
    free(n);
    return rc;
}

mg_code mg_generate_submit_prompts(mg_model *m, const char *const *prompts, int batch,
                                   const mg_gen_params *p, const mg_gen_hooks *hooks,
                                   mg_gen_done_fn on_done, void *ud, mg_gen_task **task,
                                   mg_error *err)
{
    if (task)
        *task = NULL;
    int32_t *ids = NULL;
    uint8_t *mask = NULL;
    int len = 0;
    mg_code rc = tokenize_prompts(m, prompts, batch, &ids, &mask, &len, err);
    if (rc == MG_OK)
        rc = mg_generate_submit(m, ids, mask, batch, len, p, hooks, on_done, ud, task, err);
    free(ids);
    free(mask);
    return rc;
}

void mg_gen_task_cancel(mg_gen_task *t)
{
    if (t)
        atomic_store_explicit(&t->job.cancel, 1, memory_order_relaxed);
}

/* The blocking calls: a submit whose completion wakes the caller. */
typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t  done_cond;
    int             done;
    mg_code         rc;
    mg_gen_result  *res;
    mg_error       *err;
} waiter;

static void wake_waiter(void *ud, mg_code rc, const mg_error *e, mg_gen_result *res)
{
    waiter *w = ud;
    pthread_mutex_lock(&w->lock);
    w->rc = rc;
    *w->res = *res; /* moved: the caller owns the buffers */
    memset(res, 0, sizeof *res);
    if (rc != MG_OK && w->err)
        *w->err = *e;
    w->done = 1;
    pthread_cond_signal(&w->done_cond);
    pthread_mutex_unlock(&w->lock);
}

static mg_code wait_for(waiter *w)
{
    pthread_mutex_lock(&w->lock);
    while (!w->done)
        pthread_cond_wait(&w->done_cond, &w->lock);
    pthread_mutex_unlock(&w->lock);
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->done_cond);
    return w->rc;
}

mg_code mg_generate_ids(mg_model *m, const int32_t *ids, const uint8_t *mask, int batch,
                        int len, const mg_gen_params *p, const mg_gen_hooks *hooks,
                        mg_gen_result *res, mg_error *err)
{
    memset(res, 0, sizeof *res);
    waiter w = {.res = res, .err = err};
    pthread_mutex_init(&w.lock, NULL);
    pthread_cond_init(&w.done_cond, NULL);
    mg_code rc = mg_generate_submit(m, ids, mask, batch, len, p, hooks, wake_waiter, &w, NULL,
                                    err);
    if (rc != MG_OK) {
        pthread_mutex_destroy(&w.lock);
        pthread_cond_destroy(&w.done_cond);
        return rc;
    }
    return wait_for(&w);
}

mg_code mg_generate(mg_model *m, const char *const *prompts, int batch, const mg_gen_params *p,
                    const mg_gen_hooks *hooks, mg_gen_result *res, mg_error *err)
{
    memset(res, 0, sizeof *res);
    int32_t *ids = NULL;
    uint8_t *mask = NULL;
    int len = 0;
    mg_code rc = tokenize_prompts(m, prompts, batch, &ids, &mask, &len, err);
    if (rc == MG_OK)
        rc = mg_generate_ids(m, ids, mask, batch, len, p, hooks, res, err);
    free(ids);
    free(mask);
    return rc;
}
