/* EnCodec as a stream (model/encodec_stream.h): pushed in chunks of 1, 2,
 * 3, 7, the look-ahead and 128 frames, and in uneven pieces, for several
 * lengths, the audio is bit for bit one pass over the whole signal; it
 * arrives in order, each sample once, as soon as the look-ahead says; the
 * LSTM's carried state and the convs' kept columns make that hold at every
 * CPU kernel level and for F32, BF16 and Q8 weights. Models: the golden tiny
 * models and a random model with musicgen-small's shapes (q8, short
 * durations). Also the error paths (bad codes, push after finish, an empty
 * stream). A generation feeds its stream as frames complete: on_audio gets
 * the audio in pieces, in order, the first soon after the look-ahead, and
 * res->audio is those pieces, bit for bit one EnCodec pass over res->codes. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/backend.h"
#include "check.h"
#include "cpu/cpu_backend.h"
#include "cpu/cpu_isa.h"
#include "io/config.h"
#include "io/loader.h"
#include "model/encodec.h"
#include "model/encodec_stream.h"
#include "runtime/model_parts.h"
#include "runtime/musicgen.h"
#include "encodec_model.h"
#include "test_util.h"

static int model_open(model *m, const char *dir, mg_dtype wdt)
{
    mg_error err = {0};
    mg_code rc = model_open_dt(m, dir, "model.safetensors", 2, wdt, &err);
    CHECK(rc == MG_OK, "load %s: %s", dir, err.msg);
    if (rc != MG_OK)
        model_close(m);
    return rc == MG_OK;
}

/* What a stream handed on: pieces in order, each sample once. */
typedef struct {
    float  *audio;      /* [batch, per_item] */
    int64_t per_item, got, pieces;
    int     batch, disorder;
} sink;

static mg_code collect(void *ud, const float *audio, int batch, int64_t offset, int64_t n,
                       mg_error *err)
{
    sink *k = ud;
    (void)err;
    if (batch != k->batch || offset != k->got || offset + n > k->per_item || n < 1) {
        k->disorder = 1;
        return MG_OK;
    }
    for (int b = 0; b < batch; b++)
        memcpy(k->audio + b * k->per_item + offset, audio + b * n, (size_t)n * sizeof *audio);
    k->got += n;
    k->pieces++;
    return MG_OK;
}

static int32_t *random_codes(const model *m, int batch, int frames, uint32_t seed)
{
    int K = m->cfg.num_codebooks;
    int32_t *c = malloc((size_t)batch * K * frames * sizeof *c);
    for (int i = 0; c && i < batch * K * frames; i++) {
        seed = seed * 1664525u + 1013904223u;
        c[i] = (int32_t)((seed >> 8) % (uint32_t)m->cfg.ec_codebook_size);
    }
    return c;
}

/* One pass over the whole signal: a backend without lstm_state decodes every
 * frame at finish, and chunk 0 runs the upsampling stack once over them. */
static int one_pass(model *m, const int32_t *codes, int batch, int frames, float *audio)
{
    const mg_backend_ops *ops = m->be->ops;
    mg_backend_ops whole = *ops;
    whole.lstm_state = NULL;
    m->be->ops = &whole;
    mg_encodec_set_chunk(m->ec, 0);
    mg_error err = {0};
    mg_code rc = mg_encodec_decode(m->ec, codes, batch, frames, audio, NULL, NULL, &err);
    mg_encodec_set_chunk(m->ec, MG_ENCODEC_CHUNK_FRAMES);
    m->be->ops = ops;
    CHECK(rc == MG_OK, "one pass over %d frames: %s", frames, err.msg);
    return rc == MG_OK;
}

static int64_t first_diff(const float *a, const float *b, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (memcmp(&a[i], &b[i], sizeof *a))
            return i;
    return -1;
}

/* Streams codes in pieces (sizes[i % n_sizes]) and compares with ref; after
 * every push the audio handed on is exactly what the look-ahead makes final. */
