/* A sharded checkpoint (model-0000i-of-0000n.safetensors + the index that
 * names them): every shard the index names mapped once, its header checked
 * as a single model.safetensors is, and the whole checked against the index:
 * each tensor lies in exactly the shard the index names, in no other, and
 * every tensor the index names is there. The shards' tensors are gathered
 * into one table, so the loader looks a name up once whichever file holds it. */
#ifndef MG_SHARDS_H
#define MG_SHARDS_H
#include <stddef.h>
#include "base/error.h"
#include "io/safetensors.h"

typedef struct {
    mg_safetensors *files;   /* the mapped shards, sorted by file name; their tensor
                                tables are moved into the gathered one */
    char          **names;   /* each shard's file name in the folder, for messages */
    size_t          n;
} mg_shards;

/* Opens dir/model.safetensors.index.json and every shard it names. On success
 * `all` is the table of every tensor (mg_st_find works on it; close it with
 * mg_st_close before mg_shards_close): names owned by it, data in the shards'
 * mappings, all->mapped set and all->buf NULL. Errors name the tensor and the
 * file. */
mg_code mg_shards_open(mg_shards *s, mg_safetensors *all, const char *dir, mg_error *err);
void    mg_shards_close(mg_shards *s);
/* The file name of the shard whose mapping holds t, or NULL. */
const char *mg_shards_file_of(const mg_shards *s, const mg_st_tensor *t);
#endif
