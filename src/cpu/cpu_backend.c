/* CPU backend: host memory, a persistent worker pool, and the op table. */
#include "cpu/cpu.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Memory is 64-byte aligned so SIMD kernels can use aligned loads on rows. */
static mg_code cpu_alloc(mg_backend *be, mg_tensor *t, mg_error *err)
{
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

/* Weights in a mmap'd file are used in place when aligned for their type. */
static mg_code cpu_weight(mg_backend *be, mg_tensor *t, const void *host, mg_weight_kind kind,
                          mg_error *err)
{
    (void)kind;
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

static mg_code cpu_select_tokens(mg_backend *be, const mg_tensor *logits, int rows, int V,
                                 const mg_sampling *s, uint64_t seed, uint64_t step,
                                 float *scores, int32_t *tokens, mg_error *err)
{
    float *own = scores ? NULL : malloc((size_t)rows * (size_t)V * sizeof *own);
    float *scratch = malloc(2 * (size_t)V * sizeof *scratch);
    if ((!scores && !own) || !scratch) {
        free(own);
        free(scratch);
        return mg_fail(err, MG_ERR_NOMEM, "cpu: out of memory for sampling");
    }
    mg_select_tokens(mg_cpu_f32(logits), rows, V, s, seed, step, scores ? scores : own, tokens,
                     scratch);
    free(own);
    free(scratch);
    return MG_OK;
}

static mg_code cpu_sync(mg_backend *be, mg_error *err) { return MG_OK; }

static void *pool_worker(void *arg);

static void cpu_destroy(mg_backend *be)
{
    mg_cpu_backend *cpu = (mg_cpu_backend *)be;
    mg_cpu_pool *p = &cpu->pool;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n_workers; i++)
        pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->done);
    free(p->threads);
    free(cpu);
}

static const mg_backend_ops cpu_ops = {
    .name = "cpu",
    .destroy = cpu_destroy,
    .alloc = cpu_alloc,
    .release = cpu_release,
    .upload = cpu_upload,
    .download = cpu_download,
    .weight = cpu_weight,
    .sync = cpu_sync,
    .embed = mg_cpu_embed,
    .linear = mg_cpu_linear,
    .add = mg_cpu_add,
    .scale_rows = mg_cpu_scale_rows,
    .rms_norm = mg_cpu_rms_norm,
    .layer_norm = mg_cpu_layer_norm,
    .relu = mg_cpu_relu,
    .gelu = mg_cpu_gelu,
    .elu = mg_cpu_elu,
    .attention = mg_cpu_attention,
    .copy_rows = mg_cpu_copy_rows,
    .conv1d = mg_cpu_conv1d,
    .conv_transpose1d = mg_cpu_conv_transpose1d,
    .pad_reflect = mg_cpu_pad_reflect,
    .transpose = mg_cpu_transpose,
    .lstm = mg_cpu_lstm,
    .select_tokens = cpu_select_tokens,
};

/* Worker i runs chunk i+1 of each generation; the caller runs chunk 0. */
typedef struct {
    mg_cpu_pool *pool;
    int          index;
} worker_arg;

static void run_chunk(mg_cpu_pool *p, int chunk)
{
    if (chunk >= p->n_chunks)
        return;
    int64_t per = p->n / p->n_chunks, extra = p->n % p->n_chunks;
    int64_t i0 = chunk * per + (chunk < extra ? chunk : extra);
    int64_t i1 = i0 + per + (chunk < extra ? 1 : 0);
    if (i1 > i0)
        p->fn(p->ctx, i0, i1);
}

static void *pool_worker(void *arg)
{
    worker_arg *wa = arg;
    mg_cpu_pool *p = wa->pool;
    int index = wa->index;
    free(wa);
    uint64_t seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->stop && p->generation == seen)
            pthread_cond_wait(&p->wake, &p->mu);
        if (p->stop)
            break;
        seen = p->generation;
        pthread_mutex_unlock(&p->mu);
        run_chunk(p, index + 1);
        pthread_mutex_lock(&p->mu);
        if (--p->pending == 0)
            pthread_cond_signal(&p->done);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

void mg_cpu_parallel(mg_backend *be, int64_t n, int64_t min_per_thread, mg_cpu_task_fn fn,
                     void *ctx)
{
    mg_cpu_pool *p = &((mg_cpu_backend *)be)->pool;
    int64_t chunks = min_per_thread > 0 ? n / min_per_thread : n;
    if (chunks > p->n_workers + 1)
        chunks = p->n_workers + 1;
    if (chunks <= 1 || p->n_workers == 0) {
        if (n > 0)
            fn(ctx, 0, n);
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->ctx = ctx;
    p->n = n;
    p->n_chunks = (int)chunks;
    p->pending = p->n_workers;
    p->generation++;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    run_chunk(p, 0);
    pthread_mutex_lock(&p->mu);
    while (p->pending > 0)
        pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}

mg_code mg_backend_cpu_create(mg_backend **out, int n_threads, mg_error *err)
{
    *out = NULL;
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
    mg_cpu_pool *p = &cpu->pool;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->done, NULL);
    p->threads = calloc((size_t)n_threads, sizeof *p->threads);
    if (!p->threads) {
        cpu_destroy(&cpu->base);
        return mg_fail(err, MG_ERR_NOMEM, "cpu: out of memory");
    }
    for (int i = 0; i < n_threads - 1; i++) {
        worker_arg *wa = malloc(sizeof *wa);
        if (!wa || (wa->pool = p, wa->index = i, pthread_create(&p->threads[i], NULL, pool_worker, wa)) != 0) {
            free(wa);
            cpu_destroy(&cpu->base);
            return mg_fail(err, MG_ERR_NOMEM, "cpu: cannot start worker thread %d", i);
        }
        p->n_workers++;
    }
    *out = &cpu->base;
    return MG_OK;
}
