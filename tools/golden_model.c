/* Golden checks of a model folder: T5, decoder (teacher forcing, CFG batch),
 * greedy generation, logits processing, EnCodec and the text pipeline. Every
 * tensor of manifest.json is either recomputed and compared, or reported as
 * an input the computation used. */
#include "golden.h"
#include "golden_encode.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/delay.h"
#include "runtime/model_parts.h"

/* --- computed tensors, by golden name ("file:name") --- */
typedef struct {
    char     name[160];
    int      is_int;
    int      is_input;   /* used as given: nothing to recompute */
    float   *f;
    int64_t *i;
    int64_t  n;
} computed;

typedef struct {
    computed *items;
    int       n, cap;
    char      file[64];  /* current golden file */
    golden_tally *t;
    int       failed_setup;
} results;

static computed *put(results *r, const char *name, int64_t n)
{
    if (r->n == r->cap) {
        int cap = r->cap ? 2 * r->cap : 64;
        computed *p = realloc(r->items, (size_t)cap * sizeof *p);
        if (!p)
            return NULL;
        r->items = p;
        r->cap = cap;
    }
    computed *c = &r->items[r->n++];
    memset(c, 0, sizeof *c);
    snprintf(c->name, sizeof c->name, "%s:%s", r->file, name);
    c->n = n;
    return c;
}

static void put_f32(results *r, const char *name, const float *data, int64_t n)
{
    computed *c = put(r, name, n);
    if (c && (c->f = malloc((size_t)n * sizeof *c->f + 1)))
        memcpy(c->f, data, (size_t)n * sizeof *c->f);
}

static void put_int(results *r, const char *name, const int64_t *data, int64_t n)
{
    computed *c = put(r, name, n);
    if (c && (c->i = malloc((size_t)n * sizeof *c->i + 1))) {
        c->is_int = 1;
        memcpy(c->i, data, (size_t)n * sizeof *c->i);
    }
}

static void put_i32(results *r, const char *name, const int32_t *data, int64_t n)
{
    int64_t *tmp = malloc((size_t)n * sizeof *tmp + 1);
    if (!tmp)
        return;
    for (int64_t k = 0; k < n; k++)
        tmp[k] = data[k];
    put_int(r, name, tmp, n);
    free(tmp);
}

static void put_input(results *r, const char *name)
{
    computed *c = put(r, name, 0);
    if (c)
        c->is_input = 1;
}

static void put_tensor(results *r, const char *name, const mg_tensor *t)
{
    int64_t n = mg_tensor_numel(t);
    float *h = malloc((size_t)n * sizeof *h + 1);
    if (h && mg_tensor_download_f32(t, h, NULL) == MG_OK)
        put_f32(r, name, h, n);
    free(h);
}

static void trace_tensor(void *ud, const char *name, const mg_tensor *t) { put_tensor(ud, name, t); }
static void trace_host(void *ud, const char *name, const float *data, int64_t n) { put_f32(ud, name, data, n); }

static void setup_fail(results *r, const char *what, const mg_error *err)
{
    golden_report(r->t, 0, what, "%s", err->msg);
    r->failed_setup = 1;
}

/* --- golden file access --- */
typedef struct {
    mg_safetensors st;
    int            open;
} gfile;

static int gopen(gfile *g, const char *dir, const char *file, results *r)
{
    char path[4096];
    mg_error err = {0};
    snprintf(path, sizeof path, "%s/%s", dir, file);
    g->open = mg_st_open(&g->st, path, &err) == MG_OK;
    if (!g->open)
        setup_fail(r, file, &err);
    return g->open;
}

static void gclose(gfile *g)
{
    if (g->open)
        mg_st_close(&g->st);
    g->open = 0;
}

/* Host copies of a golden tensor (NULL + a FAIL line when it is absent). */
static float *gf32(gfile *g, const char *name, int64_t *n, results *r)
{
    const mg_st_tensor *t = g->open ? mg_st_find(&g->st, name) : NULL;
    if (!t) {
        golden_report(r->t, 0, name, "input tensor missing from the golden file");
        return NULL;
    }
    float *h = malloc((size_t)mg_st_numel(t) * sizeof *h + 1);
    if (h)
        mg_st_to_f32(t, h);
    if (n)
        *n = mg_st_numel(t);
    return h;
}

static int32_t *gi32(gfile *g, const char *name, int64_t *n, results *r)
{
    const mg_st_tensor *t = g->open ? mg_st_find(&g->st, name) : NULL;
    if (!t) {
        golden_report(r->t, 0, name, "input tensor missing from the golden file");
        return NULL;
    }
    int64_t cnt = mg_st_numel(t);
    int64_t *tmp = malloc((size_t)cnt * sizeof *tmp + 1);
    int32_t *h = malloc((size_t)cnt * sizeof *h + 1);
    if (tmp && h && mg_st_to_i64(t, tmp, NULL) == MG_OK) {
        for (int64_t k = 0; k < cnt; k++)
            h[k] = (int32_t)tmp[k];
    } else {
        free(h);
        h = NULL;
    }
    free(tmp);
    if (n)
        *n = cnt;
    return h;
}

