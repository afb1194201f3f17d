/* libFuzzer target: the model.safetensors.index.json parser; every index it
 * accepts must list each shard once, sorted, each a plain file name of the
 * model folder, and every weight_map entry must point at one of them and be
 * found again by name. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/shard_index.h"

static int plain_name(const char *s)
{
    return *s && !strchr(s, '/') && !strchr(s, '\\') && strcmp(s, ".") && strcmp(s, "..");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* an exact-size copy: the parser must not read past size */
    char *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    mg_shard_index idx;
    mg_error err;
    if (mg_shard_index_parse(&idx, buf, size, &err) == MG_OK) {
        if (idx.n_files == 0 || idx.n_entries == 0)
            abort();
        for (size_t i = 0; i < idx.n_files; i++)
            if (!plain_name(idx.files[i]) || (i && strcmp(idx.files[i - 1], idx.files[i]) >= 0))
                abort();
        for (size_t i = 0; i < idx.n_entries; i++) {
            const mg_shard_entry *e = &idx.entries[i];
            if (e->file >= idx.n_files || mg_shard_index_find(&idx, e->tensor) != e)
                abort();
        }
        mg_shard_index_free(&idx);
    }
    free(buf);
    return 0;
}
