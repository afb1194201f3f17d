/* T5 SentencePiece tokenizer: what MusicgenProcessor's slow T5Tokenizer does.
 *
 * Text is normalised by the model's own precompiled_charsmap (nmt_nfkc for T5;
 * none = identity), whitespace escaped to U+2581 with a dummy prefix, then
 * segmented by unigram Viterbi over the piece scores; runs of unknown
 * characters collapse into one <unk>. mg_tokenize adds Hugging Face's layer
 * on top: literal special-token strings in the text become their ids and </s>
 * is appended. A loaded tokenizer is immutable: share it across threads. */
#ifndef MG_TOKENIZER_H
#define MG_TOKENIZER_H
#include <stddef.h>
#include <stdint.h>
#include "base/error.h"

typedef struct mg_tokenizer mg_tokenizer;

#define MG_TOKENIZER_MAX_TOKENS 512   /* documented truncation limit (ids incl. the final </s>) */

/* Parses a spiece.model image; pure, copies what it needs (buf may be freed after). */
mg_code mg_tokenizer_load(mg_tokenizer **out, const uint8_t *buf, size_t len, mg_error *err);
mg_code mg_tokenizer_load_file(mg_tokenizer **out, const char *path, mg_error *err);
void    mg_tokenizer_free(mg_tokenizer *tok);

/* HF T5Tokenizer semantics: added-token splitting (</s>, <pad>, <unk>,
 * <extra_id_0..99> = 32099..32000, the extra ids also eat the whitespace
 * around them), </s> appended unless already last, truncated to max_tokens
 * (<= 0 means MG_TOKENIZER_MAX_TOKENS) keeping </s> last. *ids is malloc'd
 * (never NULL on success, even when *n_ids is 0). */
mg_code mg_tokenize(const mg_tokenizer *tok, const char *text, size_t len, int max_tokens,
                    int32_t **ids, int *n_ids, mg_error *err);

/* Plain SentencePiece encode (no added-token splitting, no EOS): what spm_ids records. */
mg_code mg_tokenize_spm(const mg_tokenizer *tok, const char *text, size_t len, int32_t **ids,
                        int *n_ids, mg_error *err);

int     mg_tokenizer_vocab_size(const mg_tokenizer *tok); /* pieces in the model (32000 for T5) */

/* Ids HF uses for its special tokens (looked up by piece string, as HF does). */
int     mg_tokenizer_eos_id(const mg_tokenizer *tok);
int     mg_tokenizer_pad_id(const mg_tokenizer *tok);

#endif
