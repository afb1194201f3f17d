/* Delay pattern, token selection, and seeded generation: the same seed gives
 * the same codes on every run and thread count. */
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "forced_logits.h"
#include "model/delay.h"
#include "runtime/gen_job_impl.h"
#include "runtime/runtime_impl.h"
#include "runtime/model_parts.h"
#include "model/sampling.h"

#include <pthread.h>

static void test_delay_pattern(void)
{
    /* README example: K = 4, total = 8 */
    int64_t mask[32];
    mg_delay_mask(4, 1, 8, 99, mask);
    static const int64_t want[32] = {
        99, -1, -1, -1, -1, 99, 99, 99,
        99, 99, -1, -1, -1, -1, 99, 99,
        99, 99, 99, -1, -1, -1, -1, 99,
        99, 99, 99, 99, -1, -1, -1, -1};
    CHECK(!memcmp(mask, want, sizeof want), "delay mask K=4 total=8");
    CHECK(mg_delay_frames(4, 1, 8) == 4 && mg_delay_frames(4, 1, 3) == 0, "frame counts");
    int32_t seq[32], codes[16];
    for (int k = 0; k < 4; k++)
        for (int t = 0; t < 8; t++)
            seq[k * 8 + t] = mask[k * 8 + t] == -1 ? 10 * k + (t - k - 1) : 99;
    mg_delay_extract(4, 1, 8, seq, codes);
    int ok = 1;
    for (int k = 0; k < 4; k++)
        for (int j = 0; j < 4; j++)
            ok &= codes[k * 4 + j] == 10 * k + j;
    CHECK(ok, "frame j of codebook k comes from column j+k+1");
}

/* Stereo: 8 codebooks, 2c (left c) and 2c+1 (right c) both delayed by c, so
 * a sequence of 8 columns spans 4 delays and gives 4 frames (as the
 * reference's build_delay_pattern_mask with channel_codebooks = K / 2). */
static void test_delay_pattern_stereo(void)
{
    int64_t mask[64];
    mg_delay_mask(8, 2, 8, 99, mask);
    static const int64_t want[4][8] = {
        {99, -1, -1, -1, -1, 99, 99, 99},
        {99, 99, -1, -1, -1, -1, 99, 99},
        {99, 99, 99, -1, -1, -1, -1, 99},
        {99, 99, 99, 99, -1, -1, -1, -1}};
    int ok = 1;
    for (int k = 0; k < 8; k++)
        ok &= !memcmp(mask + k * 8, want[k / 2], sizeof want[0]);
    CHECK(ok, "stereo delay mask: codebooks 2c and 2c+1 delayed by c");
    CHECK(mg_delay_frames(8, 2, 8) == 4 && mg_delay_frames(8, 2, 4) == 0, "stereo frame counts");
    int32_t seq[64], codes[32];
    for (int k = 0; k < 8; k++)
        for (int t = 0; t < 8; t++)
            seq[k * 8 + t] = mask[k * 8 + t] == -1 ? 10 * k + (t - k / 2 - 1) : 99;
    mg_delay_extract(8, 2, 8, seq, codes);
    ok = 1;
    for (int k = 0; k < 8; k++)
        for (int j = 0; j < 4; j++)
            ok &= codes[k * 4 + j] == 10 * k + j;
    CHECK(ok, "stereo: frame j of codebook k comes from column j+k/2+1");
    /* a prompt of 2 frames: codebook k's lies in columns k/2+1 .. k/2+2 */
    int32_t prompt[16];
    for (int i = 0; i < 16; i++)
        prompt[i] = 50 + i;
    mg_delay_mask_prompt(8, 2, 8, 99, prompt, 2, 2, mask);
    ok = 1;
    for (int k = 0; k < 8; k++)
        for (int t = 0; t < 8; t++) {
            int d = k / 2;
            int64_t w = t <= d || t >= 8 - 4 + 1 + d ? 99 : t <= d + 2 ? prompt[k * 2 + t - d - 1] : -1;
            ok &= mask[k * 8 + t] == w;
        }
    CHECK(ok, "stereo prompt: codebook k's prompt frames at columns k/2+1 ..");
}

