/* Weight loading from a mmap'd model.safetensors onto a backend: looks up a
 * tensor by name (accepting alternative spellings), checks its shape against
 * what the config says, converts F16/BF16 to F32 and hands it to the backend. */
#ifndef MG_LOADER_H
#define MG_LOADER_H
#include "backend/backend.h"
#include "io/safetensors.h"
#include "io/weights_cache.h"

typedef struct {
    mg_safetensors st;
    mg_backend    *be;
    size_t         n_used;   /* tensors handed out (for diagnostics) */
    void         **kept;     /* F32 copies of F16/BF16 tensors a backend uses in place */
    size_t         n_kept;
    mg_wcache     *wcache;   /* converted matrices cached next to the model, or NULL */
} mg_loader;

mg_code mg_loader_open(mg_loader *ld, const char *path, mg_backend *be, mg_error *err);
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
