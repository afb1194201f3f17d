/* Text -> codes -> audio: T5 once, then the decode loop over the delay
 * pattern with classifier-free guidance, then EnCodec. */
#include "delay.h"
#include "model.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

void mg_gen_params_default(const mg_model *m, mg_gen_params *p)
{
    const mg_config *c = &m->cfg;
    memset(p, 0, sizeof *p);
    p->duration = 10.0f;
    p->sampling.do_sample = c->do_sample;
    p->sampling.temperature = c->temperature;
    p->sampling.top_k = c->top_k;
    p->sampling.top_p = c->top_p;
    p->sampling.guidance_scale = c->guidance_scale;
}

mg_code mg_gen_steps(const mg_model *m, const mg_gen_params *p, int *steps, int *frames,
                     mg_error *err)
{
    const mg_config *c = &m->cfg;
    int K = c->num_codebooks;
    int s = p->max_new_tokens;
    if (s < 0)
        return mg_fail_field(err, MG_ERR_INVALID, "max_new_tokens", "max_new_tokens: must be >= 0 (0: use duration)");
    if (s == 0) {
        /* frames = round(duration * fps); steps = frames + K - 1 must fit the positions */
        double fps = (double)c->sample_rate / c->hop, max_s = (c->max_positions - K + 1) / fps;
        if (!(p->duration > 0) || p->duration > max_s + 0.5 / fps)
            return mg_fail_field(err, MG_ERR_INVALID, "duration",
                                 "duration: must be in (0, %.2f] seconds", max_s);
        int want = (int)(p->duration * fps + 0.5);
        s = (want < 1 ? 1 : want) + K - 1;
    }
    if (s < K || s > c->max_positions)
        return mg_fail(err, MG_ERR_INVALID, "max_new_tokens: must be in [%d, %d]", K,
                       c->max_positions);
    *steps = s;
    *frames = s + 1 - K;
    return MG_OK;
}

static mg_code check_sampling(const mg_sampling *s, mg_error *err)
{
    if (!(s->temperature > 0) || s->temperature > 100)
        return mg_fail_field(err, MG_ERR_INVALID, "temperature", "temperature: must be in (0, 100]");
    if (s->top_k < 0)
        return mg_fail_field(err, MG_ERR_INVALID, "top_k", "top_k: must be >= 0");
    if (!(s->top_p > 0) || s->top_p > 1)
        return mg_fail_field(err, MG_ERR_INVALID, "top_p", "top_p: must be in (0, 1]");
    if (!(s->guidance_scale >= 0) || s->guidance_scale > 100)
        return mg_fail_field(err, MG_ERR_INVALID, "guidance_scale", "guidance_scale: must be in [0, 100]");
    return MG_OK;
}

void mg_gen_result_free(mg_gen_result *res)
{
    free(res->sequence);
    free(res->codes);
    free(res->audio);
    memset(res, 0, sizeof *res);
}