static void test_top_k_top_p(void)
{
    float s[6] = {1, 5, 3, 5, 2, 3}, scratch[12];
    mg_sampling k2 = {.do_sample = 1, .temperature = 1, .top_k = 3, .top_p = 1};
    mg_warp_scores(s, 6, &k2, scratch);
    /* k-th largest is 3: ties with it survive */
    CHECK(s[1] == 5 && s[3] == 5 && s[2] == 3 && s[5] == 3 && isinf(s[0]) && isinf(s[4]),
          "top-k keeps ties with the k-th value");
    float p[4] = {logf(0.5f), logf(0.3f), logf(0.15f), logf(0.05f)};
    mg_sampling tp = {.do_sample = 1, .temperature = 1, .top_k = 0, .top_p = 0.75f};
    mg_warp_scores(p, 4, &tp, scratch);
    CHECK(isfinite(p[0]) && isfinite(p[1]) && isinf(p[2]) && isinf(p[3]), "top-p 0.75 keeps 0.5+0.3");
    float q[3] = {0, -1, -2};
    mg_sampling tiny_p = {.do_sample = 1, .temperature = 1, .top_k = 0, .top_p = 1e-6f};
    mg_warp_scores(q, 3, &tiny_p, scratch);
    CHECK(isfinite(q[0]) && isinf(q[1]) && isinf(q[2]), "top-p always keeps the most likely");
    float ties[5] = {1, 1, 0, 0, -5};
    mg_sampling tp3 = {.do_sample = 1, .temperature = 1, .top_k = 0, .top_p = 0.3f};
    mg_warp_scores(ties, 5, &tp3, scratch);
    CHECK(isfinite(ties[0]) && isinf(ties[2]) && isinf(ties[4]), "top-p with tied leaders keeps one of them");
    float t[2] = {1, 2};
    mg_sampling temp = {.do_sample = 1, .temperature = 0.5f, .top_k = 0, .top_p = 1};
    mg_warp_scores(t, 2, &temp, scratch);
    CHECK(t[0] == 2 && t[1] == 4, "temperature divides");
    float probs[3] = {0.2f, 0.0f, 0.8f};
    CHECK(mg_draw(probs, 3, 0.1) == 0 && mg_draw(probs, 3, 0.25) == 2 && mg_draw(probs, 3, 0.999999) == 2,
          "inverse-CDF draw skips zero-probability codes");
    float tie[3] = {1, 3, 3};
    CHECK(mg_argmax(tie, 3) == 1, "argmax takes the first of ties");
    /* top-k against a sort, on random scores with many ties and -inf, every k */
    int agree = 1;
    uint32_t r = 9;
    for (int trial = 0; trial < 200; trial++) {
        enum { N = 61 };
        float a[N], b[N], sorted[N], scr[2 * N];
        for (int i = 0; i < N; i++) {
            r = r * 1664525u + 1013904223u;
            a[i] = trial % 3 == 0 ? (float)(r >> 29) : (float)((r >> 8) % 1000) / 7.0f - 60;
            if ((r >> 4) % 11 == 0)
                a[i] = -INFINITY;
            sorted[i] = a[i];
        }
        for (int i = 1; i < N; i++) /* insertion sort, descending */
            for (int j = i; j > 0 && sorted[j] > sorted[j - 1]; j--) {
                float t2 = sorted[j];
                sorted[j] = sorted[j - 1];
                sorted[j - 1] = t2;
            }
        for (int k = 1; k < N; k++) {
            memcpy(b, a, sizeof b);
            mg_sampling sk = {.do_sample = 1, .temperature = 1, .top_k = k, .top_p = 1};
            mg_warp_scores(b, N, &sk, scr);
            for (int i = 0; i < N; i++)
                agree &= a[i] < sorted[k - 1] ? b[i] == -INFINITY : b[i] == a[i];
        }
    }
    CHECK(agree, "top-k keeps exactly the scores >= the k-th largest (200 random rows, every k)");
}

static void test_rng(void)
{
    double sum = 0;
    int n = 100000, in_range = 1;
    for (int i = 0; i < n; i++) {
        double u = mg_rng_uniform(42, (uint64_t)i, 3);
        in_range &= u >= 0 && u < 1;
        sum += u;
    }
    CHECK(in_range, "uniform in [0, 1)");
    CHECK(fabs(sum / n - 0.5) < 0.01, "uniform mean %.4f", sum / n);
    CHECK(mg_rng_uniform(1, 2, 3) == mg_rng_uniform(1, 2, 3), "deterministic");
    CHECK(mg_rng_uniform(1, 2, 3) != mg_rng_uniform(2, 2, 3) &&
          mg_rng_uniform(1, 2, 3) != mg_rng_uniform(1, 3, 3) &&
          mg_rng_uniform(1, 2, 3) != mg_rng_uniform(1, 2, 4), "seed, step and row all matter");
}

