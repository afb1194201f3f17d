/* T5 SentencePiece tokenizer (unigram model), matching sentencepiece 0.1.97 and
 * transformers' slow T5Tokenizer (legacy=True) id for id.
 *
 * Pipeline of mg_tokenize_spm (= SentencePieceProcessor.encode):
 *   1. normalise: longest-match rewrite rules from the model's precompiled
 *      charsmap (a Darts-clone double-array trie), drop leading/trailing and
 *      repeated spaces, add the dummy-prefix space, spaces -> U+2581 "▁";
 *   2. unigram Viterbi over the normalised bytes: best-scoring segmentation
 *      into vocabulary pieces; a character no piece starts with becomes an
 *      unknown node with score min_score - 10;
 *   3. consecutive unknown pieces are merged into one <unk>.
 * mg_tokenize adds HF's layer: split the raw text on added-token strings,
 * encode each chunk separately, append </s>. */
#include "io/tokenizer.h"

#include <errno.h>
#include <float.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/spm_model.h"

/* Longest text we accept: keeps every normalised offset well inside int32. */
#define MAX_TEXT_BYTES ((size_t)1 << 24)

typedef struct {
    const uint8_t *str;
    uint32_t       len;
    int32_t        id;
} vocab_entry;

struct mg_tokenizer {
    spm_model    model;
    /* Sorted by bytes. vocab: NORMAL, USER_DEFINED and UNUSED pieces (what
     * Viterbi may match); reserved: UNKNOWN, CONTROL, BYTE (exact lookup only);
     * user_defined: matched verbatim before the charsmap, as sentencepiece does. */
    vocab_entry *vocab, *reserved, *user_defined;
    int          n_vocab, n_reserved, n_user_defined;
    int32_t      unk_id;                /* the one UNKNOWN piece */
    float        min_score, max_score;  /* over NORMAL pieces */
    int32_t      byte_ids[256];         /* <0xXX> pieces when byte_fallback */
    /* precompiled charsmap: double-array units (decoded little-endian) and the
     * block of NUL-terminated replacement strings the leaf values point into */
    uint32_t    *trie;
    size_t       n_units;
    const char  *replacements;
    size_t       replacements_len;
    /* HF added tokens */
    int32_t      eos_id, pad_id, unk_token_id;
    int32_t      extra_id_0;            /* <extra_id_i> = extra_id_0 - i */
};

/* ---- growable buffers ------------------------------------------------------ */

typedef struct {
    uint8_t *data;
    size_t   len, cap;
} byte_buf;

typedef struct {
    int32_t *data;
    size_t   len, cap;
} id_buf;

static bool grow(void **data, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return true;
    size_t cap2 = *cap ? *cap : 64;
    while (cap2 < need) {
        if (cap2 > SIZE_MAX / 2 / elem)
            return false;
        cap2 *= 2;
    }
    void *p = realloc(*data, cap2 * elem);
    if (!p)
        return false;
    *data = p;
    *cap = cap2;
    return true;
}

static bool bytes_append(byte_buf *b, const void *src, size_t n)
{
    if (!grow((void **)&b->data, &b->cap, b->len + n, 1))
        return false;
    memcpy(b->data + b->len, src, n);
    b->len += n;
    return true;
}

static bool ids_push(id_buf *b, int32_t id)
{
    if (!grow((void **)&b->data, &b->cap, b->len + 1, sizeof *b->data))
        return false;
    b->data[b->len++] = id;
    return true;
}

static mg_code out_of_memory(mg_error *err)
{
    return mg_fail(err, MG_ERR_NOMEM, "tokenizer: out of memory");
}

/* ---- UTF-8 ------------------------------------------------------------------- */

/* Byte length of the character starting with lead byte c, from the lead alone
 * (sentencepiece's OneCharLen: continuation and invalid bytes count as 1). */
static int one_char_len(uint8_t c)
{
    static const uint8_t len_by_high_nibble[16] = { 1, 1, 1, 1, 1, 1, 1, 1,
                                                    1, 1, 1, 1, 2, 2, 3, 4 };
    return len_by_high_nibble[c >> 4];
}

/* Length of the well-formed UTF-8 character at s[0..n), 0 if malformed
 * (overlong, surrogate, > U+10FFFF, truncated), as sentencepiece's DecodeUTF8. */
