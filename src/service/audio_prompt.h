/* The audio_prompt request field: an audio file to continue, given as a
 * "data:audio/...;base64," URL or as bare base64 of the file's bytes.
 *
 * A data URL's media type must be audio/SUBTYPE (any subtype and parameters),
 * application/ogg or application/octet-stream (what a browser reports for a
 * file type it does not know); the bytes themselves decide the container
 * (audio_decode.h sniffs them), so a mislabelled audio file still decodes.
 * Base64 is the standard alphabet; whitespace is skipped and '=' padding is
 * optional. The decoded file's size is checked before it is decoded. */
#ifndef MG_AUDIO_PROMPT_H
#define MG_AUDIO_PROMPT_H
#include <stddef.h>
#include <stdint.h>
#include "base/error.h"
#include "io/audio_decode.h"

#define MG_AUDIO_PROMPT_FIELD "audio_prompt"

/* Decodes value[0..len) (not necessarily NUL-terminated) into *out at rate
 * Hz, channels kept. *hash is a stable 64-bit hash (FNV-1a) of the file's
 * bytes, for cache keys. Errors are MG_ERR_INVALID naming "audio_prompt"
 * (empty, bad base64, not audio, too large, too long, unsupported codec), or
 * MG_ERR_NOMEM; on error *out holds nothing to free. */
mg_code mg_audio_prompt_parse(const char *value, size_t len, int rate, mg_decoded_audio *out,
                              uint64_t *hash, mg_error *err);

#endif
