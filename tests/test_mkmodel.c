/* musicgen-mkmodel and the writers behind it: safetensors layout, key names
 * and shapes against the golden tiny-proj checkpoint, determinism, configs,
 * the synthetic spiece.model, half dtypes and error handling. */
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <jansson.h>
#include <libgen.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "io/safetensors_write.h"
#include "../tools/spm_write.h"

static char tool[4096];
static char tmpdir[] = "/tmp/test_mkmodel.XXXXXX";

/* ---- helpers ----------------------------------------------------------- */

/* snprintf that reports truncation (paths here are short; a cut one is a bug). */
static void sfmt(char *buf, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void sfmt(char *buf, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, size, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= size) {
        printf("FAIL path too long: %s\n", buf);
        exit(1);
    }
}

static uint8_t *read_all(const char *path, size_t *len)
{
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    uint8_t *buf = NULL;
    size_t cap = 0, n = 0, got;
    do {
        if (n == cap) {
            cap = cap ? cap * 2 : 65536;
            uint8_t *p = realloc(buf, cap);
            if (!p) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = p;
        }
        got = fread(buf + n, 1, cap - n, f);
        n += got;
    } while (got > 0);
    fclose(f);
    *len = n;
    return buf;
}

static int file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static int same_file(const char *a, const char *b)
{
    size_t la, lb;
    uint8_t *x = read_all(a, &la), *y = read_all(b, &lb);
    int same = x && y && la == lb && memcmp(x, y, la) == 0;
    free(x);
    free(y);
    return same;
}

/* Runs the tool with the given argument string; returns its exit status. */
static int mk(const char *args)
{
    char cmd[8192];
    sfmt(cmd, sizeof cmd, "'%s' %s 2>>%s/stderr.log", tool, args, tmpdir);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(path);
}

/* Whether dir holds a file whose name starts with '.' (a leftover temporary). */
static int has_hidden(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int found = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        found |= e->d_name[0] == '.' && strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(d);
    return found;
}

/* ---- safetensors reading (minimal, independent of src/io/safetensors.c) --- */

typedef struct {
    uint8_t *buf;
    size_t   len;
    uint64_t hlen;
    json_t  *header;
} st_file;

static int st_load(st_file *s, const char *path)
{
    memset(s, 0, sizeof *s);
    s->buf = read_all(path, &s->len);
    if (!s->buf || s->len < 8)
        return 0;
    for (int i = 0; i < 8; i++)
        s->hlen |= (uint64_t)s->buf[i] << (8 * i);
    if (s->hlen > s->len - 8)
        return 0;
    json_error_t e;
    s->header = json_loadb((const char *)s->buf + 8, s->hlen, 0, &e);
    return s->header != NULL;
}

static void st_free(st_file *s)
{
    free(s->buf);
    json_decref(s->header);
}

static const uint8_t *st_data(const st_file *s, const char *name, size_t *bytes)
{
    json_t *e = json_object_get(s->header, name);
    json_t *offs = json_object_get(e, "data_offsets");
    if (!offs)
        return NULL;
    uint64_t a = json_integer_value(json_array_get(offs, 0));
    uint64_t b = json_integer_value(json_array_get(offs, 1));
    *bytes = b - a;
    return s->buf + 8 + s->hlen + a;
}

static int64_t shape_numel(json_t *shape)
{
    int64_t n = 1;
    size_t i;
    json_t *d;
    json_array_foreach(shape, i, d) n *= json_integer_value(d);
    return n;
}

/* Layout checks shared by every dtype: padded header, {"format":"pt"},
 * sorted names, contiguous in-bounds offsets that match dtype and shape. */
