/* spiece.model parser: just enough protobuf wire format for ModelProto.
 *
 * Wire format recap: a message is a sequence of (key, value) where key =
 * field_number << 3 | wire_type; wire type 0 = varint, 1 = 8 bytes, 2 = varint
 * length + bytes (strings, bytes, sub-messages), 5 = 4 bytes. Groups (3, 4)
 * are obsolete and rejected. Unknown fields are skipped; for a field that
 * appears twice the last value wins (protobuf's merge rule for scalars). */
#include "io/spm_model.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    const uint8_t *base;    /* start of the whole file, for error offsets */
    const uint8_t *p, *end;
} pb_reader;

typedef struct {
    uint32_t       field;
    int            wire;
    uint64_t       v;       /* wire 0, 1, 5 */
    const uint8_t *data;    /* wire 2 */
    size_t         len;
} pb_field;

static bool pb_varint(pb_reader *r, uint64_t *out)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (r->p >= r->end)
            return false;
        uint8_t b = *r->p++;
        if (shift == 63 && b > 1)   /* 10th byte may only carry bit 63 */
            return false;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return true;
        }
    }
    return false;
}

/* Reads the next field; false on anything malformed or running past the end. */
static bool pb_next(pb_reader *r, pb_field *f)
{
    uint64_t key;
    if (!pb_varint(r, &key))
        return false;
    uint64_t field = key >> 3;
    if (field == 0 || field > 0x1fffffff)
        return false;
    f->field = (uint32_t)field;
    f->wire = (int)(key & 7);
    f->data = NULL;
    f->len = 0;
    f->v = 0;
    switch (f->wire) {
    case 0:
        return pb_varint(r, &f->v);
    case 1:
    case 5: {
        size_t n = f->wire == 1 ? 8 : 4;
        if ((size_t)(r->end - r->p) < n)
            return false;
        for (size_t i = 0; i < n; i++)   /* little-endian on the wire */
            f->v |= (uint64_t)r->p[i] << (8 * i);
        r->p += n;
        return true;
    }
    case 2: {
        uint64_t n;
        if (!pb_varint(r, &n))
            return false;
        if (n > (uint64_t)(r->end - r->p))
            return false;
        f->data = r->p;
        f->len = (size_t)n;
        r->p += n;
        return true;
    }
    default:
        return false;
    }
}

static size_t pb_offset(const pb_reader *r) { return (size_t)(r->p - r->base); }

static mg_code malformed(const pb_reader *r, mg_error *err, const char *what)
{
    return mg_fail(err, MG_ERR_CORRUPT, "spiece.model: malformed %s near byte %zu", what,
                   pb_offset(r));
}

static mg_code wrong_wire(const pb_reader *r, mg_error *err, const char *what, const pb_field *f)
{
    return mg_fail(err, MG_ERR_CORRUPT,
                   "spiece.model: %s field %u has wire type %d near byte %zu", what, f->field,
                   f->wire, pb_offset(r));
}

static pb_reader sub_reader(const pb_reader *parent, const pb_field *f)
{
    pb_reader r = { parent->base, f->data, f->data + f->len };
    return r;
}

static float float_from_bits(uint32_t bits)
{
    float x;
    memcpy(&x, &bits, sizeof x);
    return x;
}

/* --- ModelProto.SentencePiece ------------------------------------------------ */

static mg_code parse_piece(pb_reader *r, spm_piece *out, char **arena, int index, mg_error *err)
{
    const uint8_t *str = NULL;
    size_t str_len = 0;
    float score = 0.0f;
    uint64_t type = SPM_NORMAL;
    pb_field f;
    while (r->p < r->end) {
        if (!pb_next(r, &f))
            return malformed(r, err, "piece");
        switch (f.field) {
        case 1:
            if (f.wire != 2) return wrong_wire(r, err, "piece", &f);
            str = f.data;
            str_len = f.len;
            break;
        case 2:
            if (f.wire != 5) return wrong_wire(r, err, "piece", &f);
            score = float_from_bits((uint32_t)f.v);
            break;
        case 3:
            if (f.wire != 0) return wrong_wire(r, err, "piece", &f);
            type = f.v;
            break;
        default:
            break;
        }
    }
    if (type < SPM_NORMAL || type > SPM_BYTE)
        return mg_fail(err, MG_ERR_CORRUPT, "spiece.model: piece %d has unknown type %llu", index,
                       (unsigned long long)type);
    if (str_len > UINT32_MAX)
        return mg_fail(err, MG_ERR_CORRUPT, "spiece.model: piece %d is too long", index);
    /* The arena was sized from the piece message lengths, which bound str_len. */
    char *dst = *arena;
    if (str_len)
        memcpy(dst, str, str_len);
    dst[str_len] = '\0';
    *arena += str_len + 1;
    out->str = dst;
    out->len = (uint32_t)str_len;
    out->score = score;
    out->type = (spm_piece_type)type;
    return MG_OK;
}

/* --- TrainerSpec ---------------------------------------------------------- */

static mg_code parse_trainer_spec(pb_reader *r, spm_model *m, mg_error *err)
{
    pb_field f;
    m->has_trainer_spec = true;
    while (r->p < r->end) {
        if (!pb_next(r, &f))
            return malformed(r, err, "trainer_spec");
        int32_t *id = NULL;
        bool *flag = NULL;
        switch (f.field) {
        case 3:  if (f.wire != 0) return wrong_wire(r, err, "trainer_spec", &f);
                 m->model_type = (int)(int32_t)(uint32_t)f.v;
                 break;
        case 24: flag = &m->treat_whitespace_as_suffix; break;
        case 35: flag = &m->byte_fallback; break;
        case 40: id = &m->unk_id; break;
        case 41: id = &m->bos_id; break;
        case 42: id = &m->eos_id; break;
        case 43: id = &m->pad_id; break;
        default: break;
        }
        if (flag || id) {
            if (f.wire != 0)
                return wrong_wire(r, err, "trainer_spec", &f);
            if (flag)
                *flag = f.v != 0;
            else    /* int32 on the wire: negative values are 10-byte varints, truncate */
                *id = (int32_t)(uint32_t)f.v;
        }
    }
    return MG_OK;
}

