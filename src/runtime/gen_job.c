/* A generation's lifecycle: T5 once, then the decode loop over the delay
 * pattern with classifier-free guidance, then the codes and EnCodec. */
#include "runtime/gen_job_impl.h"
#include "model/delay.h"
#include "model/encodec_encode.h"

#include <stdio.h>
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
    free(j->codes);
    free(j->prefill);
    mg_encodec_stream_free(j->audio);
    free(j->audio_codes);
    j->audio = NULL;
    j->seq = j->step_ids = j->tokens = j->codes = j->prefill = j->audio_codes = NULL;
    j->scores = j->raw = NULL;
}

/* The code prompt against the model and the batch: codes in [0, V). */
static mg_code check_prompt(const mg_config *c, const mg_gen_params *p, int batch, mg_error *err)
{
    if (!p->prompt_codes)
        return MG_OK;
    if (p->prompt_batch != 0 && p->prompt_batch != batch)
        return mg_fail_field(err, MG_ERR_INVALID, "prompt_codes", "prompt_codes: %d items for "
                             "a batch of %d", p->prompt_batch, batch);
    int64_t per_row = p->prompt_frames, n = (int64_t)batch * c->num_codebooks * per_row;
    for (int64_t i = 0; i < n; i++)
        if (p->prompt_codes[i] < 0 || p->prompt_codes[i] >= c->dec_vocab)
            return mg_fail_field(err, MG_ERR_INVALID, "prompt_codes", "prompt_codes: code %d "
                                 "(item %lld, codebook %lld, frame %lld) is outside [0, %d)",
                                 p->prompt_codes[i], (long long)(i / per_row / c->num_codebooks),
                                 (long long)(i / per_row % c->num_codebooks),
                                 (long long)(i % per_row), c->dec_vocab);
    return MG_OK;
}

/* Row r (item r / K, codebook r % K) of the current window's prompt: its
 * frames of the clip's codes. */
static const int32_t *window_prompt_row(const mg_gen_job *j, int r)
{
    return j->codes + (int64_t)r * j->frames + j->win.start;
}

/* The window's new frames into the clip's codes (its prompt is there already). */
static void keep_window_codes(const mg_gen_job *j, int K, int C)
{
    int first = j->win.prompt, n = j->win.end - j->win.start - first;
    for (int b = 0; b < j->batch; b++)
        mg_delay_extract_frames(K, C, j->total, j->seq + (int64_t)b * K * j->total, first, n,
                                j->codes + (int64_t)b * K * j->frames + j->win.start + first,
                                j->frames);
}

/* The tokens of the step that turned column col into logits for column
 * col+1: selected (unless `selected`: j->tokens hold them), shown to the
 * step hook, written where the delay pattern leaves the column free. */
static mg_code take_tokens(mg_model *m, mg_gen_job *j, int selected)
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
    int col = ++j->col;
    for (int r = 0; r < batch * K; r++) {
        int forced = mg_delay_forced_prompt(K, c->audio_channels, total, c->pad_token, r % K, col,
                                            window_prompt_row(j, r), j->win.prompt);
        j->seq[(int64_t)r * total + col] = forced >= 0 ? forced : j->tokens[r];
    }
    j->t = ++t;
    for (int s = 0; s < j->n_seq; s++)
        for (int k = 0; k < K; k++)
            j->step_ids[s * K + k] = j->seq[((int64_t)(s % batch) * K + k) * total + col];
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
    /* rows = items x channels: the hook counts items */
    if (h && h->on_audio && h->on_audio(h->ud, audio, j->batch, (size_t)offset, (size_t)n))
        return mg_fail(err, MG_ERR_CANCELLED, "generation cancelled by its audio consumer");
    return MG_OK;
}

/* Window n's columns up to where its prompt ends. Without a prompt (the
 * first window of a plain generation) the job's next step runs the start
 * column, as ever; with one, its columns go through the decoder in one
 * prefill (from position 0: the self-attention caches start over, the text's
 * cross-attention keys stay) and its first tokens are selected from it. */
