/* bench_late_steps: the decode step at early and late positions of a 30 s
 * window, and the self-attention alone at those positions.
 *
 *   bench_late_steps MODEL_DIR [--dtype f32|bf16|q8] [--threads N]
 *                    [--rounds R] [--positions P1,P2,...]
 *
 * One state of 2 sequences (batch 1 with guidance) whose self-attention
 * caches are filled directly with random rows (through copy_rows, so Q8ROW
 * caches hold what a generation would store: quantised rows) up to the
 * largest position; a measurement sets the state's position and runs one
 * mg_decoder_step, then the self-attention of every layer alone (the
 * decoder's call: one query per sequence, causal, over that layer's cache).
 * Positions are measured in interleaved rounds and the minimum over rounds
 * is kept: on a shared machine the minimum is the figure least disturbed by
 * other processes. The attention's process CPU time is printed too: with
 * --threads 1 it is the kernel's own cost whatever else runs (with more
 * threads Linux counts the other threads' time only as of their last tick,
 * so it is not a sum). The default positions are early, middle and late in
 * a 30 s window (1500 frames + the delay pattern). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../tools/backend_env.h"
#include "cpu/cpu_backend.h"
#include "io/safetensors.h"
#include "runtime/model_parts.h"

enum { MAX_POS = 8, ENC_LEN = 20 };

#define DIE(...) do { fprintf(stderr, "bench_late_steps: " __VA_ARGS__); fprintf(stderr, "\n"); exit(1); } while (0)

static double clock_ms(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static double now_ms(void)
{
    return clock_ms(CLOCK_MONOTONIC);
}

/* uniform in [-1, 1) from a 64-bit LCG state */
static float next_uniform(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((*s >> 40) & 0xffffff) / (float)(1 << 23) - 1.0f;
}

static mg_tensor *random_rows(mg_backend *be, int64_t rows, int64_t cols, uint64_t *seed)
{
    mg_error err = {0};
    mg_tensor *t = NULL;
    float *host = malloc((size_t)(rows * cols) * sizeof *host);
    if (!host)
        DIE("out of memory");
    for (int64_t i = 0; i < rows * cols; i++)
        host[i] = next_uniform(seed);
    if (mg_tensor_new2(&t, be, rows, cols, &err) || mg_tensor_upload_f32(t, host, &err))
        DIE("%s", err.msg);
    free(host);
    return t;
}

/* One decode step of st at position pos (its caches already hold rows
 * 0..pos-1 of every sequence); the step writes row pos, which the next
 * measurement at that position overwrites. */
static double time_step(mg_decoder *dec, mg_dec_batch *wb, mg_dec_state *st, int pos,
                        const int32_t *ids, mg_tensor *logits)
{
    mg_error err = {0};
    mg_dec_state *sts[1] = {st};
    const int32_t *ids1[1] = {ids};
    mg_tensor *lg[1] = {logits};
    st->past = pos;
    double t0 = now_ms();
    if (mg_decoder_step(dec, wb, sts, 1, ids1, lg, &err))
        DIE("%s", err.msg);
    return now_ms() - t0;
}

/* The self-attention of every layer at position pos, as the step calls it;
 * *cpu gets the process's CPU time for it. */