static uint8_t *to_mask(const int32_t *m, int64_t n)
{
    uint8_t *u = malloc((size_t)n + 1);
    if (u)
        for (int64_t k = 0; k < n; k++)
            u[k] = m[k] != 0;
    return u;
}

/* --- the computations, one per golden file --- */

/* Tokenizes the prompts right-padded with 0, as T5Tokenizer(padding=True). */
static void tokenize_batch(mg_model *m, json_t *prompts, const char *prompt1, results *r)
{
    mg_tokenizer *tok = mg_model_tokenizer(m);
    if (!tok) {
        golden_skip(r->t, "tokenizer", "no spiece.model in the folder: input_ids not recomputed");
        put_input(r, "input_ids");
        put_input(r, "attention_mask");
        return;
    }
    int batch = prompt1 ? 1 : (int)json_array_size(prompts);
    int32_t *ids[16] = {0};
    int n[16] = {0}, len = 0;
    if (batch > 16)
        batch = 16;
    for (int b = 0; b < batch; b++) {
        const char *text = prompt1 ? prompt1 : json_string_value(json_array_get(prompts, (size_t)b));
        mg_error err = {0};
        if (!text || mg_tokenize(tok, text, strlen(text), 0, &ids[b], &n[b], &err) != MG_OK)
            setup_fail(r, "tokenize", &err);
        if (n[b] > len)
            len = n[b];
    }
    int64_t *all = calloc((size_t)batch * len + 1, sizeof *all);
    int64_t *mask = calloc((size_t)batch * len + 1, sizeof *mask);
    if (all && mask) {
        for (int b = 0; b < batch; b++)
            for (int k = 0; k < n[b]; k++) {
                all[b * len + k] = ids[b][k];
                mask[b * len + k] = 1;
            }
        put_int(r, "input_ids", all, (int64_t)batch * len);
        put_int(r, "attention_mask", mask, (int64_t)batch * len);
    }
    for (int b = 0; b < batch; b++)
        free(ids[b]);
    free(all);
    free(mask);
}

/* T5 on the recorded ids; returns the projected, masked encoder states
 * [B*S, hidden] on the backend for the decoder checks. */
static mg_tensor *run_t5(mg_model *m, const int32_t *ids, const uint8_t *mask, int B, int S,
                         results *r, int record)
{
    mg_backend *be = mg_model_backend(m);
    mg_decoder *dec = mg_model_decoder(m);
    const mg_config *c = mg_model_config(m);
    mg_error err = {0};
    mg_tensor *last = NULL, *enc = NULL;
    if (mg_tensor_new2(&last, be, (int64_t)B * S, c->t5_d_model, &err) != MG_OK ||
        mg_t5_encode(mg_model_t5(m), ids, mask, B, S, last, record ? trace_tensor : NULL, r, &err) != MG_OK ||
        mg_tensor_new2(&enc, be, (int64_t)B * S, c->dec_hidden, &err) != MG_OK ||
        mg_decoder_project(dec, last, mask, enc, &err) != MG_OK) {
        setup_fail(r, "t5", &err);
        mg_tensor_free(enc);
        enc = NULL;
    } else if (record) {
        put_tensor(r, "encoder_hidden_states_for_decoder", enc);
        mg_tensor *proj = NULL;
        if (dec->proj_w && mg_tensor_new2(&proj, be, (int64_t)B * S, c->dec_hidden, &err) == MG_OK) {
            be->ops->linear(be, proj, last, dec->proj_w, dec->proj_b); /* before the mask */
            put_tensor(r, "enc_to_dec_proj_out", proj);
        }
        mg_tensor_free(proj);
        int64_t *bucket = malloc((size_t)S * S * sizeof *bucket);
        if (bucket) {
            for (int i = 0; i < S; i++)
                for (int j = 0; j < S; j++)
                    bucket[i * S + j] = mg_t5_bucket(j - i, c->t5_num_buckets, c->t5_max_distance);
            put_int(r, "relative_position_bucket", bucket, (int64_t)S * S);
        }
        free(bucket);
    }
    mg_tensor_free(last);
    return enc;
}

static void check_t5(mg_model *m, const char *dir, json_t *manifest, results *r)
{
    gfile g = {0};
    if (!gopen(&g, dir, "golden_t5.safetensors", r))
        return;
    tokenize_batch(m, json_object_get(manifest, "prompts"), NULL, r);
    int64_t n;
    int32_t *ids = gi32(&g, "input_ids", &n, r), *mk = gi32(&g, "attention_mask", NULL, r);
    const mg_st_tensor *ti = mg_st_find(&g.st, "input_ids");
    if (ids && mk && ti) {
        uint8_t *mask = to_mask(mk, n);
        mg_tensor *enc = mask ? run_t5(m, ids, mask, (int)ti->shape[0], (int)ti->shape[1], r, 1) : NULL;
        mg_tensor_free(enc);
        free(mask);
    }
    free(ids);
    free(mk);
    gclose(&g);
}

