/* Sharded checkpoints (src/io/shard_index.c, src/io/shards.c): a model split
 * into three shards plus model.safetensors.index.json loads and generates as
 * the single file does; its weights cache covers every shard; and every broken
 * index or shard is a clear error naming the tensor and the file, at load and
 * at nginx -t (mg_model_inspect) alike. The sharded folders are made at run
 * time from the golden tiny-a model. */
#include <fcntl.h>
#include <sys/stat.h>

#include "check.h"
#include "io/shard_index.h"
#include "runtime/model_info.h"
#include "runtime/musicgen.h"
#include "test_util.h"

#define N_SHARDS 3
static const char *shard_names[N_SHARDS] = {"model-00001-of-00003.safetensors",
                                            "model-00002-of-00003.safetensors",
                                            "model-00003-of-00003.safetensors"};
static char golden_a[4096];

/* --- the index parser alone --- */
static mg_code parse(const char *json, mg_shard_index *idx, mg_error *err)
{
    mg_code rc = mg_shard_index_parse(idx, json, strlen(json), err);
    if (rc != MG_OK)
        memset(idx, 0, sizeof *idx);
    return rc;
}

static void expect_parse_error(const char *json, const char *mention)
{
    mg_shard_index idx;
    mg_error err = {0};
    mg_code rc = parse(json, &idx, &err);
    CHECK(rc == MG_ERR_CORRUPT && strstr(err.msg, MG_SHARD_INDEX_NAME) && strstr(err.msg, mention),
          "%s: got %s '%s', want an error mentioning '%s'", json, mg_code_name(rc), err.msg, mention);
    mg_shard_index_free(&idx);
}

static void test_index_parsing(void)
{
    mg_shard_index idx;
    mg_error err = {0};
    const char *ok = "{\"metadata\": {\"total_size\": 24}, \"weight_map\": {\"b\": \"s2\", "
                     "\"a\": \"s1\", \"c\": \"s2\"}}";
    CHECK(parse(ok, &idx, &err) == MG_OK, "valid index: %s", err.msg);
    CHECK(idx.n_files == 2 && !strcmp(idx.files[0], "s1") && !strcmp(idx.files[1], "s2"),
          "each shard listed once, sorted");
    CHECK(idx.n_entries == 3 && idx.total_size == 24, "three entries, total_size read");
    const mg_shard_entry *c = mg_shard_index_find(&idx, "c");
    CHECK(c && !strcmp(idx.files[c->file], "s2"), "c is in s2");
    CHECK(!mg_shard_index_find(&idx, "d"), "d is in no shard");
    mg_shard_index_free(&idx);
    CHECK(parse("{\"weight_map\": {\"a\": \"s1\"}}", &idx, &err) == MG_OK && idx.total_size == 0,
          "metadata is optional: %s", err.msg);
    mg_shard_index_free(&idx);

    expect_parse_error("{\"weight_map\": {\"a\": \"s1\"", "not JSON");
    expect_parse_error("[1, 2]", "not a JSON object");
    expect_parse_error("{\"metadata\": {}}", "weight_map is missing");
    expect_parse_error("{\"weight_map\": [\"a\"]}", "weight_map is not an object");
    expect_parse_error("{\"weight_map\": {}}", "names no tensor");
    expect_parse_error("{\"weight_map\": {\"a\": 3}}", "'a'");
    expect_parse_error("{\"weight_map\": {\"a\": \"s1\", \"a\": \"s2\"}}", "duplicate");
    expect_parse_error("{\"metadata\": {\"total_size\": -1}, \"weight_map\": {\"a\": \"s1\"}}",
                       "total_size");
    expect_parse_error("{\"metadata\": 7, \"weight_map\": {\"a\": \"s1\"}}", "metadata");
    /* shard names that would leave the model folder */
    const char *outside[] = {"../model.safetensors", "/etc/passwd", "sub/model.safetensors", "..",
                             ".", "", "a\\\\b"};
    for (size_t i = 0; i < sizeof outside / sizeof *outside; i++) {
        char json[256];
        snprintf(json, sizeof json, "{\"weight_map\": {\"w\": \"s1\", \"t.weight\": \"%s\"}}",
                 outside[i]);
        expect_parse_error(json, "'t.weight'");
        expect_parse_error(json, "inside the model folder");
    }
    expect_parse_error("{\"weight_map\": {\"w\": \"s1\\u0000.safetensors\"}}", "not JSON");
}

/* --- sharded folders made from tiny-a --- */
typedef struct {
    const char *dup_tensor;  /* written into the last shard as well as its own */
    const char *unindexed;   /* left out of the weight_map */
    const char *extra_entry; /* weight_map text added as it is */
    const char *drop;        /* in no shard and not in the index */
} shard_spec;

