/* musicgen-mkmodel: writes a random-initialised MusicGen model in exactly the
 * Hugging Face hub layout of facebook/musicgen-small (config.json,
 * generation_config.json, model.safetensors, spiece.model), so the loader,
 * the tests and the benchmarks run without downloading real weights.
 *
 *   musicgen-mkmodel --shape tiny|tiny64|small|medium|large [--seed N] [--dtype f32|f16|bf16]
 *                    [--positions N] [--layers N] [--stereo] [--spiece PATH] [--threads N] -o DIR
 *
 * Tensor names, shapes and init rules follow the golden README ("Checkpoint
 * keys", "Random init") and tiny-proj/state_dict_keys.json. Every value
 * depends only on (seed, tensor name, element index), never on the thread
 * count, so a seed always gives the same bytes. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/error.h"
#include "io/safetensors_write.h"
#include "spm_write.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors data is little-endian; this writer stores host floats as they are"
#endif

/* config.json of facebook/musicgen-small as transformers 4.43.4 writes it
 * (sorted keys; the golden musicgen-small-config). The shape table below
 * overwrites the size fields, so the same text serves every shape. */
static const char base_config_json[] =
    "{\"architectures\":[\"MusicgenForConditionalGeneration\"],"
    "\"audio_encoder\":{\"_name_or_path\":\"facebook/encodec_32khz\",\"add_cross_attention\":false,"
    "\"architectures\":[\"EncodecModel\"],\"audio_channels\":1,\"bad_words_ids\":null,"
    "\"begin_suppress_tokens\":null,\"bos_token_id\":null,\"chunk_length_s\":null,"
    "\"chunk_size_feed_forward\":0,\"codebook_dim\":128,\"codebook_size\":2048,\"compress\":2,"
    "\"cross_attention_hidden_size\":null,\"decoder_start_token_id\":null,"
    "\"dilation_growth_rate\":2,\"diversity_penalty\":0.0,\"do_sample\":false,"
    "\"early_stopping\":false,\"encoder_no_repeat_ngram_size\":0,\"eos_token_id\":null,"
    "\"exponential_decay_length_penalty\":null,\"finetuning_task\":null,"
    "\"forced_bos_token_id\":null,\"forced_eos_token_id\":null,\"hidden_size\":128,"
    "\"id2label\":{\"0\":\"LABEL_0\",\"1\":\"LABEL_1\"},\"is_decoder\":false,\"is_encoder_decoder\":false,"
    "\"kernel_size\":7,\"label2id\":{\"LABEL_0\":0,\"LABEL_1\":1},\"last_kernel_size\":7,"
    "\"length_penalty\":1.0,\"max_length\":20,\"min_length\":0,\"model_type\":\"encodec\","
    "\"no_repeat_ngram_size\":0,\"norm_type\":\"weight_norm\",\"normalize\":false,"
    "\"num_beam_groups\":1,\"num_beams\":1,\"num_filters\":64,\"num_lstm_layers\":2,"
    "\"num_residual_layers\":1,\"num_return_sequences\":1,\"output_attentions\":false,"
    "\"output_hidden_states\":false,\"output_scores\":false,\"overlap\":null,\"pad_mode\":\"reflect\","
    "\"pad_token_id\":null,\"prefix\":null,\"problem_type\":null,\"pruned_heads\":{},"
    "\"remove_invalid_values\":false,\"repetition_penalty\":1.0,\"residual_kernel_size\":3,"
    "\"return_dict\":true,\"return_dict_in_generate\":false,\"sampling_rate\":32000,"
    "\"sep_token_id\":null,\"suppress_tokens\":null,\"target_bandwidths\":[2.2],"
    "\"task_specific_params\":null,\"temperature\":1.0,\"tf_legacy_loss\":false,"
    "\"tie_encoder_decoder\":false,\"tie_word_embeddings\":true,\"tokenizer_class\":null,"
    "\"top_k\":50,\"top_p\":1.0,\"torch_dtype\":null,\"torchscript\":false,\"trim_right_ratio\":1.0,"
    "\"typical_p\":1.0,\"upsampling_ratios\":[8,5,4,4],\"use_bfloat16\":false,"
    "\"use_causal_conv\":false,\"use_conv_shortcut\":false},\"decoder\":{\"_name_or_path\":\"\","
    "\"activation_dropout\":0.0,\"activation_function\":\"gelu\",\"add_cross_attention\":false,"
    "\"architectures\":null,\"attention_dropout\":0.0,\"audio_channels\":1,\"bad_words_ids\":null,"
    "\"begin_suppress_tokens\":null,\"bos_token_id\":2048,\"chunk_size_feed_forward\":0,"
    "\"cross_attention_hidden_size\":null,\"decoder_start_token_id\":null,"
    "\"diversity_penalty\":0.0,\"do_sample\":false,\"dropout\":0.1,\"early_stopping\":false,"
    "\"encoder_no_repeat_ngram_size\":0,\"eos_token_id\":null,"
    "\"exponential_decay_length_penalty\":null,\"ffn_dim\":4096,\"finetuning_task\":null,"
    "\"forced_bos_token_id\":null,\"forced_eos_token_id\":null,\"hidden_size\":1024,"
    "\"id2label\":{\"0\":\"LABEL_0\",\"1\":\"LABEL_1\"},\"initializer_factor\":0.02,\"is_decoder\":false,"
    "\"is_encoder_decoder\":false,\"label2id\":{\"LABEL_0\":0,\"LABEL_1\":1},\"layerdrop\":0.0,"
    "\"length_penalty\":1.0,\"max_length\":20,\"max_position_embeddings\":2048,\"min_length\":0,"
    "\"model_type\":\"musicgen_decoder\",\"no_repeat_ngram_size\":0,\"num_attention_heads\":16,"
    "\"num_beam_groups\":1,\"num_beams\":1,\"num_codebooks\":4,\"num_hidden_layers\":24,"
    "\"num_return_sequences\":1,\"output_attentions\":false,\"output_hidden_states\":false,"
    "\"output_scores\":false,\"pad_token_id\":2048,\"prefix\":null,\"problem_type\":null,"
    "\"pruned_heads\":{},\"remove_invalid_values\":false,\"repetition_penalty\":1.0,"
    "\"return_dict\":true,\"return_dict_in_generate\":false,\"scale_embedding\":false,"
    "\"sep_token_id\":null,\"suppress_tokens\":null,\"task_specific_params\":null,"
    "\"temperature\":1.0,\"tf_legacy_loss\":false,\"tie_encoder_decoder\":false,"
    "\"tie_word_embeddings\":false,\"tokenizer_class\":null,\"top_k\":50,\"top_p\":1.0,"
    "\"torch_dtype\":null,\"torchscript\":false,\"typical_p\":1.0,\"use_bfloat16\":false,"
    "\"use_cache\":true,\"vocab_size\":2048},\"is_encoder_decoder\":true,\"model_type\":\"musicgen\","
    "\"text_encoder\":{\"_name_or_path\":\"t5-base\",\"add_cross_attention\":false,"
    "\"architectures\":[\"T5ForConditionalGeneration\"],\"bad_words_ids\":null,"
    "\"begin_suppress_tokens\":null,\"bos_token_id\":null,\"chunk_size_feed_forward\":0,"
    "\"classifier_dropout\":0.0,\"cross_attention_hidden_size\":null,\"d_ff\":3072,\"d_kv\":64,"
    "\"d_model\":768,\"decoder_start_token_id\":0,\"dense_act_fn\":\"relu\",\"diversity_penalty\":0.0,"
    "\"do_sample\":false,\"dropout_rate\":0.1,\"early_stopping\":false,"
    "\"encoder_no_repeat_ngram_size\":0,\"eos_token_id\":1,"
    "\"exponential_decay_length_penalty\":null,\"feed_forward_proj\":\"relu\","
    "\"finetuning_task\":null,\"forced_bos_token_id\":null,\"forced_eos_token_id\":null,"
    "\"id2label\":{\"0\":\"LABEL_0\",\"1\":\"LABEL_1\"},\"initializer_factor\":1.0,\"is_decoder\":false,"
    "\"is_encoder_decoder\":true,\"is_gated_act\":false,\"label2id\":{\"LABEL_0\":0,\"LABEL_1\":1},"
    "\"layer_norm_epsilon\":1e-06,\"length_penalty\":1.0,\"max_length\":20,\"min_length\":0,"
    "\"model_type\":\"t5\",\"n_positions\":512,\"no_repeat_ngram_size\":0,\"num_beam_groups\":1,"
    "\"num_beams\":1,\"num_decoder_layers\":12,\"num_heads\":12,\"num_layers\":12,"
    "\"num_return_sequences\":1,\"output_attentions\":false,\"output_hidden_states\":false,"
    "\"output_past\":true,\"output_scores\":false,\"pad_token_id\":0,\"prefix\":null,"
    "\"problem_type\":null,\"pruned_heads\":{},\"relative_attention_max_distance\":128,"
    "\"relative_attention_num_buckets\":32,\"remove_invalid_values\":false,"
    "\"repetition_penalty\":1.0,\"return_dict\":true,\"return_dict_in_generate\":false,"
    "\"sep_token_id\":null,\"suppress_tokens\":null,\"task_specific_params\":null,"
    "\"temperature\":1.0,\"tf_legacy_loss\":false,\"tie_encoder_decoder\":false,"
    "\"tie_word_embeddings\":true,\"tokenizer_class\":null,\"top_k\":50,\"top_p\":1.0,"
    "\"torch_dtype\":null,\"torchscript\":false,\"typical_p\":1.0,\"use_bfloat16\":false,"
    "\"use_cache\":true,\"vocab_size\":32128},\"transformers_version\":\"4.43.4\"}";

