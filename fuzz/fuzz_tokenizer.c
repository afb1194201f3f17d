/* libFuzzer target: the tokenizer on arbitrary bytes, with a real vocabulary:
 * $MG_FUZZ_SPIECE (the T5 spiece.model from the golden data), else the
 * synthetic one the model maker writes. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../tools/spm_write.h"
#include "io/tokenizer.h"

static mg_tokenizer *fuzz_tok; /* loaded once: the target is the encoder, not the loader */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    mg_error err;
    const char *path = getenv("MG_FUZZ_SPIECE");
    if (path && path[0]) {
        if (mg_tokenizer_load_file(&fuzz_tok, path, &err) != MG_OK) {
            fprintf(stderr, "fuzz_tokenizer: %s\n", err.msg);
            exit(1);
        }
        return 0;
    }
    uint8_t *buf;
    size_t len;
    if (mg_spm_synthetic(&buf, &len, &err) != MG_OK || mg_tokenizer_load(&fuzz_tok, buf, len, &err) != MG_OK) {
        fprintf(stderr, "fuzz_tokenizer: %s\n", err.msg);
        exit(1);
    }
    free(buf);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size ? size : 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    int vocab = mg_tokenizer_vocab_size(fuzz_tok);
    int32_t *ids = NULL;
    int n = 0;
    mg_error err;
    if (mg_tokenize(fuzz_tok, text, size, 0, &ids, &n, &err) == MG_OK) {
        if (n < 1 || n > MG_TOKENIZER_MAX_TOKENS || ids[n - 1] != mg_tokenizer_eos_id(fuzz_tok))
            abort();
        for (int i = 0; i < n; i++)
            if (ids[i] < 0 || ids[i] >= 32100)
                abort();
        free(ids);
    }
    if (mg_tokenize_spm(fuzz_tok, text, size, &ids, &n, &err) == MG_OK) {
        for (int i = 0; i < n; i++)
            if (ids[i] < 0 || ids[i] >= vocab)
                abort();
        free(ids);
    }
    free(text);
    return 0;
}
