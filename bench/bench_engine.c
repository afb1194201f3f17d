/* bench_engine MODEL_DIR [SECONDS]: speed and memory figures of the engine on
 * one model: T5 for a 20-token prompt, one decoder step (batch 1 with
 * guidance), EnCodec per second of audio, a whole generation, peak RSS. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "model.h"

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

#define DIE(...) do { fprintf(stderr, "bench: " __VA_ARGS__); fprintf(stderr, "\n"); exit(1); } while (0)

int main(int argc, char **argv)
{
    if (argc < 2)
        DIE("usage: bench_engine MODEL_DIR [SECONDS] [THREADS]");
    double seconds = argc > 2 ? atof(argv[2]) : 10.0;
    int threads = argc > 3 ? atoi(argv[3]) : 0;
    mg_error err = {0};
    mg_model *m = NULL;
    mg_model_options opt = {.n_threads = threads, .dtype = getenv("MG_BENCH_DTYPE")};
    double t0 = now_ms();
    if (mg_model_load(&m, argv[1], &opt, &err) != MG_OK)
        DIE("%s", err.msg);
    const mg_config *c = &m->cfg;
    printf("model            %s (decoder %d layers x %d, T5 %d layers x %d), %d threads\n", argv[1],
           c->dec_layers, c->dec_hidden, c->t5_layers, c->t5_d_model, m->be->n_threads);
    printf("load             %.0f ms\n", now_ms() - t0);

    /* T5 on a 20-token prompt */
    enum { S = 20, REPS = 5 };
    int32_t ids[S];
    uint8_t mask[S];
    for (int i = 0; i < S; i++) {
        ids[i] = i == S - 1 ? 1 : 100 + 37 * i;
        mask[i] = 1;
    }
    mg_tensor *last = NULL, *enc = NULL, *enc2 = NULL, *logits = NULL;
    if (mg_tensor_new2(&last, m->be, S, c->t5_d_model, &err) ||
        mg_tensor_new2(&enc, m->be, S, c->dec_hidden, &err) ||
        mg_tensor_new2(&enc2, m->be, 2 * S, c->dec_hidden, &err))
        DIE("%s", err.msg);
    double times[REPS];
    for (int r = 0; r < REPS; r++) {
        t0 = now_ms();
        if (mg_t5_encode(&m->t5, ids, mask, 1, S, last, NULL, NULL, &err))
            DIE("%s", err.msg);
        times[r] = now_ms() - t0;
    }
    printf("t5_encode        %.1f ms (20 tokens, median of %d)\n", median(times, REPS), REPS);

    /* decoder steps, batch 1 with guidance = 2 sequences */
    uint8_t mask2[2 * S] = {0};
    memcpy(mask2, mask, S);
    if (mg_decoder_project(&m->dec, last, mask, enc, &err))
        DIE("%s", err.msg);
    m->be->ops->copy_rows(m->be, enc2, 0, enc, 0, S); /* second half stays zero */
    enum { STEPS = 400 };
    mg_dec_state st;
    int K = c->num_codebooks;
    if (mg_dec_state_init(&m->dec, &st, 2, STEPS, enc2, mask2, S, &err) ||
        mg_tensor_new2(&logits, m->be, 2 * K, c->dec_vocab, &err))
        DIE("%s", err.msg);
    double steps[STEPS];
    int32_t step_ids[8] = {0};
    for (int s = 0; s < STEPS; s++) {
        for (int k = 0; k < 2 * K; k++)
            step_ids[k] = (s * 7 + k) % c->dec_vocab;
        t0 = now_ms();
        if (mg_decoder_forward(&m->dec, &st, step_ids, 1, 1, logits, NULL, NULL, &err))
            DIE("%s", err.msg);
        steps[s] = now_ms() - t0;
    }
    double first = steps[0];
    printf("decoder_step     %.1f ms (batch 1 with guidance, median of %d; first %.1f ms)\n",
           median(steps + 1, STEPS - 1), STEPS - 1, first);
    mg_dec_state_free(&m->dec, &st);

    /* EnCodec on 5 s of codes */
    int frames = (int)(5.0 * c->sample_rate / c->hop);
    int32_t *codes = malloc((size_t)K * frames * sizeof *codes);
    float *audio = malloc((size_t)frames * c->hop * sizeof *audio);
    if (!codes || !audio)
        DIE("out of memory");
    for (int i = 0; i < K * frames; i++)
        codes[i] = (i * 131) % c->ec_codebook_size;
    t0 = now_ms();
    if (mg_encodec_decode(m->ec, codes, 1, frames, audio, NULL, NULL, &err))
        DIE("%s", err.msg);
    double ec_ms = now_ms() - t0;
    printf("encodec          %.1f ms per second of audio (%d frames)\n", ec_ms / 5.0, frames);
    free(codes);
    free(audio);
    mg_tensor_free(last);
    mg_tensor_free(enc);
    mg_tensor_free(enc2);
    mg_tensor_free(logits);

    /* a whole generation from token ids */
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
           wall, audio_s, res.t5_ms, res.decode_ms / 1e3, res.decode_ms / res.steps, res.encodec_ms / 1e3);
    printf("real_time_factor %.2f (wall / audio seconds; < 1 is faster than real time)\n", wall / audio_s);
    mg_gen_result_free(&res);
    printf("peak_rss         %.0f MB\n", peak_rss_mb());
    mg_model_free(m);
    return 0;
}
