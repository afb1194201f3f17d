/* safetensors reading: a pure header parser over a byte buffer (fuzzable) and
 * an mmap'd file view on top of it. Tensor data is never copied here. */
#ifndef MG_SAFETENSORS_H
#define MG_SAFETENSORS_H
#include <stddef.h>
#include <stdint.h>
#include "base/error.h"

#define MG_ST_MAX_DIMS 8

/* MG_DT_Q8 and MG_DT_Q8ROW are internal (never in a file; mg_dtype_size is 0
 * because elements have no fixed size). Q8: a backend's 8-bit block format
 * for matrix weights. Q8ROW: attention-cache rows of 8-bit quants, each
 * MG_Q8ROW_BLOCK of them sharing one float32 scale, a row's scales stored
 * right after its quants (mg_dtype_row_bytes). A quant is stored offset by
 * 128 (u = q + 128, q in [-127, 127], value = q · scale): keys are then the
 * unsigned operand of vpdpbusd as they lie. A block is one attention head
 * of MusicGen (head_dim 64), so a key-head dot product has one scale. */
typedef enum { MG_DT_F32, MG_DT_F16, MG_DT_BF16, MG_DT_I64, MG_DT_I32, MG_DT_U8, MG_DT_BOOL,
               MG_DT_OTHER, MG_DT_Q8, MG_DT_Q8ROW } mg_dtype;

enum { MG_Q8ROW_BLOCK = 64 };

typedef struct {
    char          *name;
    mg_dtype       dtype;
    int            ndim;
    int64_t        shape[MG_ST_MAX_DIMS];
    const uint8_t *data;     /* points into the file buffer */
    size_t         nbytes;
} mg_st_tensor;

typedef struct {
    const uint8_t *buf;      /* whole file */
    size_t         len;
    int            mapped;   /* buf is an mmap of the file */
    mg_st_tensor  *tensors;  /* sorted by name */
    size_t         n;
    char          *path;
    /* the opened file as fstat saw it (not the path, which may since name
     * another file): identity for caches, owner and mode for trust */
    uint64_t       dev, ino, size, uid, mode;
    int64_t        mtime_ns;
} mg_safetensors;

size_t      mg_dtype_size(mg_dtype dt);
/* Bytes of one row of cols values (Q8ROW: cols must be a multiple of
 * MG_Q8ROW_BLOCK; 0 when it is not, or for Q8). */
size_t      mg_dtype_row_bytes(mg_dtype dt, int64_t cols);
const char *mg_dtype_name(mg_dtype dt);
int64_t     mg_st_numel(const mg_st_tensor *t);

/* Parses the header of a complete file image buf[0..len). Checks every offset
 * against the buffer; on success st->tensors is allocated (free with mg_st_close). */
mg_code mg_st_parse(mg_safetensors *st, const uint8_t *buf, size_t len, mg_error *err);
/* mmaps path and parses it. */
mg_code mg_st_open(mg_safetensors *st, const char *path, mg_error *err);
void    mg_st_close(mg_safetensors *st);

const mg_st_tensor *mg_st_find(const mg_safetensors *st, const char *name);
/* Converts any float tensor (F32/F16/BF16) or integer tensor (I64/I32) to float32. */
void    mg_st_to_f32(const mg_st_tensor *t, float *dst);
/* Converts an integer tensor to int64 (I64/I32 only). */
mg_code mg_st_to_i64(const mg_st_tensor *t, int64_t *dst, mg_error *err);

float mg_f16_to_f32(uint16_t h);
float mg_bf16_to_f32(uint16_t h);
uint16_t mg_f32_to_f16(float f);
uint16_t mg_f32_to_bf16(float f);
#endif
