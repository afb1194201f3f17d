/* bench_engine: speed and memory figures of the engine on one model.
 *
 *   bench_engine MODEL_DIR [--dtype f32|bf16|q8] [--seconds S] [--threads N]
 *                [--steps N] [--weights-cache DIR] [--json FILE]
 *     machine read bandwidth (a streaming read on all threads), load time,
 *     T5 on a 20-token prompt, the decode step (batch 1 with guidance, median
 *     of N steps, 250 unless --steps) and the fraction of the read bandwidth
 *     its weight reads achieve, EnCodec per second of audio, a whole
 *     S-second generation (S = 0: skipped) and peak RSS with the resident
 *     memory split into private pages and file pages (the mapped checkpoint
 *     or converted-weights cache, shared by every process mapping it); FILE
 *     gets them as JSON, keys suffixed with the dtype.
 *   bench_engine --table OUT.json IN.json...
 *     merges the per-dtype files into OUT.json and prints the table.
 * Peak RSS is per process, so run.sh runs one process per dtype. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "../tools/backend_env.h"
#include "cpu/cpu_backend.h"
#include "cpu/cpu_kernel.h"
#include "model/encodec_stream.h"
#include "runtime/model_parts.h"

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return v[n / 2];
}

static double peak_rss_mb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024.0;
}

/* MB of a "Rss...:  N kB" line of /proc/self/status now, -1 where absent */
static double status_mb(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    double mb = -1;
    size_t n = strlen(field);
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, field, n) && line[n] == ':')
            mb = atof(line + n + 1) / 1024.0;
    if (f)
        fclose(f);
    return mb;
}

/* A stream's audio into one buffer of one item. */
static mg_code bench_audio_sink(void *ud, const float *audio, int batch, int64_t offset, int64_t n,
                                mg_error *err)
{
    (void)batch;
    (void)err;
    memcpy((float *)ud + offset, audio, (size_t)n * sizeof *audio);
    return MG_OK;
}

#define DIE(...) do { fprintf(stderr, "bench: " __VA_ARGS__); fprintf(stderr, "\n"); exit(1); } while (0)

/* ------------------------------------------------------- read bandwidth */

typedef struct {
    const uint64_t *buf;
    uint64_t        sums[64];
    int64_t         per_piece;
    uint64_t      (*sum)(const uint64_t *p, int64_t n); /* sum_words at the backend's level */
} stream_ctx;

/* Eight independent sums: the loads, not the adds, limit the loop. */
MG_CPU_BODY uint64_t sum_words_body(const uint64_t *p, int64_t n)
{
    uint64_t s[8] = {0};
    for (int64_t i = 0; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++)
            s[l] += p[i + l];
    return s[0] + s[1] + s[2] + s[3] + s[4] + s[5] + s[6] + s[7];
}
MG_CPU_KERNEL(sum_words, uint64_t, (const uint64_t *p, int64_t n), (p, n))

static void stream_task(void *arg, int64_t i0, int64_t i1)
{
    stream_ctx *c = arg;
    for (int64_t i = i0; i < i1; i++)
        c->sums[i % 64] += c->sum(c->buf + i * c->per_piece, c->per_piece);
}

/* GB/s of a streaming read of 1 GiB on the backend's threads (best of 5). */
static double read_bandwidth_gbs(mg_backend *be)
{
    const int64_t bytes = (int64_t)1 << 30, pieces = 1024;
    uint64_t *buf = malloc((size_t)bytes);
    if (!buf)
        return 0;
    memset(buf, 1, (size_t)bytes);
    stream_ctx c = {.buf = buf, .per_piece = bytes / 8 / pieces,
                    .sum = sum_words_for(mg_cpu_backend_isa(be))};
    double best = 1e30;
    for (int r = 0; r < 5; r++) {
        double t0 = now_ms();
        mg_cpu_parallel(be, pieces, 1, stream_task, &c);
        double ms = now_ms() - t0;
        best = ms < best ? ms : best;
    }
    free(buf);
    return bytes / best / 1e6;
}