/* Decoder on the delay-pattern layout of recorded codes, plain and CFG. */
static void check_decoder(mg_model *m, const char *dir, results *r)
{
    mg_backend *be = mg_model_backend(m);
    mg_decoder *dec = mg_model_decoder(m);
    const mg_config *c = mg_model_config(m);
    int K = c->num_codebooks, C = c->audio_channels, V = c->dec_vocab, pad = c->pad_token;
    gfile g = {0}, gt = {0};
    if (!gopen(&g, dir, "golden_decoder_tf.safetensors", r))
        return;
    /* the prompts' ids: in the file itself (sets without golden_t5), else golden_t5's */
    gfile *src = mg_st_find(&g.st, "input_ids") ? &g : &gt;
    if (src == &gt && !gopen(&gt, dir, "golden_t5.safetensors", r)) {
        gclose(&g);
        return;
    }
    int64_t n;
    const mg_st_tensor *tc = mg_st_find(&g.st, "codes"), *ti = mg_st_find(&src->st, "input_ids");
    int32_t *codes = gi32(&g, "codes", NULL, r);
    int32_t *ids = gi32(src, "input_ids", &n, r), *mk = gi32(src, "attention_mask", NULL, r);
    uint8_t *mask = mk ? to_mask(mk, n) : NULL;
    if (!tc || !ti || !codes || !ids || !mask)
        goto done;
    put_input(r, "codes");
    if (src == &g) {
        put_input(r, "input_ids");
        put_input(r, "attention_mask");
    }
    /* the delay pattern spans K / C columns (a stereo model's channels share delays) */
    int B = (int)tc->shape[0], T = (int)tc->shape[2], L = T + K / C, S = (int)ti->shape[1];

    /* delay layout [B*K, L] from the codes */
    int32_t *seq = malloc((size_t)B * K * L * sizeof *seq);
    int64_t *mask_ex = malloc((size_t)B * K * 12 * sizeof *mask_ex);
    if (!seq || !mask_ex) {
        free(seq);
        free(mask_ex);
        goto done;
    }
    for (int b = 0; b < B; b++)
        for (int k = 0; k < K; k++)
            for (int t = 0; t < L; t++) {
                int f = t - k / C - 1;
                seq[((int64_t)b * K + k) * L + t] = (f >= 0 && f < T) ? codes[((int64_t)b * K + k) * T + f] : pad;
            }
    put_i32(r, "delayed_input_ids", seq, (int64_t)B * K * L);
    {
        int32_t *first = malloc((size_t)B * K * (T + 1) * sizeof *first);
        if (first) {
            for (int row = 0; row < B * K; row++)
                memcpy(first + (int64_t)row * (T + 1), seq + (int64_t)row * L, (size_t)(T + 1) * sizeof *first);
            put_i32(r, "build_delay_pattern_first_return", first, (int64_t)B * K * (T + 1));
        }
        free(first);
    }
    for (int b = 0; b < B; b++)
        mg_delay_mask(K, C, 12, pad, mask_ex + (int64_t)b * K * 12);
    put_int(r, "delay_pattern_mask_generation_example", mask_ex, (int64_t)B * K * 12);
    free(mask_ex);

    /* encoder states: conditional, and zeros for the unconditional half */
    mg_error err = {0};
    mg_tensor *enc = run_t5(m, ids, mask, B, S, r, 0);
    mg_tensor *enc2 = NULL, *logits = NULL, *logits2 = NULL;
    mg_dec_state st = {0}, st2 = {0};
    uint8_t *mask2 = calloc((size_t)2 * B * S, 1);
    float *zeros = calloc((size_t)B * S * c->t5_d_model + 1, sizeof *zeros);
    int32_t *seq2 = malloc((size_t)2 * B * K * L * sizeof *seq2);
    if (!enc || !mask2 || !zeros || !seq2)
        goto dec_done;
    memcpy(mask2, mask, (size_t)B * S);
    if (mg_tensor_new2(&logits, be, (int64_t)B * K * L, V, &err) ||
        mg_dec_state_init(dec, &st, B, L, enc, mask, S, &err) ||
        mg_decoder_forward(dec, &st, seq, L, 0, logits, trace_tensor, r, &err)) {
        setup_fail(r, "decoder forward", &err);
        goto dec_done;
    }
    put_tensor(r, "logits_cond", logits);
    {
        /* the reference's CFG batch: cat(enc, zeros) before the projection */
        float *last = malloc((size_t)2 * B * S * c->t5_d_model * sizeof *last);
        mg_tensor *l2 = NULL;
        int64_t *m64 = malloc((size_t)2 * B * S * sizeof *m64);
        if (!last || !m64)
            goto cfg_done;
        mg_tensor *t5last = NULL;
        if (mg_tensor_new2(&t5last, be, (int64_t)B * S, c->t5_d_model, &err) ||
            mg_t5_encode(mg_model_t5(m), ids, mask, B, S, t5last, NULL, NULL, &err) ||
            mg_tensor_download_f32(t5last, last, &err)) {
            mg_tensor_free(t5last);
            goto cfg_done;
        }
        mg_tensor_free(t5last);
        memset(last + (int64_t)B * S * c->t5_d_model, 0, (size_t)B * S * c->t5_d_model * sizeof *last);
        put_f32(r, "cfg_encoder_last_hidden_state", last, (int64_t)2 * B * S * c->t5_d_model);
        for (int64_t k = 0; k < 2 * B * S; k++)
            m64[k] = mask2[k];
        put_int(r, "cfg_attention_mask", m64, (int64_t)2 * B * S);
        memcpy(seq2, seq, (size_t)B * K * L * sizeof *seq2);
        memcpy(seq2 + (int64_t)B * K * L, seq, (size_t)B * K * L * sizeof *seq2);
        put_i32(r, "cfg_decoder_input_ids", seq2, (int64_t)2 * B * K * L);
        if (mg_loader_from_host(be, last, MG_SHAPE(2, 2 * B * S, c->t5_d_model), &l2, &err) ||
            mg_tensor_new2(&enc2, be, (int64_t)2 * B * S, c->dec_hidden, &err) ||
            mg_decoder_project(dec, l2, mask2, enc2, &err) ||
            mg_tensor_new2(&logits2, be, (int64_t)2 * B * K * L, V, &err) ||
            mg_dec_state_init(dec, &st2, 2 * B, L, enc2, mask2, S, &err) ||
            mg_decoder_forward(dec, &st2, seq2, L, 0, logits2, NULL, NULL, &err)) {
            setup_fail(r, "decoder CFG forward", &err);
        } else {
            put_tensor(r, "logits_cfg_batch", logits2);
            int64_t half = (int64_t)B * K * L * V;
            float *all = malloc((size_t)2 * half * sizeof *all), *mix = malloc((size_t)half * sizeof *mix);
            if (all && mix && mg_tensor_download_f32(logits2, all, &err) == MG_OK) {
                mg_cfg_mix(all, all + half, 3.0f, mix, (int)half);
                put_f32(r, "logits_cfg_mixed", mix, half);
            }
            free(all);
            free(mix);
        }
    cfg_done:
        mg_tensor_free(l2);
        free(last);
        free(m64);
    }
dec_done:
    if (st.n_seq)
        mg_dec_state_free(dec, &st);
    if (st2.n_seq)
        mg_dec_state_free(dec, &st2);
    mg_tensor_free(enc);
    mg_tensor_free(enc2);
    mg_tensor_free(logits);
    mg_tensor_free(logits2);
    free(mask2);
    free(zeros);
    free(seq2);
    free(seq);
done:
    free(codes);
    free(ids);
    free(mk);
    free(mask);
    gclose(&g);
    gclose(&gt);
}

