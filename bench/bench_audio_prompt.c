/* bench_audio_prompt: what a request's audio_prompt costs the nginx worker
 * that parses it. The module parses a POST body with mg_request_parse_json on
 * its event loop, so while the audio_prompt field is base64-decoded, decoded
 * by libsndfile and resampled to 32 kHz, every other connection of that
 * worker waits.
 *
 * Inputs are made here with libsndfile (what it cannot write is said and
 * skipped) at the worst case the limits allow: 60 s (MG_AUDIO_DECODE_MAX_
 * SECONDS) of stereo at 48 and 44.1 kHz, and of mono at 32 kHz (no
 * resampling), as WAV 16-bit, FLAC 16-bit, Ogg/Opus and MP3 (libsndfile's
 * encoders at their default settings), each sent as a data URL in a JSON
 * body. Per input, REPS times (wall and this thread's CPU time):
 *   total     mg_request_parse_json on the whole body (what the module runs);
 *   json      jansson's parse of the body, as mg_request_parse_json runs it;
 *   base64    mg_base64_decode of the field's payload;
 *   decode    mg_audio_decode at the file's own rate (sniffing, libsndfile,
 *             the level checks; no resampling);
 *   resample  mg_resample of each channel of that decode to 32 kHz (what
 *             mg_audio_decode does past the decode);
 *   rest      total minus those four (the payload's whitespace count and
 *             hash, the copies between the stages; near 0, so noisy).
 * The total is printed as the median and the min of the runs, wall and CPU;
 * the stages as the median of their CPU time, in ms. Then files past the
 * 60 s limit: mg_audio_prompt_parse until it refuses them, and the share of
 * mg_audio_decode in that (the rest is the base64): a WAV of 10 minutes and
 * an Ogg/Opus of 90 s (refused from their headers), an MP3 of 90 s (refused
 * when its decoding reaches the limit). The load average is printed before
 * and after: on a shared host the wall time is inflated by other jobs.
 * Figures only: nothing here passes or fails on time.
 *   bench_audio_prompt [--reps N] */
#include <jansson.h>
#include <math.h>
#include <sndfile.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "io/audio_decode.h"
#include "io/resample.h"
#include "runtime/duration.h"
#include "service/audio_prompt.h"
#include "service/base64.h"
#include "service/request.h"
#include "../tests/sndfile_encode.h"

#define DIE(...) do { fprintf(stderr, "bench_audio_prompt: " __VA_ARGS__); \
                      fprintf(stderr, "\n"); exit(1); } while (0)

enum { MAX_REPS = 101, MODEL_RATE = 32000 };
/* timed stages of the parse: JSON, base64, decode, resample */
enum { STAGES = 4 };
/* as mg_request_parse_json reads a body */
#define JSON_FLAGS (JSON_REJECT_DUPLICATES | JSON_DECODE_ANY | JSON_ALLOW_NUL)

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* A point in time on the wall clock and in this thread's CPU time: on a
 * shared host the wall time is what the event loop waits, the CPU time the
 * work itself (the two agree on a quiet host). */
typedef struct {
    double wall, cpu;
} clock_mark;

static clock_mark mark(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (clock_mark){ now_ms(), ts.tv_sec * 1e3 + ts.tv_nsec / 1e6 };
}