static mg_code generate_ids_locked(mg_model *m, const int32_t *ids, const uint8_t *mask,
                                   int batch, int len, const mg_gen_params *p,
                                   const mg_gen_hooks *hooks, mg_gen_result *res, mg_error *err)
{
    const mg_config *c = &m->cfg;
    mg_backend *be = m->be;
    int K = c->num_codebooks, V = c->dec_vocab, pad = c->pad_token;
    memset(res, 0, sizeof *res);
    int steps, frames;
    mg_code rc = mg_gen_steps(m, p, &steps, &frames, err);
    if (rc == MG_OK)
        rc = check_sampling(&p->sampling, err);
    if (rc != MG_OK)
        return rc;
    if (!ids || !mask || batch < 1 || len < 1)
        return mg_fail_field(err, MG_ERR_INVALID, "prompt", "prompt: empty batch");
    /* T5's position bias grows with len^2: the tokenizer's own limit bounds it */
    if (batch > MG_MAX_BATCH || len > MG_TOKENIZER_MAX_TOKENS)
        return mg_fail_field(err, MG_ERR_INVALID, "prompt", "prompt: at most %d prompts of %d tokens",
                             MG_MAX_BATCH, MG_TOKENIZER_MAX_TOKENS);
    int cfg = p->sampling.guidance_scale > 1.0f;
    int n_seq = batch * (cfg ? 2 : 1), total = steps + 1;
    int64_t H = c->dec_hidden;

    mg_tensor *enc = NULL, *enc_dec = NULL, *logits = NULL;
    uint8_t *mask2 = calloc((size_t)n_seq * len, 1);
    int32_t *seq = malloc((size_t)batch * K * total * sizeof *seq);
    int32_t *step_ids = malloc((size_t)n_seq * K * sizeof *step_ids);
    int32_t *tokens = malloc((size_t)batch * K * sizeof *tokens);
    float *scores = malloc((size_t)batch * K * V * sizeof *scores);
    float *raw = hooks && hooks->on_step ? malloc((size_t)n_seq * K * V * sizeof *raw) : NULL;
    mg_dec_state st = {0};
    int have_state = 0;
    if (!mask2 || !seq || !step_ids || !tokens || !scores || (hooks && hooks->on_step && !raw)) {
        rc = mg_fail(err, MG_ERR_NOMEM, "generate: out of memory");
        goto done;
    }
    memcpy(mask2, mask, (size_t)batch * len); /* unconditional half: all masked */

    /* text: T5, projection, and zeros for the unconditional half */
    double t0 = now_ms();
    rc = mg_tensor_new2(&enc, be, (int64_t)n_seq * len, c->t5_d_model, err);
    if (rc == MG_OK)
        rc = mg_tensor_new2(&enc_dec, be, (int64_t)n_seq * len, H, err);
    if (rc == MG_OK) {
        mg_tensor cond = mg_tensor_rows_view(enc, 0, (int64_t)batch * len);
        rc = mg_t5_encode(&m->t5, ids, mask, batch, len, &cond, NULL, NULL, err);
    }
    if (rc == MG_OK)
        rc = mg_decoder_project(&m->dec, enc, mask2, enc_dec, err);
    if (rc == MG_OK)
        rc = mg_dec_state_init(&m->dec, &st, n_seq, steps, enc_dec, mask2, len, err);
    if (rc != MG_OK)
        goto done;
    have_state = 1;
    mg_tensor_free(enc);
    mg_tensor_free(enc_dec);
    enc = enc_dec = NULL;
    res->t5_ms = now_ms() - t0;
    if ((rc = mg_tensor_new2(&logits, be, (int64_t)n_seq * K, V, err)) != MG_OK)
        goto done;

    /* decode loop: column t in, column t+1 out */
    t0 = now_ms();
    for (int b = 0; b < batch * K; b++)
        seq[(int64_t)b * total] = pad;
    for (int t = 0; t < steps; t++) {
        for (int s = 0; s < n_seq; s++)
            for (int k = 0; k < K; k++)
                step_ids[s * K + k] = seq[((int64_t)(s % batch) * K + k) * total + t];
        rc = mg_decoder_forward(&m->dec, &st, step_ids, 1, 1, logits, NULL, NULL, err);
        if (rc == MG_OK)
            /* processed scores only when the step hook reads them: on a GPU
             * they would cost a copy per step */
            rc = be->ops->select_tokens(be, logits, batch * K, V, &p->sampling, p->seed,
                                        (uint64_t)t, raw ? scores : NULL, tokens, err);
        if (rc == MG_OK && raw)
            rc = be->ops->download(be, logits, 0, raw, (size_t)n_seq * K * V * sizeof *raw, err);
        if (rc != MG_OK)
            goto done;
        if (raw)
            hooks->on_step(hooks->ud, t, raw, n_seq * K, scores, tokens, batch * K, V);
        for (int r = 0; r < batch * K; r++) {
            int forced = mg_delay_forced(K, total, pad, r % K, t + 1);
            seq[(int64_t)r * total + t + 1] = forced >= 0 ? forced : tokens[r];
        }
        if (hooks && hooks->progress && hooks->progress(hooks->ud, t + 1, steps)) {
            rc = mg_fail(err, MG_ERR_CANCELLED, "generation cancelled at step %d of %d", t + 1, steps);
            goto done;
        }
    }
    res->decode_ms = now_ms() - t0;
    res->steps = steps;
    mg_dec_state_free(&m->dec, &st);
    have_state = 0;

    /* codes and audio */
    res->batch = batch;
    res->frames = frames;
    res->total = total;
    res->sample_rate = c->sample_rate;
    res->n_samples = (size_t)frames * c->hop;
    res->codes = malloc((size_t)batch * K * frames * sizeof *res->codes);
    if (!res->codes) {
        rc = mg_fail(err, MG_ERR_NOMEM, "generate: out of memory");
        goto done;
    }
    for (int b = 0; b < batch; b++)
        mg_delay_extract(K, total, seq + (int64_t)b * K * total, res->codes + (int64_t)b * K * frames);
    res->sequence = seq;
    seq = NULL;
    if (!(hooks && hooks->skip_audio)) {
        t0 = now_ms();
        res->audio = malloc((size_t)batch * res->n_samples * sizeof *res->audio + 1);
        if (!res->audio)
            rc = mg_fail(err, MG_ERR_NOMEM, "generate: out of memory for audio");
        else
            rc = mg_encodec_decode(m->ec, res->codes, batch, frames, res->audio, NULL, NULL, err);
        res->encodec_ms = now_ms() - t0;
    }
done:
    if (have_state)
        mg_dec_state_free(&m->dec, &st);
    mg_tensor_free(enc);
    mg_tensor_free(enc_dec);
    mg_tensor_free(logits);
    free(mask2);
    free(seq);
    free(step_ids);
    free(tokens);
    free(scores);
    free(raw);
    if (rc != MG_OK)
        mg_gen_result_free(res);
    return rc;
}

mg_code mg_generate_ids(mg_model *m, const int32_t *ids, const uint8_t *mask, int batch,
                        int len, const mg_gen_params *p, const mg_gen_hooks *hooks,
                        mg_gen_result *res, mg_error *err)
{
    pthread_mutex_lock(&m->run);
    mg_code rc = generate_ids_locked(m, ids, mask, batch, len, p, hooks, res, err);
    pthread_mutex_unlock(&m->run);
    return rc;
}

mg_code mg_generate(mg_model *m, const char *const *prompts, int batch, const mg_gen_params *p,
                    const mg_gen_hooks *hooks, mg_gen_result *res, mg_error *err)
{
    memset(res, 0, sizeof *res);
    if (!m->tok)
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
        rc = mg_tokenize(m->tok, prompts[b], strlen(prompts[b]), 0, &each[b], &n[b], err);
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