/* ---- model shapes ------------------------------------------------------ */

typedef struct {
    const char *name;
    /* T5 text encoder */
    const char *t5_name_or_path;
    int t5_d_model, t5_d_kv, t5_heads, t5_d_ff, t5_layers, t5_vocab, t5_buckets;
    /* MusicGen decoder; pad = bos = start token = vocab */
    int hidden, heads, layers, ffn, vocab, max_positions;
    int codebooks;           /* EnCodec's quantizers: the decoder has this many per channel */
    /* EnCodec */
    const char *encodec_name_or_path;
    int filters, codebook_dim, codebook_size, lstm_layers, ratios[4];
    int kernel, last_kernel, residual_kernel, compress;
    /* what the golden files of this shape carry */
    int from_model_config;   /* generation_config "_from_model_config": true */
    int f32_torch_dtype;     /* top-level "torch_dtype": "float32" */
    /* --stereo: 2 (musicgen-stereo-*: the decoder has codebooks per channel,
     * interleaved, EnCodec keeps its codebooks); 0 or 1: mono */
    int audio_channels;
} model_shape;

/* The decoder's codebooks: EnCodec's for each channel. */
static int decoder_codebooks(const model_shape *s)
{
    return s->codebooks * (s->audio_channels > 1 ? s->audio_channels : 1);
}

/* what musicgen-small, -medium and -large share: the T5-base text encoder
 * and EnCodec 32 kHz */
#define T5_BASE                                                                                  \
    .t5_name_or_path = "t5-base", .t5_d_model = 768, .t5_d_kv = 64, .t5_heads = 12,              \
    .t5_d_ff = 3072, .t5_layers = 12, .t5_vocab = 32128, .t5_buckets = 32
#define ENCODEC_32KHZ                                                                            \
    .encodec_name_or_path = "facebook/encodec_32khz", .filters = 64, .codebook_dim = 128,        \
    .codebook_size = 2048, .lstm_layers = 2, .ratios = {8, 5, 4, 4}, .kernel = 7,                \
    .last_kernel = 7, .residual_kernel = 3, .compress = 2

static const model_shape shapes[] = {
    {.name = "tiny", .t5_name_or_path = "",
     .t5_d_model = 32, .t5_d_kv = 8, .t5_heads = 4, .t5_d_ff = 64, .t5_layers = 2,
     .t5_vocab = 32128, .t5_buckets = 32,
     .hidden = 48, .heads = 6, .layers = 2, .ffn = 96, .vocab = 64, .codebooks = 4,
     .max_positions = 2048,
     .encodec_name_or_path = "", .filters = 4, .codebook_dim = 16, .codebook_size = 64,
     .lstm_layers = 2, .ratios = {8, 5, 4, 4}, .kernel = 7, .last_kernel = 7,
     .residual_kernel = 3, .compress = 2,
     .from_model_config = 1, .f32_torch_dtype = 1},
    /* tiny with MusicGen's head_dim (64): the kernels kept for it run in tests */
    {.name = "tiny64", .t5_name_or_path = "",
     .t5_d_model = 32, .t5_d_kv = 8, .t5_heads = 4, .t5_d_ff = 64, .t5_layers = 2,
     .t5_vocab = 32128, .t5_buckets = 32,
     .hidden = 256, .heads = 4, .layers = 2, .ffn = 512, .vocab = 64, .codebooks = 4,
     .max_positions = 2048,
     .encodec_name_or_path = "", .filters = 4, .codebook_dim = 16, .codebook_size = 64,
     .lstm_layers = 2, .ratios = {8, 5, 4, 4}, .kernel = 7, .last_kernel = 7,
     .residual_kernel = 3, .compress = 2,
     .from_model_config = 1, .f32_torch_dtype = 1},
    {.name = "small", T5_BASE, ENCODEC_32KHZ,
     .hidden = 1024, .heads = 16, .layers = 24, .ffn = 4096, .vocab = 2048, .codebooks = 4,
     .max_positions = 2048, .from_model_config = 0, .f32_torch_dtype = 0},
    /* facebook/musicgen-medium and -large: a wider and deeper decoder
     * (head_dim 64 in every size) */
    {.name = "medium", T5_BASE, ENCODEC_32KHZ,
     .hidden = 1536, .heads = 24, .layers = 48, .ffn = 6144, .vocab = 2048, .codebooks = 4,
     .max_positions = 2048, .from_model_config = 0, .f32_torch_dtype = 0},
    {.name = "large", T5_BASE, ENCODEC_32KHZ,
     .hidden = 2048, .heads = 32, .layers = 48, .ffn = 8192, .vocab = 2048, .codebooks = 4,
     .max_positions = 2048, .from_model_config = 0, .f32_torch_dtype = 0},
};
#undef T5_BASE
#undef ENCODEC_32KHZ