/* Greedy generation with the step observer recording raw logits, scores, tokens. */
typedef struct {
    results *r;
    char     prefix[32];
    float   *raw, *scores;
    int64_t *tokens;
    int      steps, raw_rows, rows, V;
} step_rec;

static void on_step(void *ud, int step, const float *raw, int raw_rows, const float *scores,
                    const int32_t *tokens, int rows, int V)
{
    step_rec *s = ud;
    if (step >= s->steps)
        return;
    memcpy(s->raw + (int64_t)step * raw_rows * V, raw, (size_t)raw_rows * V * sizeof *raw);
    memcpy(s->scores + (int64_t)step * rows * V, scores, (size_t)rows * V * sizeof *scores);
    for (int k = 0; k < rows; k++)
        s->tokens[(int64_t)step * rows + k] = tokens[k];
}

/* prompt: codes [B, K, tp] the generation continues (NULL: none); audio
 * (NULL: none): [B, samples] the engine encodes into that prompt itself
 * (mg_gen_params.prompt_audio), the codes then only lay out the recorded
 * delay mask. */
static void run_greedy(mg_model *m, const int32_t *ids, const uint8_t *mask, int B, int S,
                       const int32_t *prompt, int tp, const float *audio, int64_t samples,
                       const char *prefix, float guidance, int steps, results *r)
{
    const mg_config *c = mg_model_config(m);
    int K = c->num_codebooks, V = c->dec_vocab;
    int raw_rows = B * K * (guidance > 1 ? 2 : 1);
    step_rec rec = {.r = r, .steps = steps, .raw_rows = raw_rows, .rows = B * K, .V = V};
    rec.raw = malloc((size_t)steps * raw_rows * V * sizeof *rec.raw);
    rec.scores = malloc((size_t)steps * B * K * V * sizeof *rec.scores);
    rec.tokens = malloc((size_t)steps * B * K * sizeof *rec.tokens);
    mg_gen_params p = {.max_new_tokens = steps,
                       .sampling = {.do_sample = 0, .temperature = 1, .top_k = 0, .top_p = 1,
                                    .guidance_scale = guidance},
                       .prompt_codes = audio ? NULL : prompt, .prompt_frames = audio ? 0 : tp,
                       .prompt_batch = B, .prompt_audio = audio, .prompt_samples = samples};
    mg_gen_hooks hooks = {.on_step = on_step, .ud = &rec};
    mg_gen_result res;
    mg_error err = {0};
    char name[96];
    if (!rec.raw || !rec.scores || !rec.tokens) {
        err.code = MG_ERR_NOMEM;
        snprintf(err.msg, sizeof err.msg, "out of memory");
        setup_fail(r, prefix, &err);
    } else if (mg_generate_ids(m, ids, mask, B, S, &p, &hooks, &res, &err) != MG_OK) {
        setup_fail(r, prefix, &err);
    } else {
#define NAME(s) (snprintf(name, sizeof name, "%s.%s", prefix, s), name)
        put_f32(r, NAME("step_logits_raw"), rec.raw, (int64_t)steps * raw_rows * V);
        put_f32(r, NAME("step_scores"), rec.scores, (int64_t)steps * B * K * V);
        put_int(r, NAME("step_tokens"), rec.tokens, (int64_t)steps * B * K);
        put_i32(r, NAME("delayed_sequence"), res.sequence, (int64_t)B * K * res.total);
        put_i32(r, NAME("audio_codes"), res.codes, (int64_t)B * K * res.frames);
        put_f32(r, NAME("audio_values"), res.audio,
                (int64_t)B * res.channels * (int64_t)res.n_samples);
        int64_t *dm = malloc((size_t)B * K * res.total * sizeof *dm);
        if (dm) {
            for (int b = 0; b < B; b++)
                mg_delay_mask_prompt(K, c->audio_channels, res.total, c->pad_token,
                                     prompt ? prompt + (int64_t)b * K * tp : NULL, tp, tp,
                                     dm + (int64_t)b * K * res.total);
            put_int(r, NAME("delay_pattern_mask"), dm, (int64_t)B * K * res.total);
        }
        free(dm);
#undef NAME
        mg_gen_result_free(&res);
    }
    free(rec.raw);
    free(rec.scores);
    free(rec.tokens);
}

