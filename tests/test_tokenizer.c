/* Tokenizer tests: a synthetic model built here (always runs), parser error
 * and robustness checks, and the 63 golden prompts against the real T5
 * spiece.model (skipped when $GOLDEN/tokenizer is absent). */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "io/spm_model.h"
#include "io/tokenizer.h"

/* ---- a tiny protobuf writer for synthetic models ----------------------------- */

typedef struct {
    uint8_t *data;
    size_t   len, cap;
} pbw;

static void pbw_raw(pbw *w, const void *src, size_t n)
{
    if (w->len + n > w->cap) {
        size_t cap = w->cap ? w->cap : 256;
        while (cap < w->len + n)
            cap *= 2;
        uint8_t *p = realloc(w->data, cap);
        if (!p) {
            fprintf(stderr, "out of memory\n");
            exit(2);
        }
        w->data = p;
        w->cap = cap;
    }
    memcpy(w->data + w->len, src, n);
    w->len += n;
}

static void pbw_varint(pbw *w, uint64_t v)
{
    uint8_t b[10];
    size_t n = 0;
    do {
        b[n] = (uint8_t)(v & 0x7f);
        v >>= 7;
        if (v)
            b[n] |= 0x80;
        n++;
    } while (v);
    pbw_raw(w, b, n);
}

static void pbw_uint(pbw *w, uint32_t field, uint64_t v)
{
    pbw_varint(w, (uint64_t)field << 3 | 0);
    pbw_varint(w, v);
}

static void pbw_bytes(pbw *w, uint32_t field, const void *src, size_t n)
{
    pbw_varint(w, (uint64_t)field << 3 | 2);
    pbw_varint(w, n);
    pbw_raw(w, src, n);
}

static void pbw_float(pbw *w, uint32_t field, float x)
{
    uint32_t bits;
    memcpy(&bits, &x, 4);
    uint8_t b[4] = { (uint8_t)bits, (uint8_t)(bits >> 8), (uint8_t)(bits >> 16),
                     (uint8_t)(bits >> 24) };
    pbw_varint(w, (uint64_t)field << 3 | 5);
    pbw_raw(w, b, 4);
}

static void add_piece(pbw *model, const char *piece, float score, int type)
{
    pbw p = { 0 };
    pbw_bytes(&p, 1, piece, strlen(piece));
    pbw_float(&p, 2, score);
    if (type != SPM_NORMAL)
        pbw_uint(&p, 3, (uint64_t)type);
    pbw_bytes(model, 1, p.data, p.len);
    free(p.data);
}

/* The synthetic vocabulary: no charsmap (identity normalisation), default
 * normalizer flags, like the one our model maker writes. */
enum { S_PAD, S_EOS, S_UNK, S_WS, S_A, S_B, S_WS_A, S_WS_AB, S_C, S_SEP, S_N };

static pbw synthetic_model(int byte_fallback)
{
    pbw m = { 0 };
    add_piece(&m, "<pad>", 0, SPM_CONTROL);
    add_piece(&m, "</s>", 0, SPM_CONTROL);
    add_piece(&m, "<unk>", 0, SPM_UNKNOWN);
    add_piece(&m, "\xe2\x96\x81", -1.0f, SPM_NORMAL);
    add_piece(&m, "a", -2.0f, SPM_NORMAL);
    add_piece(&m, "b", -2.0f, SPM_NORMAL);
    add_piece(&m, "\xe2\x96\x81" "a", -1.5f, SPM_NORMAL);
    add_piece(&m, "\xe2\x96\x81" "ab", -1.0f, SPM_NORMAL);
    add_piece(&m, "c", -3.0f, SPM_NORMAL);
    add_piece(&m, "<sep>", 0, SPM_USER_DEFINED);
    if (byte_fallback)
        for (int b = 0; b < 256; b++) {
            char name[8];
            snprintf(name, sizeof name, "<0x%02X>", b);
            add_piece(&m, name, 0, SPM_BYTE);
        }
    pbw trainer = { 0 };
    pbw_uint(&trainer, 3, 1);            /* unigram */
    pbw_uint(&trainer, 40, 2);           /* unk_id */
    pbw_uint(&trainer, 41, UINT64_MAX);  /* bos_id = -1 */
    pbw_uint(&trainer, 42, 1);           /* eos_id */
    pbw_uint(&trainer, 43, 0);           /* pad_id */
    if (byte_fallback)
        pbw_uint(&trainer, 35, 1);
    pbw_bytes(&m, 2, trainer.data, trainer.len);
    free(trainer.data);
    pbw norm = { 0 };
    pbw_bytes(&norm, 1, "identity", 8);
    pbw_bytes(&m, 3, norm.data, norm.len);
    free(norm.data);
    return m;
}