/* ---- tensor list ------------------------------------------------------- */

typedef enum {
    INIT_NORMAL,          /* N(a, b) */
    INIT_ONE_PLUS_NORMAL, /* 1 + N(0, a): norm weights */
    INIT_SIGNED_UNIFORM,  /* U(a, b), negated with probability 1/4: weight_g */
    INIT_UNIFORM,         /* U(a, b) */
    INIT_CONST,           /* a */
    INIT_SINUSOID,        /* the decoder's position table */
} init_rule;

typedef struct {
    char      name[112];
    int       ndim;
    int64_t   dim[3];
    init_rule rule;
    float     a, b;
} tensor_spec;

typedef struct {
    tensor_spec *v;
    size_t       n, cap;
    int          failed;  /* allocation failure or over-long name; checked once at the end */
} tensor_list;

static void add_tensor(tensor_list *l, init_rule rule, float a, float b, int ndim, int64_t d0,
                       int64_t d1, int64_t d2, const char *fmt, ...)
    __attribute__((format(printf, 9, 10)));

static void add_tensor(tensor_list *l, init_rule rule, float a, float b, int ndim, int64_t d0,
                       int64_t d1, int64_t d2, const char *fmt, ...)
{
    if (l->failed)
        return;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 256;
        tensor_spec *v = realloc(l->v, cap * sizeof *v);
        if (!v) {
            l->failed = 1;
            return;
        }
        l->v = v;
        l->cap = cap;
    }
    tensor_spec *t = &l->v[l->n];
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(t->name, sizeof t->name, fmt, ap);
    va_end(ap);
    if (len < 0 || (size_t)len >= sizeof t->name) {
        l->failed = 1;
        return;
    }
    t->ndim = ndim;
    t->dim[0] = d0;
    t->dim[1] = d1;
    t->dim[2] = d2;
    t->rule = rule;
    t->a = a;
    t->b = b;
    l->n++;
}

/* Linear weight [out, in] ~ N(0, 1/sqrt(in)). */
#define LINEAR(l, out, in, ...) \
    add_tensor(l, INIT_NORMAL, 0.0f, 1.0f / sqrtf((float)(in)), 2, out, in, 0, __VA_ARGS__)
#define BIAS(l, n, ...) add_tensor(l, INIT_NORMAL, 0.0f, 0.2f, 1, n, 0, 0, __VA_ARGS__)
#define NORM_WEIGHT(l, n, ...) \
    add_tensor(l, INIT_ONE_PLUS_NORMAL, 0.3f, 0.0f, 1, n, 0, 0, __VA_ARGS__)

/* Weight-normed EnCodec conv: weight_v [out, in, k] (ConvTranspose1d: [in, out, k]),
 * weight_g [dim0 of weight_v, 1, 1], bias [out]. */
static void add_conv(tensor_list *l, const char *prefix, int idx, const char *sub, int in,
                     int out, int k, int transposed)
{
    int d0 = transposed ? in : out, d1 = transposed ? out : in;
    add_tensor(l, INIT_NORMAL, 0.0f, 0.2f, 1, out, 0, 0, "%s.%d%s.conv.bias", prefix, idx, sub);
    add_tensor(l, INIT_SIGNED_UNIFORM, 0.5f, 1.5f, 3, d0, 1, 1, "%s.%d%s.conv.weight_g", prefix,
               idx, sub);
    add_tensor(l, INIT_NORMAL, 0.0f, 1.0f, 3, d0, d1, k, "%s.%d%s.conv.weight_v", prefix, idx,
               sub);
}

/* EnCodec residual block: ELU, conv(dim -> dim/compress, k), ELU, conv(-> dim, 1). */
static void add_resblock(tensor_list *l, const char *prefix, int idx, const model_shape *s,
                         int dim)
{
    int mid = dim / s->compress;
    add_conv(l, prefix, idx, ".block.1", dim, mid, s->residual_kernel, 0);
    add_conv(l, prefix, idx, ".block.3", mid, dim, 1, 0);
}

static void add_lstm(tensor_list *l, const char *prefix, int idx, const model_shape *s, int h)
{
    float std = 1.0f / sqrtf((float)h);
    for (int n = 0; n < s->lstm_layers; n++) {
        add_tensor(l, INIT_NORMAL, 0.0f, 0.2f, 1, 4 * h, 0, 0, "%s.%d.lstm.bias_hh_l%d", prefix,
                   idx, n);
        add_tensor(l, INIT_NORMAL, 0.0f, 0.2f, 1, 4 * h, 0, 0, "%s.%d.lstm.bias_ih_l%d", prefix,
                   idx, n);
        add_tensor(l, INIT_NORMAL, 0.0f, std, 2, 4 * h, h, 0, "%s.%d.lstm.weight_hh_l%d",
                   prefix, idx, n);
        add_tensor(l, INIT_NORMAL, 0.0f, std, 2, 4 * h, h, 0, "%s.%d.lstm.weight_ih_l%d",
                   prefix, idx, n);
    }
}

static void add_t5(tensor_list *l, const model_shape *s)
{
    int d = s->t5_d_model, inner = s->t5_heads * s->t5_d_kv;
    add_tensor(l, INIT_NORMAL, 0.0f, 1.0f, 2, s->t5_vocab, d, 0, "text_encoder.shared.weight");
    for (int b = 0; b < s->t5_layers; b++) {
        const char *p = "text_encoder.encoder.block";
        LINEAR(l, inner, d, "%s.%d.layer.0.SelfAttention.q.weight", p, b);
        LINEAR(l, inner, d, "%s.%d.layer.0.SelfAttention.k.weight", p, b);
        LINEAR(l, inner, d, "%s.%d.layer.0.SelfAttention.v.weight", p, b);
        LINEAR(l, d, inner, "%s.%d.layer.0.SelfAttention.o.weight", p, b);
        if (b == 0)  /* the relative position bias lives in block 0 only */
            add_tensor(l, INIT_NORMAL, 0.0f, 0.5f, 2, s->t5_buckets, s->t5_heads, 0,
                       "%s.0.layer.0.SelfAttention.relative_attention_bias.weight", p);
        NORM_WEIGHT(l, d, "%s.%d.layer.0.layer_norm.weight", p, b);
        LINEAR(l, s->t5_d_ff, d, "%s.%d.layer.1.DenseReluDense.wi.weight", p, b);
        LINEAR(l, d, s->t5_d_ff, "%s.%d.layer.1.DenseReluDense.wo.weight", p, b);
        NORM_WEIGHT(l, d, "%s.%d.layer.1.layer_norm.weight", p, b);
    }
    NORM_WEIGHT(l, d, "text_encoder.encoder.final_layer_norm.weight");
    if (d != s->hidden) {  /* save_pretrained only has the projection when sizes differ */
        LINEAR(l, s->hidden, d, "enc_to_dec_proj.weight");
        BIAS(l, s->hidden, "enc_to_dec_proj.bias");
    }
}