static int cancel_at_3(void *ud, int step, int total) { return step >= 3; }

/* Collects what the on_audio hook hands over, in order; `refuse` cancels. */
typedef struct {
    float  *audio;
    size_t  cap, got;
    int     batch, calls, in_order, refuse;
} audio_sink;

static int collect_audio(void *ud, const float *audio, int batch, size_t offset, size_t n)
{
    audio_sink *a = ud;
    a->calls++;
    a->batch = batch;
    a->in_order &= offset == a->got;
    if (a->refuse)
        return 1;
    for (int b = 0; b < batch; b++)
        for (size_t i = 0; i < n && offset + i < a->cap; i++)
            a->audio[(size_t)b * a->cap + offset + i] = audio[(size_t)b * n + i];
    a->got = offset + n;
    return 0;
}

static int sample_codes(const char *dir, int threads, uint64_t seed, int32_t *codes, size_t n, float *audio0)
{
    mg_model *m = NULL;
    mg_error err = {0};
    mg_model_options opt = {.n_threads = threads};
    if (mg_model_load(&m, dir, &opt, &err) != MG_OK) {
        CHECK(0, "load: %s", err.msg);
        return -1;
    }
    static const int32_t ids[2 * 5] = {100, 200, 300, 1, 0, 7, 8, 9, 10, 1};
    static const uint8_t mask[2 * 5] = {1, 1, 1, 1, 0, 1, 1, 1, 1, 1};
    mg_gen_params p;
    mg_gen_params_default(m, &p);
    p.max_new_tokens = 20;
    p.seed = seed;
    p.sampling.do_sample = 1;
    p.sampling.top_k = 10;
    p.sampling.guidance_scale = 3;
    mg_gen_result res;
    int rc = mg_generate_ids(m, ids, mask, 2, 5, &p, NULL, &res, &err);
    CHECK(rc == MG_OK, "sampled generation: %s", err.msg);
    if (rc == MG_OK) {
        CHECK((size_t)res.batch * 4 * res.frames == n, "frame count");
        memcpy(codes, res.codes, n * sizeof *codes);
        *audio0 = res.audio[100];
        mg_gen_result_free(&res);
    }
    /* the on_audio hook sees every sample of the result, in order, and
     * refusing it cancels the generation */
    if (rc == MG_OK) {
        size_t per = n / 2 / 4 * 640 + 640; /* room past frames*hop */
        audio_sink a = {.in_order = 1, .cap = per, .audio = calloc(2 * per, sizeof(float))};
        mg_gen_hooks ah = {.on_audio = collect_audio, .ud = &a};
        CHECK(a.audio != NULL, "alloc");
        if (a.audio && mg_generate_ids(m, ids, mask, 2, 5, &p, &ah, &res, &err) == MG_OK) {
            int same = a.batch == 2 && a.got == res.n_samples && a.in_order && a.calls >= 1;
            for (int b = 0; same && b < 2; b++)
                same = memcmp(a.audio + (size_t)b * per, res.audio + (size_t)b * res.n_samples,
                              res.n_samples * sizeof(float)) == 0;
            CHECK(same, "on_audio: %d calls, %zu of %zu samples, in order %d", a.calls, a.got,
                  res.n_samples, a.in_order);
            mg_gen_result_free(&res);
            a.refuse = 1;
            CHECK(mg_generate_ids(m, ids, mask, 2, 5, &p, &ah, &res, &err) == MG_ERR_CANCELLED,
                  "an on_audio hook that refuses cancels: %s", err.msg);
        } else {
            CHECK(0, "generation with on_audio: %s", err.msg);
        }
        free(a.audio);
    }
    /* cancellation between steps */
    mg_gen_hooks hooks = {.progress = cancel_at_3};
    CHECK(mg_generate_ids(m, ids, mask, 2, 5, &p, &hooks, &res, &err) == MG_ERR_CANCELLED,
          "cancelled: %s", err.msg);
    p.max_new_tokens = 0;
    p.duration = 1e6f;
    CHECK(mg_generate_ids(m, ids, mask, 2, 5, &p, NULL, &res, &err) == MG_ERR_INVALID &&
          strstr(err.msg, "duration"), "absurd duration: %s", err.msg);
    p.duration = 1;
    p.sampling.temperature = 0;
    CHECK(mg_generate_ids(m, ids, mask, 2, 5, &p, NULL, &res, &err) == MG_ERR_INVALID &&
          strstr(err.msg, "temperature"), "zero temperature: %s", err.msg);
    mg_model_free(m);
    return rc;
}