static size_t utf8_char_len(const uint8_t *s, size_t n)
{
    uint32_t cp;
    if (s[0] < 0x80)
        return 1;
    if (n >= 2 && (s[0] & 0xe0) == 0xc0 && (s[1] & 0xc0) == 0x80) {
        cp = ((uint32_t)(s[0] & 0x1f) << 6) | (s[1] & 0x3f);
        return cp >= 0x80 ? 2 : 0;
    }
    if (n >= 3 && (s[0] & 0xf0) == 0xe0 && (s[1] & 0xc0) == 0x80 && (s[2] & 0xc0) == 0x80) {
        cp = ((uint32_t)(s[0] & 0x0f) << 12) | ((uint32_t)(s[1] & 0x3f) << 6) | (s[2] & 0x3f);
        return cp >= 0x800 && (cp < 0xd800 || cp > 0xdfff) ? 3 : 0;
    }
    if (n >= 4 && (s[0] & 0xf8) == 0xf0 && (s[1] & 0xc0) == 0x80 && (s[2] & 0xc0) == 0x80 &&
        (s[3] & 0xc0) == 0x80) {
        cp = ((uint32_t)(s[0] & 0x07) << 18) | ((uint32_t)(s[1] & 0x3f) << 12) |
             ((uint32_t)(s[2] & 0x3f) << 6) | (s[3] & 0x3f);
        return cp >= 0x10000 && cp <= 0x10ffff ? 4 : 0;
    }
    return 0;
}

/* Python's str.isspace() characters, UTF-8 encoded: HF strips these around
 * <extra_id_N> with str.lstrip()/rstrip(). */
static const char *const py_spaces[] = {
    "\t", "\n", "\v", "\f", "\r", "\x1c", "\x1d", "\x1e", "\x1f", " ",
    "\xc2\x85", "\xc2\xa0", "\xe1\x9a\x80",
    "\xe2\x80\x80", "\xe2\x80\x81", "\xe2\x80\x82", "\xe2\x80\x83", "\xe2\x80\x84",
    "\xe2\x80\x85", "\xe2\x80\x86", "\xe2\x80\x87", "\xe2\x80\x88", "\xe2\x80\x89",
    "\xe2\x80\x8a", "\xe2\x80\xa8", "\xe2\x80\xa9", "\xe2\x80\xaf", "\xe2\x81\x9f",
    "\xe3\x80\x80",
};

/* Byte length of the Python whitespace character at the start (at_end = false)
 * or the end (at_end = true) of s[0..n), 0 if there is none. */
static size_t py_space_len(const char *s, size_t n, bool at_end)
{
    for (size_t i = 0; i < sizeof py_spaces / sizeof py_spaces[0]; i++) {
        size_t k = strlen(py_spaces[i]);
        if (k <= n && !memcmp(at_end ? s + n - k : s, py_spaces[i], k))
            return k;
    }
    return 0;
}

/* ---- sorted piece tables ----------------------------------------------------- */

static int entry_cmp(const void *a, const void *b)
{
    const vocab_entry *x = a, *y = b;
    uint32_t n = x->len < y->len ? x->len : y->len;
    int c = n ? memcmp(x->str, y->str, n) : 0;
    if (c)
        return c;
    return (x->len > y->len) - (x->len < y->len);
}

/* Exact lookup; -1 if absent. */
static int32_t table_find(const vocab_entry *v, int n, const void *str, size_t len)
{
    vocab_entry key = { str, (uint32_t)len, -1 };
    const vocab_entry *e = bsearch(&key, v, (size_t)n, sizeof *v, entry_cmp);
    return e ? e->id : -1;
}

/* Prefix search step. [*lo, *hi) holds the entries that all begin with the k
 * bytes matched so far; keep those whose byte k is c. Since a string sorts
 * before its extensions, an entry equal to the new (k+1)-byte prefix is then
 * at *lo. Returns false when nothing is left. */
static bool narrow(const vocab_entry *v, int *lo, int *hi, uint32_t k, uint8_t c)
{
    int a = *lo, b = *hi;
    if (a < b && v[a].len == k)   /* the entry equal to the k-byte prefix */
        a++;
    int l = a, h = b;
    while (l < h) {
        int mid = l + (h - l) / 2;
        if (v[mid].str[k] < c) l = mid + 1; else h = mid;
    }
    a = l;
    h = b;
    while (l < h) {
        int mid = l + (h - l) / 2;
        if (v[mid].str[k] <= c) l = mid + 1; else h = mid;
    }
    *lo = a;
    *hi = l;
    return a < l;
}

