/* Test signals and their measurement: a sine, and the amplitude of one
 * frequency in a stretch of samples. Shared by the audio tests and
 * bench_resample. */
#ifndef MG_TEST_TONE_H
#define MG_TEST_TONE_H
#include <math.h>
#include <stddef.h>

static inline void sine(float *x, size_t n, double rate, double freq, double amp)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(amp * sin(2 * M_PI * freq * (double)i / rate));
}

/* Amplitude of the freq component over x[from..to), phase independent. */
static inline double tone_amp(const float *x, size_t from, size_t to, double rate, double freq)
{
    double s = 0, c = 0;
    for (size_t i = from; i < to; i++) {
        double w = 2 * M_PI * freq * (double)i / rate;
        s += x[i] * sin(w);
        c += x[i] * cos(w);
    }
    return 2 * sqrt(s * s + c * c) / (double)(to - from);
}

#endif