/* Weight bytes one decode step reads (the per-layer matrices and the LM
 * heads; embeddings are row gathers, cross-attention K/V are per request). */
static double decode_weight_bytes(mg_model *m)
{
    mg_decoder *dec = mg_model_decoder(m);
    double b = 0;
    for (int l = 0; l < mg_model_config(m)->dec_layers; l++) {
        const mg_dec_layer *L = &dec->layers[l];
        const mg_tensor *w[] = {L->q, L->k, L->v, L->o, L->cq, L->co, L->fc1, L->fc2};
        for (size_t i = 0; i < sizeof w / sizeof w[0]; i++)
            b += (double)w[i]->nbytes;
    }
    for (int k = 0; k < mg_model_config(m)->num_codebooks; k++)
        b += (double)dec->heads[k]->nbytes;
    return b;
}

/* ------------------------------------------------------------- measure */

enum { MAX_STEPS = 250 };

static void measure(const char *dir, const char *dtype, double seconds, int threads,
                    int n_steps, const char *cache_dir, const char *json_path)
{
    mg_error err = {0};
    mg_model *m = NULL;
    mg_backend_options backend;
    mg_backend_options_from_env(&backend);
    mg_model_options opt = {.n_threads = threads, .dtype = dtype, .weights_cache = cache_dir,
                            .backend = &backend};
    json_t *out = json_object();
    char key[64];
#define PUT(name, value) (snprintf(key, sizeof key, "%s_%s", name, dtype), \
                          json_object_set_new(out, key, json_real(value)))
    double t0 = now_ms();
    if (!out || mg_model_load(&m, dir, &opt, &err) != MG_OK)
        DIE("%s", out ? err.msg : "out of memory");
    double load_ms = now_ms() - t0;
    const mg_config *c = mg_model_config(m);
    mg_backend *be = mg_model_backend(m);
    mg_decoder *dec = mg_model_decoder(m);
    printf("model            %s (decoder %d layers x %d, %d codebooks, %s; T5 %d layers x %d), %d threads, %s weights, %s kernels\n",
           dir, c->dec_layers, c->dec_hidden, c->num_codebooks,
           c->audio_channels == 2 ? "stereo" : "mono", c->t5_layers, c->t5_d_model, be->n_threads, dtype,
           mg_cpu_isa_name(mg_cpu_backend_isa(be)));
    printf("load             %.0f ms\n", load_ms);
    PUT("load_ms", load_ms);
    /* the bandwidth goes first in the f32 run, last in the others, so its
     * 1 GiB buffer never counts in a compressed format's peak RSS */
    int bw_first = !strcmp(dtype, "f32");
    double bw = bw_first ? read_bandwidth_gbs(be) : 0;

    /* T5 on a 20-token prompt */
    enum { S = 20, REPS = 7 };
    int32_t ids[S];
    uint8_t mask[S];
    for (int i = 0; i < S; i++) {
        ids[i] = i == S - 1 ? 1 : 100 + 37 * i;
        mask[i] = 1;
    }
    mg_tensor *last = NULL, *enc = NULL, *enc2 = NULL, *logits = NULL;
    if (mg_tensor_new2(&last, be, S, c->t5_d_model, &err) ||
        mg_tensor_new2(&enc, be, S, c->dec_hidden, &err) ||
        mg_tensor_new2(&enc2, be, 2 * S, c->dec_hidden, &err))
        DIE("%s", err.msg);
    double times[REPS];
    for (int r = 0; r < REPS; r++) {
        t0 = now_ms();
        if (mg_t5_encode(mg_model_t5(m), ids, mask, 1, S, last, NULL, NULL, &err))
            DIE("%s", err.msg);
        times[r] = now_ms() - t0;
    }
    double t5 = median(times, REPS);
    printf("t5_encode        %.1f ms (20 tokens, median of %d)\n", t5, REPS);
    PUT("t5_ms", t5);

    /* decoder steps, batch 1 with guidance = 2 sequences, positions 0..n_steps */
    uint8_t mask2[2 * S] = {0};
    memcpy(mask2, mask, S);
    if (mg_decoder_project(dec, last, mask, enc, &err))
        DIE("%s", err.msg);
    be->ops->copy_rows(be, enc2, 0, enc, 0, S); /* second half stays zero */
    /* the production path: the scheduler's batched step, one state here */
    mg_dec_state st;
    mg_dec_state *sts[1] = {&st};
    mg_dec_batch wb = {0};
    int K = c->num_codebooks;
    if (mg_dec_state_init(dec, &st, 2, n_steps, enc2, mask2, S, &err) ||
        mg_tensor_new2(&logits, be, 2 * K, c->dec_vocab, &err))
        DIE("%s", err.msg);
    static double steps[MAX_STEPS];
    int32_t step_ids[2 * MG_MAX_CODEBOOKS] = {0}; /* both halves of the guidance batch */
    const int32_t *ids1[1] = {step_ids};
    for (int s = 0; s < n_steps; s++) {
        for (int k = 0; k < 2 * K; k++)
            step_ids[k] = (s * 7 + k) % c->dec_vocab;
        t0 = now_ms();
        if (mg_decoder_step(dec, &wb, sts, 1, ids1, &logits, &err))
            DIE("%s", err.msg);
        steps[s] = now_ms() - t0;
    }
    double first = steps[0], step_ms = median(steps + 1, n_steps - 1);
    double wbytes = decode_weight_bytes(m), gbs = wbytes / step_ms / 1e6;
    printf("decoder_step     %.1f ms (batch 1 with guidance, median of positions 1..%d; first %.1f ms)\n",
           step_ms, n_steps - 1, first);
    PUT("decode_ms", step_ms);
    PUT("decode_weight_mb", wbytes / 1e6);
    PUT("decode_gbs", gbs);
    mg_dec_batch_free(&wb);
    mg_dec_state_free(dec, &st);

    /* EnCodec on 5 s of codes */
    int frames = (int)(5.0 * c->sample_rate / c->hop);
    int32_t *codes = malloc((size_t)K * frames * sizeof *codes);
    /* a stereo model decodes each channel: [channels, samples] */
    float *audio = malloc((size_t)c->audio_channels * frames * c->hop * sizeof *audio);
    if (!codes || !audio)
        DIE("out of memory");
    for (int i = 0; i < K * frames; i++)
        codes[i] = (i * 131) % c->ec_codebook_size;
    /* best of 3: a served model decodes with the scratch of its last decode
     * (the first run also pays for fresh pages) */
    double ec_ms = 0, ec_first = 0;
    for (int r = 0; r < 3; r++) {
        t0 = now_ms();
        if (mg_encodec_decode(mg_model_encodec(m), codes, 1, frames, audio, NULL, NULL, &err))
            DIE("%s", err.msg);
        double ms = (now_ms() - t0) / 5.0;
        if (r == 0)
            ec_first = ms;
        ec_ms = r == 0 || ms < ec_ms ? ms : ec_ms;
    }
    printf("encodec          %.1f ms per second of %s audio (%d frames, best of 3; first %.1f ms)\n",
           ec_ms, c->audio_channels == 2 ? "stereo (both channels)" : "mono", frames, ec_first);
    PUT("encodec_ms_per_audio_s", ec_ms);
    /* the same codes as a generation streams them: a first chunk of 8
     * frames past the look-ahead, then chunks as long as the audio out, up
     * to 50 frames (runtime/gen_job.c) */
    /* one pass over the whole 5 s (no chunks) */
    double whole_ms = 0;
    mg_encodec_set_chunk(mg_model_encodec(m), 0);
    for (int r = 0; r < 3; r++) {
        t0 = now_ms();
        if (mg_encodec_decode(mg_model_encodec(m), codes, 1, frames, audio, NULL, NULL, &err))
            DIE("%s", err.msg);
        double ms = (now_ms() - t0) / 5.0;
        whole_ms = r == 0 || ms < whole_ms ? ms : whole_ms;
    }
    mg_encodec_set_chunk(mg_model_encodec(m), MG_ENCODEC_CHUNK_FRAMES);
    double st_ms = 0;
    int pieces = 0;
    for (int r = 0; r < 3; r++) {
        mg_encodec_stream *es;
        mg_encodec *ec = mg_model_encodec(m);
        int la = mg_encodec_lookahead_frames(ec);
        t0 = now_ms();
        if (mg_encodec_stream_open(&es, ec, 1, bench_audio_sink, audio, &err))
            DIE("%s", err.msg);
        pieces = 0;
        for (int fed = 0; fed < frames; pieces++) {
            int64_t out = mg_encodec_stream_samples(es) / c->hop;
            int n = fed == 0 ? la + 8 : out < 8 ? 8 : out > 50 ? 50 : (int)out;
            n = n < frames - fed ? n : frames - fed;
            if (mg_encodec_stream_push(es, codes + fed, n, frames, &err))
                DIE("%s", err.msg);
            fed += n;
        }
        if (mg_encodec_stream_finish(es, &err))
            DIE("%s", err.msg);
        mg_encodec_stream_free(es);
        double ms = (now_ms() - t0) / 5.0;
        st_ms = r == 0 || ms < st_ms ? ms : st_ms;
    }
    printf("encodec_stream   %.1f ms per second of audio (%d pushes as a generation streams, best of 3; "
           "%d-frame chunks %.1f ms, the whole 5 s at once %.1f ms)\n", st_ms, pieces,
           MG_ENCODEC_CHUNK_FRAMES, ec_ms, whole_ms);
    PUT("encodec_whole_ms_per_audio_s", whole_ms);
    PUT("encodec_stream_ms_per_audio_s", st_ms);
    free(codes);
    free(audio);
    mg_tensor_free(last);
    mg_tensor_free(enc);
    mg_tensor_free(enc2);
    mg_tensor_free(logits);

    /* a whole generation from token ids */
    if (seconds > 0) {
        mg_gen_params p;
        mg_gen_params_default(m, &p);
        p.duration = (float)seconds;
        p.sampling.do_sample = 1;
        p.sampling.guidance_scale = 3;
        p.sampling.top_k = 250;
        p.seed = 1;
        mg_gen_result res;
        t0 = now_ms();
        if (mg_generate_ids(m, ids, mask, 1, S, &p, NULL, &res, &err))
            DIE("%s", err.msg);
        double wall = (now_ms() - t0) / 1e3, audio_s = (double)res.n_samples / res.sample_rate;
        printf("generate         %.2f s wall for %.2f s of audio (T5 %.0f ms, decode %.2f s = %.1f ms/step, EnCodec %.2f s)\n",
               wall, audio_s, res.t5_ms, res.decode_ms / 1e3, res.decode_ms / res.steps,
               res.encodec_ms / 1e3);
        printf("real_time_factor %.2f (wall / audio seconds; < 1 is faster than real time)\n",
               wall / audio_s);
        snprintf(key, sizeof key, "e2e_%gs_%s_s", seconds, dtype);
        json_object_set_new(out, key, json_real(wall));
        PUT("e2e_decode_ms_per_step", res.decode_ms / res.steps);
        mg_gen_result_free(&res);
    }
    double rss = peak_rss_mb(), anon = status_mb("RssAnon"), file = status_mb("RssFile");
    printf("peak_rss         %.0f MB (now %.0f MB private, %.0f MB of mapped files, shared "
           "with every process mapping them)\n", rss, anon, file);
    PUT("peak_rss_mb", rss);
    PUT("rss_private_mb", anon);
    PUT("rss_file_mb", file);
    if (!bw_first)
        bw = read_bandwidth_gbs(be);
    printf("read_bandwidth   %.1f GB/s (streaming read, %d threads)\n", bw, be->n_threads);
    printf("decoder_weights  %.0f MB per step read at %.1f GB/s = %.0f %% of the read bandwidth\n",
           wbytes / 1e6, gbs, 100 * gbs / bw);
    json_object_set_new(out, "read_bandwidth_gbs", json_real(bw));
    PUT("decode_bw_fraction", gbs / bw);
    mg_model_free(m);
    if (json_path && json_dump_file(out, json_path, JSON_INDENT(2) | JSON_SORT_KEYS) != 0)
        DIE("cannot write %s", json_path);
    json_decref(out);
