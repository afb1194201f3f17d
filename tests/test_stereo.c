/* Stereo models (the facebook/musicgen-stereo-* layout: decoder
 * audio_channels 2, codebook 2c + ch = channel ch's EnCodec codebook c) on a
 * random tiny stereo model from musicgen-mkmodel --stereo:
 *   - EnCodec decodes each channel alone: a stereo decode of codes
 *     [B, 8, F] is bit for bit the mono EnCodec (the same weights, a config
 *     of one channel) decoding the de-interleaved codes [B*2, 4, F], left
 *     first; the stream, pushed in pieces, is the same audio;
 *   - the encoder encodes each channel alone and interleaves the codes;
 *   - a generation gives audio [batch, 2, n], streamed pieces the same, and
 *     continues its own stereo audio; long-form windows make every frame;
 *   - the CLI writes 2-channel files in every format (decoded back with
 *     io/audio_decode: 2 channels, the clip's length), continues a mono
 *     file on the stereo model and a stereo file on a mono model. */
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "encodec_model.h"
#include "io/audio.h"
#include "io/audio_decode.h"
#include "model/encodec_encode.h"
#include "model/encodec_stream.h"
#include "runtime/model_info.h"
#include "runtime/musicgen.h"
#include "test_util.h"

enum { B = 2, C = 2, KC = 4, K = KC * C, F = 23 };

/* A mono view of the stereo model's EnCodec: its config with one channel
 * and one channel's codebooks, in mono_dir (the weights stay the stereo
 * model's file). */
static int mono_config(const char *stereo_dir, const char *mono_dir)
{
    char path[4200];
    snprintf(path, sizeof path, "%.1000s/config.json", stereo_dir);
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    json_t *dec = root ? json_object_get(root, "decoder") : NULL;
    int ok = dec && json_object_set_new(dec, "num_codebooks", json_integer(KC)) == 0 &&
             json_object_set_new(dec, "audio_channels", json_integer(1)) == 0;
    snprintf(path, sizeof path, "%.1000s/config.json", mono_dir);
    ok = ok && json_dump_file(root, path, 0) == 0;
    json_decref(root);
    return ok;
}

/* Codes [B, K, F] of a fixed pseudo-random sequence, each in [0, 64). */
static void fill_codes(int32_t *codes, int n)
{
    uint32_t x = 12345;
    for (int i = 0; i < n; i++) {
        x = x * 1664525u + 1013904223u;
        codes[i] = (int32_t)(x >> 26);
    }
}

typedef struct {
    float  *audio;
    int64_t per_row, rows_seen;
} collect;

static mg_code collect_rows(void *ud, const float *audio, int rows, int64_t offset, int64_t n,
                            mg_error *err)
{
    collect *c = ud;
    (void)err;
    c->rows_seen = rows;
    for (int r = 0; r < rows; r++)
        memcpy(c->audio + r * c->per_row + offset, audio + (int64_t)r * n,
               (size_t)n * sizeof *audio);
    return MG_OK;
}

