/* The converted-weights cache (src/io/weights_cache.c): written on the first
 * bf16/q8 load, mapped on the next (weights used in place, the same codes
 * bit for bit), rebuilt when damaged or made for another model file, a note
 * (not an error) when the folder is not writable, absent when off. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <glob.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "runtime/runtime_impl.h"
#include "runtime/musicgen.h"
#include "test_util.h"

/* Greedy codes of a short generation; NULL on failure. */
static int32_t *codes_of(mg_model *m, size_t *n)
{
    int32_t *c = NULL;
    mg_error err = {0};
    CHECK(tu_greedy_codes(m, &c, n, &err) == MG_OK, "generate: %s", err.msg);
    return c;
}

/* Loads dir with the cache folder, checks the note names `want`, and the
 * codes against ref (when given); returns the codes. */
static int32_t *load_and_run(const char *dir, const char *dtype, const char *cache,
                             const char *want, const int32_t *ref, size_t ref_n, int in_place)
{
    mg_model *m = NULL;
    mg_error err = {0};
    mg_model_options opt = {.dtype = dtype, .device = "cpu", .weights_cache = cache};
    if (mg_model_load(&m, dir, &opt, &err) != MG_OK) {
        CHECK(0, "load %s with cache %s: %s", dtype, cache ? cache : "(none)", err.msg);
        return NULL;
    }
    const char *note = mg_model_load_note(m);
    CHECK(want ? strstr(note, want) != NULL : *note == 0, "%s, cache %s: note '%s', want '%s'",
          dtype, cache ? cache : "(none)", note, want ? want : "");
    /* mapped: the first layer's Q weights live in the cache file's mapping */
    const uint8_t *q = m->parts.dec.layers[0].q->data, *b = m->parts.wcache.file.buf;
    int inside = b && q >= b && q < b + m->parts.wcache.file.len;
    CHECK(inside == in_place, "%s, cache %s: weights %s the cache mapping", dtype,
          cache ? cache : "(none)", in_place ? "inside" : "outside");
    /* every cached matrix starts 8-byte aligned: bf16 is never copied out */
    int aligned = 1;
    for (size_t i = 0; inside && i < m->parts.wcache.file.n; i++)
        aligned &= (uintptr_t)m->parts.wcache.file.tensors[i].data % 8 == 0;
    CHECK(aligned, "%s: cached tensors are 8-byte aligned", dtype);
    size_t n = 0;
    int32_t *c = codes_of(m, &n);
    if (c && ref)
        CHECK(n == ref_n && !memcmp(c, ref, n * sizeof *c), "%s, cache %s: same codes as converted",
              dtype, cache ? cache : "(none)");
    mg_model_free(m);
    return c;
}

/* Renames the first "layers.1." tensor in the safetensors header of path
 * (same length): that matrix is then missing from the cache. */
static void rename_first_layer_tensor(const char *path)
{
    FILE *f = fopen(path, "r+b");
    uint64_t hl = 0;
    char *h = NULL;
    int ok = f && fread(&hl, 8, 1, f) == 1 && hl < (1u << 24) && (h = malloc(hl + 1)) &&
             fread(h, 1, hl, f) == hl;
    char *at = NULL;
    if (ok) {
        h[hl] = 0;
        at = strstr(h, "layers.1.");
        ok = at != NULL;
    }
    if (ok) {
        at[5] = 'z'; /* layers -> layerz */
        ok = fseek(f, 8, SEEK_SET) == 0 && fwrite(h, 1, hl, f) == hl;
    }
    CHECK(ok, "rename a tensor in %s", path);
    free(h);
    if (f)
        fclose(f);
}