static int ids_equal(const int32_t *a, int na, const int32_t *b, int nb)
{
    return na == nb && (na == 0 || !memcmp(a, b, (size_t)na * sizeof *a));
}

static void format_ids(char *out, size_t cap, const int32_t *ids, int n)
{
    size_t k = 0;
    out[0] = '\0';
    for (int i = 0; i < n && k + 16 < cap; i++)
        k += (size_t)snprintf(out + k, cap - k, "%s%d", i ? "," : "", ids[i]);
}

/* Encodes text (spm = plain sentencepiece, else HF) and compares with want. */
static void expect_ids(const mg_tokenizer *tok, int spm, const char *text, size_t len,
                       const int32_t *want, int n_want, const char *label)
{
    int32_t *ids = NULL;
    int n = -1;
    mg_error err = { 0 };
    mg_code rc = spm ? mg_tokenize_spm(tok, text, len, &ids, &n, &err)
                     : mg_tokenize(tok, text, len, 0, &ids, &n, &err);
    CHECK(rc == MG_OK, "%s: %s", label, err.msg);
    if (rc == MG_OK) {
        char got_s[512], want_s[512];
        format_ids(got_s, sizeof got_s, ids, n);
        format_ids(want_s, sizeof want_s, want, n_want);
        CHECK(ids != NULL && ids_equal(ids, n, want, n_want), "%s %s: got [%s] want [%s]", label,
              spm ? "spm" : "hf", got_s, want_s);
    }
    free(ids);
}

#define EXPECT(tok, spm, text, ...) do {                                          \
        const int32_t want_[] = { __VA_ARGS__ };                                  \
        expect_ids(tok, spm, text, strlen(text), want_, (int)(sizeof want_ / sizeof want_[0]), \
                   "\"" text "\"");                                               \
    } while (0)
#define EXPECT_EMPTY(tok, spm, text) expect_ids(tok, spm, text, strlen(text), NULL, 0, "\"" text "\"")

static void test_synthetic(void)
{
    pbw m = synthetic_model(0);
    mg_tokenizer *tok = NULL;
    mg_error err = { 0 };
    CHECK(mg_tokenizer_load(&tok, m.data, m.len, &err) == MG_OK, "synthetic load: %s", err.msg);
    if (tok) {
        CHECK(mg_tokenizer_vocab_size(tok) == S_N, "vocab size %d", mg_tokenizer_vocab_size(tok));
        CHECK(mg_tokenizer_eos_id(tok) == S_EOS && mg_tokenizer_pad_id(tok) == S_PAD,
              "special ids %d %d", mg_tokenizer_eos_id(tok), mg_tokenizer_pad_id(tok));
        EXPECT(tok, 1, "ab", S_WS_AB);
        EXPECT(tok, 1, "  a   b  ", S_WS_A, S_WS, S_B);        /* spaces collapsed, trimmed */
        EXPECT(tok, 1, "xyz", S_WS, S_UNK);                    /* unknown run -> one <unk> */
        EXPECT(tok, 1, "a\xff\xfe" "b", S_WS_A, S_UNK, S_B);   /* bad UTF-8 -> unk, no crash */
        EXPECT(tok, 1, "a\xc3", S_WS_A, S_UNK);                /* truncated sequence */
        EXPECT(tok, 1, "cxc", S_WS, S_C, S_UNK, S_C);
        EXPECT(tok, 1, "a<sep>b", S_WS_A, S_SEP, S_B);         /* user-defined kept whole */
        EXPECT(tok, 1, "\t", S_WS, S_UNK);                     /* identity: \t is not a space */
        EXPECT_EMPTY(tok, 1, "");
        EXPECT_EMPTY(tok, 1, "   ");
        EXPECT(tok, 0, "", S_EOS);
        EXPECT(tok, 0, "ab", S_WS_AB, S_EOS);
        EXPECT(tok, 0, "a</s>", S_WS_A, S_EOS);                /* no second </s> */
        EXPECT(tok, 0, "<pad>a<unk>", S_PAD, S_WS_A, S_UNK, S_EOS);
        EXPECT(tok, 0, "a <extra_id_0> b<extra_id_10>", S_WS_A, S_N + 99, S_WS, S_B, S_N + 89,
               S_EOS);
        EXPECT(tok, 0, "<extra_id_100><extra_id_01>", S_WS, S_UNK, S_A, S_UNK, S_A, S_UNK, S_EOS);
        mg_tokenizer_free(tok);
    }

    /* Byte fallback: unknown characters become their UTF-8 bytes. */
    pbw mb = synthetic_model(1);
    tok = NULL;
    CHECK(mg_tokenizer_load(&tok, mb.data, mb.len, &err) == MG_OK, "byte model load: %s", err.msg);
    if (tok) {
        EXPECT(tok, 1, "a\xc3\xa9x", S_WS_A, S_N + 0xc3, S_N + 0xa9, S_N + 'x');
        mg_tokenizer_free(tok);
    }
    free(mb.data);

    /* Every prefix of the synthetic file either loads or fails cleanly. */
    int loaded = 0, failed = 0;
    for (size_t cut = 0; cut < m.len; cut++) {
        tok = NULL;
        if (mg_tokenizer_load(&tok, m.data, cut, &err) == MG_OK) {
            loaded++;
            mg_tokenizer_free(tok);
        } else {
            failed++;
        }
    }
    CHECK(failed > 0 && loaded + failed == (int)m.len, "prefix sweep %d ok %d failed", loaded,
          failed);
    free(m.data);
}

