/* EnCodec 32 kHz decoder as a stream: codes -> waveform.
 *
 *   x = Σ_q codebook_q[codes[q]]                        [B, hidden, T]
 *   layers.0   conv  hidden -> C0 = filters·2^n, kernel_size
 *   layers.1   LSTM  (num_lstm_layers, residual: lstm(x) + x)
 *   per upsampling ratio r (channels C -> C/2, time T -> T·r):
 *              ELU; ConvTranspose1d(k = 2r, stride r);
 *              num_residual_layers × ResnetBlock(x + conv1x1(elu(conv_k(elu(x)))))
 *   ELU; conv filters -> 1, last_kernel_size
 *
 * Convs are non-causal with reflect padding: k_eff = (k-1)·dil + 1, total =
 * k_eff - 1 (stride 1), right = total/2, left = total - right. Transposed
 * convs trim k - stride samples, right = trim/2, left = the rest.
 *
 * Signals are channel-first [B*C, columns]; a layer sees only its new input
 * columns and keeps the ones its later outputs read (encodec_stream.h). Its
 * output t is computed once inputs up to t + right are known: with a window
 * that starts at t - left (reflected at the signal's start) the conv kernels
 * compute each output from the same inputs in the same order wherever the
 * window starts (src/cpu/cpu_conv.c), so pieces give one pass's bits. All
 * arithmetic runs in backend ops; this file plans columns and buffers. */
#include "model/encodec_stream.h"
#include "model/encodec_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Input columns [lo, lo + n) of a layer that it still needs, in buf [rows, cap]. */
typedef struct {
    mg_tensor *buf;
    int64_t    rows, cap, lo, n;
} ecs_cols;

/* One conv's stream state: its kept input and how many outputs are out. */
typedef struct {
    ecs_cols kept;
    int64_t  out_done;
} ecs_conv;

typedef struct {
    mg_encodec_trace_fn fn;
    void               *ud;
    float              *host;
    int64_t             host_cap;
} ecs_tracer;

struct mg_encodec_stream {
    mg_encodec         *ec;
    int                 B;
    mg_encodec_audio_fn on_audio;
    void               *ud;
    int                 carry;      /* the backend's lstm_state: decode as frames come */
    int64_t             chunk;      /* frames per pass through the upsampling stack (0: all) */
    int64_t             frames_in, samples_out;
    int                 finished, lstm_started;
    ecs_conv           *convs;      /* per ec->convs entry */
    ecs_cols           *res;        /* per residual block: inputs whose sums are not out */
    mg_tensor         **lstm_state; /* per LSTM layer [2B, c0] (carry) */
    int32_t            *codes;      /* without carry: every frame so far, [B, K, codes_cap] */
    int64_t             codes_cap;
    int32_t            *ids;
    int64_t             ids_cap;
    float              *host;       /* audio on its way to on_audio */
    int64_t             host_cap;
    ecs_tracer          tr;
};

static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }
static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

static int conv_pad_total(const ec_conv *cv) { return (cv->k - 1) * cv->dil; }

/* A [rows, cols] view at the start of a scratch buffer (rows*cols <= its size). */
static mg_tensor view(const mg_tensor *buf, int64_t rows, int64_t cols)
{
    mg_tensor v = mg_tensor_reshape2(buf, rows, cols);
    v.nbytes = (size_t)(rows * cols) * sizeof(float);
    return v;
}

/* A [rows, cols] view of scratch role i, grown to fit (its contents lost). */
static mg_code scratch(mg_encodec *ec, int i, int64_t rows, int64_t cols, mg_tensor *out,
                       mg_error *err)
{
    mg_code rc = mg_ec_ws_get(ec, i, rows * cols, err);
    if (rc == MG_OK)
        *out = view(ec->ws[i], rows, cols);
    return rc;
}

/* dst columns [d0, d0 + n) = src columns [s0, s0 + n), every row (both
 * channel-first with the same rows): one block of n one-float rows per row. */
