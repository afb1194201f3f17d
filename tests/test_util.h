/* Helpers shared by the engine tests: temporary model folders made from a
 * golden model, with one thing changed. */
#ifndef MG_TEST_UTIL_H
#define MG_TEST_UTIL_H
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runtime/musicgen.h"
#include "io/safetensors.h"
#include "io/safetensors_write.h"

/* Copies a file; returns 0 on success. */
static inline int tu_copy(const char *from, const char *to)
{
    FILE *in = fopen(from, "rb"), *out = in ? fopen(to, "wb") : NULL;
    int rc = in && out ? 0 : -1;
    char buf[1 << 16];
    size_t n;
    while (rc == 0 && (n = fread(buf, 1, sizeof buf, in)) > 0)
        if (fwrite(buf, 1, n, out) != n)
            rc = -1;
    if (in)
        fclose(in);
    if (out && fclose(out) != 0)
        rc = -1;
    return rc;
}

/* A fresh temp folder with the golden model's config files (never spiece.model). */
static inline int tu_model_dir(char *dir, size_t cap, const char *golden_model)
{
    snprintf(dir, cap, "/tmp/mg-test-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    const char *files[] = {"config.json", "generation_config.json"};
    char a[4200], b[4200];
    for (int i = 0; i < 2; i++) {
        snprintf(a, sizeof a, "%.4000s/%s", golden_model, files[i]);
        snprintf(b, sizeof b, "%.4000s/%s", dir, files[i]);
        if (tu_copy(a, b))
            return -1;
    }
    return 0;
}

/* A random model made by the musicgen-mkmodel built beside the test binary
 * argv0 with the options `args` (e.g. "--shape tiny --stereo --seed 3"),
 * into <dir>/m of a fresh temp folder: dir and mdir (the model folder) are
 * filled, even on failure once dir exists (remove it with tu_remove_dir).
 * Returns 0 when the model was written. */
static inline int tu_mkmodel(const char *argv0, const char *args, char *dir, size_t dir_cap,
                             char *mdir, size_t mdir_cap)
{
    char self[4096], cmd[8800];
    snprintf(self, sizeof self, "%s", argv0 ? argv0 : "");
    snprintf(dir, dir_cap, "/tmp/mg-test-XXXXXX");
    if (!mkdtemp(dir)) {
        dir[0] = '\0';
        return -1;
    }
    snprintf(mdir, mdir_cap, "%.60s/m", dir); /* dir is the 19-character temp name above */
    snprintf(cmd, sizeof cmd, "'%s/musicgen-mkmodel' %.200s -o '%s' >/dev/null 2>&1",
             dirname(self), args, mdir);
    int st = system(cmd);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

/* A random tiny model whose window is cut to `positions` (long-form and
 * continuation tests), as tu_mkmodel. */
static inline int tu_windowed_model(const char *argv0, int positions, int seed, char *dir,
                                    size_t dir_cap, char *mdir, size_t mdir_cap)
{
    char args[96];
    snprintf(args, sizeof args, "--shape tiny --positions %d --seed %d", positions, seed);
    return tu_mkmodel(argv0, args, dir, dir_cap, mdir, mdir_cap);
}

/* rm -rf dir (made by tu_windowed_model); 0 on success or when dir is "". */
static inline int tu_remove_dir(const char *dir)
{
    char cmd[4200];
    if (!dir[0])
        return 0;
    snprintf(cmd, sizeof cmd, "rm -rf '%.4000s'", dir);
    return system(cmd);
}

/* The codes of a short greedy generation from fixed token ids (one prompt,
 * guidance as the model's defaults say), malloc'd into *out. */
static inline mg_code tu_greedy_codes(mg_model *m, int32_t **out, size_t *n, mg_error *err)
{
    static const int32_t ids[5] = {100, 200, 300, 1, 0};
    static const uint8_t mask[5] = {1, 1, 1, 1, 0};
    mg_gen_params p;
    mg_gen_params_default(m, &p);
    p.max_new_tokens = 12;
    p.sampling.do_sample = 0;
    mg_gen_result res;
    *out = NULL;
    mg_code rc = mg_generate_ids(m, ids, mask, 1, 5, &p, NULL, &res, err);
    if (rc != MG_OK)
        return rc;
    *n = (size_t)res.batch * mg_model_config(m)->num_codebooks * res.frames;
    *out = malloc(*n * sizeof **out);
    if (*out)
        memcpy(*out, res.codes, *n * sizeof **out);
    mg_gen_result_free(&res);
    return *out ? MG_OK : mg_fail(err, MG_ERR_NOMEM, "out of memory");
}

static inline void tu_rm_dir(const char *dir)
{
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", dir);
}

/* Rewrites src safetensors into dst, letting edit() rename, reshape, retype or
 * drop (return 0) each tensor. Float tensors can be converted with dtype
 * "F16"/"BF16" when the source is F32. */
typedef struct {
    char    name[256];
    char    dtype[8];
    int     ndim;
    int64_t shape[8];
} tu_tensor;
typedef int (*tu_edit_fn)(tu_tensor *t, void *ud);

static inline int tu_rewrite(const char *src, const char *dst, tu_edit_fn edit, void *ud)
{
    mg_safetensors st;
    mg_error err = {0};
    if (mg_st_open(&st, src, &err) != MG_OK)
        return -1;
    mg_stw *w = mg_stw_new(&err);
    tu_tensor *ts = calloc(st.n, sizeof *ts);
    int *keep = calloc(st.n, sizeof *keep);
    int rc = w && ts && keep ? 0 : -1;
    for (size_t i = 0; rc == 0 && i < st.n; i++) {
        tu_tensor *t = &ts[i];
        snprintf(t->name, sizeof t->name, "%s", st.tensors[i].name);
        snprintf(t->dtype, sizeof t->dtype, "%s", mg_dtype_name(st.tensors[i].dtype));
        t->ndim = st.tensors[i].ndim;
        memcpy(t->shape, st.tensors[i].shape, sizeof t->shape);
        keep[i] = edit ? edit(t, ud) : 1;
        if (keep[i] && mg_stw_add(w, t->name, t->dtype, t->ndim, t->shape, &err) != MG_OK)
            rc = -1;
    }
    if (rc == 0 && mg_stw_begin(w, dst, &err) != MG_OK)
        rc = -1;
    for (size_t i = 0; rc == 0 && i < st.n; i++) {
        if (!keep[i])
            continue;
        const mg_st_tensor *s = &st.tensors[i];
        size_t n = 1;
        for (int d = 0; d < ts[i].ndim; d++)
            n *= (size_t)ts[i].shape[d];
        size_t es = !strcmp(ts[i].dtype, "F16") || !strcmp(ts[i].dtype, "BF16") ? 2
                  : !strcmp(ts[i].dtype, "I64") ? 8 : 4;
        uint8_t *buf = calloc(n ? n : 1, es);
        if (!buf) { rc = -1; break; }
        if (s->dtype == MG_DT_F32 && es == 2) {
            for (size_t k = 0; k < n && k < s->nbytes / 4; k++) {
                float f;
                memcpy(&f, s->data + 4 * k, 4);
                uint16_t h = !strcmp(ts[i].dtype, "F16") ? mg_f32_to_f16(f) : mg_f32_to_bf16(f);
                memcpy(buf + 2 * k, &h, 2);
            }
        } else {
            memcpy(buf, s->data, n * es < s->nbytes ? n * es : s->nbytes);
        }
        if (mg_stw_write(w, buf, n * es, &err) != MG_OK)
            rc = -1;
        free(buf);
    }
    if (rc == 0 && mg_stw_finish(w, &err) != MG_OK)
        rc = -1;
    if (rc)
        fprintf(stderr, "tu_rewrite: %s\n", err.msg);
    mg_stw_free(w);
    free(ts);
    free(keep);
    mg_st_close(&st);
    return rc;
}
#endif