static void check_layout(const st_file *s, const char *dtype, size_t esize, const char *what)
{
    CHECK(s->hlen % 8 == 0, "%s: header length %llu not a multiple of 8", what,
          (unsigned long long)s->hlen);
    json_t *meta = json_object_get(s->header, "__metadata__");
    CHECK(meta && json_object_size(meta) == 1 &&
              json_is_string(json_object_get(meta, "format")) &&
              strcmp(json_string_value(json_object_get(meta, "format")), "pt") == 0,
          "%s: metadata is not {\"format\":\"pt\"}", what);
    uint64_t expect = 0;
    const char *prev = "";
    int bad_order = 0, bad_offs = 0, bad_dtype = 0;
    const char *key;
    json_t *v;
    json_object_foreach(s->header, key, v) {
        if (strcmp(key, "__metadata__") == 0)
            continue;
        if (strcmp(prev, key) >= 0)
            bad_order++;
        prev = key;
        const char *dt = json_string_value(json_object_get(v, "dtype"));
        if (!dt || strcmp(dt, dtype) != 0)
            bad_dtype++;
        json_t *offs = json_object_get(v, "data_offsets");
        uint64_t a = json_integer_value(json_array_get(offs, 0));
        uint64_t b = json_integer_value(json_array_get(offs, 1));
        if (a != expect || b - a != (uint64_t)shape_numel(json_object_get(v, "shape")) * esize)
            bad_offs++;
        expect = b;
    }
    CHECK(bad_order == 0, "%s: %d tensor names out of sorted order", what, bad_order);
    CHECK(bad_dtype == 0, "%s: %d tensors not %s", what, bad_dtype, dtype);
    CHECK(bad_offs == 0, "%s: %d tensors with non-contiguous or wrong-size offsets", what,
          bad_offs);
    CHECK(8 + s->hlen + expect == s->len, "%s: data ends at %llu, file has %zu bytes", what,
          (unsigned long long)(8 + s->hlen + expect), s->len);
}

/* ---- protobuf reading for spiece.model --------------------------------- */

static int pb_varint(const uint8_t *p, size_t len, size_t *i, uint64_t *v)
{
    *v = 0;
    for (int shift = 0; shift < 64 && *i < len; shift += 7) {
        uint8_t c = p[(*i)++];
        *v |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80))
            return 1;
    }
    return 0;
}

/* Finds the next field; returns 0 at the end or on malformed input. For
 * length-delimited fields sub and sublen give the payload. */
static int pb_next(const uint8_t *p, size_t len, size_t *i, int *field, int *wire, uint64_t *v,
                   const uint8_t **sub, size_t *sublen)
{
    uint64_t tag;
    if (*i >= len || !pb_varint(p, len, i, &tag))
        return 0;
    *field = (int)(tag >> 3);
    *wire = (int)(tag & 7);
    if (*wire == 0)
        return pb_varint(p, len, i, v);
    if (*wire == 5) {
        if (len - *i < 4)
            return 0;
        memcpy(v, p + *i, 4);  /* little-endian host */
        *i += 4;
        return 1;
    }
    if (*wire == 2) {
        uint64_t n;
        if (!pb_varint(p, len, i, &n) || n > len - *i)
            return 0;
        *sub = p + *i;
        *sublen = (size_t)n;
        *i += (size_t)n;
        return 1;
    }
    return 0;
}

