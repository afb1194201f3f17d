/* Sharded checkpoints (shards.h). */
#include "io/shards.h"
#include "io/shard_index.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define IDX MG_SHARD_INDEX_NAME

static int cmp_tensor(const void *a, const void *b)
{
    return strcmp(((const mg_st_tensor *)a)->name, ((const mg_st_tensor *)b)->name);
}

void mg_shards_close(mg_shards *s)
{
    for (size_t i = 0; i < s->n; i++) {
        mg_st_close(&s->files[i]);
        free(s->names[i]);
    }
    free(s->files);
    free(s->names);
    memset(s, 0, sizeof *s);
}

const char *mg_shards_file_of(const mg_shards *s, const mg_st_tensor *t)
{
    for (size_t i = 0; i < s->n; i++) {
        const mg_safetensors *f = &s->files[i];
        if (t->data >= f->buf && t->data + t->nbytes <= f->buf + f->len)
            return s->names[i];
    }
    return NULL;
}

/* Maps each file the index names (the index lists each once). */
static mg_code open_files(mg_shards *s, const mg_shard_index *idx, const char *dir, mg_error *err)
{
    s->files = calloc(idx->n_files, sizeof *s->files);
    s->names = calloc(idx->n_files, sizeof *s->names);
    if (!s->files || !s->names)
        return mg_fail(err, MG_ERR_NOMEM, IDX ": out of memory for %zu shards", idx->n_files);
    for (size_t i = 0; i < idx->n_files; i++) {
        char path[4096];
        if (snprintf(path, sizeof path, "%s/%s", dir, idx->files[i]) >= (int)sizeof path)
            return mg_fail(err, MG_ERR_INVALID, "%s: path too long", dir);
        mg_code rc = mg_st_open(&s->files[i], path, err);
        if (rc != MG_OK)
            return mg_fail_context(err, "shard '%s' named by " IDX, idx->files[i]);
        if (!(s->names[i] = strdup(idx->files[i]))) {
            mg_st_close(&s->files[i]);
            return mg_fail(err, MG_ERR_NOMEM, IDX ": out of memory");
        }
        s->n++;
    }
    return MG_OK;
}

/* Every tensor of every shard must be in the weight_map, for that shard. */
static mg_code check_shard_tensors(const mg_shards *s, const mg_shard_index *idx, mg_error *err)
{
    for (size_t i = 0; i < s->n; i++) {
        for (size_t k = 0; k < s->files[i].n; k++) {
            const char *name = s->files[i].tensors[k].name;
            const mg_shard_entry *e = mg_shard_index_find(idx, name);
            if (!e)
                return mg_fail(err, MG_ERR_CORRUPT,
                               "tensor '%s' is in shard '%s' but not in " IDX "'s weight_map", name,
                               s->names[i]);
            if (e->file != i)
                return mg_fail(err, MG_ERR_CORRUPT,
                               "tensor '%s' is in shard '%s', but " IDX " names shard '%s'%s", name,
                               s->names[i], s->names[e->file],
                               mg_st_find(&s->files[e->file], name) ? " too: it is in two shards"
                                                                    : "");
        }
    }
    for (size_t j = 0; j < idx->n_entries; j++) {
        const mg_shard_entry *e = &idx->entries[j];
        if (!mg_st_find(&s->files[e->file], e->tensor))
            return mg_fail(err, MG_ERR_NOT_FOUND,
                           IDX " names shard '%s' for tensor '%s', which that shard lacks",
                           s->names[e->file], e->tensor);
    }
    return MG_OK;
}

/* Moves every shard's table into `all` (names included), sorted by name. */
static mg_code gather(mg_shards *s, mg_safetensors *all, mg_error *err)
{
    size_t total = 0;
    for (size_t i = 0; i < s->n; i++)
        total += s->files[i].n;
    all->tensors = malloc((total ? total : 1) * sizeof *all->tensors);
    if (!all->tensors)
        return mg_fail(err, MG_ERR_NOMEM, IDX ": out of memory for %zu tensors", total);
    for (size_t i = 0; i < s->n; i++) {
        mg_safetensors *f = &s->files[i];
        memcpy(all->tensors + all->n, f->tensors, f->n * sizeof *f->tensors);
        all->n += f->n;
        free(f->tensors);
        f->tensors = NULL;
        f->n = 0;
    }
    qsort(all->tensors, all->n, sizeof *all->tensors, cmp_tensor);
    all->mapped = 1;
    return MG_OK;
}

mg_code mg_shards_open(mg_shards *s, mg_safetensors *all, const char *dir, mg_error *err)
{
    memset(s, 0, sizeof *s);
    memset(all, 0, sizeof *all);
    char path[4096];
    if (snprintf(path, sizeof path, "%s/" IDX, dir) >= (int)sizeof path)
        return mg_fail(err, MG_ERR_INVALID, "%s: path too long", dir);
    mg_shard_index idx;
    mg_code rc = mg_shard_index_load(&idx, path, err);
    if (rc != MG_OK)
        return rc;
    rc = open_files(s, &idx, dir, err);
    if (rc == MG_OK)
        rc = check_shard_tensors(s, &idx, err);
    if (rc == MG_OK)
        rc = gather(s, all, err);
    if (rc == MG_OK && !(all->path = strdup(path)))
        rc = mg_fail(err, MG_ERR_NOMEM, IDX ": out of memory");
    mg_shard_index_free(&idx);
    if (rc != MG_OK) {
        mg_st_close(all);
        mg_shards_close(s);
    }
    return rc;
}