static void copy_cols(mg_backend *be, mg_tensor *dst, int64_t d0, const mg_tensor *src,
                      int64_t s0, int64_t n)
{
    if (n <= 0)
        return;
    int64_t rows = mg_tensor_rows(src), sc = mg_tensor_cols(src), dc = mg_tensor_cols(dst);
    mg_tensor d = mg_tensor_reshape2(dst, rows * dc, 1), s = mg_tensor_reshape2(src, rows * sc, 1);
    mg_copy_row_blocks(be, &d, d0, dc, &s, s0, sc, n, rows);
}

/* The layer's input columns [k->lo, k->lo + k->n + n_new): the kept ones
 * then the new ones, in scratch W (or the new ones themselves). */
static mg_code window(mg_encodec *ec, const ecs_cols *k, const mg_tensor *x_new, int64_t n_new,
                      mg_tensor *out, mg_error *err)
{
    if (k->n == 0) {
        *out = *x_new;
        return MG_OK;
    }
    mg_code rc = scratch(ec, EC_BUF_W, k->rows, k->n + n_new, out, err);
    if (rc != MG_OK)
        return rc;
    mg_tensor kept = mg_tensor_reshape2(k->buf, k->rows, k->cap);
    copy_cols(ec->be, out, 0, &kept, 0, k->n);
    copy_cols(ec->be, out, k->n, x_new, 0, n_new);
    return MG_OK;
}

/* Keeps columns [from, hi) of the window win (which starts at column lo). */
static mg_code keep(mg_encodec *ec, ecs_cols *k, const mg_tensor *win, int64_t lo, int64_t from,
                    int64_t hi, mg_error *err)
{
    int64_t n = hi - from;
    if (n > k->cap) {
        mg_tensor_free(k->buf);
        k->buf = NULL;
        k->cap = 0;
        int64_t cap = max64(n, 8);
        mg_code rc = mg_tensor_new2(&k->buf, ec->be, k->rows, cap, err);
        if (rc != MG_OK)
            return rc;
        k->cap = cap;
    }
    if (n > 0) {
        mg_tensor kept = mg_tensor_reshape2(k->buf, k->rows, k->cap);
        copy_cols(ec->be, &kept, 0, win, from - lo, n);
    }
    k->lo = from;
    k->n = n;
    return MG_OK;
}

static mg_code emit(ecs_tracer *tr, const char *name, const mg_tensor *t, mg_error *err)
{
    if (!tr->fn)
        return MG_OK;
    int64_t n = mg_tensor_numel(t);
    if (n > tr->host_cap) {
        float *h = realloc(tr->host, (size_t)n * sizeof *h);
        if (!h)
            return mg_fail(err, MG_ERR_NOMEM, "encodec: out of memory tracing %s", name);
        tr->host = h;
        tr->host_cap = n;
    }
    mg_code rc = mg_tensor_download_f32(t, tr->host, err);
    if (rc == MG_OK)
        tr->fn(tr->ud, name, tr->host, n);
    return rc;
}

static mg_code emit_layer(ecs_tracer *tr, int layer, const mg_tensor *t, mg_error *err)
{
    char name[48];
    snprintf(name, sizeof name, "decoder_layer_out.%02d", layer);
    return emit(tr, name, t, err);
}

/* A stride-1 conv over its new input columns x_new [B*c_in, n_new] (its
 * input elu(x) with elu_in: padding and ELU commute exactly); *y = the new
 * output columns in scratch out_role, *n_out of them. */