static void check_spiece(const char *path)
{
    size_t len;
    uint8_t *p = read_all(path, &len);
    CHECK(p && len > 0, "spiece.model missing");
    if (!p)
        return;
    char **pieces = calloc(65536, sizeof *pieces);
    int types[8] = {0};
    size_t npieces = 0, i = 0;
    int field, wire, malformed = 0, scores_down = 1;
    float prev_score = 0;
    int64_t unk = -9, bos = -9, eos = -9, pad = -9, model_type = -9;
    int dummy = -1, norm_ok = 0;
    uint64_t v = 0;
    const uint8_t *sub = NULL;
    size_t sublen = 0;
    while (pieces && i < len) {
        if (!pb_next(p, len, &i, &field, &wire, &v, &sub, &sublen)) {
            malformed = 1;
            break;
        }
        size_t j = 0;
        int f2, w2;
        uint64_t v2 = 0;
        const uint8_t *s2 = NULL;
        size_t l2 = 0;
        if (field == 1 && wire == 2 && npieces < 65536) {  /* SentencePiece */
            int type = 1;
            float score = 0;
            while (j < sublen && pb_next(sub, sublen, &j, &f2, &w2, &v2, &s2, &l2)) {
                if (f2 == 1 && w2 == 2)
                    pieces[npieces] = strndup((const char *)s2, l2);
                else if (f2 == 2 && w2 == 5)
                    memcpy(&score, &v2, 4);
                else if (f2 == 3 && w2 == 0)
                    type = (int)v2;
            }
            if (npieces < 8)
                types[npieces] = type;
            if (npieces > 3 && score >= prev_score)
                scores_down = 0;
            prev_score = score;
            npieces++;
        } else if (field == 2 && wire == 2) {  /* TrainerSpec */
            while (j < sublen && pb_next(sub, sublen, &j, &f2, &w2, &v2, &s2, &l2)) {
                if (w2 != 0)
                    continue;
                if (f2 == 3) model_type = (int64_t)v2;
                if (f2 == 40) unk = (int32_t)v2;
                if (f2 == 41) bos = (int32_t)v2;
                if (f2 == 42) eos = (int32_t)v2;
                if (f2 == 43) pad = (int32_t)v2;
            }
        } else if (field == 3 && wire == 2) {  /* NormalizerSpec */
            while (j < sublen && pb_next(sub, sublen, &j, &f2, &w2, &v2, &s2, &l2)) {
                if (f2 == 1 && w2 == 2)
                    norm_ok = l2 == 8 && memcmp(s2, "identity", 8) == 0;
                if (f2 == 2)
                    norm_ok = 0;  /* no precompiled charsmap expected */
                if (f2 == 3 && w2 == 0)
                    dummy = (int)v2;
            }
        }
    }
    CHECK(!malformed, "spiece.model: malformed protobuf");
    CHECK(npieces >= 300 && npieces < 32128, "spiece.model: %zu pieces", npieces);
    CHECK(npieces > 3 && pieces[0] && strcmp(pieces[0], "<pad>") == 0 && types[0] == 3,
          "piece 0 is not <pad> CONTROL");
    CHECK(npieces > 3 && pieces[1] && strcmp(pieces[1], "</s>") == 0 && types[1] == 3,
          "piece 1 is not </s> CONTROL");
    CHECK(npieces > 3 && pieces[2] && strcmp(pieces[2], "<unk>") == 0 && types[2] == 2,
          "piece 2 is not <unk> UNKNOWN");
    CHECK(npieces > 3 && pieces[3] && strcmp(pieces[3], "\xe2\x96\x81") == 0 && types[3] == 1,
          "piece 3 is not the space piece");
    CHECK(scores_down, "piece scores do not decrease with the id");
    int dups = 0, rock = 0, a_bare = 0, a_spaced = 0;
    for (size_t k = 0; k < npieces; k++) {
        if (!pieces[k])
            continue;
        rock |= strcmp(pieces[k], "\xe2\x96\x81rock") == 0;
        a_bare |= strcmp(pieces[k], "a") == 0;
        a_spaced |= strcmp(pieces[k], "\xe2\x96\x81" "a") == 0;
        for (size_t m = k + 1; m < npieces; m++)
            dups += pieces[m] && strcmp(pieces[k], pieces[m]) == 0;
    }
    CHECK(dups == 0, "spiece.model: %d duplicate pieces", dups);
    CHECK(rock && a_bare && a_spaced, "spiece.model lacks expected pieces");
    CHECK(model_type == 1 && unk == 2 && bos == -1 && eos == 1 && pad == 0,
          "trainer_spec: type %lld unk %lld bos %lld eos %lld pad %lld", (long long)model_type,
          (long long)unk, (long long)bos, (long long)eos, (long long)pad);
    CHECK(norm_ok && dummy == 1, "normalizer_spec is not identity with add_dummy_prefix");
    for (size_t k = 0; pieces && k < npieces; k++)
        free(pieces[k]);
    free(pieces);
    free(p);
}

/* ---- tests ------------------------------------------------------------- */