/* ms of wall and of CPU since m (wall may be NULL) */
static void since(clock_mark m, double *wall, double *cpu)
{
    clock_mark n = mark();
    if (wall)
        *wall = n.wall - m.wall;
    *cpu = n.cpu - m.cpu;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median and min of t[0..n), sorting t. */
static void summarize(double *t, int n, double *median, double *min)
{
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    *median = n % 2 ? t[n / 2] : (t[n / 2 - 1] + t[n / 2]) / 2;
    *min = t[0];
}

static void print_load(const char *when)
{
    double l1 = 0, l5 = 0, l15 = 0;
    FILE  *f = fopen("/proc/loadavg", "r");
    if (f && fscanf(f, "%lf %lf %lf", &l1, &l5, &l15) == 3)
        printf("load average %s: %.2f %.2f %.2f\n", when, l1, l5, l15);
    if (f)
        fclose(f);
}

/* Music-like audio: a few partials per channel and a little noise. */
static float *make_audio(size_t frames, int channels, int rate)
{
    float *x = malloc(frames * (size_t)channels * sizeof *x);
    if (!x)
        DIE("out of memory");
    uint32_t seed = 1;
    for (size_t i = 0; i < frames; i++) {
        double t = (double)i / rate;
        for (int c = 0; c < channels; c++) {
            seed = seed * 1664525u + 1013904223u;
            double f0 = c ? 165.0 : 110.0;
            x[i * (size_t)channels + (size_t)c] =
                (float)(0.3 * sin(2 * M_PI * f0 * t) + 0.2 * sin(2 * M_PI * 4 * f0 * t) +
                        0.1 * sin(2 * M_PI * 32 * f0 * t) +
                        0.05 * ((double)(seed >> 8) / (1 << 24) - 0.5));
        }
    }
    return x;
}

/* An input file as libsndfile wrote it. */
typedef struct {
    uint8_t *data;
    size_t   len;
} audio_file;

/* x written by libsndfile as format into *file; 0 with why[] when libsndfile
 * cannot write it. */
static int encode(const float *x, size_t frames, int channels, int rate, int format,
                  audio_file *file, char *why, size_t why_len)
{
    file->data = sf_encode(x, frames, channels, rate, format, &file->len);
    if (!file->data)
        snprintf(why, why_len, "%s", sf_strerror(NULL));
    return file->data != NULL;
}

/* {"prompt":...,"duration":...,"audio_prompt":"data:audio/...;base64,..."};
 * *payload points at the base64 part inside it. */
static char *json_body(const audio_file *file, const char *mime, size_t *len, const char **payload,
                       size_t *payload_len)
{
    static const char head[] = "{\"prompt\": \"lo-fi piano\", \"duration\": 90, "
                               "\"audio_prompt\": \"data:";
    size_t b64 = mg_base64_len(file->len);
    size_t cap = sizeof head + strlen(mime) + 16 + b64 + 4;
    char  *body = malloc(cap);
    if (!body)
        DIE("out of memory");
    int n = snprintf(body, cap, "%s%s;base64,", head, mime);
    *payload = body + n;
    *payload_len = b64;
    mg_base64_encode(file->data, file->len, body + n);
    memcpy(body + n + b64, "\"}", 3);
    *len = (size_t)n + b64 + 2;
    return body;
}

static mg_request_limits limits(void)
{
    mg_request_limits lim = { .default_format = MG_AUDIO_WAV };
    mg_error          err = { 0 };
    if (mg_duration_limits(NULL, 120, 0, &lim.duration, &err) != MG_OK)
        DIE("%s", err.msg);
    return lim;
}

/* Resamples each channel of a to rate, as mg_audio_decode does. */
static void resample_channels(const mg_decoded_audio *a, int rate)
{
    float *one = malloc(a->frames * sizeof *one);
    if (!one)
        DIE("out of memory");
    for (int c = 0; c < a->channels; c++) {
        for (size_t i = 0; i < a->frames; i++)
            one[i] = a->samples[i * (size_t)a->channels + (size_t)c];
        float   *y = NULL;
        size_t   n = 0;
        mg_error err = { 0 };
        if (mg_resample(one, a->frames, a->rate, rate, &y, &n, &err) != MG_OK)
            DIE("%s", err.msg);
        free(y);
    }
    free(one);
}

typedef struct {
    const char *name, *mime;
    int         format;
} codec;

static const codec CODECS[] = {
    { "WAV 16-bit", "audio/wav", SF_FORMAT_WAV | SF_FORMAT_PCM_16 },
    { "FLAC 16-bit", "audio/flac", SF_FORMAT_FLAC | SF_FORMAT_PCM_16 },
    { "Ogg/Opus", "audio/ogg", SF_FORMAT_OGG | SF_FORMAT_OPUS },
    { "MP3", "audio/mpeg", SF_FORMAT_MPEG | SF_FORMAT_MPEG_LAYER_III },
};

static const struct { int rate, channels; } SOURCES[] = {
    { 48000, 2 }, { 44100, 2 }, { MODEL_RATE, 1 },
};

/* One input: every stage REPS times; prints a row. */
static void bench_input(const codec *k, int rate, int channels, const float *x, size_t frames,
                        int reps)
{
    char       why[256] = "";
    audio_file file;
    char       label[64];
    snprintf(label, sizeof label, "%s %g kHz %s", k->name, rate / 1000.0,
             channels == 2 ? "stereo" : "mono");
    if (!encode(x, frames, channels, rate, k->format, &file, why, sizeof why)) {
        printf("%-28s libsndfile cannot write it: %s\n", label, why);
        return;
    }
    if (file.len > MG_AUDIO_DECODE_MAX_BYTES) {
        printf("%-28s %.1f MB: over the %u-byte limit, skipped\n", label, file.len / 1e6,
               MG_AUDIO_DECODE_MAX_BYTES);
        free(file.data);
        return;
    }
    size_t            body_len = 0, payload_len = 0;
    const char       *payload = NULL;
    char             *body = json_body(&file, k->mime, &body_len, &payload, &payload_len);
    uint8_t          *bytes = malloc(mg_base64_decoded_max(payload_len));
    mg_request_limits lim = limits();
    /* wall and CPU of the total; CPU of each stage and of the rest */
    double wall[MAX_REPS], cpu[STAGES + 2][MAX_REPS];
    size_t got_frames = 0;
    if (!bytes)
        DIE("out of memory");
    for (int r = 0; r < reps; r++) {
        mg_request req;
        mg_error   err = { 0 };
        clock_mark m = mark();
        if (mg_request_parse_json(body, body_len, &lim, &req, &err) != MG_OK)
            DIE("%s: %s", label, err.msg);
        since(m, &wall[r], &cpu[0][r]);
        got_frames = req.audio_prompt.frames;
        mg_request_free(&req);

        json_error_t je;
        m = mark();
        json_t *root = json_loadb(body, body_len, JSON_FLAGS, &je);
        if (!root)
            DIE("%s: %s", label, je.text);
        json_decref(root);
        since(m, NULL, &cpu[1][r]);

        size_t n = 0, bad = 0;
        m = mark();
        if (mg_base64_decode(payload, payload_len, bytes, &n, &bad) != 0)
            DIE("%s: base64 at %zu", label, bad);
        since(m, NULL, &cpu[2][r]);

        mg_decoded_audio a;
        m = mark();
        if (mg_audio_decode(bytes, n, rate, MG_AUDIO_PROMPT_FIELD, &a, &err) != MG_OK)
            DIE("%s: %s", label, err.msg);
        since(m, NULL, &cpu[3][r]);

        m = mark();
        if (rate != MODEL_RATE)
            resample_channels(&a, MODEL_RATE);
        since(m, NULL, &cpu[4][r]);
        mg_decoded_audio_free(&a);
        cpu[5][r] = cpu[0][r];
        for (int s = 1; s <= STAGES; s++)
            cpu[5][r] -= cpu[s][r];
    }
    double wall_med, wall_min, med[STAGES + 2], min[STAGES + 2];
    summarize(wall, reps, &wall_med, &wall_min);
    for (int s = 0; s < STAGES + 2; s++)
        summarize(cpu[s], reps, &med[s], &min[s]);
    printf("%-28s %5.2f %5.2f %4.0f %6.1f %6.1f %6.1f %6.1f %6.1f %6.1f %6.1f %6.1f %6.1f\n",
           label, file.len / 1e6, body_len / 1e6, (double)got_frames / MODEL_RATE, wall_med,
           wall_min, med[0], min[0], med[1], med[2], med[3], med[4], med[5]);
    fflush(stdout);
    free(bytes);
    free(body);
    free(file.data);
}

/* A file past the 60 s limit: how long until mg_audio_prompt_parse refuses
 * it, and how much of that is mg_audio_decode (the rest is the base64). */
static void bench_refusal(const codec *k, int rate, int channels, double seconds, int reps)
{
    size_t     frames = (size_t)(seconds * rate);
    float     *x = make_audio(frames, channels, rate);
    char       why[256] = "", label[64];
    audio_file file;
    snprintf(label, sizeof label, "%s %g kHz %s, %g s", k->name, rate / 1000.0,
             channels == 2 ? "stereo" : "mono", seconds);
    if (!encode(x, frames, channels, rate, k->format, &file, why, sizeof why)) {
        printf("%-36s libsndfile cannot write it: %s\n", label, why);
        free(x);
        return;
    }
    free(x);
    size_t      body_len = 0, payload_len = 0;
    const char *payload = NULL;
    char       *body = json_body(&file, k->mime, &body_len, &payload, &payload_len);
    double      wall[MAX_REPS], cpu[2][MAX_REPS], wmed, wmin, med[2], min[2];
    mg_error    err = { 0 };
    for (int r = 0; r < reps; r++) {
        mg_decoded_audio a;
        uint64_t         hash;
        clock_mark       m = mark();
        if (mg_audio_prompt_parse(payload, payload_len, MODEL_RATE, &a, &hash, &err) == MG_OK)
            DIE("%s: accepted", label);
        since(m, &wall[r], &cpu[0][r]);
        m = mark();
        if (mg_audio_decode(file.data, file.len, MODEL_RATE, MG_AUDIO_PROMPT_FIELD, &a,
                            &err) == MG_OK)
            DIE("%s: accepted", label);
        since(m, NULL, &cpu[1][r]);
    }
    summarize(wall, reps, &wmed, &wmin);
    for (int s = 0; s < 2; s++)
        summarize(cpu[s], reps, &med[s], &min[s]);
    printf("%-36s %5.2f %6.1f %6.1f %6.1f %6.1f  %s\n", label, file.len / 1e6, wmed, wmin,
           med[0], med[1], err.msg);
    fflush(stdout);
    free(body);
    free(file.data);
}

int main(int argc, char **argv)
{
    int reps = 5;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = atoi(argv[++i]);
        else
            DIE("usage: bench_audio_prompt [--reps N]");
    }
    if (reps < 1 || reps > MAX_REPS)
        DIE("--reps: 1..%d", MAX_REPS);
    print_load("before");
    printf("audio_prompt of %d s through mg_request_parse_json, %d runs; ms, median unless "
           "min\n", MG_AUDIO_DECODE_MAX_SECONDS, reps);
    printf("%-28s %5s %5s %4s %6s %6s %6s %6s %6s %6s %6s %6s %6s\n", "input", "file",
           "body", "secs", "wall", "wall", "cpu", "cpu", "json", "base64", "decode",
           "resamp", "rest");
    printf("%-28s %5s %5s %4s %6s %6s %6s %6s %6s %6s %6s %6s %6s\n", "", "MB", "MB", "",
           "median", "min", "median", "min", "cpu", "cpu", "cpu", "cpu", "cpu");
    for (size_t s = 0; s < sizeof SOURCES / sizeof SOURCES[0]; s++) {
        int    rate = SOURCES[s].rate, ch = SOURCES[s].channels;
        size_t frames = (size_t)MG_AUDIO_DECODE_MAX_SECONDS * (size_t)rate;
        float *x = make_audio(frames, ch, rate);
        for (size_t k = 0; k < sizeof CODECS / sizeof CODECS[0]; k++)
            bench_input(&CODECS[k], rate, ch, x, frames, reps);
        free(x);
    }
    printf("past the %d s limit: mg_audio_prompt_parse until refused (ms, median unless "
           "min)\n", MG_AUDIO_DECODE_MAX_SECONDS);
    printf("%-36s %5s %6s %6s %6s %6s\n", "input", "file", "wall", "wall", "cpu", "decode");
    printf("%-36s %5s %6s %6s %6s %6s\n", "", "MB", "median", "min", "median", "cpu");
    /* 10 minutes in 14.4 MB, within the byte limit */
    bench_refusal(&CODECS[0], 12000, 1, 600, reps);
    /* the costliest decoder: its header gives its length */
    bench_refusal(&CODECS[2], 48000, 2, 90, reps);
    /* an MP3's length is known only by decoding it: any length past the
     * limit costs the decoding of the limit's worth */
    bench_refusal(&CODECS[3], 48000, 2, 90, reps);
    print_load("after");
    return 0;
}
