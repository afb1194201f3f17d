#include "io/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* The header length is an untrusted u64; anything beyond this is not a model. */
#define MG_ST_MAX_HEADER (100u << 20)

static const struct { const char *name; mg_dtype dt; size_t size; } dtypes[] = {
    {"F32", MG_DT_F32, 4},  {"F16", MG_DT_F16, 2}, {"BF16", MG_DT_BF16, 2},
    {"I64", MG_DT_I64, 8},  {"I32", MG_DT_I32, 4}, {"U8", MG_DT_U8, 1},
    {"BOOL", MG_DT_BOOL, 1},
};

size_t mg_dtype_size(mg_dtype dt)
{
    for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++)
        if (dtypes[i].dt == dt)
            return dtypes[i].size;
    return 0;
}

size_t mg_dtype_row_bytes(mg_dtype dt, int64_t cols)
{
    if (dt == MG_DT_Q8ROW)
        return cols % MG_Q8ROW_BLOCK ? 0 : (size_t)(cols + cols / MG_Q8ROW_BLOCK * 4);
    return (size_t)cols * mg_dtype_size(dt);
}

const char *mg_dtype_name(mg_dtype dt)
{
    for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++)
        if (dtypes[i].dt == dt)
            return dtypes[i].name;
    return dt == MG_DT_Q8 ? "Q8" : dt == MG_DT_Q8ROW ? "Q8ROW" : "unsupported";
}

int64_t mg_st_numel(const mg_st_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++)
        n *= t->shape[i];
    return n;
}

static int cmp_tensor(const void *a, const void *b)
{
    return strcmp(((const mg_st_tensor *)a)->name, ((const mg_st_tensor *)b)->name);
}

static void free_tensors(mg_safetensors *st)
{
    for (size_t i = 0; i < st->n; i++)
        free(st->tensors[i].name);
    free(st->tensors);
    st->tensors = NULL;
    st->n = 0;
}

/* One header entry: {"dtype": "...", "shape": [...], "data_offsets": [a, b]}. */
static mg_code parse_entry(mg_st_tensor *t, const char *name, json_t *v, const uint8_t *data,
                           size_t data_len, mg_error *err)
{
    if (!json_is_object(v))
        return mg_fail(err, MG_ERR_CORRUPT, "tensor '%s': header entry is not an object", name);
    const char *dt = json_string_value(json_object_get(v, "dtype"));
    json_t *shape = json_object_get(v, "shape"), *off = json_object_get(v, "data_offsets");
    if (!dt || !json_is_array(shape) || !json_is_array(off) || json_array_size(off) != 2)
        return mg_fail(err, MG_ERR_CORRUPT, "tensor '%s': needs dtype, shape and data_offsets[2]", name);
    t->dtype = MG_DT_OTHER;
    size_t esize = 0;
    for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++)
        if (!strcmp(dt, dtypes[i].name)) {
            t->dtype = dtypes[i].dt;
            esize = dtypes[i].size;
        }
    if (!esize)
        return mg_fail(err, MG_ERR_UNSUPPORTED, "tensor '%s': unsupported dtype '%s'", name, dt);
    if (json_array_size(shape) > MG_ST_MAX_DIMS)
        return mg_fail(err, MG_ERR_CORRUPT, "tensor '%s': more than %d dims", name, MG_ST_MAX_DIMS);
    t->ndim = (int)json_array_size(shape);
    uint64_t numel = 1;
    for (int i = 0; i < t->ndim; i++) {
        json_t *d = json_array_get(shape, (size_t)i);
        if (!json_is_integer(d) || json_integer_value(d) < 0 || json_integer_value(d) > (1LL << 40))
            return mg_fail(err, MG_ERR_CORRUPT, "tensor '%s': bad shape dim %d", name, i);
        t->shape[i] = json_integer_value(d);
        numel *= (uint64_t)t->shape[i];
        if (numel > (1ULL << 40))
            return mg_fail(err, MG_ERR_CORRUPT, "tensor '%s': absurd element count", name);
    }
    json_t *a = json_array_get(off, 0), *b = json_array_get(off, 1);
    if (!json_is_integer(a) || !json_is_integer(b))
        return mg_fail(err, MG_ERR_CORRUPT, "tensor '%s': data_offsets are not integers", name);
    json_int_t begin = json_integer_value(a), end = json_integer_value(b);
    if (begin < 0 || end < begin || (uint64_t)end > data_len)
        return mg_fail(err, MG_ERR_CORRUPT,
                       "tensor '%s': data_offsets [%lld, %lld] outside the %zu data bytes (truncated file?)",
                       name, (long long)begin, (long long)end, data_len);
    if ((uint64_t)(end - begin) != numel * esize)
        return mg_fail(err, MG_ERR_CORRUPT, "tensor '%s': %lld bytes for %llu elements of %s", name,
                       (long long)(end - begin), (unsigned long long)numel, dt);
    t->data = data + begin;
    t->nbytes = (size_t)(end - begin);
    return MG_OK;
}