static mg_code begin_window(mg_model *m, mg_gen_job *j, int n)
{
    const mg_config *c = &m->parts.cfg;
    int K = c->num_codebooks, batch = j->batch;
    mg_gen_plan_window(&j->plan, c->ec_codebooks, n, &j->win);
    j->win_index = n;
    j->total = j->win.total;
    j->col = j->win.prompt;
    int total = j->total, cols = j->win.prompt + 1;
    for (int r = 0; r < batch * K; r++)
        for (int col = 0; col < cols; col++)
            j->seq[(int64_t)r * total + col] = mg_delay_forced_prompt(
                K, c->audio_channels, total, c->pad_token, r % K, col, window_prompt_row(j, r),
                j->win.prompt);
    if (j->win.prompt == 0) {
        for (int s = 0; s < j->n_seq; s++)
            for (int k = 0; k < K; k++)
                j->step_ids[s * K + k] = c->pad_token;
        return MG_OK;
    }
    for (int s = 0; s < j->n_seq; s++)
        for (int k = 0; k < K; k++)
            memcpy(j->prefill + ((int64_t)s * K + k) * cols,
                   j->seq + ((int64_t)(s % batch) * K + k) * total, (size_t)cols * sizeof *j->seq);
    j->st.past = 0;
    mg_code rc = mg_decoder_forward(&m->parts.dec, &j->st, j->prefill, cols, 1, j->logits, NULL,
                                    NULL, j->err);
    /* the steps that follow never use the prefill's scratch: it would stay
     * with the job until its end */
    mg_dec_state_drop_scratch(&j->st);
    if (rc != MG_OK)
        return rc;
    j->col = cols - 1;
    return take_tokens(m, j, 0);
}

int mg_gen_job_final_frames(const mg_gen_job *j, int D)
{
    /* window frame f is final once column f + D (the most delayed codebook's) is filled */
    int f = j->col - D + 1, in_window = j->win.end - j->win.start;
    f = f < j->win.prompt ? j->win.prompt : f > in_window ? in_window : f;
    return j->win.start + f;
}

void mg_gen_job_copy_frames(const mg_gen_job *j, int K, int C, int from, int n, int32_t *codes)
{
    /* before the current window's new frames: the clip's codes hold them */
    int kept = j->win.start + j->win.prompt, old = from < kept ? kept - from : 0;
    old = old < n ? old : n;
    for (int r = 0; r < j->batch * K; r++)
        memcpy(codes + (int64_t)r * n, j->codes + (int64_t)r * j->frames + from,
               (size_t)old * sizeof *codes);
    for (int b = 0; old < n && b < j->batch; b++)
        mg_delay_extract_frames(K, C, j->total, j->seq + (int64_t)b * K * j->total,
                                from + old - j->win.start, n - old,
                                codes + (int64_t)b * K * n + old, n);
}

/* prompt_audio's kept samples (mg_gen_prompt_audio_fit, as the plan counted
 * them) -> codes [batch, K, frames], malloc'd. Here, on the scheduler
 * thread with the backend held, because the encode is seconds of work that
 * must not run on a front end's thread (an event loop). */
static mg_code encode_prompt_audio(mg_model *m, mg_gen_job *j, int32_t **codes)
{
    const mg_gen_params *p = j->p;
    int K = m->parts.cfg.num_codebooks, batch = j->batch, pf = j->plan.prompt_frames, frames = 0;
    int rows = batch * m->parts.cfg.audio_channels; /* each channel of each item */
    mg_prompt_audio_fit fit;
    *codes = NULL;
    mg_code rc = mg_gen_prompt_audio_fit(m, p->prompt_samples, p->extend_stride, &fit, j->err);
    if (rc != MG_OK)
        return rc;
    int64_t n = fit.samples, first = fit.first_sample;
    float *audio = malloc((size_t)rows * (size_t)n * sizeof *audio);
    *codes = malloc((size_t)batch * K * pf * sizeof **codes);
    rc = audio && *codes ? MG_OK : mg_fail(j->err, MG_ERR_NOMEM, "prompt_audio: out of memory");
    for (int b = 0; rc == MG_OK && b < rows; b++)
        memcpy(audio + (int64_t)b * n, p->prompt_audio + (int64_t)b * p->prompt_samples + first,
               (size_t)n * sizeof *audio);
    if (rc == MG_OK)
        rc = mg_encodec_encode(m->parts.ec, audio, batch, n, *codes, &frames, NULL, NULL, j->err);
    if (rc == MG_OK && frames != pf)
        rc = mg_fail(j->err, MG_ERR_DEVICE, "prompt_audio: %d frames encoded, %d expected",
                     frames, pf);
    /* the encoder names its own argument (a NaN in "audio"): the caller's is prompt_audio */
    if (rc == MG_ERR_INVALID || rc == MG_ERR_UNSUPPORTED)
        snprintf(j->err->field, sizeof j->err->field, "prompt_audio");
    free(audio);
    if (rc != MG_OK) {
        free(*codes);
        *codes = NULL;
    }
    return rc;
}

