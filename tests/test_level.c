/* The output level stage: names, the limiter on a signal beyond full scale
 * (ceiling held, no flat tops, the gain smooth and aligned with the samples,
 * exact frame count), bit-exact pass-through of quiet signals, clip, off,
 * and independence from how the input is split into calls. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "io/level.h"

#define RATE 32000

/* Runs x[0..n) frames through a fresh stage in calls of `step` frames (0:
 * one call) plus the flush; returns the output (n frames) or NULL. */
static float *run_stage(mg_level l, int channels, const float *x, size_t n, size_t step,
                        size_t *out_n)
{
    mg_level_stage *s = NULL;
    mg_error err = { 0 };
    if (mg_level_stage_open(&s, l, RATE, channels, &err) != MG_OK) {
        printf("open: %s\n", err.msg);
        return NULL;
    }
    const size_t C = (size_t)channels;
    size_t delay = mg_level_stage_delay(s);
    float *y = malloc((n + delay + 1) * C * sizeof *y);
    size_t got = 0;
    for (size_t i = 0; y && i < n;) {
        size_t k = step && step < n - i ? step : n - i;
        got += mg_level_stage_process(s, x + i * C, k, y + got * C);
        i += k;
    }
    if (y)
        got += mg_level_stage_flush(s, y + got * C);
    mg_level_stage_free(s);
    *out_n = got;
    return y;
}

/* A 2.0 sine (220 Hz) with short bursts up to 3.0, per channel its own. */
static void loud(float *x, size_t n, int channels)
{
    for (size_t i = 0; i < n; i++)
        for (int c = 0; c < channels; c++) {
            double v = 2.0 * sin(2 * M_PI * (220.0 + 55.0 * c) * (double)i / RATE);
            if (i % 8000 >= 4000 && i % 8000 < 4030)
                v *= 1.5;
            x[i * (size_t)channels + (size_t)c] = (float)v;
        }
}

static void test_names(void)
{
    mg_level l = MG_LEVEL_OFF;
    mg_error err = { 0 };
    CHECK(mg_level_parse("limit", 5, &l, &err) == MG_OK && l == MG_LEVEL_LIMIT, "limit");
    CHECK(mg_level_parse("CLIP", 4, &l, &err) == MG_OK && l == MG_LEVEL_CLIP, "CLIP");
    CHECK(mg_level_parse("offset", 3, &l, &err) == MG_OK && l == MG_LEVEL_OFF,
          "length-bounded: off");
    CHECK(mg_level_parse("loud", 4, &l, &err) == MG_ERR_INVALID &&
              strcmp(err.field, "level") == 0 && strstr(err.msg, "\"loud\"") != NULL,
          "unknown level names the field and the value: %s", err.msg);
    CHECK(mg_level_parse(NULL, 0, &l, &err) == MG_ERR_INVALID, "NULL name");
    for (int i = 0; i < 3; i++) {
        const char *name = mg_level_name((mg_level)i);
        CHECK(mg_level_parse(name, strlen(name), &l, &err) == MG_OK && l == (mg_level)i,
              "round trip %s", name);
    }
    CHECK(strcmp(mg_level_name((mg_level)9), "unknown") == 0, "unknown level name");
    mg_level_stage *s = NULL;
    CHECK(mg_level_stage_open(&s, MG_LEVEL_LIMIT, RATE, 3, &err) == MG_ERR_INVALID && !s,
          "3 channels refused");
    CHECK(mg_level_stage_open(&s, (mg_level)5, RATE, 1, &err) == MG_ERR_INVALID && !s,
          "level 5 refused");
}

/* Clipped flat tops: neighbours at the same value near the top of the range. */
static size_t flat_tops(const float *y, size_t n, size_t C)
{
    size_t flat = 0;
    for (size_t i = 1; i < n; i++)
        for (size_t c = 0; c < C; c++)
            flat += fabsf(y[i * C + c]) > 0.9f * MG_LEVEL_CEILING &&
                    y[i * C + c] == y[(i - 1) * C + c];
    return flat;
}