static void add_decoder(tensor_list *l, const model_shape *s)
{
    int h = s->hidden;
    const char *p = "decoder.model.decoder";
    for (int k = 0; k < decoder_codebooks(s); k++) {
        /* row vocab is the pad/start token */
        add_tensor(l, INIT_NORMAL, 0.0f, 0.5f, 2, s->vocab + 1, h, 0,
                   "%s.embed_tokens.%d.weight", p, k);
        LINEAR(l, s->vocab, h, "decoder.lm_heads.%d.weight", k);
    }
    add_tensor(l, INIT_SINUSOID, 0.0f, 0.0f, 2, s->max_positions, h, 0,
               "%s.embed_positions.weights", p);
    static const char *const attn[] = {"self_attn", "encoder_attn"};
    static const char *const proj[] = {"q_proj", "k_proj", "v_proj", "out_proj"};
    static const char *const norms[] = {"self_attn_layer_norm", "encoder_attn_layer_norm",
                                        "final_layer_norm"};
    for (int i = 0; i < s->layers; i++) {
        for (int a = 0; a < 2; a++)
            for (int j = 0; j < 4; j++)
                LINEAR(l, h, h, "%s.layers.%d.%s.%s.weight", p, i, attn[a], proj[j]);
        for (int n = 0; n < 3; n++) {
            NORM_WEIGHT(l, h, "%s.layers.%d.%s.weight", p, i, norms[n]);
            BIAS(l, h, "%s.layers.%d.%s.bias", p, i, norms[n]);
        }
        LINEAR(l, s->ffn, h, "%s.layers.%d.fc1.weight", p, i);
        LINEAR(l, h, s->ffn, "%s.layers.%d.fc2.weight", p, i);
    }
    NORM_WEIGHT(l, h, "%s.layer_norm.weight", p);
    BIAS(l, h, "%s.layer_norm.bias", p);
}

/* EnCodec (SEANet) encoder and decoder, numbered as in the checkpoint:
 * encoder  0 conv, then per ratio (reversed) resblock / ELU / strided conv,
 *          LSTM, ELU, final conv to codebook_dim;
 * decoder  0 conv, 1 LSTM, then per ratio ELU / transposed conv / resblock,
 *          ELU, final conv to 1 channel. */
static void add_encodec(tensor_list *l, const model_shape *s)
{
    const char *enc = "audio_encoder.encoder.layers", *dec = "audio_encoder.decoder.layers";
    int f = s->filters, nr = 4, idx = 0, mult = 1;

    add_conv(l, enc, idx++, "", 1, f, s->kernel, 0);
    for (int r = nr - 1; r >= 0; r--) {
        add_resblock(l, enc, idx++, s, mult * f);
        idx++;  /* ELU */
        add_conv(l, enc, idx++, "", mult * f, 2 * mult * f, 2 * s->ratios[r], 0);
        mult *= 2;
    }
    add_lstm(l, enc, idx++, s, mult * f);
    idx++;  /* ELU */
    add_conv(l, enc, idx, "", mult * f, s->codebook_dim, s->last_kernel, 0);

    idx = 0;
    add_conv(l, dec, idx++, "", s->codebook_dim, mult * f, s->kernel, 0);
    add_lstm(l, dec, idx++, s, mult * f);
    for (int r = 0; r < nr; r++) {
        idx++;  /* ELU */
        add_conv(l, dec, idx++, "", mult * f, mult * f / 2, 2 * s->ratios[r], 1);
        add_resblock(l, dec, idx++, s, mult * f / 2);
        mult /= 2;
    }
    idx++;  /* ELU */
    add_conv(l, dec, idx, "", f, 1, s->last_kernel, 0);

    const char *q = "audio_encoder.quantizer.layers";
    for (int k = 0; k < s->codebooks; k++) {
        add_tensor(l, INIT_UNIFORM, 0.5f, 2.0f, 1, s->codebook_size, 0, 0,
                   "%s.%d.codebook.cluster_size", q, k);
        add_tensor(l, INIT_NORMAL, 0.0f, 1.0f, 2, s->codebook_size, s->codebook_dim, 0,
                   "%s.%d.codebook.embed", q, k);
        add_tensor(l, INIT_NORMAL, 0.0f, 1.0f, 2, s->codebook_size, s->codebook_dim, 0,
                   "%s.%d.codebook.embed_avg", q, k);
        add_tensor(l, INIT_CONST, 1.0f, 0.0f, 1, 1, 0, 0, "%s.%d.codebook.inited", q, k);
    }
}

static int cmp_spec(const void *a, const void *b)
{
    return strcmp(((const tensor_spec *)a)->name, ((const tensor_spec *)b)->name);
}

/* All checkpoint tensors, sorted by name as save_pretrained stores them. */
static mg_code build_tensor_list(tensor_list *l, const model_shape *s, mg_error *err)
{
    add_t5(l, s);
    add_decoder(l, s);
    add_encodec(l, s);
    if (l->failed)
        return mg_fail(err, MG_ERR_NOMEM, "building the tensor list: out of memory");
    qsort(l->v, l->n, sizeof *l->v, cmp_spec);
    return MG_OK;
}

static int64_t spec_numel(const tensor_spec *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++)
        n *= t->dim[i];
    return n;
}

/* ---- random numbers ---------------------------------------------------- */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

typedef struct {
    uint64_t s[4];
} rng;

static void rng_seed(rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&seed);
}

static inline uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

/* xoshiro256+ (the top 53 bits are all we use) */
static inline uint64_t rng_next(rng *r)
{
    uint64_t *s = r->s, out = s[0] + s[3], t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

/* Uniform in (0, 1]: never 0, so log() below is finite. */
static inline double rng_uniform(rng *r)
{
    return (double)((rng_next(r) >> 11) + 1) * 0x1.0p-53;
}

/* Two independent N(0,1) values from one 64-bit draw (Box-Muller in float:
 * the hot loop of a 600M-parameter model; 24-bit uniforms bound |z| < 5.8). */
static inline void rng_normal2(rng *r, float *z0, float *z1)
{
    uint64_t x = rng_next(r);
    float u1 = (float)((x >> 40) + 1) * 0x1.0p-24f;     /* (0, 1] */
    float u2 = (float)((x >> 16) & 0xffffff) * 0x1.0p-24f;
    float rad = sqrtf(-2.0f * logf(u1)), s, c;
    sincosf(6.28318530717958647692f * u2, &s, &c);
    *z0 = rad * c;
    *z1 = rad * s;
}

static uint64_t fnv1a64(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 0x100000001b3ULL;
    return h;
}

/* ---- half-precision conversion (round to nearest even) ----------------- */

static uint16_t to_f16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000, exp = (x >> 23) & 0xff, mant = x & 0x7fffff;
    if (exp == 0xff)
        return (uint16_t)(sign | 0x7c00 | (mant ? 0x200 : 0));
    int e = (int)exp - 127 + 15;
    if (e >= 31)
        return (uint16_t)(sign | 0x7c00);
    if (e <= 0) {  /* half subnormal (or zero) */
        if (e < -10)
            return (uint16_t)sign;
        mant |= 0x800000;
        int shift = 14 - e;
        uint32_t h = mant >> shift, rem = mant & ((1u << shift) - 1), mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (h & 1)))
            h++;
        return (uint16_t)(sign | h);
    }
    uint32_t h = sign | ((uint32_t)e << 10) | (mant >> 13), rem = mant & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1)))
        h++;  /* a carry into the exponent is the right rounding (up to inf) */
    return (uint16_t)h;
}