static void test_seeded_generation(const char *dir)
{
    enum { N = 2 * 4 * 17 };
    int32_t a[N], b[N], c[N];
    float fa = 0, fb = 1, fc = 2;
    if (sample_codes(dir, 1, 1234, a, N, &fa) || sample_codes(dir, 2, 1234, b, N, &fb) ||
        sample_codes(dir, 2, 99, c, N, &fc))
        return;
    CHECK(!memcmp(a, b, sizeof a) && fa == fb, "same seed: same codes and audio on 1 and 2 threads");
    CHECK(memcmp(a, c, sizeof a) != 0, "another seed: other codes");
    int distinct = 0;
    for (int i = 1; i < N; i++)
        distinct += a[i] != a[0];
    CHECK(distinct > N / 2, "sampled codes vary (%d of %d differ from the first)", distinct, N);
}

/* Continuous batching: generations of different lengths, prompts, guidance
 * and sampling run concurrently on one model; each must give exactly what it
 * gives alone. */
typedef struct {
    mg_model      *m;
    int            which;
    mg_gen_result  res;
    mg_code        rc;
    mg_error       err;
    int            max_running;   /* seen by its progress hook */
    int            steps_seen;    /* by its step hook (run 1 only) */
} batch_run;

static int note_load(void *ud, int step, int total)
{
    batch_run *r = ud;
    int running, waiting;
    mg_model_activity(r->m, &running, &waiting);
    if (running > r->max_running)
        r->max_running = running;
    return 0;
}

/* Run 1's step hook: it reads the scores, so that generation selects its
 * tokens alone while the others share the step's select_tokens_many. */
static void count_step(void *ud, int step, const float *raw, int raw_rows, const float *scores,
                       const int32_t *tokens, int rows, int V)
{
    ((batch_run *)ud)->steps_seen++;
}

static void *batch_one(void *arg)
{
    batch_run *r = arg;
    static const int32_t ids[3][2 * 5] = {{100, 200, 300, 1, 0, 7, 8, 9, 10, 1},
                                          {5, 6, 1, 0, 0, 0, 0, 0, 0, 0},
                                          {42, 43, 44, 45, 1, 0, 0, 0, 0, 0}};
    static const uint8_t mask[3][2 * 5] = {{1, 1, 1, 1, 0, 1, 1, 1, 1, 1},
                                           {1, 1, 1, 0, 0, 0, 0, 0, 0, 0},
                                           {1, 1, 1, 1, 1, 0, 0, 0, 0, 0}};
    static const int batch[3] = {2, 1, 1}, len[3] = {5, 3, 5}, steps[3] = {20, 33, 12};
    mg_gen_params p;
    mg_gen_params_default(r->m, &p);
    p.max_new_tokens = steps[r->which];
    p.seed = 1000 + (uint64_t)r->which;
    p.sampling.do_sample = r->which != 2;        /* one greedy */
    p.sampling.top_k = 10 + r->which;
    p.sampling.temperature = 1.0f + 0.25f * (float)r->which;
    p.sampling.guidance_scale = r->which == 1 ? 1.0f : 3.0f; /* one without guidance */
    mg_gen_hooks hooks = {.progress = note_load, .on_step = r->which == 1 ? count_step : NULL,
                          .ud = r};
    r->rc = mg_generate_ids(r->m, ids[r->which], mask[r->which], batch[r->which], len[r->which], &p,
                            &hooks, &r->res, &r->err);
    return NULL;
}

/* audio_batch: the scheduler decodes the audio of generations that end in
 * the same step as one EnCodec batch (the runtime's encodec_batch_jobs, which
 * it chooses on a GPU) */