static mg_code conv_step(mg_encodec_stream *s, int ci, const mg_tensor *x_new, int64_t n_new,
                         int last, int elu_in, int out_role, mg_tensor *y, int64_t *n_out,
                         mg_error *err)
{
    mg_encodec *ec = s->ec;
    mg_backend *be = ec->be;
    const ec_conv *cv = &ec->convs[ci];
    ecs_conv *st = &s->convs[ci];
    int64_t total = conv_pad_total(cv), R = total / 2, L = total - R;
    mg_tensor w;
    mg_code rc = window(ec, &st->kept, x_new, n_new, &w, err);
    if (rc != MG_OK)
        return rc;
    int64_t a = st->kept.lo, hi = a + st->kept.n + n_new, t0 = st->out_done;
    /* the first outputs wait for more than `left` inputs (their reflection) */
    int64_t t1 = last ? hi : t0 == 0 && hi <= L ? 0 : hi - R;
    t1 = max64(t1, t0);
    *n_out = t1 - t0;
    if (t1 > t0) {
        int left = (int)(L - (t0 - a)), right = (int)(R - (hi - t1));
        const mg_tensor *in = &w;
        mg_tensor p;
        if (left || right || elu_in) {
            if ((rc = scratch(ec, EC_BUF_P, mg_tensor_rows(&w), mg_tensor_cols(&w) + left + right,
                              &p, err)))
                return rc;
            if (elu_in && be->ops->pad_reflect_elu) {
                be->ops->pad_reflect_elu(be, &p, &w, left, right);
            } else {
                be->ops->pad_reflect(be, &p, &w, left, right);
                if (elu_in)
                    be->ops->elu(be, &p);
            }
            in = &p;
        }
        if ((rc = scratch(ec, out_role, (int64_t)s->B * cv->c_out, t1 - t0, y, err)))
            return rc;
        be->ops->conv1d(be, y, in, cv->w, cv->b, s->B, 1, cv->dil);
    }
    st->out_done = t1;
    return keep(ec, &st->kept, &w, a, max64(0, t1 - L), hi, err);
}

/* A transposed conv over its new input columns (already through the ELU). */
static mg_code convt_step(mg_encodec_stream *s, int ci, const mg_tensor *x_new, int64_t n_new,
                          int last, int out_role, mg_tensor *y, int64_t *n_out, mg_error *err)
{
    mg_encodec *ec = s->ec;
    const ec_conv *cv = &ec->convs[ci];
    ecs_conv *st = &s->convs[ci];
    int64_t r = cv->stride, K = cv->k, trim = K - r, tl = trim - trim / 2;
    mg_tensor w;
    mg_code rc = window(ec, &st->kept, x_new, n_new, &w, err);
    if (rc != MG_OK)
        return rc;
    int64_t a = st->kept.lo, hi = a + st->kept.n + n_new, j0 = st->out_done;
    /* full output f is complete once every input t <= f / r is known */
    int64_t j1 = max64(j0, last ? hi * r : hi * r - tl);
    *n_out = j1 - j0;
    if (j1 > j0) {
        if ((rc = scratch(ec, out_role, (int64_t)s->B * cv->c_out, j1 - j0, y, err)))
            return rc;
        ec->be->ops->conv_transpose1d(ec->be, y, &w, cv->w, cv->b, s->B, (int)r,
                                      (int)(j0 + tl - a * r));
    }
    st->out_done = j1;
    /* the first input the next output reads */
    int64_t f = j1 + tl, first = f - K + 1 <= 0 ? 0 : (f - K) / r + 1;
    return keep(ec, &st->kept, &w, a, min64(max64(first, a), hi), hi, err);
}

/* Residual block b (convs ci, ci + 1): out = x + conv2(elu(conv1(elu(x)))). */
static mg_code res_step(mg_encodec_stream *s, int b, int ci, const mg_tensor *x_new,
                        int64_t n_new, int last, int out_role, mg_tensor *y, int64_t *n_out,
                        mg_error *err)
{
    mg_encodec *ec = s->ec;
    mg_tensor h, w, r;
    int64_t nh;
    mg_code rc = conv_step(s, ci, x_new, n_new, last, 1, EC_BUF_H, &h, &nh, err);
    if (rc == MG_OK)
        rc = conv_step(s, ci + 1, &h, nh, last, 1, out_role, y, n_out, err);
    ecs_cols *k = &s->res[b];
    if (rc == MG_OK)
        rc = window(ec, k, x_new, n_new, &w, err);
    if (rc != MG_OK)
        return rc;
    int64_t lo = k->lo, hi = lo + k->n + n_new;
    if (*n_out > 0) {
        if ((rc = scratch(ec, EC_BUF_P, k->rows, *n_out, &r, err)))
            return rc;
        copy_cols(ec->be, &r, 0, &w, 0, *n_out);
        ec->be->ops->add(ec->be, y, &r); /* conv + x: the bits of x + conv */
    }
    return keep(ec, k, &w, lo, lo + *n_out, hi, err);
}

/* The frame-rate part over n new frames of codes (codes[(b*K + q)*ld + t]):
 * codebooks, the input conv, the LSTM with its residual; *out = the new
 * columns [B*c0, *n_out] in scratch C. */