static uint16_t to_bf16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffff) > 0x7f800000)
        return (uint16_t)((x >> 16) | 0x40);  /* keep NaN a NaN */
    x += 0x7fff + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

/* ---- tensor values ----------------------------------------------------- */

typedef enum { OUT_F32, OUT_F16, OUT_BF16 } out_dtype;

static const char *const dtype_names[] = {"F32", "F16", "BF16"};
static const char *const torch_dtype_names[] = {"float32", "float16", "bfloat16"};
static const size_t dtype_sizes[] = {4, 2, 2};

/* Values are generated in chunks of CHUNK elements, each with its own RNG
 * stream seeded from (tensor seed, chunk index): any split across threads
 * gives the same bytes. */
#define CHUNK      65536
#define BLOCK      1024
#define BUF_CHUNKS 64     /* 4M elements per write */

/* Fills dst[0..n) with elements idx0.. of tensor t from the stream r. */
static void gen_block(const tensor_spec *t, rng *r, int64_t idx0, float *dst, int n)
{
    switch (t->rule) {
    case INIT_NORMAL:
    case INIT_ONE_PLUS_NORMAL: {
        float mean = t->rule == INIT_NORMAL ? t->a : 1.0f;
        float std = t->rule == INIT_NORMAL ? t->b : t->a;
        for (int i = 0; i < n; i += 2) {
            float z0, z1;
            rng_normal2(r, &z0, &z1);
            dst[i] = mean + std * z0;
            if (i + 1 < n)
                dst[i + 1] = mean + std * z1;
        }
        break;
    }
    case INIT_SIGNED_UNIFORM:
        for (int i = 0; i < n; i++) {
            double u = t->a + (t->b - t->a) * rng_uniform(r);
            dst[i] = (float)(rng_uniform(r) <= 0.25 ? -u : u);
        }
        break;
    case INIT_UNIFORM:
        for (int i = 0; i < n; i++)
            dst[i] = (float)(t->a + (t->b - t->a) * rng_uniform(r));
        break;
    case INIT_CONST:
        for (int i = 0; i < n; i++)
            dst[i] = t->a;
        break;
    case INIT_SINUSOID: {
        /* tensor2tensor layout as MusicGen computes it in float32:
         * row p = [cos(p*f_0..f_{half-1}), sin(p*f_0..f_{half-1})],
         * f_i = exp(-i * ln(10000) / (half - 1)) */
        int64_t width = t->dim[1], half = width / 2;
        float step = (float)(log(10000.0) / (double)(half - 1));
        for (int i = 0; i < n; i++) {
            int64_t idx = idx0 + i, pos = idx / width, j = idx % width;
            if (j >= 2 * half) {  /* odd width: HF pads a zero column */
                dst[i] = 0.0f;
                continue;
            }
            float freq = expf((float)(j % half) * -step);
            float arg = (float)pos * freq;
            dst[i] = j < half ? cosf(arg) : sinf(arg);
        }
        break;
    }
    }
}

typedef struct {
    const tensor_spec *t;
    uint64_t           seed;    /* the tensor's stream seed */
    int64_t            first;   /* element index of out[0], a multiple of CHUNK */
    int64_t            chunk0, chunk1;  /* chunk range [chunk0, chunk1) to fill */
    int64_t            numel;
    out_dtype          dtype;
    uint8_t           *out;
} fill_job;

static void fill_chunks(const fill_job *job)
{
    float tmp[BLOCK];
    size_t esize = dtype_sizes[job->dtype];
    for (int64_t c = job->chunk0; c < job->chunk1; c++) {
        rng r;
        rng_seed(&r, job->seed ^ ((uint64_t)c * 0xD1B54A32D192ED03ULL));
        int64_t end = (c + 1) * CHUNK < job->numel ? (c + 1) * CHUNK : job->numel;
        for (int64_t i = c * CHUNK; i < end; i += BLOCK) {
            int n = (int)(end - i < BLOCK ? end - i : BLOCK);
            gen_block(job->t, &r, i, tmp, n);
            uint8_t *dst = job->out + (size_t)(i - job->first) * esize;
            if (job->dtype == OUT_F32) {
                memcpy(dst, tmp, (size_t)n * 4);
            } else {
                for (int k = 0; k < n; k++) {
                    uint16_t h = job->dtype == OUT_F16 ? to_f16(tmp[k]) : to_bf16(tmp[k]);
                    memcpy(dst + 2 * (size_t)k, &h, 2);
                }
            }
        }
    }
}

static void *fill_thread(void *arg)
{
    fill_chunks(arg);
    return NULL;
}

/* Fills elements [first, first + count) of t into out, spread over threads. */
static void fill_parallel(const tensor_spec *t, uint64_t seed, int64_t numel, int64_t first,
                          int64_t count, out_dtype dtype, uint8_t *out, int nthreads)
{
    int64_t c0 = first / CHUNK, c1 = (first + count + CHUNK - 1) / CHUNK;
    int64_t nchunks = c1 - c0;
    if (nthreads > nchunks)
        nthreads = (int)nchunks;
    if (nthreads < 1)
        nthreads = 1;
    fill_job jobs[64];
    pthread_t tids[64];
    int started[64] = {0};
    for (int k = 0; k < nthreads; k++) {
        jobs[k] = (fill_job){.t = t, .seed = seed, .first = first, .numel = numel,
                             .dtype = dtype, .out = out,
                             .chunk0 = c0 + nchunks * k / nthreads,
                             .chunk1 = c0 + nchunks * (k + 1) / nthreads};
    }
    /* job 0 runs here; a thread that cannot start runs here too (same bytes) */
    for (int k = 1; k < nthreads; k++)
        started[k] = pthread_create(&tids[k], NULL, fill_thread, &jobs[k]) == 0;
    fill_chunks(&jobs[0]);
    for (int k = 1; k < nthreads; k++) {
        if (started[k])
            pthread_join(tids[k], NULL);
        else
            fill_chunks(&jobs[k]);
    }
}

/* ---- output files ------------------------------------------------------ */

typedef struct {
    const char *dir;
    char        tmp[4][4096];   /* temporary names, "" when not created */
    char        final[4][4096];
    int         n;
} out_files;

/* Registers DIR/name with its temporary DIR/.name.tmp.PID; returns its slot. */
static int out_slot(out_files *o, const char *name, mg_error *err)
{
    int i = o->n;
    int a = snprintf(o->final[i], sizeof o->final[i], "%s/%s", o->dir, name);
    int b = snprintf(o->tmp[i], sizeof o->tmp[i], "%s/.%s.tmp.%ld", o->dir, name,
                     (long)getpid());
    if (a < 0 || b < 0 || (size_t)a >= sizeof o->final[i] || (size_t)b >= sizeof o->tmp[i]) {
        o->tmp[i][0] = 0;
        mg_fail(err, MG_ERR_INVALID, "output path too long: %s", o->dir);
        return -1;
    }
    o->n++;
    return i;
}

