/* A generation's lifecycle: T5 once, then the decode loop over the delay
 * pattern with classifier-free guidance, then the codes and EnCodec. */
#include "runtime/gen_job_impl.h"
#include "model/delay.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
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

void mg_gen_job_release(mg_model *m, mg_gen_job *j)
{
    if (j->have_state)
        mg_dec_state_free(&m->parts.dec, &j->st);
    j->have_state = 0;
    mg_tensor_free(j->logits);
    j->logits = NULL;
    free(j->seq);
    free(j->step_ids);
    free(j->tokens);
    free(j->scores);
    free(j->raw);
    mg_encodec_stream_free(j->audio);
    free(j->audio_codes);
    j->audio = NULL;
    j->audio_codes = NULL;
    j->seq = j->step_ids = j->tokens = NULL;
    j->scores = j->raw = NULL;
}

mg_code mg_gen_job_start(mg_model *m, mg_gen_job *j)
{
    const mg_config *c = &m->parts.cfg;
    mg_backend *be = m->parts.be;
    const mg_gen_params *p = j->p;
    mg_error *err = j->err;
    int K = c->num_codebooks, V = c->dec_vocab, batch = j->batch, len = j->len;
    mg_code rc = mg_gen_steps(m, p, &j->steps, &j->frames, err);
    if (rc == MG_OK)
        rc = check_sampling(&p->sampling, err);
    if (rc != MG_OK)
        return rc;
    if (!j->ids || !j->mask || batch < 1 || len < 1)
        return mg_fail_field(err, MG_ERR_INVALID, "prompt", "prompt: empty batch");
    /* T5's position bias grows with len^2: the tokenizer's own limit bounds it */
    if (batch > MG_MAX_BATCH || len > MG_TOKENIZER_MAX_TOKENS)
        return mg_fail_field(err, MG_ERR_INVALID, "prompt", "prompt: at most %d prompts of %d tokens",
                             MG_MAX_BATCH, MG_TOKENIZER_MAX_TOKENS);
    int cfg = p->sampling.guidance_scale > 1.0f, want_raw = j->hooks && j->hooks->on_step;
    j->n_seq = batch * (cfg ? 2 : 1);
    j->total = j->steps + 1;
    int64_t H = c->dec_hidden, n_seq = j->n_seq;

    mg_tensor *enc = NULL, *enc_dec = NULL;
    uint8_t *mask2 = calloc((size_t)n_seq * len, 1);
    j->seq = malloc((size_t)batch * K * j->total * sizeof *j->seq);
    j->step_ids = malloc((size_t)n_seq * K * sizeof *j->step_ids);
    j->tokens = malloc((size_t)batch * K * sizeof *j->tokens);
    j->scores = want_raw ? malloc((size_t)batch * K * V * sizeof *j->scores) : NULL;
    j->raw = want_raw ? malloc((size_t)n_seq * K * V * sizeof *j->raw) : NULL;
    if (!mask2 || !j->seq || !j->step_ids || !j->tokens || (want_raw && (!j->scores || !j->raw))) {
        free(mask2);
        return mg_fail(err, MG_ERR_NOMEM, "generate: out of memory");
    }
    memcpy(mask2, j->mask, (size_t)batch * len); /* unconditional half: all masked */

    /* text: T5, projection, and zeros for the unconditional half */
    double t0 = now_ms();
    rc = mg_tensor_new2(&enc, be, n_seq * len, c->t5_d_model, err);
    if (rc == MG_OK)
        rc = mg_tensor_new2(&enc_dec, be, n_seq * len, H, err);
    if (rc == MG_OK) {
        mg_tensor cond = mg_tensor_rows_view(enc, 0, (int64_t)batch * len);
        rc = mg_t5_encode(&m->parts.t5, j->ids, j->mask, batch, len, &cond, NULL, NULL, err);
    }
    if (rc == MG_OK)
        rc = mg_decoder_project(&m->parts.dec, enc, mask2, enc_dec, err);
    if (rc == MG_OK)
        rc = mg_dec_state_init(&m->parts.dec, &j->st, (int)n_seq, j->steps, enc_dec, mask2, len, err);
    j->have_state = rc == MG_OK;
    mg_tensor_free(enc);
    mg_tensor_free(enc_dec);
    free(mask2);
    if (rc == MG_OK)
        rc = mg_tensor_new2(&j->logits, be, n_seq * K, V, err);
    if (rc != MG_OK)
        return rc;
    j->res->t5_ms = now_ms() - t0;
    j->t = 0;
    for (int b = 0; b < batch * K; b++)
        j->seq[(int64_t)b * j->total] = c->pad_token;
    for (int s = 0; s < n_seq; s++)
        for (int k = 0; k < K; k++)
            j->step_ids[s * K + k] = c->pad_token;
    j->t_decode0 = now_ms();
    return MG_OK;
}