static mg_code frame_part(mg_encodec_stream *s, const int32_t *codes, int64_t n, int64_t ld,
                          int last, mg_tensor *out, int64_t *n_out, mg_error *err)
{
    mg_encodec *ec = s->ec;
    mg_backend *be = ec->be;
    const int64_t B = s->B, K = ec->n_q, hid = ec->hidden, c = ec->c0;
    mg_tensor e, x, y, xt;
    mg_code rc;
    *n_out = 0;
    if (n > 0) {
        if (B * n > s->ids_cap) {
            int32_t *ids = realloc(s->ids, (size_t)(B * n) * sizeof *ids);
            if (!ids)
                return mg_fail(err, MG_ERR_NOMEM, "encodec: out of memory");
            s->ids = ids;
            s->ids_cap = B * n;
        }
        /* emb[b*n + t, :] = Σ_q codebook_q[codes[b, q, t]], then channel-first */
        if ((rc = scratch(ec, EC_BUF_B, B * n, hid, &e, err)) ||
            (rc = scratch(ec, EC_BUF_A, B * hid, n, &x, err)))
            return rc;
        for (int64_t q = 0; q < K; q++) {
            for (int64_t b = 0; b < B; b++)
                for (int64_t t = 0; t < n; t++)
                    s->ids[b * n + t] = codes[mg_ec_code_row(ec, b, q) * ld + t];
            be->ops->embed(be, &e, ec->codebooks[q], s->ids, B * n, q > 0);
        }
        be->ops->transpose(be, &x, &e, (int)B);
        if ((rc = emit(&s->tr, "quantizer_embeddings", &x, err)))
            return rc;
    } else {
        /* no new frames (the end): the conv still has its right edge to do */
        x = (mg_tensor){.be = be, .dtype = MG_DT_F32, .ndim = 2, .ne = {B * hid, 0}};
    }
    int64_t m;
    if ((rc = conv_step(s, 0, &x, n, last, 0, EC_BUF_B, &y, &m, err)))
        return rc;
    if ((rc = emit_layer(&s->tr, 0, &y, err)) || m == 0)
        return rc;

    /* LSTM over time (rows = frames), residual: x + lstm(x) */
    if ((rc = scratch(ec, EC_BUF_X, B * m, c, &xt, err)) ||
        (rc = mg_ec_ws_get(ec, EC_BUF_H, B * m * c, err)) ||
        (rc = mg_ec_ws_get(ec, EC_BUF_P, B * m * c, err)))
        return rc;
    mg_tensor hin = xt;
    be->ops->transpose(be, &xt, &y, (int)B);
    for (int l = 0; l < ec->n_lstm; l++) {
        mg_tensor hout = view(ec->ws[l % 2 ? EC_BUF_P : EC_BUF_H], B * m, c);
        const ec_lstm *ls = &ec->lstm[l];
        if (s->carry)
            be->ops->lstm_state(be, &hout, &hin, ls->w_ih, ls->w_hh, ls->b_ih, ls->b_hh, (int)B,
                                s->lstm_started ? s->lstm_state[l] : NULL, s->lstm_state[l]);
        else
            be->ops->lstm(be, &hout, &hin, ls->w_ih, ls->w_hh, ls->b_ih, ls->b_hh, (int)B);
        hin = hout;
    }
    s->lstm_started = 1;
    be->ops->add(be, &xt, &hin);
    if ((rc = scratch(ec, EC_BUF_C, B * c, m, out, err)))
        return rc;
    be->ops->transpose(be, out, &xt, (int)B);
    *n_out = m;
    return emit_layer(&s->tr, 1, out, err);
}

/* The upsampling stack over n new frame-rate columns (cols of C starting at
 * col0), then the new audio to on_audio. */