static void test_parser_errors(void)
{
    mg_tokenizer *tok = (mg_tokenizer *)1;
    mg_error err = { 0 };
    CHECK(mg_tokenizer_load(&tok, NULL, 0, &err) != MG_OK && tok == NULL, "NULL buffer loads");
    uint8_t empty[1] = { 0 };
    CHECK(mg_tokenizer_load(&tok, empty, 0, &err) == MG_ERR_CORRUPT, "empty buffer loads");
    uint8_t ff[32];
    memset(ff, 0xff, sizeof ff);
    CHECK(mg_tokenizer_load(&tok, ff, sizeof ff, &err) == MG_ERR_CORRUPT, "0xff garbage loads");
    const char *text = "this is not a model file";
    CHECK(mg_tokenizer_load(&tok, (const uint8_t *)text, strlen(text), &err) == MG_ERR_CORRUPT,
          "text garbage loads");
    /* A piece whose length runs past the end. */
    const uint8_t overrun[] = { 0x0a, 0x7f, 0x0a, 0x01, 'a' };
    CHECK(mg_tokenizer_load(&tok, overrun, sizeof overrun, &err) == MG_ERR_CORRUPT,
          "overrun loads");
    /* A 10-byte varint that does not fit 64 bits. */
    const uint8_t big[] = { 0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f };
    CHECK(mg_tokenizer_load(&tok, big, sizeof big, &err) == MG_ERR_CORRUPT, "huge varint loads");
    /* Well-formed protobuf but no UNKNOWN piece. */
    pbw m = { 0 };
    add_piece(&m, "a", -1, SPM_NORMAL);
    CHECK(mg_tokenizer_load(&tok, m.data, m.len, &err) == MG_ERR_CORRUPT, "model without <unk>");
    add_piece(&m, "<unk>", 0, SPM_UNKNOWN);
    add_piece(&m, "a", -2, SPM_NORMAL);
    CHECK(mg_tokenizer_load(&tok, m.data, m.len, &err) == MG_ERR_CORRUPT, "duplicate piece");
    free(m.data);
    CHECK(mg_tokenizer_load_file(&tok, "/nonexistent/spiece.model", &err) == MG_ERR_NOT_FOUND,
          "missing file: %s", err.msg);

    /* Random garbage never crashes (any result is fine). */
    uint32_t x = 12345;
    uint8_t junk[256];
    for (int round = 0; round < 2000; round++) {
        size_t n = 1 + round % sizeof junk;
        for (size_t i = 0; i < n; i++) {
            x = x * 1664525u + 1013904223u;
            junk[i] = (uint8_t)(x >> 24);
        }
        tok = NULL;
        if (mg_tokenizer_load(&tok, junk, n, &err) == MG_OK)
            mg_tokenizer_free(tok);
    }
    CHECK(1, "garbage survived");
}

/* ---- golden data ------------------------------------------------------------------ */

static uint8_t *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    uint8_t *buf = NULL;
    if (fseek(f, 0, SEEK_END) == 0) {
        long n = ftell(f);
        if (n > 0 && fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)n)) != NULL &&
            fread(buf, 1, (size_t)n, f) != (size_t)n) {
            free(buf);
            buf = NULL;
        }
        *len = n > 0 ? (size_t)n : 0;
    }
    fclose(f);
    return buf;
}