static int shard_of(const char *name)
{
    return !strncmp(name, "text_encoder.", 13) ? 0 : !strncmp(name, "decoder.", 8) ? 1 : 2;
}

typedef struct { const shard_spec *spec; int shard; } split_arg;

static int keep_in_shard(tu_tensor *t, void *ud)
{
    const split_arg *a = ud;
    if (a->spec->drop && !strcmp(t->name, a->spec->drop))
        return 0;
    return shard_of(t->name) == a->shard ||
           (a->shard == N_SHARDS - 1 && a->spec->dup_tensor && !strcmp(t->name, a->spec->dup_tensor));
}

/* The weight_map lines of shard k (its own tensors only). */
static int index_shard(FILE *f, const char *path, int k, const shard_spec *spec, int *first)
{
    mg_safetensors st;
    mg_error err = {0};
    if (mg_st_open(&st, path, &err) != MG_OK)
        return -1;
    for (size_t i = 0; i < st.n; i++) {
        const char *name = st.tensors[i].name;
        if (shard_of(name) != k || (spec->unindexed && !strcmp(name, spec->unindexed)))
            continue;
        fprintf(f, "%s\n    \"%s\": \"%s\"", *first ? "" : ",", name, shard_names[k]);
        *first = 0;
    }
    mg_st_close(&st);
    return 0;
}

/* A temp model folder: tiny-a's config and its weights in three shards with
 * their index, broken as spec says. Returns 0 when written. */
static int make_sharded(char *dir, size_t cap, const shard_spec *spec)
{
    char src[4200], path[4400];
    if (tu_model_dir(dir, cap, golden_a))
        return -1;
    snprintf(src, sizeof src, "%s/model.safetensors", golden_a);
    snprintf(path, sizeof path, "%s/" MG_SHARD_INDEX_NAME, dir);
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fprintf(f, "{\n  \"metadata\": {\"total_size\": 1},\n  \"weight_map\": {");
    int first = 1, rc = 0;
    for (int k = 0; rc == 0 && k < N_SHARDS; k++) {
        split_arg a = {spec, k};
        snprintf(path, sizeof path, "%s/%s", dir, shard_names[k]);
        rc = tu_rewrite(src, path, keep_in_shard, &a) || index_shard(f, path, k, spec, &first);
    }
    if (spec->extra_entry)
        fprintf(f, ",\n    %s", spec->extra_entry);
    fprintf(f, "\n  }\n}\n");
    return fclose(f) != 0 || rc ? -1 : 0;
}

static mg_code load_dir(const char *dir, const mg_model_options *opt, mg_model **out,
                        mg_error *err)
{
    mg_model *m = NULL;
    mg_model_options one = {.n_threads = 1, .device = "cpu"};
    mg_code rc = mg_model_load(&m, dir, opt ? opt : &one, err);
    if (out && rc == MG_OK)
        *out = m;
    else
        mg_model_free(m);
    return rc;
}

/* Loading dir fails with want, mentioning a and b; inspecting it (nginx -t)
 * fails the same way unless the files are sound and only a tensor the config
 * needs is missing (inspect reads no config-sized tensor). */
static void expect_both_fail(const char *what, const char *dir, mg_code want, const char *a,
                             const char *b, int files_sound)
{
    mg_error err = {0};
    mg_code rc = load_dir(dir, NULL, NULL, &err);
    CHECK(rc == want && strstr(err.msg, a) && strstr(err.msg, b),
          "%s: load gave %s '%s', want %s mentioning '%s' and '%s'", what, mg_code_name(rc),
          err.msg, mg_code_name(want), a, b);
    mg_model_info info;
    mg_error ierr = {0};
    rc = mg_model_inspect(dir, &info, &ierr);
    if (files_sound)
        CHECK(rc == MG_OK, "%s: inspect gave %s '%s'", what, mg_code_name(rc), ierr.msg);
    else
        CHECK(rc == want && !strcmp(ierr.msg, err.msg), "%s: inspect (nginx -t) gave %s '%s'",
              what, mg_code_name(rc), ierr.msg);
}

static void expect_broken(const char *what, const shard_spec *spec, mg_code want, const char *a,
                          const char *b)
{
    char dir[256];
    if (make_sharded(dir, sizeof dir, spec) == 0)
        expect_both_fail(what, dir, want, a, b, spec->drop != NULL);
    else
        CHECK(0, "%s: cannot write the sharded folder", what);
    tu_rm_dir(dir);
}

