#include "io/loader.h"
#include "io/shard_index.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* Once a tensor's bytes have been copied or converted, its pages of the
 * read-only file mapping are dropped from this process (the page cache keeps
 * them; touching them again just faults them back in). Without this a q8
 * model would keep the whole f32 file resident next to its q8 copy. */
static void release_file_pages(const mg_loader *ld, const mg_st_tensor *t)
{
    if (!ld->st.mapped || t->nbytes == 0)
        return;
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t a = ((uintptr_t)t->data + page - 1) / page * page;
    uintptr_t b = ((uintptr_t)t->data + t->nbytes) / page * page;
    if (b > a)
        madvise((void *)a, b - a, MADV_DONTNEED);
}

mg_code mg_loader_open(mg_loader *ld, const char *path, mg_backend *be, mg_error *err)
{
    memset(ld, 0, sizeof *ld);
    ld->be = be;
    return mg_st_open(&ld->st, path, err);
}

mg_code mg_loader_open_dir(mg_loader *ld, const char *dir, mg_backend *be, mg_error *err)
{
    char path[4096];
    if (snprintf(path, sizeof path, "%s/model.safetensors", dir) >= (int)sizeof path)
        return mg_fail(err, MG_ERR_INVALID, "%s: path too long", dir);
    if (access(path, F_OK) == 0)
        return mg_loader_open(ld, path, be, err);
    memset(ld, 0, sizeof *ld);
    ld->be = be;
    snprintf(path, sizeof path, "%s/" MG_SHARD_INDEX_NAME, dir);
    if (access(path, F_OK) != 0)
        return mg_fail(err, MG_ERR_NOT_FOUND, "%s: no model.safetensors (nor a sharded "
                       "checkpoint's " MG_SHARD_INDEX_NAME ")", dir);
    return mg_shards_open(&ld->shards, &ld->st, dir, err);
}

size_t mg_loader_files(const mg_loader *ld, const mg_safetensors **files)
{
    *files = ld->shards.n ? ld->shards.files : &ld->st;
    return ld->shards.n ? ld->shards.n : 1;
}

/* The file a tensor's error names: its shard, or model.safetensors. */
static const char *file_of(const mg_loader *ld, const mg_st_tensor *t)
{
    const char *f = ld->shards.n ? mg_shards_file_of(&ld->shards, t) : NULL;
    return f ? f : "model.safetensors";
}

void mg_loader_drop_copies(mg_loader *ld)
{
    for (size_t i = 0; i < ld->n_kept; i++)
        free(ld->kept[i]);
    free(ld->kept);
    ld->kept = NULL;
    ld->n_kept = 0;
    ld->n_used = 0;
}

void mg_loader_close(mg_loader *ld)
{
    mg_loader_drop_copies(ld);
    mg_st_close(&ld->st);
    mg_shards_close(&ld->shards);
}

static void shape_str(char *buf, size_t cap, int ndim, const int64_t *shape)
{
    size_t o = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && o < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (o < cap)
        snprintf(buf + o, cap - o, "]");
}

mg_code mg_loader_find(mg_loader *ld, const char *names, int ndim, const int64_t *shape,
                       const mg_st_tensor **out, mg_error *err)
{
    *out = NULL;
    char name[512];
    const char *p = names;
    while (*p) {
        size_t n = strcspn(p, "|");
        if (n >= sizeof name)
            return mg_fail(err, MG_ERR_INVALID, "tensor name too long");
        memcpy(name, p, n);
        name[n] = 0;
        const mg_st_tensor *t = mg_st_find(&ld->st, name);
        if (t) {
            int ok = t->ndim == ndim;
            for (int i = 0; ok && i < ndim; i++)
                ok = t->shape[i] == shape[i];
            if (!ok) {
                char want[128], got[128];
                shape_str(want, sizeof want, ndim, shape);
                shape_str(got, sizeof got, t->ndim, t->shape);
                return mg_fail(err, MG_ERR_CORRUPT,
                               "%s: tensor '%s' has shape %s, the config needs %s",
                               file_of(ld, t), name, got, want);
            }
            if (t->dtype != MG_DT_F32 && t->dtype != MG_DT_F16 && t->dtype != MG_DT_BF16)
                return mg_fail(err, MG_ERR_CORRUPT,
                               "%s: tensor '%s' is %s, expected F32, F16 or BF16",
                               file_of(ld, t), name, mg_dtype_name(t->dtype));
            ld->n_used++;
            *out = t;
            return MG_OK;
        }
        p += n;
        if (*p == '|')
            p++;
    }
    return mg_fail(err, MG_ERR_NOT_FOUND, "%s: tensor '%.*s' is missing",
                   ld->shards.n ? MG_SHARD_INDEX_NAME : "model.safetensors",
                   (int)strcspn(names, "|"), names);
}

mg_code mg_loader_from_host(mg_backend *be, const float *host, int ndim, const int64_t *shape,
                            mg_tensor **out, mg_error *err)
{
    mg_code rc = mg_tensor_new(out, be, MG_DT_F32, ndim, shape, err);
    if (rc != MG_OK)
        return rc;
    rc = mg_tensor_upload_f32(*out, host, err);
    if (rc != MG_OK) {
        mg_tensor_free(*out);
        *out = NULL;
    }
    return rc;
}

/* A malloc'd F32 copy of a found tensor; its file pages are released. */
static mg_code host_copy(mg_loader *ld, const mg_st_tensor *t, float **out, mg_error *err)
{
    float *h = malloc((size_t)mg_st_numel(t) * sizeof *h + 1);
    if (!h)
        return mg_fail(err, MG_ERR_NOMEM, "out of memory converting tensor '%s'", t->name);
    mg_st_to_f32(t, h);
    release_file_pages(ld, t);
    *out = h;
    return MG_OK;
}