static void test_cache(const char *golden_model, const char *dtype)
{
    char model[4200], cache[64] = "/tmp/mg-wcache-XXXXXX", file[4400], src[4300], dst[4300];
    if (tu_model_dir(model, sizeof model, golden_model) || !mkdtemp(cache)) {
        CHECK(0, "temp folders");
        return;
    }
    snprintf(src, sizeof src, "%s/model.safetensors", golden_model);
    snprintf(dst, sizeof dst, "%s/model.safetensors", model);
    CHECK(tu_copy(src, dst) == 0, "copy the model");
    const char *base = strrchr(model, '/') + 1;


    size_t n = 0;
    mg_model *m = NULL;
    mg_error err = {0};
    mg_model_options opt = {.dtype = dtype, .device = "cpu"};
    int32_t *ref = NULL;
    if (mg_model_load(&m, model, &opt, &err) == MG_OK) {
        CHECK(*mg_model_load_note(m) == 0, "no cache by default");
        ref = codes_of(m, &n);
        mg_model_free(m);
    } else
        CHECK(0, "load: %s", err.msg);
    if (!ref)
        goto out;

    free(load_and_run(model, dtype, cache, "written", ref, n, 0));
    /* <model folder name>-<hash of its real path>.<dtype>.musicgen-cache.safetensors */
    char pattern[4400];
    glob_t g = {0};
    snprintf(pattern, sizeof pattern, "%s/%s-????????.%s.musicgen-cache.safetensors", cache, base,
             dtype);
    int found = glob(pattern, 0, NULL, &g) == 0 && g.gl_pathc == 1;
    CHECK(found, "one cache file named %s", pattern);
    snprintf(file, sizeof file, "%s", found ? g.gl_pathv[0] : pattern);
    globfree(&g);
    CHECK(access(file, R_OK) == 0, "%s exists", file);
    struct stat sb;
    CHECK(stat(file, &sb) == 0 && (sb.st_mode & 0777) == 0644, "the cache is rw-r--r-- (%o)",
          (unsigned)(sb.st_mode & 0777));
    free(load_and_run(model, dtype, cache, "weights mapped", ref, n, 1));

    /* writable by others: not trusted, rewritten (rw-r--r-- again) */
    CHECK(chmod(file, 0666) == 0, "chmod the cache");
    free(load_and_run(model, dtype, cache, "written", ref, n, 0));
    free(load_and_run(model, dtype, cache, "weights mapped", ref, n, 1));

    /* damaged: cut in half */
    CHECK(truncate(file, 4096) == 0, "truncate the cache");
    free(load_and_run(model, dtype, cache, "written", ref, n, 0));
    free(load_and_run(model, dtype, cache, "weights mapped", ref, n, 1));

    /* one matrix missing (a cache from a version that did not cache it): the
     * rebuilt file has every matrix, those mapped from the old file too, so
     * the next load maps all of them */
    rename_first_layer_tensor(file);
    free(load_and_run(model, dtype, cache, "written", ref, n, 1));
    free(load_and_run(model, dtype, cache, "weights mapped", ref, n, 1));

    /* the model file changes (its mtime here): the cache is for another file */
    struct timespec ts[2] = {{.tv_sec = 1000000000}, {.tv_sec = 1000000000}};
    CHECK(utimensat(AT_FDCWD, dst, ts, 0) == 0, "touch the model");
    mg_wcache wc;
    mg_safetensors st;
    if (mg_st_open(&st, dst, &err) == MG_OK) {
        CHECK(mg_wcache_open(&wc, file, &st, 1, dtype, &err) == MG_OK && !wc.valid &&
                  strstr(wc.note, "another model file"),
              "stale cache refused: %s", wc.note);
        mg_wcache_close(&wc);
        mg_st_close(&st);
    }
    free(load_and_run(model, dtype, cache, "written", ref, n, 0));

    /* a folder that cannot be written: the load works, the note says so */
    free(load_and_run(model, dtype, "/proc/self", "not written", ref, n, 0));
    /* off */
    free(load_and_run(model, dtype, "off", NULL, ref, n, 0));
out:
    free(ref);
    tu_rm_dir(model);
    tu_rm_dir(cache);
}

int main(void)
{
    char dir[4200], probe[4300];
    snprintf(dir, sizeof dir, "%s/tiny-proj", check_golden_dir());
    snprintf(probe, sizeof probe, "%s/model.safetensors", dir);
    if (access(probe, R_OK) != 0)
        SKIP("golden tiny-proj model not found at %s", dir);
    else {
        test_cache(dir, "q8");
        test_cache(dir, "bf16");
    }
    return check_summary("test_weights_cache");
}