static void test_writer_api(void)
{
    char path[4200];
    sfmt(path, sizeof path, "%s/api.safetensors", tmpdir);
    float a[6] = {1, 2, 3, 4, 5, 6};
    int64_t b[2] = {-7, 9};
    const char *names[] = {"b.ids", "a.weight"};
    const char *dtypes[] = {"I64", "F32"};
    mg_stw_shape shapes[] = {{1, {2}}, {2, {2, 3}}};
    const void *datas[] = {b, a};
    mg_error err = {0};
    CHECK(mg_safetensors_write_file(path, 2, names, dtypes, shapes, datas, &err) == MG_OK,
          "write_file: %s", err.msg);
    st_file s;
    CHECK(st_load(&s, path), "write_file output does not parse");
    if (s.header) {
        CHECK(s.hlen % 8 == 0 && s.buf[8 + s.hlen - 1] != 0, "header not space padded");
        /* declaration order is data order */
        size_t n;
        const uint8_t *d = st_data(&s, "b.ids", &n);
        CHECK(d == s.buf + 8 + s.hlen && n == 16 && memcmp(d, b, 16) == 0, "b.ids data");
        d = st_data(&s, "a.weight", &n);
        CHECK(d && n == 24 && memcmp(d, a, 24) == 0, "a.weight data");
        CHECK(8 + s.hlen + 40 == s.len, "file size %zu", s.len);
    }
    st_free(&s);

    /* streaming misuse is reported, not written */
    mg_stw *w = mg_stw_new(&err);
    int64_t dims[1] = {4};
    CHECK(w != NULL, "mg_stw_new");
    if (w) {
        CHECK(mg_stw_add(w, "x", "F32", 1, dims, &err) == MG_OK, "add x");
        CHECK(mg_stw_add(w, "x", "F32", 1, dims, &err) == MG_ERR_INVALID, "duplicate accepted");
        CHECK(mg_stw_add(w, "y", "Q4", 1, dims, &err) == MG_ERR_INVALID, "bad dtype accepted");
        CHECK(mg_stw_begin(w, path, &err) == MG_OK, "begin: %s", err.msg);
        CHECK(mg_stw_write(w, a, 8, &err) == MG_OK, "partial write");
        CHECK(mg_stw_write(w, a, 12, &err) == MG_ERR_INVALID, "write past the end accepted");
        CHECK(mg_stw_finish(w, &err) == MG_ERR_INVALID, "finish with missing data accepted");
        CHECK(mg_stw_write(w, a, 8, &err) == MG_OK && mg_stw_finish(w, &err) == MG_OK,
              "finish: %s", err.msg);
        mg_stw_free(w);
    }
    CHECK(mg_safetensors_write_file("/nonexistent-dir/x.safetensors", 2, names, dtypes, shapes,
                                    datas, &err) == MG_ERR_IO,
          "unwritable path not reported");

    /* raw files for loader tests: the length field is written as given */
    CHECK(mg_safetensors_write_raw(path, 1000, "{}", "abc", 3, &err) == MG_OK, "write_raw");
    size_t len;
    uint8_t *raw = read_all(path, &len);
    CHECK(raw && len == 13 && raw[0] == 0xe8 && raw[1] == 0x03 && memcmp(raw + 8, "{}abc", 5) == 0,
          "write_raw bytes");
    free(raw);
}