mg_code mg_st_parse(mg_safetensors *st, const uint8_t *buf, size_t len, mg_error *err)
{
    memset(st, 0, sizeof *st);
    if (len < 8)
        return mg_fail(err, MG_ERR_CORRUPT, "safetensors: file of %zu bytes has no header", len);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = (hlen << 8) | buf[i];
    if (hlen < 2 || hlen > MG_ST_MAX_HEADER || hlen > len - 8)
        return mg_fail(err, MG_ERR_CORRUPT,
                       "safetensors: header length %llu does not fit the %zu-byte file",
                       (unsigned long long)hlen, len);
    json_error_t jerr;
    json_t *root = json_loadb((const char *)buf + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return mg_fail(err, MG_ERR_CORRUPT, "safetensors: header is not JSON (%s at byte %d)",
                       jerr.text, jerr.position);
    if (!json_is_object(root)) {
        json_decref(root);
        return mg_fail(err, MG_ERR_CORRUPT, "safetensors: header is not a JSON object");
    }
    const uint8_t *data = buf + 8 + hlen;
    size_t data_len = len - 8 - (size_t)hlen;
    size_t cap = json_object_size(root);
    st->tensors = calloc(cap ? cap : 1, sizeof *st->tensors);
    if (!st->tensors) {
        json_decref(root);
        return mg_fail(err, MG_ERR_NOMEM, "safetensors: out of memory for %zu tensors", cap);
    }
    const char *key;
    json_t *v;
    mg_code rc = MG_OK;
    json_object_foreach(root, key, v) {
        if (!strcmp(key, "__metadata__"))
            continue;
        mg_st_tensor *t = &st->tensors[st->n];
        if ((rc = parse_entry(t, key, v, data, data_len, err)) != MG_OK)
            break;
        if (!(t->name = strdup(key))) {
            rc = mg_fail(err, MG_ERR_NOMEM, "safetensors: out of memory");
            break;
        }
        st->n++;
    }
    json_decref(root);
    if (rc != MG_OK) {
        free_tensors(st);
        return rc;
    }
    qsort(st->tensors, st->n, sizeof *st->tensors, cmp_tensor);
    st->buf = buf;
    st->len = len;
    return MG_OK;
}

mg_code mg_st_open(mg_safetensors *st, const char *path, mg_error *err)
{
    memset(st, 0, sizeof *st);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return mg_fail(err, errno == ENOENT ? MG_ERR_NOT_FOUND : MG_ERR_IO, "%s: %s", path,
                       strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return mg_fail(err, MG_ERR_IO, "%s: not a regular file", path);
    }
    size_t len = (size_t)sb.st_size;
    void *map = len ? mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0) : MAP_FAILED;
    int map_errno = errno;
    close(fd);
    if (map == MAP_FAILED) {
        if (!len)
            return mg_fail(err, MG_ERR_CORRUPT, "%s: empty file", path);
        return mg_fail(err, MG_ERR_IO, "%s: mmap: %s", path, strerror(map_errno));
    }
    mg_code rc = mg_st_parse(st, map, len, err);
    if (rc != MG_OK) {
        munmap(map, len);
        return mg_fail_context(err, "%s", path);
    }
    st->mapped = 1;
    st->dev = (uint64_t)sb.st_dev;
    st->ino = (uint64_t)sb.st_ino;
    st->size = (uint64_t)sb.st_size;
    st->uid = (uint64_t)sb.st_uid;
    st->mode = (uint64_t)sb.st_mode;
    st->mtime_ns = (int64_t)sb.st_mtim.tv_sec * 1000000000LL + sb.st_mtim.tv_nsec;
    if (!(st->path = strdup(path))) {
        mg_st_close(st);
        return mg_fail(err, MG_ERR_NOMEM, "%s: out of memory", path);
    }
    return MG_OK;
}

