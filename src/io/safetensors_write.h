/* safetensors writing. A streaming writer for files too large to hold in
 * memory (declare every tensor, then write the data in declaration order),
 * plus one-shot helpers for small files and for tests that craft broken ones.
 *
 * File layout: u64 little-endian header length N, N bytes of JSON header
 * (padded with spaces to a multiple of 8), then the tensor data back to back:
 *   {"__metadata__":{"format":"pt"},"name":{"dtype":"F32","shape":[2,3],
 *    "data_offsets":[0,24]},...}
 * Dtypes are the safetensors strings ("F32", "F16", "BF16", "I64", ...). */
#ifndef MG_SAFETENSORS_WRITE_H
#define MG_SAFETENSORS_WRITE_H
#include <stddef.h>
#include <stdint.h>
#include "base/error.h"

#define MG_STW_MAX_DIMS 8

typedef struct {
    int     ndim;
    int64_t dim[MG_STW_MAX_DIMS];
} mg_stw_shape;

/* Bytes per element of a safetensors dtype string; 0 if unknown. */
size_t mg_stw_dtype_size(const char *dtype);

typedef struct mg_stw mg_stw;

mg_stw *mg_stw_new(mg_error *err);
/* Closes the file if still open; an unfinished file is left as it is (the
 * caller writes to a temporary name and deletes it on failure). */
void    mg_stw_free(mg_stw *w);

/* Replaces the "__metadata__" map (default {"format":"pt"}); only before begin. */
mg_code mg_stw_set_metadata(mg_stw *w, const char *key, const char *value, mg_error *err);
/* Declares the next tensor; data offsets follow declaration order. */
mg_code mg_stw_add(mg_stw *w, const char *name, const char *dtype, int ndim,
                   const int64_t *dims, mg_error *err);
/* Total bytes the file will have once finished (valid after all adds). */
uint64_t mg_stw_file_size(const mg_stw *w);

/* Creates path and writes the header. */
mg_code mg_stw_begin(mg_stw *w, const char *path, mg_error *err);
/* Appends tensor data. A tensor may be written in several pieces, and one
 * call may span tensors: the writer only counts bytes against the header. */
mg_code mg_stw_write(mg_stw *w, const void *data, size_t bytes, mg_error *err);
/* Checks every declared byte was written, then flushes and closes. */
mg_code mg_stw_finish(mg_stw *w, mg_error *err);

/* One-shot: n tensors with their dtypes, shapes and data (each data[i] holds
 * exactly numel * dtype size bytes), metadata {"format":"pt"}. */
mg_code mg_safetensors_write_file(const char *path, size_t n, const char *const *names,
                                  const char *const *dtypes, const mg_stw_shape *shapes,
                                  const void *const *datas, mg_error *err);

/* Raw, for tests of broken files: writes the u64 length field as given (it
 * need not match), then strlen(header) bytes of header as they are (no check,
 * no padding), then data_bytes of data (data may be NULL when 0). */
mg_code mg_safetensors_write_raw(const char *path, uint64_t length_field, const char *header,
                                 const void *data, size_t data_bytes, mg_error *err);
#endif