static void test_tiny(const char *golden)
{
    char dir[4200], dir2[4200], dir3[4200], path[4300], path2[4300], args[9000];
    sfmt(dir, sizeof dir, "%s/tiny1", tmpdir);
    sfmt(dir2, sizeof dir2, "%s/tiny1b/nested", tmpdir);  /* created with parents */
    sfmt(dir3, sizeof dir3, "%s/tiny2", tmpdir);

    sfmt(args, sizeof args, "--shape tiny --seed 1 -o '%s'", dir);
    CHECK(mk(args) == 0, "mkmodel --shape tiny failed (see %s/stderr.log)", tmpdir);
    static const char *const files[] = {"config.json", "generation_config.json",
                                        "model.safetensors", "spiece.model"};
    for (int i = 0; i < 4; i++) {
        sfmt(path, sizeof path, "%s/%s", dir, files[i]);
        CHECK(file_exists(path), "%s missing", path);
    }
    CHECK(!has_hidden(dir), "temporary files left in %s", dir);

    sfmt(path, sizeof path, "%s/model.safetensors", dir);
    st_file s;
    CHECK(st_load(&s, path), "tiny model.safetensors does not parse");
    if (!s.header)
        return;
    check_layout(&s, "F32", 4, "tiny f32");

    /* every key of the real checkpoint layout, with its shape, and nothing else */
    char keys_path[4200];
    sfmt(keys_path, sizeof keys_path, "%s/tiny-proj/state_dict_keys.json", golden);
    json_error_t je;
    json_t *keys = json_load_file(keys_path, 0, &je);
    if (!keys) {
        SKIP("golden %s not found: key/shape comparison", keys_path);
    } else {
        json_t *fk = json_object_get(keys, "file_keys");
        const char *key;
        json_t *v;
        int missing = 0, wrong = 0;
        json_object_foreach(fk, key, v) {
            json_t *mine = json_object_get(s.header, key);
            if (!mine) {
                if (missing++ < 5)
                    printf("missing key %s\n", key);
                continue;
            }
            if (!json_equal(json_object_get(mine, "shape"), json_object_get(v, "shape")) ||
                !json_equal(json_object_get(mine, "dtype"), json_object_get(v, "dtype"))) {
                if (wrong++ < 5)
                    printf("wrong shape/dtype for %s\n", key);
            }
        }
        CHECK(missing == 0, "%d golden keys missing", missing);
        CHECK(wrong == 0, "%d keys with a different shape or dtype", wrong);
        CHECK(json_object_size(s.header) == json_object_size(fk) + 1,
              "%zu tensors, golden has %zu", json_object_size(s.header) - 1,
              json_object_size(fk));
        json_decref(keys);

        /* same header bytes as the HF-written checkpoint */
        sfmt(path2, sizeof path2, "%s/tiny-proj/model.safetensors", golden);
        st_file g;
        if (st_load(&g, path2)) {
            CHECK(g.hlen == s.hlen && memcmp(g.buf, s.buf, 8 + s.hlen) == 0,
                  "header differs from golden tiny-proj model.safetensors");
            /* the sinusoid table: float32 exp/cos differ from torch's by an ulp here
             * and there, which moves the argument pos * f by about pos * 6e-8 */
            size_t na, nb;
            const char *pe = "decoder.model.decoder.embed_positions.weights";
            const float *x = (const float *)st_data(&s, pe, &na);
            const float *y = (const float *)st_data(&g, pe, &nb);
            int off = !x || !y || na != nb;
            double md = 0;
            for (size_t i = 0; !off && i < na / 4; i++) {
                double d = fabs(x[i] - y[i]), pos = (double)(i / 48);
                md = d > md ? d : md;
                off |= d > 1e-6 + 1.2e-7 * pos;
            }
            CHECK(!off, "sinusoid table differs from golden (max %g)", md);
        } else {
            SKIP("golden tiny-proj/model.safetensors not readable");
        }
        st_free(&g);
    }

    /* init rules, spot checks */
    size_t n;
    const float *f = (const float *)st_data(&s, "audio_encoder.quantizer.layers.0.codebook.inited", &n);
    CHECK(f && n == 4 && f[0] == 1.0f, "inited is not 1.0");
    f = (const float *)st_data(&s, "decoder.model.decoder.embed_positions.weights", &n);
    CHECK(f && f[0] == 1.0f && f[23] == 1.0f && f[24] == 0.0f && f[47] == 0.0f &&
              fabsf(f[48] - cosf(1.0f)) < 1e-6f && fabsf(f[48 + 24] - sinf(1.0f)) < 1e-6f,
          "sinusoid rows 0/1 are not [cos | sin]");
    f = (const float *)st_data(&s, "text_encoder.shared.weight", &n);
    if (f) {
        double sum = 0, sq = 0;
        size_t cnt = n / 4;
        for (size_t i = 0; i < cnt; i++) {
            sum += f[i];
            sq += (double)f[i] * f[i];
        }
        double mean = sum / cnt, sd = sqrt(sq / cnt - mean * mean);
        CHECK(fabs(mean) < 0.01 && fabs(sd - 1.0) < 0.01, "shared.weight N(0,1): mean %g sd %g",
              mean, sd);
    }
    f = (const float *)st_data(&s, "decoder.model.decoder.layers.0.fc1.weight", &n);
    if (f) {
        double sq = 0;
        for (size_t i = 0; i < n / 4; i++)
            sq += (double)f[i] * f[i];
        CHECK(fabs(sqrt(sq / (n / 4)) - 1.0 / sqrt(48.0)) < 0.02, "fc1 std %g, want %g",
              sqrt(sq / (n / 4)), 1.0 / sqrt(48.0));
    }
    int neg = 0, total = 0, out_of_range = 0;
    const char *key;
    json_t *v;
    json_object_foreach(s.header, key, v) {
        size_t kl = strlen(key);
        if (kl < 9 || strcmp(key + kl - 9, ".weight_g") != 0)
            continue;
        f = (const float *)st_data(&s, key, &n);
        for (size_t i = 0; f && i < n / 4; i++) {
            total++;
            neg += f[i] < 0;
            out_of_range += fabsf(f[i]) < 0.5f || fabsf(f[i]) > 1.5f;
        }
    }
    CHECK(total > 0 && out_of_range == 0 && neg > total / 8 && neg < total * 3 / 8,
          "weight_g: %d of %d negative, %d out of [0.5, 1.5]", neg, total, out_of_range);

    /* determinism: same seed, any thread count -> same bytes; new seed -> new values */
    sfmt(args, sizeof args, "--shape tiny --seed 1 --threads 1 -o '%s'", dir2);
    CHECK(mk(args) == 0, "second tiny run failed");
    sfmt(path2, sizeof path2, "%s/model.safetensors", dir2);
    CHECK(same_file(path, path2), "same seed gave different model.safetensors");
    sfmt(args, sizeof args, "--shape tiny --seed 2 -o '%s'", dir3);
    CHECK(mk(args) == 0, "seed 2 run failed");
    sfmt(path2, sizeof path2, "%s/model.safetensors", dir3);
    st_file s2;
    if (st_load(&s2, path2)) {
        CHECK(s2.len == s.len && memcmp(s2.buf, s.buf, 8 + s.hlen) == 0,
              "seed changed the header");
        size_t n1, n2;
        const uint8_t *d1 = st_data(&s, "decoder.lm_heads.0.weight", &n1);
        const uint8_t *d2 = st_data(&s2, "decoder.lm_heads.0.weight", &n2);
        CHECK(d1 && d2 && n1 == n2 && memcmp(d1, d2, n1) != 0, "seed 2 gave the same weights");
    } else {
        CHECK(0, "seed 2 model does not parse");
    }
    st_free(&s2);

    /* configs: the tiny-proj values, and the whole documents */
    char cfg_path[4300], gold_cfg[4300];
    sfmt(cfg_path, sizeof cfg_path, "%s/config.json", dir);
    json_t *cfg = json_load_file(cfg_path, 0, &je);
    CHECK(cfg != NULL, "config.json does not parse: %s", je.text);
    sfmt(gold_cfg, sizeof gold_cfg, "%s/tiny-proj/config.json", golden);
    json_t *gcfg = json_load_file(gold_cfg, 0, &je);
    if (!gcfg) {
        SKIP("golden %s not found: config comparison", gold_cfg);
    } else if (cfg) {
        static const char *const fields[][2] = {
            {"text_encoder", "d_model"}, {"text_encoder", "d_kv"},
            {"text_encoder", "num_heads"}, {"text_encoder", "d_ff"},
            {"text_encoder", "num_layers"}, {"text_encoder", "vocab_size"},
            {"decoder", "hidden_size"}, {"decoder", "num_attention_heads"},
            {"decoder", "num_hidden_layers"}, {"decoder", "ffn_dim"},
            {"decoder", "vocab_size"}, {"decoder", "num_codebooks"},
            {"audio_encoder", "num_filters"}, {"audio_encoder", "hidden_size"},
            {"audio_encoder", "codebook_size"}, {"audio_encoder", "upsampling_ratios"},
        };
        for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
            json_t *a = json_object_get(json_object_get(cfg, fields[i][0]), fields[i][1]);
            json_t *b = json_object_get(json_object_get(gcfg, fields[i][0]), fields[i][1]);
            CHECK(a && b && json_equal(a, b), "config %s.%s differs from golden", fields[i][0],
                  fields[i][1]);
        }
        CHECK(json_equal(cfg, gcfg), "config.json differs from golden tiny-proj in some value");
        /* and in the text: transformers' formatting (indent 2, sorted keys, 1e-06) */
        CHECK(same_file(cfg_path, gold_cfg), "config.json text differs from golden tiny-proj");
        sfmt(cfg_path, sizeof cfg_path, "%s/generation_config.json", dir);
        sfmt(gold_cfg, sizeof gold_cfg, "%s/tiny-proj/generation_config.json", golden);
        json_t *gen = json_load_file(cfg_path, 0, &je), *ggen = json_load_file(gold_cfg, 0, &je);
        CHECK(gen && ggen && json_equal(gen, ggen), "generation_config.json differs from golden");
        CHECK(same_file(cfg_path, gold_cfg), "generation_config.json text differs from golden");
        json_decref(gen);
        json_decref(ggen);
    }
    json_decref(gcfg);
    json_decref(cfg);

    sfmt(path2, sizeof path2, "%s/spiece.model", dir);
    check_spiece(path2);
    st_free(&s);
}

