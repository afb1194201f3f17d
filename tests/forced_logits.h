/* Teacher-forced decoder logits for the tests that compare weight formats
 * or kernels on one model: fixed codes, a fixed encoder output. */
#ifndef MG_TEST_FORCED_LOGITS_H
#define MG_TEST_FORCED_LOGITS_H
#include <stdint.h>
#include <stdlib.h>

#include "runtime/model_parts.h"

/* Teacher-forced logits of L columns of fixed codes for a text row and an
 * unconditional row ([2, K, L, V], new array; NULL on failure): every
 * column attends over all the columns before it. */
static inline float *tu_forced_logits(mg_model *m, int L)
{
    const mg_config *c = mg_model_config(m);
    mg_backend *be = mg_model_backend(m);
    mg_decoder *dec = mg_model_decoder(m);
    enum { ENC = 3 };
    int K = c->num_codebooks, V = c->dec_vocab;
    int64_t H = c->dec_hidden;
    mg_error err = {0};
    mg_tensor *enc = NULL, *logits = NULL;
    mg_dec_state st;
    int have_state = 0;
    uint8_t mask[2 * ENC] = {1, 1, 1, 0, 0, 0};
    int32_t *ids = malloc((size_t)2 * K * L * sizeof *ids);
    float *out = malloc((size_t)2 * K * L * V * sizeof *out);
    mg_code rc = ids && out ? MG_OK : MG_ERR_NOMEM;
    if (rc == MG_OK)
        rc = mg_tensor_new2(&enc, be, 2 * ENC, H, &err);
    if (rc == MG_OK) {
        float *e = enc->data; /* the CPU backend's tensors are host memory */
        for (int64_t i = 0; i < 2 * ENC * H; i++)
            e[i] = i < ENC * H ? (float)((i * 7919) % 2001) / 1000.0f - 1.0f : 0.0f;
        for (int i = 0; i < 2 * K * L; i++)
            ids[i] = i % L == 0 ? c->pad_token : (i * 37 + i / L) % V;
        rc = mg_dec_state_init(dec, &st, 2, L, enc, mask, ENC, &err);
        have_state = rc == MG_OK;
    }
    if (rc == MG_OK)
        rc = mg_tensor_new2(&logits, be, 2 * K * L, V, &err);
    if (rc == MG_OK)
        rc = mg_decoder_forward(dec, &st, ids, L, 0, logits, NULL, NULL, &err);
    if (rc == MG_OK)
        rc = be->ops->download(be, logits, 0, out, (size_t)2 * K * L * V * sizeof *out, &err);
    if (have_state)
        mg_dec_state_free(dec, &st);
    mg_tensor_free(enc);
    mg_tensor_free(logits);
    free(ids);
    if (rc != MG_OK) {
        free(out);
        return NULL;
    }
    return out;
}
#endif
