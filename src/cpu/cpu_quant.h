/* Compressed matrix-weight formats of the CPU backend and their conversions.
 *
 * Both store rows in panels of MG_PANEL_ROWS = 4 rows (the rows one linear()
 * tile reads together), interleaved chunk by chunk, so that a tile streams
 * one contiguous run of memory: a thread's share of a matrix is a single
 * sequential read the hardware prefetcher follows, where 4 separate short
 * row streams (1-2 KB each) left it idle and halved the bandwidth. Rows are
 * padded with zeros to whole chunks and the last panel to 4 rows.
 *
 * BF16: the upper half of each float32 (round to nearest even): half the
 *   bytes, ~3 significant digits. Chunks of 32 values (64 bytes) per row:
 *   panel = [chunk c][row j][32] uint16.
 *
 * Q8: symmetric 8-bit with one float32 scale per block of 32 weights of a
 *   row: w ≈ scale[b] · q[i], q in [-127, 127], scale = max|w| / 127.
 *   Why 32: one outlier only coarsens its own 32 neighbours (error ≤ scale/2
 *   per weight), and 32 is half of a 64-byte AVX-512 register, so one VNNI
 *   dot product covers exactly two blocks. The scale is float32 rather than
 *   f16 because f16 underflows (loses bits) for blocks of small weights; it
 *   costs 4/32 = 12.5 % more bytes than int8 alone (1.125 bytes per weight).
 *   Chunks of 64 quants (two blocks), in groups of two chunks that carry
 *   their scales, so quants and scales are one stream and every group is 9
 *   whole cache lines: group = quants [chunk][row j][64] int8, then scales
 *   [chunk][row j][2] float32 (576 bytes per 4 rows x 128 weights). */
#ifndef MG_CPU_QUANT_H
#define MG_CPU_QUANT_H
#include <stddef.h>
#include <stdint.h>

#include "backend.h"

enum {
    MG_PANEL_ROWS = 4, MG_Q8_BLOCK = 32, MG_Q8_CHUNK = 64, MG_BF16_CHUNK = 32,
    MG_Q8_GROUP = 2 * MG_Q8_CHUNK, /* quants per row in a group */
    MG_Q8_GROUP_BYTES = MG_PANEL_ROWS * (MG_Q8_GROUP + MG_Q8_GROUP / MG_Q8_BLOCK * 4)
};

static inline int64_t mg_round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

typedef struct {
    uint8_t *base;
    int64_t  rows, cols;
    int64_t  stride;       /* quants per row: cols rounded up to MG_Q8_GROUP */
    int64_t  panel_bytes;
} mg_q8_matrix;

static inline mg_q8_matrix mg_q8_layout(int64_t rows, int64_t cols, void *data)
{
    mg_q8_matrix m = {.base = data, .rows = rows, .cols = cols,
                      .stride = mg_round_up(cols > 0 ? cols : 1, MG_Q8_GROUP)};
    m.panel_bytes = m.stride / MG_Q8_GROUP * MG_Q8_GROUP_BYTES;
    return m;
}

static inline mg_q8_matrix mg_q8_view(const mg_tensor *t)
{
    return mg_q8_layout(mg_tensor_rows(t), mg_tensor_cols(t), t->data);
}

static inline size_t mg_q8_nbytes(int64_t rows, int64_t cols)
{
    mg_q8_matrix m = mg_q8_layout(rows, cols, NULL);
    return (size_t)((rows + MG_PANEL_ROWS - 1) / MG_PANEL_ROWS * m.panel_bytes);
}

/* The 64 quants of chunk v of a row, and its 2 block scales. */
static inline int8_t *mg_q8_chunk(const mg_q8_matrix *m, int64_t row, int64_t v)
{
    return (int8_t *)(m->base + row / MG_PANEL_ROWS * m->panel_bytes + v / 2 * MG_Q8_GROUP_BYTES +
                      (v % 2 * MG_PANEL_ROWS + row % MG_PANEL_ROWS) * MG_Q8_CHUNK);
}

static inline float *mg_q8_chunk_scales(const mg_q8_matrix *m, int64_t row, int64_t v)
{
    return (float *)(m->base + row / MG_PANEL_ROWS * m->panel_bytes + v / 2 * MG_Q8_GROUP_BYTES +
                     MG_PANEL_ROWS * MG_Q8_GROUP) +
           (v % 2 * MG_PANEL_ROWS + row % MG_PANEL_ROWS) * 2;
}

typedef struct {
    uint16_t *base;
    int64_t   rows, cols;
    int64_t   stride;      /* values per row: cols rounded up to MG_BF16_CHUNK */
} mg_bf16_matrix;

static inline mg_bf16_matrix mg_bf16_layout(int64_t rows, int64_t cols, void *data)
{
    mg_bf16_matrix m = {.base = data, .rows = rows, .cols = cols,
                        .stride = mg_round_up(cols > 0 ? cols : 1, MG_BF16_CHUNK)};
    return m;
}

static inline mg_bf16_matrix mg_bf16_view(const mg_tensor *t)
{
    return mg_bf16_layout(mg_tensor_rows(t), mg_tensor_cols(t), t->data);
}

static inline size_t mg_bf16_nbytes(int64_t rows, int64_t cols)
{
    mg_bf16_matrix m = mg_bf16_layout(rows, cols, NULL);
    return (size_t)(mg_round_up(rows, MG_PANEL_ROWS) * m.stride) * sizeof(uint16_t);
}

/* The 32 values of chunk c of a row. */
static inline uint16_t *mg_bf16_chunk(const mg_bf16_matrix *m, int64_t row, int64_t c)
{
    return m->base + row / MG_PANEL_ROWS * MG_PANEL_ROWS * m->stride +
           (c * MG_PANEL_ROWS + row % MG_PANEL_ROWS) * MG_BF16_CHUNK;
}

/* One block of n <= 32 floats -> 32 quants (zero-padded) and its scale. */
void mg_q8_quantize_block(const float *x, int64_t n, int8_t *q, float *scale);

/* n floats <-> bf16 (round to nearest even; NaN stays NaN). */
void mg_bf16_row_from_f32(const float *x, uint16_t *y, int64_t n);
void mg_bf16_row_to_f32(const uint16_t *x, float *y, int64_t n);

/* Converts an F32 matrix (host, [rows, cols]) into dst laid out for dtype
 * (MG_DT_BF16 or MG_DT_Q8) using the backend's workers. */
void mg_cpu_convert_matrix(mg_backend *be, mg_dtype dtype, const float *src, int64_t rows,
                           int64_t cols, void *dst);
/* Bytes a [rows, cols] matrix takes in dtype (F32, BF16 or Q8). */
size_t mg_cpu_matrix_nbytes(mg_dtype dtype, int64_t rows, int64_t cols);
/* out[:] = row r of a matrix tensor in any of those formats (or += with
 * accumulate): embed() over compressed tables. */
void mg_cpu_matrix_row(const mg_tensor *t, int64_t r, float *out, int accumulate);
#endif