static void test_batching_is_invisible(const char *dir, const char *dtype, int audio_batch)
{
    mg_model *m = NULL;
    mg_error err = {0};
    mg_model_options opt = {.n_threads = 2, .max_batch = 4, .dtype = dtype};
    if (mg_model_load(&m, dir, &opt, &err) != MG_OK) {
        CHECK(0, "load (%s): %s", dtype, err.msg);
        return;
    }
    m->encodec_batch_jobs = audio_batch;
    batch_run solo[3], together[3];
    memset(solo, 0, sizeof solo);
    memset(together, 0, sizeof together);
    for (int i = 0; i < 3; i++) {
        solo[i].m = together[i].m = m;
        solo[i].which = together[i].which = i;
        batch_one(&solo[i]);
        CHECK(solo[i].rc == MG_OK, "solo run %d: %s", i, solo[i].err.msg);
    }
    /* The scheduler is held at its first admission (it takes m->run to
     * start a job) until all three are queued, so they share steps however
     * slowly the threads start on a loaded machine. */
    pthread_t th[3];
    pthread_mutex_lock(&m->run);
    for (int i = 0; i < 3; i++)
        pthread_create(&th[i], NULL, batch_one, &together[i]);
    for (int queued = 0; queued < 3;) {
        int running, waiting;
        mg_model_activity(m, &running, &waiting);
        queued = running + waiting;
        if (queued < 3)
            usleep(1000);
    }
    pthread_mutex_unlock(&m->run);
    for (int i = 0; i < 3; i++)
        pthread_join(th[i], NULL);
    int most = 0;
    for (int i = 0; i < 3; i++) {
        CHECK(together[i].rc == MG_OK, "concurrent run %d: %s", i, together[i].err.msg);
        if (solo[i].rc || together[i].rc)
            continue;
        size_t nc = (size_t)solo[i].res.batch * 4 * solo[i].res.frames;
        CHECK(together[i].res.frames == solo[i].res.frames &&
              !memcmp(solo[i].res.codes, together[i].res.codes, nc * sizeof(int32_t)),
              "%s run %d: the same codes alone and batched", dtype, i);
        CHECK(!memcmp(solo[i].res.audio, together[i].res.audio,
                      solo[i].res.batch * solo[i].res.n_samples * sizeof(float)),
              "%s run %d: the same audio alone and batched", dtype, i);
        if (together[i].max_running > most)
            most = together[i].max_running;
    }
    CHECK(together[1].steps_seen == 33 && solo[1].steps_seen == 33,
          "%s: the step hook saw every step of run 1 (%d alone, %d batched)", dtype,
          solo[1].steps_seen, together[1].steps_seen);
    /* all three were queued before the first step: the scheduler must have
     * decoded them together */
    CHECK(most == 3, "%s: generations were decoded together (at most %d at once)", dtype, most);
    for (int i = 0; i < 3; i++) {
        mg_gen_result_free(&solo[i].res);
        mg_gen_result_free(&together[i].res);
    }
    mg_model_free(m);
}

/* q8 models keep 8-bit attention caches where a head is one Q8ROW block
 * (head_dim 64) and the CPU has the VNNI kernel: on a tiny model with that
 * head_dim, batching stays invisible, and the caches move the logits from
 * float32 by the order the q8 weights themselves do (printed; bounded). */
