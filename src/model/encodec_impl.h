/* The EnCodec model's layout, shared by its loader (encodec.c) and its
 * decoder (encodec_stream.c). Internal to src/model. */
#ifndef MG_ENCODEC_IMPL_H
#define MG_ENCODEC_IMPL_H
#include "model/encodec.h"

typedef struct {
    char       path[64];  /* module path, e.g. "decoder.layers.4.block.1.conv" */
    mg_tensor *w, *b;     /* folded weight ([out, in, k], transposed: [in, out, k]) and bias */
    int        c_in, c_out, k, dil, stride, transposed;
} ec_conv;

typedef struct {
    mg_tensor *w_ih, *w_hh, *b_ih, *b_hh;
} ec_lstm;

/* The decoder's scratch buffers, by role (see encodec_stream.c): the
 * running signal (ping-pong pair A/B), padded conv inputs (P), residual
 * hidden activations and LSTM outputs (H), the LSTM's time-major signal (X),
 * a conv's kept columns followed by its new ones (W), and the frame-rate
 * part's output (C). */
enum { EC_BUF_A, EC_BUF_B, EC_BUF_P, EC_BUF_H, EC_BUF_X, EC_BUF_W, EC_BUF_C, EC_N_BUFS };

struct mg_encodec {
    mg_backend *be;
    int         n_q, codebook_size, hidden, filters, c0, hop;
    int         n_ratios, ratios[MG_MAX_RATIOS], res_layers, n_lstm;
    mg_tensor **codebooks;   /* n_q x [codebook_size, hidden] */
    ec_lstm    *lstm;        /* n_lstm layers of width c0 */
    /* In layer order: input conv; per ratio the transposed conv and
     * res_layers x (block.1, block.3); output conv. */
    ec_conv    *convs;
    int         n_convs;
    int         chunk_frames; /* frames per decode pass of mg_encodec_decode (0: all) */
    /* Scratch kept from one decode pass to the next (passes over one model
     * never overlap: the model's run lock; a stream keeps its own state
     * elsewhere): fresh buffers cost page faults and zeroing on every pass.
     * Sized by the largest pass so far, freed after a pass that needed more
     * than MG_ENCODEC_KEEP_BYTES. */
    mg_tensor  *ws[EC_N_BUFS];
    int64_t     ws_cap[EC_N_BUFS]; /* floats */
};

/* Scratch buffer i with room for n floats: the kept one, or a new one (the
 * old contents are lost). */
mg_code mg_ec_ws_get(mg_encodec *ec, int i, int64_t n, mg_error *err);
/* Keeps the scratch for the next pass unless it grew past the bound (or drop). */
void    mg_ec_ws_trim(mg_encodec *ec, int drop);
#endif