static void test_encodec(const char *dir, const char *mono_dir)
{
    char weights[4200];
    snprintf(weights, sizeof weights, "%.1000s/model.safetensors", dir);
    model st, mo;
    mg_error err = {0};
    mg_code rs = model_open_dt(&st, dir, "model.safetensors", 2, MG_DT_F32, &err);
    CHECK(rs == MG_OK, "stereo EnCodec: %s", err.msg);
    mg_code rm = model_open_dt(&mo, mono_dir, weights, 2, MG_DT_F32, &err);
    CHECK(rm == MG_OK, "mono view of its EnCodec: %s", err.msg);
    int hop = st.cfg.hop;
    int64_t n = (int64_t)F * hop;
    int32_t *codes = malloc(sizeof(int32_t) * B * K * F), *mono = malloc(sizeof(int32_t) * B * K * F);
    float *a = malloc(sizeof(float) * B * C * n), *m = malloc(sizeof(float) * B * C * n);
    float *s = malloc(sizeof(float) * B * C * n);
    if (rs != MG_OK || rm != MG_OK || !codes || !mono || !a || !m || !s) {
        CHECK(0, "EnCodec models or memory");
        goto done;
    }
    CHECK(st.cfg.audio_channels == 2 && st.cfg.num_codebooks == K && st.cfg.ec_codebooks == KC,
          "stereo config: %d channels, %d codebooks, %d per channel", st.cfg.audio_channels,
          st.cfg.num_codebooks, st.cfg.ec_codebooks);
    fill_codes(codes, B * K * F);
    /* item b's channel ch is mono item b*2 + ch, its codebook q the stereo 2q + ch */
    for (int b = 0; b < B; b++)
        for (int ch = 0; ch < C; ch++)
            for (int q = 0; q < KC; q++)
                memcpy(mono + ((b * C + ch) * KC + q) * F, codes + (b * K + q * C + ch) * F,
                       F * sizeof *codes);
    CHECK(mg_encodec_decode(st.ec, codes, B, F, a, NULL, NULL, &err) == MG_OK, "stereo decode: %s",
          err.msg);
    CHECK(mg_encodec_decode(mo.ec, mono, B * C, F, m, NULL, NULL, &err) == MG_OK,
          "mono decode: %s", err.msg);
    CHECK(!memcmp(a, m, sizeof(float) * B * C * n),
          "stereo decode [B, 2, n] is the mono decode of each channel's codebooks, left first");
    CHECK(memcmp(a, a + n, sizeof(float) * n) != 0, "the channels differ (their codes do)");

    /* the stream, in pieces of 5 frames: the same samples */
    mg_encodec_stream *es = NULL;
    collect col = {s, n, 0};
    mg_code rc = mg_encodec_stream_open(&es, st.ec, B, collect_rows, &col, &err);
    for (int f0 = 0; rc == MG_OK && f0 < F; f0 += 5)
        rc = mg_encodec_stream_push(es, codes + f0, F - f0 < 5 ? F - f0 : 5, F, &err);
    if (rc == MG_OK)
        rc = mg_encodec_stream_finish(es, &err);
    mg_encodec_stream_free(es);
    CHECK(rc == MG_OK && col.rows_seen == B * C, "stereo stream: %s (%lld rows)",
          rc ? err.msg : "ok", (long long)col.rows_seen);
    CHECK(rc == MG_OK && !memcmp(a, s, sizeof(float) * B * C * n),
          "the stereo stream is the one-pass decode, bit for bit");

    /* the encoder: each channel alone, codes interleaved */
    int64_t N = 3001;
    float *audio = malloc(sizeof(float) * B * C * N);
    int64_t T = mg_encodec_encode_frames(st.ec, N);
    int32_t *ce = malloc(sizeof(int32_t) * B * K * T), *cm = malloc(sizeof(int32_t) * B * K * T);
    int fe = 0, fm = 0;
    if (audio && ce && cm) {
        for (int64_t r = 0; r < B * C; r++)
            for (int64_t i = 0; i < N; i++)
                audio[r * N + i] = 0.4f * sinf(0.01f * (float)((r + 1) * (i + 1)));
        CHECK(mg_encodec_encode(st.ec, audio, B, N, ce, &fe, NULL, NULL, &err) == MG_OK,
              "stereo encode: %s", err.msg);
        CHECK(mg_encodec_encode(mo.ec, audio, B * C, N, cm, &fm, NULL, NULL, &err) == MG_OK,
              "mono encode: %s", err.msg);
        int same = fe == T && fm == T;
        for (int b = 0; same && b < B; b++)
            for (int ch = 0; ch < C; ch++)
                for (int q = 0; q < KC; q++)
                    same &= !memcmp(ce + (b * K + q * C + ch) * T, cm + ((b * C + ch) * KC + q) * T,
                                    (size_t)T * sizeof *ce);
        CHECK(same, "stereo encode: channel ch's codebook q at row 2q + ch, as mono encodes it");
    } else {
        CHECK(0, "out of memory");
    }
    free(audio);
    free(ce);
    free(cm);
done:
    free(codes);
    free(mono);
    free(a);
    free(m);
    free(s);
    model_close(&st);
    model_close(&mo);
}

