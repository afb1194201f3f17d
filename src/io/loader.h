/* Weight loading from a model folder's mmap'd safetensors (model.safetensors,
 * or the shards model.safetensors.index.json names) onto a backend: looks up
 * a tensor by name (accepting alternative spellings), checks its shape against
 * what the config says, converts F16/BF16 to F32 and hands it to the backend. */
#ifndef MG_LOADER_H
#define MG_LOADER_H
#include "backend/backend.h"
#include "io/safetensors.h"
#include "io/shards.h"
#include "io/weights_cache.h"

typedef struct {
    mg_safetensors st;       /* every tensor by name: the one file, or the shards' tables gathered */
    mg_shards      shards;   /* a sharded checkpoint's mapped files (n 0 for one file) */
    mg_backend    *be;
    size_t         n_used;   /* tensors handed out (for diagnostics) */
    void         **kept;     /* F32 copies of F16/BF16 tensors a backend uses in place */
    size_t         n_kept;
    mg_wcache     *wcache;   /* converted matrices cached next to the model, or NULL */
} mg_loader;

/* Opens one safetensors file. */
mg_code mg_loader_open(mg_loader *ld, const char *path, mg_backend *be, mg_error *err);
/* Opens a model folder's weights: DIR/model.safetensors when it is there
 * (as transformers prefers it), else the sharded checkpoint of
 * DIR/model.safetensors.index.json (shards.h checks it). be may be NULL to
 * check the files only. */
mg_code mg_loader_open_dir(mg_loader *ld, const char *dir, mg_backend *be, mg_error *err);
/* The mapped files the weights come from (one, or each shard), e.g. for the
 * weights cache's key; returns how many. */
size_t  mg_loader_files(const mg_loader *ld, const mg_safetensors **files);
void    mg_loader_close(mg_loader *ld);
/* Frees the F32 copies of F16/BF16 tensors (once no backend uses them, before
 * loading onto a new backend). */
void    mg_loader_drop_copies(mg_loader *ld);

/* Finds the first of the '|'-separated names (e.g. "a.weight|b.weight") and
 * checks it has exactly the given shape. Errors name the tensor. */
mg_code mg_loader_find(mg_loader *ld, const char *names, int ndim, const int64_t *shape,
                       const mg_st_tensor **out, mg_error *err);
/* As mg_loader_find, then makes a backend F32 weight tensor. */
mg_code mg_loader_tensor(mg_loader *ld, const char *names, int ndim, const int64_t *shape,
                         mg_tensor **out, mg_error *err);
/* As mg_loader_tensor, for a weight used only as linear()'s w or embed()'s
 * table: the backend may keep it in a compressed format (MG_WEIGHT_MATRIX). */
mg_code mg_loader_matrix(mg_loader *ld, const char *names, int ndim, const int64_t *shape,
                         mg_tensor **out, mg_error *err);
/* As mg_loader_find, then a malloc'd host F32 copy (for weights that are
 * transformed at load, like EnCodec's weight norm). */
mg_code mg_loader_host(mg_loader *ld, const char *names, int ndim, const int64_t *shape,
                       float **out, mg_error *err);
/* Makes a backend F32 tensor from host data (copied). */
mg_code mg_loader_from_host(mg_backend *be, const float *host, int ndim, const int64_t *shape,
                            mg_tensor **out, mg_error *err);

/* Shape literals: MG_SHAPE(2, a, b) -> 2, (const int64_t[]){a, b} */
#define MG_SHAPE(n, ...) (n), ((const int64_t[]){__VA_ARGS__})
#endif