static void check_stream(model *m, const int32_t *codes, int batch, int frames, const float *ref,
                         const int *sizes, int n_sizes, const char *what)
{
    int hop = m->cfg.hop, la = mg_encodec_lookahead_frames(m->ec);
    sink k = {.per_item = (int64_t)frames * hop, .batch = batch};
    k.audio = malloc((size_t)batch * k.per_item * sizeof *k.audio);
    mg_encodec_stream *s = NULL;
    mg_error err = {0};
    if (!k.audio || mg_encodec_stream_open(&s, m->ec, batch, collect, &k, &err) != MG_OK) {
        CHECK(0, "%s: open: %s", what, err.msg);
        free(k.audio);
        return;
    }
    memset(k.audio, 0xff, (size_t)batch * k.per_item * sizeof *k.audio);
    mg_code rc = MG_OK;
    int late = 0, early = 0;
    for (int f0 = 0, i = 0; rc == MG_OK && f0 < frames; i++) {
        int n = sizes[i % n_sizes];
        if (n > frames - f0)
            n = frames - f0;
        rc = mg_encodec_stream_push(s, codes + f0, n, frames, &err);
        f0 += n;
        /* frame f is out once frames up to f + la are in, and not before */
        int64_t final_frames = f0 - la > 0 ? f0 - la : 0;
        if (f0 < frames && k.got < final_frames * hop)
            late = 1;
        if (f0 < frames && k.got >= (final_frames + 1) * hop)
            early = 1;
    }
    if (rc == MG_OK)
        rc = mg_encodec_stream_finish(s, &err);
    CHECK(rc == MG_OK, "%s: %s", what, err.msg);
    CHECK(!k.disorder, "%s: audio pieces out of order or overlapping", what);
    CHECK(k.got == k.per_item, "%s: %lld of %lld samples handed on", what, (long long)k.got,
          (long long)k.per_item);
    CHECK(!late, "%s: audio later than the look-ahead of %d frames", what, la);
    CHECK(!early, "%s: the look-ahead of %d frames is more than the stream needs", what, la);
    CHECK(mg_encodec_stream_samples(s) == k.per_item && mg_encodec_stream_frames(s) == frames,
          "%s: the stream's counters", what);
    int64_t d = first_diff(k.audio, ref, (int64_t)batch * k.per_item);
    CHECK(d < 0, "%s: sample %lld differs from one pass (%.9g vs %.9g)", what, (long long)d,
          d >= 0 ? k.audio[d] : 0.0, d >= 0 ? ref[d] : 0.0);
    /* nothing more after finish */
    CHECK(mg_encodec_stream_push(s, codes, 1, frames, &err) != MG_OK &&
              mg_encodec_stream_finish(s, &err) != MG_OK,
          "%s: a finished stream takes no more", what);
    mg_encodec_stream_free(s);
    free(k.audio);
}

static void check_lengths(model *m, const char *name, int batch, const int *lengths, int n_len,
                          int all_sizes)
{
    int la = mg_encodec_lookahead_frames(m->ec);
    int fixed[] = {1, 2, 3, 7, la, 128}, uneven[] = {1, 4, 2, 9, 3, 17, 5};
    for (int li = 0; li < n_len; li++) {
        int frames = lengths[li];
        int64_t n = (int64_t)batch * frames * m->cfg.hop;
        int32_t *codes = random_codes(m, batch, frames, 1000u + (uint32_t)frames);
        float *ref = malloc((size_t)n * sizeof *ref), *dec = malloc((size_t)n * sizeof *dec);
        char what[160];
        mg_error err = {0};
        if (!codes || !ref || !dec || !one_pass(m, codes, batch, frames, ref)) {
            CHECK(codes && ref && dec, "out of memory");
            goto next;
        }
        /* mg_encodec_decode (a stream pushed MG_ENCODEC_CHUNK_FRAMES / batch at a time) */
        CHECK(mg_encodec_decode(m->ec, codes, batch, frames, dec, NULL, NULL, &err) == MG_OK,
              "decode: %s", err.msg);
        CHECK(first_diff(dec, ref, n) < 0, "%s, %d frames: mg_encodec_decode differs from one pass",
              name, frames);
        for (size_t c = 0; c < sizeof fixed / sizeof fixed[0]; c++) {
            if (!all_sizes && fixed[c] != 1 && fixed[c] != la && fixed[c] != 7)
                continue;
            snprintf(what, sizeof what, "%s, batch %d, %d frames in chunks of %d", name, batch,
                     frames, fixed[c]);
            check_stream(m, codes, batch, frames, ref, &fixed[c], 1, what);
        }
        snprintf(what, sizeof what, "%s, batch %d, %d frames in uneven pushes", name, batch, frames);
        check_stream(m, codes, batch, frames, ref, uneven, sizeof uneven / sizeof uneven[0], what);
    next:
        free(codes);
        free(ref);
        free(dec);
    }
}

