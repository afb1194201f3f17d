#include "io/config.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    json_t     *obj;
    const char *section;
    mg_error   *err;
    mg_code     rc;
} reader;

/* Integer field in [lo, hi]; a missing field takes def (def < lo: required). */
static int get_int(reader *r, const char *key, int def, long long lo, long long hi)
{
    if (r->rc != MG_OK)
        return def;
    json_t *v = r->obj ? json_object_get(r->obj, key) : NULL;
    if (!v || json_is_null(v)) {
        if (def < lo)
            r->rc = mg_fail(r->err, MG_ERR_CORRUPT, "config: %s.%s is missing", r->section, key);
        return def;
    }
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
        r->rc = mg_fail(r->err, MG_ERR_CORRUPT, "config: %s.%s must be an integer in [%lld, %lld]",
                        r->section, key, lo, hi);
        return def;
    }
    return (int)json_integer_value(v);
}

static float get_num(reader *r, const char *key, float def, double lo, double hi)
{
    if (r->rc != MG_OK)
        return def;
    json_t *v = r->obj ? json_object_get(r->obj, key) : NULL;
    if (!v || json_is_null(v))
        return def;
    if (!json_is_number(v) || json_number_value(v) < lo || json_number_value(v) > hi) {
        r->rc = mg_fail(r->err, MG_ERR_CORRUPT, "config: %s.%s must be a number in [%g, %g]",
                        r->section, key, lo, hi);
        return def;
    }
    return (float)json_number_value(v);
}

