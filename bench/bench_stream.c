/* Streamed WAV through nginx, timed by the client: the arrival time of every
 * read() of the response is recorded, so what a listener gets is measured
 * where the listener is.
 *
 * For each streamed GET it prints:
 *   first_audio  seconds from sending the request until the first 0.1 s of
 *                samples past the WAV header have arrived;
 *   wall         seconds from sending the request until the last byte;
 *   audio/wall   seconds of audio received per wall second (request to end);
 *   worst_slack  a player that starts when the first 0.1 s has arrived never
 *                runs dry iff, for every later arrival at time t, t - start is
 *                at most the audio that arrived before it; the slack of an
 *                arrival is that audio minus (t - start), in seconds, and the
 *                stream fell behind real time iff the smallest slack is
 *                negative (printed with the audio position where it occurs).
 * Runs: one untimed 1 s warm-up request (the worker's first request), then
 * RUNS streams of SECONDS (median first audio), then one long-form stream of
 * LONG seconds; the long-form overhead is its wall time against the sum of
 * the walls of the first four SECONDS streams (run one after another, same
 * model and settings). Figures only: nothing here passes or fails on time.
 *   bench_stream --port P [--host 127.0.0.1] [--path /generate] [--runs 5]
 *                [--seconds 30] [--long 120] [--json FILE] */
#include <errno.h>
#include <jansson.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define DIE(...) (fprintf(stderr, "bench_stream: " __VA_ARGS__), fprintf(stderr, "\n"), exit(1))

/* What a player buffers before it starts, and what "first audio" means. */
#define START_AUDIO_S 0.1
/* The audio is also timed in blocks of this length, to show where a stream
 * slows down (the late steps of a window read more cached attention). */
#define BLOCK_S 10.0
#define MAX_BLOCKS 64
/* A read that waits longer than this means nginx stopped sending. */
#define READ_TIMEOUT_S 300

typedef struct {
    double t;          /* seconds since the request was sent */
    long long body;    /* body bytes received up to and including this read */
} arrival;

typedef struct {
    arrival  *v;
    size_t    n, cap;
    long long header_len;   /* WAV header bytes (up to the data chunk's samples) */
    double    byte_rate;    /* WAV bytes per second of audio */
} stream_log;

typedef struct {
    double first_audio, wall, audio_s, per_wall, worst_slack, worst_at;
    double block_end[MAX_BLOCKS]; /* when the audio passed (k + 1) * BLOCK_S */
    int    blocks;
} stream_figures;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void log_arrival(stream_log *log, double t, long long body)
{
    if (log->n == log->cap) {
        size_t cap = log->cap ? log->cap * 2 : 1024;
        arrival *v = realloc(log->v, cap * sizeof *v);
        if (!v)
            DIE("out of memory");
        log->v = v, log->cap = cap;
    }
    log->v[log->n++] = (arrival){ t, body };
}

static unsigned le32(const unsigned char *p) { return p[0] | p[1] << 8 | p[2] << 16 | (unsigned)p[3] << 24; }

/* The RIFF chunks up to "data": the byte rate from "fmt ", the header's
 * length. 0 while more bytes are needed, -1 if this is no WAV. */
static int parse_wav(const unsigned char *b, size_t n, stream_log *log)
{
    if (n < 12)
        return 0;
    if (memcmp(b, "RIFF", 4) || memcmp(b + 8, "WAVE", 4))
        return -1;
    size_t off = 12;
    while (off + 8 <= n) {
        unsigned size = le32(b + off + 4);
        if (!memcmp(b + off, "data", 4)) {
            if (log->byte_rate <= 0)
                return -1;
            log->header_len = (long long)off + 8;
            return 1;
        }
        if (!memcmp(b + off, "fmt ", 4)) {
            if (off + 8 + 12 > n)
                return 0;
            log->byte_rate = le32(b + off + 8 + 8);
        }
        off += 8 + (size_t)size + (size & 1);
    }
    return 0;
}

static int connect_to(const char *host, const char *port)
{
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *res;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc)
        DIE("%s:%s: %s", host, port, gai_strerror(rc));
    int fd = -1;
    for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
        if (fd >= 0 && connect(fd, a->ai_addr, a->ai_addrlen) != 0)
            close(fd), fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0)
        DIE("cannot connect to %s:%s", host, port);
    struct timeval tv = { .tv_sec = READ_TIMEOUT_S };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

/* One GET of `target`; fills `log` with every read's arrival. Returns the
 * HTTP status. */
