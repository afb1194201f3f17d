/* mg-golden: the EnCodec encoder (golden_encodec_encode, and the prompt
 * audio of golden_continuation) recomputed from the recorded waveforms. */
#include "golden_encode.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/encodec_encode.h"

/* A float golden tensor [B, channels, n] as a host copy; NULL after a sink
 * failure. */
static float *golden_audio(const mg_safetensors *g, const char *name, int channels, int *batch,
                           int64_t *n, const golden_sink *s)
{
    const mg_st_tensor *t = mg_st_find(g, name);
    if (!t || t->ndim != 3 || t->shape[1] != channels || t->shape[0] < 1 || t->shape[0] > 64) {
        char msg[96];
        snprintf(msg, sizeof msg, "expected a [batch, %d, samples] waveform", channels);
        s->fail(s->ud, name, t ? msg : "input tensor missing from the golden file");
        return NULL;
    }
    float *f = malloc((size_t)mg_st_numel(t) * sizeof *f + 1);
    if (!f) {
        s->fail(s->ud, name, "out of memory");
        return NULL;
    }
    mg_st_to_f32(t, f);
    *batch = (int)t->shape[0];
    *n = t->shape[2];
    s->put_input(s->ud, name);
    return f;
}

/* Encodes audio [batch, n] and records the codes under codes_name; *out
 * keeps them (int32, [batch, K, frames]) when out is not NULL. */
static int encode(mg_model *m, const float *audio, int batch, int64_t n, const char *codes_name,
                  mg_encodec_trace_fn trace, void *trace_ud, int32_t **out, int *frames,
                  const golden_sink *s)
{
    mg_encodec *ec = mg_model_encodec(m);
    int K = mg_model_config(m)->num_codebooks;
    int64_t T = mg_encodec_encode_frames(ec, n), cnt = (int64_t)batch * K * T;
    int32_t *codes = malloc((size_t)cnt * sizeof *codes + 1);
    int64_t *wide = malloc((size_t)cnt * sizeof *wide + 1);
    mg_error err = {0};
    int ok = codes && wide;
    if (!ok)
        s->fail(s->ud, codes_name, "out of memory");
    else if (mg_encodec_encode(ec, audio, batch, n, codes, frames, trace, trace_ud, &err) != MG_OK)
        s->fail(s->ud, codes_name, err.msg), ok = 0;
    if (ok) {
        for (int64_t i = 0; i < cnt; i++)
            wide[i] = codes[i];
        s->put_int(s->ud, codes_name, wide, cnt);
    }
    free(wide);
    if (ok && out)
        *out = codes;
    else
        free(codes);
    return ok;
}

typedef struct {
    const golden_sink *s;
    const char        *tag;
} tagged;

static void trace_tagged(void *ud, const char *name, const float *data, int64_t n)
{
    const tagged *t = ud;
    char full[160];
    snprintf(full, sizeof full, "%s.%s", t->tag, name);
    t->s->put_f32(t->s->ud, full, data, n);
}

void golden_check_encode(mg_model *m, const mg_safetensors *g, const golden_sink *s)
{
    mg_encodec *ec = mg_model_encodec(m);
    int hop = mg_model_config(m)->hop;
    for (size_t i = 0; i < g->n; i++) {
        const char *nm = g->tensors[i].name, *dot = strrchr(nm, '.');
        if (!dot || strcmp(dot, ".input_values") != 0)
            continue;
        char tag[96], name[160];
        snprintf(tag, sizeof tag, "%.*s", (int)(dot - nm), nm);
        int batch = 0, frames = 0;
        int64_t n = 0;
        float *audio = golden_audio(g, nm, mg_model_config(m)->audio_channels, &batch, &n, s);
        int32_t *codes = NULL;
        tagged tt = {s, tag};
        snprintf(name, sizeof name, "%s.audio_codes", tag);
        /* one pass, so that the trace shows every layer */
        mg_encodec_set_encode_chunk(ec, 0);
        int ok = audio && encode(m, audio, batch, n, name, trace_tagged, &tt, &codes, &frames, s);
        mg_encodec_set_encode_chunk(ec, MG_ENCODEC_ENCODE_CHUNK_FRAMES);
        int channels = mg_model_config(m)->audio_channels;
        float *wave = ok ? malloc((size_t)batch * channels * frames * hop * sizeof *wave + 1) : NULL;
        snprintf(name, sizeof name, "%s.reconstruction", tag);
        mg_error err = {0};
        if (ok && !wave)
            s->fail(s->ud, name, "out of memory");
        else if (ok && mg_encodec_decode(ec, codes, batch, frames, wave, NULL, NULL, &err) != MG_OK)
            s->fail(s->ud, name, err.msg);
        else if (ok)
            s->put_f32(s->ud, name, wave, (int64_t)batch * channels * frames * hop);
        free(wave);
        free(codes);
        free(audio);
    }
}

int32_t *golden_encode_prompt_audio(mg_model *m, const mg_safetensors *g, const golden_sink *s,
                                    int *batch_out, int *frames_out)
{
    int batch = 0, frames = 0;
    int32_t *codes = NULL;
    int64_t n = 0;
    float *audio = golden_audio(g, "prompt_audio", mg_model_config(m)->audio_channels, &batch,
                                &n, s);
    const mg_st_tensor *mask = mg_st_find(g, "prompt_padding_mask");
    if (mask) {
        int64_t cnt = mg_st_numel(mask), *v = malloc((size_t)cnt * sizeof *v + 1);
        int all_ones = v && mg_st_to_i64(mask, v, NULL) == MG_OK;
        for (int64_t i = 0; all_ones && i < cnt; i++)
            all_ones = v[i] == 1;
        free(v);
        if (all_ones)
            s->put_input(s->ud, "prompt_padding_mask");
        else
            s->fail(s->ud, "prompt_padding_mask", "padded prompt audio is not supported");
    }
    if (audio && encode(m, audio, batch, n, "prompt_audio_codes", NULL, NULL, &codes, &frames, s)) {
        *batch_out = batch;
        *frames_out = frames;
    }
    free(audio);
    return codes;
}
