/* Writing SentencePiece model files (sentencepiece_model.proto ModelProto,
 * hand-rolled protobuf encoding) and a small synthetic English/music
 * vocabulary for tests and random models when the real T5 spiece.model is
 * not at hand. */
#ifndef MG_SPM_WRITE_H
#define MG_SPM_WRITE_H
#include <stddef.h>
#include <stdint.h>
#include "base/error.h"

/* ModelProto.SentencePiece.Type values. */
typedef enum {
    MG_SPM_NORMAL = 1,
    MG_SPM_UNKNOWN = 2,
    MG_SPM_CONTROL = 3,
    MG_SPM_USER_DEFINED = 4,
    MG_SPM_UNUSED = 5,
    MG_SPM_BYTE = 6
} mg_spm_type;

typedef struct {
    const char *piece;   /* UTF-8, "\xe2\x96\x81" (U+2581) stands for a space */
    float       score;   /* log probability used by the unigram Viterbi */
    mg_spm_type type;
} mg_spm_piece;

typedef struct {
    const char *normalizer_name;  /* e.g. "identity"; no precompiled charsmap is written */
    int add_dummy_prefix, remove_extra_whitespaces, escape_whitespaces;
    int unk_id, bos_id, eos_id, pad_id;  /* -1 = none */
} mg_spm_spec;

/* T5's special ids (pad 0, eos 1, unk 2, no bos) and the identity normalizer
 * with dummy prefix, whitespace cleanup and escaping all on. */
mg_spm_spec mg_spm_default_spec(void);

/* Serialises a unigram ModelProto into a malloc'd buffer (*out, *out_len). */
mg_code mg_spm_encode(const mg_spm_piece *pieces, size_t n, const mg_spm_spec *spec,
                      uint8_t **out, size_t *out_len, mg_error *err);

/* The synthetic vocabulary: <pad> 0, </s> 1, <unk> 2, "\xe2\x96\x81" 3, then
 * single characters (letters, digits, punctuation; each bare and with the
 * space prefix) and a few hundred common English/music words with the space
 * prefix, scores decreasing with the id. */
mg_code mg_spm_synthetic(uint8_t **out, size_t *out_len, mg_error *err);
/* mg_spm_synthetic written to path. */
mg_code mg_spm_write_synthetic(const char *path, mg_error *err);
#endif