/* Step count from the recorded step_tokens [steps, rows]. */
static int recorded_steps(gfile *g, const char *prefix)
{
    char name[96];
    snprintf(name, sizeof name, "%s.step_tokens", prefix);
    const mg_st_tensor *t = mg_st_find(&g->st, name);
    return t ? (int)t->shape[0] : 0;
}

static void check_generate(mg_model *m, const char *dir, const char *file, json_t *manifest,
                           const char *pipeline_prompt, results *r)
{
    gfile g = {0};
    if (!gopen(&g, dir, file, r))
        return;
    tokenize_batch(m, json_object_get(manifest, "prompts"), pipeline_prompt, r);
    int64_t n;
    const mg_st_tensor *ti = mg_st_find(&g.st, "input_ids");
    int32_t *ids = gi32(&g, "input_ids", &n, r), *mk = gi32(&g, "attention_mask", NULL, r);
    uint8_t *mask = mk ? to_mask(mk, n) : NULL;
    if (ti && ids && mask) {
        int B = (int)ti->shape[0], S = (int)ti->shape[1];
        /* runs are named by their guidance: cfg3, cfg1, greedy_cfg3_50 */
        static const struct { const char *prefix; float guidance; } runs[] = {
            {"cfg3", 3.0f}, {"cfg1", 1.0f}, {"greedy_cfg3_50", 3.0f}};
        for (size_t k = 0; k < sizeof runs / sizeof runs[0]; k++) {
            int steps = recorded_steps(&g, runs[k].prefix);
            if (steps > 0)
                run_greedy(m, ids, mask, B, S, NULL, 0, NULL, 0, runs[k].prefix, runs[k].guidance,
                           steps, r);
        }
    }
    free(ids);
    free(mk);
    free(mask);
    gclose(&g);
}

static golden_sink results_sink(results *r);

/* Continuation from a code prompt (greedy, max_new_tokens as recorded), and
 * from audio: the engine encodes it (mg_gen_params.prompt_audio) into its
 * code prompt. */
