/* CUDA backend: device memory, weight upload (bf16 or f32 matrices), the
 * staging ring for host metadata, error recording, and the op table. */
#include "cuda_backend.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { STAGE_BYTES = 4 << 20, CONVERT_CHUNK = 16 << 20 /* floats per bf16 upload pass */ };

void cu_fail(mg_cuda_backend *cb, const char *fmt, ...)
{
    if (cb->failed)
        return;
    cb->failed = 1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cb->fail_msg, sizeof cb->fail_msg, fmt, ap);
    va_end(ap);
}

int cu_check(mg_cuda_backend *cb, cudaError_t e, const char *what)
{
    if (e == cudaSuccess)
        return 0;
    cu_fail(cb, "cuda: %s: %s (%s)", what, cudaGetErrorString(e), cudaGetErrorName(e));
    return 1;
}

/* ---- the metadata arena */

void *cu_stage(mg_cuda_backend *cb, const void *host, size_t n)
{
    size_t need = (n + 15) & ~(size_t)15;
    if (need > cb->stage_cap) {
        cu_fail(cb, "cuda: %zu bytes of host metadata exceed the %zu-byte staging arena", n,
                cb->stage_cap);
        return NULL;
    }
    if (cb->stage_off + need > cb->stage_cap)
        cu_flush(cb); /* launches what uses the arena so far; the next buffer starts empty */
    int cur = cb->stage_cur;
    if (cb->stage_busy[cur]) { /* its previous contents may still be on their way up */
        if (cu_check(cb, cudaEventSynchronize(cb->stage_ev[cur]), "staging arena wait"))
            return NULL;
        cb->stage_busy[cur] = 0;
    }
    char *h = cb->stage_host[cur] + cb->stage_off, *d = cb->stage_dev + cb->stage_off;
    memcpy(h, host, n);
    if (need > n)
        memset(h + n, 0, need - n);
    cb->stage_off += need;
    return d;
}

/* ---- command recording */

size_t cu_cmd_begin(mg_cuda_backend *cb, const void *func, dim3 grid, dim3 block, size_t smem,
                    int kind)
{
    if (cb->n_cmds == cb->cmds_cap) {
        size_t cap = cb->cmds_cap ? 2 * cb->cmds_cap : 1024;
        cu_cmd *p = (cu_cmd *)realloc(cb->cmds, cap * sizeof *p);
        if (!p) {
            /* out of host memory: run what is pending and start over */
            cu_fail(cb, "cuda: out of host memory for the command list");
            cb->n_cmds = 0;
            cb->blob_len = 0;
        } else {
            cb->cmds = p;
            cb->cmds_cap = cap;
        }
    }
    cu_cmd *c = &cb->cmds[cb->n_cmds];
    memset((void *)c, 0, sizeof *c);
    c->func = func;
    c->grid = grid;
    c->block = block;
    c->smem = (uint32_t)smem;
    c->kind = kind;
    return cb->n_cmds++;
}

void *cu_cmd_arg(mg_cuda_backend *cb, size_t cmd, const void *v, size_t size, size_t align)
{
    size_t off = (cb->blob_len + align - 1) & ~(align - 1);
    if (off + size > cb->blob_cap) {
        size_t cap = cb->blob_cap ? 2 * cb->blob_cap : 64 << 10;
        while (cap < off + size)
            cap *= 2;
        char *p = (char *)realloc(cb->blob, cap);
        if (!p) {
            cu_fail(cb, "cuda: out of host memory for the command list");
            return NULL;
        }
        cb->blob = p;
        cb->blob_cap = cap;
    }
    memset(cb->blob + cb->blob_len, 0, off - cb->blob_len);
    memcpy(cb->blob + off, v, size);
    cb->blob_len = off + size;
    cu_cmd *c = &cb->cmds[cmd];
    c->argoff[c->nargs++] = (uint32_t)off;
    return cb->blob + off;
}

struct cu_prof {
    const void *func;
    double      ms;
    uint64_t    calls;
};

static void prof_add(mg_cuda_backend *cb, const void *func, float ms)
{
    for (int i = 0; i < cb->n_prof; i++)
        if (cb->prof[i].func == func) {
            cb->prof[i].ms += ms;
            cb->prof[i].calls++;
            return;
        }
    if (cb->n_prof == cb->cap_prof) {
        int cap = cb->cap_prof ? 2 * cb->cap_prof : 64;
        cu_prof *p = (cu_prof *)realloc(cb->prof, (size_t)cap * sizeof *p);
        if (!p)
            return;
        cb->prof = p;
        cb->cap_prof = cap;
    }
    cb->prof[cb->n_prof++] = {func, ms, 1};
}