#undef PUT
}

/* ---------------------------------------------------------------- table */

static double num(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return v ? json_number_value(v) : -1;
}

static void row(const char *what, const char *hf, const char *target, double v, const char *fmt)
{
    char got[64];
    if (v < 0)
        snprintf(got, sizeof got, "not measured yet");
    else
        snprintf(got, sizeof got, fmt, v);
    printf("| %-44s | %-12s | %-10s | %-22s |\n", what, hf, target, got);
}

static void table(const char *out_path, int n, char **in)
{
    json_t *all = json_object();
    for (int i = 0; i < n; i++) {
        json_error_t e;
        json_t *j = json_load_file(in[i], 0, &e);
        if (!j)
            DIE("%s: %s", in[i], e.text);
        json_object_update(all, j);
        json_decref(j);
    }
    /* the rows of the issue: T5 and EnCodec as a q8 deployment runs them */
    json_object_set_new(all, "t5_ms", json_real(num(all, "t5_ms_q8")));
    json_object_set_new(all, "encodec_ms_per_audio_s", json_real(num(all, "encodec_ms_per_audio_s_q8")));
    double bw = num(all, "read_bandwidth_gbs");
    printf("\nmachine read bandwidth: %.1f GB/s\n\n", bw);
    printf("| %-44s | %-12s | %-10s | %-22s |\n", "measure", "HF+PyTorch", "target", "ngx-musicgen");
    printf("|----------------------------------------------|--------------|------------|------------------------|\n");
    row("decode step with guidance, float32 (ms)", "173 ms", "<= 60 ms", num(all, "decode_ms_f32"), "%.1f ms");
    row("decode step with guidance, bf16 (ms)", "-", "-", num(all, "decode_ms_bf16"), "%.1f ms");
    row("decode step with guidance, q8 (ms)", "-", "<= 20 ms", num(all, "decode_ms_q8"), "%.1f ms");
    row("T5, 20-token prompt (q8 weights)", "55 ms", "<= 30 ms", num(all, "t5_ms"), "%.1f ms");
    row("T5, 20-token prompt (f32 weights)", "55 ms", "<= 30 ms", num(all, "t5_ms_f32"), "%.1f ms");
    row("EnCodec, per second of audio", "270 ms", "<= 100 ms", num(all, "encodec_ms_per_audio_s"), "%.0f ms");
    row("EnCodec streamed as generated, per s of audio", "-", "-",
        num(all, "encodec_stream_ms_per_audio_s_q8"), "%.0f ms");
    row("10 s of audio end to end, q8", "~90 s", "<= 10 s", num(all, "e2e_10s_q8_s"), "%.2f s");
    row("4 concurrent 10 s requests, q8 (ratio)", "-", "<= 1.5x", num(all, "batch4_ratio_q8"), "%.2fx");
    row("peak RSS, q8", "3.1 GB", "<= 1 GB", num(all, "peak_rss_mb_q8"), "%.0f MB");
    row("load, f32 (the file, used in place)", "-", "-", num(all, "load_ms_f32"), "%.0f ms");
    row("load, q8 converting / from the cache", "-", "-", num(all, "load_ms_q8"), "%.0f ms");
    row("", "", "", num(all, "load_cached_ms_q8"), "%.0f ms (cache)");
    row("load, bf16 converting / from the cache", "-", "-", num(all, "load_ms_bf16"), "%.0f ms");
    row("", "", "", num(all, "load_cached_ms_bf16"), "%.0f ms (cache)");
    printf("\ndecode weight reads as a fraction of the read bandwidth:");
    static const char *const dts[] = {"f32", "bf16", "q8"};
    for (int i = 0; i < 3; i++) {
        char k1[64], k2[64], k3[64];
        snprintf(k1, sizeof k1, "decode_bw_fraction_%s", dts[i]);
        snprintf(k2, sizeof k2, "decode_gbs_%s", dts[i]);
        snprintf(k3, sizeof k3, "decode_weight_mb_%s", dts[i]);
        if (num(all, k1) >= 0)
            printf("  %s %.0f MB at %.1f GB/s = %.0f %%;", dts[i], num(all, k3), num(all, k2),
                   100 * num(all, k1));
    }
    printf("\n");
    if (json_dump_file(all, out_path, JSON_INDENT(2) | JSON_SORT_KEYS) != 0)
        DIE("cannot write %s", out_path);
    printf("wrote %s\n", out_path);
    json_decref(all);
}