static const char *get_str(reader *r, const char *key)
{
    json_t *v = r->obj ? json_object_get(r->obj, key) : NULL;
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static int is_str(reader *r, const char *key, const char *want, const char *def)
{
    const char *s = get_str(r, key);
    return !strcmp(s ? s : def, want);
}

static mg_code parse_sections(mg_config *c, json_t *root, json_t *gen, mg_error *err)
{
    reader r = {.err = err, .rc = MG_OK};
    r.obj = json_object_get(root, "text_encoder");
    r.section = "text_encoder";
    if (!json_is_object(r.obj))
        return mg_fail(err, MG_ERR_CORRUPT, "config: text_encoder section is missing");
    c->t5_vocab = get_int(&r, "vocab_size", -1, 1, 1 << 20);
    c->t5_d_model = get_int(&r, "d_model", -1, 1, 1 << 16);
    c->t5_d_kv = get_int(&r, "d_kv", -1, 1, 1 << 12);
    c->t5_heads = get_int(&r, "num_heads", -1, 1, 1 << 10);
    c->t5_d_ff = get_int(&r, "d_ff", -1, 1, 1 << 18);
    c->t5_layers = get_int(&r, "num_layers", -1, 1, 1 << 10);
    c->t5_num_buckets = get_int(&r, "relative_attention_num_buckets", 32, 4, 1 << 12);
    c->t5_max_distance = get_int(&r, "relative_attention_max_distance", 128, 1, 1 << 20);
    if (r.rc == MG_OK && c->t5_max_distance <= c->t5_num_buckets / 4)
        return mg_fail(err, MG_ERR_CORRUPT,
                       "config: text_encoder.relative_attention_max_distance %d must exceed num_buckets/4",
                       c->t5_max_distance);
    c->t5_eps = get_num(&r, "layer_norm_epsilon", 1e-6f, 0, 1);
    if (r.rc == MG_OK && (!is_str(&r, "feed_forward_proj", "relu", "relu") ||
                          !is_str(&r, "dense_act_fn", "relu", "relu")))
        return mg_fail(err, MG_ERR_UNSUPPORTED,
                       "config: text_encoder.feed_forward_proj: only 'relu' (T5 v1.0) is supported");
    if (r.rc != MG_OK)
        return r.rc;

    r.obj = json_object_get(root, "decoder");
    r.section = "decoder";
    if (!json_is_object(r.obj))
        return mg_fail(err, MG_ERR_CORRUPT, "config: decoder section is missing");
    c->dec_hidden = get_int(&r, "hidden_size", -1, 4, 1 << 16);
    c->dec_heads = get_int(&r, "num_attention_heads", -1, 1, 1 << 10);
    c->dec_layers = get_int(&r, "num_hidden_layers", -1, 1, 1 << 10);
    c->dec_ffn = get_int(&r, "ffn_dim", -1, 1, 1 << 18);
    c->dec_vocab = get_int(&r, "vocab_size", -1, 2, 1 << 20);
    c->num_codebooks = get_int(&r, "num_codebooks", -1, 1, MG_MAX_CODEBOOKS);
    c->max_positions = get_int(&r, "max_position_embeddings", 2048, 1, 1 << 20);
    c->pad_token = get_int(&r, "pad_token_id", -1, 0, 1 << 20);
    if (r.rc == MG_OK && !is_str(&r, "activation_function", "gelu", "gelu"))
        return mg_fail(err, MG_ERR_UNSUPPORTED, "config: decoder.activation_function: only 'gelu' is supported");
    if (r.rc == MG_OK && json_is_true(json_object_get(r.obj, "scale_embedding")))
        return mg_fail(err, MG_ERR_UNSUPPORTED, "config: decoder.scale_embedding=true is not supported");
    c->audio_channels = get_int(&r, "audio_channels", 1, 1, 2);
    if (r.rc != MG_OK)
        return r.rc;
    if (c->num_codebooks % c->audio_channels)
        return mg_fail(err, MG_ERR_CORRUPT,
                       "config: decoder.num_codebooks %d is not a multiple of audio_channels %d",
                       c->num_codebooks, c->audio_channels);
    c->ec_codebooks = c->num_codebooks / c->audio_channels;
    if (c->dec_hidden % c->dec_heads || c->dec_hidden % 2)
        return mg_fail(err, MG_ERR_CORRUPT,
                       "config: decoder.hidden_size %d is not divisible by num_attention_heads %d (and 2)",
                       c->dec_hidden, c->dec_heads);
    if (c->pad_token != c->dec_vocab)
        return mg_fail(err, MG_ERR_CORRUPT,
                       "config: decoder.pad_token_id %d must equal vocab_size %d (row V of the code embeddings)",
                       c->pad_token, c->dec_vocab);

    r.obj = json_object_get(root, "audio_encoder");
    r.section = "audio_encoder";
    if (!json_is_object(r.obj))
        return mg_fail(err, MG_ERR_CORRUPT, "config: audio_encoder section is missing");
    c->ec_hidden = get_int(&r, "hidden_size", -1, 1, 1 << 14);
    c->ec_filters = get_int(&r, "num_filters", -1, 1, 1 << 12);
    c->ec_codebook_size = get_int(&r, "codebook_size", -1, 1, 1 << 20);
    c->ec_kernel = get_int(&r, "kernel_size", 7, 1, 63);
    c->ec_last_kernel = get_int(&r, "last_kernel_size", 7, 1, 63);
    c->ec_res_kernel = get_int(&r, "residual_kernel_size", 3, 1, 63);
    c->ec_lstm_layers = get_int(&r, "num_lstm_layers", 2, 0, 16);
    c->ec_res_layers = get_int(&r, "num_residual_layers", 1, 1, 16);
    c->ec_dilation_growth = get_int(&r, "dilation_growth_rate", 2, 1, 16);
    c->ec_compress = get_int(&r, "compress", 2, 1, 64);
    c->sample_rate = get_int(&r, "sampling_rate", -1, 1000, 384000);
    if (r.rc == MG_OK && get_int(&r, "audio_channels", 1, 1, 2) != 1)
        return mg_fail(err, MG_ERR_UNSUPPORTED, "config: audio_encoder.audio_channels: only mono is supported");
    if (r.rc != MG_OK)
        return r.rc;
    if (json_is_true(json_object_get(r.obj, "use_causal_conv")) ||
        json_is_true(json_object_get(r.obj, "use_conv_shortcut")) ||
        !is_str(&r, "norm_type", "weight_norm", "weight_norm") ||
        !is_str(&r, "pad_mode", "reflect", "reflect"))
        return mg_fail(err, MG_ERR_UNSUPPORTED,
                       "config: audio_encoder: only non-causal weight-norm convs with reflect padding and identity shortcuts are supported");
    json_t *ratios = json_object_get(r.obj, "upsampling_ratios");
    if (!json_is_array(ratios) || json_array_size(ratios) < 1 || json_array_size(ratios) > MG_MAX_RATIOS)
        return mg_fail(err, MG_ERR_CORRUPT, "config: audio_encoder.upsampling_ratios must be a list of 1..%d integers", MG_MAX_RATIOS);
    c->ec_n_ratios = (int)json_array_size(ratios);
    c->hop = 1;
    for (int i = 0; i < c->ec_n_ratios; i++) {
        json_t *v = json_array_get(ratios, (size_t)i);
        if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 64)
            return mg_fail(err, MG_ERR_CORRUPT, "config: audio_encoder.upsampling_ratios[%d] must be in [1, 64]", i);
        c->ec_ratios[i] = (int)json_integer_value(v);
        if ((long long)c->hop * c->ec_ratios[i] > (1 << 16))
            return mg_fail(err, MG_ERR_CORRUPT,
                           "config: audio_encoder.upsampling_ratios multiply to more than 65536 samples per frame");
        c->hop *= c->ec_ratios[i];
    }
    /* channels halve at each upsampling stage, starting from filters * 2^n */
    if ((long long)c->ec_filters << c->ec_n_ratios > (1 << 16))
        return mg_fail(err, MG_ERR_CORRUPT, "config: audio_encoder.num_filters %d is too large", c->ec_filters);
    if (c->ec_codebook_size != c->dec_vocab)
        return mg_fail(err, MG_ERR_CORRUPT,
                       "config: audio_encoder.codebook_size %d differs from decoder.vocab_size %d",
                       c->ec_codebook_size, c->dec_vocab);

    /* generation_config.json */
    r.obj = gen;
    r.section = "generation_config";
    c->decoder_start = get_int(&r, "decoder_start_token_id", c->pad_token, 0, 1 << 20);
    c->max_length = get_int(&r, "max_length", 1500, 2, 1 << 20);
    c->top_k = get_int(&r, "top_k", 50, 0, 1 << 20);
    /* the ranges mg_generate accepts, so a model never loads with defaults it refuses */
    c->top_p = get_num(&r, "top_p", 1.0f, 1e-6, 1);
    c->temperature = get_num(&r, "temperature", 1.0f, 1e-3, 100);
    c->guidance_scale = get_num(&r, "guidance_scale", 1.0f, 0, 100);
    json_t *ds = gen ? json_object_get(gen, "do_sample") : NULL;
    if (ds && !json_is_boolean(ds))
        return mg_fail(err, MG_ERR_CORRUPT, "config: generation_config.do_sample must be true or false");
    c->do_sample = ds ? json_is_true(ds) : 0;
    if (r.rc == MG_OK && c->decoder_start != c->pad_token)
        return mg_fail(err, MG_ERR_UNSUPPORTED,
                       "config: generation_config.decoder_start_token_id %d differs from the pad token %d",
                       c->decoder_start, c->pad_token);
    return r.rc;
}