static void test_half_dtypes(void)
{
    char dir32[4200], dir[4200], path[4300], args[9000];
    sfmt(dir32, sizeof dir32, "%s/tiny1", tmpdir);
    sfmt(path, sizeof path, "%s/model.safetensors", dir32);
    st_file ref;
    if (!st_load(&ref, path)) {
        CHECK(0, "no f32 reference model");
        return;
    }
    static const struct { const char *opt, *dtype, *torch; uint16_t one; } half[] = {
        {"f16", "F16", "float16", 0x3c00}, {"bf16", "BF16", "bfloat16", 0x3f80}};
    for (int h = 0; h < 2; h++) {
        sfmt(dir, sizeof dir, "%s/tiny_%s", tmpdir, half[h].opt);
        sfmt(args, sizeof args, "--shape tiny --seed 1 --dtype %s -o '%s'", half[h].opt, dir);
        CHECK(mk(args) == 0, "--dtype %s failed", half[h].opt);
        sfmt(path, sizeof path, "%s/model.safetensors", dir);
        st_file s;
        if (!st_load(&s, path)) {
            CHECK(0, "%s model does not parse", half[h].opt);
            st_free(&s);
            continue;
        }
        check_layout(&s, half[h].dtype, 2, half[h].opt);
        CHECK(json_object_size(s.header) == json_object_size(ref.header),
              "%s: tensor count differs", half[h].opt);
        size_t n, nr;
        const uint8_t *d = st_data(&s, "audio_encoder.quantizer.layers.0.codebook.inited", &n);
        CHECK(d && n == 2 && (d[0] | d[1] << 8) == half[h].one, "%s: inited is not 1.0",
              half[h].opt);
        /* the same values as f32, rounded */
        d = st_data(&s, "decoder.model.decoder.layers.1.fc2.weight", &n);
        const float *r = (const float *)st_data(&ref, "decoder.model.decoder.layers.1.fc2.weight", &nr);
        int bad = !d || !r || n * 2 != nr;
        for (size_t i = 0; !bad && i < n / 2; i++) {
            uint16_t b = (uint16_t)(d[2 * i] | d[2 * i + 1] << 8);
            float x;
            if (h == 0) {  /* f16: values here are normal numbers */
                int e = (b >> 10) & 0x1f;
                float m = (float)(b & 0x3ff);
                x = e ? ldexpf(1.0f + m / 1024.0f, e - 15) : ldexpf(m, -24);
                if (b & 0x8000)
                    x = -x;
            } else {
                uint32_t u = (uint32_t)b << 16;
                memcpy(&x, &u, 4);
            }
            float tol = h == 0 ? 1e-3f : 8e-3f;
            bad |= fabsf(x - r[i]) > tol * fabsf(r[i]) + 1e-7f;
        }
        CHECK(!bad, "%s values are not the f32 values rounded", half[h].opt);
        sfmt(path, sizeof path, "%s/config.json", dir);
        json_error_t je;
        json_t *cfg = json_load_file(path, 0, &je);
        const char *td = json_string_value(json_object_get(cfg, "torch_dtype"));
        CHECK(td && strcmp(td, half[h].torch) == 0, "%s: config torch_dtype %s", half[h].opt,
              td ? td : "(none)");
        json_decref(cfg);
        st_free(&s);
    }
    st_free(&ref);
}