/* Load times with the converted-weights cache in dir: the first load
 * converts and writes it (or finds it), the second maps it. */
static void measure_cached_load(const char *model, const char *dtype, int threads,
                                const char *dir, const char *json_path)
{
    json_t *out = json_object();
    char key[64];
    for (int pass = 0; pass < 2; pass++) {
        mg_error err = {0};
        mg_model *m = NULL;
        mg_backend_options backend;
        mg_backend_options_from_env(&backend);
        mg_model_options opt = {.n_threads = threads, .dtype = dtype, .weights_cache = dir,
                                .backend = &backend};
        double t0 = now_ms();
        if (!out || mg_model_load(&m, model, &opt, &err) != MG_OK)
            DIE("%s", out ? err.msg : "out of memory");
        double ms = now_ms() - t0;
        printf("load %-6s     %.0f ms (%s)\n", pass ? "again" : "first", ms, mg_model_load_note(m));
        snprintf(key, sizeof key, "load_%s_ms_%s", pass ? "cached" : "first", dtype);
        json_object_set_new(out, key, json_real(ms));
        mg_model_free(m);
    }
    if (json_path && json_dump_file(out, json_path, JSON_INDENT(2) | JSON_SORT_KEYS) != 0)
        DIE("cannot write %s", json_path);
    json_decref(out);
}