static mg_code upsample_part(mg_encodec_stream *s, const mg_tensor *fr, int64_t col0, int64_t n,
                             int last, mg_error *err)
{
    mg_encodec *ec = s->ec;
    mg_backend *be = ec->be;
    const int64_t B = s->B;
    int roles[2] = {EC_BUF_A, EC_BUF_B}, cur_role = 0, layer = 2, blk = 0, ci = 1;
    int64_t c = ec->c0, m;
    mg_tensor x, y;
    mg_code rc;
    if ((rc = scratch(ec, EC_BUF_A, B * c, n, &x, err)))
        return rc;
    copy_cols(be, &x, 0, fr, col0, n);
    for (int i = 0; i < ec->n_ratios; i++, c /= 2) {
        if (n > 0)
            be->ops->elu(be, &x);
        if ((rc = emit_layer(&s->tr, layer++, &x, err)) ||
            (rc = convt_step(s, ci++, &x, n, last, roles[!cur_role], &y, &m, err)))
            return rc;
        x = y, n = m, cur_role = !cur_role;
        if ((rc = emit_layer(&s->tr, layer++, &x, err)))
            return rc;
        for (int j = 0; j < ec->res_layers; j++, ci += 2, blk++) {
            if ((rc = res_step(s, blk, ci, &x, n, last, roles[!cur_role], &y, &m, err)))
                return rc;
            x = y, n = m, cur_role = !cur_role;
            if ((rc = emit_layer(&s->tr, layer++, &x, err)))
                return rc;
        }
    }
    if (n > 0)
        be->ops->elu(be, &x);
    if ((rc = emit_layer(&s->tr, layer++, &x, err)) ||
        (rc = conv_step(s, ci, &x, n, last, 0, roles[!cur_role], &y, &m, err)) ||
        (rc = emit_layer(&s->tr, layer, &y, err)) || m == 0)
        return rc;
    if (B * m > s->host_cap) {
        float *h = realloc(s->host, (size_t)(B * m) * sizeof *h);
        if (!h)
            return mg_fail(err, MG_ERR_NOMEM, "encodec: out of memory for audio");
        s->host = h;
        s->host_cap = B * m;
    }
    if ((rc = be->ops->sync(be, err)) ||
        (rc = be->ops->download(be, &y, 0, s->host, (size_t)(B * m) * sizeof(float), err)))
        return rc;
    rc = s->on_audio(s->ud, s->host, (int)B, s->samples_out, m, err);
    s->samples_out += m;
    return rc;
}

/* Frame-rate columns through the upsampling stack, chunk frames at a time
 * (bounding its activations, hop times longer than the frames). */
static mg_code upsample_chunks(mg_encodec_stream *s, const mg_tensor *fr, int64_t n, int last,
                               mg_error *err)
{
    int64_t step = s->chunk > 0 && !s->tr.fn ? s->chunk : max64(n, 1);
    mg_code rc = MG_OK;
    int64_t f0 = 0;
    do {
        int64_t k = min64(step, n - f0);
        rc = upsample_part(s, fr, f0, k, last && f0 + k >= n, err);
        f0 += k;
    } while (rc == MG_OK && f0 < n);
    return rc;
}

static mg_code check_codes(const mg_encodec_stream *s, const int32_t *codes, int64_t n,
                           int64_t ld, mg_error *err)
{
    const mg_encodec *ec = s->ec;
    const int64_t K = (int64_t)ec->n_q * ec->channels;
    for (int64_t r = 0; r < s->B * ec->n_q; r++)
        for (int64_t t = 0; t < n; t++) {
            int32_t v = codes[r * ld + t];
            if (v < 0 || v >= ec->codebook_size)
                return mg_fail(err, MG_ERR_INVALID,
                               "encodec: audio code %d at batch %lld, codebook %lld, frame %lld "
                               "is outside [0, %d)",
                               (int)v, (long long)(r / K), (long long)(r % K),
                               (long long)(s->frames_in + t), ec->codebook_size);
        }
    return MG_OK;
}

