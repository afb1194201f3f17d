/* The model's shape and generation defaults, read from the hub's config.json
 * (nested text_encoder / audio_encoder / decoder) and generation_config.json. */
#ifndef MG_CONFIG_H
#define MG_CONFIG_H
#include <stddef.h>
#include "base/error.h"

#define MG_MAX_RATIOS 8
#define MG_MAX_CODEBOOKS 64

typedef struct {
    /* text_encoder (T5) */
    int   t5_vocab, t5_d_model, t5_d_kv, t5_heads, t5_d_ff, t5_layers;
    int   t5_num_buckets, t5_max_distance;
    float t5_eps;
    /* decoder */
    int   dec_hidden, dec_heads, dec_layers, dec_ffn, dec_vocab, num_codebooks, max_positions;
    int   pad_token;           /* = decoder start / bos; row V of the code embeddings */
    /* 1 (mono) or 2 (stereo: codebook c*2 + ch is channel ch's EnCodec
     * codebook c, both delayed by c); EnCodec, a mono codec, runs once per
     * channel with ec_codebooks = num_codebooks / audio_channels quantizers */
    int   audio_channels, ec_codebooks;
    /* audio_encoder (EnCodec) */
    int   ec_hidden, ec_filters, ec_codebook_size, ec_kernel, ec_last_kernel, ec_res_kernel;
    int   ec_lstm_layers, ec_res_layers, ec_dilation_growth, ec_compress, sample_rate;
    int   ec_ratios[MG_MAX_RATIOS], ec_n_ratios;
    int   hop;                 /* product of the ratios: samples per frame */
    /* generation_config.json */
    int   do_sample, top_k, max_length, decoder_start;
    float guidance_scale, temperature, top_p;
} mg_config;

/* Pure parse of the two JSON texts (gen may be NULL: defaults). Every value is
 * range-checked; errors name the field ("decoder.hidden_size: ..."). */
mg_code mg_config_parse(mg_config *cfg, const char *config_json, size_t len,
                        const char *gen_json, size_t gen_len, mg_error *err);
/* Reads DIR/config.json and DIR/generation_config.json (optional). */
mg_code mg_config_load(mg_config *cfg, const char *dir, mg_error *err);
/* Reads a whole file into a malloc'd NUL-terminated buffer. */
mg_code mg_read_file(const char *path, char **buf, size_t *len, size_t max_len, mg_error *err);
#endif