void mg_st_close(mg_safetensors *st)
{
    free_tensors(st);
    if (st->mapped && st->buf)
        munmap((void *)st->buf, st->len);
    free(st->path);
    memset(st, 0, sizeof *st);
}

const mg_st_tensor *mg_st_find(const mg_safetensors *st, const char *name)
{
    size_t lo = 0, hi = st->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(st->tensors[mid].name, name);
        if (!c)
            return &st->tensors[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

float mg_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13);
    } else if (exp == 0) {
        if (!man) {
            bits = sign;
        } else { /* subnormal: renormalise */
            int e = -1;
            do { man <<= 1; e++; } while (!(man & 0x400));
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ff) << 13);
        }
    } else {
        bits = sign | ((exp + 112) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

float mg_bf16_to_f32(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t mg_f32_to_bf16(float f)
{
    uint32_t bits;
    memcpy(&bits, &f, 4);
    if ((bits & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((bits >> 16) | 0x40); /* quiet NaN */
    bits += 0x7fff + ((bits >> 16) & 1);       /* round to nearest even */
    return (uint16_t)(bits >> 16);
}

uint16_t mg_f32_to_f16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000, ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u)
        return (uint16_t)(sign | 0x7c00 | (ax > 0x7f800000u ? 0x200 : 0));
    if (ax >= 0x477ff000u) /* rounds to >= 65520: overflow to inf */
        return (uint16_t)(sign | 0x7c00);
    if (ax < 0x38800000u) { /* f16 subnormal: m * 2^-24 */
        if (ax < 0x33000000u)
            return (uint16_t)sign;
        uint32_t man = (ax & 0x7fffff) | 0x800000;
        int drop = 126 - (int)(ax >> 23);
        uint32_t half = 1u << (drop - 1), low = man & ((1u << drop) - 1), r = man >> drop;
        if (low > half || (low == half && (r & 1)))
            r++;
        return (uint16_t)(sign | r);
    }
    uint32_t r = ((ax >> 13) - (112u << 10));
    uint32_t low = ax & 0x1fff;
    if (low > 0x1000 || (low == 0x1000 && (r & 1)))
        r++;
    return (uint16_t)(sign | r);
}

void mg_st_to_f32(const mg_st_tensor *t, float *dst)
{
    size_t n = (size_t)mg_st_numel(t);
    const uint8_t *p = t->data;
    for (size_t i = 0; i < n; i++) {
        switch (t->dtype) {
        case MG_DT_F32: { float v; memcpy(&v, p + 4 * i, 4); dst[i] = v; break; }
        case MG_DT_F16: { uint16_t h; memcpy(&h, p + 2 * i, 2); dst[i] = mg_f16_to_f32(h); break; }
        case MG_DT_BF16: { uint16_t h; memcpy(&h, p + 2 * i, 2); dst[i] = mg_bf16_to_f32(h); break; }
        case MG_DT_I64: { int64_t v; memcpy(&v, p + 8 * i, 8); dst[i] = (float)v; break; }
        case MG_DT_I32: { int32_t v; memcpy(&v, p + 4 * i, 4); dst[i] = (float)v; break; }
        default: dst[i] = p[i]; break;
        }
    }
}

mg_code mg_st_to_i64(const mg_st_tensor *t, int64_t *dst, mg_error *err)
{
    size_t n = (size_t)mg_st_numel(t);
    if (t->dtype == MG_DT_I64) {
        memcpy(dst, t->data, n * 8);
    } else if (t->dtype == MG_DT_I32) {
        for (size_t i = 0; i < n; i++) {
            int32_t v;
            memcpy(&v, t->data + 4 * i, 4);
            dst[i] = v;
        }
    } else {
        return mg_fail(err, MG_ERR_INVALID, "tensor '%s' is %s, not an integer tensor", t->name,
                       mg_dtype_name(t->dtype));
    }
    return MG_OK;
}
