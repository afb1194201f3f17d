/* model.safetensors.index.json parsing (shard_index.h). */
#include "io/shard_index.h"
#include "io/config.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define IDX MG_SHARD_INDEX_NAME

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int cmp_entry(const void *a, const void *b)
{
    return strcmp(((const mg_shard_entry *)a)->tensor, ((const mg_shard_entry *)b)->tensor);
}

/* A shard must be a file of the model folder itself: a path elsewhere
 * ("../x", "/etc/x", "sub/x") would let an index read any file the server
 * can; save_pretrained writes plain names only. */
static mg_code check_file_name(const char *tensor, json_t *v, mg_error *err)
{
    if (!json_is_string(v))
        return mg_fail(err, MG_ERR_CORRUPT, IDX ": weight_map entry of tensor '%s' is not a file name",
                       tensor);
    /* no NUL inside: the parser refuses \u0000 (no JSON_ALLOW_NUL) */
    const char *s = json_string_value(v);
    size_t n = strlen(s);
    if (n == 0 || n > 255 || strchr(s, '/') || strchr(s, '\\') ||
        !strcmp(s, ".") || !strcmp(s, ".."))
        return mg_fail(err, MG_ERR_CORRUPT,
                       IDX ": tensor '%s' names shard '%.200s', which is not a file name inside the "
                       "model folder",
                       tensor, s);
    return MG_OK;
}

static mg_code parse_metadata(mg_shard_index *idx, json_t *root, mg_error *err)
{
    json_t *meta = json_object_get(root, "metadata");
    if (!meta || json_is_null(meta))
        return MG_OK;
    if (!json_is_object(meta))
        return mg_fail(err, MG_ERR_CORRUPT, IDX ": metadata is not an object");
    json_t *ts = json_object_get(meta, "total_size");
    if (!ts || json_is_null(ts))
        return MG_OK;
    if (!json_is_integer(ts) || json_integer_value(ts) < 0)
        return mg_fail(err, MG_ERR_CORRUPT, IDX ": metadata.total_size is not a byte count");
    idx->total_size = (uint64_t)json_integer_value(ts);
    return MG_OK;
}

/* Fills idx->files with the distinct file names (sorted) and points each
 * entry at its file; names[i] is entry i's file name (borrowed from the JSON). */
static mg_code collect_files(mg_shard_index *idx, const char **names, mg_error *err)
{
    const char **sorted = malloc((idx->n_entries ? idx->n_entries : 1) * sizeof *sorted);
    if (!sorted)
        return mg_fail(err, MG_ERR_NOMEM, IDX ": out of memory");
    memcpy(sorted, names, idx->n_entries * sizeof *sorted);
    qsort(sorted, idx->n_entries, sizeof *sorted, cmp_str);
    size_t distinct = 0;
    for (size_t i = 0; i < idx->n_entries; i++)
        if (i == 0 || strcmp(sorted[i], sorted[i - 1]))
            sorted[distinct++] = sorted[i];
    idx->files = calloc(distinct ? distinct : 1, sizeof *idx->files);
    mg_code rc = idx->files ? MG_OK : mg_fail(err, MG_ERR_NOMEM, IDX ": out of memory");
    for (size_t i = 0; rc == MG_OK && i < distinct; i++) {
        if (!(idx->files[i] = strdup(sorted[i])))
            rc = mg_fail(err, MG_ERR_NOMEM, IDX ": out of memory");
        else
            idx->n_files++;
    }
    for (size_t i = 0; rc == MG_OK && i < idx->n_entries; i++) {
        const char **at = bsearch(&names[i], sorted, distinct, sizeof *sorted, cmp_str);
        idx->entries[i].file = (size_t)(at - sorted);
    }
    free(sorted);
    return rc;
}

static mg_code parse_weight_map(mg_shard_index *idx, json_t *root, mg_error *err)
{
    json_t *map = json_object_get(root, "weight_map");
    if (!json_is_object(map))
        return mg_fail(err, MG_ERR_CORRUPT, IDX ": weight_map is %s, expected an object of tensor: file",
                       map ? "not an object" : "missing");
    size_t cap = json_object_size(map);
    if (cap == 0)
        return mg_fail(err, MG_ERR_CORRUPT, IDX ": weight_map names no tensor");
    const char **names = malloc(cap * sizeof *names);
    idx->entries = calloc(cap, sizeof *idx->entries);
    if (!names || !idx->entries) {
        free(names);
        return mg_fail(err, MG_ERR_NOMEM, IDX ": out of memory for %zu tensors", cap);
    }
    mg_code rc = MG_OK;
    const char *key;
    json_t *v;
    json_object_foreach(map, key, v) {
        if ((rc = check_file_name(key, v, err)) != MG_OK)
            break;
        if (!(idx->entries[idx->n_entries].tensor = strdup(key))) {
            rc = mg_fail(err, MG_ERR_NOMEM, IDX ": out of memory");
            break;
        }
        names[idx->n_entries++] = json_string_value(v);
    }
    if (rc == MG_OK)
        rc = collect_files(idx, names, err);
    free(names);
    if (rc == MG_OK)
        qsort(idx->entries, idx->n_entries, sizeof *idx->entries, cmp_entry);
    return rc;
}

mg_code mg_shard_index_parse(mg_shard_index *idx, const char *json, size_t len, mg_error *err)
{
    memset(idx, 0, sizeof *idx);
    json_error_t jerr;
    /* a tensor named twice in the weight_map would be in two shards */
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return mg_fail(err, MG_ERR_CORRUPT, IDX ": not JSON (%s at byte %d)", jerr.text,
                       jerr.position);
    mg_code rc = json_is_object(root) ? MG_OK
                                      : mg_fail(err, MG_ERR_CORRUPT, IDX ": not a JSON object");
    if (rc == MG_OK)
        rc = parse_metadata(idx, root, err);
    if (rc == MG_OK)
        rc = parse_weight_map(idx, root, err);
    json_decref(root);
    if (rc != MG_OK)
        mg_shard_index_free(idx);
    return rc;
}

mg_code mg_shard_index_load(mg_shard_index *idx, const char *path, mg_error *err)
{
    memset(idx, 0, sizeof *idx);
    char *json = NULL;
    size_t len = 0;
    /* the hub's largest indexes (thousands of tensors) are well under 1 MB */
    mg_code rc = mg_read_file(path, &json, &len, 64u << 20, err);
    if (rc == MG_OK)
        rc = mg_shard_index_parse(idx, json, len, err);
    free(json);
    return rc;
}

void mg_shard_index_free(mg_shard_index *idx)
{
    for (size_t i = 0; i < idx->n_files; i++)
        free(idx->files[i]);
    free(idx->files);
    for (size_t i = 0; i < idx->n_entries; i++)
        free(idx->entries[i].tensor);
    free(idx->entries);
    memset(idx, 0, sizeof *idx);
}

const mg_shard_entry *mg_shard_index_find(const mg_shard_index *idx, const char *tensor)
{
    mg_shard_entry key = {.tensor = (char *)tensor};
    return idx->n_entries ? bsearch(&key, idx->entries, idx->n_entries, sizeof key, cmp_entry)
                          : NULL;
}