/* JSON int array -> malloc'd int32 (count in *n). */
static int32_t *json_ids(const json_t *arr, int *n)
{
    *n = (int)json_array_size(arr);
    int32_t *ids = malloc(((size_t)*n + 1) * sizeof *ids);
    if (!ids)
        return NULL;
    for (int i = 0; i < *n; i++)
        ids[i] = (int32_t)json_integer_value(json_array_get(arr, (size_t)i));
    return ids;
}

/* The prompt's exact bytes: from utf8_hex when present, else from text. */
static char *prompt_bytes(const json_t *prompt, size_t *len)
{
    const char *hex = json_string_value(json_object_get(prompt, "utf8_hex"));
    if (hex) {
        size_t n = strlen(hex) / 2;
        char *s = malloc(n + 1);
        if (!s)
            return NULL;
        for (size_t i = 0; i < n; i++) {
            unsigned v;
            if (sscanf(hex + 2 * i, "%2x", &v) != 1)
                v = 0;
            s[i] = (char)v;
        }
        s[n] = '\0';
        *len = n;
        return s;
    }
    const json_t *t = json_object_get(prompt, "text");
    *len = json_string_length(t);
    char *s = malloc(*len + 1);
    if (s) {
        memcpy(s, json_string_value(t), *len);
        s[*len] = '\0';
    }
    return s;
}

static void test_goldens(const mg_tokenizer *tok, const json_t *root)
{
    const json_t *prompts = json_object_get(root, "prompts");
    CHECK(json_array_size(prompts) == 63, "%zu prompts", json_array_size(prompts));
    for (size_t i = 0; i < json_array_size(prompts); i++) {
        const json_t *p = json_array_get(prompts, i);
        size_t len = 0;
        char *text = prompt_bytes(p, &len);
        int n_spm = 0, n_hf = 0;
        int32_t *want_spm = json_ids(json_object_get(p, "spm_ids"), &n_spm);
        int32_t *want_hf = json_ids(json_object_get(p, "hf_slow_ids"), &n_hf);
        char label[32];
        snprintf(label, sizeof label, "prompt[%02zu]", i);
        if (text && want_spm && want_hf) {
            expect_ids(tok, 1, text, len, want_spm, n_spm, label);
            expect_ids(tok, 0, text, len, want_hf, n_hf, label);
        } else {
            CHECK(0, "%s: out of memory", label);
        }
        free(text);
        free(want_spm);
        free(want_hf);
    }

    /* Padded batch: right-pad with <pad> to the longest, mask 1/0. */
    const json_t *batch = json_object_get(root, "padded_batch_example");
    const json_t *texts = json_object_get(batch, "texts");
    const json_t *want_ids = json_object_get(batch, "input_ids");
    const json_t *want_mask = json_object_get(batch, "attention_mask");
    size_t b = json_array_size(texts);
    CHECK(b > 0 && json_array_size(want_ids) == b, "padded batch shape");
    int32_t *rows[8] = { 0 };
    int lens[8] = { 0 }, width = 0;
    for (size_t r = 0; r < b && r < 8; r++) {
        const json_t *t = json_array_get(texts, r);
        mg_error err = { 0 };
        CHECK(mg_tokenize(tok, json_string_value(t), json_string_length(t), 0, &rows[r], &lens[r],
                          &err) == MG_OK, "batch row %zu: %s", r, err.msg);
        if (lens[r] > width)
            width = lens[r];
    }
    for (size_t r = 0; r < b && r < 8; r++) {
        const json_t *wi = json_array_get(want_ids, r), *wm = json_array_get(want_mask, r);
        int ok = (int)json_array_size(wi) == width && (int)json_array_size(wm) == width;
        for (int j = 0; ok && j < width; j++) {
            int id = j < lens[r] ? rows[r][j] : mg_tokenizer_pad_id(tok);
            int mask = j < lens[r];
            ok = id == json_integer_value(json_array_get(wi, (size_t)j)) &&
                 mask == json_integer_value(json_array_get(wm, (size_t)j));
        }
        CHECK(ok, "padded batch row %zu differs", r);
        free(rows[r]);
    }
}

