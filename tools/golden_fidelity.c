/* mg-golden --fidelity DIR: how far the compressed weight formats move the
 * model from float32 on the golden greedy runs (guidance 3): per format, the
 * largest |logit - logit_f32| over every step relative to the logit scale
 * (max |logit_f32|), and the share of greedy codes equal to float32's.
 * Informational: float32 itself is checked exactly by the golden checker. */
#include "golden.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/model_parts.h"

typedef struct {
    float   *raw;     /* [steps, raw_rows, V] */
    int32_t *tokens;  /* [steps, rows] */
    int      steps, raw_rows, rows, V;
} run_rec;

static void on_step(void *ud, int step, const float *raw, int raw_rows, const float *scores,
                    const int32_t *tokens, int rows, int V)
{
    run_rec *r = ud;
    if (step >= r->steps)
        return;
    memcpy(r->raw + (int64_t)step * raw_rows * V, raw, (size_t)raw_rows * V * sizeof *raw);
    memcpy(r->tokens + (int64_t)step * rows, tokens, (size_t)rows * sizeof *tokens);
}

/* Greedy generation with guidance 3 from the recorded prompt of file/prefix. */
static int run(mg_model *m, const char *dir, const char *file, const char *prefix, run_rec *r)
{
    char path[4096], name[96];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    mg_safetensors st;
    mg_error err = {0};
    if (mg_st_open(&st, path, &err) != MG_OK)
        return -1;
    snprintf(name, sizeof name, "%s.step_tokens", prefix);
    const mg_st_tensor *ti = mg_st_find(&st, "input_ids"), *tm = mg_st_find(&st, "attention_mask");
    const mg_st_tensor *tt = mg_st_find(&st, name);
    int rc = -1;
    if (ti && tm && tt && ti->ndim == 2) {
        int B = (int)ti->shape[0], S = (int)ti->shape[1];
        int64_t *ids64 = malloc((size_t)(B * S) * sizeof *ids64), *m64 = malloc((size_t)(B * S) * sizeof *m64);
        int32_t *ids = malloc((size_t)(B * S) * sizeof *ids);
        uint8_t *mask = malloc((size_t)(B * S));
        const mg_config *c = mg_model_config(m);
        r->steps = (int)tt->shape[0];
        r->rows = B * c->num_codebooks;
        r->raw_rows = 2 * r->rows;
        r->V = c->dec_vocab;
        r->raw = malloc((size_t)r->steps * r->raw_rows * r->V * sizeof *r->raw);
        r->tokens = malloc((size_t)r->steps * r->rows * sizeof *r->tokens);
        if (ids64 && m64 && ids && mask && r->raw && r->tokens &&
            mg_st_to_i64(ti, ids64, &err) == MG_OK && mg_st_to_i64(tm, m64, &err) == MG_OK) {
            for (int i = 0; i < B * S; i++) {
                ids[i] = (int32_t)ids64[i];
                mask[i] = m64[i] != 0;
            }
            mg_gen_params p = {.max_new_tokens = r->steps,
                               .sampling = {.do_sample = 0, .temperature = 1, .top_k = 0,
                                            .top_p = 1, .guidance_scale = 3}};
            mg_gen_hooks hooks = {.on_step = on_step, .ud = r, .skip_audio = 1};
            mg_gen_result res;
            if (mg_generate_ids(m, ids, mask, B, S, &p, &hooks, &res, &err) == MG_OK) {
                mg_gen_result_free(&res);
                rc = 0;
            }
        }
        free(ids64);
        free(m64);
        free(ids);
        free(mask);
    }
    mg_st_close(&st);
    return rc;
}

void golden_fidelity(const char *dir, golden_tally *t)
{
    static const char *const dtypes[] = {"f32", "bf16", "q8"};
    static const struct { const char *file, *prefix; } runs[] = {
        {"golden_generate.safetensors", "cfg3"},
        {"golden_pipeline.safetensors", "greedy_cfg3_50"}};
    for (size_t k = 0; k < sizeof runs / sizeof runs[0]; k++) {
        run_rec rec[3];
        memset(rec, 0, sizeof rec);
        int ok = 1;
        for (int d = 0; d < 3 && ok; d++) {
            mg_model *m = NULL;
            mg_error err = {0};
            mg_model_options opt = {.n_threads = 2, .dtype = dtypes[d], .backend = &t->backend};
            ok = mg_model_load(&m, dir, &opt, &err) == MG_OK &&
                 run(m, dir, runs[k].file, runs[k].prefix, &rec[d]) == 0;
            mg_model_free(m);
        }
        char label[128];
        snprintf(label, sizeof label, "%s:%s", runs[k].file, runs[k].prefix);
        if (!ok) {
            golden_skip(t, label, "cannot run (missing file or load failure)");
        } else {
            int64_t n = (int64_t)rec[0].steps * rec[0].raw_rows * rec[0].V;
            int64_t nt = (int64_t)rec[0].steps * rec[0].rows;
            double scale = 0;
            for (int64_t i = 0; i < n; i++)
                scale = fmax(scale, fabs(rec[0].raw[i]));
            for (int d = 1; d < 3; d++) {
                /* logits are compared while both runs have seen the same codes
                 * (after the first differing code the histories differ) */
                int same_steps = 0;
                while (same_steps < rec[0].steps &&
                       !memcmp(rec[d].tokens + (int64_t)same_steps * rec[0].rows,
                               rec[0].tokens + (int64_t)same_steps * rec[0].rows,
                               (size_t)rec[0].rows * sizeof(int32_t)))
                    same_steps++;
                int cmp_steps = same_steps < rec[0].steps ? same_steps + 1 : same_steps;
                double dev = 0;
                int64_t same = 0, nc = (int64_t)cmp_steps * rec[0].raw_rows * rec[0].V;
                for (int64_t i = 0; i < nc; i++)
                    dev = fmax(dev, fabs(rec[d].raw[i] - rec[0].raw[i]));
                for (int64_t i = 0; i < nt; i++)
                    same += rec[d].tokens[i] == rec[0].tokens[i];
                printf("fidelity %-4s %-44s max |dlogit| / logit scale = %.2e over the %d steps "
                       "with f32's history; greedy codes equal to f32: %lld/%lld = %.1f %% "
                       "(identical for the first %d of %d steps)\n",
                       dtypes[d], label, dev / scale, cmp_steps, (long long)same, (long long)nt,
                       100.0 * same / nt, same_steps, rec[0].steps);
            }
            t->passed++;
        }
        for (int d = 0; d < 3; d++) {
            free(rec[d].raw);
            free(rec[d].tokens);
        }
    }
}