/* The sharded folder with one file changed by edit (a shell command run in it). */
static void expect_edited(const char *what, const char *edit, mg_code want, const char *a,
                          const char *b)
{
    char dir[256], cmd[1024];
    shard_spec none = {0};
    if (make_sharded(dir, sizeof dir, &none) == 0) {
        snprintf(cmd, sizeof cmd, "cd '%s' && %s", dir, edit);
        CHECK(system(cmd) == 0, "%s: %s", what, cmd);
        expect_both_fail(what, dir, want, a, b, 0);
    } else {
        CHECK(0, "%s: cannot write the sharded folder", what);
    }
    tu_rm_dir(dir);
}

static void test_broken_folders(void)
{
    expect_edited("missing shard", "rm model-00002-of-00003.safetensors", MG_ERR_NOT_FOUND,
                  "model-00002-of-00003.safetensors", "No such file");
    static const struct {
        const char *what;
        shard_spec  spec;
        mg_code     want;
        const char *a, *b;
    } cases[] = {
        {"tensor in two shards", {.dup_tensor = "decoder.lm_heads.1.weight"}, MG_ERR_CORRUPT,
         "'decoder.lm_heads.1.weight'", "two shards"},
        {"index names a tensor no shard has",
         {.extra_entry = "\"decoder.ghost.weight\": \"model-00001-of-00003.safetensors\""},
         MG_ERR_NOT_FOUND, "'decoder.ghost.weight'", "model-00001-of-00003.safetensors"},
        {"index names a shard that does not exist",
         {.extra_entry = "\"decoder.ghost.weight\": \"model-00009-of-00009.safetensors\""},
         MG_ERR_NOT_FOUND, "model-00009-of-00009.safetensors", MG_SHARD_INDEX_NAME},
        {"tensor in a shard, not in the index", {.unindexed = "decoder.lm_heads.2.weight"},
         MG_ERR_CORRUPT, "'decoder.lm_heads.2.weight'", "model-00002-of-00003.safetensors"},
        {"a tensor the config needs is in no shard", {.drop = "decoder.lm_heads.2.weight"},
         MG_ERR_NOT_FOUND, "'decoder.lm_heads.2.weight'", MG_SHARD_INDEX_NAME},
        {"index names a path outside the folder",
         {.extra_entry = "\"decoder.ghost.weight\": \"../model.safetensors\""}, MG_ERR_CORRUPT,
         "'decoder.ghost.weight'", "inside the model folder"},
        {"index names an absolute path",
         {.extra_entry = "\"decoder.ghost.weight\": \"/etc/passwd\""}, MG_ERR_CORRUPT,
         "/etc/passwd", "inside the model folder"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        expect_broken(cases[i].what, &cases[i].spec, cases[i].want, cases[i].a, cases[i].b);
    /* the first header bytes overwritten: not JSON any more */
    expect_edited("shard header corrupt",
                  "printf 'garbage!' | dd of=model-00003-of-00003.safetensors bs=1 seek=8 "
                  "conv=notrunc 2>/dev/null",
                  MG_ERR_CORRUPT, "model-00003-of-00003.safetensors", "not JSON");
    expect_edited("shard truncated", "truncate -s -1000 model-00001-of-00003.safetensors",
                  MG_ERR_CORRUPT, "model-00001-of-00003.safetensors", "truncated");
    expect_edited("index not JSON", "printf '{\"weight_map\": {' > " MG_SHARD_INDEX_NAME,
                  MG_ERR_CORRUPT, MG_SHARD_INDEX_NAME, "not JSON");
    expect_edited("neither model.safetensors nor an index", "rm " MG_SHARD_INDEX_NAME,
                  MG_ERR_NOT_FOUND, "model.safetensors", MG_SHARD_INDEX_NAME);
}

/* A tensor's shape error names the shard that holds it. */
static int swap_fc1(tu_tensor *t, void *ud)
{
    if (!strcmp(t->name, "decoder.model.decoder.layers.1.fc1.weight") && t->ndim == 2) {
        int64_t a = t->shape[0];
        t->shape[0] = t->shape[1];
        t->shape[1] = a;
    }
    return 1;
}

static void test_shape_names_shard(void)
{
    char dir[256], path[4400], tmp[4410];
    shard_spec none = {0};
    if (make_sharded(dir, sizeof dir, &none) != 0) {
        CHECK(0, "cannot write the sharded folder");
        return;
    }
    snprintf(path, sizeof path, "%s/%s", dir, shard_names[1]);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    CHECK(tu_rewrite(path, tmp, swap_fc1, NULL) == 0 && rename(tmp, path) == 0, "rewrite shard 2");
    mg_error err = {0};
    mg_code rc = load_dir(dir, NULL, NULL, &err);
    CHECK(rc == MG_ERR_CORRUPT && strstr(err.msg, shard_names[1]) && strstr(err.msg, "layers.1.fc1"),
          "shape error names the shard: %s", err.msg);
    tu_rm_dir(dir);
}

/* The sharded model generates the single file's codes; its q8 weights cache
 * is written, mapped, and refused once any shard (not only the first) changes. */
static void test_sharded_model(void)
{
    char dir[256], cache[64] = "/tmp/mg-shard-cache-XXXXXX", path[4400];
    shard_spec none = {0};
    if (make_sharded(dir, sizeof dir, &none) != 0 || !mkdtemp(cache)) {
        CHECK(0, "cannot write the sharded folder");
        return;
    }
    mg_model *one = NULL, *sharded = NULL;
    mg_error err = {0};
    int32_t *a = NULL, *b = NULL;
    size_t na = 0, nb = 0;
    CHECK(load_dir(golden_a, NULL, &one, &err) == MG_OK, "single file loads: %s", err.msg);
    CHECK(load_dir(dir, NULL, &sharded, &err) == MG_OK, "sharded loads: %s", err.msg);
    if (one && sharded && tu_greedy_codes(one, &a, &na, &err) == MG_OK &&
        tu_greedy_codes(sharded, &b, &nb, &err) == MG_OK)
        CHECK(na == nb && na > 0 && !memcmp(a, b, na * sizeof *a), "sharded: the same codes");
    else
        CHECK(0, "generate: %s", err.msg);
    mg_model_free(one);
    mg_model_free(sharded);
    mg_model_info info;
    CHECK(mg_model_inspect(dir, &info, &err) == MG_OK && info.sample_rate > 0,
          "inspect (nginx -t) accepts the sharded folder: %s", err.msg);

    mg_model_options q8 = {.n_threads = 1, .device = "cpu", .dtype = "q8", .weights_cache = cache};
    const char *want[] = {"written", "weights mapped", "written", "weights mapped"};
    for (int i = 0; i < 4; i++) {
        if (i == 2) { /* the last shard changes (its mtime here) */
            struct timespec ts[2] = {{.tv_sec = 1000000000}, {.tv_sec = 1000000000}};
            snprintf(path, sizeof path, "%s/%s", dir, shard_names[N_SHARDS - 1]);
            CHECK(utimensat(AT_FDCWD, path, ts, 0) == 0, "touch the last shard");
        }
        mg_model *m = NULL;
        int32_t *c = NULL;
        size_t nc = 0;
        if (load_dir(dir, &q8, &m, &err) != MG_OK) {
            CHECK(0, "q8 load %d: %s", i, err.msg);
            continue;
        }
        CHECK(strstr(mg_model_load_note(m), want[i]) != NULL, "q8 load %d: note '%s', want '%s'",
              i, mg_model_load_note(m), want[i]);
        CHECK(tu_greedy_codes(m, &c, &nc, &err) == MG_OK && nc == na, "q8 generates: %s", err.msg);
        free(c);
        mg_model_free(m);
    }
    free(a);
    free(b);
    tu_rm_dir(cache);
    tu_rm_dir(dir);
}

/* Both files there: model.safetensors is used, as transformers does. */
static void test_single_file_first(void)
{
    char dir[256], src[4200], dst[4400];
    shard_spec none = {0};
    if (make_sharded(dir, sizeof dir, &none) != 0) {
        CHECK(0, "cannot write the sharded folder");
        return;
    }
    snprintf(src, sizeof src, "%s/model.safetensors", golden_a);
    snprintf(dst, sizeof dst, "%s/model.safetensors", dir);
    CHECK(tu_copy(src, dst) == 0, "copy model.safetensors");
    snprintf(dst, sizeof dst, "%s/" MG_SHARD_INDEX_NAME, dir);
    FILE *f = fopen(dst, "w");
    CHECK(f && fputs("not an index", f) >= 0 && fclose(f) == 0, "spoil the index");
    mg_error err = {0};
    CHECK(load_dir(dir, NULL, NULL, &err) == MG_OK, "model.safetensors wins: %s", err.msg);
    tu_rm_dir(dir);
}

int main(void)
{
    test_index_parsing();
    snprintf(golden_a, sizeof golden_a, "%s/tiny-a", check_golden_dir());
    char probe[4200];
    snprintf(probe, sizeof probe, "%s/model.safetensors", golden_a);
    if (access(probe, R_OK) != 0) {
        SKIP("golden tiny-a model not found at %s", golden_a);
    } else {
        test_broken_folders();
        test_shape_names_shard();
        test_sharded_model();
        test_single_file_first();
    }
    return check_summary("test_shards");
}
