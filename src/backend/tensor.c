#include "backend/backend.h"
#include "io/safetensors.h"

#include <stdlib.h>
#include <string.h>

int64_t mg_tensor_numel(const mg_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++)
        n *= t->ne[i];
    return n;
}

int64_t mg_tensor_cols(const mg_tensor *t) { return t->ndim ? t->ne[t->ndim - 1] : 1; }

int64_t mg_tensor_rows(const mg_tensor *t)
{
    return mg_tensor_numel(t) / (mg_tensor_cols(t) ? mg_tensor_cols(t) : 1);
}

mg_code mg_tensor_new(mg_tensor **out, mg_backend *be, mg_dtype dt, int ndim,
                      const int64_t *ne, mg_error *err)
{
    *out = NULL;
    if (ndim < 1 || ndim > MG_MAX_DIMS)
        return mg_fail(err, MG_ERR_INVALID, "tensor: %d dims", ndim);
    mg_tensor *t = calloc(1, sizeof *t);
    if (!t)
        return mg_fail(err, MG_ERR_NOMEM, "tensor: out of memory");
    t->be = be;
    t->dtype = dt;
    t->ndim = ndim;
    memcpy(t->ne, ne, (size_t)ndim * sizeof *ne);
    t->nbytes = (size_t)mg_tensor_numel(t) * mg_dtype_size(dt);
    if (dt == MG_DT_Q8ROW) {
        int64_t cols = mg_tensor_cols(t);
        size_t rb = mg_dtype_row_bytes(dt, cols);
        if (rb == 0) {
            free(t);
            return mg_fail(err, MG_ERR_INVALID, "tensor: Q8ROW rows of %lld values (not a multiple of %d)",
                           (long long)cols, MG_Q8ROW_BLOCK);
        }
        t->nbytes = (size_t)mg_tensor_rows(t) * rb;
    }
    mg_code rc = be->ops->alloc(be, t, err);
    if (rc != MG_OK) {
        free(t);
        return rc;
    }
    t->owns = 1;
    *out = t;
    return MG_OK;
}

mg_code mg_tensor_new2(mg_tensor **out, mg_backend *be, int64_t rows, int64_t cols,
                       mg_error *err)
{
    int64_t ne[2] = {rows, cols};
    return mg_tensor_new(out, be, MG_DT_F32, 2, ne, err);
}

void mg_tensor_free(mg_tensor *t)
{
    if (!t)
        return;
    if (t->owns && t->be)
        t->be->ops->release(t->be, t);
    free(t);
}

mg_tensor mg_tensor_rows_view(const mg_tensor *t, int64_t row0, int64_t n)
{
    mg_tensor v = *t;
    int64_t cols = mg_tensor_cols(t);
    size_t rb = mg_dtype_row_bytes(t->dtype, cols);
    v.ndim = 2;
    v.ne[0] = n;
    v.ne[1] = cols;
    v.data = (char *)t->data + (size_t)row0 * rb;
    v.nbytes = (size_t)n * rb;
    v.owns = 0;
    return v;
}

mg_tensor mg_tensor_reshape2(const mg_tensor *t, int64_t rows, int64_t cols)
{
    mg_tensor v = *t;
    v.ndim = 2;
    v.ne[0] = rows;
    v.ne[1] = cols;
    v.owns = 0;
    return v;
}

mg_code mg_tensor_upload_f32(mg_tensor *t, const float *host, mg_error *err)
{
    return t->be->ops->upload(t->be, t, 0, host, t->nbytes, err);
}

mg_code mg_tensor_download_f32(const mg_tensor *t, float *host, mg_error *err)
{
    return t->be->ops->download(t->be, t, 0, host, t->nbytes, err);
}

void mg_copy_row_blocks(mg_backend *be, mg_tensor *dst, int64_t dst_row, int64_t dst_step,
                        const mg_tensor *src, int64_t src_row, int64_t src_step, int64_t n,
                        int64_t count)
{
    if (be->ops->copy_rows_strided) {
        be->ops->copy_rows_strided(be, dst, dst_row, dst_step, src, src_row, src_step, n, count);
        return;
    }
    for (int64_t i = 0; i < count; i++)
        be->ops->copy_rows(be, dst, dst_row + i * dst_step, src, src_row + i * src_step, n);
}

void mg_copy_rows_scatter(mg_backend *be, mg_tensor *const *dst, const int64_t *dst_rows,
                          const mg_tensor *src, const int64_t *src_rows, int n)
{
    if (be->ops->copy_rows_scatter) {
        be->ops->copy_rows_scatter(be, dst, dst_rows, src, src_rows, n);
        return;
    }
    for (int i = 0; i < n; i++)
        be->ops->copy_rows(be, dst[i], dst_rows[i], src, src_rows[i], 1);
}

void mg_linear_many(mg_backend *be, int n, mg_tensor *const *y, const mg_tensor *x,
                    const mg_tensor *const *w)
{
    if (be->ops->linear_many) {
        be->ops->linear_many(be, n, y, x, w);
        return;
    }
    for (int i = 0; i < n; i++)
        be->ops->linear(be, y[i], x, w[i], NULL);
}

mg_code mg_select_tokens_many(mg_backend *be, int n, const mg_select_call *calls, int V,
                              mg_error *err)
{
    if (be->ops->select_tokens_many)
        return be->ops->select_tokens_many(be, n, calls, V, err);
    for (int i = 0; i < n; i++) {
        const mg_select_call *c = &calls[i];
        mg_code rc = be->ops->select_tokens(be, c->logits, c->rows, V, c->s, c->seed, c->step,
                                            NULL, c->tokens, err);
        if (rc != MG_OK)
            return rc;
    }
    return MG_OK;
}
