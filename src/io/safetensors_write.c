/* fallocate() (Linux); the engine is also compiled by nginx's build, without -D_GNU_SOURCE */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "io/safetensors_write.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct mg_stw {
    json_t  *meta;        /* the "__metadata__" object */
    json_t  *tensors;     /* name -> {dtype, shape, data_offsets}, in insertion order */
    uint64_t data_bytes;  /* sum of all declared tensor sizes */
    uint64_t written;     /* data bytes written so far */
    uint64_t header_len;  /* padded header length, known after begin */
    FILE    *f;
    char    *path;
};

static const struct { const char *name; size_t size; } dtypes[] = {
    {"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8}, {"I32", 4},
    {"I16", 2}, {"I8", 1}, {"U64", 8}, {"U32", 4}, {"U16", 2}, {"U8", 1}, {"BOOL", 1},
};

size_t mg_stw_dtype_size(const char *dtype)
{
    if (!dtype)
        return 0;
    for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++)
        if (strcmp(dtypes[i].name, dtype) == 0)
            return dtypes[i].size;
    return 0;
}

mg_stw *mg_stw_new(mg_error *err)
{
    mg_stw *w = calloc(1, sizeof *w);
    if (!w) {
        mg_fail(err, MG_ERR_NOMEM, "safetensors writer: out of memory");
        return NULL;
    }
    w->meta = json_object();
    w->tensors = json_object();
    if (!w->meta || !w->tensors || json_object_set_new(w->meta, "format", json_string("pt"))) {
        mg_stw_free(w);
        mg_fail(err, MG_ERR_NOMEM, "safetensors writer: out of memory");
        return NULL;
    }
    return w;
}

void mg_stw_free(mg_stw *w)
{
    if (!w)
        return;
    if (w->f)
        fclose(w->f);
    json_decref(w->meta);
    json_decref(w->tensors);
    free(w->path);
    free(w);
}

mg_code mg_stw_set_metadata(mg_stw *w, const char *key, const char *value, mg_error *err)
{
    if (w->f)
        return mg_fail(err, MG_ERR_INVALID, "safetensors writer: metadata after begin");
    json_t *v = json_string(value);
    if (!v)
        return mg_fail(err, MG_ERR_INVALID, "safetensors writer: metadata %s is not UTF-8", key);
    if (json_object_set_new(w->meta, key, v))
        return mg_fail(err, MG_ERR_NOMEM, "safetensors writer: out of memory");
    return MG_OK;
}

/* {"dtype":..., "shape":[...], "data_offsets":[a,b]} or NULL on allocation failure. */
static json_t *tensor_entry(const char *dtype, int ndim, const int64_t *dims, uint64_t a,
                            uint64_t b)
{
    json_t *e = json_object(), *shape = json_array(), *offs = json_array();
    if (!e || !shape || !offs)
        goto fail;
    for (int i = 0; i < ndim; i++)
        if (json_array_append_new(shape, json_integer(dims[i])))
            goto fail;
    if (json_array_append_new(offs, json_integer((json_int_t)a)) ||
        json_array_append_new(offs, json_integer((json_int_t)b)))
        goto fail;
    if (json_object_set_new(e, "dtype", json_string(dtype)))
        goto fail;
    /* set_new takes our reference even when it fails */
    json_t *s = shape;
    shape = NULL;
    if (json_object_set_new(e, "shape", s))
        goto fail;
    json_t *o = offs;
    offs = NULL;
    if (json_object_set_new(e, "data_offsets", o))
        goto fail;
    return e;
fail:
    json_decref(e);
    json_decref(shape);
    json_decref(offs);
    return NULL;
}

