/* The CPU backend's calls beyond the op table (backend.h creates it): its
 * kernel level, its worker pool, and the size of its converted matrices,
 * for tests and benchmarks that compare levels and formats. */
#ifndef MG_CPU_BACKEND_H
#define MG_CPU_BACKEND_H
#include "backend/backend.h"
#include "cpu/cpu_isa.h"
#include "cpu/cpu_pool.h"

/* Forces a lower kernel level (tests, comparisons); capped at what the CPU has. */
void mg_cpu_backend_set_isa(mg_backend *be, mg_cpu_isa isa);
mg_cpu_isa mg_cpu_backend_isa(const mg_backend *be);

/* Runs fn over [0, n) split into contiguous chunks, one per thread. Work
 * smaller than min_per_thread per thread stays on fewer threads. */
void mg_cpu_parallel(mg_backend *be, int64_t n, int64_t min_per_thread, mg_cpu_task_fn fn,
                     void *ctx);

/* Bytes of a [rows, cols] matrix weight converted to dtype (F32, BF16, Q8). */
size_t mg_cpu_matrix_nbytes(mg_dtype dtype, int64_t rows, int64_t cols);
#endif