/* sentencepiece's PieceToId: reserved pieces first, then normal ones, else unk. */
static int32_t piece_to_id(const mg_tokenizer *tok, const char *piece)
{
    size_t len = strlen(piece);
    int32_t id = table_find(tok->reserved, tok->n_reserved, piece, len);
    if (id < 0)
        id = table_find(tok->vocab, tok->n_vocab, piece, len);
    return id < 0 ? tok->unk_id : id;
}

/* "<0xXX>" (upper-case hex, as sentencepiece writes it) -> byte, else -1. */
static int byte_piece_value(const spm_piece *p)
{
    static const char hex[] = "0123456789ABCDEF";
    if (p->len != 6 || memcmp(p->str, "<0x", 3) || p->str[5] != '>')
        return -1;
    const char *hi = p->str[3] ? strchr(hex, p->str[3]) : NULL;
    const char *lo = p->str[4] ? strchr(hex, p->str[4]) : NULL;
    if (!hi || !lo)
        return -1;
    return (int)((hi - hex) * 16 + (lo - hex));
}

static mg_code check_unique(const vocab_entry *v, int n, mg_error *err)
{
    for (int i = 1; i < n; i++)
        if (entry_cmp(&v[i - 1], &v[i]) == 0)
            return mg_fail(err, MG_ERR_CORRUPT, "spiece.model: piece \"%.*s\" is defined twice",
                           (int)(v[i].len > 64 ? 64 : v[i].len), (const char *)v[i].str);
    return MG_OK;
}

static mg_code build_vocab(mg_tokenizer *tok, mg_error *err)
{
    const spm_model *m = &tok->model;
    if (m->model_type != SPM_MODEL_UNIGRAM)
        return mg_fail(err, MG_ERR_UNSUPPORTED,
                       "spiece.model: model_type %d is not supported (only unigram = 1)",
                       m->model_type);
    tok->vocab = malloc((size_t)m->n_pieces * sizeof *tok->vocab);
    tok->reserved = malloc((size_t)m->n_pieces * sizeof *tok->reserved);
    tok->user_defined = malloc((size_t)m->n_pieces * sizeof *tok->user_defined);
    if (!tok->vocab || !tok->reserved || !tok->user_defined)
        return out_of_memory(err);

    tok->unk_id = -1;
    tok->min_score = FLT_MAX;
    tok->max_score = FLT_MIN;   /* sentencepiece's initial value (smallest positive float) */
    for (int b = 0; b < 256; b++)
        tok->byte_ids[b] = -1;

    for (int i = 0; i < m->n_pieces; i++) {
        const spm_piece *p = &m->pieces[i];
        vocab_entry e = { (const uint8_t *)p->str, p->len, i };
        if (p->len == 0)
            return mg_fail(err, MG_ERR_CORRUPT, "spiece.model: piece %d is empty", i);
        switch (p->type) {
        case SPM_NORMAL:
            if (p->score < tok->min_score) tok->min_score = p->score;
            if (p->score > tok->max_score) tok->max_score = p->score;
            tok->vocab[tok->n_vocab++] = e;
            break;
        case SPM_USER_DEFINED:
            tok->user_defined[tok->n_user_defined++] = e;
            tok->vocab[tok->n_vocab++] = e;
            break;
        case SPM_UNUSED:
            tok->vocab[tok->n_vocab++] = e;
            break;
        case SPM_UNKNOWN:
            if (tok->unk_id >= 0)
                return mg_fail(err, MG_ERR_CORRUPT,
                               "spiece.model: pieces %d and %d are both UNKNOWN", tok->unk_id, i);
            tok->unk_id = i;
            tok->reserved[tok->n_reserved++] = e;
            break;
        case SPM_BYTE: {
            int b = byte_piece_value(p);
            if (!m->byte_fallback)
                return mg_fail(err, MG_ERR_CORRUPT,
                               "spiece.model: byte piece %d found although byte_fallback is off", i);
            if (b < 0)
                return mg_fail(err, MG_ERR_CORRUPT, "spiece.model: byte piece %d is not <0xXX>", i);
            tok->byte_ids[b] = i;
            tok->reserved[tok->n_reserved++] = e;
            break;
        }
        case SPM_CONTROL:
            tok->reserved[tok->n_reserved++] = e;
            break;
        }
    }
    if (tok->unk_id < 0)
        return mg_fail(err, MG_ERR_CORRUPT, "spiece.model: no UNKNOWN piece");
    if (m->byte_fallback)
        for (int b = 0; b < 256; b++)
            if (tok->byte_ids[b] < 0)
                return mg_fail(err, MG_ERR_CORRUPT,
                               "spiece.model: byte_fallback is on but <0x%02X> is missing", b);

    qsort(tok->vocab, (size_t)tok->n_vocab, sizeof *tok->vocab, entry_cmp);
    qsort(tok->reserved, (size_t)tok->n_reserved, sizeof *tok->reserved, entry_cmp);
    qsort(tok->user_defined, (size_t)tok->n_user_defined, sizeof *tok->user_defined, entry_cmp);
    mg_code rc = check_unique(tok->vocab, tok->n_vocab, err);
    if (rc == MG_OK)
        rc = check_unique(tok->reserved, tok->n_reserved, err);
    return rc;
}

