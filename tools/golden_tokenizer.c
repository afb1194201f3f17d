/* mg-golden, tokenizer folder: every prompt of t5_tokenizer_goldens.json
 * through mg_tokenize (vs hf_slow_ids) and mg_tokenize_spm (vs spm_ids), plus
 * the padded batch example. One line per comparison. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "golden.h"
#include "io/tokenizer.h"

/* "[a,b,c]" into out (cut short with "..." when it does not fit). */
static void format_ids(char *out, size_t cap, const int32_t *ids, int n)
{
    size_t k = (size_t)snprintf(out, cap, "[");
    for (int i = 0; i < n; i++) {
        if (k + 24 >= cap) {
            snprintf(out + k, cap - k, "...");
            return;
        }
        k += (size_t)snprintf(out + k, cap - k, "%s%d", i ? "," : "", ids[i]);
    }
    snprintf(out + k, cap - k, "]");
}

/* JSON int array -> malloc'd int32 array (never NULL unless out of memory). */
static int32_t *json_ids(const json_t *arr, int *n)
{
    *n = (int)json_array_size(arr);
    int32_t *ids = malloc(((size_t)*n + 1) * sizeof *ids);
    if (ids)
        for (int i = 0; i < *n; i++)
            ids[i] = (int32_t)json_integer_value(json_array_get(arr, (size_t)i));
    return ids;
}

/* The prompt's exact bytes: utf8_hex when present, else text. */
static char *prompt_bytes(const json_t *prompt, size_t *len)
{
    const char *hex = json_string_value(json_object_get(prompt, "utf8_hex"));
    const json_t *text = json_object_get(prompt, "text");
    size_t n = hex ? strlen(hex) / 2 : json_string_length(text);
    char *s = malloc(n + 1);
    if (!s)
        return NULL;
    for (size_t i = 0; hex && i < n; i++) {
        unsigned v = 0;
        sscanf(hex + 2 * i, "%2x", &v);
        s[i] = (char)v;
    }
    if (!hex && n)
        memcpy(s, json_string_value(text), n);
    s[n] = '\0';
    *len = n;
    return s;
}

static void compare(golden_tally *t, const char *name, mg_code rc, const mg_error *err,
                    const int32_t *got, int n_got, const int32_t *want, int n_want)
{
    if (rc != MG_OK) {
        golden_report(t, 0, name, "%s", err->msg);
        return;
    }
    int ok = n_got == n_want && (n_got == 0 || !memcmp(got, want, (size_t)n_got * sizeof *got));
    if (ok) {
        golden_report(t, 1, name, "%d ids", n_got);
    } else {
        char g[256], w[256];
        format_ids(g, sizeof g, got, n_got);
        format_ids(w, sizeof w, want, n_want);
        golden_report(t, 0, name, "got %s want %s", g, w);
    }
}

static void check_padded_batch(const mg_tokenizer *tok, const json_t *batch, golden_tally *t)
{
    const json_t *texts = json_object_get(batch, "texts");
    const json_t *want_ids = json_object_get(batch, "input_ids");
    const json_t *want_mask = json_object_get(batch, "attention_mask");
    size_t b = json_array_size(texts);
    if (b == 0 || json_array_size(want_ids) != b || json_array_size(want_mask) != b) {
        golden_skip(t, "tokenizer.padded_batch", "no usable padded_batch_example");
        return;
    }
    int32_t **rows = calloc(b, sizeof *rows);
    int *lens = calloc(b, sizeof *lens);
    int ok = rows && lens, width = 0;
    mg_error err = { 0 };
    for (size_t r = 0; ok && r < b; r++) {
        const json_t *s = json_array_get(texts, r);
        ok = mg_tokenize(tok, json_string_value(s), json_string_length(s), 0, &rows[r], &lens[r],
                         &err) == MG_OK;
        if (ok && lens[r] > width)
            width = lens[r];
    }
    /* Right-padded with <pad>, mask 1 on real tokens. */
    for (size_t r = 0; ok && r < b; r++) {
        const json_t *wi = json_array_get(want_ids, r), *wm = json_array_get(want_mask, r);
        ok = (int)json_array_size(wi) == width && (int)json_array_size(wm) == width;
        for (int j = 0; ok && j < width; j++) {
            int id = j < lens[r] ? rows[r][j] : mg_tokenizer_pad_id(tok);
            ok = id == json_integer_value(json_array_get(wi, (size_t)j)) &&
                 (j < lens[r]) == json_integer_value(json_array_get(wm, (size_t)j));
        }
    }
    golden_report(t, ok, "tokenizer.padded_batch", "%zu rows x %d", b, width);
    for (size_t r = 0; rows && r < b; r++)
        free(rows[r]);
    free(rows);
    free(lens);
}

void golden_check_tokenizer(const char *dir, golden_tally *t)
{
    char model_path[4096], json_path[4096];
    snprintf(model_path, sizeof model_path, "%s/spiece.model", dir);
    snprintf(json_path, sizeof json_path, "%s/t5_tokenizer_goldens.json", dir);

    mg_tokenizer *tok = NULL;
    mg_error err = { 0 };
    if (mg_tokenizer_load_file(&tok, model_path, &err) != MG_OK) {
        golden_report(t, 0, "tokenizer.load", "%s", err.msg);
        return;
    }
    json_error_t jerr;
    json_t *root = json_load_file(json_path, 0, &jerr);
    if (!root) {
        golden_report(t, 0, "tokenizer.json", "%s: %s", json_path, jerr.text);
        mg_tokenizer_free(tok);
        return;
    }
    golden_report(t, mg_tokenizer_vocab_size(tok) == 32000, "tokenizer.vocab_size", "%d",
                  mg_tokenizer_vocab_size(tok));

    const json_t *prompts = json_object_get(root, "prompts");
    for (size_t i = 0; i < json_array_size(prompts); i++) {
        const json_t *p = json_array_get(prompts, i);
        size_t len = 0;
        int n_hf = 0, n_spm = 0, n = 0;
        char *text = prompt_bytes(p, &len);
        int32_t *want_hf = json_ids(json_object_get(p, "hf_slow_ids"), &n_hf);
        int32_t *want_spm = json_ids(json_object_get(p, "spm_ids"), &n_spm);
        char name[64];
        snprintf(name, sizeof name, "tokenizer.prompt[%02zu]", i);
        if (!text || !want_hf || !want_spm) {
            golden_report(t, 0, name, "out of memory");
        } else {
            int32_t *ids = NULL;
            mg_code rc = mg_tokenize(tok, text, len, 0, &ids, &n, &err);
            compare(t, name, rc, &err, ids, n, want_hf, n_hf);
            free(ids);
            ids = NULL;
            snprintf(name, sizeof name, "tokenizer.prompt[%02zu].spm", i);
            rc = mg_tokenize_spm(tok, text, len, &ids, &n, &err);
            compare(t, name, rc, &err, ids, n, want_spm, n_spm);
            free(ids);
        }
        free(text);
        free(want_hf);
        free(want_spm);
    }
    check_padded_batch(tok, json_object_get(root, "padded_batch_example"), t);
    json_decref(root);
    mg_tokenizer_free(tok);
}