static void test_q8_attention_caches(const char *tool)
{
    char dir[] = "/tmp/test_generate.XXXXXX", cmd[8192];
    if (!mkdtemp(dir)) {
        CHECK(0, "cannot create a temporary directory");
        return;
    }
    snprintf(cmd, sizeof cmd, "'%s' --shape tiny64 --seed 7 -o '%s/m' 2>&1", tool, dir);
    int st = system(cmd);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "mkmodel --shape tiny64 (%s)", cmd);
    char mdir[64];
    snprintf(mdir, sizeof mdir, "%s/m", dir);
    mg_model *m = NULL, *m32 = NULL, *mb = NULL;
    mg_error err = {0};
    /* mb: the same q8 weights with BF16 attention caches */
    mg_backend_options bf16_caches;
    mg_backend_options_default(&bf16_caches);
    bf16_caches.kv_q8row = 0;
    mg_model_options opt = {.n_threads = 2, .dtype = "q8"}, opt32 = {.n_threads = 2, .dtype = "f32"},
                     optb = {.n_threads = 2, .dtype = "q8", .backend = &bf16_caches};
    int loaded = mg_model_load(&m, mdir, &opt, &err) == MG_OK &&
                 mg_model_load(&m32, mdir, &opt32, &err) == MG_OK &&
                 mg_model_load(&mb, mdir, &optb, &err) == MG_OK;
    mg_backend_caps caps = {0};
    if (loaded)
        mg_backend_get_caps(mg_model_backend(m), &caps);
    if (!loaded) {
        CHECK(0, "load tiny64: %s", err.msg);
    } else if (!caps.kv_q8row_fits || !caps.kv_q8row_fits(mg_model_backend(m), mg_model_config(m)->dec_heads, 64, 2048)) {
        SKIP("this CPU has no AVX-512 VNNI: q8 models keep BF16 attention caches here");
    } else {
        mg_dec_state ds, dsb;
        mg_tensor *enc = NULL, *encb = NULL;
        uint8_t emask[2] = {1, 1};
        int have = mg_tensor_new2(&enc, mg_model_backend(m), 2, mg_model_config(m)->dec_hidden, &err) == MG_OK &&
                   mg_dec_state_init(mg_model_decoder(m), &ds, 1, 8, enc, emask, 2, &err) == MG_OK;
        int haveb = have && mg_tensor_new2(&encb, mg_model_backend(mb), 2, mg_model_config(mb)->dec_hidden, &err) == MG_OK &&
                    mg_dec_state_init(mg_model_decoder(mb), &dsb, 1, 8, encb, emask, 2, &err) == MG_OK;
        CHECK(have && haveb, "decoding states: %s", err.msg);
        if (haveb) {
            CHECK(ds.k_cache[0]->dtype == MG_DT_Q8ROW && ds.v_cache[0]->dtype == MG_DT_Q8ROW &&
                  dsb.k_cache[0]->dtype == MG_DT_BF16 && dsb.v_cache[0]->dtype == MG_DT_BF16,
                  "q8 weights with head_dim 64: 8-bit attention caches (BF16 with kv_q8row 0)");
            mg_dec_state_free(mg_model_decoder(mb), &dsb);
        }
        if (have)
            mg_dec_state_free(mg_model_decoder(m), &ds);
        mg_tensor_free(enc);
        mg_tensor_free(encb);

        test_batching_is_invisible(mdir, "q8", 0);
        test_batching_is_invisible(mdir, "bf16", 0);

        enum { L = 60 };
        int V = mg_model_config(m)->dec_vocab;
        float *ref = tu_forced_logits(m32, L), *q8 = tu_forced_logits(m, L), *q8b = tu_forced_logits(mb, L);
        CHECK(ref && q8 && q8b, "teacher-forced runs");
        if (ref && q8 && q8b) {
            double scale = 0, dev = 0, devb = 0;
            for (int64_t i = 0; i < (int64_t)2 * 4 * L * V; i++) {
                scale = fmax(scale, fabs(ref[i]));
                dev = fmax(dev, fabs(q8[i] - ref[i]));
                devb = fmax(devb, fabs(q8b[i] - ref[i]));
            }
            printf("# q8 against f32 over %d teacher-forced columns, max |dlogit| / logit scale: "
                   "8-bit caches %.2e, BF16 caches %.2e\n", L, dev / scale, devb / scale);
            /* the q8 weights dominate: the caches' own rounding adds little */
            CHECK(dev / scale < 5e-2 && dev < 1.5 * devb,
                  "q8 with 8-bit caches stays near f32 (%.2e, BF16 caches %.2e)", dev / scale,
                  devb / scale);
        }
        free(ref);
        free(q8);
        free(q8b);
    }
    mg_model_free(m);
    mg_model_free(m32);
    mg_model_free(mb);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0, "remove %s", dir);
}

/* mg_gen_jobs_audio: three generations (batches 2, 1, 1) of one frame count
 * decoded as one EnCodec batch give each the audio it gets alone, bit for
 * bit; a bad code in one fails them all, each with the error. */