static void check_errors(model *m)
{
    mg_encodec_stream *s = NULL;
    sink k = {.per_item = 4 * m->cfg.hop, .batch = 1};
    float buf[1];
    k.audio = buf;
    mg_error err = {0};
    CHECK(mg_encodec_stream_open(&s, m->ec, 0, collect, &k, &err) != MG_OK && !s,
          "a stream of batch 0 is refused");
    if (mg_encodec_stream_open(&s, m->ec, 1, collect, &k, &err) != MG_OK) {
        CHECK(0, "open: %s", err.msg);
        return;
    }
    CHECK(mg_encodec_stream_finish(s, &err) != MG_OK && strstr(err.msg, "no frames"),
          "finishing a stream of no frames fails: %s", err.msg);
    mg_encodec_stream_free(s);
    s = NULL;
    CHECK(mg_encodec_stream_open(&s, m->ec, 1, collect, &k, &err) == MG_OK, "open: %s", err.msg);
    int K = m->cfg.num_codebooks;
    int32_t codes[64] = {0};
    codes[2 * 4 + 3] = m->cfg.ec_codebook_size; /* codebook 2, frame 3 */
    CHECK(s && mg_encodec_stream_push(s, codes, 4, 4, &err) == MG_ERR_INVALID &&
              strstr(err.msg, "codebook 2, frame 3"),
          "a code out of range is refused, naming where: %s", err.msg);
    (void)K;
    mg_encodec_stream_free(s);
}

static void check_model(const char *dir, const char *name, mg_dtype wdt, int batch,
                        const int *lengths, int n_len, int all_sizes, int isa_levels)
{
    model m;
    if (!model_open(&m, dir, wdt))
        return;
    printf("%s (%s): look-ahead %d frames\n", name, mg_dtype_name(wdt),
           mg_encodec_lookahead_frames(m.ec));
    CHECK(mg_encodec_lookahead_frames(m.ec) >= 1, "%s: a look-ahead of at least a frame", name);
    if (isa_levels) {
        /* every kernel level of the CPU backend: its tails and edge windows */
        for (int isa = MG_CPU_ISA_SCALAR; isa <= (int)mg_cpu_isa_detect(); isa++) {
            char n2[128];
            snprintf(n2, sizeof n2, "%s [%s]", name, mg_cpu_isa_name((mg_cpu_isa)isa));
            mg_cpu_backend_set_isa(m.be, (mg_cpu_isa)isa);
            check_lengths(&m, n2, batch, lengths, n_len, all_sizes && isa == (int)mg_cpu_isa_detect());
        }
        mg_cpu_backend_set_isa(m.be, mg_cpu_isa_detect());
    } else {
        check_lengths(&m, name, batch, lengths, n_len, all_sizes);
    }
    check_errors(&m);
    model_close(&m);
}

/* What on_audio saw during a generation, and at which step. */
typedef struct {
    float  *audio;
    size_t  cap, got;
    int     batch, pieces, in_order, step, first_step;
} gen_sink;

static int gen_progress(void *ud, int step, int total)
{
    (void)total;
    ((gen_sink *)ud)->step = step;
    return 0;
}

static int gen_audio(void *ud, const float *audio, int batch, size_t offset, size_t n)
{
    gen_sink *a = ud;
    if (a->pieces++ == 0)
        a->first_step = a->step;
    a->batch = batch;
    a->in_order &= offset == a->got && offset + n <= a->cap;
    for (int b = 0; a->in_order && b < batch; b++)
        memcpy(a->audio + (size_t)b * a->cap + offset, audio + (size_t)b * n, n * sizeof *audio);
    a->got = offset + n;
    return 0;
}