static void test_limit_loud(int channels)
{
    enum { N = RATE };
    const size_t C = (size_t)channels;
    float *x = malloc(N * C * sizeof *x);
    CHECK(x != NULL, "allocation");
    if (!x)
        return;
    loud(x, N, channels);
    size_t n = 0;
    float *y = run_stage(MG_LEVEL_LIMIT, channels, x, N, 0, &n);
    CHECK(y && n == N, "%d ch: %zu frames out of %d", channels, n, N);
    if (!y || n != N) {
        free(x);
        free(y);
        return;
    }
    double peak = 0;
    size_t flat = flat_tops(y, N, C), bad_gain = 0;
    double worst_step = 0, prev_gain = -1;
    for (size_t i = 0; i < N; i++) {
        double frame_gain = -1;
        for (size_t c = 0; c < C; c++) {
            float v = y[i * C + c], u = x[i * C + c];
            peak = fmax(peak, fabs(v));
            /* aligned: each output sample is its own input times a gain in (0, 1] */
            if (fabsf(u) > 0.05f) {
                double g = (double)v / u;
                if (!(g > 0 && g <= 1.0 + 1e-6))
                    bad_gain++;
                if (frame_gain < 0)
                    frame_gain = g;
            }
        }
        if (frame_gain > 0 && prev_gain > 0)
            worst_step = fmax(worst_step, fabs(frame_gain - prev_gain));
        if (frame_gain > 0)
            prev_gain = frame_gain;
    }
    CHECK(peak <= MG_LEVEL_CEILING, "%d ch: peak %.9g above the ceiling", channels, peak);
    CHECK(peak > 0.95 * MG_LEVEL_CEILING, "%d ch: peak %g: the limiter reaches its ceiling",
          channels, peak);
    CHECK(flat == 0, "%d ch: %zu flat-topped samples", channels, flat);
    CHECK(bad_gain == 0, "%d ch: %zu samples not their input times a gain in (0, 1]", channels,
          bad_gain);
    /* smooth: the gain moves by much less than the 2:1 step a hard switch
     * would make (the box filter spreads any change over 5 ms) */
    CHECK(worst_step < 0.01, "%d ch: gain step %g between neighbours", channels, worst_step);
    printf("%d ch: peak %.6f, largest gain step %.6f\n", channels, peak, worst_step);

    /* the same samples split into calls of 1, 7 and 1000 frames */
    static const size_t steps[] = { 1, 7, 1000 };
    for (size_t k = 0; k < 3; k++) {
        size_t m = 0;
        float *z = run_stage(MG_LEVEL_LIMIT, channels, x, N, steps[k], &m);
        CHECK(z && m == N && memcmp(z, y, N * C * sizeof *z) == 0,
              "%d ch: calls of %zu frames give other samples", channels, steps[k]);
        free(z);
    }

    /* clip clips, off keeps the values */
    size_t m = 0;
    float *cl = run_stage(MG_LEVEL_CLIP, channels, x, N, 0, &m);
    int ok = cl && m == N;
    for (size_t i = 0; ok && i < N * C; i++)
        ok = cl[i] == fmaxf(-1.0f, fminf(1.0f, x[i]));
    CHECK(ok, "%d ch: clip is a hard clip to [-1, 1]", channels);
    CHECK(cl && flat_tops(cl, N, C) > N / 10, "%d ch: clip has flat tops (%zu)", channels,
          cl ? flat_tops(cl, N, C) : 0);
    free(cl);
    float *off = run_stage(MG_LEVEL_OFF, channels, x, N, 0, &m);
    CHECK(off && m == N && memcmp(off, x, N * C * sizeof *x) == 0, "%d ch: off passes through",
          channels);
    free(off);
    free(x);
    free(y);
}

/* Quiet music (peaks at 0.97, under the ceiling) passes bit for bit, and so
 * does the quiet part after a loud passage once the gain has recovered. */
static void test_limit_quiet(void)
{
    enum { N = 3 * RATE };
    float *x = malloc(N * sizeof *x);
    CHECK(x != NULL, "allocation");
    if (!x)
        return;
    uint32_t seed = 7;
    for (size_t i = 0; i < N; i++) {
        seed = seed * 1664525u + 1013904223u;
        double noise = ((double)(seed >> 8) / (1 << 24) - 0.5) * 0.02;
        x[i] = (float)(0.96 * sin(2 * M_PI * 330 * (double)i / RATE) + noise);
    }
    size_t n = 0;
    float *y = run_stage(MG_LEVEL_LIMIT, 1, x, N, 0, &n);
    CHECK(y && n == N && memcmp(x, y, N * sizeof *x) == 0, "quiet signal unchanged bit for bit");
    free(y);
    /* a loud first second, then quiet: the last second is untouched */
    for (size_t i = 0; i < RATE; i++)
        x[i] *= 2.0f;
    y = run_stage(MG_LEVEL_LIMIT, 1, x, N, 0, &n);
    CHECK(y && n == N && memcmp(x + 2 * RATE, y + 2 * RATE, RATE * sizeof *x) == 0,
          "after the release the signal passes bit for bit again");
    free(y);
    free(x);
}

/* NaN never reaches the output; infinities are limited, not propagated. */
static void test_non_finite(void)
{
    float x[400];
    for (int i = 0; i < 400; i++)
        x[i] = 0.5f;
    x[100] = NAN;
    x[200] = INFINITY;
    x[300] = -INFINITY;
    static const mg_level levels[] = { MG_LEVEL_LIMIT, MG_LEVEL_CLIP, MG_LEVEL_OFF };
    for (int l = 0; l < 3; l++) {
        size_t n = 0;
        float *y = run_stage(levels[l], 1, x, 400, 0, &n);
        int finite = y && n == 400, nan_zero = y && y[100] == 0.0f;
        for (size_t i = 0; finite && i < n; i++)
            finite = levels[l] == MG_LEVEL_OFF ? !isnan(y[i]) : isfinite(y[i]) &&
                                                                    fabsf(y[i]) <= 1.0f;
        CHECK(finite && nan_zero, "%s: NaN becomes 0, nothing out of range",
              mg_level_name(levels[l]));
        free(y);
    }
}

int main(void)
{
    test_names();
    test_limit_loud(1);
    test_limit_loud(2);
    test_limit_quiet();
    test_non_finite();
    return check_summary("level");
}
