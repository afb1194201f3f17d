/* bench_gpu MODEL_DIR: the CUDA backend's figures on one model (make
 * bench-gpu): ms per decode step (decoder forward + token selection) for 1,
 * 8, 32 and 64 requests with guidance, the bytes of weights one step reads
 * and the fraction of the GPU's memory bandwidth that makes, and whole 30 s
 * generations (T5 + decode + EnCodec). MG_DTYPE=f32 measures exact mode;
 * MG_BENCH_SECONDS changes the clip length, MG_BENCH_BIG_BATCH the request
 * count of the batched generation (0 skips it). MG_CUDA_PROFILE=1 prints the
 * GPU time per kernel of the decode steps (graphs off, one event per launch;
 * the step times then include that overhead). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../tools/backend_env.h"
#include "runtime/model_parts.h"

#define DIE(...) do { fprintf(stderr, "bench-gpu: " __VA_ARGS__); fprintf(stderr, "\n"); exit(1); } while (0)

#ifndef MG_HAVE_CUDA
int main(void)
{
    fprintf(stderr, "bench-gpu: this build has no CUDA backend (built without nvcc or with CUDA=0)\n");
    return 1;
}
#else
/* kernels/cuda_backend.cu */
void mg_cuda_stats(mg_backend *be, uint64_t *launches, uint64_t *replays, uint64_t *direct);
void mg_cuda_profile_dump(mg_backend *be, const char *title);

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

/* Bytes of matrix weights a decode step streams: every layer's self
 * attention, cross q/out, the MLP, and the K heads (embedding rows and the
 * cached cross K/V are not re-read). */
static double step_weight_bytes(const mg_decoder *d)
{
    const mg_config *c = d->cfg;
    double b = 0;
    for (int l = 0; l < c->dec_layers; l++) {
        const mg_dec_layer *L = &d->layers[l];
        const mg_tensor *ts[] = {L->q, L->k, L->v, L->o, L->cq, L->co, L->fc1, L->fc2};
        for (int i = 0; i < 8; i++)
            b += (double)ts[i]->nbytes;
    }
    for (int k = 0; k < c->num_codebooks; k++)
        b += (double)d->heads[k]->nbytes;
    return b;
}

/* Median ms of `steps` decode steps (after 3 warm-up steps) for `requests`
 * requests with guidance (2 sequences each), from position 0. */
