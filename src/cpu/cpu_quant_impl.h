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
 *   per weight), and 32 int8 are 8 int32 lanes of vpdpbusd. The scale is
 *   float32 rather than f16 because f16 underflows (loses bits) for blocks of
 *   small weights; it costs 4/32 = 12.5 % more bytes than int8 alone (1.125
 *   bytes per weight).
 *   Layout: a row's blocks go in groups of up to 16; inside a group the
 *   4-byte piece p (0..7) of block b is stored at [p][b], so one 64-byte load
 *   holds piece p of 16 blocks and 8 vpdpbusd add every block's whole
 *   32-term integer dot into its own int32 lane: one int->float convert and
 *   one scale multiply per 16 blocks instead of per 2 (the VNNI kernel was
 *   compute-bound on them). Quants are stored as q + 128 (uint8), the
 *   unsigned operand vpdpbusd wants, so no flip in the inner loop. A panel
 *   of 4 rows stores per group: quants [piece p][row j][block b][4] uint8
 *   (the order the kernel loads them: one sequential stream, which the
 *   prefetcher follows where 4 interleaved row streams left it behind), then
 *   scales [row j][block b] float32 (2304 bytes = 36 cache lines for a full
 *   group). */
#ifndef MG_CPU_QUANT_IMPL_H
#define MG_CPU_QUANT_IMPL_H
#include <stddef.h>
#include <stdint.h>

#include "backend/backend.h"
#include "cpu/cpu_isa.h"

enum {
    MG_PANEL_ROWS = 4, MG_Q8_BLOCK = 32, MG_BF16_CHUNK = 32,
    MG_Q8_GBLOCKS = 16, /* blocks per group */
    MG_Q8_PIECES = 8,   /* 4-byte pieces per block */
    MG_Q8_GROUP = MG_Q8_GBLOCKS * MG_Q8_BLOCK, /* weights per row in a full group */
    MG_Q8_GROUP_BYTES = MG_PANEL_ROWS * MG_Q8_GBLOCKS * (MG_Q8_BLOCK + 4)
};

/* The layouts above, as recorded in the converted-weights cache: change it
 * with any of them (panel rows, block, group or chunk sizes, quant offset,
 * piece order), or caches of the old layout would be mapped as the new. */
#define MG_CPU_MATRIX_LAYOUT "cpu:panel4,q8:b32g16p8+128,bf16:c32,v1"

static inline int64_t mg_round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

typedef struct {
    uint8_t *base;
    int64_t  rows, cols;
    int64_t  nblocks;      /* blocks per row: cols rounded up to MG_Q8_BLOCK, / 32 */
    int64_t  panel_bytes;
} mg_q8_matrix;

static inline mg_q8_matrix mg_q8_layout(int64_t rows, int64_t cols, void *data)
{
    mg_q8_matrix m = {.base = data, .rows = rows, .cols = cols,
                      .nblocks = mg_round_up(cols > 0 ? cols : 1, MG_Q8_BLOCK) / MG_Q8_BLOCK};
    m.panel_bytes = m.nblocks * MG_PANEL_ROWS * (MG_Q8_BLOCK + 4);
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

static inline int64_t mg_q8_groups(const mg_q8_matrix *m)
{
    return (m->nblocks + MG_Q8_GBLOCKS - 1) / MG_Q8_GBLOCKS;
}

/* Blocks in group g (16 but in a row's last group). */
static inline int mg_q8_group_blocks(const mg_q8_matrix *m, int64_t g)
{
    int64_t n = m->nblocks - g * MG_Q8_GBLOCKS;
    return (int)(n < MG_Q8_GBLOCKS ? n : MG_Q8_GBLOCKS);
}

/* The quants (q + 128) of group g of the panel holding row: [piece][row j][block][4]. */
static inline uint8_t *mg_q8_group(const mg_q8_matrix *m, int64_t row, int64_t g)
{
    return m->base + row / MG_PANEL_ROWS * m->panel_bytes + g * MG_Q8_GROUP_BYTES;
}

/* The block scales of group g of a row. */
static inline float *mg_q8_group_scales(const mg_q8_matrix *m, int64_t row, int64_t g)
{
    int nb = mg_q8_group_blocks(m, g);
    return (float *)(m->base + row / MG_PANEL_ROWS * m->panel_bytes + g * MG_Q8_GROUP_BYTES +
                     MG_PANEL_ROWS * nb * MG_Q8_BLOCK) +
           row % MG_PANEL_ROWS * nb;
}

/* Byte offset of quant i (0..31) of block b of panel row j inside a group
 * of nb blocks (mg_q8_group); j = 0 is also the layout of one prepared
 * activation row, whose pieces follow each other directly (rows = 1). */
static inline int mg_q8_piece_offset(int nb, int rows, int j, int b, int i)
{
    return (((i / 4) * rows + j) * nb + b) * 4 + i % 4;
}

/* Block blk of a row as 32 int8 quants in natural order and its scale. */
static inline void mg_q8_get_block(const mg_q8_matrix *m, int64_t row, int64_t blk, int8_t *q,
                                   float *scale)
{
    int64_t g = blk / MG_Q8_GBLOCKS;
    int nb = mg_q8_group_blocks(m, g), b = (int)(blk % MG_Q8_GBLOCKS);
    const uint8_t *p = mg_q8_group(m, row, g);
    for (int i = 0; i < MG_Q8_BLOCK; i++)
        q[i] = (int8_t)(p[mg_q8_piece_offset(nb, MG_PANEL_ROWS, (int)(row % MG_PANEL_ROWS), b, i)] - 128);
    *scale = mg_q8_group_scales(m, row, g)[b];
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

/* Q8ROW attention-cache rows (safetensors.h): the scales of a row of cols
 * values follow its cols quants. */
static inline float *mg_q8row_scales(void *row, int64_t cols)
{
    return (float *)((int8_t *)row + cols);
}

/* A row of cols floats (a multiple of MG_Q8ROW_BLOCK) -> Q8ROW (AVX-512
 * from kernel level isa up: the same quants and scales as the scalar loop). */
void mg_q8row_quantize(mg_cpu_isa isa, const float *x, int64_t cols, void *row);
/* n values from column c0 of a Q8ROW row as floats. */
void mg_q8row_dequantize(const void *row, int64_t cols, int64_t c0, int64_t n, float *out);

/* n floats <-> bf16 (round to nearest even; NaN stays NaN; AVX-512 from
 * kernel level isa up). */
void mg_bf16_row_from_f32(mg_cpu_isa isa, const float *x, uint16_t *y, int64_t n);
void mg_bf16_row_to_f32(const uint16_t *x, float *y, int64_t n);

/* Converts an F32 matrix (host, [rows, cols]) into dst laid out for dtype
 * (MG_DT_BF16 or MG_DT_Q8) using the backend's workers. */
void mg_cpu_convert_matrix(mg_backend *be, mg_dtype dtype, const float *src, int64_t rows,
                           int64_t cols, void *dst);
/* out[:] = row r of a matrix tensor in any of those formats (or += with
 * accumulate): embed() over compressed tables. */
void mg_cpu_matrix_row(const mg_tensor *t, int64_t r, float *out, int accumulate);
#endif
