/* CPU backend: host memory, a persistent worker pool, and the op table. */
#include "cpu/cpu_impl.h"
#include "cpu/cpu_quant_impl.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* Large tensors are anonymous mappings, populated at once (MAP_POPULATE):
 * every one is written in full (attention caches are sized to the steps a
 * generation takes), and faulting them in a page at a time cost a batched
 * decode step ~1 ms (two new pages per sequence, layer and K/V, each a trap
 * taken by the one thread appending the caches). */
#define CPU_MMAP_BYTES ((size_t)1 << 20)

static size_t mapped_bytes(size_t nbytes)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    return (nbytes + page - 1) / page * page;
}

/* Memory is 64-byte aligned (mappings: page-aligned) so SIMD kernels can use
 * aligned loads on rows. */
static mg_code cpu_alloc(mg_backend *be, mg_tensor *t, mg_error *err)
{
    if (t->nbytes >= CPU_MMAP_BYTES) {
        void *p = mmap(NULL, mapped_bytes(t->nbytes), PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
        if (p == MAP_FAILED)
            return mg_fail(err, MG_ERR_NOMEM, "cpu: cannot allocate %zu bytes", t->nbytes);
        t->data = p;
        return MG_OK;
    }
    size_t n = (t->nbytes + 63) & ~(size_t)63;
    void *p = NULL;
    if (posix_memalign(&p, 64, n ? n : 64) != 0)
        return mg_fail(err, MG_ERR_NOMEM, "cpu: cannot allocate %zu bytes", t->nbytes);
    memset(p, 0, n ? n : 64);
    t->data = p;
    return MG_OK;
}

static void cpu_release(mg_backend *be, mg_tensor *t)
{
    if (t->data && t->nbytes >= CPU_MMAP_BYTES)
        munmap(t->data, mapped_bytes(t->nbytes));
    else
        free(t->data);
    t->data = NULL;
}

static mg_code cpu_upload(mg_backend *be, mg_tensor *t, size_t off, const void *host, size_t n,
                          mg_error *err)
{
    if (off > t->nbytes || n > t->nbytes - off)
        return mg_fail(err, MG_ERR_INVALID, "cpu: upload of %zu bytes at %zu into %zu", n, off,
                       t->nbytes);
    memcpy((char *)t->data + off, host, n);
    return MG_OK;
}

static mg_code cpu_download(mg_backend *be, const mg_tensor *t, size_t off, void *host,
                            size_t n, mg_error *err)
{
    if (off > t->nbytes || n > t->nbytes - off)
        return mg_fail(err, MG_ERR_INVALID, "cpu: download of %zu bytes at %zu from %zu", n,
                       off, t->nbytes);
    memcpy(host, (const char *)t->data + off, n);
    return MG_OK;
}

/* Room for MG_CPU_LINEAR_ROWS prepared activation rows of a matrix with
 * cols inputs (linear() over compressed weights must not allocate). */
static mg_code reserve_xbuf(mg_cpu_backend *cpu, int64_t cols, mg_error *err)
{
    size_t need = mg_cpu_xbuf_row_bytes(cols) * MG_CPU_LINEAR_ROWS;
    if (need <= cpu->xbuf_cap)
        return MG_OK;
    void *p = NULL;
    if (posix_memalign(&p, 64, need) != 0)
        return mg_fail(err, MG_ERR_NOMEM, "cpu: cannot allocate %zu bytes of scratch", need);
    free(cpu->xbuf);
    cpu->xbuf = p;
    cpu->xbuf_cap = need;
    return MG_OK;
}

/* Matrix weights are converted once to the backend's weight format; other
 * weights in a mmap'd file are used in place when aligned for their type. */
static mg_code cpu_weight(mg_backend *be, mg_tensor *t, const void *host, mg_weight_kind kind,
                          mg_error *err)
{
    mg_cpu_backend *cpu = (mg_cpu_backend *)be;
    mg_dtype want = cpu->weight_dtype;
    if (kind == MG_WEIGHT_MATRIX && t->dtype == MG_DT_F32 &&
        (want == MG_DT_BF16 || want == MG_DT_Q8)) {
        int64_t rows = mg_tensor_rows(t), cols = mg_tensor_cols(t);
        mg_code rc = want == MG_DT_Q8 ? reserve_xbuf(cpu, cols, err) : MG_OK;
        if (rc != MG_OK)
            return rc;
        mg_tensor conv = *t;
        conv.dtype = want;
        conv.nbytes = mg_cpu_matrix_nbytes(want, rows, cols);
        if ((rc = cpu_alloc(be, &conv, err)) != MG_OK)
            return rc;
        mg_cpu_convert_matrix(be, want, host, rows, cols, conv.data);
        conv.owns = 1;
        *t = conv;
        return MG_OK;
    }
    /* a matrix already converted (the weights cache): used in place */
    if (kind == MG_WEIGHT_MATRIX && t->dtype == MG_DT_Q8) {
        mg_code rc = reserve_xbuf(cpu, mg_tensor_cols(t), err);
        if (rc != MG_OK)
            return rc;
    }
    size_t es = mg_dtype_size(t->dtype);
    if (((uintptr_t)host % (es ? es : 1)) == 0) {
        t->data = (void *)host;
        t->owns = 0;
        return MG_OK;
    }
    mg_code rc = cpu_alloc(be, t, err);
    if (rc != MG_OK)
        return rc;
    memcpy(t->data, host, t->nbytes);
    t->owns = 1;
    return MG_OK;
}

/* The BF16 convolutions need AVX512-BF16 at the kernel level in use; the
 * 8-bit attention caches the VNNI kernel for the shape. */
static void cpu_get_caps(mg_backend *be, mg_backend_caps *caps)
{
    mg_cpu_backend *cpu = (mg_cpu_backend *)be;
    caps->weight_dtype = cpu->weight_dtype;
    caps->matrix_layout = MG_CPU_MATRIX_LAYOUT;
    caps->lstm_bf16 = 1;
    caps->lstm_q8 = 1;
    caps->lstm_state = 1;
    caps->conv_bf16 = mg_cpu_conv_bf16_fits(be);
    caps->kv_bf16 = 1;
    caps->kv_q8row_fits = cpu->kv_q8row ? mg_cpu_attention_q8row_fits : NULL;
    caps->batched_encodec_cheap = 0;
}

static size_t cpu_matrix_nbytes(mg_backend *be, mg_dtype dt, int64_t rows, int64_t cols)
{
    return mg_cpu_matrix_nbytes(dt, rows, cols);
}

typedef struct {
    const float       *logits;
    int                rows, V;
    const mg_sampling *s;
    uint64_t           seed, step;
    float             *scores, *scratch; /* scratch: 2·V per row */
    int32_t           *tokens;
} select_ctx;

static void select_task(void *arg, int64_t r0, int64_t r1)
{
    const select_ctx *c = arg;
    for (int64_t r = r0; r < r1; r++)
        mg_select_token_row(c->logits, c->rows, (int)r, c->V, c->s, c->seed, c->step, c->scores,
                            c->tokens, c->scratch + 2 * r * c->V);
}

/* Rows in parallel: the scheduler thread samples between steps while the
 * workers would wait (each row draws from (seed, step, row) alone). */
static mg_code cpu_select_tokens(mg_backend *be, const mg_tensor *logits, int rows, int V,
                                 const mg_sampling *s, uint64_t seed, uint64_t step,
                                 float *scores, int32_t *tokens, mg_error *err)
{
    float *own = scores ? NULL : malloc((size_t)rows * (size_t)V * sizeof *own);
    float *scratch = malloc(2 * (size_t)rows * (size_t)V * sizeof *scratch + 1);
    if ((!scores && !own) || !scratch) {
        free(own);
        free(scratch);
        return mg_fail(err, MG_ERR_NOMEM, "cpu: out of memory for sampling");
    }
    select_ctx c = {.logits = mg_cpu_f32(logits), .rows = rows, .V = V, .s = s, .seed = seed,
                    .step = step, .scores = scores ? scores : own, .scratch = scratch,
                    .tokens = tokens};
    mg_cpu_parallel(be, rows, 1, select_task, &c);
    free(own);
    free(scratch);
    return MG_OK;
}

void mg_cpu_fail(mg_backend *be, mg_code code, const char *what)
{
    mg_cpu_backend *cpu = (mg_cpu_backend *)be;
    if (cpu->failed == MG_OK) {
        cpu->failed = code;
        cpu->failed_what = what;
    }
}

static mg_code cpu_sync(mg_backend *be, mg_error *err)
{
    mg_cpu_backend *cpu = (mg_cpu_backend *)be;
    mg_code rc = cpu->failed;
    if (rc == MG_OK)
        return MG_OK;
    cpu->failed = MG_OK;
    return mg_fail(err, rc, "cpu: %s: %s", cpu->failed_what,
                   rc == MG_ERR_NOMEM ? "out of memory" : mg_code_name(rc));
}

static void cpu_destroy(mg_backend *be)
{
    mg_cpu_backend *cpu = (mg_cpu_backend *)be;
    mg_cpu_pool_destroy(&cpu->pool);
    free(cpu->xbuf);
    free(cpu->conv_scratch);
    free(cpu);
}

static const mg_backend_ops cpu_ops = {
    .name = "cpu",
    .destroy = cpu_destroy,
    .get_caps = cpu_get_caps,
    .alloc = cpu_alloc,
    .release = cpu_release,
    .upload = cpu_upload,
    .download = cpu_download,
    .weight = cpu_weight,
    .sync = cpu_sync,
    .embed = mg_cpu_embed,
    .linear = mg_cpu_linear,
    .linear_many = mg_cpu_linear_many,
    .matrix_nbytes = cpu_matrix_nbytes,
    .add = mg_cpu_add,
    .scale_rows = mg_cpu_scale_rows,
    .rms_norm = mg_cpu_rms_norm,
    .layer_norm = mg_cpu_layer_norm,
    .relu = mg_cpu_relu,
    .gelu = mg_cpu_gelu,
    .elu = mg_cpu_elu,
    .attention = mg_cpu_attention,
    .copy_rows = mg_cpu_copy_rows,
    .copy_rows_scatter = mg_cpu_copy_rows_scatter,
    .conv1d = mg_cpu_conv1d,
    .conv_transpose1d = mg_cpu_conv_transpose1d,
    .pad_reflect = mg_cpu_pad_reflect,
    .conv1d_fused = mg_cpu_conv1d_fused,
    .pad_reflect_elu = mg_cpu_pad_reflect_elu,
    .transpose = mg_cpu_transpose,
    .lstm = mg_cpu_lstm,
    .select_tokens = cpu_select_tokens,
    .lstm_state = mg_cpu_lstm_state,
};

void mg_cpu_parallel(mg_backend *be, int64_t n, int64_t min_per_thread, mg_cpu_task_fn fn,
                     void *ctx)
{
    mg_cpu_pool_run(&((mg_cpu_backend *)be)->pool, n, min_per_thread, fn, ctx);
}

mg_code mg_backend_cpu_create(mg_backend **out, int n_threads, mg_dtype weight_dtype,
                              const mg_backend_options *opt, mg_error *err)
{
    *out = NULL;
    mg_backend_options defaults;
    if (!opt) {
        mg_backend_options_default(&defaults);
        opt = &defaults;
    }
    if (weight_dtype != MG_DT_F32 && weight_dtype != MG_DT_BF16 && weight_dtype != MG_DT_Q8)
        return mg_fail(err, MG_ERR_UNSUPPORTED, "cpu: matrix weights as %s are not implemented "
                       "(f32, bf16 or q8)", mg_dtype_name(weight_dtype));
    if (n_threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = n > 256 ? 256 : n > 0 ? (int)n : 1;
    }
    if (n_threads > 256)
        return mg_fail(err, MG_ERR_INVALID, "cpu: %d threads is too many (max 256)", n_threads);
    mg_cpu_backend *cpu = calloc(1, sizeof *cpu);
    if (!cpu)
        return mg_fail(err, MG_ERR_NOMEM, "cpu: out of memory");
    cpu->base.ops = &cpu_ops;
    cpu->base.n_threads = n_threads;
    cpu->weight_dtype = weight_dtype;
    cpu->kv_q8row = opt->kv_q8row;
    cpu->isa = mg_cpu_isa_default(opt->cpu_isa);
    mg_code rc = mg_cpu_pool_init(&cpu->pool, n_threads, err);
    if (rc != MG_OK) {
        free(cpu);
        return rc;
    }
    *out = &cpu->base;
    return MG_OK;
}

void mg_cpu_backend_set_isa(mg_backend *be, mg_cpu_isa isa)
{
    mg_cpu_isa hw = mg_cpu_isa_detect();
    ((mg_cpu_backend *)be)->isa = isa < hw ? isa : hw;
}

mg_cpu_isa mg_cpu_backend_isa(const mg_backend *be) { return ((const mg_cpu_backend *)be)->isa; }