/* ---- precompiled charsmap (Darts-clone double array) ------------------------- *
 * Blob: <u32 LE trie bytes><trie units, u32 LE each><replacement strings, NUL-
 * terminated>. A unit packs label (bits 0-7, bit 31 set on leaf units), a has-
 * leaf flag (bit 8) and an offset (bits 10-31, scaled by 256 if bit 9); a leaf
 * unit's low 31 bits are the value, here an offset into the strings. */

static uint32_t unit_offset(uint32_t u) { return (u >> 10) << ((u & (1u << 9)) >> 6); }
static uint32_t unit_label(uint32_t u) { return u & ((1u << 31) | 0xff); }
static bool unit_has_leaf(uint32_t u) { return (u >> 8) & 1; }

static uint32_t read_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static mg_code build_charsmap(mg_tokenizer *tok, mg_error *err)
{
    const uint8_t *blob = tok->model.charsmap;
    size_t len = tok->model.charsmap_len;
    if (!blob || len == 0)
        return MG_OK;   /* identity normalisation */
    if (len <= 4)
        return mg_fail(err, MG_ERR_CORRUPT, "spiece.model: precompiled_charsmap is truncated");
    size_t trie_bytes = read_le32(blob);
    if (trie_bytes > len - 4 || trie_bytes / 4 == 0)
        return mg_fail(err, MG_ERR_CORRUPT,
                       "spiece.model: precompiled_charsmap trie size %zu does not fit in %zu bytes",
                       trie_bytes, len);
    tok->n_units = trie_bytes / 4;
    tok->replacements = (const char *)blob + 4 + trie_bytes;
    tok->replacements_len = len - 4 - trie_bytes;
    /* Every replacement must be NUL-terminated inside the blob. */
    if (tok->replacements_len && tok->replacements[tok->replacements_len - 1] != '\0')
        return mg_fail(err, MG_ERR_CORRUPT,
                       "spiece.model: precompiled_charsmap strings are not NUL-terminated");
    tok->trie = malloc(tok->n_units * sizeof *tok->trie);
    if (!tok->trie)
        return out_of_memory(err);
    for (size_t i = 0; i < tok->n_units; i++)
        tok->trie[i] = read_le32(blob + 4 + 4 * i);
    return MG_OK;
}

/* Longest charsmap rule matching a prefix of s[0..n): returns its length in
 * bytes (0: none) and points *rep at the replacement; -1 if the trie points
 * outside itself (corrupt model). */
static long charsmap_match(const mg_tokenizer *tok, const uint8_t *s, size_t n, const char **rep)
{
    const uint32_t *units = tok->trie;
    size_t pos = unit_offset(units[0]);
    long best = 0;
    for (size_t i = 0; i < n; i++) {
        pos ^= s[i];
        if (pos >= tok->n_units)
            return -1;
        uint32_t u = units[pos];
        if (unit_label(u) != s[i])
            break;
        pos ^= unit_offset(u);
        if (unit_has_leaf(u)) {
            if (pos >= tok->n_units)
                return -1;
            uint32_t value = units[pos] & 0x7fffffffu;
            if (value >= tok->replacements_len)
                return -1;
            *rep = tok->replacements + value;
            best = (long)i + 1;   /* later matches are longer: keep the last */
        }
    }
    return best;
}