/* Profile mode: an event after every launch, then a wait and the sums. */
static void launch_profiled(mg_cuda_backend *cb, const cu_cmd *cmds, size_t n, char *blob)
{
    if ((int)n + 1 > cb->cap_ev) {
        for (int i = 0; i < cb->cap_ev; i++)
            cudaEventDestroy(cb->prof_ev[i]);
        free(cb->prof_ev);
        free(cb->prof_fn);
        cb->cap_ev = 0;
        cb->prof_ev = (cudaEvent_t *)calloc(n + 1, sizeof *cb->prof_ev);
        cb->prof_fn = (const void **)calloc(n + 1, sizeof *cb->prof_fn);
        if (!cb->prof_ev || !cb->prof_fn)
            return;
        for (size_t i = 0; i < n + 1; i++)
            cudaEventCreate(&cb->prof_ev[i]);
        cb->cap_ev = (int)n + 1;
    }
    void *argv[CU_MAX_ARGS];
    cudaEventRecord(cb->prof_ev[0], cb->stream);
    for (size_t i = 0; i < n && !cb->failed; i++) {
        const cu_cmd *c = &cmds[i];
        for (uint32_t j = 0; j < c->nargs; j++)
            argv[j] = blob + c->argoff[j];
        cu_check(cb, cudaLaunchKernel(c->func, c->grid, c->block, argv, c->smem, cb->stream),
                 "kernel launch");
        cudaEventRecord(cb->prof_ev[i + 1], cb->stream);
        cb->prof_fn[i] = c->func;
        cb->n_launch++;
    }
    if (cu_check(cb, cudaStreamSynchronize(cb->stream), "profile"))
        return;
    for (size_t i = 0; i < n; i++) {
        float ms = 0;
        cudaEventElapsedTime(&ms, cb->prof_ev[i], cb->prof_ev[i + 1]);
        prof_add(cb, cb->prof_fn[i], ms);
    }
}

static void launch_cmds(mg_cuda_backend *cb, const cu_cmd *cmds, size_t n, char *blob)
{
    if (cb->profile) {
        launch_profiled(cb, cmds, n, blob);
        return;
    }
    void *argv[CU_MAX_ARGS];
    cudaLaunchAttribute attr;
    memset(&attr, 0, sizeof attr);
    attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr.val.programmaticStreamSerializationAllowed = 1;
    for (size_t i = 0; i < n && !cb->failed; i++) {
        const cu_cmd *c = &cmds[i];
        for (uint32_t j = 0; j < c->nargs; j++)
            argv[j] = blob + c->argoff[j];
        if (cb->pdl) {
            /* every recorded kernel begins with cu_pdl_wait() */
            cudaLaunchConfig_t cfg;
            memset((void *)&cfg, 0, sizeof cfg);
            cfg.gridDim = c->grid;
            cfg.blockDim = c->block;
            cfg.dynamicSmemBytes = c->smem;
            cfg.stream = cb->stream;
            cfg.attrs = &attr;
            cfg.numAttrs = 1;
            cu_check(cb, cudaLaunchKernelExC(&cfg, c->func, argv), "kernel launch");
        } else {
            cu_check(cb, cudaLaunchKernel(c->func, c->grid, c->block, argv, c->smem, cb->stream),
                     "kernel launch");
        }
        cb->n_launch++;
    }
}

/* Prints and clears the profile (kernel, calls, total and mean time). */
extern "C" void mg_cuda_profile_dump(mg_backend *be, const char *title)
{
    mg_cuda_backend *cb = cu_of(be);
    if (!cb->profile)
        return;
    double total = 0;
    for (int i = 0; i < cb->n_prof; i++)
        total += cb->prof[i].ms;
    fprintf(stderr, "profile %s: %.3f ms in kernels\n", title, total);
    for (int i = 0; i < cb->n_prof; i++) {
        const char *name = "?";
        if (cudaFuncGetName(&name, cb->prof[i].func) != cudaSuccess)
            name = "?";
        fprintf(stderr, "  %8.3f ms %6.1f%% %7llu calls %7.2f us  %.90s\n", cb->prof[i].ms,
                100.0 * cb->prof[i].ms / (total > 0 ? total : 1), (unsigned long long)cb->prof[i].calls,
                1e3 * cb->prof[i].ms / (double)cb->prof[i].calls, name);
    }
    cb->n_prof = 0;
}

