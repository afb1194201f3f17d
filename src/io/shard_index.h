/* model.safetensors.index.json, as save_pretrained writes it for a checkpoint
 * above its shard size: {"metadata": {"total_size": N}, "weight_map":
 * {tensor: file}}. A pure parser over a byte buffer (fuzzable): it checks the
 * JSON's shape and that every file name stays inside the model folder (a
 * plain name: no '/', not "." or ".."). Whether the files exist and hold the
 * tensors the index names is the sharded checkpoint's check (shards.h). */
#ifndef MG_SHARD_INDEX_H
#define MG_SHARD_INDEX_H
#include <stddef.h>
#include <stdint.h>
#include "base/error.h"

#define MG_SHARD_INDEX_NAME "model.safetensors.index.json"

typedef struct {
    char  *tensor;
    size_t file;              /* index into mg_shard_index.files */
} mg_shard_entry;

typedef struct {
    char          **files;      /* every shard file named, once each, sorted by name */
    size_t          n_files;
    mg_shard_entry *entries;    /* the weight_map, sorted by tensor name */
    size_t          n_entries;
    uint64_t        total_size; /* metadata.total_size; 0 when absent */
} mg_shard_index;

/* Parses an index from json[0..len). Errors name the index file and the
 * tensor or field at fault; on success free with mg_shard_index_free. */
mg_code mg_shard_index_parse(mg_shard_index *idx, const char *json, size_t len, mg_error *err);
/* Reads and parses the index file at path. */
mg_code mg_shard_index_load(mg_shard_index *idx, const char *path, mg_error *err);
void    mg_shard_index_free(mg_shard_index *idx);
/* The weight_map entry of a tensor, or NULL. */
const mg_shard_entry *mg_shard_index_find(const mg_shard_index *idx, const char *tensor);
#endif
