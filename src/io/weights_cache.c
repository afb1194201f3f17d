#include "io/weights_cache.h"
#include "io/safetensors_write.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MANIFEST_NAME "__musicgen_cache__"
#define CACHE_FORMAT 3
#define CACHE_ALIGN 64

/* FNV-1a over the source's header: a model file rewritten with other
 * tensors at the same size and mtime still invalidates the cache. */
static uint64_t fnv1a(const uint8_t *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

void mg_wcache_path(char *out, size_t cap, const char *folder, const char *model_dir,
                    const char *dtype)
{
    /* the model folder's own name (trailing slashes ignored), for people;
     * a hash of its real path, so that two models of one name in different
     * places never share a file (and a model replaced inside its folder
     * keeps the name) */
    size_t end = strlen(model_dir), start;
    while (end > 1 && model_dir[end - 1] == '/')
        end--;
    for (start = end; start > 0 && model_dir[start - 1] != '/'; start--)
        ;
    char name[256], real[4096];
    snprintf(name, sizeof name, "%.*s", (int)(end - start), model_dir + start);
    if (!*name || !strcmp(name, ".") || !strcmp(name, ".."))
        snprintf(name, sizeof name, "model");
    const char *where = realpath(model_dir, real) ? real : model_dir;
    snprintf(out, cap, "%s/%s-%08x.%s.musicgen-cache.safetensors", folder, name,
             (unsigned)(fnv1a((const uint8_t *)where, strlen(where)) & 0xffffffffu), dtype);
}

/* Appends one source file's identity to the manifest (NULL once out of memory). */
static char *append_source(char *m, size_t *len, size_t *cap, const mg_safetensors *src)
{
    uint64_t header_len;
    memcpy(&header_len, src->buf, 8);
    size_t hashed = header_len < src->len - 8 ? (size_t)header_len + 8 : src->len;
    char one[512];
    int n = snprintf(one, sizeof one,
                     "%s{\"size\":%llu,\"mtime_ns\":%lld,\"dev\":%llu,\"ino\":%llu,"
                     "\"header_fnv1a\":\"%016llx\"}",
                     m[*len - 1] == '[' ? "" : ",", (unsigned long long)src->size,
                     (long long)src->mtime_ns, (unsigned long long)src->dev,
                     (unsigned long long)src->ino, (unsigned long long)fnv1a(src->buf, hashed));
    if (*len + (size_t)n + CACHE_ALIGN + 8 > *cap) {
        size_t ncap = 2 * (*cap + (size_t)n + CACHE_ALIGN + 8);
        char *g = realloc(m, ncap);
        if (!g) {
            free(m);
            return NULL;
        }
        m = g;
        *cap = ncap;
    }
    memcpy(m + *len, one, (size_t)n + 1);
    *len += (size_t)n;
    return m;
}

/* What a valid cache's manifest says: the format, the tag and every source
 * file, padded with spaces to whole CACHE_ALIGN units, like every matrix, so
 * each tensor starts 8-byte aligned (the data section does) and bf16 weights
 * can be used in place. NULL when out of memory. */
static char *make_manifest(const mg_safetensors *sources, size_t n, const char *tag)
{
    size_t cap = 256 + strlen(tag), len;
    char *m = malloc(cap);
    if (!m)
        return NULL;
    len = (size_t)snprintf(m, cap, "{\"format\":%d,\"weights\":\"%s\",\"sources\":[", CACHE_FORMAT,
                           tag);
    for (size_t i = 0; m && i < n; i++)
        m = append_source(m, &len, &cap, &sources[i]);
    if (!m)
        return NULL;
    m[len++] = ']', m[len++] = '}';
    while (len % CACHE_ALIGN)
        m[len++] = ' ';
    m[len] = 0;
    return m;
}

mg_code mg_wcache_open(mg_wcache *c, const char *path, const mg_safetensors *sources,
                       size_t n_sources, const char *tag, mg_error *err)
{
    memset(c, 0, sizeof *c);
    for (size_t i = 0; i < n_sources; i++)
        if (!sources[i].mapped || !sources[i].buf || sources[i].len < 8)
            return mg_fail(err, MG_ERR_INVALID, "weights cache: the model file is not a mapped file");
    if (n_sources == 0)
        return mg_fail(err, MG_ERR_INVALID, "weights cache: no model file");
    char *manifest = make_manifest(sources, n_sources, tag);
    c->path = strdup(path);
    c->manifest = manifest;
    if (!c->path || !c->manifest) {
        mg_wcache_close(c);
        return mg_fail(err, MG_ERR_NOMEM, "weights cache: out of memory");
    }
    if (access(path, F_OK) != 0) {
        snprintf(c->note, sizeof c->note, "weights cache %.300s: none yet", path);
        return MG_OK;
    }
    mg_error e = {0};
    if (mg_st_open(&c->file, path, &e) != MG_OK) {
        snprintf(c->note, sizeof c->note, "weights cache %.300s: unreadable (%.150s), rebuilding", path,
                 e.msg);
        memset(&c->file, 0, sizeof c->file);
        return MG_OK;
    }
    /* weights run as they are: only a file others cannot have written (the
     * file that was opened, not whatever the path names by now) */
    if ((c->file.mode & 022) || (c->file.uid != (uint64_t)geteuid() && c->file.uid != 0)) {
        snprintf(c->note, sizeof c->note,
                 "weights cache %.300s: writable by others or owned by another user, rebuilding", path);
        mg_st_close(&c->file);
        memset(&c->file, 0, sizeof c->file);
        return MG_OK;
    }
    const mg_st_tensor *m = mg_st_find(&c->file, MANIFEST_NAME);
    if (!m || m->nbytes != strlen(manifest) || memcmp(m->data, manifest, m->nbytes) != 0) {
        snprintf(c->note, sizeof c->note,
                 "weights cache %.300s: made for another model file or format, rebuilding", path);
        mg_st_close(&c->file);
        memset(&c->file, 0, sizeof c->file);
        return MG_OK;
    }
    c->valid = 1;
    snprintf(c->note, sizeof c->note, "weights cache %.300s: %s weights mapped", path, tag);
    return MG_OK;
}

void mg_wcache_close(mg_wcache *c)
{
    if (c->valid || c->file.buf)
        mg_st_close(&c->file);
    for (size_t i = 0; i < c->n; i++)
        free(c->names[i]);
    free(c->names);
    free(c->datas);
    free(c->sizes);
    free(c->path);
    free(c->manifest);
    memset(c, 0, sizeof *c);
}

size_t mg_wcache_stored_bytes(size_t nbytes)
{
    return (nbytes + CACHE_ALIGN - 1) / CACHE_ALIGN * CACHE_ALIGN;
}

const mg_st_tensor *mg_wcache_find(const mg_wcache *c, const char *name)
{
    if (!c->valid)
        return NULL;
    const mg_st_tensor *t = mg_st_find(&c->file, name);
    return t && t->dtype == MG_DT_U8 && t->ndim == 1 ? t : NULL;
}

void mg_wcache_mark_stale(mg_wcache *c, const char *name, const char *why)
{
    if (!c->stale)
        snprintf(c->note, sizeof c->note, "weights cache %.300s: tensor '%.100s' %s, rebuilding", c->path,
                 name, why);
    c->stale = 1;
}

mg_code mg_wcache_add(mg_wcache *c, const char *name, const void *data, size_t nbytes,
                      mg_error *err)
{
    if (c->n == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 64;
        char **names = realloc(c->names, cap * sizeof *names);
        if (names)
            c->names = names;
        const void **datas = names ? realloc(c->datas, cap * sizeof *datas) : NULL;
        if (datas)
            c->datas = datas;
        size_t *sizes = datas ? realloc(c->sizes, cap * sizeof *sizes) : NULL;
        if (!sizes)
            return mg_fail(err, MG_ERR_NOMEM, "weights cache: out of memory");
        c->sizes = sizes;
        c->cap = cap;
    }
    if (!(c->names[c->n] = strdup(name)))
        return mg_fail(err, MG_ERR_NOMEM, "weights cache: out of memory");
    c->datas[c->n] = data;
    c->sizes[c->n] = nbytes;
    c->n++;
    return MG_OK;
}

void mg_wcache_write(mg_wcache *c)
{
    if ((c->valid && !c->stale) || c->n == 0 || !c->path)
        return;
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld.%p", c->path, (long)getpid(), (void *)c);
    mg_error err = {0};
    mg_stw *w = mg_stw_new(&err);
    int64_t mlen = (int64_t)strlen(c->manifest);
    mg_code rc = w ? mg_stw_add(w, MANIFEST_NAME, "U8", 1, &mlen, &err) : MG_ERR_NOMEM;
    for (size_t i = 0; rc == MG_OK && i < c->n; i++) {
        int64_t n = (int64_t)mg_wcache_stored_bytes(c->sizes[i]);
        rc = mg_stw_add(w, c->names[i], "U8", 1, &n, &err);
    }
    if (rc == MG_OK)
        rc = mg_stw_begin(w, tmp, &err);
    if (rc == MG_OK)
        rc = mg_stw_write(w, c->manifest, (size_t)mlen, &err);
    static const uint8_t zeros[CACHE_ALIGN];
    for (size_t i = 0; rc == MG_OK && i < c->n; i++) {
        rc = mg_stw_write(w, c->datas[i], c->sizes[i], &err);
        size_t pad = mg_wcache_stored_bytes(c->sizes[i]) - c->sizes[i];
        if (rc == MG_OK && pad)
            rc = mg_stw_write(w, zeros, pad, &err);
    }
    if (rc == MG_OK)
        rc = mg_stw_finish(w, &err);
    /* readable by every worker, writable only by its owner whatever the umask */
    if (rc == MG_OK && chmod(tmp, 0644) != 0)
        rc = mg_fail(&err, MG_ERR_IO, "chmod %s: %s", tmp, strerror(errno));
    if (rc == MG_OK && rename(tmp, c->path) != 0)
        rc = mg_fail(&err, MG_ERR_IO, "rename to %s: %s", c->path, strerror(errno));
    mg_stw_free(w);
    if (rc != MG_OK) {
        unlink(tmp);
        snprintf(c->note, sizeof c->note, "weights cache %.300s: not written (%.150s); converting at every load",
                 c->path, w ? err.msg : "out of memory");
        return;
    }
    double mb = 0;
    for (size_t i = 0; i < c->n; i++)
        mb += (double)c->sizes[i] / 1e6;
    snprintf(c->note, sizeof c->note, "weights cache %.300s: written (%zu matrices, %.0f MB)", c->path,
             c->n, mb);
}
