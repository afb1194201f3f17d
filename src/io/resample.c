#include "io/resample.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <soxr.h>

#define ONESHOT_BLOCK 4096   /* input frames per libsoxr call in mg_resample */

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
    if (n == 0)
        return MG_OK;
    if (n > (size_t)INT64_MAX / (size_t)out_rate)
        return mg_fail(err, MG_ERR_INVALID, "resample: %zu samples is too many", n);
    size_t total = (size_t)(((uint64_t)n * (uint64_t)out_rate + (uint64_t)in_rate - 1) /
                            (uint64_t)in_rate);
    float *y = calloc(total, sizeof *y);
    if (!y)
        return mg_fail(err, MG_ERR_NOMEM, "resample: out of memory for %zu samples", total);
    if (in_rate == out_rate) { /* same rate: nothing to filter, samples kept exactly */
        memcpy(y, in, n * sizeof *y);
        *out = y;
        *out_n = n;
        return MG_OK;
    }
    mg_resampler *r = NULL;
    mg_code rc = mg_resampler_open(&r, in_rate, out_rate, 1, err);
    const float *part = NULL;
    size_t m = 0, got = 0;
    /* in blocks: libsoxr is several times faster on cache-sized pieces than
     * on the whole input at once (bench_resample) */
    for (size_t i = 0; rc == MG_OK; i += ONESHOT_BLOCK) {
        rc = i < n ? mg_resampler_process(r, in + i, n - i < ONESHOT_BLOCK ? n - i : ONESHOT_BLOCK,
                                          &part, &m, err)
                   : mg_resampler_flush(r, &part, &m, err);
        if (rc != MG_OK || (i >= n && m == 0))
            break;
        /* soxr's total can differ from the rounded-up count by a sample:
         * the tail is cut, or left as calloc's zeros */
        size_t k = m < total - got ? m : total - got;
        memcpy(y + got, part, k * sizeof *y);
        got += k;
    }
    mg_resampler_free(r);
    if (rc != MG_OK) {
        free(y);
        return rc;
    }
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