mg_code mg_stw_add(mg_stw *w, const char *name, const char *dtype, int ndim,
                   const int64_t *dims, mg_error *err)
{
    if (w->f)
        return mg_fail(err, MG_ERR_INVALID, "safetensors writer: tensor %s added after begin",
                       name);
    size_t esize = mg_stw_dtype_size(dtype);
    if (!esize)
        return mg_fail(err, MG_ERR_INVALID, "safetensors writer: tensor %s: unknown dtype %s",
                       name, dtype ? dtype : "(null)");
    if (ndim < 0 || ndim > MG_STW_MAX_DIMS)
        return mg_fail(err, MG_ERR_INVALID, "safetensors writer: tensor %s: %d dims", name, ndim);
    if (!name[0] || strcmp(name, "__metadata__") == 0)
        return mg_fail(err, MG_ERR_INVALID, "safetensors writer: bad tensor name \"%s\"", name);
    if (json_object_get(w->tensors, name))
        return mg_fail(err, MG_ERR_INVALID, "safetensors writer: duplicate tensor %s", name);

    uint64_t bytes = esize;
    for (int i = 0; i < ndim; i++) {
        if (dims[i] < 0)
            return mg_fail(err, MG_ERR_INVALID, "safetensors writer: tensor %s: negative dim",
                           name);
        if (dims[i] && bytes > (UINT64_MAX >> 2) / (uint64_t)dims[i])
            return mg_fail(err, MG_ERR_INVALID, "safetensors writer: tensor %s too large", name);
        bytes *= (uint64_t)dims[i];
    }
    if (w->data_bytes > (UINT64_MAX >> 2) - bytes)
        return mg_fail(err, MG_ERR_INVALID, "safetensors writer: file too large");

    json_t *e = tensor_entry(dtype, ndim, dims, w->data_bytes, w->data_bytes + bytes);
    if (!e)
        return mg_fail(err, MG_ERR_NOMEM, "safetensors writer: out of memory");
    if (json_object_set_new(w->tensors, name, e))
        return mg_fail(err, MG_ERR_INVALID, "safetensors writer: tensor name %s is not UTF-8",
                       name);
    w->data_bytes += bytes;
    return MG_OK;
}

/* The header text, unpadded (malloc'd), or NULL on allocation failure. */
static char *header_json(const mg_stw *w)
{
    json_t *root = json_object();
    if (!root)
        return NULL;
    char *text = NULL;
    if (json_object_set(root, "__metadata__", w->meta) == 0 &&
        json_object_update(root, w->tensors) == 0)
        text = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(root);
    return text;
}

uint64_t mg_stw_file_size(const mg_stw *w)
{
    char *text = header_json(w);
    if (!text)
        return 0;
    uint64_t n = (strlen(text) + 7) / 8 * 8;
    free(text);
    return 8 + n + w->data_bytes;
}