/* One pass: n new frames (last: and the end). */
static mg_code stream_run(mg_encodec_stream *s, const int32_t *codes, int64_t n, int64_t ld,
                          int last, mg_error *err)
{
    mg_encodec *ec = s->ec;
    mg_code rc = MG_OK;
    if (s->finished)
        return mg_fail(err, MG_ERR_INVALID, "encodec: the stream has ended (finished, or a push "
                       "failed)");
    if (n < 0 || (n > 0 && (!codes || ld < n)))
        return mg_fail(err, MG_ERR_INVALID, "encodec: %lld frames with a frame stride of %lld",
                       (long long)n, (long long)ld);
    if (n > 0 && (rc = check_codes(s, codes, n, ld, err)))
        return rc;
    if (last && s->frames_in + n < 1)
        return mg_fail(err, MG_ERR_INVALID, "encodec: a stream of no frames");
    const int64_t K = ec->n_q;
    if (!s->carry) {
        /* the LSTM needs every frame in one call: collect them */
        int64_t need = s->frames_in + n;
        if (need > s->codes_cap) {
            int64_t cap = max64(need, 2 * s->codes_cap);
            int32_t *c = malloc((size_t)(s->B * K * cap) * sizeof *c);
            if (!c)
                return mg_fail(err, MG_ERR_NOMEM, "encodec: out of memory for codes");
            for (int64_t r = 0; r < s->B * K && s->frames_in > 0; r++)
                memcpy(c + r * cap, s->codes + r * s->codes_cap,
                       (size_t)s->frames_in * sizeof *c);
            free(s->codes);
            s->codes = c;
            s->codes_cap = cap;
        }
        for (int64_t r = 0; r < s->B * K && n > 0; r++)
            memcpy(s->codes + r * s->codes_cap + s->frames_in, codes + r * ld,
                   (size_t)n * sizeof *codes);
        s->frames_in += n;
        if (!last)
            return MG_OK;
        codes = s->codes;
        n = s->frames_in;
        ld = s->codes_cap;
    } else {
        s->frames_in += n;
    }
    mg_tensor fr;
    int64_t m;
    rc = frame_part(s, codes, n, ld, last, &fr, &m, err);
    if (rc == MG_OK && (m > 0 || last))
        rc = upsample_chunks(s, &fr, m, last, err);
    s->finished = last || rc != MG_OK;
    mg_ec_ws_trim(ec, rc != MG_OK);
    if (rc != MG_OK) {
        /* an early exit leaves no op failure pending for the next job's sync */
        mg_error drained;
        ec->be->ops->sync(ec->be, &drained);
    }
    return rc;
}

mg_code mg_encodec_stream_push(mg_encodec_stream *s, const int32_t *codes, int n,
                               int64_t frame_stride, mg_error *err)
{
    return stream_run(s, codes, n, frame_stride, 0, err);
}

mg_code mg_encodec_stream_finish(mg_encodec_stream *s, mg_error *err)
{
    return stream_run(s, NULL, 0, 0, 1, err);
}

int64_t mg_encodec_stream_frames(const mg_encodec_stream *s) { return s->frames_in; }
int64_t mg_encodec_stream_samples(const mg_encodec_stream *s) { return s->samples_out; }

void mg_encodec_stream_free(mg_encodec_stream *s)
{
    if (!s)
        return;
    if (s->convs)
        for (int i = 0; i < s->ec->n_convs; i++)
            mg_tensor_free(s->convs[i].kept.buf);
    if (s->res)
        for (int i = 0; i < s->ec->n_ratios * s->ec->res_layers; i++)
            mg_tensor_free(s->res[i].buf);
    if (s->lstm_state)
        for (int l = 0; l < s->ec->n_lstm; l++)
            mg_tensor_free(s->lstm_state[l]);
    free(s->convs);
    free(s->res);
    free(s->lstm_state);
    free(s->codes);
    free(s->ids);
    free(s->host);
    free(s->tr.host);
    free(s);
}

