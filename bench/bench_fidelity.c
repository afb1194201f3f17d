/* bench_fidelity MODEL_DIR [--columns L] [--threads N] [--json FILE]: how far
 * bf16 and q8 move the decoder from f32 on a model of real shapes (the golden
 * models are tiny: head_dim 8, so their q8 runs keep BF16 attention caches).
 * T5 encodes a fixed 20-token prompt, then L columns of fixed codes are
 * teacher-forced for the text row and the unconditional row; every column's
 * logits are compared with f32's: max |dlogit| relative to the logit scale
 * (max |logit_f32|) and the share of argmax codes equal to f32's. q8 runs
 * twice: with its 8-bit attention caches (where the CPU has them) and with
 * BF16 caches. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../tools/backend_env.h"
#include "runtime/model_parts.h"

#define DIE(...) do { fprintf(stderr, "bench_fidelity: " __VA_ARGS__); fprintf(stderr, "\n"); exit(1); } while (0)

enum { ENC = 20 };

/* [2, K, L, V] logits of the fixed run on m (new array) */
static float *forced_logits(mg_model *m, int L)
{
    mg_backend *be = mg_model_backend(m);
    mg_decoder *dec = mg_model_decoder(m);
    const mg_config *c = mg_model_config(m);
    int K = c->num_codebooks, V = c->dec_vocab;
    mg_error err = {0};
    int32_t ids[ENC], *codes = malloc((size_t)2 * K * L * sizeof *codes);
    uint8_t mask[ENC], mask2[2 * ENC] = {0};
    float *out = malloc((size_t)2 * K * L * V * sizeof *out);
    mg_tensor *last = NULL, *enc = NULL, *logits = NULL;
    mg_dec_state st;
    if (!codes || !out)
        DIE("out of memory");
    for (int i = 0; i < ENC; i++) {
        ids[i] = i == ENC - 1 ? 1 : 100 + 37 * i;
        mask[i] = mask2[i] = 1;
    }
    for (int i = 0; i < 2 * K * L; i++)
        codes[i] = i % L == 0 ? c->pad_token : (int32_t)(((uint64_t)i * 2654435761u >> 7) % (uint64_t)V);
    if (mg_tensor_new2(&last, be, 2 * ENC, c->t5_d_model, &err) ||
        mg_tensor_new2(&enc, be, 2 * ENC, c->dec_hidden, &err) ||
        mg_tensor_new2(&logits, be, (int64_t)2 * K * L, V, &err))
        DIE("%s", err.msg);
    /* text row: T5 of the prompt; unconditional row: zeros (masked) */
    mg_tensor cond = mg_tensor_rows_view(last, 0, ENC);
    if (mg_t5_encode(mg_model_t5(m), ids, mask, 1, ENC, &cond, NULL, NULL, &err) ||
        mg_decoder_project(dec, last, mask2, enc, &err) ||
        mg_dec_state_init(dec, &st, 2, L, enc, mask2, ENC, &err) ||
        mg_decoder_forward(dec, &st, codes, L, 0, logits, NULL, NULL, &err) ||
        be->ops->download(be, logits, 0, out, (size_t)2 * K * L * V * sizeof *out, &err))
        DIE("%s", err.msg);
    mg_dec_state_free(dec, &st);
    mg_tensor_free(last);
    mg_tensor_free(enc);
    mg_tensor_free(logits);
    free(codes);
    return out;
}

/* kv_q8row 0: a q8 model with BF16 attention caches */
static mg_model *load(const char *dir, const char *dtype, int threads, int kv_q8row)
{
    mg_error err = {0};
    mg_model *m = NULL;
    mg_backend_options backend;
    mg_backend_options_from_env(&backend);
    backend.kv_q8row = kv_q8row;
    mg_model_options opt = {.n_threads = threads, .dtype = dtype, .backend = &backend};
    if (mg_model_load(&m, dir, &opt, &err) != MG_OK)
        DIE("%s (%s)", err.msg, dtype);
    return m;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        DIE("usage: bench_fidelity MODEL_DIR [--columns L] [--threads N] [--json FILE]");
    int L = 100, threads = 0;
    const char *json_path = NULL;
    for (int i = 2; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--columns"))
            L = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--threads"))
            threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--json"))
            json_path = argv[i + 1];
        else
            DIE("unknown option %s", argv[i]);
    }
    if (L < 2 || L > 1000)
        DIE("--columns: between 2 and 1000");

    mg_model *m = load(argv[1], "f32", threads, 1);
    const mg_config *c = mg_model_config(m);
    int K = c->num_codebooks, V = c->dec_vocab, heads = c->dec_heads;
    int head_dim = c->dec_hidden / heads;
    float *ref = forced_logits(m, L);
    mg_model_free(m);

    static const char *const names[3] = {"bf16", "q8", "q8_bf16_caches"};
    float *runs[3];
    int kv8 = 0;
    m = load(argv[1], "bf16", threads, 1);
    runs[0] = forced_logits(m, L);
    mg_model_free(m);
    m = load(argv[1], "q8", threads, 1);
    mg_backend_caps caps;
    mg_backend_get_caps(mg_model_backend(m), &caps);
    kv8 = caps.kv_q8row_fits && caps.kv_q8row_fits(mg_model_backend(m), heads, head_dim, L);
    runs[1] = forced_logits(m, L);
    mg_model_free(m);
    m = load(argv[1], "q8", threads, 0);
    runs[2] = forced_logits(m, L);
    mg_model_free(m);

    int64_t n = (int64_t)2 * K * L * V, rows = (int64_t)2 * K * L;
    double scale = 0;
    for (int64_t i = 0; i < n; i++)
        scale = fmax(scale, fabs(ref[i]));
    json_t *out = json_object();
    printf("teacher-forced %d columns (text and unconditional rows, %d heads x %d), against f32; "
           "logit scale %.3g\n", L, heads, head_dim, scale);
    for (int r = 0; r < 3; r++) {
        double dev = 0;
        int64_t same = 0;
        for (int64_t i = 0; i < n; i++)
            dev = fmax(dev, fabs(runs[r][i] - ref[i]));
        for (int64_t row = 0; row < rows; row++) {
            const float *a = ref + row * V, *b = runs[r] + row * V;
            int ia = 0, ib = 0;
            for (int v = 1; v < V; v++) {
                ia = a[v] > a[ia] ? v : ia;
                ib = b[v] > b[ib] ? v : ib;
            }
            same += ia == ib;
        }
        const char *what = r == 1 ? (kv8 ? " (8-bit attention caches)" : " (BF16 caches: no VNNI here)")
                         : r == 2 ? " (BF16 attention caches)" : "";
        printf("fidelity %-15s max |dlogit| / logit scale = %.2e; argmax equal to f32: %.1f %%%s\n",
               names[r], dev / scale, 100.0 * same / rows, what);
        char key[64];
        snprintf(key, sizeof key, "fidelity_dlogit_%s", names[r]);
        json_object_set_new(out, key, json_real(dev / scale));
        snprintf(key, sizeof key, "fidelity_argmax_pct_%s", names[r]);
        json_object_set_new(out, key, json_real(100.0 * same / rows));
        free(runs[r]);
    }
    free(ref);
    if (json_path && json_dump_file(out, json_path, JSON_INDENT(2) | JSON_SORT_KEYS) != 0)
        DIE("cannot write %s", json_path);
    json_decref(out);
    return 0;
}
