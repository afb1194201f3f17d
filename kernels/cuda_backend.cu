/* CUDA backend: device memory, weight upload (bf16 or f32 matrices), the
 * staging ring for host metadata, error recording, and the op table. */
#include "cuda_backend.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { STAGE_BYTES = 8 << 20, CONVERT_CHUNK = 16 << 20 /* floats per bf16 upload pass */ };

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

void *cu_stage(mg_cuda_backend *cb, const void *host, size_t n)
{
    size_t need = (n + 255) & ~(size_t)255;
    if (need > cb->stage_cap) {
        cu_fail(cb, "cuda: %zu bytes of host metadata exceed the %zu-byte staging ring", n,
                cb->stage_cap);
        return NULL;
    }
    if (cb->stage_off + need > cb->stage_cap) {
        /* every earlier slice has been consumed once the stream is idle */
        if (cu_check(cb, cudaStreamSynchronize(cb->stream), "staging ring drain"))
            return NULL;
        cb->stage_off = 0;
    }
    char *h = cb->stage_host + cb->stage_off, *d = cb->stage_dev + cb->stage_off;
    cb->stage_off += need;
    memcpy(h, host, n);
    if (cu_check(cb, cudaMemcpyAsync(d, h, n, cudaMemcpyHostToDevice, cb->stream), "staging copy"))
        return NULL;
    return d;
}

void *cu_scratch(mg_cuda_backend *cb, int which, size_t n)
{
    void **p = &cb->scratch[which];
    size_t *cap = &cb->scratch_cap[which];
    if (n <= *cap && *p)
        return *p;
    /* the old buffer may still be read by queued kernels */
    if (*p) {
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
    cudaFree(t->data); /* waits for queued work that may still use it */
    t->data = NULL;
}

static mg_code cu_pending_error(mg_cuda_backend *cb, mg_error *err)
{
    if (!cb->failed)
        return MG_OK;
    cb->failed = 0;
    return mg_fail(err, MG_ERR_DEVICE, "%s", cb->fail_msg);
}

static mg_code cu_upload(mg_backend *be, mg_tensor *t, size_t off, const void *host, size_t n,
                         mg_error *err)
{
    mg_cuda_backend *cb = cu_of(be);
    cu_enter(cb);
    if (off > t->nbytes || n > t->nbytes - off)
        return mg_fail(err, MG_ERR_INVALID, "cuda: upload of %zu bytes at %zu into %zu", n, off,
                       t->nbytes);
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
    cu_check(cb, cudaStreamSynchronize(cb->stream), "sync");
    return cu_pending_error(cb, err);
}

__global__ void copy_kernel(float *dst, const float *src, int64_t n)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        dst[i] = src[i];
}

static void cu_copy_rows(mg_backend *be, mg_tensor *dst, int64_t dst_row, const mg_tensor *src,
                         int64_t src_row, int64_t n)
{
    mg_cuda_backend *cb = cu_of(be);
    cu_enter(cb);
    int64_t cols = mg_tensor_cols(src);
    if (n <= 0)
        return;
    cu_check(cb, cudaMemcpyAsync(cu_f32(dst) + dst_row * cols, cu_f32(src) + src_row * cols,
                                 (size_t)(n * cols) * sizeof(float), cudaMemcpyDeviceToDevice,
                                 cb->stream), "copy_rows");
}

static void cu_copy_rows_strided(mg_backend *be, mg_tensor *dst, int64_t dst_row,
                                 int64_t dst_step, const mg_tensor *src, int64_t src_row,
                                 int64_t src_step, int64_t n, int64_t count)
{
    mg_cuda_backend *cb = cu_of(be);
    cu_enter(cb);
    size_t row = (size_t)mg_tensor_cols(src) * sizeof(float);
    if (n <= 0 || count <= 0)
        return;
    cu_check(cb, cudaMemcpy2DAsync((char *)dst->data + (size_t)dst_row * row, (size_t)dst_step * row,
                                   (const char *)src->data + (size_t)src_row * row,
                                   (size_t)src_step * row, (size_t)n * row, (size_t)count,
                                   cudaMemcpyDeviceToDevice, cb->stream), "copy_rows_strided");
}

static void cu_destroy(mg_backend *be)
{
    mg_cuda_backend *cb = cu_of(be);
    cu_enter(cb);
    if (cb->stream)
        cudaStreamSynchronize(cb->stream);
    for (int i = 0; i < 4; i++)
        cudaFree(cb->scratch[i]);
    cudaFree(cb->stage_dev);
    cudaFree(cb->tokens_dev);
    cudaFreeHost(cb->stage_host);
    cudaFreeHost(cb->tokens_host);
    if (cb->stream)
        cudaStreamDestroy(cb->stream);
    free(cb);
}

static const mg_backend_ops cuda_ops = {
    /* .name */ "cuda",
    /* .destroy */ cu_destroy,
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
                                          mg_error *err)
{
    *out = NULL;
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
    cudaError_t e = cudaSetDevice(device);
    int smem = 0;
    if (e == cudaSuccess)
        e = cudaDeviceGetAttribute(&cb->sm_count, cudaDevAttrMultiProcessorCount, device);
    if (e == cudaSuccess)
        e = cudaDeviceGetAttribute(&smem, cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
    cb->smem_optin = (size_t)smem;
    if (e == cudaSuccess)
        e = cudaStreamCreateWithFlags(&cb->stream, cudaStreamNonBlocking);
    if (e == cudaSuccess)
        e = cudaMallocHost((void **)&cb->stage_host, cb->stage_cap);
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
