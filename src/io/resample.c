#include "io/resample.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <soxr.h>

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

mg_code mg_resample(const float *in, size_t n, int in_rate, int out_rate,
                    float **out, size_t *out_n, mg_error *err)
{
    if (!out || !out_n || (n && !in))
        return mg_fail(err, MG_ERR_INVALID, "resample: NULL argument");
    *out = NULL;
    *out_n = 0;
    if (in_rate <= 0 || out_rate <= 0)
        return mg_fail(err, MG_ERR_INVALID, "resample: bad sample rates %d -> %d", in_rate,
                       out_rate);
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

/* ---- streaming, on libsoxr ---- */

struct mg_resampler {
    soxr_t  soxr;
    int     channels;
    double  ratio;      /* out_rate / in_rate */
    float  *buf;        /* output of the last call */
    size_t  cap;        /* frames buf holds */
};

mg_code mg_resampler_open(mg_resampler **out, int in_rate, int out_rate, int channels,
                          mg_error *err)
{
    if (!out)
        return mg_fail(err, MG_ERR_INVALID, "resampler: NULL argument");
    *out = NULL;
    if (in_rate <= 0 || out_rate <= 0)
        return mg_fail(err, MG_ERR_INVALID, "resampler: bad sample rates %d -> %d", in_rate,
                       out_rate);
    if (channels < 1 || channels > 2)
        return mg_fail(err, MG_ERR_INVALID, "resampler: %d channels (1 or 2)", channels);
    mg_resampler *r = calloc(1, sizeof *r);
    if (!r)
        return mg_fail(err, MG_ERR_NOMEM, "resampler: out of memory");
    r->channels = channels;
    r->ratio = (double)out_rate / in_rate;
    soxr_error_t e = NULL;
    soxr_io_spec_t io = soxr_io_spec(SOXR_FLOAT32_I, SOXR_FLOAT32_I);
    soxr_quality_spec_t q = soxr_quality_spec(SOXR_HQ, 0);
    soxr_runtime_spec_t rt = soxr_runtime_spec(1);
    r->soxr = soxr_create(in_rate, out_rate, (unsigned)channels, &e, &io, &q, &rt);
    if (!r->soxr || e) {
        mg_resampler_free(r);
        return mg_fail(err, MG_ERR_UNSUPPORTED, "resampler %d -> %d Hz: libsoxr: %s", in_rate,
                       out_rate, e ? e : "cannot create");
    }
    *out = r;
    return MG_OK;
}

static mg_code reserve(mg_resampler *r, size_t frames, mg_error *err)
{
    if (frames <= r->cap)
        return MG_OK;
    if (frames > SIZE_MAX / sizeof(float) / 2)
        return mg_fail(err, MG_ERR_INVALID, "resampler: %zu frames is too many", frames);
    float *p = realloc(r->buf, frames * (size_t)r->channels * sizeof *p);
    if (!p)
        return mg_fail(err, MG_ERR_NOMEM, "resampler: out of memory");
    r->buf = p;
    r->cap = frames;
    return MG_OK;
}

/* Runs soxr until it has taken all of in[0..n) (in == NULL: flush) and
 * returned all it can produce. */
static mg_code run_soxr(mg_resampler *r, const float *in, size_t n, const float **out,
                        size_t *out_n, mg_error *err)
{
    *out = NULL;
    *out_n = 0;
    size_t got = 0, taken = 0;
    const size_t C = (size_t)r->channels;
    for (;;) {
        /* room for this input's share and the filter's delay line */
        size_t want = got + (size_t)((double)(n - taken) * r->ratio) + 1024;
        mg_code rc = reserve(r, want, err);
        if (rc != MG_OK)
            return rc;
        size_t idone = 0, odone = 0;
        soxr_error_t e = soxr_process(r->soxr, in ? in + taken * C : NULL, in ? n - taken : 0,
                                      &idone, r->buf + got * C, r->cap - got, &odone);
        if (e)
            return mg_fail(err, MG_ERR_IO, "resampler: libsoxr: %s", e);
        taken += idone;
        got += odone;
        if (taken == n && got < r->cap)
            break;   /* everything in, and soxr stopped short of the room it had */
    }
    *out = r->buf;
    *out_n = got;
    return MG_OK;
}

mg_code mg_resampler_process(mg_resampler *r, const float *in, size_t n, const float **out,
                             size_t *out_n, mg_error *err)
{
    if (!r || !out || !out_n || (n && !in))
        return mg_fail(err, MG_ERR_INVALID, "resampler: NULL argument");
    if (n == 0) {
        *out = r->buf;
        *out_n = 0;
        return MG_OK;
    }
    return run_soxr(r, in, n, out, out_n, err);
}

mg_code mg_resampler_flush(mg_resampler *r, const float **out, size_t *out_n, mg_error *err)
{
    if (!r || !out || !out_n)
        return mg_fail(err, MG_ERR_INVALID, "resampler: NULL argument");
    return run_soxr(r, NULL, 0, out, out_n, err);
}

void mg_resampler_free(mg_resampler *r)
{
    if (!r)
        return;
    if (r->soxr)
        soxr_delete(r->soxr);
    free(r->buf);
    free(r);
}