mg_code mg_config_parse(mg_config *cfg, const char *config_json, size_t len,
                        const char *gen_json, size_t gen_len, mg_error *err)
{
    memset(cfg, 0, sizeof *cfg);
    json_error_t jerr;
    json_t *root = json_loadb(config_json, len, 0, &jerr);
    if (!root)
        return mg_fail(err, MG_ERR_CORRUPT, "config.json: %s (line %d)", jerr.text, jerr.line);
    json_t *gen = NULL;
    if (gen_json) {
        gen = json_loadb(gen_json, gen_len, 0, &jerr);
        if (!gen) {
            json_decref(root);
            return mg_fail(err, MG_ERR_CORRUPT, "generation_config.json: %s (line %d)", jerr.text, jerr.line);
        }
    }
    mg_code rc = !json_is_object(root) ? mg_fail(err, MG_ERR_CORRUPT, "config.json: not a JSON object")
                 : gen && !json_is_object(gen) ? mg_fail(err, MG_ERR_CORRUPT, "generation_config.json: not a JSON object")
                 : parse_sections(cfg, root, gen, err);
    json_decref(root);
    json_decref(gen);
    return rc;
}

mg_code mg_read_file(const char *path, char **buf, size_t *len, size_t max_len, mg_error *err)
{
    *buf = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return mg_fail(err, errno == ENOENT ? MG_ERR_NOT_FOUND : MG_ERR_IO, "%s: %s", path, strerror(errno));
    size_t cap = 4096, n = 0;
    char *b = malloc(cap + 1);
    while (b) {
        n += fread(b + n, 1, cap - n, f);
        if (n < cap || ferror(f))
            break;
        if (cap >= max_len) {
            free(b);
            fclose(f);
            return mg_fail(err, MG_ERR_CORRUPT, "%s: larger than %zu bytes", path, max_len);
        }
        char *nb = realloc(b, cap * 2 + 1);
        if (!nb) {
            free(b);
            b = NULL;
            break;
        }
        b = nb;
        cap *= 2;
    }
    int bad = !b || ferror(f);
    fclose(f);
    if (bad) {
        free(b);
        return mg_fail(err, b ? MG_ERR_IO : MG_ERR_NOMEM, "%s: read failed", path);
    }
    b[n] = 0;
    *buf = b;
    *len = n;
    return MG_OK;
}

mg_code mg_config_load(mg_config *cfg, const char *dir, mg_error *err)
{
    char path[4096];
    char *cj = NULL, *gj = NULL;
    size_t cl = 0, gl = 0;
    snprintf(path, sizeof path, "%s/config.json", dir);
    mg_code rc = mg_read_file(path, &cj, &cl, 16u << 20, err);
    if (rc != MG_OK)
        return rc;
    snprintf(path, sizeof path, "%s/generation_config.json", dir);
    rc = mg_read_file(path, &gj, &gl, 16u << 20, err);
    if (rc == MG_ERR_NOT_FOUND)
        rc = MG_OK; /* optional: defaults apply */
    if (rc == MG_OK)
        rc = mg_config_parse(cfg, cj, cl, gj, gl, err);
    if (rc != MG_OK && err && !strstr(err->msg, dir))
        mg_fail_context(err, "%s", dir);
    free(cj);
    free(gj);
    return rc;
}