int mg_gen_job_select_call(mg_model *m, const mg_gen_job *j, mg_select_call *call)
{
    if (j->raw) /* the step hook reads scores and raw logits: selected alone */
        return 0;
    *call = (mg_select_call){.logits = j->logits, .rows = j->batch * m->parts.cfg.num_codebooks,
                             .s = &j->p->sampling, .seed = j->p->seed, .step = (uint64_t)j->t,
                             .tokens = j->tokens};
    return 1;
}

/* After the decoder step that turned column t into logits for column t+1. */
mg_code mg_gen_job_after_step(mg_model *m, mg_gen_job *j, int selected)
{
    const mg_config *c = &m->parts.cfg;
    mg_backend *be = m->parts.be;
    int K = c->num_codebooks, V = c->dec_vocab, batch = j->batch, t = j->t, total = j->total;
    /* processed scores only when the step hook reads them: on a GPU they
     * would cost a copy per step */
    mg_code rc = selected ? MG_OK
                          : be->ops->select_tokens(be, j->logits, batch * K, V, &j->p->sampling,
                                                   j->p->seed, (uint64_t)t,
                                                   j->raw ? j->scores : NULL, j->tokens, j->err);
    if (rc == MG_OK && j->raw)
        rc = be->ops->download(be, j->logits, 0, j->raw, (size_t)j->n_seq * K * V * sizeof *j->raw,
                               j->err);
    if (rc != MG_OK)
        return rc;
    if (j->raw)
        j->hooks->on_step(j->hooks->ud, t, j->raw, j->n_seq * K, j->scores, j->tokens, batch * K, V);
    for (int r = 0; r < batch * K; r++) {
        int forced = mg_delay_forced(K, total, c->pad_token, r % K, t + 1);
        j->seq[(int64_t)r * total + t + 1] = forced >= 0 ? forced : j->tokens[r];
    }
    j->t = ++t;
    for (int s = 0; s < j->n_seq; s++)
        for (int k = 0; k < K; k++)
            j->step_ids[s * K + k] = j->seq[((int64_t)(s % batch) * K + k) * total + t];
    if (j->hooks && j->hooks->progress && j->hooks->progress(j->hooks->ud, t, j->steps))
        return mg_fail(j->err, MG_ERR_CANCELLED, "generation cancelled at step %d of %d", t,
                       j->steps);
    return mg_gen_job_feed_audio(m, j);
}

/* A piece of the streamed audio: into res->audio, then to the hook. */
static mg_code audio_piece(void *ud, const float *audio, int batch, int64_t offset, int64_t n,
                           mg_error *err)
{
    mg_gen_job *j = ud;
    const mg_gen_hooks *h = j->hooks;
    size_t per_item = j->res->n_samples;
    for (int b = 0; b < batch; b++)
        memcpy(j->res->audio + b * per_item + offset, audio + (int64_t)b * n,
               (size_t)n * sizeof *audio);
    if (h && h->on_audio && h->on_audio(h->ud, audio, batch, (size_t)offset, (size_t)n))
        return mg_fail(err, MG_ERR_CANCELLED, "generation cancelled by its audio consumer");
    return MG_OK;
}

