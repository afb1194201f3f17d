/* T5 v1.0 text encoder (the conditioning half of MusicGen). */
#ifndef MG_T5_H
#define MG_T5_H
#include "io/config.h"
#include "io/loader.h"

typedef struct {
    mg_tensor *ln_attn, *q, *k, *v, *o, *ln_ff, *wi, *wo;
} mg_t5_layer;

typedef struct {
    const mg_config *cfg;
    mg_backend      *be;
    mg_tensor       *embed;     /* [vocab, d_model] (shared, tied) */
    float           *rel_bias;  /* host [buckets, heads]: the bias table is built on the host */
    mg_t5_layer     *layers;
    mg_tensor       *ln_final;
} mg_t5;

/* Observer of intermediate tensors (golden checks); names as in golden_t5. */
typedef void (*mg_trace_fn)(void *ud, const char *name, const mg_tensor *t);

mg_code mg_t5_load(mg_t5 *t5, mg_loader *ld, const mg_config *cfg, mg_error *err);
void    mg_t5_free(mg_t5 *t5);

/* Bidirectional relative-position bucket for rel = k_pos - q_pos. */
int     mg_t5_bucket(int rel, int num_buckets, int max_distance);

/* ids/mask: host [batch, len]; out: [batch*len, d_model] last_hidden_state. */
mg_code mg_t5_encode(mg_t5 *t5, const int32_t *ids, const uint8_t *mask, int batch, int len,
                     mg_tensor *out, mg_trace_fn trace, void *ud, mg_error *err);
#endif