static void graph_drop(cu_graph_entry *g)
{
    if (g->exec)
        cudaGraphExecDestroy(g->exec);
    free(g->cmds);
    free(g->blob);
    memset(g, 0, sizeof *g);
}

/* Captures the pending segment into entry g's graph; 0 on failure (recorded). */
static int graph_build(mg_cuda_backend *cb, cu_graph_entry *g)
{
    cudaGraph_t graph = NULL;
    if (cu_check(cb, cudaStreamBeginCapture(cb->stream, cudaStreamCaptureModeThreadLocal),
                 "graph capture"))
        return 0;
    launch_cmds(cb, g->cmds, g->n_cmds, g->blob);
    cudaError_t e = cudaStreamEndCapture(cb->stream, &graph);
    if (cu_check(cb, e, "graph capture") || cb->failed) {
        if (graph)
            cudaGraphDestroy(graph);
        return 0;
    }
    e = cudaGraphInstantiate(&g->exec, graph, 0);
    cudaGraphDestroy(graph);
    if (cu_check(cb, e, "graph instantiate")) {
        g->exec = NULL;
        return 0;
    }
    return 1;
}

void cu_flush(mg_cuda_backend *cb)
{
    if (cb->failed) { /* the job has failed: drop what is pending */
        cb->n_cmds = 0;
        cb->n_rng = 0;
        cb->blob_len = 0;
        cb->stage_off = 0;
        return;
    }
    if (cb->stage_off) {
        int cur = cb->stage_cur;
        cu_check(cb, cudaMemcpyAsync(cb->stage_dev, cb->stage_host[cur], cb->stage_off,
                                     cudaMemcpyHostToDevice, cb->stream), "metadata upload");
        cu_check(cb, cudaEventRecord(cb->stage_ev[cur], cb->stream), "metadata upload");
        cb->stage_busy[cur] = 1;
        cb->stage_cur ^= 1;
        cb->stage_off = 0;
    }
    size_t n = cb->n_cmds;
    cb->n_rng = 0;
    if (n == 0)
        return;
    cb->n_cmds = 0;
    size_t blen = cb->blob_len;
    cb->blob_len = 0;
    cb->flushes++;
    if (!cb->use_graphs || n > CU_GRAPH_MAX_CMDS || n < 2) {
        cb->n_direct++;
        launch_cmds(cb, cb->cmds, n, cb->blob);
        return;
    }
    cu_graph_entry *hit = NULL, *victim = &cb->graphs[0];
    for (int i = 0; i < CU_GRAPHS; i++) {
        cu_graph_entry *g = &cb->graphs[i];
        if (g->cmds && g->n_cmds == n && g->blob_len == blen &&
            memcmp(g->cmds, cb->cmds, n * sizeof *cb->cmds) == 0 &&
            memcmp(g->blob, cb->blob, blen) == 0) {
            hit = g;
            break;
        }
        if (!g->cmds || (victim->cmds && g->used < victim->used))
            victim = g;
    }
    if (hit) {
        hit->used = cb->flushes;
        if (!hit->exec && !graph_build(cb, hit))
            return;
        cb->n_replay++;
        cu_check(cb, cudaGraphLaunch(hit->exec, cb->stream), "graph launch");
        return;
    }
    /* first sighting: launch directly and remember it */
    cb->n_direct++;
    launch_cmds(cb, cb->cmds, n, cb->blob);
    graph_drop(victim);
    victim->cmds = (cu_cmd *)malloc(n * sizeof *cb->cmds);
    victim->blob = (char *)malloc(blen ? blen : 1);
    if (!victim->cmds || !victim->blob) {
        graph_drop(victim);
        return;
    }
    memcpy(victim->cmds, cb->cmds, n * sizeof *cb->cmds);
    memcpy(victim->blob, cb->blob, blen);
    victim->n_cmds = n;
    victim->blob_len = blen;
    victim->used = cb->flushes;
}

void *cu_scratch(mg_cuda_backend *cb, int which, size_t n)
{
    void **p = &cb->scratch[which];
    size_t *cap = &cb->scratch_cap[which];
    if (n <= *cap && *p)
        return *p;
    /* the old buffer may still be read by queued kernels */
    if (*p) {
        cu_flush(cb);
        if (cu_check(cb, cudaStreamSynchronize(cb->stream), "scratch resize"))
            return NULL;
        cudaFree(*p);
        *p = NULL;
        *cap = 0;
    }
    size_t want = n + n / 4 + 4096;
    if (cu_check(cb, cudaMalloc(p, want), "scratch allocation")) {
        *p = NULL;
        return NULL;
    }
    *cap = want;
    return *p;
}