static int fetch_stream(const char *host, const char *port, const char *target, stream_log *log)
{
    char req[2048];
    int len = snprintf(req, sizeof req,
                       "GET %s HTTP/1.1\r\nHost: %s\r\nAccept: audio/wav\r\nConnection: close\r\n\r\n",
                       target, host);
    if (len < 0 || (size_t)len >= sizeof req)
        DIE("request too long");
    log->n = 0, log->header_len = -1, log->byte_rate = 0;
    int fd = connect_to(host, port);
    double t0 = now_s();
    for (int sent = 0; sent < len;) {
        ssize_t w = send(fd, req + sent, (size_t)(len - sent), MSG_NOSIGNAL);
        if (w <= 0)
            DIE("send: %s", strerror(errno));
        sent += (int)w;
    }
    /* The response head and the body's first bytes (the WAV header) are kept
     * for parsing; the rest is only counted. */
    static char buf[1 << 16];
    char head[16384];
    size_t head_n = 0;
    unsigned char wav[4096];
    size_t wav_n = 0;
    long long body = -1, content_length = -1;
    int status = 0, wav_state = 0;
    for (;;) {
        ssize_t r = recv(fd, buf, sizeof buf, 0);
        double t = now_s() - t0;
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            DIE("recv: %s", strerror(errno));
        if (r == 0)
            break;
        const char *data = buf;
        size_t n = (size_t)r;
        if (body < 0) { /* still in the response head */
            size_t take = n < sizeof head - 1 - head_n ? n : sizeof head - 1 - head_n;
            memcpy(head + head_n, data, take);
            head_n += take;
            head[head_n] = 0;
            char *end = strstr(head, "\r\n\r\n");
            if (!end) {
                if (head_n == sizeof head - 1)
                    DIE("response head too long");
                continue;
            }
            size_t head_len = (size_t)(end + 4 - head), before = head_n - take;
            if (sscanf(head, "HTTP/1.%*d %d", &status) != 1)
                DIE("not an HTTP response");
            const char *cl = strcasestr(head, "\r\ncontent-length:");
            if (cl)
                content_length = atoll(cl + 17);
            data += head_len - before, n -= head_len - before;
            body = 0;
        }
        if (n == 0)
            continue;
        if (wav_state == 0) {
            size_t take = n < sizeof wav - wav_n ? n : sizeof wav - wav_n;
            memcpy(wav + wav_n, data, take);
            wav_n += take;
            wav_state = parse_wav(wav, wav_n, log);
            if (wav_state < 0 && status == 200)
                DIE("%s: the response is no WAV", target);
        }
        body += (long long)n;
        log_arrival(log, t, body);
        if (content_length >= 0 && body >= content_length)
            break;
    }
    close(fd);
    if (status == 200 && wav_state != 1)
        DIE("%s: the response ended inside its WAV header", target);
    if (status == 200 && content_length >= 0 && body != content_length)
        DIE("%s: %lld body bytes, Content-Length says %lld", target, body, content_length);
    return status;
}

static stream_figures figures_of(const stream_log *log)
{
    stream_figures f = { .first_audio = -1, .worst_slack = 1e30 };
    double start = -1;
    double audio_before = 0; /* seconds of audio that arrived before this read */
    for (size_t i = 0; i < log->n; i++) {
        long long bytes = log->v[i].body - log->header_len;
        double audio = bytes > 0 ? bytes / log->byte_rate : 0;
        double t = log->v[i].t;
        if (start >= 0) {
            double slack = audio_before - (t - start);
            if (slack < f.worst_slack)
                f.worst_slack = slack, f.worst_at = audio_before;
        } else if (audio >= START_AUDIO_S) {
            start = f.first_audio = t;
        }
        while (f.blocks < MAX_BLOCKS && audio >= (f.blocks + 1) * BLOCK_S)
            f.block_end[f.blocks++] = t;
        audio_before = audio;
    }
    if (start < 0)
        DIE("the stream carried less than %.1f s of audio", START_AUDIO_S);
    f.audio_s = audio_before;
    f.wall = log->v[log->n - 1].t;
    f.per_wall = f.audio_s / f.wall;
    if (f.worst_slack > 1e29) /* one read carried everything */
        f.worst_slack = f.audio_s, f.worst_at = 0;
    return f;
}

static void print_figures(const char *what, int index, const stream_figures *f)
{
    printf("  %s %d: first_audio %.3f s, wall %.2f s for %.2f s of audio (%.2f audio s per wall s), "
           "worst_slack %+.2f s at %.1f s of audio (%s",
           what, index, f->first_audio, f->wall, f->audio_s, f->per_wall, f->worst_slack, f->worst_at,
           f->worst_slack < 0 ? "fell behind real time" : "never behind real time");
    /* Starting later adds the delay to every slack. */
    if (f->worst_slack < 0)
        printf("; a player starting %.2f s after the request never runs dry", f->first_audio - f->worst_slack);
    printf(")\n    wall s per %.0f s of audio:", BLOCK_S);
    for (int k = 0; k < f->blocks; k++)
        printf(" %.1f", f->block_end[k] - (k ? f->block_end[k - 1] : 0));
    printf("\n");
    fflush(stdout);
}