mg_code mg_stw_begin(mg_stw *w, const char *path, mg_error *err)
{
    if (w->f)
        return mg_fail(err, MG_ERR_INVALID, "safetensors writer: begin called twice");
    char *text = header_json(w);
    if (!text)
        return mg_fail(err, MG_ERR_NOMEM, "safetensors writer: out of memory");
    size_t len = strlen(text);
    size_t padded = (len + 7) / 8 * 8;  /* keeps the data 8-byte aligned */

    w->path = strdup(path);
    if (!w->path) {
        free(text);
        return mg_fail(err, MG_ERR_NOMEM, "safetensors writer: out of memory");
    }
    w->f = fopen(path, "wb");
    if (!w->f) {
        free(text);
        return mg_fail(err, MG_ERR_IO, "cannot create %s: %s", path, strerror(errno));
    }
    /* Reserving the whole file up front finds a full disk before gigabytes are
     * generated, and makes the filesystem's block allocation cheaper. Where the
     * filesystem cannot do it, writing works all the same. */
    if (fallocate(fileno(w->f), 0, 0, (off_t)(8 + padded + w->data_bytes)) != 0 &&
        (errno == ENOSPC || errno == EFBIG)) {
        int e = errno;
        free(text);
        return mg_fail(err, MG_ERR_IO, "cannot write %s (%llu bytes): %s", path,
                       (unsigned long long)(8 + padded + w->data_bytes), strerror(e));
    }
    uint8_t lenbuf[8];
    for (int i = 0; i < 8; i++)
        lenbuf[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    int ok = fwrite(lenbuf, 1, 8, w->f) == 8 && fwrite(text, 1, len, w->f) == len;
    for (size_t i = len; ok && i < padded; i++)
        ok = fputc(' ', w->f) != EOF;
    free(text);
    if (!ok)
        return mg_fail(err, MG_ERR_IO, "writing %s: %s", path, strerror(errno));
    w->header_len = padded;
    w->written = 0;
    return MG_OK;
}

mg_code mg_stw_write(mg_stw *w, const void *data, size_t bytes, mg_error *err)
{
    if (!w->f)
        return mg_fail(err, MG_ERR_INVALID, "safetensors writer: write before begin");
    if (bytes > w->data_bytes - w->written)
        return mg_fail(err, MG_ERR_INVALID,
                       "safetensors writer: %s: %zu bytes past the declared tensors", w->path,
                       bytes);
    if (bytes && fwrite(data, 1, bytes, w->f) != bytes)
        return mg_fail(err, MG_ERR_IO, "writing %s: %s", w->path, strerror(errno));
    w->written += bytes;
    return MG_OK;
}

mg_code mg_stw_finish(mg_stw *w, mg_error *err)
{
    if (!w->f)
        return mg_fail(err, MG_ERR_INVALID, "safetensors writer: finish before begin");
    if (w->written != w->data_bytes)
        return mg_fail(err, MG_ERR_INVALID,
                       "safetensors writer: %s: %llu of %llu data bytes written", w->path,
                       (unsigned long long)w->written, (unsigned long long)w->data_bytes);
    int bad = fflush(w->f) != 0 || ferror(w->f);
    int saved = errno;
    bad |= fclose(w->f) != 0;
    w->f = NULL;
    if (bad)
        return mg_fail(err, MG_ERR_IO, "writing %s: %s", w->path, strerror(saved ? saved : errno));
    return MG_OK;
}

mg_code mg_safetensors_write_file(const char *path, size_t n, const char *const *names,
                                  const char *const *dtypes_, const mg_stw_shape *shapes,
                                  const void *const *datas, mg_error *err)
{
    mg_stw *w = mg_stw_new(err);
    if (!w)
        return err ? err->code : MG_ERR_NOMEM;
    mg_code rc = MG_OK;
    for (size_t i = 0; i < n && rc == MG_OK; i++)
        rc = mg_stw_add(w, names[i], dtypes_[i], shapes[i].ndim, shapes[i].dim, err);
    if (rc == MG_OK)
        rc = mg_stw_begin(w, path, err);
    for (size_t i = 0; i < n && rc == MG_OK; i++) {
        uint64_t bytes = mg_stw_dtype_size(dtypes_[i]);
        for (int d = 0; d < shapes[i].ndim; d++)
            bytes *= (uint64_t)shapes[i].dim[d];
        rc = mg_stw_write(w, datas[i], (size_t)bytes, err);
    }
    if (rc == MG_OK)
        rc = mg_stw_finish(w, err);
    mg_stw_free(w);
    return rc;
}

mg_code mg_safetensors_write_raw(const char *path, uint64_t length_field, const char *header,
                                 const void *data, size_t data_bytes, mg_error *err)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return mg_fail(err, MG_ERR_IO, "cannot create %s: %s", path, strerror(errno));
    uint8_t lenbuf[8];
    for (int i = 0; i < 8; i++)
        lenbuf[i] = (uint8_t)(length_field >> (8 * i));
    size_t hlen = header ? strlen(header) : 0;
    int ok = fwrite(lenbuf, 1, 8, f) == 8 && (hlen == 0 || fwrite(header, 1, hlen, f) == hlen) &&
             (data_bytes == 0 || fwrite(data, 1, data_bytes, f) == data_bytes);
    ok &= fflush(f) == 0;
    int saved = errno;
    ok &= fclose(f) == 0;
    if (!ok)
        return mg_fail(err, MG_ERR_IO, "writing %s: %s", path, strerror(saved ? saved : errno));
    return MG_OK;
}