int *cu_counters(mg_cuda_backend *cb, int64_t n)
{
    if ((size_t)n <= cb->counters_cap && cb->counters)
        return cb->counters;
    if (cb->counters) { /* queued kernels may still use the old ones */
        cu_flush(cb);
        if (cu_check(cb, cudaStreamSynchronize(cb->stream), "counters resize"))
            return NULL;
        cudaFree(cb->counters);
        cb->counters = NULL;
        cb->counters_cap = 0;
    }
    size_t want = (size_t)n + 1024;
    if (cu_check(cb, cudaMalloc((void **)&cb->counters, want * sizeof(int)), "counters") ||
        cu_check(cb, cudaMemsetAsync(cb->counters, 0, want * sizeof(int), cb->stream), "counters")) {
        cb->counters = NULL;
        return NULL;
    }
    cb->counters_cap = want;
    return cb->counters;
}

static mg_code cu_alloc(mg_backend *be, mg_tensor *t, mg_error *err)
{
    mg_cuda_backend *cb = cu_of(be);
    cu_enter(cb);
    void *p = NULL;
    size_t n = t->nbytes ? t->nbytes : 16;
    cudaError_t e = cudaMalloc(&p, n);
    if (e == cudaSuccess)
        e = cudaMemsetAsync(p, 0, n, cb->stream);
    if (e != cudaSuccess) {
        if (p)
            cudaFree(p);
        cudaGetLastError(); /* an out-of-memory error is not sticky: clear it */
        return mg_fail(err, e == cudaErrorMemoryAllocation ? MG_ERR_NOMEM : MG_ERR_DEVICE,
                       "cuda: cannot allocate %zu bytes: %s", t->nbytes, cudaGetErrorString(e));
    }
    t->data = p;
    return MG_OK;
}

static void cu_release(mg_backend *be, mg_tensor *t)
{
    cu_enter(cu_of(be));
    cu_flush(cu_of(be));
    cudaFree(t->data); /* waits for queued work that may still use it */
    t->data = NULL;
}

/* Reports and clears the recorded failure. A sticky error (an illegal
 * address, a kernel fault) kills the CUDA context of the whole process: the
 * message says so, and the next mg_backend_cuda_create resets the device. */
static mg_code cu_pending_error(mg_cuda_backend *cb, mg_error *err)
{
    if (!cb->failed)
        return MG_OK;
    cb->failed = 0;
    cudaGetLastError(); /* clears a non-sticky error; a sticky one stays */
    if (!cb->lost && cudaStreamQuery(cb->stream) != cudaSuccess &&
        cudaDeviceSynchronize() != cudaSuccess)
        cb->lost = 1;
    return mg_fail(err, MG_ERR_DEVICE, "%s%s", cb->fail_msg,
                   cb->lost ? " (the GPU context is lost: re-create the backend)" : "");
}

static int cu_lost(mg_backend *be) { return cu_of(be)->lost; }

static mg_code cu_upload(mg_backend *be, mg_tensor *t, size_t off, const void *host, size_t n,
                         mg_error *err)
{
    mg_cuda_backend *cb = cu_of(be);
    cu_enter(cb);
    if (off > t->nbytes || n > t->nbytes - off)
        return mg_fail(err, MG_ERR_INVALID, "cuda: upload of %zu bytes at %zu into %zu", n, off,
                       t->nbytes);
    cu_flush(cb);
    /* from pageable memory the copy is staged before this returns: host may be reused */
    cudaError_t e = cudaMemcpyAsync((char *)t->data + off, host, n, cudaMemcpyHostToDevice,
                                    cb->stream);
    if (e != cudaSuccess)
        return mg_fail(err, MG_ERR_DEVICE, "cuda: upload: %s", cudaGetErrorString(e));
    return MG_OK;
}

static mg_code cu_download(mg_backend *be, const mg_tensor *t, size_t off, void *host, size_t n,
                           mg_error *err)
{
    mg_cuda_backend *cb = cu_of(be);
    cu_enter(cb);
    if (off > t->nbytes || n > t->nbytes - off)
        return mg_fail(err, MG_ERR_INVALID, "cuda: download of %zu bytes at %zu from %zu", n,
                       off, t->nbytes);
    cu_flush(cb);
    cu_check(cb, cudaMemcpyAsync(host, (const char *)t->data + off, n, cudaMemcpyDeviceToHost,
                                 cb->stream), "download");
    cu_check(cb, cudaStreamSynchronize(cb->stream), "download");
    return cu_pending_error(cb, err);
}