typedef struct {
    float *audio;
    size_t per_channel, got;
    int    batch;
} pieces;

static int on_audio(void *ud, const float *audio, int batch, size_t offset, size_t n)
{
    pieces *p = ud;
    p->batch = batch;
    for (int r = 0; r < batch * C; r++)
        memcpy(p->audio + r * p->per_channel + offset, audio + r * n, n * sizeof *audio);
    p->got = offset + n;
    return 0;
}

static void test_generate(const char *dir)
{
    mg_model *m = NULL;
    mg_error err = {0};
    mg_model_options opt = {.n_threads = 2};
    if (mg_model_load(&m, dir, &opt, &err) != MG_OK) {
        CHECK(0, "load the stereo model: %s", err.msg);
        return;
    }
    /* what a front end learns before loading: 2 channels, a window of
     * max_length frames within positions - 4 + 1 (the delays span EnCodec's
     * 4 codebooks, not the decoder's 8) */
    mg_model_info info;
    const mg_config *cf = mg_model_config(m);
    int by_positions = cf->max_positions - KC + 1;
    CHECK(mg_model_inspect(dir, &info, &err) == MG_OK && info.channels == 2 &&
              info.max_frames == (cf->max_length < by_positions ? cf->max_length : by_positions),
          "mg_model_inspect: %d channels, a window of %d frames", info.channels, info.max_frames);
    static const int32_t ids[5] = {100, 200, 300, 1, 0};
    static const uint8_t mask[5] = {1, 1, 1, 1, 0};
    mg_gen_params p;
    mg_gen_params_default(m, &p);
    p.max_new_tokens = 40;
    p.sampling.do_sample = 0;
    int frames = 40 + 1 - KC; /* the delay spans one step per EnCodec codebook */
    size_t n = (size_t)frames * mg_model_config(m)->hop;
    pieces pc = {malloc(n * C * sizeof(float)), n, 0, 0};
    mg_gen_hooks hooks = {.on_audio = on_audio, .ud = &pc};
    mg_gen_result res;
    mg_code rc = pc.audio ? mg_generate_ids(m, ids, mask, 1, 5, &p, &hooks, &res, &err)
                          : MG_ERR_NOMEM;
    CHECK(rc == MG_OK, "stereo generation: %s", err.msg);
    if (rc == MG_OK) {
        CHECK(res.channels == 2 && res.frames == frames && res.n_samples == n,
              "result: %d channels, %d frames (%d), %zu samples a channel", res.channels,
              res.frames, frames, res.n_samples);
        CHECK(pc.batch == 1 && pc.got == n && !memcmp(pc.audio, res.audio, n * C * sizeof(float)),
              "on_audio's pieces [batch, 2, n] are the result's audio");
        /* continuing its own audio: the prompt's codes are the clip's first frames */
        mg_gen_params q = p;
        q.max_new_tokens = 0;
        q.duration = (float)(2.0 * n / res.sample_rate);
        q.prompt_audio = res.audio;
        q.prompt_samples = (int64_t)n;
        mg_gen_result r2;
        rc = mg_generate_ids(m, ids, mask, 1, 5, &q, NULL, &r2, &err);
        CHECK(rc == MG_OK, "stereo continuation from stereo audio: %s", err.msg);
        if (rc == MG_OK) {
            CHECK(r2.channels == 2 && r2.prompt_frames == frames && r2.frames == 2 * frames,
                  "continuation: %d channels, %d prompt frames of %d", r2.channels,
                  r2.prompt_frames, r2.frames);
            mg_gen_result_free(&r2);
        }
        mg_gen_result_free(&res);
    }
    free(pc.audio);
    mg_model_free(m);
}