static void out_discard(out_files *o)
{
    for (int i = 0; i < o->n; i++)
        if (o->tmp[i][0])
            unlink(o->tmp[i]);
}

static mg_code out_commit(out_files *o, mg_error *err)
{
    for (int i = 0; i < o->n; i++) {
        if (rename(o->tmp[i], o->final[i]) != 0)
            return mg_fail(err, MG_ERR_IO, "renaming %s to %s: %s", o->tmp[i], o->final[i],
                           strerror(errno));
        o->tmp[i][0] = 0;
    }
    return MG_OK;
}

static mg_code write_bytes(const char *path, const void *data, size_t len, mg_error *err)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return mg_fail(err, MG_ERR_IO, "cannot create %s: %s", path, strerror(errno));
    int ok = fwrite(data, 1, len, f) == len;
    ok &= fflush(f) == 0;
    int saved = errno;
    ok &= fclose(f) == 0;
    if (!ok)
        return mg_fail(err, MG_ERR_IO, "writing %s: %s", path, strerror(saved ? saved : errno));
    return MG_OK;
}

static mg_code copy_file(const char *src, const char *dst, mg_error *err)
{
    FILE *in = fopen(src, "rb");
    if (!in)
        return mg_fail(err, MG_ERR_NOT_FOUND, "cannot open %s: %s", src, strerror(errno));
    FILE *out = fopen(dst, "wb");
    if (!out) {
        fclose(in);
        return mg_fail(err, MG_ERR_IO, "cannot create %s: %s", dst, strerror(errno));
    }
    char buf[65536];
    size_t n;
    int ok = 1;
    while (ok && (n = fread(buf, 1, sizeof buf, in)) > 0)
        ok = fwrite(buf, 1, n, out) == n;
    int read_err = ferror(in);
    fclose(in);
    ok &= fflush(out) == 0;
    int saved = errno;
    ok &= fclose(out) == 0;
    if (read_err)
        return mg_fail(err, MG_ERR_IO, "reading %s", src);
    if (!ok)
        return mg_fail(err, MG_ERR_IO, "writing %s: %s", dst, strerror(saved ? saved : errno));
    return MG_OK;
}

/* mkdir -p */
static mg_code make_dirs(const char *dir, mg_error *err)
{
    char path[4096];
    size_t len = strlen(dir);
    if (len == 0 || len >= sizeof path)
        return mg_fail(err, MG_ERR_INVALID, "bad output directory \"%s\"", dir);
    memcpy(path, dir, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (path[i] != '/' && path[i] != 0)
            continue;
        char saved = path[i];
        path[i] = 0;
        if (mkdir(path, 0777) != 0 && errno != EEXIST)
            return mg_fail(err, MG_ERR_IO, "cannot create directory %s: %s", path,
                           strerror(errno));
        path[i] = saved;
    }
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return mg_fail(err, MG_ERR_IO, "%s is not a directory", dir);
    return MG_OK;
}

/* ---- configs ----------------------------------------------------------- */

static int set_int(json_t *obj, const char *key, int v)
{
    return json_object_set_new(obj, key, json_integer(v));
}

static int set_str(json_t *obj, const char *key, const char *v)
{
    return json_object_set_new(obj, key, json_string(v));
}

static json_t *make_config(const model_shape *s, out_dtype dtype, mg_error *err)
{
    json_error_t jerr;
    json_t *root = json_loads(base_config_json, 0, &jerr);
    if (!root) {
        mg_fail(err, MG_ERR_CORRUPT, "embedded config: %s", jerr.text);
        return NULL;
    }
    json_t *t5 = json_object_get(root, "text_encoder");
    json_t *dec = json_object_get(root, "decoder");
    json_t *ae = json_object_get(root, "audio_encoder");
    json_t *ratios = json_array();
    int bad = !t5 || !dec || !ae || !ratios;
    for (int i = 0; !bad && i < 4; i++)
        bad |= json_array_append_new(ratios, json_integer(s->ratios[i]));
    if (bad) {
        json_decref(ratios);
        json_decref(root);
        mg_fail(err, MG_ERR_NOMEM, "building config.json: out of memory");
        return NULL;
    }

    bad |= set_str(t5, "_name_or_path", s->t5_name_or_path);
    bad |= set_int(t5, "d_model", s->t5_d_model);
    bad |= set_int(t5, "d_kv", s->t5_d_kv);
    bad |= set_int(t5, "num_heads", s->t5_heads);
    bad |= set_int(t5, "d_ff", s->t5_d_ff);
    bad |= set_int(t5, "num_layers", s->t5_layers);
    bad |= set_int(t5, "num_decoder_layers", s->t5_layers);
    bad |= set_int(t5, "vocab_size", s->t5_vocab);
    bad |= set_int(t5, "relative_attention_num_buckets", s->t5_buckets);

    bad |= set_int(dec, "hidden_size", s->hidden);
    bad |= set_int(dec, "num_attention_heads", s->heads);
    bad |= set_int(dec, "num_hidden_layers", s->layers);
    bad |= set_int(dec, "ffn_dim", s->ffn);
    bad |= set_int(dec, "vocab_size", s->vocab);
    bad |= set_int(dec, "num_codebooks", decoder_codebooks(s));
    bad |= set_int(dec, "audio_channels", s->audio_channels > 1 ? s->audio_channels : 1);
    bad |= set_int(dec, "max_position_embeddings", s->max_positions);
    bad |= set_int(dec, "bos_token_id", s->vocab);
    bad |= set_int(dec, "pad_token_id", s->vocab);

    bad |= set_str(ae, "_name_or_path", s->encodec_name_or_path);
    bad |= set_int(ae, "num_filters", s->filters);
    bad |= set_int(ae, "hidden_size", s->codebook_dim);
    bad |= set_int(ae, "codebook_dim", s->codebook_dim);
    bad |= set_int(ae, "codebook_size", s->codebook_size);
    bad |= set_int(ae, "num_lstm_layers", s->lstm_layers);
    bad |= set_int(ae, "kernel_size", s->kernel);
    bad |= set_int(ae, "last_kernel_size", s->last_kernel);
    bad |= set_int(ae, "residual_kernel_size", s->residual_kernel);
    bad |= set_int(ae, "compress", s->compress);
    bad |= json_object_set_new(ae, "upsampling_ratios", ratios);

    if (dtype != OUT_F32 || s->f32_torch_dtype)
        bad |= set_str(root, "torch_dtype", torch_dtype_names[dtype]);
    if (bad) {
        json_decref(root);
        mg_fail(err, MG_ERR_NOMEM, "building config.json: out of memory");
        return NULL;
    }
    return root;
}

