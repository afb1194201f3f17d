/* SentencePiece model file (spiece.model, a protobuf ModelProto) parser.
 * Pure: reads a byte buffer with explicit length, bounds-checks every varint
 * and length (it is fuzzed), and copies what it keeps, so the buffer may be
 * freed afterwards. Absent fields get the defaults of sentencepiece_model.proto. */
#ifndef MG_SPM_MODEL_H
#define MG_SPM_MODEL_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "base/error.h"

/* ModelProto.SentencePiece.Type */
typedef enum {
    SPM_NORMAL       = 1,
    SPM_UNKNOWN      = 2,
    SPM_CONTROL      = 3,
    SPM_USER_DEFINED = 4,
    SPM_UNUSED       = 5,
    SPM_BYTE         = 6
} spm_piece_type;

/* TrainerSpec.ModelType */
enum { SPM_MODEL_UNIGRAM = 1, SPM_MODEL_BPE = 2, SPM_MODEL_WORD = 3, SPM_MODEL_CHAR = 4 };

typedef struct {
    const char    *str;     /* NUL-terminated copy (len is authoritative: may hold NUL) */
    uint32_t       len;
    float          score;
    spm_piece_type type;
} spm_piece;

typedef struct {
    int        n_pieces;
    spm_piece *pieces;      /* id = index */
    char      *strings;     /* arena behind pieces[i].str */

    /* normalizer_spec */
    char    *normalizer_name;           /* "" when absent */
    uint8_t *charsmap;                  /* precompiled_charsmap; NULL when absent or empty */
    size_t   charsmap_len;
    bool     add_dummy_prefix;          /* default true */
    bool     remove_extra_whitespaces;  /* default true */
    bool     escape_whitespaces;        /* default true */

    /* trainer_spec (defaults when absent) */
    bool    has_trainer_spec;
    int     model_type;                 /* default SPM_MODEL_UNIGRAM */
    int32_t unk_id, bos_id, eos_id, pad_id;   /* defaults 0, 1, 2, -1 */
    bool    byte_fallback;              /* default false */
    bool    treat_whitespace_as_suffix; /* default false */
} spm_model;

/* Parses buf[0..len). On success *m owns its memory (free with spm_model_free);
 * on failure *m is left empty (spm_model_free is still safe). */
mg_code spm_model_parse(spm_model *m, const uint8_t *buf, size_t len, mg_error *err);
void    spm_model_free(spm_model *m);

#endif