/* Matrix weights become bf16 in bf16 mode: the f32 host data goes up in
 * chunks through scratch and is rounded (nearest even) on the device. */
static mg_code cu_weight(mg_backend *be, mg_tensor *t, const void *host, mg_weight_kind kind,
                         mg_error *err)
{
    mg_cuda_backend *cb = cu_of(be);
    cu_enter(cb);
    if (t->dtype != MG_DT_F32)
        return mg_fail(err, MG_ERR_UNSUPPORTED, "cuda: weights arrive as F32, got %s",
                       mg_dtype_name(t->dtype));
    int to_bf16 = kind == MG_WEIGHT_MATRIX && cb->matrix_dtype == MG_DT_BF16;
    int64_t n = mg_tensor_numel(t);
    if (to_bf16) {
        t->dtype = MG_DT_BF16;
        t->nbytes = (size_t)n * 2;
    }
    cu_flush(cb);
    mg_code rc = cu_alloc(be, t, err);
    if (rc != MG_OK)
        return rc;
    t->owns = 1;
    if (!to_bf16) {
        rc = cu_upload(be, t, 0, host, t->nbytes, err);
    } else {
        for (int64_t i = 0; i < n; i += CONVERT_CHUNK) {
            int64_t m = n - i < (int64_t)CONVERT_CHUNK ? n - i : (int64_t)CONVERT_CHUNK;
            float *tmp = (float *)cu_scratch(cb, 0, (size_t)m * sizeof(float));
            if (!tmp)
                break;
            /* scratch is reused by the next chunk: copy synchronously */
            if (cu_check(cb, cudaMemcpyAsync(tmp, (const float *)host + i, (size_t)m * 4,
                                             cudaMemcpyHostToDevice, cb->stream), "weight upload"))
                break;
            cu_f32_to_bf16(cb, (__nv_bfloat16 *)t->data + i, tmp, m);
            cu_flush(cb);
            if (cu_check(cb, cudaStreamSynchronize(cb->stream), "weight upload"))
                break;
        }
        rc = cu_pending_error(cb, err);
    }
    if (rc != MG_OK) {
        cu_release(be, t);
        t->owns = 0;
    }
    return rc;
}

mg_code cu_sync(mg_backend *be, mg_error *err)
{
    mg_cuda_backend *cb = cu_of(be);
    cu_enter(cb);
    cu_flush(cb);
    cu_check(cb, cudaStreamSynchronize(cb->stream), "sync");
    return cu_pending_error(cb, err);
}

/* Row copies read their row numbers from the metadata arena, so that a
 * decode step that appends at a new position each time still replays the
 * same graph. A BF16 destination (kv_bf16 attention caches) takes each F32
 * value rounded to nearest even, as the CPU's copy_rows. */
static __device__ __forceinline__ void store_row_value(void *dst, int64_t i, float v, int bf16)
{
    if (bf16)
        ((__nv_bfloat16 *)dst)[i] = __float2bfloat16_rn(v);
    else
        ((float *)dst)[i] = v;
}

__global__ void copy_rows_kernel(void *dst, const float *src, const cu_rowmap *m, int64_t cols,
                                 int64_t total, int bf16)
{
    cu_pdl_wait();
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= total)
        return;
    int64_t r = i / cols, c = i % cols, blk = r / m->n, j = r % m->n;
    store_row_value(dst, (m->dst_row + blk * m->dst_step + j) * cols + c,
                    src[(m->src_row + blk * m->src_step + j) * cols + c], bf16);
}

/* Row copies take F32 sources into F32 or BF16 destinations. */
static int copy_dtypes_ok(mg_cuda_backend *cb, const mg_tensor *dst, const mg_tensor *src)
{
    if (src->dtype == MG_DT_F32 && (dst->dtype == MG_DT_F32 || dst->dtype == MG_DT_BF16))
        return 1;
    cu_fail(cb, "cuda: row copy from %s into %s is not implemented (F32 into F32 or BF16)",
            mg_dtype_name(src->dtype), mg_dtype_name(dst->dtype));
    return 0;
}