int main(int argc, char **argv)
{
    if (argc >= 3 && !strcmp(argv[1], "--table")) {
        table(argv[2], argc - 3, argv + 3);
        return 0;
    }
    if (argc < 2)
        DIE("usage: bench_engine MODEL_DIR [--dtype D] [--seconds S] [--threads N] [--steps N]\n"
            "                              [--weights-cache DIR] [--json FILE]\n"
            "       bench_engine MODEL_DIR --dtype D --load-cache DIR [--json FILE]\n"
            "       bench_engine --table OUT.json IN.json...");
    const char *dtype = "f32", *json_path = NULL, *cache_dir = NULL, *weights_cache = NULL;
    double seconds = 0;
    int threads = 0, steps = MAX_STEPS;
    for (int i = 2; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--dtype"))
            dtype = argv[i + 1];
        else if (!strcmp(argv[i], "--seconds"))
            seconds = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--threads"))
            threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--json"))
            json_path = argv[i + 1];
        else if (!strcmp(argv[i], "--load-cache"))
            cache_dir = argv[i + 1];
        else if (!strcmp(argv[i], "--weights-cache"))
            weights_cache = argv[i + 1];
        else if (!strcmp(argv[i], "--steps")) {
            steps = atoi(argv[i + 1]);
            if (steps < 3 || steps > MAX_STEPS)
                DIE("--steps must be in [3, %d]", MAX_STEPS);
        }
        else
            DIE("unknown option %s", argv[i]);
    }
    if (cache_dir)
        measure_cached_load(argv[1], dtype, threads, cache_dir, json_path);
    else
        measure(argv[1], dtype, seconds, threads, steps, weights_cache, json_path);
    return 0;
}