static void check_continuation(mg_model *m, const char *dir, const char *file, json_t *manifest,
                               results *r)
{
    gfile g = {0};
    if (!gopen(&g, dir, file, r))
        return;
    tokenize_batch(m, json_object_get(manifest, "prompts"), NULL, r);
    put_input(r, "prompt_codes");
    golden_sink sink = results_sink(r);
    int audio_batch = 0, audio_frames = 0;
    int32_t *audio_prompt = golden_encode_prompt_audio(m, &g.st, &sink, &audio_batch,
                                                       &audio_frames);
    int64_t n;
    const mg_st_tensor *ti = mg_st_find(&g.st, "input_ids"), *tp = mg_st_find(&g.st, "prompt_codes");
    int32_t *ids = gi32(&g, "input_ids", &n, r), *mk = gi32(&g, "attention_mask", NULL, r);
    int32_t *prompt = gi32(&g, "prompt_codes", NULL, r);
    uint8_t *mask = mk ? to_mask(mk, n) : NULL;
    if (ti && tp && ids && mask && prompt) {
        int B = (int)ti->shape[0], S = (int)ti->shape[1], frames = (int)tp->shape[1];
        static const struct { const char *prefix; float guidance; } runs[] = {
            {"cont_cfg3", 3.0f}, {"cont_cfg1", 1.0f}};
        for (size_t k = 0; k < sizeof runs / sizeof runs[0]; k++) {
            int steps = recorded_steps(&g, runs[k].prefix);
            if (steps > 0)
                run_greedy(m, ids, mask, B, S, prompt, frames, NULL, 0, runs[k].prefix,
                           runs[k].guidance, steps, r);
        }
        /* from the audio itself, through the engine's own encode: the codes
         * the tool encoded (prompt_audio_codes, checked on their own) lay
         * out the delay mask */
        int steps = recorded_steps(&g, "audio_cfg3");
        const mg_st_tensor *ta = mg_st_find(&g.st, "prompt_audio");
        float *audio = ta && ta->ndim == 3 ? malloc((size_t)mg_st_numel(ta) * sizeof *audio + 1)
                                           : NULL;
        if (audio)
            mg_st_to_f32(ta, audio);
        if (audio && audio_prompt && audio_batch == B && steps > 0)
            run_greedy(m, ids, mask, B, S, audio_prompt, audio_frames, audio, ta->shape[2],
                       "audio_cfg3", 3.0f, steps, r);
        free(audio);
    }
    free(ids);
    free(mk);
    free(mask);
    free(prompt);
    free(audio_prompt);
    gclose(&g);
}

/* CFG (scale 3) -> temperature -> top-k -> softmax on recorded raw logits;
 * the run name says the settings: "t0.7_k10". */
static void check_logits_processing(mg_model *m, const char *dir, results *r)
{
    gfile g = {0};
    if (!gopen(&g, dir, "golden_logits_processing.safetensors", r))
        return;
    int V = mg_model_config(m)->dec_vocab;
    for (size_t i = 0; i < g.st.n; i++) {
        const char *nm = g.st.tensors[i].name;
        const char *suffix = strstr(nm, ".raw_logits");
        if (!suffix)
            continue;
        char prefix[96];
        snprintf(prefix, sizeof prefix, "%.*s", (int)(suffix - nm), nm);
        float temp = 0;
        int topk = 0;
        if (sscanf(prefix, "t%f_k%d", &temp, &topk) != 2) {
            golden_report(r->t, 0, prefix, "run name does not say t<temperature>_k<top_k>");
            continue;
        }
        int64_t n = 0;
        float *raw = gf32(&g, nm, &n, r);
        int rows = (int)(n / V / 2);
        float *mix = malloc((size_t)rows * V * sizeof *mix), *tmp = malloc((size_t)rows * V * sizeof *tmp);
        float *scratch = malloc(2 * (size_t)V * sizeof *scratch);
        if (raw && mix && tmp && scratch) {
            char name[160];
            put_input(r, nm);
            mg_cfg_mix(raw, raw + (int64_t)rows * V, 3.0f, mix, rows * V);
            snprintf(name, sizeof name, "%s.after_cfg", prefix);
            put_f32(r, name, mix, (int64_t)rows * V);
            mg_sampling s = {.do_sample = 1, .temperature = temp, .top_k = 0, .top_p = 1};
            memcpy(tmp, mix, (size_t)rows * V * sizeof *tmp);
            for (int row = 0; row < rows; row++)
                mg_warp_scores(tmp + (int64_t)row * V, V, &s, scratch);
            snprintf(name, sizeof name, "%s.after_temperature", prefix);
            put_f32(r, name, tmp, (int64_t)rows * V);
            s.temperature = 1;
            s.top_k = topk;
            for (int row = 0; row < rows; row++)
                mg_warp_scores(tmp + (int64_t)row * V, V, &s, scratch);
            snprintf(name, sizeof name, "%s.after_top_k", prefix);
            put_f32(r, name, tmp, (int64_t)rows * V);
            for (int row = 0; row < rows; row++)
                mg_softmax(tmp + (int64_t)row * V, mix + (int64_t)row * V, V);
            snprintf(name, sizeof name, "%s.probs", prefix);
            put_f32(r, name, mix, (int64_t)rows * V);
        }
        free(raw);
        free(mix);
        free(tmp);
        free(scratch);
    }
    gclose(&g);
}