/* Frames [j->audio_fed, upto) of the sequence to the stream. */
static mg_code push_frames(mg_model *m, mg_gen_job *j, int upto)
{
    int K = m->parts.cfg.num_codebooks, frames = j->frames, total = j->total;
    for (int b = 0; b < j->batch; b++)
        for (int k = 0; k < K; k++) {
            const int32_t *row = j->seq + ((int64_t)b * K + k) * total;
            int32_t *out = j->audio_codes + ((int64_t)b * K + k) * frames;
            for (int f = j->audio_fed; f < upto; f++)
                out[f] = row[f + k + 1]; /* the delay pattern (mg_delay_extract) */
        }
    double t0 = now_ms();
    mg_code rc = mg_encodec_stream_push(j->audio, j->audio_codes + j->audio_fed,
                                        upto - j->audio_fed, frames, j->err);
    j->res->encodec_ms += now_ms() - t0;
    j->audio_fed = upto;
    return rc;
}

/* The first chunk is small so that sound starts early (8 frames, 0.16 s at
 * 50 Hz, past the look-ahead: about 12 steps after the start); each next
 * one is as long as the audio already out, so a player that started with
 * the first chunk is still playing when the next arrives at generation
 * speed, up to 50 frames (1 s), where the per-chunk costs are a few % of
 * the chunk's decode and a chunk holds the scheduler thread no longer than
 * a fraction of a second. */
mg_code mg_gen_job_feed_audio(mg_model *m, mg_gen_job *j)
{
    int K = m->parts.cfg.num_codebooks, frames = j->frames;
    /* frame f is complete once column f + K, its last codebook, is chosen */
    int complete = j->t - K + 1 < frames ? j->t - K + 1 : frames;
    if (complete <= j->audio_fed)
        return MG_OK;
    if (!j->audio) {
        mg_backend_caps caps;
        mg_backend_get_caps(m->parts.be, &caps);
        if (!caps.lstm_state || (j->hooks && j->hooks->skip_audio) ||
            complete < mg_encodec_lookahead_frames(m->parts.ec) + MG_AUDIO_FIRST_FRAMES)
            return MG_OK;
        mg_gen_result *res = j->res;
        res->n_samples = (size_t)frames * m->parts.cfg.hop;
        res->encodec_ms = 0;
        if (!res->audio)
            res->audio = malloc((size_t)j->batch * res->n_samples * sizeof *res->audio + 1);
        j->audio_codes = malloc((size_t)j->batch * K * frames * sizeof *j->audio_codes);
        if (!res->audio || !j->audio_codes)
            return mg_fail(j->err, MG_ERR_NOMEM, "generate: out of memory for audio");
        mg_code rc = mg_encodec_stream_open(&j->audio, m->parts.ec, j->batch, audio_piece, j,
                                            j->err);
        if (rc != MG_OK)
            return rc;
    } else {
        int64_t out = mg_encodec_stream_samples(j->audio) / m->parts.cfg.hop;
        int want = out < MG_AUDIO_FIRST_FRAMES ? MG_AUDIO_FIRST_FRAMES
                   : out > MG_AUDIO_MAX_FRAMES ? MG_AUDIO_MAX_FRAMES : (int)out;
        if (complete - j->audio_fed < want && complete < frames)
            return MG_OK;
    }
    return push_frames(m, j, complete);
}