/* ---- normaliser -------------------------------------------------------------- */

typedef struct {
    const char *rep;        /* replacement text */
    size_t      rep_len;
    size_t      consumed;   /* input bytes it replaces (>= 1) */
} norm_step;

/* sentencepiece's NormalizePrefix: what the start of s[0..n) (n >= 1) becomes. */
static bool normalize_prefix(const mg_tokenizer *tok, const uint8_t *s, size_t n, norm_step *out)
{
    /* User-defined symbols pass through unnormalised. */
    if (tok->n_user_defined) {
        int lo = 0, hi = tok->n_user_defined;
        size_t longest = 0;
        for (size_t k = 0; k < n && narrow(tok->user_defined, &lo, &hi, (uint32_t)k, s[k]); k++)
            if (tok->user_defined[lo].len == k + 1)
                longest = k + 1;
        if (longest) {
            *out = (norm_step){ (const char *)s, longest, longest };
            return true;
        }
    }
    if (tok->trie) {
        const char *rep = NULL;
        long m = charsmap_match(tok, s, n, &rep);
        if (m < 0)
            return false;
        if (m > 0) {
            *out = (norm_step){ rep, strlen(rep), (size_t)m };
            return true;
        }
    }
    size_t clen = utf8_char_len(s, n);
    if (clen == 0)   /* malformed byte: one U+FFFD, consuming one byte */
        *out = (norm_step){ "\xef\xbf\xbd", 3, 1 };
    else
        *out = (norm_step){ (const char *)s, clen, clen };
    return true;
}

static mg_code corrupt_charsmap(mg_error *err)
{
    return mg_fail(err, MG_ERR_CORRUPT, "spiece.model: precompiled_charsmap points outside itself");
}

/* sentencepiece's Normalizer::Normalize. */
static mg_code normalize(const mg_tokenizer *tok, const uint8_t *s, size_t n, byte_buf *out,
                         mg_error *err)
{
    const spm_model *m = &tok->model;
    const char *ws = m->escape_whitespaces ? "\xe2\x96\x81" : " ";   /* U+2581 */
    const size_t ws_len = strlen(ws);
    norm_step st;
    size_t pos = 0;

    if (m->remove_extra_whitespaces) {   /* leading whitespace (after normalisation) */
        while (pos < n) {
            if (!normalize_prefix(tok, s + pos, n - pos, &st))
                return corrupt_charsmap(err);
            if (!(st.rep_len == 1 && st.rep[0] == ' '))
                break;
            pos += st.consumed;
        }
    }
    if (pos == n)
        return MG_OK;

    if (!m->treat_whitespace_as_suffix && m->add_dummy_prefix && !bytes_append(out, ws, ws_len))
        return out_of_memory(err);

    bool prev_space = m->remove_extra_whitespaces;
    while (pos < n) {
        if (!normalize_prefix(tok, s + pos, n - pos, &st))
            return corrupt_charsmap(err);
        const char *r = st.rep;
        size_t rl = st.rep_len;
        while (prev_space && rl > 0 && r[0] == ' ') {   /* collapse runs of spaces */
            r++;
            rl--;
        }
        if (rl > 0) {
            for (size_t i = 0; i < rl; i++) {
                bool ok = m->escape_whitespaces && r[i] == ' ' ? bytes_append(out, ws, ws_len)
                                                               : bytes_append(out, &r[i], 1);
                if (!ok)
                    return out_of_memory(err);
            }
            prev_space = r[rl - 1] == ' ';
        }
        pos += st.consumed;
        if (!m->remove_extra_whitespaces)
            prev_space = false;
    }

    if (m->remove_extra_whitespaces)   /* trailing whitespace */
        while (out->len >= ws_len && !memcmp(out->data + out->len - ws_len, ws, ws_len))
            out->len -= ws_len;

    if (m->treat_whitespace_as_suffix && m->add_dummy_prefix && !bytes_append(out, ws, ws_len))
        return out_of_memory(err);
    return MG_OK;
}

/* ---- unigram Viterbi (sentencepiece's EncodeOptimized) ----------------------- */

typedef struct {
    float   score;   /* best path score ending here */
    int32_t start;   /* where its last piece starts; -1: not reached yet */
    int32_t id;      /* its last piece */
} best_path;