static void check_encodec(mg_model *m, const char *dir, results *r)
{
    mg_encodec *ec = mg_model_encodec(m);
    const mg_config *c = mg_model_config(m);
    gfile g = {0};
    if (!gopen(&g, dir, "golden_encodec.safetensors", r))
        return;
    for (size_t i = 0; i < g.st.n; i++) {
        const mg_st_tensor *t = &g.st.tensors[i];
        const char *suffix = strstr(t->name, "audio_codes");
        if (!suffix || strcmp(suffix, "audio_codes"))
            continue;
        /* [1 chunk, batch, K, frames] */
        int B = (int)t->shape[1], T = (int)t->shape[3];
        char prefix[96], name[160];
        snprintf(prefix, sizeof prefix, "%.*s", (int)(suffix - t->name), t->name);
        int32_t *codes = gi32(&g, t->name, NULL, r);
        float *audio = malloc((size_t)B * T * c->hop * sizeof *audio + 1);
        mg_error err = {0};
        put_input(r, t->name);
        if (codes && audio) {
            /* the full trace only for the main set; short sets check the waveform */
            int full = !prefix[0];
            if (mg_encodec_decode(ec, codes, B, T, audio, full ? trace_host : NULL, r, &err)) {
                setup_fail(r, t->name, &err);
            } else {
                snprintf(name, sizeof name, "%swaveform", prefix);
                put_f32(r, name, audio, (int64_t)B * T * c->hop);
                if (full)
                    put_f32(r, "decode_audio_values", audio, (int64_t)B * T * c->hop);
            }
        }
        free(codes);
        free(audio);
    }
    for (size_t i = 0; i < g.st.n; i++) {
        const char *nm = g.st.tensors[i].name;
        if (strncmp(nm, "folded_weight.", 14))
            continue;
        float *w = NULL;
        int64_t n = 0;
        mg_error err = {0};
        if (mg_encodec_folded_weight(ec, nm + 14, &w, &n, &err) != MG_OK)
            golden_report(r->t, 0, nm, "%s", err.msg);
        else
            put_f32(r, nm, w, n);
        free(w);
    }
    gclose(&g);
}

/* The results as a golden_sink, for the checkers in other files. */
static void sink_f32(void *ud, const char *name, const float *d, int64_t n) { put_f32(ud, name, d, n); }
static void sink_int(void *ud, const char *name, const int64_t *d, int64_t n) { put_int(ud, name, d, n); }
static void sink_input(void *ud, const char *name) { put_input(ud, name); }
static void sink_fail(void *ud, const char *what, const char *msg)
{
    results *r = ud;
    golden_report(r->t, 0, what, "%s", msg);
    r->failed_setup = 1;
}

static golden_sink results_sink(results *r)
{
    return (golden_sink){r, sink_f32, sink_int, sink_input, sink_fail};
}

static void check_encodec_encode(mg_model *m, const char *dir, results *r)
{
    gfile g = {0};
    golden_sink s = results_sink(r);
    if (gopen(&g, dir, "golden_encodec_encode.safetensors", r))
        golden_check_encode(m, &g.st, &s);
    gclose(&g);
}

/* --- comparison of every manifest tensor --- */
static const computed *find(const results *r, const char *file, const char *name)
{
    char key[160];
    snprintf(key, sizeof key, "%s:%s", file, name);
    for (int i = 0; i < r->n; i++)
        if (!strcmp(r->items[i].name, key))
            return &r->items[i];
    return NULL;
}