static void cu_copy_rows_strided(mg_backend *be, mg_tensor *dst, int64_t dst_row,
                                 int64_t dst_step, const mg_tensor *src, int64_t src_row,
                                 int64_t src_step, int64_t n, int64_t count)
{
    mg_cuda_backend *cb = cu_of(be);
    cu_enter(cb);
    if (n <= 0 || count <= 0 || !copy_dtypes_ok(cb, dst, src))
        return;
    cu_rowmap m = {dst_row, dst_step, src_row, src_step, n, count};
    /* the linear epilogues store F32 only */
    if (dst->dtype == MG_DT_F32 && cu_fuse_copy(cb, dst, src, &m))
        return;
    const cu_rowmap *dm = (const cu_rowmap *)cu_stage(cb, &m, sizeof m);
    if (!dm)
        return;
    int64_t cols = mg_tensor_cols(src), total = n * count * cols;
    cu_launch(cb, copy_rows_kernel, cu_blocks(total, 256), 256, 0, dst->data, cu_f32(src), dm,
              cols, total, (int)(dst->dtype == MG_DT_BF16));
}

/* One block row per copied row: dst[i] row dst_row[i] = src row src_row[i]. */
struct scat_row {
    void   *dst;
    int64_t dst_row, src_row;
    int64_t bf16; /* dst is BF16 (int64: no padding bytes in the staged table) */
};
__global__ void scatter_rows_kernel(const float *src, const scat_row *rows, int64_t cols)
{
    cu_pdl_wait();
    int64_t c = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= cols)
        return;
    scat_row r = rows[blockIdx.y];
    store_row_value(r.dst, r.dst_row * cols + c, src[r.src_row * cols + c], (int)r.bf16);
}

static void cu_copy_rows_scatter(mg_backend *be, mg_tensor *const *dst, const int64_t *dst_rows,
                                 const mg_tensor *src, const int64_t *src_rows, int n)
{
    mg_cuda_backend *cb = cu_of(be);
    cu_enter(cb);
    if (n <= 0)
        return;
    int all_f32 = 1;
    for (int i = 0; i < n; i++) {
        if (!copy_dtypes_ok(cb, dst[i], src))
            return;
        all_f32 &= dst[i]->dtype == MG_DT_F32;
    }
    /* the linear epilogues store F32 only */
    if (all_f32 && cu_fuse_scatter(cb, dst, dst_rows, src, src_rows, n))
        return;
    scat_row *h = (scat_row *)malloc((size_t)n * sizeof *h);
    if (!h) {
        cu_fail(cb, "cuda: out of host memory for a row scatter");
        return;
    }
    for (int i = 0; i < n; i++)
        h[i] = {dst[i]->data, dst_rows[i], src_rows[i], (int64_t)(dst[i]->dtype == MG_DT_BF16)};
    const scat_row *d = (const scat_row *)cu_stage(cb, h, (size_t)n * sizeof *h);
    free(h);
    if (!d)
        return;
    int64_t cols = mg_tensor_cols(src);
    cu_launch(cb, scatter_rows_kernel, dim3(cu_blocks(cols, 256), (unsigned)n), 256, 0, cu_f32(src), d,
              cols);
}

static void cu_copy_rows(mg_backend *be, mg_tensor *dst, int64_t dst_row, const mg_tensor *src,
                         int64_t src_row, int64_t n)
{
    cu_copy_rows_strided(be, dst, dst_row, n, src, src_row, n, n, 1);
}

static void cu_destroy(mg_backend *be)
{
    mg_cuda_backend *cb = cu_of(be);
    cu_enter(cb);
    if (cb->stream) {
        cu_flush(cb);
        cudaStreamSynchronize(cb->stream);
    }
    for (int i = 0; i < CU_GRAPHS; i++)
        graph_drop(&cb->graphs[i]);
    free(cb->cmds);
    free(cb->blob);
    free(cb->rng);
    for (int i = 0; i < cb->cap_ev; i++)
        cudaEventDestroy(cb->prof_ev[i]);
    free(cb->prof_ev);
    free(cb->prof_fn);
    free(cb->prof);
    for (int i = 0; i < 4; i++)
        cudaFree(cb->scratch[i]);
    cudaFree(cb->counters);
    cudaFree(cb->stage_dev);
    for (int i = 0; i < 2; i++) {
        cudaFreeHost(cb->stage_host[i]);
        if (cb->stage_ev[i])
            cudaEventDestroy(cb->stage_ev[i]);
    }
    cudaFree(cb->tokens_dev);
    cudaFreeHost(cb->tokens_host);
    if (cb->stream)
        cudaStreamDestroy(cb->stream);
    free(cb);
}

/* No 8-bit attention caches, BF16 LSTM weights or weights cache on the GPU;
 * the BF16 paths are what the options switched on. */
