/* bench_resample: the resampler the output path and the audio prompts use
 * (libsoxr, src/io/resample.c) against the hand-written polyphase one it
 * replaced (bench/resample_polyphase.h): speed on 30 s of 32 kHz audio to
 * 48 kHz (median of 5, one shot and streamed in 2048-frame blocks), and
 * quality: the worst error on passband sines and the level of images and
 * aliases that a perfect resampler removes. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "io/resample.h"
#include "../tests/tone.h"
#include "resample_polyphase.h"

#define DIE(...) do { fprintf(stderr, "bench_resample: " __VA_ARGS__); fprintf(stderr, "\n"); exit(1); } while (0)

enum { REPS = 5, BLOCK = 2048 };

typedef mg_code (*resample_fn)(const float *, size_t, int, int, float **, size_t *, mg_error *);

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* The streaming path as the encoder uses it: fixed blocks, then the flush. */
static mg_code soxr_streamed(const float *in, size_t n, int in_rate, int out_rate, float **out,
                             size_t *out_n, mg_error *err)
{
    mg_resampler *r = NULL;
    mg_code rc = mg_resampler_open(&r, in_rate, out_rate, 1, err);
    size_t cap = n * (size_t)out_rate / (size_t)in_rate + 4096, got = 0;
    float *y = malloc(cap * sizeof *y);
    if (!y)
        DIE("out of memory");
    for (size_t i = 0; rc == MG_OK; i += BLOCK) {
        const float *part = NULL;
        size_t m = 0;
        rc = i < n ? mg_resampler_process(r, in + i, n - i < BLOCK ? n - i : BLOCK, &part, &m, err)
                   : mg_resampler_flush(r, &part, &m, err);
        if (rc != MG_OK || (i >= n && m == 0))
            break;
        if (got + m > cap)
            DIE("more output than expected");
        memcpy(y + got, part, m * sizeof *y);
        got += m;
    }
    mg_resampler_free(r);
    *out = y;
    *out_n = got;
    return rc;
}

/* Worst error against the exact sine, away from the edges, in dB re the
 * amplitude. */
static double passband_error_db(resample_fn f, int in_rate, int out_rate, double freq)
{
    size_t n = (size_t)in_rate, m = 0;
    float *x = malloc(n * sizeof *x), *y = NULL;
    mg_error err = { 0 };
    if (!x)
        DIE("out of memory");
    sine(x, n, in_rate, freq, 0.9);
    if (f(x, n, in_rate, out_rate, &y, &m, &err) != MG_OK)
        DIE("%s", err.msg);
    double worst = 0;
    for (size_t i = m / 10; i < m * 9 / 10; i++)
        worst = fmax(worst, fabs(y[i] - 0.9 * sin(2 * M_PI * freq * (double)i / out_rate)));
    free(x);
    free(y);
    return 20 * log10(worst / 0.9 + 1e-30);
}

/* Level at probe (dB re a full-scale tone at freq): an image or an alias. */
static double leak_db(resample_fn f, int in_rate, int out_rate, double freq, double probe)
{
    size_t n = (size_t)in_rate, m = 0;
    float *x = malloc(n * sizeof *x), *y = NULL;
    mg_error err = { 0 };
    if (!x)
        DIE("out of memory");
    sine(x, n, in_rate, freq, 1.0);
    if (f(x, n, in_rate, out_rate, &y, &m, &err) != MG_OK)
        DIE("%s", err.msg);
    double a = tone_amp(y, m / 10, m * 9 / 10, out_rate, probe);
    free(x);
    free(y);
    return 20 * log10(a + 1e-30);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median ms to resample 30 s of music-like audio 32 -> 48 kHz. */
static double speed_ms(resample_fn f, const float *x, size_t n)
{
    double t[REPS];
    for (int r = 0; r < REPS; r++) {
        float *y = NULL;
        size_t m = 0;
        mg_error err = { 0 };
        double t0 = now_ms();
        if (f(x, n, 32000, 48000, &y, &m, &err) != MG_OK)
            DIE("%s", err.msg);
        t[r] = now_ms() - t0;
        free(y);
    }
    qsort(t, REPS, sizeof t[0], cmp_double);
    return t[REPS / 2];
}

int main(void)
{
    static const struct {
        const char *name;
        resample_fn f;
    } impl[] = {
        { "polyphase (before)", polyphase_resample },
        { "libsoxr one-shot", mg_resample },
        { "libsoxr streamed", soxr_streamed },
    };
    const size_t n = 30 * 32000;
    float *x = malloc(n * sizeof *x);
    if (!x)
        DIE("out of memory");
    uint32_t seed = 1;
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        double t = (double)i / 32000;
        x[i] = (float)(0.3 * sin(2 * M_PI * 110 * t) + 0.2 * sin(2 * M_PI * 440 * t) +
                       0.1 * sin(2 * M_PI * 3520 * t) +
                       0.05 * ((double)(seed >> 8) / (1 << 24) - 0.5));
    }
    printf("%-20s %10s %9s %9s %9s %9s %9s %9s\n", "resampler", "30s 32->48", "x real",
           "1k err", "12k err", "14k err", "img 22k", "alias 12k");
    printf("%-20s %10s %9s %9s %9s %9s %9s %9s\n", "", "ms", "time", "dB", "dB", "dB", "dB",
           "dB");
    for (size_t k = 0; k < sizeof impl / sizeof impl[0]; k++) {
        double ms = speed_ms(impl[k].f, x, n);
        printf("%-20s %10.1f %9.0f %9.1f %9.1f %9.1f %9.1f %9.1f\n", impl[k].name, ms,
               30000.0 / ms, passband_error_db(impl[k].f, 32000, 48000, 1000),
               passband_error_db(impl[k].f, 32000, 48000, 12000),
               passband_error_db(impl[k].f, 32000, 48000, 14000),
               leak_db(impl[k].f, 32000, 48000, 10000, 22000),
               leak_db(impl[k].f, 48000, 32000, 20000, 12000));
    }
    free(x);
    return 0;
}