/* --layers N: the decoder has exactly N layers, in config.json and in the
 * checkpoint (the shallow medium-wide models of test_model_sizes) */
static void test_layers(void)
{
    char dir[4200], path[4300], args[9000];
    sfmt(dir, sizeof dir, "%s/layers", tmpdir);
    sfmt(args, sizeof args, "--shape tiny --seed 3 --layers 3 -o '%s'", dir);
    CHECK(mk(args) == 0, "--layers run failed");
    sfmt(path, sizeof path, "%s/config.json", dir);
    json_error_t je;
    json_t *cfg = json_load_file(path, 0, &je);
    json_t *n = json_object_get(json_object_get(cfg, "decoder"), "num_hidden_layers");
    CHECK(json_integer_value(n) == 3, "--layers 3: config num_hidden_layers %lld",
          (long long)json_integer_value(n));
    json_decref(cfg);
    st_file s;
    sfmt(path, sizeof path, "%s/model.safetensors", dir);
    int ok = st_load(&s, path);
    CHECK(ok, "--layers 3: model.safetensors does not parse");
    if (ok)
        CHECK(json_object_get(s.header, "decoder.model.decoder.layers.2.fc2.weight") &&
              !json_object_get(s.header, "decoder.model.decoder.layers.3.fc2.weight"),
              "--layers 3: the checkpoint has decoder layers 0-2 only");
    st_free(&s);
}