/* golden_report, or an "info" line that counts as neither pass nor fail. */
static void creport(golden_tally *t, int info, int ok, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void creport(golden_tally *t, int info, int ok, const char *name, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (!info) {
        golden_report(t, ok, name, "%s", msg);
        return;
    }
    printf("info %-52s %s%s\n", name, ok ? "identical: " : "", msg);
    t->info++;
}

static void compare(results *r, gfile *g, const char *file, const char *name)
{
    char label[200];
    snprintf(label, sizeof label, "%.*s/%s", (int)(strlen(file) - 12), file, name);
    /* with bf16 weights, generated codes diverge after a flipped near-tie and
     * everything downstream with them: reported, not judged */
    int info = r->t->bf16 && (strstr(file, "generate") || strstr(file, "pipeline") ||
                                strstr(file, "continuation"));
    const mg_st_tensor *t = mg_st_find(&g->st, name);
    const computed *c = find(r, file, name);
    if (!t) {
        creport(r->t, info, 0, label, "listed in manifest.json but absent from %s", file);
        return;
    }
    if (!c) {
        creport(r->t, info, 0, label, "not computed");
        return;
    }
    if (c->is_input) {
        printf("in   %-52s used as the input of the computation\n", label);
        return;
    }
    int64_t n = mg_st_numel(t);
    if (c->n != n || (!c->f && !c->i)) {
        creport(r->t, info, 0, label, "%lld values computed, %lld expected", (long long)c->n, (long long)n);
        return;
    }
    if (t->dtype == MG_DT_I64 || t->dtype == MG_DT_I32) {
        int64_t *ref = malloc((size_t)n * sizeof *ref + 1);
        int64_t bad = 0, first = -1;
        if (ref && mg_st_to_i64(t, ref, NULL) == MG_OK)
            for (int64_t k = 0; k < n; k++)
                if (ref[k] != (c->is_int ? c->i[k] : (int64_t)c->f[k]) && bad++ == 0)
                    first = k;
        if (first >= 0)
            creport(r->t, info, 0, label, "%lld of %lld integers differ (first at %lld: %lld, expected %lld)",
                          (long long)bad, (long long)n, (long long)first,
                          (long long)(c->is_int ? c->i[first] : (int64_t)c->f[first]), (long long)ref[first]);
        else
            creport(r->t, info, ref != NULL, label, "exact (%lld values)", (long long)n);
        free(ref);
        return;
    }
    float *ref = malloc((size_t)n * sizeof *ref + 1);
    if (!ref) {
        creport(r->t, info, 0, label, "out of memory");
        return;
    }
    mg_st_to_f32(t, ref);
    double tol = golden_float_tolerance(ref, (size_t)n, r->t->bf16 ? GOLDEN_REL_BF16 : GOLDEN_REL_F32), err = 0;
    int64_t inf_mismatch = 0, worst = 0;
    for (int64_t k = 0; k < n; k++) {
        double a = c->is_int ? (double)c->i[k] : c->f[k], b = ref[k];
        if (isinf(b) || isinf(a)) {
            inf_mismatch += !(isinf(a) && isinf(b) && (a > 0) == (b > 0));
            continue;
        }
        double d = fabs(a - b);
        if (!(d <= err)) { /* NaN counts as the worst */
            err = isnan(d) ? INFINITY : d;
            worst = k;
        }
    }
    int ok = !inf_mismatch && err <= tol;
    if (inf_mismatch)
        creport(r->t, info, 0, label, "%lld entries differ in their -inf pattern", (long long)inf_mismatch);
    else
        creport(r->t, info, ok, label, "max err %.3g (tol %.3g) at %lld", err, tol, (long long)worst);
    free(ref);
}

void golden_check_model(const char *dir, golden_tally *t)
{
    results r = {.t = t};
    char path[4096];
    snprintf(path, sizeof path, "%s/manifest.json", dir);
    json_error_t jerr;
    json_t *manifest = json_load_file(path, 0, &jerr);
    if (!manifest) {
        golden_report(t, 0, "manifest.json", "%s", jerr.text);
        return;
    }
    mg_model *m = NULL;
    mg_error err = {0};
    mg_model_options opt = {.n_threads = 2, .device = t->device, .dtype = t->dtype,
                            .backend = &t->backend};
    if (mg_model_load(&m, dir, &opt, &err) != MG_OK) {
        golden_report(t, 0, "load model", "%s", err.msg);
        json_decref(manifest);
        return;
    }
    const char *pipeline_prompt = json_string_value(json_object_get(manifest, "pipeline_prompt"));
    json_t *files = json_object_get(manifest, "files"), *f;
    size_t fi;
    json_array_foreach(files, fi, f) {
        const char *file = json_string_value(json_object_get(f, "file"));
        if (!file)
            continue;
        snprintf(r.file, sizeof r.file, "%s", file);
        if (!strcmp(file, "golden_t5.safetensors"))
            check_t5(m, dir, manifest, &r);
        else if (!strcmp(file, "golden_decoder_tf.safetensors"))
            check_decoder(m, dir, &r);
        else if (!strcmp(file, "golden_generate.safetensors"))
            check_generate(m, dir, file, manifest, NULL, &r);
        else if (!strcmp(file, "golden_pipeline.safetensors"))
            check_generate(m, dir, file, manifest, pipeline_prompt, &r);
        else if (!strcmp(file, "golden_logits_processing.safetensors"))
            check_logits_processing(m, dir, &r);
        else if (!strcmp(file, "golden_encodec.safetensors"))
            check_encodec(m, dir, &r);
        else if (!strcmp(file, "golden_continuation.safetensors"))
            check_continuation(m, dir, file, manifest, &r);
        else if (!strcmp(file, "golden_encodec_encode.safetensors"))
            check_encodec_encode(m, dir, &r);
        else
            golden_report(t, 0, file, "unknown golden file: no checker for it");
        gfile g = {0};
        if (!gopen(&g, dir, file, &r))
            continue;
        const char *name;
        json_t *v;
        json_object_foreach(json_object_get(f, "tensors"), name, v)
            compare(&r, &g, file, name);
        gclose(&g);
    }
    for (int i = 0; i < r.n; i++) {
        free(r.items[i].f);
        free(r.items[i].i);
    }
    free(r.items);
    mg_model_free(m);
    json_decref(manifest);
}