mg_code mg_gen_job_start(mg_model *m, mg_gen_job *j)
{
    const mg_config *c = &m->parts.cfg;
    mg_backend *be = m->parts.be;
    const mg_gen_params *p = j->p;
    mg_error *err = j->err;
    int K = c->num_codebooks, V = c->dec_vocab, batch = j->batch, len = j->len;
    mg_code rc = mg_gen_plan_make(m, p, &j->plan, err);
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
    rc = check_prompt(c, p, batch, err);
    const int32_t *prompt = p->prompt_codes;
    int32_t *encoded = NULL;
    if (rc == MG_OK && p->prompt_audio) {
        rc = encode_prompt_audio(m, j, &encoded);
        prompt = encoded;
    }
    if (rc != MG_OK)
        return rc;
    int cfg = p->sampling.guidance_scale > 1.0f, want_raw = j->hooks && j->hooks->on_step;
    j->steps = j->plan.steps;
    j->frames = j->plan.frames;
    j->n_seq = batch * (cfg ? 2 : 1);
    int64_t H = c->dec_hidden, n_seq = j->n_seq, columns = j->plan.max_columns;

    mg_tensor *enc = NULL, *enc_dec = NULL;
    uint8_t *mask2 = calloc((size_t)n_seq * len, 1);
    j->seq = malloc((size_t)batch * K * columns * sizeof *j->seq);
    j->step_ids = malloc((size_t)n_seq * K * sizeof *j->step_ids);
    j->tokens = malloc((size_t)batch * K * sizeof *j->tokens);
    j->codes = malloc((size_t)batch * K * j->frames * sizeof *j->codes);
    j->prefill = malloc((size_t)n_seq * K * (j->plan.max_prompt + 1) * sizeof *j->prefill);
    j->scores = want_raw ? malloc((size_t)batch * K * V * sizeof *j->scores) : NULL;
    j->raw = want_raw ? malloc((size_t)n_seq * K * V * sizeof *j->raw) : NULL;
    if (!mask2 || !j->seq || !j->step_ids || !j->tokens || !j->codes || !j->prefill ||
        (want_raw && (!j->scores || !j->raw))) {
        free(mask2);
        free(encoded);
        return mg_fail(err, MG_ERR_NOMEM, "generate: out of memory");
    }
    memcpy(mask2, j->mask, (size_t)batch * len); /* unconditional half: all masked */
    for (int r = 0; prompt && r < batch * K; r++)
        memcpy(j->codes + (int64_t)r * j->frames, prompt + (int64_t)r * j->plan.prompt_frames,
               (size_t)j->plan.prompt_frames * sizeof *j->codes);
    free(encoded);

    /* text: T5, projection, and zeros for the unconditional half; every
     * window cross-attends to the same keys */
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
    /* positions: a window's columns but the last, which is never fed back */
    if (rc == MG_OK)
        rc = mg_dec_state_init(&m->parts.dec, &j->st, (int)n_seq, (int)columns - 1, enc_dec,
                               mask2, len, err);
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
    j->t_decode0 = now_ms();
    return begin_window(m, j, 0);
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

/* After a decoder step that turned column col into logits for column col+1.
 * A window that has its last column hands its new frames to the clip and the
 * next window begins (prefill and first tokens), the job staying in the
 * batch until all windows' steps are done. */
mg_code mg_gen_job_after_step(mg_model *m, mg_gen_job *j, int selected)
{
    mg_code rc = take_tokens(m, j, selected);
    if (rc != MG_OK || j->col < j->total - 1 || j->t >= j->steps)
        return rc;
    keep_window_codes(j, m->parts.cfg.num_codebooks, m->parts.cfg.audio_channels);
    return begin_window(m, j, j->win_index + 1);
}

/* Frames [j->audio_fed, upto) of the clip to the stream: from the clip's
 * codes once they are complete (clip), else as the job's windows hold them
 * (mg_gen_job_copy_frames: the prompt, finished windows, the current one
 * through the delay pattern). */
static mg_code push_frames(mg_model *m, mg_gen_job *j, int upto, const int32_t *clip)
{
    int K = m->parts.cfg.num_codebooks, C = m->parts.cfg.audio_channels, n = upto - j->audio_fed;
    const int32_t *codes = clip ? clip + j->audio_fed : j->audio_codes;
    int64_t stride = clip ? j->frames : n;
    if (!clip)
        mg_gen_job_copy_frames(j, K, C, j->audio_fed, n, j->audio_codes);
    double t0 = now_ms();
    mg_code rc = mg_encodec_stream_push(j->audio, codes, n, stride, j->err);
    j->res->encodec_ms += now_ms() - t0;
    j->audio_fed = upto;
    return rc;
}

/* The first chunk is small so that sound starts early (8 frames, 0.16 s at
 * 50 Hz, past the look-ahead: about 15 steps after the start). A player that
 * started on it never runs dry while each chunk arrives before the audio out
 * so far is played: with generation r times faster than real time, a chunk
 * a fraction f of the audio out takes f/r of it to make, which fits for
 * every chunk as long as 1 + f <= r. Generation on two cores runs at r of
 * 1.26 to 1.5 for a 30 s clip, so chunks grow by a quarter of the audio out
 * (chunks as long as the audio out, f = 1, needed r >= 2 and fell behind
 * just after the start), from 8 frames up to 50 (1 s), where the per-chunk
 * costs are a few % of the chunk's decode and a chunk holds the scheduler
 * thread no longer than a fraction of a second. */
mg_code mg_gen_job_feed_audio(mg_model *m, mg_gen_job *j)
{
    const mg_config *c = &m->parts.cfg;
    int K = c->num_codebooks, frames = j->frames;
    int complete = mg_gen_job_final_frames(j, c->ec_codebooks);
    if (complete <= j->audio_fed)
        return MG_OK;
    if (!j->audio) {
        mg_backend_caps caps;
        mg_backend_get_caps(m->parts.be, &caps);
        if (!caps.lstm_state || (j->hooks && j->hooks->skip_audio) ||
            complete < mg_encodec_lookahead_frames(m->parts.ec) + MG_AUDIO_FIRST_FRAMES)
            return MG_OK;
        mg_gen_result *res = j->res;
        res->n_samples = (size_t)frames * c->hop;
        res->channels = c->audio_channels;
        res->encodec_ms = 0;
        if (!res->audio)
            res->audio = malloc((size_t)j->batch * c->audio_channels * res->n_samples *
                                    sizeof *res->audio + 1);
        j->audio_codes = malloc((size_t)j->batch * K * frames * sizeof *j->audio_codes);
        if (!res->audio || !j->audio_codes)
            return mg_fail(j->err, MG_ERR_NOMEM, "generate: out of memory for audio");
        mg_code rc = mg_encodec_stream_open(&j->audio, m->parts.ec, j->batch, audio_piece, j,
                                            j->err);
        if (rc != MG_OK)
            return rc;
    } else {
        int64_t out = mg_encodec_stream_samples(j->audio) / c->hop;
        int64_t grow = out / MG_AUDIO_GROWTH_DIVISOR;
        int want = grow < MG_AUDIO_FIRST_FRAMES ? MG_AUDIO_FIRST_FRAMES
                   : grow > MG_AUDIO_MAX_FRAMES ? MG_AUDIO_MAX_FRAMES : (int)grow;
        if (complete - j->audio_fed < want && complete < frames)
            return MG_OK;
    }
    return push_frames(m, j, complete, NULL);
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
    res->channels = c->audio_channels;
    res->prompt_frames = j->plan.prompt_frames;
    res->prompt_trimmed_frames = j->plan.prompt_trimmed_frames;
    keep_window_codes(j, K, c->audio_channels); /* the last window's */
    res->codes = j->codes;
    j->codes = NULL;
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
        mg_code rc = j->audio_fed < frames ? push_frames(m, j, frames, res->codes) : MG_OK;
        double t0 = now_ms();
        if (rc == MG_OK)
            rc = mg_encodec_stream_finish(j->audio, j->err);
        res->encodec_ms += now_ms() - t0;
        j->audio_streamed = rc == MG_OK;
        return rc;
    }
    res->audio = malloc((size_t)batch * res->channels * res->n_samples * sizeof *res->audio + 1);
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
        size_t per_codes = (size_t)K * frames,
               per_audio = (size_t)m->parts.cfg.audio_channels * jobs[0]->res->n_samples;
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