/* --- NormalizerSpec --------------------------------------------------------- */

typedef struct {
    const uint8_t *name, *charsmap;
    size_t         name_len, charsmap_len;
} normalizer_bytes;

static mg_code parse_normalizer_spec(pb_reader *r, spm_model *m, normalizer_bytes *nb,
                                     mg_error *err)
{
    pb_field f;
    while (r->p < r->end) {
        if (!pb_next(r, &f))
            return malformed(r, err, "normalizer_spec");
        bool *flag = NULL;
        switch (f.field) {
        case 1:
            if (f.wire != 2) return wrong_wire(r, err, "normalizer_spec", &f);
            nb->name = f.data;
            nb->name_len = f.len;
            break;
        case 2:
            if (f.wire != 2) return wrong_wire(r, err, "normalizer_spec", &f);
            nb->charsmap = f.data;
            nb->charsmap_len = f.len;
            break;
        case 3: flag = &m->add_dummy_prefix; break;
        case 4: flag = &m->remove_extra_whitespaces; break;
        case 5: flag = &m->escape_whitespaces; break;
        default: break;
        }
        if (flag) {
            if (f.wire != 0)
                return wrong_wire(r, err, "normalizer_spec", &f);
            *flag = f.v != 0;
        }
    }
    return MG_OK;
}

/* --- ModelProto --------------------------------------------------------------- */

static void set_defaults(spm_model *m)
{
    memset(m, 0, sizeof *m);
    m->add_dummy_prefix = true;
    m->remove_extra_whitespaces = true;
    m->escape_whitespaces = true;
    m->model_type = SPM_MODEL_UNIGRAM;
    m->unk_id = 0;
    m->bos_id = 1;
    m->eos_id = 2;
    m->pad_id = -1;
}

mg_code spm_model_parse(spm_model *m, const uint8_t *buf, size_t len, mg_error *err)
{
    set_defaults(m);
    if (!buf || len == 0)
        return mg_fail(err, MG_ERR_CORRUPT, "spiece.model: empty file");

    /* Pass 1: check the top-level framing, count pieces and bound their string bytes
     * (a piece string lies inside its piece message, so the message lengths bound it). */
    pb_reader top = { buf, buf, buf + len };
    pb_field f;
    size_t n_pieces = 0, arena_bytes = 0;
    while (top.p < top.end) {
        if (!pb_next(&top, &f))
            return malformed(&top, err, "ModelProto");
        if (f.field >= 1 && f.field <= 3 && f.wire != 2)
            return wrong_wire(&top, err, "ModelProto", &f);
        if (f.field == 1) {
            n_pieces++;
            arena_bytes += f.len + 1;
        }
    }
    if (n_pieces == 0)
        return mg_fail(err, MG_ERR_CORRUPT, "spiece.model: no pieces");
    if (n_pieces > (size_t)INT32_MAX / 2)
        return mg_fail(err, MG_ERR_CORRUPT, "spiece.model: too many pieces (%zu)", n_pieces);

    m->pieces = calloc(n_pieces, sizeof *m->pieces);
    m->strings = malloc(arena_bytes);
    if (!m->pieces || !m->strings) {
        spm_model_free(m);
        return mg_fail(err, MG_ERR_NOMEM, "spiece.model: out of memory for %zu pieces", n_pieces);
    }

    /* Pass 2: decode. */
    normalizer_bytes nb = { 0 };
    char *arena = m->strings;
    mg_code rc = MG_OK;
    top.p = buf;
    while (top.p < top.end && rc == MG_OK) {
        pb_next(&top, &f);   /* cannot fail: pass 1 walked the same bytes */
        if (f.field < 1 || f.field > 3)
            continue;        /* self_test_data, denormalizer_spec, unknown */
        pb_reader sub = sub_reader(&top, &f);
        switch (f.field) {
        case 1:
            rc = parse_piece(&sub, &m->pieces[m->n_pieces], &arena, m->n_pieces, err);
            m->n_pieces++;
            break;
        case 2: rc = parse_trainer_spec(&sub, m, err); break;
        case 3: rc = parse_normalizer_spec(&sub, m, &nb, err); break;
        default: break;
        }
    }
    if (rc != MG_OK) {
        spm_model_free(m);
        return rc;
    }

    m->normalizer_name = malloc(nb.name_len + 1);
    if (nb.charsmap_len)
        m->charsmap = malloc(nb.charsmap_len);
    if (!m->normalizer_name || (nb.charsmap_len && !m->charsmap)) {
        spm_model_free(m);
        return mg_fail(err, MG_ERR_NOMEM, "spiece.model: out of memory for normalizer_spec");
    }
    if (nb.name_len)
        memcpy(m->normalizer_name, nb.name, nb.name_len);
    m->normalizer_name[nb.name_len] = '\0';
    if (nb.charsmap_len)
        memcpy(m->charsmap, nb.charsmap, nb.charsmap_len);
    m->charsmap_len = nb.charsmap_len;
    return MG_OK;
}

void spm_model_free(spm_model *m)
{
    if (!m)
        return;
    free(m->pieces);
    free(m->strings);
    free(m->normalizer_name);
    free(m->charsmap);
    set_defaults(m);
}