static json_t *make_generation_config(const model_shape *s, mg_error *err)
{
    json_t *g = json_object();
    int bad = !g;
    if (!bad && s->from_model_config)
        bad |= json_object_set_new(g, "_from_model_config", json_true());
    if (!bad) {
        bad |= set_int(g, "bos_token_id", s->vocab);
        bad |= set_int(g, "decoder_start_token_id", s->vocab);
        bad |= set_int(g, "pad_token_id", s->vocab);
        bad |= json_object_set_new(g, "do_sample", json_true());
        bad |= json_object_set_new(g, "guidance_scale", json_real(3.0));
        bad |= set_int(g, "max_length", 1500);  /* 30 s at 50 frames/s */
        bad |= set_int(g, "top_k", 250);
        bad |= set_str(g, "transformers_version", "4.43.4");
    }
    if (bad) {
        json_decref(g);
        mg_fail(err, MG_ERR_NOMEM, "building generation_config.json: out of memory");
        return NULL;
    }
    return g;
}

/* Whether text[i] starts a one-digit exponent: "e-6" but not "e-16". */
static int short_exponent(const char *text, size_t i)
{
    return text[i] == 'e' && (text[i + 1] == '-' || text[i + 1] == '+') &&
           text[i + 2] >= '0' && text[i + 2] <= '9' && !(text[i + 3] >= '0' && text[i + 3] <= '9');
}

/* Python prints exponents with at least two digits (1e-06), jansson with one
 * (1e-6): pads them outside strings so the text matches transformers'. */
static char *python_exponents(char *text)
{
    size_t len = strlen(text);
    char *out = malloc(len + len / 4 + 2);  /* each pad needs a 4-char number */
    if (!out) {
        free(text);
        return NULL;
    }
    size_t o = 0;
    int in_str = 0;
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        out[o++] = c;
        if (in_str) {
            if (c == '\\' && i + 1 < len)
                out[o++] = text[++i];
            else if (c == '"')
                in_str = 0;
        } else if (c == '"') {
            in_str = 1;
        } else if (short_exponent(text, i)) {
            out[o++] = text[++i];  /* the sign */
            out[o++] = '0';
        }
    }
    out[o] = 0;
    free(text);
    return out;
}

/* Writes obj the way transformers does: indent 2, sorted keys, trailing newline. */
static mg_code write_json(const char *path, json_t *obj, mg_error *err)
{
    char *text = json_dumps(obj, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(15));
    if (text)
        text = python_exponents(text);
    if (!text)
        return mg_fail(err, MG_ERR_NOMEM, "serialising %s: out of memory", path);
    size_t len = strlen(text);
    char *withnl = realloc(text, len + 2);
    if (!withnl) {
        free(text);
        return mg_fail(err, MG_ERR_NOMEM, "serialising %s: out of memory", path);
    }
    withnl[len] = '\n';
    withnl[len + 1] = 0;
    mg_code rc = write_bytes(path, withnl, len + 1, err);
    free(withnl);
    return rc;
}

/* ---- model.safetensors ------------------------------------------------- */

/* Tensor data is generated into one buffer while a helper thread writes the
 * other, so the disk and the RNG work at the same time. */
typedef struct {
    mg_stw  *w;
    uint8_t *buf[2];
    size_t   cap, used;    /* bytes of buf[cur] filled */
    int      cur;
    pthread_t writer;
    int      writing;      /* writer thread running on buf[!cur] */
    const uint8_t *wdata;  /* what the writer writes */
    size_t   wbytes;
    mg_code  wrc;
    mg_error werr;
} stream;

static void *write_thread(void *arg)
{
    stream *st = arg;
    st->wrc = mg_stw_write(st->w, st->wdata, st->wbytes, &st->werr);
    return NULL;
}

static mg_code stream_join(stream *st, mg_error *err)
{
    if (!st->writing)
        return MG_OK;
    pthread_join(st->writer, NULL);
    st->writing = 0;
    if (st->wrc != MG_OK && err)
        *err = st->werr;
    return st->wrc;
}

/* Hands buf[cur] to the writer and switches to the other buffer. */
static mg_code stream_flush(stream *st, mg_error *err)
{
    mg_code rc = stream_join(st, err);
    if (rc != MG_OK || st->used == 0)
        return rc;
    st->wdata = st->buf[st->cur];
    st->wbytes = st->used;
    st->used = 0;
    st->cur ^= 1;
    if (pthread_create(&st->writer, NULL, write_thread, st) == 0) {
        st->writing = 1;
        return MG_OK;
    }
    return mg_stw_write(st->w, st->wdata, st->wbytes, err);  /* no thread: write here */
}

static mg_code write_model(const char *path, const tensor_list *l, uint64_t seed,
                           out_dtype dtype, int nthreads, uint64_t *file_size, mg_error *err)
{
    stream st = {.cap = (size_t)CHUNK * BUF_CHUNKS * dtype_sizes[dtype]};
    st.w = mg_stw_new(err);
    if (!st.w)
        return err->code;
    mg_code rc = MG_OK;
    for (size_t i = 0; i < l->n && rc == MG_OK; i++)
        rc = mg_stw_add(st.w, l->v[i].name, dtype_names[dtype], l->v[i].ndim, l->v[i].dim, err);
    if (rc == MG_OK) {
        *file_size = mg_stw_file_size(st.w);
        rc = mg_stw_begin(st.w, path, err);
    }
    if (rc == MG_OK) {
        st.buf[0] = malloc(st.cap);
        st.buf[1] = malloc(st.cap);
        if (!st.buf[0] || !st.buf[1])
            rc = mg_fail(err, MG_ERR_NOMEM, "out of memory for the write buffers");
    }

    size_t esize = dtype_sizes[dtype];
    for (size_t i = 0; i < l->n && rc == MG_OK; i++) {
        const tensor_spec *t = &l->v[i];
        uint64_t x = seed ^ fnv1a64(t->name);
        uint64_t tseed = splitmix64(&x);
        int64_t numel = spec_numel(t), first = 0;
        while (first < numel && rc == MG_OK) {
            /* whole chunks only, unless the rest of the tensor fits */
            int64_t space = (int64_t)((st.cap - st.used) / esize), count = numel - first;
            if (count > space)
                count = space / CHUNK * CHUNK;
            if (count == 0) {
                rc = stream_flush(&st, err);
                continue;
            }
            fill_parallel(t, tseed, numel, first, count, dtype, st.buf[st.cur] + st.used,
                          nthreads);
            st.used += (size_t)count * esize;
            first += count;
        }
    }
    if (rc == MG_OK)
        rc = stream_flush(&st, err);
    mg_code jrc = stream_join(&st, rc == MG_OK ? err : NULL);
    if (rc == MG_OK)
        rc = jrc;
    if (rc == MG_OK)
        rc = mg_stw_finish(st.w, err);
    free(st.buf[0]);
    free(st.buf[1]);
    mg_stw_free(st.w);
    return rc;
}