static stream_figures timed_stream(const char *host, const char *port, const char *path, double seconds,
                                   int seed, stream_log *log)
{
    char target[512];
    snprintf(target, sizeof target, "%s?prompt=streamed+bench&duration=%g&seed=%d&format=wav", path,
             seconds, seed);
    int status = fetch_stream(host, port, target, log);
    if (status != 200)
        DIE("%s: HTTP %d", target, status);
    return figures_of(log);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void print_load(const char *when)
{
    FILE *f = fopen("/proc/loadavg", "r");
    char line[128] = "?";
    if (f) {
        if (!fgets(line, sizeof line, f))
            strcpy(line, "?\n");
        fclose(f);
    }
    printf("  load average %s: %s", when, line);
}

static void set_real(json_t *o, const char *key, double v)
{
    if (json_object_set_new(o, key, json_real(v)) != 0)
        DIE("out of memory");
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1", *port = NULL, *path = "/generate", *json_path = NULL;
    int runs = 5;
    double seconds = 30, long_s = 120;
    for (int i = 1; i < argc; i += 2) {
        if (i + 1 >= argc)
            DIE("%s needs a value", argv[i]);
        if (!strcmp(argv[i], "--host"))
            host = argv[i + 1];
        else if (!strcmp(argv[i], "--port"))
            port = argv[i + 1];
        else if (!strcmp(argv[i], "--path"))
            path = argv[i + 1];
        else if (!strcmp(argv[i], "--runs"))
            runs = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--seconds"))
            seconds = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--long"))
            long_s = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--json"))
            json_path = argv[i + 1];
        else
            DIE("usage: bench_stream --port P [--host H] [--path /generate] [--runs 5] [--seconds 30] "
                "[--long 120] [--json FILE]");
    }
    if (!port)
        DIE("--port is required");
    if (runs < 4 || runs > 100)
        DIE("--runs must be 4..100 (the long-form comparison takes the first four)");
    if (seconds <= START_AUDIO_S || long_s <= START_AUDIO_S)
        DIE("--seconds and --long must exceed %.1f", START_AUDIO_S);

    stream_log log = { 0 };
    print_load("before");
    /* The worker's first request pays for what a running server has paid
     * already (page faults on the weights, the first allocations). */
    char warm[512];
    snprintf(warm, sizeof warm, "%s?prompt=warm+up&duration=1&seed=1&format=wav", path);
    int status = fetch_stream(host, port, warm, &log);
    if (status != 200)
        DIE("warm-up request: HTTP %d", status);

    printf("== %d streamed %g s WAV requests, one after another\n", runs, seconds);
    double *first = malloc((size_t)runs * sizeof *first);
    if (!first)
        DIE("out of memory");
    double four_walls = 0, worst_short = 1e30, min_rate = 1e30;
    for (int i = 0; i < runs; i++) {
        stream_figures f = timed_stream(host, port, path, seconds, 100 + i, &log);
        print_figures("stream", i + 1, &f);
        first[i] = f.first_audio;
        if (i < 4)
            four_walls += f.wall;
        if (f.worst_slack < worst_short)
            worst_short = f.worst_slack;
        if (f.per_wall < min_rate)
            min_rate = f.per_wall;
    }
    qsort(first, (size_t)runs, sizeof *first, cmp_double);
    double first_median = runs % 2 ? first[runs / 2] : (first[runs / 2 - 1] + first[runs / 2]) / 2;
    printf("  first audio: median %.3f s (%.3f-%.3f) over %d streams\n", first_median, first[0],
           first[runs - 1], runs);
    printf("  playback: at least %.2f audio s per wall s, worst slack %+.2f s (%s)\n", min_rate,
           worst_short, worst_short < 0 ? "fell behind real time" : "never behind real time");

    printf("== one streamed %g s WAV request (long-form)\n", long_s);
    stream_figures lf = timed_stream(host, port, path, long_s, 7, &log);
    print_figures("long-form", 1, &lf);
    double ratio = lf.wall / (four_walls * long_s / (4 * seconds));
    printf("  long-form overhead: %.2f s for %g s against %.2f s for four %g s requests: %.2fx%s\n",
           lf.wall, long_s, four_walls, seconds, ratio,
           long_s == 4 * seconds ? "" : " (the four scaled to the long-form length)");
    print_load("after");
    free(log.v);

    if (json_path) {
        json_t *o = json_object();
        if (!o)
            DIE("out of memory");
        set_real(o, "stream_first_audio_s", first_median);
        set_real(o, "stream_min_audio_per_wall", min_rate);
        set_real(o, "stream_worst_slack_s", worst_short);
        set_real(o, "long_form_wall_s", lf.wall);
        set_real(o, "long_form_audio_per_wall", lf.per_wall);
        set_real(o, "long_form_worst_slack_s", lf.worst_slack);
        set_real(o, "four_streams_wall_s", four_walls);
        set_real(o, "long_form_overhead", ratio);
        if (json_dump_file(o, json_path, JSON_INDENT(2)) != 0)
            DIE("cannot write %s", json_path);
        json_decref(o);
    }
    free(first);
    return 0;
}
