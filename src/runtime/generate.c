/* The public entry points: prompts or token ids in, a generation queued on
 * the model's scheduler, the result out; the generation parameters'
 * defaults and checks. */
#include "runtime/gen_job_impl.h"
#include "runtime/duration.h"
#include "runtime/gen_plan_impl.h"

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

mg_code mg_generate_ids(mg_model *m, const int32_t *ids, const uint8_t *mask, int batch,
                        int len, const mg_gen_params *p, const mg_gen_hooks *hooks,
                        mg_gen_result *res, mg_error *err)
{
    memset(res, 0, sizeof *res);
    mg_gen_job j = {.ids = ids, .mask = mask, .batch = batch, .len = len, .p = p,
                    .hooks = hooks, .res = res, .err = err};
    mg_code rc = mg_sched_run(m->sched, &j);
    if (rc != MG_OK)
        mg_gen_result_free(res);
    return rc;
}

mg_code mg_generate(mg_model *m, const char *const *prompts, int batch, const mg_gen_params *p,
                    const mg_gen_hooks *hooks, mg_gen_result *res, mg_error *err)
{
    memset(res, 0, sizeof *res);
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
        rc = mg_generate_ids(m, ids, mask, batch, len, p, hooks, res, err);
    }
    for (int b = 0; each && b < batch; b++)
        free(each[b]);
    free(each);
    free(n);
    free(ids);
    free(mask);
    return rc;
}