static double time_attention(mg_decoder *dec, mg_dec_state *st, int pos, mg_tensor *out,
                             const mg_tensor *q, double *cpu)
{
    const mg_config *c = dec->cfg;
    mg_backend *be = dec->be;
    mg_error err = {0};
    int dh = c->dec_hidden / c->dec_heads;
    mg_attn_params p = {.heads = c->dec_heads, .head_dim = dh, .scale = 1.0f / sqrtf((float)dh),
                        .causal = 1};
    mg_attn_seq seqs[2];
    double t0 = now_ms(), c0 = clock_ms(CLOCK_PROCESS_CPUTIME_ID);
    for (int l = 0; l < c->dec_layers; l++) {
        for (int s = 0; s < 2; s++)
            seqs[s] = (mg_attn_seq){.k = st->k_cache[l], .v = st->v_cache[l],
                                    .k_row0 = (int64_t)s * st->cap, .n_keys = pos + 1, .q_pos = pos};
        be->ops->attention(be, out, q, 2, 1, seqs, &p);
    }
    if (be->ops->sync(be, &err))
        DIE("%s", err.msg);
    *cpu = clock_ms(CLOCK_PROCESS_CPUTIME_ID) - c0;
    return now_ms() - t0;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        DIE("usage: bench_late_steps MODEL_DIR [--dtype D] [--threads N] [--rounds R] "
            "[--positions P1,P2,...]");
    const char *dtype = "q8";
    int threads = 0, rounds = 30, pos[MAX_POS] = {50, 750, 1490}, n_pos = 3;
    for (int i = 2; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--dtype"))
            dtype = argv[i + 1];
        else if (!strcmp(argv[i], "--threads"))
            threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--rounds"))
            rounds = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--positions")) {
            n_pos = 0;
            for (char *s = argv[i + 1], *e; *s && n_pos < MAX_POS; s = *e ? e + 1 : e) {
                pos[n_pos++] = (int)strtol(s, &e, 10);
                if (e == s || pos[n_pos - 1] < 0)
                    DIE("--positions: not a list of positions: %s", argv[i + 1]);
            }
        } else
            DIE("unknown option %s", argv[i]);
    }
    if (rounds < 1 || n_pos < 1)
        DIE("--rounds and --positions need at least one");

    mg_error err = {0};
    mg_model *m = NULL;
    mg_backend_options backend;
    mg_backend_options_from_env(&backend);
    mg_model_options opt = {.n_threads = threads, .dtype = dtype, .backend = &backend};
    if (mg_model_load(&m, argv[1], &opt, &err) != MG_OK)
        DIE("%s", err.msg);
    const mg_config *c = mg_model_config(m);
    mg_backend *be = mg_model_backend(m);
    mg_decoder *dec = mg_model_decoder(m);
    int K = c->num_codebooks, cap = 1;
    for (int i = 0; i < n_pos; i++)
        cap = pos[i] + 1 > cap ? pos[i] + 1 : cap;

    /* text conditioning: random projected rows for the first sequence, the
     * second fully masked (the unconditional half of guidance) */
    uint64_t seed = 1;
    uint8_t mask2[2 * ENC_LEN] = {0};
    memset(mask2, 1, ENC_LEN);
    mg_tensor *enc2 = random_rows(be, 2 * ENC_LEN, c->dec_hidden, &seed);
    mg_dec_state st;
    if (mg_dec_state_init(dec, &st, 2, cap, enc2, mask2, ENC_LEN, &err))
        DIE("%s", err.msg);
    mg_tensor *rows = random_rows(be, (int64_t)2 * cap, c->dec_hidden, &seed);
    for (int l = 0; l < c->dec_layers; l++) {
        be->ops->copy_rows(be, st.k_cache[l], 0, rows, 0, (int64_t)2 * cap);
        be->ops->copy_rows(be, st.v_cache[l], 0, rows, 0, (int64_t)2 * cap);
    }
    mg_tensor *q = random_rows(be, 2, c->dec_hidden, &seed), *out = NULL, *logits = NULL;
    if (mg_tensor_new2(&out, be, 2, c->dec_hidden, &err) ||
        mg_tensor_new2(&logits, be, 2 * K, c->dec_vocab, &err) || be->ops->sync(be, &err))
        DIE("%s", err.msg);
    printf("model            %s (decoder %d layers x %d, %d heads), %d threads, %s weights, "
           "%s caches, %s kernels\n",
           argv[1], c->dec_layers, c->dec_hidden, c->dec_heads, be->n_threads, dtype,
           mg_dtype_name(st.k_cache[0]->dtype), mg_cpu_isa_name(mg_cpu_backend_isa(be)));

    int32_t *ids = malloc((size_t)(2 * K) * sizeof *ids);
    if (!ids)
        DIE("out of memory");
    for (int k = 0; k < 2 * K; k++)
        ids[k] = (7 * k) % c->dec_vocab;
    mg_dec_batch wb = {0};
    double step_best[MAX_POS], attn_best[MAX_POS], cpu_best[MAX_POS];
    for (int i = 0; i < n_pos; i++)
        step_best[i] = attn_best[i] = cpu_best[i] = 1e30;
    /* a warm-up round, then rounds over all positions in turn */
    for (int r = 0; r <= rounds; r++)
        for (int i = 0; i < n_pos; i++) {
            double s = time_step(dec, &wb, &st, pos[i], ids, logits);
            double cpu, a = time_attention(dec, &st, pos[i], out, q, &cpu);
            if (r > 0) {
                cpu_best[i] = cpu < cpu_best[i] ? cpu : cpu_best[i];
                step_best[i] = s < step_best[i] ? s : step_best[i];
                attn_best[i] = a < attn_best[i] ? a : attn_best[i];
            }
        }
    for (int i = 0; i < n_pos; i++)
        printf("late_step pos %4d  step %6.2f ms  self-attention %6.2f ms, %6.2f ms CPU (%d layers, "
               "%2.0f %% of the step)  step / step at %d: %.2fx  (min of %d rounds)\n",
               pos[i], step_best[i], attn_best[i], cpu_best[i], c->dec_layers,
               100 * attn_best[i] / step_best[i], pos[0], step_best[i] / step_best[0], rounds);
    free(ids);
    mg_dec_batch_free(&wb);
    mg_dec_state_free(dec, &st);
    mg_tensor_free(enc2);
    mg_tensor_free(rows);
    mg_tensor_free(q);
    mg_tensor_free(out);
    mg_tensor_free(logits);
    mg_model_free(m);
    return 0;
}