mg_code mg_loader_host(mg_loader *ld, const char *names, int ndim, const int64_t *shape,
                       float **out, mg_error *err)
{
    const mg_st_tensor *t;
    *out = NULL;
    mg_code rc = mg_loader_find(ld, names, ndim, shape, &t, err);
    return rc != MG_OK ? rc : host_copy(ld, t, out, err);
}

/* The format the backend stores MATRIX weights in (the cache holds them so). */
static mg_dtype matrix_dtype(mg_backend *be)
{
    mg_backend_caps caps;
    mg_backend_get_caps(be, &caps);
    return caps.weight_dtype;
}

/* A matrix from the weights cache, already in the backend's format: 1 when
 * *out was made, 0 when it has to be converted (the cache lacks it). */
static int from_cache(mg_loader *ld, const mg_st_tensor *st, int ndim, const int64_t *shape,
                      mg_tensor **out, mg_code *rc, mg_error *err)
{
    mg_backend *be = ld->be;
    int64_t cols = shape[ndim - 1], rows = 1;
    for (int i = 0; i < ndim - 1; i++)
        rows *= shape[i];
    mg_dtype dt = matrix_dtype(be);
    size_t want = be->ops->matrix_nbytes(be, dt, rows, cols);
    const mg_st_tensor *ct = mg_wcache_find(ld->wcache, st->name);
    if (!ct || ct->nbytes != mg_wcache_stored_bytes(want)) {
        if (ld->wcache->valid)
            mg_wcache_mark_stale(ld->wcache, st->name, ct ? "has the wrong size" : "is missing");
        return 0;
    }
    mg_tensor *t = calloc(1, sizeof *t);
    if (!t) {
        *rc = mg_fail(err, MG_ERR_NOMEM, "out of memory for tensor '%s'", st->name);
        return 1;
    }
    *t = (mg_tensor){.be = be, .dtype = dt, .ndim = ndim, .nbytes = want};
    memcpy(t->ne, shape, (size_t)ndim * sizeof *shape);
    *rc = be->ops->weight(be, t, ct->data, MG_WEIGHT_MATRIX, err);
    /* listed for a rewrite too: when another matrix is missing the rebuilt
     * file must keep this one (from the old file, mapped until the load ends) */
    if (*rc == MG_OK)
        *rc = mg_wcache_add(ld->wcache, st->name, ct->data, want, err);
    if (*rc != MG_OK)
        mg_tensor_free(t);
    else
        *out = t;
    return 1;
}

static mg_code load_weight(mg_loader *ld, const char *names, int ndim, const int64_t *shape,
                           mg_weight_kind kind, mg_tensor **out, mg_error *err)
{
    const mg_st_tensor *st;
    *out = NULL;
    mg_code rc = mg_loader_find(ld, names, ndim, shape, &st, err);
    if (rc != MG_OK)
        return rc;
    mg_dtype dt = matrix_dtype(ld->be);
    int cacheable = kind == MG_WEIGHT_MATRIX && ld->wcache && ld->be->ops->matrix_nbytes &&
                    dt != MG_DT_F32;
    if (cacheable && from_cache(ld, st, ndim, shape, out, &rc, err))
        return rc;
    /* F32 data in the file outlives the backend tensors and is handed over in
     * place; F16/BF16 become an F32 host copy, kept while the backend uses it. */
    float *h = NULL;
    const void *data = st->data;
    if (st->dtype != MG_DT_F32) {
        rc = host_copy(ld, st, &h, err);
        if (rc != MG_OK)
            return rc;
        data = h;
    }
    mg_tensor *t = calloc(1, sizeof *t);
    void **kept = h ? realloc(ld->kept, (ld->n_kept + 1) * sizeof *kept) : NULL;
    if (kept)
        ld->kept = kept;
    if (!t || (h && !kept)) {
        free(t);
        free(h);
        return mg_fail(err, MG_ERR_NOMEM, "out of memory for tensor '%s'", st->name);
    }
    t->be = ld->be;
    t->dtype = MG_DT_F32;
    t->ndim = ndim;
    memcpy(t->ne, shape, (size_t)ndim * sizeof *shape);
    t->nbytes = (size_t)mg_st_numel(st) * sizeof(float);
    rc = ld->be->ops->weight(ld->be, t, data, kind, err);
    if (rc != MG_OK) {
        free(t);
        free(h);
        return rc;
    }
    if (h && t->data == h)
        ld->kept[ld->n_kept++] = h;
    else
        free(h);
    if (t->data != st->data)
        release_file_pages(ld, st);
    *out = t;
    if (cacheable && t->dtype == dt &&
        (rc = mg_wcache_add(ld->wcache, st->name, t->data, t->nbytes, err)) != MG_OK) {
        mg_tensor_free(t);
        *out = NULL;
        return rc;
    }
    return MG_OK;
}

mg_code mg_loader_tensor(mg_loader *ld, const char *names, int ndim, const int64_t *shape,
                         mg_tensor **out, mg_error *err)
{
    return load_weight(ld, names, ndim, shape, MG_WEIGHT_PLAIN, out, err);
}

mg_code mg_loader_matrix(mg_loader *ld, const char *names, int ndim, const int64_t *shape,
                         mg_tensor **out, mg_error *err)
{
    return load_weight(ld, names, ndim, shape, MG_WEIGHT_MATRIX, out, err);
}
