/* The hand-written resampler that src/io/resample.c used before libsoxr:
 * rational polyphase resampling with a Kaiser-windowed sinc low-pass (beta
 * 8.6, 32 zero crossings per side at the narrower rate, cutoff at 90% of the
 * lower Nyquist frequency, each phase normalised to unity DC gain). Kept
 * here, included by bench_resample.c only, as the baseline of the
 * measurement that chose libsoxr (docs/PERFORMANCE.md). */
#ifndef MG_BENCH_RESAMPLE_POLYPHASE_H
#define MG_BENCH_RESAMPLE_POLYPHASE_H
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"

#define KAISER_BETA   8.6   /* ~80 dB stopband */
#define ZERO_CROSS    32    /* sinc zero crossings per side (at the cutoff rate) */
#define CUTOFF        0.90  /* fraction of the lower Nyquist frequency */
#define MAX_PHASES    4096

static long gcd(long a, long b)
{
    while (b) {
        long t = a % b;
        a = b;
        b = t;
    }
    return a;
}

/* Modified Bessel function of the first kind, order 0 (power series). */
static double bessel_i0(double x)
{
    double sum = 1.0, term = 1.0, q = x * x / 4.0;
    for (int k = 1; k < 64; k++) {
        term *= q / ((double)k * k);
        sum += term;
        if (term < sum * 1e-12)
            break;
    }
    return sum;
}

/* Windowed-sinc low-pass, t in input samples, cutoff fc relative to the input
 * Nyquist frequency, half-width w input samples. */
static double kernel(double t, double fc, double w)
{
    if (fabs(t) >= w)
        return 0.0;
    double x = fc * t;
    double s = x == 0.0 ? 1.0 : sin(M_PI * x) / (M_PI * x);
    double r = t / w;
    return fc * s * bessel_i0(KAISER_BETA * sqrt(1.0 - r * r)) / bessel_i0(KAISER_BETA);
}

static mg_code polyphase_resample(const float *in, size_t n, int in_rate, int out_rate,
                                  float **out, size_t *out_n, mg_error *err)
{
    /* the bench's own inputs: positive rates, non-empty input */
    *out = NULL;
    *out_n = 0;
    long g = gcd(in_rate, out_rate);
    size_t up = (size_t)(out_rate / g), down = (size_t)(in_rate / g);
    if (up > MAX_PHASES)
        return mg_fail(err, MG_ERR_UNSUPPORTED,
                       "resample: ratio %d/%d needs %zu filter phases (max %d)", out_rate,
                       in_rate, up, MAX_PHASES);
    if (n == 0)
        return MG_OK;
    if (n > (SIZE_MAX - down) / up)
        return mg_fail(err, MG_ERR_INVALID, "resample: %zu samples is too many", n);
    size_t total = (n * up + down - 1) / down;
    float *y = malloc(total * sizeof *y);
    if (!y)
        return mg_fail(err, MG_ERR_NOMEM, "resample: out of memory for %zu samples", total);

    if (up == down) { /* same rate: nothing to filter */
        memcpy(y, in, n * sizeof *y);
        *out = y;
        *out_n = n;
        return MG_OK;
    }

    /* Filter the narrower band: when downsampling the cutoff follows the
     * output Nyquist frequency and the kernel widens accordingly. */
    double fc = CUTOFF * (up < down ? (double)up / (double)down : 1.0);
    double w = ZERO_CROSS / fc;
    size_t half = (size_t)ceil(w);   /* taps j in [-(half-1), half] */
    size_t taps = 2 * half;
    float *table = malloc(up * taps * sizeof *table);
    if (!table) {
        free(y);
        return mg_fail(err, MG_ERR_NOMEM, "resample: out of memory for filter");
    }
    for (size_t p = 0; p < up; p++) {
        float *h = table + p * taps;
        double frac = (double)p / (double)up, sum = 0.0;
        for (size_t j = 0; j < taps; j++) {
            double t = frac - ((double)j - (double)(half - 1));
            double v = kernel(t, fc, w);
            h[j] = (float)v;
            sum += v;
        }
        for (size_t j = 0; j < taps; j++) /* unity DC gain per phase */
            h[j] = (float)(h[j] / sum);
    }

    /* Output k sits at input time k*down/up = base + phase/up. */
    size_t base = 0, phase = 0;
    for (size_t k = 0; k < total; k++) {
        const float *h = table + phase * taps;
        double acc = 0.0;
        /* input index i = base + j - (half-1); skip taps outside [0, n) */
        size_t j0 = base + 1 < half ? half - 1 - base : 0;
        size_t j1 = taps;
        if (base + taps - (half - 1) > n)
            j1 = n + (half - 1) > base ? n + (half - 1) - base : 0;
        for (size_t j = j0; j < j1; j++)
            acc += (double)h[j] * in[base + j - (half - 1)];
        y[k] = (float)acc;
        phase += down;
        base += phase / up;
        phase %= up;
    }
    free(table);
    *out = y;
    *out_n = total;
    return MG_OK;
}

#endif