static void cu_get_caps(mg_backend *be, mg_backend_caps *caps)
{
    mg_cuda_backend *cb = cu_of(be);
    caps->weight_dtype = cb->matrix_dtype;
    caps->matrix_layout = NULL;
    caps->lstm_bf16 = 0;
    caps->lstm_q8 = 0;
    caps->conv_bf16 = cu_conv_bf16_fits(be);
    caps->kv_bf16 = cb->kv_bf16;
    caps->kv_q8row_fits = NULL;
    /* the ops of a batch of decodes are the ones a batched generate already
     * runs (bench-gpu's 64-prompt call) */
    caps->batched_encodec_cheap = 1;
}

static const mg_backend_ops cuda_ops = {
    /* .name */ "cuda",
    /* .destroy */ cu_destroy,
    /* .get_caps */ cu_get_caps,
    /* .alloc */ cu_alloc,
    /* .release */ cu_release,
    /* .upload */ cu_upload,
    /* .download */ cu_download,
    /* .weight */ cu_weight,
    /* .sync */ cu_sync,
    /* .embed */ cu_embed,
    /* .linear */ cu_linear,
    /* .add */ cu_add,
    /* .scale_rows */ cu_scale_rows,
    /* .rms_norm */ cu_rms_norm,
    /* .layer_norm */ cu_layer_norm,
    /* .relu */ cu_relu,
    /* .gelu */ cu_gelu,
    /* .elu */ cu_elu,
    /* .attention */ cu_attention,
    /* .copy_rows */ cu_copy_rows,
    /* .conv1d */ cu_conv1d,
    /* .conv_transpose1d */ cu_conv_transpose1d,
    /* .pad_reflect */ cu_pad_reflect,
    /* .transpose */ cu_transpose,
    /* .lstm */ cu_lstm,
    /* .select_tokens */ cu_select_tokens,
    /* .copy_rows_strided */ cu_copy_rows_strided,
    /* .copy_rows_scatter */ cu_copy_rows_scatter,
    /* .linear_many: the recorded step fuses launches already */ NULL,
    /* .matrix_nbytes: weights live on the device, no cache */ NULL,
    /* .lost */ cu_lost,
    /* .conv1d_fused: EnCodec runs conv1d, add, elu */ NULL,
    /* .pad_reflect_elu: pad_reflect, then elu */ NULL,
    /* .select_tokens_many */ cu_select_tokens_many,
    /* .lstm_state: the LSTM kernel starts from zeros (caps.lstm_state 0:
     * EnCodec decodes once the codes are complete) */ NULL,
};

extern "C" mg_code mg_cuda_probe(int device, char *name, size_t name_cap, double *peak_bw,
                                 mg_error *err)
{
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        cudaGetLastError();
        /* without a driver the runtime reports an "insufficient" one */
        return mg_fail(err, MG_ERR_DEVICE, "cuda: no usable GPU (no NVIDIA driver, or one too old "
                       "for this CUDA %d.%d build): %s (%s)", CUDART_VERSION / 1000,
                       CUDART_VERSION % 1000 / 10, cudaGetErrorString(e), cudaGetErrorName(e));
    }
    if (n == 0)
        return mg_fail(err, MG_ERR_DEVICE, "cuda: no usable GPU: the driver reports no devices");
    if (device < 0 || device >= n)
        return mg_fail(err, MG_ERR_INVALID, "cuda: device %d does not exist (%d GPU%s)", device,
                       n, n == 1 ? "" : "s");
    cudaDeviceProp prop;
    if ((e = cudaGetDeviceProperties(&prop, device)) != cudaSuccess)
        return mg_fail(err, MG_ERR_DEVICE, "cuda: device %d: %s", device, cudaGetErrorString(e));
    if (prop.major < 8)
        return mg_fail(err, MG_ERR_UNSUPPORTED,
                       "cuda: device %d (%s) is compute capability %d.%d; this build needs 8.0+",
                       device, prop.name, prop.major, prop.minor);
    if (name)
        snprintf(name, name_cap, "%s", prop.name);
    if (peak_bw) { /* DDR: two transfers per memory clock */
        int khz = 0, bits = 0;
        cudaDeviceGetAttribute(&khz, cudaDevAttrMemoryClockRate, device);
        cudaDeviceGetAttribute(&bits, cudaDevAttrGlobalMemoryBusWidth, device);
        *peak_bw = 2.0 * khz * 1e3 * bits / 8.0;
    }
    return MG_OK;
}