mg_code mg_gen_job_codes(mg_model *m, mg_gen_job *j, int *needs_audio)
{
    const mg_config *c = &m->parts.cfg;
    mg_gen_result *res = j->res;
    int K = c->num_codebooks, batch = j->batch, frames = j->frames;
    *needs_audio = 0;
    res->decode_ms = now_ms() - j->t_decode0;
    res->steps = j->steps;
    res->batch = batch;
    res->frames = frames;
    res->total = j->total;
    res->sample_rate = c->sample_rate;
    res->n_samples = (size_t)frames * c->hop;
    res->codes = malloc((size_t)batch * K * frames * sizeof *res->codes);
    if (!res->codes)
        return mg_fail(j->err, MG_ERR_NOMEM, "generate: out of memory");
    for (int b = 0; b < batch; b++)
        mg_delay_extract(K, j->total, j->seq + (int64_t)b * K * j->total,
                         res->codes + (int64_t)b * K * frames);
    res->sequence = j->seq;
    j->seq = NULL;
    if (j->hooks && j->hooks->skip_audio)
        return MG_OK;
    /* the decoding state is not needed for the audio: free it first */
    if (j->have_state)
        mg_dec_state_free(&m->parts.dec, &j->st);
    j->have_state = 0;
    if (j->audio) {
        /* streamed: the last frames, then the right edge */
        mg_code rc = j->audio_fed < frames ? push_frames(m, j, frames) : MG_OK;
        double t0 = now_ms();
        if (rc == MG_OK)
            rc = mg_encodec_stream_finish(j->audio, j->err);
        res->encodec_ms += now_ms() - t0;
        j->audio_streamed = rc == MG_OK;
        return rc;
    }
    res->audio = malloc((size_t)batch * res->n_samples * sizeof *res->audio + 1);
    if (!res->audio)
        return mg_fail(j->err, MG_ERR_NOMEM, "generate: out of memory for audio");
    *needs_audio = 1;
    return MG_OK;
}

mg_code mg_gen_jobs_audio(mg_model *m, mg_gen_job *const *jobs, int n)
{
    int K = m->parts.cfg.num_codebooks, frames = jobs[0]->frames, items = 0;
    for (int i = 0; i < n; i++)
        items += jobs[i]->batch;
    double t0 = now_ms();
    mg_code rc;
    if (n == 1) {
        mg_gen_result *res = jobs[0]->res;
        rc = mg_encodec_decode(m->parts.ec, res->codes, items, frames, res->audio, NULL, NULL,
                               jobs[0]->err);
    } else {
        /* one batch: the items' codes side by side, their audio split back */
        size_t per_codes = (size_t)K * frames, per_audio = jobs[0]->res->n_samples;
        int32_t *codes = malloc((size_t)items * per_codes * sizeof *codes);
        float *audio = malloc((size_t)items * per_audio * sizeof *audio);
        mg_error err = {0};
        rc = codes && audio ? MG_OK
                            : mg_fail(&err, MG_ERR_NOMEM, "generate: out of memory for the audio "
                                      "of %d generations", n);
        for (int i = 0, at = 0; rc == MG_OK && i < n; at += jobs[i]->batch, i++)
            memcpy(codes + (size_t)at * per_codes, jobs[i]->res->codes,
                   (size_t)jobs[i]->batch * per_codes * sizeof *codes);
        if (rc == MG_OK)
            rc = mg_encodec_decode(m->parts.ec, codes, items, frames, audio, NULL, NULL, &err);
        for (int i = 0, at = 0; i < n; at += jobs[i]->batch, i++) {
            if (rc == MG_OK)
                memcpy(jobs[i]->res->audio, audio + (size_t)at * per_audio,
                       (size_t)jobs[i]->batch * per_audio * sizeof *audio);
            else if (jobs[i]->err)
                *jobs[i]->err = err;
        }
        free(codes);
        free(audio);
    }
    double ms = now_ms() - t0;
    for (int i = 0; i < n; i++)
        jobs[i]->res->encodec_ms = ms;
    return rc;
}

/* The audio is final once EnCodec has run over all the codes: handed to the
 * on_audio hook in one piece. */
mg_code mg_gen_job_hand_audio(mg_gen_job *j)
{
    const mg_gen_hooks *h = j->hooks;
    mg_gen_result *res = j->res;
    if (!h || !h->on_audio || !res->audio || j->audio_streamed)
        return MG_OK;
    if (h->on_audio(h->ud, res->audio, res->batch, 0, res->n_samples))
        return mg_fail(j->err, MG_ERR_CANCELLED, "generation cancelled by its audio consumer");
    return MG_OK;
}

mg_code mg_gen_job_finish(mg_model *m, mg_gen_job *j)
{
    int needs_audio;
    mg_code rc = mg_gen_job_codes(m, j, &needs_audio);
    if (rc == MG_OK && needs_audio)
        rc = mg_gen_jobs_audio(m, &j, 1);
    return rc == MG_OK ? mg_gen_job_hand_audio(j) : rc;
}