/* Long-form on a stereo model whose window is cut to 64 positions (61
 * frames): 4 s is 200 frames in several windows, each prompted with the
 * previous one's end; the clip has every frame and both channels, the steps
 * are those mg_gen_steps counts, and the streamed pieces are the audio. */
static void test_longform(const char *argv0)
{
    char tmp[4200], dir[4200];
    int made = tu_mkmodel(argv0, "--shape tiny --stereo --positions 64 --seed 5", tmp, sizeof tmp,
                          dir, sizeof dir) == 0;
    CHECK(made, "a windowed stereo model");
    mg_model *m = NULL;
    mg_error err = {0};
    mg_model_options opt = {.n_threads = 2};
    if (!made || mg_model_load(&m, dir, &opt, &err) != MG_OK) {
        CHECK(0, "load the windowed stereo model: %s", err.msg);
        tu_remove_dir(tmp);
        return;
    }
    static const int32_t ids[5] = {100, 200, 300, 1, 0};
    static const uint8_t mask[5] = {1, 1, 1, 1, 0};
    mg_gen_params p;
    mg_gen_params_default(m, &p);
    p.duration = 4;
    p.seed = 11;
    int steps = 0, frames = 0;
    CHECK(mg_gen_steps(m, &p, &steps, &frames, &err) == MG_OK && frames == 200 &&
              steps > frames + KC,
          "a 4 s stereo clip: %d frames in %d steps over several windows", frames, steps);
    size_t n = (size_t)frames * mg_model_config(m)->hop;
    pieces pc = {malloc(n * C * sizeof(float)), n, 0, 0};
    mg_gen_hooks hooks = {.on_audio = on_audio, .ud = &pc};
    mg_gen_result res;
    mg_code rc = pc.audio ? mg_generate_ids(m, ids, mask, 1, 5, &p, &hooks, &res, &err)
                          : MG_ERR_NOMEM;
    CHECK(rc == MG_OK, "stereo long-form: %s", err.msg);
    if (rc == MG_OK) {
        CHECK(res.channels == 2 && res.frames == frames && res.steps == steps &&
                  res.n_samples == n,
              "long-form result: %d channels, %d frames, %d steps", res.channels, res.frames,
              res.steps);
        CHECK(pc.got == n && !memcmp(pc.audio, res.audio, n * C * sizeof(float)),
              "long-form: the streamed pieces are the audio, both channels");
        mg_gen_result_free(&res);
    }
    free(pc.audio);
    mg_model_free(m);
    tu_remove_dir(tmp);
}