static void check_generation(const char *dir)
{
    mg_model *m = NULL;
    mg_error err = {0};
    mg_model_options opt = {.n_threads = 2};
    if (mg_model_load(&m, dir, &opt, &err) != MG_OK) {
        CHECK(0, "load %s: %s", dir, err.msg);
        return;
    }
    enum { BATCH = 2, LEN = 3, STEPS = 160 };
    int32_t ids[BATCH * LEN] = {5, 9, 1, 7, 3, 1};
    uint8_t mask[BATCH * LEN] = {1, 1, 1, 1, 1, 1};
    mg_gen_params p;
    mg_gen_params_default(m, &p);
    p.max_new_tokens = STEPS;
    p.seed = 42;
    gen_sink a = {.in_order = 1, .cap = (size_t)STEPS * 4096}; /* past frames * hop */
    a.audio = calloc((size_t)BATCH * a.cap, sizeof *a.audio);
    mg_gen_hooks hooks = {.progress = gen_progress, .on_audio = gen_audio, .ud = &a};
    mg_gen_result res;
    memset(&res, 0, sizeof res);
    mg_code rc = a.audio ? mg_generate_ids(m, ids, mask, BATCH, LEN, &p, &hooks, &res, &err)
                         : MG_ERR_NOMEM;
    CHECK(rc == MG_OK, "generate %d steps: %s", STEPS, err.msg);
    if (rc == MG_OK) {
        mg_encodec *ec = mg_model_encodec(m);
        int K = (int)(res.total - res.frames), la = mg_encodec_lookahead_frames(ec);
        printf("generation of %d frames: %d audio pieces, the first after step %d\n", res.frames,
               a.pieces, a.first_step);
        CHECK(a.in_order && a.batch == BATCH && a.got == res.n_samples,
              "on_audio: %zu of %zu samples, in order %d", a.got, res.n_samples, a.in_order);
        CHECK(a.pieces >= 4, "on_audio: the audio in pieces as it is made (%d)", a.pieces);
        /* the first chunk: MG_AUDIO_FIRST_FRAMES past the look-ahead, all codebooks */
        CHECK(a.first_step <= la + 8 + K, "first audio after step %d (want <= %d)", a.first_step,
              la + 8 + K);
        int same = 1;
        for (int b = 0; same && b < BATCH; b++)
            same = !memcmp(a.audio + (size_t)b * a.cap, res.audio + (size_t)b * res.n_samples,
                           res.n_samples * sizeof(float));
        CHECK(same, "res->audio is what on_audio received");
        float *one = malloc((size_t)BATCH * res.n_samples * sizeof *one);
        CHECK(one && mg_encodec_decode(ec, res.codes, BATCH, res.frames, one, NULL, NULL, &err) == MG_OK,
              "decode: %s", err.msg);
        CHECK(one && !memcmp(one, res.audio, (size_t)BATCH * res.n_samples * sizeof *one),
              "streamed audio == EnCodec over the result's codes, bit for bit");
        free(one);
    }
    mg_gen_result_free(&res);
    free(a.audio);
    mg_model_free(m);
}

/* musicgen-small's shapes with random weights: $BUILD/bench-model-small when
 * make bench wrote it, else written to a temporary directory (bf16 weights:
 * half the bytes to write). */
static void check_small(void)
{
    const char *build = getenv("BUILD") ? getenv("BUILD") : "build";
    char dir[1024], tmp[] = "/tmp/test_encodec_stream.XXXXXX", cmd[2300];
    int made = 0;
    snprintf(dir, sizeof dir, "%s/bench-model-small", build);
    snprintf(cmd, sizeof cmd, "%s/model.safetensors", dir);
    if (access(cmd, R_OK) != 0) {
        if (!mkdtemp(tmp)) {
            CHECK(0, "cannot create a temporary directory");
            return;
        }
        snprintf(dir, sizeof dir, "%s/m", tmp);
        snprintf(cmd, sizeof cmd, "'%s/musicgen-mkmodel' --shape small --seed 1 --dtype bf16 -o '%s' > /dev/null 2>&1",
                 build, dir);
        int st = system(cmd);
        CHECK(st == 0, "mkmodel --shape small (%s)", cmd);
        made = 1;
        if (st != 0) {
            tu_rm_dir(tmp);
            return;
        }
    }
    static const int lengths[] = {1, 3, 46};
    check_model(dir, "musicgen-small shapes", MG_DT_Q8, 1, lengths, 3, 1, 0);
    if (made)
        tu_rm_dir(tmp);
}

int main(void)
{
    const char *g = check_golden_dir();
    static const char *tiny[] = {"tiny-a", "tiny-proj"};
    static const int lengths[] = {1, 2, 5, 37, 203};
    for (size_t i = 0; i < sizeof tiny / sizeof tiny[0]; i++) {
        char dir[1024], path[1100];
        snprintf(dir, sizeof dir, "%s/%s", g, tiny[i]);
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        if (access(path, R_OK) != 0) {
            SKIP("%s: no model at %s\n", tiny[i], path);
            continue;
        }
        check_model(dir, tiny[i], MG_DT_F32, 2, lengths, 5, 1, 1);
        check_model(dir, tiny[i], MG_DT_BF16, 2, lengths + 3, 1, 0, 0);
        check_model(dir, tiny[i], MG_DT_Q8, 1, lengths + 3, 1, 0, 0);
        check_generation(dir);
    }
    check_small();
    return check_summary("test_encodec_stream");
}
