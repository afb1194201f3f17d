/* The converted-weights cache: matrix weights a backend converted at load
 * (bf16, q8), saved next to the model as a safetensors file of raw byte
 * tensors, so that the next load maps them instead of converting again
 * (faster than reading the f32 file, and every nginx worker shares the
 * same page-cache pages instead of holding a private copy).
 *
 * The file is valid only for the exact model files it was made from (each
 * file's size, mtime, identity and a hash of its header: model.safetensors, or
 * every shard of a sharded checkpoint) and the exact format (tag, e.g. "q8",
 * plus the backend's layout version), recorded in a manifest tensor; a stale
 * or damaged cache is rebuilt, never used. Writes go to a temporary file
 * renamed into place, so concurrent writers (nginx workers) are safe. */
#ifndef MG_WEIGHTS_CACHE_H
#define MG_WEIGHTS_CACHE_H
#include <stddef.h>
#include "base/error.h"
#include "io/safetensors.h"

typedef struct {
    char          *path;
    char          *manifest;   /* what a valid cache's manifest must say */
    mg_safetensors file;       /* mapped when valid */
    int            valid;
    /* converted matrices to write (names owned, data borrowed) */
    char         **names;
    const void   **datas;
    size_t        *sizes;
    size_t         n, cap;
    int            stale;      /* a tensor was missing or had the wrong size */
    char           note[512];  /* what happened, for the log */
} mg_wcache;

/* The cache file for the model in model_dir, inside folder:
 * <model folder name>-<hash of its real path>.<dtype>.musicgen-cache.safetensors */
void    mg_wcache_path(char *out, size_t cap, const char *folder, const char *model_dir,
                       const char *dtype);
/* Opens path if it is a valid cache for the n_sources mapped source files
 * (mg_loader_files) and tag (the weight format and layout); otherwise
 * prepares to write one. Fails only for out of memory: an absent or stale
 * cache is a note, not an error. */
mg_code mg_wcache_open(mg_wcache *c, const char *path, const mg_safetensors *sources,
                       size_t n_sources, const char *tag, mg_error *err);
void    mg_wcache_close(mg_wcache *c);

/* Bytes a matrix of nbytes occupies in the file (padded for alignment). */
size_t  mg_wcache_stored_bytes(size_t nbytes);
/* A cached matrix by name, or NULL (then mg_wcache_add it once converted). */
const mg_st_tensor *mg_wcache_find(const mg_wcache *c, const char *name);
/* Marks the cache stale (a tensor was missing or of the wrong size). */
void    mg_wcache_mark_stale(mg_wcache *c, const char *name, const char *why);
/* Records a converted matrix for mg_wcache_write; data must stay valid. */
mg_code mg_wcache_add(mg_wcache *c, const char *name, const void *data, size_t nbytes,
                      mg_error *err);
/* Writes the cache when it was not valid and matrices were added; sets the
 * note either way. A failure to write (read-only folder, full disk) is only
 * a note: the model works without the cache. */
void    mg_wcache_write(mg_wcache *c);
#endif