/* Runs the CLI; 0 when it exited 0. */
static int cli(const char *bin_dir, const char *args)
{
    char cmd[9000];
    snprintf(cmd, sizeof cmd, "'%.1000s/musicgen' %.6000s -q -j 1 >/dev/null 2>&1", bin_dir, args);
    int st = system(cmd);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

/* The file decoded at 32 kHz: its channels and frames (0 when unreadable). */
static int probe(const char *path, int *channels, size_t *frames)
{
    char *bytes = NULL;
    size_t len = 0;
    mg_error err = {0};
    mg_decoded_audio a = {0};
    *channels = 0;
    *frames = 0;
    if (mg_read_file(path, &bytes, &len, MG_AUDIO_DECODE_MAX_BYTES, &err) != MG_OK)
        return 0;
    mg_code rc = mg_audio_decode((const uint8_t *)bytes, len, 32000, "file", &a, &err);
    free(bytes);
    if (rc != MG_OK)
        return 0;
    *channels = a.channels;
    *frames = a.frames;
    mg_decoded_audio_free(&a);
    return 1;
}

static void test_cli(const char *argv0, const char *dir, const char *tmp)
{
    char self[4096], bin[4096], args[9000], out[4200], mono_wav[4200], mdir2[4200];
    snprintf(self, sizeof self, "%s", argv0);
    snprintf(bin, sizeof bin, "%s", dirname(self));
    static const char *formats[] = {"wav", "flac", "ogg", "mp3"};
    for (int i = 0; i < 4; i++) {
        snprintf(out, sizeof out, "%.1000s/clip.%s", tmp, formats[i]);
        snprintf(args, sizeof args, "-m '%.1000s' -p 'stereo test' -d 1 -s 3 -f %s -o '%.1000s'", dir,
                 formats[i], out);
        int ch = 0;
        size_t fr = 0;
        CHECK(cli(bin, args) == 0 && probe(out, &ch, &fr), "CLI %s: no readable file", formats[i]);
        /* MP3 without a LAME tag decodes with the codec's delay and padding:
         * under two 1152-sample frames more */
        size_t slack = !strcmp(formats[i], "mp3") ? 2 * 1152 : 0;
        CHECK(ch == 2 && fr >= 32000 && fr <= 32000 + slack,
              "CLI %s: %d channels, %zu frames (32000..%zu)", formats[i], ch, fr, 32000 + slack);
    }
    /* a mono file continued by the stereo model: stereo, the prompt counted */
    char dir2[4200];
    int made = tu_mkmodel(argv0, "--shape tiny --seed 4", dir2, sizeof dir2, mdir2,
                          sizeof mdir2) == 0;
    CHECK(made, "a mono tiny model");
    snprintf(mono_wav, sizeof mono_wav, "%.1000s/mono.wav", tmp);
    snprintf(args, sizeof args, "-m '%.1000s' -p mono -d 1 -o '%.1000s'", mdir2, mono_wav);
    int ch = 0;
    size_t fr = 0;
    CHECK(made && cli(bin, args) == 0 && probe(mono_wav, &ch, &fr) && ch == 1,
          "mono model: a mono clip (%d channels)", ch);
    snprintf(out, sizeof out, "%.1000s/cont-stereo.wav", tmp);
    snprintf(args, sizeof args, "-m '%.1000s' -p x -d 2 --continue '%.1000s' -o '%.1000s'", dir, mono_wav, out);
    CHECK(cli(bin, args) == 0 && probe(out, &ch, &fr) && ch == 2 && fr == 64000,
          "a mono prompt to the stereo model: %d channels, %zu frames (64000)", ch, fr);
    /* and the stereo clip continued by the mono model: downmixed, mono out */
    snprintf(args, sizeof args, "-m '%.1000s' -p x -d 2 --continue '%.1000s/clip.wav' -o '%.1000s/cont-mono.wav'",
             mdir2, tmp, tmp);
    snprintf(out, sizeof out, "%.1000s/cont-mono.wav", tmp);
    CHECK(made && cli(bin, args) == 0 && probe(out, &ch, &fr) && ch == 1 && fr == 64000,
          "a stereo prompt to a mono model: %d channels, %zu frames (64000)", ch, fr);
    tu_remove_dir(dir2);
}

int main(int argc, char **argv)
{
    const char *argv0 = argc > 0 ? argv[0] : "";
    char tmp[4200], dir[4200], mono_dir[4300];
    int made = tu_mkmodel(argv0, "--shape tiny --stereo --seed 3", tmp, sizeof tmp, dir,
                          sizeof dir) == 0;
    CHECK(made, "musicgen-mkmodel --stereo");
    snprintf(mono_dir, sizeof mono_dir, "%.1000s/mono-view", tmp);
    char cmd[8800];
    snprintf(cmd, sizeof cmd, "mkdir -p '%.1000s'", mono_dir);
    made = made && system(cmd) == 0 && mono_config(dir, mono_dir);
    CHECK(made, "the mono view's config");
    if (made) {
        test_encodec(dir, mono_dir);
        test_generate(dir);
        test_longform(argv0);
        test_cli(argv0, dir, tmp);
    }
    tu_remove_dir(tmp);
    return check_summary("test_stereo");
}