static void test_audio_batch(const char *dir)
{
    mg_model *m = NULL;
    mg_error err = {0};
    mg_model_options opt = {.n_threads = 2};
    if (mg_model_load(&m, dir, &opt, &err) != MG_OK) {
        CHECK(0, "load: %s", err.msg);
        return;
    }
    enum { N = 3, FRAMES = 37 };
    const int batch[N] = {2, 1, 1};
    int K = mg_model_config(m)->num_codebooks, V = mg_model_config(m)->ec_codebook_size;
    size_t n_samples = (size_t)FRAMES * mg_model_config(m)->hop;
    mg_gen_result res[N], alone[N];
    mg_error errs[N];
    mg_gen_job jobs[N], *ptr[N];
    memset(res, 0, sizeof res);
    memset(alone, 0, sizeof alone);
    memset(errs, 0, sizeof errs);
    memset(jobs, 0, sizeof jobs);
    int ok = 1;
    uint32_t x = 12345;
    for (int i = 0; i < N; i++) {
        size_t nc = (size_t)batch[i] * K * FRAMES;
        res[i].codes = malloc(nc * sizeof *res[i].codes);
        res[i].audio = malloc(batch[i] * n_samples * sizeof *res[i].audio);
        alone[i].audio = malloc(batch[i] * n_samples * sizeof *alone[i].audio);
        ok &= res[i].codes && res[i].audio && alone[i].audio;
        for (size_t k = 0; ok && k < nc; k++) {
            x = x * 1664525u + 1013904223u;
            res[i].codes[k] = (int32_t)((x >> 8) % (uint32_t)V);
        }
        res[i].n_samples = n_samples;
        jobs[i] = (mg_gen_job){.batch = batch[i], .frames = FRAMES, .res = &res[i], .err = &errs[i]};
        ptr[i] = &jobs[i];
    }
    CHECK(ok, "out of memory");
    for (int i = 0; ok && i < N; i++) {
        ok &= mg_encodec_decode(mg_model_encodec(m), res[i].codes, batch[i], FRAMES,
                                alone[i].audio, NULL, NULL, &err) == MG_OK;
        CHECK(ok, "alone %d: %s", i, err.msg);
    }
    if (ok) {
        mg_code rc = mg_gen_jobs_audio(m, ptr, N);
        CHECK(rc == MG_OK, "one EnCodec batch: %s", errs[0].msg);
        for (int i = 0; rc == MG_OK && i < N; i++)
            CHECK(!memcmp(alone[i].audio, res[i].audio, batch[i] * n_samples * sizeof(float)),
                  "generation %d: the same audio in one EnCodec batch as alone", i);
        res[2].codes[5] = V; /* out of range */
        rc = mg_gen_jobs_audio(m, ptr, N);
        CHECK(rc == MG_ERR_INVALID, "a bad code fails the batch (%d)", rc);
        for (int i = 0; i < N; i++)
            CHECK(strstr(errs[i].msg, "audio code") != NULL, "generation %d has the error: '%s'", i,
                  errs[i].msg);
    }
    for (int i = 0; i < N; i++) {
        free(res[i].codes);
        free(res[i].audio);
        free(alone[i].audio);
    }
    mg_model_free(m);
}

int main(int argc, char **argv)
{
    test_delay_pattern();
    test_delay_pattern_stereo();
    test_top_k_top_p();
    test_rng();
    char dir[4200], probe[4300];
    snprintf(dir, sizeof dir, "%s/tiny-proj", check_golden_dir());
    snprintf(probe, sizeof probe, "%s/model.safetensors", dir);
    if (access(probe, R_OK) != 0)
        SKIP("golden tiny-proj model not found at %s", dir);
    else {
        test_seeded_generation(dir);
        test_batching_is_invisible(dir, "f32", 0);
        test_batching_is_invisible(dir, "bf16", 0);
        test_batching_is_invisible(dir, "q8", 0);
        test_batching_is_invisible(dir, "f32", 1);
        test_audio_batch(dir);
    }
    /* the tool sits beside this test binary (build/ or build-san/) */
    char self[4096], tool[4200];
    snprintf(self, sizeof self, "%s", argc > 0 ? argv[0] : "");
    snprintf(tool, sizeof tool, "%s/musicgen-mkmodel", dirname(self));
    if (access(tool, X_OK) != 0)
        CHECK(0, "%s not built", tool);
    else
        test_q8_attention_caches(tool);
    return check_summary("test_generate");
}