static void test_spiece_copy_and_errors(void)
{
    char dir[4200], src[4300], path[4300], args[9000];

    /* --spiece copies the given file byte for byte */
    sfmt(src, sizeof src, "%s/custom.model", tmpdir);
    FILE *f = fopen(src, "wb");
    if (f) {
        fputs("not really a model, but copied as is", f);
        fclose(f);
    }
    sfmt(dir, sizeof dir, "%s/copy", tmpdir);
    sfmt(args, sizeof args, "--shape tiny --seed 3 --spiece '%s' -o '%s'", src, dir);
    CHECK(mk(args) == 0, "--spiece run failed");
    sfmt(path, sizeof path, "%s/spiece.model", dir);
    CHECK(same_file(src, path), "--spiece file not copied");

    /* bad arguments: exit 1, nothing written */
    sfmt(dir, sizeof dir, "%s/bad", tmpdir);
    static const char *const bad[] = {
        "--shape huge -o '%s'",         "--shape tiny --dtype f8 -o '%s'",
        "--shape tiny --seed x -o '%s'", "--shape tiny --frobnicate 1 -o '%s'",
        "--shape tiny --threads 0 -o '%s'", "--shape tiny --seed 1 '%s'",
        "-o '%s'",                      "--shape tiny -o",
        "--shape tiny --layers 0 -o '%s'", "--shape tiny --layers 257 -o '%s'",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char opts[4400];
        sfmt(opts, sizeof opts, bad[i], dir);
        CHECK(mk(opts) == 1, "bad arguments accepted: %s", bad[i]);
    }
    CHECK(!file_exists(dir), "bad arguments created %s", dir);

    /* a missing --spiece file: exit 1, no model files and no temporaries left */
    sfmt(args, sizeof args, "--shape tiny --spiece '%s/nope.model' -o '%s'", tmpdir, dir);
    CHECK(mk(args) == 1, "missing --spiece accepted");
    sfmt(path, sizeof path, "%s/config.json", dir);
    CHECK(!file_exists(path), "failed run left config.json");
    CHECK(!has_hidden(dir), "failed run left temporaries in %s", dir);

    /* an output directory that cannot be created (a file is in the way) */
    sfmt(args, sizeof args, "--shape tiny -o '%s/sub'", src);
    CHECK(mk(args) == 1, "unwritable output directory accepted");
}

int main(int argc, char **argv)
{
    /* the tool sits beside this test binary (build/ or build-san/) */
    char self[4096];
    sfmt(self, sizeof self, "%s", argv[0]);
    sfmt(tool, sizeof tool, "%s/musicgen-mkmodel", dirname(self));
    if (!mkdtemp(tmpdir)) {
        printf("FAIL cannot create a temporary directory: %s\n", strerror(errno));
        return 1;
    }

    test_writer_api();
    if (access(tool, X_OK) != 0) {
        CHECK(0, "%s not built", tool);
    } else {
        test_tiny(check_golden_dir());
        test_half_dtypes();
        test_layers();
        test_spiece_copy_and_errors();
    }

    int rc = check_summary("test_mkmodel");
    if (rc == 0)
        nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    else
        printf("files kept in %s\n", tmpdir);
    return rc;
}