/* Segments the normalised s[0..n) and appends ids to out. */
static mg_code viterbi(const mg_tokenizer *tok, const uint8_t *s, int32_t n, id_buf *out,
                       mg_error *err)
{
    best_path *best = malloc(((size_t)n + 1) * sizeof *best);
    int32_t *starts = malloc(((size_t)n + 1) * sizeof *starts);
    if (!best || !starts) {
        free(best);
        free(starts);
        return out_of_memory(err);
    }
    for (int32_t i = 0; i <= n; i++)
        best[i] = (best_path){ 0.0f, -1, -1 };

    const spm_piece *pieces = tok->model.pieces;
    const float unk_score = tok->min_score - 10.0f;
    for (int32_t start = 0; start < n;) {
        int32_t mblen = one_char_len(s[start]);
        if (mblen > n - start)
            mblen = n - start;
        const float base = best[start].score;
        bool has_single_char_piece = false;
        int lo = 0, hi = tok->n_vocab;
        for (int32_t k = 0; start + k < n; k++) {
            if (!narrow(tok->vocab, &lo, &hi, (uint32_t)k, s[start + k]))
                break;
            const vocab_entry *e = &tok->vocab[lo];
            if (e->len != (uint32_t)k + 1)
                continue;
            const spm_piece *p = &pieces[e->id];
            if (p->type == SPM_UNUSED)
                continue;
            /* sentencepiece scores candidates in double (the user-defined bonus
             * is a double expression) and stores the winner as float. */
            double score = p->type == SPM_USER_DEFINED
                               ? (double)((float)(k + 1) * tok->max_score) - 0.1
                               : (double)p->score;
            double cand = score + (double)base;
            best_path *t = &best[start + k + 1];
            if (t->start < 0 || cand > (double)t->score)
                *t = (best_path){ (float)cand, start, e->id };
            if (k + 1 == mblen)
                has_single_char_piece = true;
        }
        if (!has_single_char_piece) {   /* unknown character */
            float cand = unk_score + base;
            best_path *t = &best[start + mblen];
            if (t->start < 0 || cand > t->score)
                *t = (best_path){ cand, start, tok->unk_id };
        }
        start += mblen;
    }

    /* Backtrack from the end, then emit left to right. */
    int32_t n_nodes = 0;
    for (int32_t end = n; end > 0; end = best[end].start)
        starts[n_nodes++] = end;
    mg_code rc = MG_OK;
    bool prev_unk = false;
    for (int32_t i = n_nodes - 1; i >= 0 && rc == MG_OK; i--) {
        int32_t end = starts[i];
        const best_path *node = &best[end];
        bool is_unk = node->id == tok->unk_id;
        if (is_unk && tok->model.byte_fallback) {   /* unknown -> its UTF-8 bytes */
            for (int32_t b = node->start; b < end && rc == MG_OK; b++)
                if (!ids_push(out, tok->byte_ids[s[b]]))
                    rc = out_of_memory(err);
        } else if (!(is_unk && prev_unk)) {   /* a run of unknowns is one <unk> */
            if (!ids_push(out, node->id))
                rc = out_of_memory(err);
        }
        prev_unk = is_unk;
    }
    free(best);
    free(starts);
    return rc;
}

/* Normalise + Viterbi: SentencePieceProcessor.encode, ids appended to out. */
static mg_code spm_encode(const mg_tokenizer *tok, const uint8_t *text, size_t len, id_buf *out,
                          mg_error *err)
{
    byte_buf norm = { 0 };
    mg_code rc = normalize(tok, text, len, &norm, err);
    if (rc == MG_OK && norm.len > (size_t)INT32_MAX - 1)
        rc = mg_fail(err, MG_ERR_INVALID, "tokenizer: text too long");
    if (rc == MG_OK && norm.len > 0)
        rc = viterbi(tok, norm.data, (int32_t)norm.len, out, err);
    free(norm.data);
    return rc;
}

/* ---- public API -------------------------------------------------------------- */