mg_code mg_encodec_stream_open(mg_encodec_stream **out, mg_encodec *ec, int batch,
                               mg_encodec_audio_fn on_audio, void *ud, mg_error *err)
{
    *out = NULL;
    if (batch < 1 || !on_audio)
        return mg_fail(err, MG_ERR_INVALID, "encodec: a stream of batch %d%s", batch,
                       on_audio ? "" : " without an audio callback");
    mg_encodec_stream *s = calloc(1, sizeof *s);
    if (!s)
        return mg_fail(err, MG_ERR_NOMEM, "encodec: out of memory");
    /* each channel is decoded as an item of its own */
    batch *= ec->channels;
    s->ec = ec;
    s->B = batch;
    s->on_audio = on_audio;
    s->ud = ud;
    s->carry = ec->be->ops->lstm_state != NULL;
    /* the upsampling stack's frames per pass shared among the items, so
     * that its activations stay as bounded as one item's */
    s->chunk = ec->chunk_frames > 0 ? max64(1, ec->chunk_frames / batch) : 0;
    int n_res = ec->n_ratios * ec->res_layers;
    s->convs = calloc((size_t)ec->n_convs, sizeof *s->convs);
    s->res = calloc((size_t)(n_res > 0 ? n_res : 1), sizeof *s->res);
    s->lstm_state = calloc((size_t)ec->n_lstm, sizeof *s->lstm_state);
    mg_code rc = s->convs && s->res && s->lstm_state
                     ? MG_OK
                     : mg_fail(err, MG_ERR_NOMEM, "encodec: out of memory");
    for (int i = 0; rc == MG_OK && i < ec->n_convs; i++)
        s->convs[i].kept.rows = (int64_t)batch * ec->convs[i].c_in;
    for (int i = 0, ci = 1; rc == MG_OK && i < ec->n_ratios; i++) {
        ci++;
        for (int j = 0; j < ec->res_layers; j++, ci += 2)
            s->res[i * ec->res_layers + j].rows = (int64_t)batch * ec->convs[ci].c_in;
    }
    for (int l = 0; rc == MG_OK && s->carry && l < ec->n_lstm; l++)
        rc = mg_tensor_new2(&s->lstm_state[l], ec->be, 2 * (int64_t)batch, ec->c0, err);
    if (rc != MG_OK) {
        mg_encodec_stream_free(s);
        return rc;
    }
    *out = s;
    return MG_OK;
}

int mg_encodec_lookahead_frames(const mg_encodec *ec)
{
    /* the input the last sample of frame f reads, walked back layer by
     * layer (f far from the start: no reflection) */
    const int64_t f = 1 << 20;
    int64_t need = (f + 1) * ec->hop - 1 + conv_pad_total(&ec->convs[ec->n_convs - 1]) / 2;
    int ci = ec->n_convs - 2;
    for (int i = ec->n_ratios - 1; i >= 0; i--) {
        for (int j = 0; j < 2 * ec->res_layers; j++, ci--)
            need += conv_pad_total(&ec->convs[ci]) / 2;
        const ec_conv *up = &ec->convs[ci--];
        int64_t trim = up->k - up->stride;
        need = (need + trim - trim / 2) / up->stride;
    }
    need += conv_pad_total(&ec->convs[0]) / 2;
    return (int)(need - f);
}

/* ---------------------------------------------------------------- one call */

typedef struct {
    float  *audio;
    int64_t per_item; /* samples per item */
} whole_ctx;

static mg_code whole_audio(void *ud, const float *audio, int batch, int64_t offset, int64_t n,
                           mg_error *err)
{
    const whole_ctx *w = ud;
    (void)err;
    for (int b = 0; b < batch; b++)
        memcpy(w->audio + b * w->per_item + offset, audio + b * n, (size_t)n * sizeof *audio);
    return MG_OK;
}

mg_code mg_encodec_decode(mg_encodec *ec, const int32_t *codes, int batch, int frames,
                          float *audio, mg_encodec_trace_fn trace, void *trace_ud,
                          mg_error *err)
{
    if (batch < 1 || frames < 1)
        return mg_fail(err, MG_ERR_INVALID, "encodec: batch %d x %d frames", batch, frames);
    whole_ctx w = {audio, (int64_t)frames * ec->hop}; /* rows: items x channels */
    mg_encodec_stream *s;
    mg_code rc = mg_encodec_stream_open(&s, ec, batch, whole_audio, &w, err);
    if (rc != MG_OK)
        return rc;
    /* pushed as the upsampling stack takes them (s->chunk); a trace wants
     * whole tensors: one pass */
    int64_t step = s->chunk > 0 && !trace ? s->chunk : frames;
    s->tr.fn = trace;
    s->tr.ud = trace_ud;
    if (trace)
        rc = stream_run(s, codes, frames, frames, 1, err);
    for (int64_t f0 = 0; !trace && rc == MG_OK && f0 < frames; f0 += step)
        rc = mg_encodec_stream_push(s, codes + f0, (int)min64(step, frames - f0), frames, err);
    if (!trace && rc == MG_OK)
        rc = mg_encodec_stream_finish(s, err);
    mg_encodec_stream_free(s);
    return rc;
}