/* ---- main -------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: musicgen-mkmodel --shape tiny|tiny64|small|medium|large [--seed N]\n"
            "                        [--dtype f32|f16|bf16] [--spiece PATH] [--threads N]\n"
            "                        [--positions N] [--layers N] [--stereo] -o DIR\n"
            "Writes a random-initialised MusicGen model in the Hugging Face layout of\n"
            "facebook/musicgen-small: DIR/config.json, generation_config.json,\n"
            "model.safetensors and spiece.model (a small synthetic vocabulary unless\n"
            "--spiece gives a SentencePiece model to copy). --positions sets the\n"
            "decoder's window (max_position_embeddings), e.g. short for long-form tests;\n"
            "--layers the decoder's depth (num_hidden_layers), e.g. a medium-wide model\n"
            "small enough for a quick test.\n"
            "--stereo writes the stereo layout (facebook/musicgen-stereo-*): 2 audio\n"
            "channels, twice the decoder codebooks, interleaved left/right.\n");
}

typedef struct {
    const model_shape *shape;
    model_shape        resized;  /* the shape with --positions, --layers and --stereo */
    uint64_t           seed;
    out_dtype          dtype;
    const char        *spiece, *dir;
    int                threads;
} options;

static int parse_u64(const char *s, uint64_t *out)
{
    if (!s || !*s || *s == '-')
        return 0;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno || *end)
        return 0;
    *out = v;
    return 1;
}

/* A whole number in [lo, hi] into *out; otherwise prints why and returns 0. */
static int parse_count(const char *v, const char *what, int lo, int hi, int *out)
{
    uint64_t n;
    if (!parse_u64(v, &n) || n < (uint64_t)lo || n > (uint64_t)hi) {
        fprintf(stderr, "musicgen-mkmodel: bad %s \"%s\" (%d-%d)\n", what, v, lo, hi);
        return 0;
    }
    *out = (int)n;
    return 1;
}

/* Returns 0 on success, 1 on a bad command line (message printed), 2 for --help. */
static int parse_args(int argc, char **argv, options *o)
{
    memset(o, 0, sizeof *o);
    int positions = 0, layers = 0, stereo = 0;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    o->threads = ncpu < 1 ? 1 : ncpu > 64 ? 64 : (int)ncpu;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)
            return 2;
        if (strcmp(a, "--stereo") == 0) {
            stereo = 1;
            continue;
        }
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--shape") && strcmp(a, "--seed") && strcmp(a, "--dtype") &&
            strcmp(a, "--spiece") && strcmp(a, "--threads") && strcmp(a, "-o") &&
            strcmp(a, "--out") && strcmp(a, "--positions") && strcmp(a, "--layers")) {
            fprintf(stderr, "musicgen-mkmodel: unknown option %s\n", a);
            return 1;
        }
        if (!v) {
            fprintf(stderr, "musicgen-mkmodel: %s needs a value\n", a);
            return 1;
        }
        i++;
        if (strcmp(a, "--shape") == 0) {
            o->shape = NULL;
            for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++)
                if (strcmp(v, shapes[k].name) == 0)
                    o->shape = &shapes[k];
            if (!o->shape) {
                fprintf(stderr, "musicgen-mkmodel: unknown shape \"%s\" (tiny, tiny64, small, medium or large)\n", v);
                return 1;
            }
        } else if (strcmp(a, "--seed") == 0) {
            if (!parse_u64(v, &o->seed)) {
                fprintf(stderr, "musicgen-mkmodel: bad seed \"%s\"\n", v);
                return 1;
            }
        } else if (strcmp(a, "--dtype") == 0) {
            if (strcmp(v, "f32") == 0)
                o->dtype = OUT_F32;
            else if (strcmp(v, "f16") == 0)
                o->dtype = OUT_F16;
            else if (strcmp(v, "bf16") == 0)
                o->dtype = OUT_BF16;
            else {
                fprintf(stderr, "musicgen-mkmodel: bad dtype \"%s\" (f32, f16 or bf16)\n", v);
                return 1;
            }
        } else if (strcmp(a, "--threads") == 0) {
            if (!parse_count(v, "thread count", 1, 64, &o->threads))
                return 1;
        } else if (strcmp(a, "--positions") == 0) {
            if (!parse_count(v, "position count", 8, 65536, &positions))
                return 1;
        } else if (strcmp(a, "--layers") == 0) {
            if (!parse_count(v, "decoder layer count", 1, 256, &layers))
                return 1;
        } else if (strcmp(a, "--spiece") == 0) {
            o->spiece = v;
        } else {
            o->dir = v;
        }
    }
    if (!o->shape || !o->dir) {
        fprintf(stderr, "musicgen-mkmodel: %s is required\n", !o->shape ? "--shape" : "-o DIR");
        usage(stderr);
        return 1;
    }
    if (positions || layers || stereo) {
        o->resized = *o->shape;
        if (positions)
            o->resized.max_positions = positions;
        if (layers)
            o->resized.layers = layers;
        if (stereo)
            o->resized.audio_channels = 2;
        o->shape = &o->resized;
    }
    return 0;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static mg_code run(const options *o, mg_error *err)
{
    double t0 = now_s();
    mg_code rc = make_dirs(o->dir, err);
    if (rc != MG_OK)
        return rc;

    out_files files = {.dir = o->dir};
    int i_cfg = out_slot(&files, "config.json", err);
    int i_gen = i_cfg < 0 ? -1 : out_slot(&files, "generation_config.json", err);
    int i_spm = i_gen < 0 ? -1 : out_slot(&files, "spiece.model", err);
    int i_st = i_spm < 0 ? -1 : out_slot(&files, "model.safetensors", err);
    if (i_st < 0)
        return err->code;

    tensor_list tensors = {0};
    json_t *cfg = NULL, *gen = NULL;
    uint64_t size = 0;
    rc = build_tensor_list(&tensors, o->shape, err);
    if (rc == MG_OK && !(cfg = make_config(o->shape, o->dtype, err)))
        rc = err->code;
    if (rc == MG_OK && !(gen = make_generation_config(o->shape, err)))
        rc = err->code;
    if (rc == MG_OK)
        rc = write_json(files.tmp[i_cfg], cfg, err);
    if (rc == MG_OK)
        rc = write_json(files.tmp[i_gen], gen, err);
    if (rc == MG_OK)
        rc = o->spiece ? copy_file(o->spiece, files.tmp[i_spm], err)
                       : mg_spm_write_synthetic(files.tmp[i_spm], err);
    if (rc == MG_OK)
        rc = write_model(files.tmp[i_st], &tensors, o->seed, o->dtype, o->threads, &size, err);
    if (rc == MG_OK)
        rc = out_commit(&files, err);
    if (rc != MG_OK)
        out_discard(&files);
    else
        fprintf(stderr,
                "musicgen-mkmodel: %s: shape %s, seed %llu, %zu tensors, %s, %.1f MB "
                "model.safetensors in %.2f s\n",
                o->dir, o->shape->name, (unsigned long long)o->seed, tensors.n,
                dtype_names[o->dtype], (double)size / 1e6, now_s() - t0);
    json_decref(cfg);
    json_decref(gen);
    free(tensors.v);
    return rc;
}

int main(int argc, char **argv)
{
    options o;
    int a = parse_args(argc, argv, &o);
    if (a == 2) {
        usage(stdout);
        return 0;
    }
    if (a != 0)
        return 1;
    mg_error err = {0};
    if (run(&o, &err) != MG_OK) {
        fprintf(stderr, "musicgen-mkmodel: %s\n", err.msg);
        return 1;
    }
    return 0;
}