mg_code mg_tokenizer_load(mg_tokenizer **out, const uint8_t *buf, size_t len, mg_error *err)
{
    if (!out)
        return mg_fail(err, MG_ERR_INVALID, "mg_tokenizer_load: out is NULL");
    *out = NULL;
    mg_tokenizer *tok = calloc(1, sizeof *tok);
    if (!tok)
        return out_of_memory(err);
    mg_code rc = spm_model_parse(&tok->model, buf, len, err);
    if (rc == MG_OK)
        rc = build_vocab(tok, err);
    if (rc == MG_OK)
        rc = build_charsmap(tok, err);
    if (rc != MG_OK) {
        mg_tokenizer_free(tok);
        return rc;
    }
    /* HF looks its special tokens up by string; extra ids follow the vocabulary
     * in reverse (<extra_id_0> = vocab + 99). */
    tok->eos_id = piece_to_id(tok, "</s>");
    tok->pad_id = piece_to_id(tok, "<pad>");
    tok->unk_token_id = piece_to_id(tok, "<unk>");
    tok->extra_id_0 = tok->model.n_pieces + 99;
    *out = tok;
    return MG_OK;
}

mg_code mg_tokenizer_load_file(mg_tokenizer **out, const char *path, mg_error *err)
{
    if (!out || !path)
        return mg_fail(err, MG_ERR_INVALID, "mg_tokenizer_load_file: NULL argument");
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return mg_fail(err, errno == ENOENT ? MG_ERR_NOT_FOUND : MG_ERR_IO, "%s: %s", path,
                       strerror(errno));
    uint8_t *buf = NULL;
    size_t len = 0, cap = 0;
    mg_code rc = MG_OK;
    for (;;) {
        if (!grow((void **)&buf, &cap, len + 65536, 1)) {
            rc = out_of_memory(err);
            break;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0) {
            if (ferror(f))
                rc = mg_fail(err, MG_ERR_IO, "%s: read error", path);
            break;
        }
    }
    fclose(f);
    if (rc == MG_OK) {
        rc = mg_tokenizer_load(out, buf, len, err);
        if (rc != MG_OK)
            mg_fail_context(err, "%s", path);
    }
    free(buf);
    return rc;
}

void mg_tokenizer_free(mg_tokenizer *tok)
{
    if (!tok)
        return;
    spm_model_free(&tok->model);
    free(tok->vocab);
    free(tok->reserved);
    free(tok->user_defined);
    free(tok->trie);
    free(tok);
}

int mg_tokenizer_vocab_size(const mg_tokenizer *tok) { return tok ? tok->model.n_pieces : 0; }
int mg_tokenizer_eos_id(const mg_tokenizer *tok) { return tok ? tok->eos_id : -1; }
int mg_tokenizer_pad_id(const mg_tokenizer *tok) { return tok ? tok->pad_id : -1; }

static mg_code check_args(const mg_tokenizer *tok, const char *text, size_t len, int32_t **ids,
                          int *n_ids, mg_error *err)
{
    if (!tok || !ids || !n_ids || (!text && len))
        return mg_fail(err, MG_ERR_INVALID, "tokenizer: NULL argument");
    *ids = NULL;
    *n_ids = 0;
    if (len > MAX_TEXT_BYTES)
        return mg_fail(err, MG_ERR_INVALID, "tokenizer: text of %zu bytes exceeds %zu", len,
                       MAX_TEXT_BYTES);
    return MG_OK;
}

/* Hands the buffer to the caller (never NULL, even when empty). */
static mg_code finish(id_buf *b, int32_t **ids, int *n_ids, mg_error *err)
{
    if (b->len > (size_t)INT_MAX) {
        free(b->data);
        return mg_fail(err, MG_ERR_INVALID, "tokenizer: too many ids");
    }
    if (!b->data && !grow((void **)&b->data, &b->cap, 1, sizeof *b->data))
        return out_of_memory(err);
    *ids = b->data;
    *n_ids = (int)b->len;
    return MG_OK;
}

mg_code mg_tokenize_spm(const mg_tokenizer *tok, const char *text, size_t len, int32_t **ids,
                        int *n_ids, mg_error *err)
{
    mg_code rc = check_args(tok, text, len, ids, n_ids, err);
    if (rc != MG_OK)
        return rc;
    id_buf out = { 0 };
    rc = spm_encode(tok, (const uint8_t *)text, len, &out, err);
    if (rc != MG_OK) {
        free(out.data);
        return rc;
    }
    return finish(&out, ids, n_ids, err);
}

/* ---- HF added tokens --------------------------------------------------------- */

typedef struct {
    size_t  begin, end;   /* text chunk, or the added token's bytes */
    int32_t id;           /* added token id; -1 for a text chunk */
    bool    strip;        /* <extra_id_N>: eats whitespace on both sides */
} segment;