static void test_truncation(const mg_tokenizer *tok, const json_t *root)
{
    const json_t *p = json_array_get(json_object_get(root, "prompts"), 62);
    size_t len = 0;
    char *text = prompt_bytes(p, &len);
    int n_hf = 0;
    int32_t *want = json_ids(json_object_get(p, "hf_slow_ids"), &n_hf);
    int32_t *ids = NULL;
    int n = 0;
    mg_error err = { 0 };
    if (text && want && mg_tokenize(tok, text, len, 10, &ids, &n, &err) == MG_OK) {
        CHECK(n == 10 && !memcmp(ids, want, 9 * sizeof *ids) && ids[9] == 1,
              "truncation to 10 gave %d ids", n);
        free(ids);
    } else {
        CHECK(0, "truncation setup: %s", err.msg);
    }
    free(text);
    free(want);

    /* Over the default limit: 600 words of 2 ids each. */
    size_t big_len = 600 * 2;
    char *big = malloc(big_len);
    int32_t *full = NULL;
    int n_full = 0;
    if (big) {
        for (size_t i = 0; i < big_len; i += 2) {
            big[i] = 'a';
            big[i + 1] = ' ';
        }
        CHECK(mg_tokenize(tok, big, big_len, 0, &ids, &n, &err) == MG_OK, "%s", err.msg);
        CHECK(mg_tokenize(tok, big, big_len, 100000, &full, &n_full, &err) == MG_OK, "%s",
              err.msg);
        if (ids && full) {
            CHECK(n == MG_TOKENIZER_MAX_TOKENS && ids[n - 1] == 1, "default limit gave %d ids", n);
            CHECK(n_full == 1201 && !memcmp(ids, full, (size_t)(n - 1) * sizeof *ids),
                  "untruncated %d ids", n_full);
        }
        free(ids);
        free(full);
        free(big);
    }
}

/* Byte flips in the real model: load may fail, but nothing may crash. */
static void test_mutations(const uint8_t *buf, size_t len)
{
    uint8_t *copy = malloc(len);
    if (!copy)
        return;
    uint32_t x = 777;
    int loaded = 0;
    for (int round = 0; round < 40; round++) {
        memcpy(copy, buf, len);
        for (int k = 0; k < 8; k++) {
            x = x * 1664525u + 1013904223u;
            size_t at = round < 20 ? x % 2048 : len - 1 - x % 240000; /* header or charsmap */
            copy[at] ^= (uint8_t)(1u << (x >> 29));
        }
        mg_tokenizer *tok = NULL;
        mg_error err = { 0 };
        if (mg_tokenizer_load(&tok, copy, len, &err) == MG_OK) {
            loaded++;
            const char *s = "Ｆｕｌｌ-width caf\xc3\xa9 \xef\xac\x81 \xe2\x91\xa0 \xff <extra_id_7>";
            int32_t *ids = NULL;
            int n = 0;
            if (mg_tokenize(tok, s, strlen(s), 0, &ids, &n, &err) == MG_OK)
                free(ids);
            mg_tokenizer_free(tok);
        }
    }
    CHECK(1, "mutations survived (%d loaded)", loaded);
    free(copy);
}

int main(void)
{
    test_synthetic();
    test_parser_errors();

    char model_path[1024], json_path[1024];
    snprintf(model_path, sizeof model_path, "%s/tokenizer/spiece.model", check_golden_dir());
    snprintf(json_path, sizeof json_path, "%s/tokenizer/t5_tokenizer_goldens.json",
             check_golden_dir());
    size_t len = 0;
    uint8_t *buf = read_file(model_path, &len);
    if (!buf) {
        SKIP("%s not found: T5 golden checks skipped", model_path);
        return check_summary("tokenizer");
    }
    mg_tokenizer *tok = NULL;
    mg_error err = { 0 };
    CHECK(mg_tokenizer_load(&tok, buf, len, &err) == MG_OK, "load %s: %s", model_path, err.msg);
    if (tok) {
        CHECK(mg_tokenizer_vocab_size(tok) == 32000, "vocab %d", mg_tokenizer_vocab_size(tok));
        CHECK(mg_tokenizer_eos_id(tok) == 1 && mg_tokenizer_pad_id(tok) == 0, "special ids");

        /* Truncated real files fail cleanly. */
        mg_tokenizer *bad = NULL;
        CHECK(mg_tokenizer_load(&bad, buf, len - 1, &err) == MG_ERR_CORRUPT && !bad,
              "file minus one byte loads");
        CHECK(mg_tokenizer_load(&bad, buf, len / 2, &err) == MG_ERR_CORRUPT && !bad,
              "half file loads");
        for (size_t cut = 1; cut < len; cut += len / 97) {
            if (mg_tokenizer_load(&bad, buf, cut, &err) == MG_OK)
                mg_tokenizer_free(bad);
        }
        test_mutations(buf, len);

        json_error_t jerr;
        json_t *root = json_load_file(json_path, 0, &jerr);
        if (!root) {
            SKIP("%s: %s", json_path, jerr.text);
        } else {
            test_goldens(tok, root);
            test_truncation(tok, root);
            json_decref(root);
        }
        mg_tokenizer_free(tok);
    }
    free(buf);
    return check_summary("tokenizer");
}