static double step_ms(mg_model *m, int requests, int steps, const mg_gen_params *p)
{
    mg_backend *be = mg_model_backend(m);
    mg_decoder *dec = mg_model_decoder(m);
    const mg_config *c = mg_model_config(m);
    enum { S = 20 };
    int n_seq = 2 * requests, K = c->num_codebooks, V = c->dec_vocab, warm = 3;
    mg_error err = {0};
    mg_tensor *enc = NULL, *logits = NULL;
    float *host = malloc((size_t)n_seq * S * c->dec_hidden * sizeof *host);
    uint8_t *mask = malloc((size_t)n_seq * S);
    int32_t *ids = malloc((size_t)n_seq * K * sizeof *ids), *tok = malloc((size_t)n_seq * K * sizeof *tok);
    double *t = malloc((size_t)steps * sizeof *t);
    if (!host || !mask || !ids || !tok || !t)
        DIE("out of memory");
    for (int64_t i = 0; i < (int64_t)n_seq * S * c->dec_hidden; i++)
        host[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
    for (int i = 0; i < n_seq * S; i++)
        mask[i] = i / S < requests && i % S < 15;
    /* the production path: the scheduler's batched step, one state here */
    mg_dec_state st;
    mg_dec_state *sts[1] = {&st};
    mg_dec_batch wb = {0};
    const int32_t *ids1[1] = {ids};
    if (mg_tensor_new2(&enc, be, (int64_t)n_seq * S, c->dec_hidden, &err) ||
        mg_tensor_upload_f32(enc, host, &err) ||
        mg_dec_state_init(dec, &st, n_seq, steps + warm, enc, mask, S, &err) ||
        mg_tensor_new2(&logits, be, (int64_t)n_seq * K, V, &err))
        DIE("%s", err.msg);
    uint64_t l0 = 0, r0 = 0, d0 = 0, l1, r1, d1;
    for (int s = 0; s < steps + warm; s++) {
        if (s == warm) {
            mg_cuda_stats(be, &l0, &r0, &d0);
            mg_cuda_profile_dump(be, "(warm-up, discarded)");
        }
        for (int i = 0; i < n_seq * K; i++)
            ids[i] = (s * 31 + i * 7) % V;
        double t0 = now_ms();
        if (mg_decoder_step(dec, &wb, sts, 1, ids1, &logits, &err) ||
            be->ops->select_tokens(be, logits, requests * K, V, &p->sampling, 1, (uint64_t)s,
                                   NULL, tok, &err))
            DIE("%s", err.msg);
        if (s >= warm)
            t[s - warm] = now_ms() - t0;
    }
    mg_cuda_stats(be, &l1, &r1, &d1);
    printf("    x%-3d per step: %.1f kernels launched one by one, %.2f graph replays, %.2f direct "
           "segments\n", requests, (double)(l1 - l0) / steps, (double)(r1 - r0) / steps,
           (double)(d1 - d0) / steps);
    char title[64];
    snprintf(title, sizeof title, "decode steps x%d (%d steps)", requests, steps);
    mg_cuda_profile_dump(be, title);
    qsort(t, (size_t)steps, sizeof *t, cmp_double);
    double med = t[steps / 2];
    mg_dec_batch_free(&wb);
    mg_dec_state_free(dec, &st);
    mg_tensor_free(enc);
    mg_tensor_free(logits);
    free(host); free(mask); free(ids); free(tok); free(t);
    return med;
}

static void generation(mg_model *m, int requests, float seconds, const mg_gen_params *base)
{
    enum { S = 20 };
    int32_t *ids = malloc((size_t)requests * S * sizeof *ids);
    uint8_t *mask = malloc((size_t)requests * S);
    if (!ids || !mask)
        DIE("out of memory");
    for (int i = 0; i < requests * S; i++) {
        ids[i] = i % S == S - 1 ? 1 : 100 + 37 * (i % S) + i / S;
        mask[i] = 1;
    }
    mg_gen_params p = *base;
    p.duration = seconds;
    mg_gen_result res;
    mg_error err = {0};
    double t0 = now_ms();
    if (mg_generate_ids(m, ids, mask, requests, S, &p, NULL, &res, &err))
        DIE("%s", err.msg);
    double wall = (now_ms() - t0) / 1e3;
    printf("generate x%-3d    %.3f s wall for %d x %.1f s of audio (T5 %.1f ms, decode %.3f s = "
           "%.3f ms/step over %d steps, EnCodec %.3f s)\n", requests, wall, requests,
           (double)res.n_samples / res.sample_rate, res.t5_ms, res.decode_ms / 1e3,
           res.decode_ms / res.steps, res.steps, res.encodec_ms / 1e3);
    char title[64];
    snprintf(title, sizeof title, "generate x%d", requests);
    mg_cuda_profile_dump(mg_model_backend(m), title);
    mg_gen_result_free(&res);
    free(ids);
    free(mask);
}

int main(int argc, char **argv)
{
    if (argc < 2)
        DIE("usage: bench_gpu MODEL_DIR");
    const char *dtype = getenv("MG_DTYPE");
    float seconds = getenv("MG_BENCH_SECONDS") ? (float)atof(getenv("MG_BENCH_SECONDS")) : 30.0f;
    int big = getenv("MG_BENCH_BIG_BATCH") ? atoi(getenv("MG_BENCH_BIG_BATCH")) : 64;
    mg_error err = {0};
    char name[256];
    double peak = 0;
    if (mg_cuda_probe(0, name, sizeof name, &peak, &err))
        DIE("%s", err.msg);
    mg_model *m = NULL;
    mg_backend_options backend;
    mg_backend_options_from_env(&backend);
    mg_model_options opt = {.device = "cuda", .dtype = dtype, .backend = &backend};
    double t0 = now_ms();
    if (mg_model_load(&m, argv[1], &opt, &err) != MG_OK)
        DIE("%s", err.msg);
    const mg_config *c = mg_model_config(m);
    printf("device           %s, peak memory bandwidth %.0f GB/s\n", name, peak / 1e9);
    printf("model            %s (decoder %d layers x %d, T5 %d layers x %d), weights %s\n", argv[1],
           c->dec_layers, c->dec_hidden, c->t5_layers, c->t5_d_model, mg_model_dtype(m));
    printf("load             %.0f ms\n", now_ms() - t0);
    double bytes = step_weight_bytes(mg_model_decoder(m));
    printf("weights/step     %.1f MB of decoder matrices read per decode step\n", bytes / 1e6);
    mg_gen_params p;
    mg_gen_params_default(m, &p);
    p.sampling.do_sample = 1;
    p.sampling.guidance_scale = 3;
    p.sampling.top_k = 250;
    p.seed = 1;
    int reqs[] = {1, 8, 32, 64};
    for (int i = 0; i < 4; i++) {
        double ms = step_ms(m, reqs[i], 20, &p);
        printf("decode_step x%-3d %.3f ms (guidance: %d sequences; median of 20 early steps incl. "
               "sampling) -> %.0f GB/s of weights = %.0f%% of peak\n", reqs[i], ms, 2 * reqs[i],
               bytes / (ms * 1e-3) / 1e9, 100.0 * bytes / (ms * 1e-3) / peak);
    }
    mg_cuda_profile_dump(mg_model_backend(m), "(before generation, discarded)");
    generation(m, 1, seconds, &p);
    if (big > 1)
        generation(m, big, seconds, &p);
    mg_model_free(m);
    return 0;
}
#endif