/* The added token spelled at s[0..n), if any: its length (0: none). None of
 * them contains '<' after its first byte, so matches never overlap and a
 * left-to-right scan finds what HF's trie finds. */
static size_t match_added_token(const mg_tokenizer *tok, const char *s, size_t n, segment *seg)
{
    if (n < 4 || s[0] != '<')
        return 0;
    seg->strip = false;
    if (!memcmp(s, "</s>", 4)) { seg->id = tok->eos_id; return 4; }
    if (n >= 5 && !memcmp(s, "<pad>", 5)) { seg->id = tok->pad_id; return 5; }
    if (n >= 5 && !memcmp(s, "<unk>", 5)) { seg->id = tok->unk_token_id; return 5; }
    if (n >= 12 && !memcmp(s, "<extra_id_", 10)) {
        size_t k = 10;
        int num = 0;
        while (k < n && k < 13 && s[k] >= '0' && s[k] <= '9')
            num = num * 10 + (s[k++] - '0');
        size_t digits = k - 10;
        if (digits == 0 || digits > 2 || (digits == 2 && s[10] == '0') || k >= n || s[k] != '>')
            return 0;
        seg->id = tok->extra_id_0 - num;
        seg->strip = true;
        return k + 1;
    }
    return 0;
}

mg_code mg_tokenize(const mg_tokenizer *tok, const char *text, size_t len, int max_tokens,
                    int32_t **ids, int *n_ids, mg_error *err)
{
    mg_code rc = check_args(tok, text, len, ids, n_ids, err);
    if (rc != MG_OK)
        return rc;
    if (max_tokens <= 0)
        max_tokens = MG_TOKENIZER_MAX_TOKENS;

    /* Split on added tokens: at most two segments per '<' plus one. */
    size_t n_lt = 0;
    for (size_t i = 0; i < len; i++)
        n_lt += text[i] == '<';
    segment *segs = malloc((2 * n_lt + 1) * sizeof *segs);
    if (!segs)
        return out_of_memory(err);
    size_t n_segs = 0, chunk = 0;
    for (size_t i = 0; i < len;) {
        segment tokseg;
        size_t m = text[i] == '<' ? match_added_token(tok, text + i, len - i, &tokseg) : 0;
        if (!m) {
            i++;
            continue;
        }
        if (i > chunk)
            segs[n_segs++] = (segment){ chunk, i, -1, false };
        tokseg.begin = i;
        tokseg.end = i + m;
        segs[n_segs++] = tokseg;
        i += m;
        chunk = i;
    }
    if (chunk < len)
        segs[n_segs++] = (segment){ chunk, len, -1, false };

    /* <extra_id_N>: the next chunk loses leading, the previous trailing whitespace. */
    for (size_t i = 0; i < n_segs; i++) {
        if (segs[i].id < 0 || !segs[i].strip)
            continue;
        segment *right = i + 1 < n_segs ? &segs[i + 1] : NULL;
        segment *left = i > 0 ? &segs[i - 1] : NULL;
        size_t k;
        while (right && right->id < 0 &&
               (k = py_space_len(text + right->begin, right->end - right->begin, false)) > 0)
            right->begin += k;
        while (left && left->id < 0 &&
               (k = py_space_len(text + left->begin, left->end - left->begin, true)) > 0)
            left->end -= k;
    }

    id_buf out = { 0 };
    for (size_t i = 0; i < n_segs && rc == MG_OK; i++) {
        if (segs[i].id >= 0) {
            if (!ids_push(&out, segs[i].id))
                rc = out_of_memory(err);
        } else if (segs[i].end > segs[i].begin) {
            rc = spm_encode(tok, (const uint8_t *)text + segs[i].begin,
                            segs[i].end - segs[i].begin, &out, err);
        }
    }
    free(segs);
    /* </s> unless the text already ended with one. */
    if (rc == MG_OK && (out.len == 0 || out.data[out.len - 1] != tok->eos_id) &&
        !ids_push(&out, tok->eos_id))
        rc = out_of_memory(err);
    if (rc != MG_OK) {
        free(out.data);
        return rc;
    }
    if (out.len > (size_t)max_tokens) {   /* truncate, keeping </s> last */
        out.len = (size_t)max_tokens;
        out.data[out.len - 1] = tok->eos_id;
    }
    return finish(&out, ids, n_ids, err);
}