extern "C" mg_code mg_backend_cuda_create(mg_backend **out, int device, mg_dtype matrix_dtype,
                                          const mg_backend_options *opt, mg_error *err)
{
    *out = NULL;
    mg_backend_options defaults;
    if (!opt) {
        mg_backend_options_default(&defaults);
        opt = &defaults;
    }
    if (matrix_dtype != MG_DT_F32 && matrix_dtype != MG_DT_BF16)
        return mg_fail(err, MG_ERR_UNSUPPORTED, "cuda: matrix weights as %s are not implemented "
                       "(f32 or bf16)", mg_dtype_name(matrix_dtype));
    mg_code rc = mg_cuda_probe(device, NULL, 0, NULL, err);
    if (rc != MG_OK)
        return rc;
    mg_cuda_backend *cb = (mg_cuda_backend *)calloc(1, sizeof *cb);
    if (!cb)
        return mg_fail(err, MG_ERR_NOMEM, "cuda: out of memory");
    cb->base.ops = &cuda_ops;
    cb->base.n_threads = 1;
    cb->device = device;
    cb->matrix_dtype = matrix_dtype;
    cb->stage_cap = STAGE_BYTES;
    cb->use_graphs = opt->cuda_graphs;
    cb->use_fusion = opt->cuda_fusion;
    cb->pdl = opt->cuda_pdl;
    cb->fuse_norm = opt->cuda_fuse_norm;
    cb->wide = opt->cuda_wide;
    /* the opt-in paths (backend/options.h says why they are opt-in) */
    cb->conv_bf16 = opt->cuda_conv_bf16;
    cb->kv_bf16 = opt->cuda_kv_bf16;
    cb->select_many = opt->cuda_select_many;
    cb->profile = opt->cuda_profile;
    if (cb->profile)
        cb->use_graphs = 0;
    /* A context killed by a sticky error (an earlier backend's kernel fault)
     * fails every call until the device is reset: reset it here (any other
     * backend of this process on the device is gone with it). The driver may
     * take a moment to release the dead context: retry for up to 3 s. */
    cudaError_t e = cudaErrorUnknown, reset = cudaSuccess;
    for (int attempt = 0; attempt < 10; attempt++) {
        e = cudaSetDevice(device);
        if (e == cudaSuccess)
            e = cudaFree(0);
        if (e == cudaSuccess)
            break;
        reset = cudaDeviceReset();
        cudaGetLastError();
        usleep(100 * 1000);
    }
    if (e != cudaSuccess) {
        rc = mg_fail(err, MG_ERR_DEVICE, "cuda: device %d unusable in this process (%s; device "
                     "reset: %s): an earlier kernel fault may have killed the process's GPU "
                     "context, which only a new process recovers from", device,
                     cudaGetErrorString(e), cudaGetErrorString(reset));
        free(cb);
        return rc;
    }
    int smem = 0;
    if (e == cudaSuccess)
        e = cudaDeviceGetAttribute(&cb->sm_count, cudaDevAttrMultiProcessorCount, device);
    if (e == cudaSuccess)
        e = cudaDeviceGetAttribute(&smem, cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
    cb->smem_optin = (size_t)smem;
    int major = 0;
    if (e == cudaSuccess)
        e = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device);
    if (major < 9)
        cb->pdl = 0; /* programmatic dependent launch needs Hopper */
    if (e == cudaSuccess)
        e = cudaStreamCreateWithFlags(&cb->stream, cudaStreamNonBlocking);
    for (int i = 0; i < 2; i++) {
        if (e == cudaSuccess)
            e = cudaMallocHost((void **)&cb->stage_host[i], cb->stage_cap);
        if (e == cudaSuccess)
            e = cudaEventCreateWithFlags(&cb->stage_ev[i], cudaEventDisableTiming);
    }
    if (e == cudaSuccess)
        e = cudaMalloc((void **)&cb->stage_dev, cb->stage_cap);
    if (e != cudaSuccess) {
        rc = mg_fail(err, MG_ERR_DEVICE, "cuda: cannot set up device %d: %s", device,
                     cudaGetErrorString(e));
        cudaGetLastError();
        cu_destroy(&cb->base);
        return rc;
    }
    *out = &cb->base;
    return MG_OK;
}

/* For the bench: kernel launches made one by one, segments replayed from a
 * graph, segments launched directly (cumulative). */
extern "C" void mg_cuda_stats(mg_backend *be, uint64_t *launches, uint64_t *replays,
                              uint64_t *direct)
{
    mg_cuda_backend *cb = cu_of(be);
    *launches = cb->n_launch;
    *replays = cb->n_replay;
    *direct = cb->n_direct;
}
