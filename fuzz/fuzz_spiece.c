/* libFuzzer target: the spiece.model (protobuf ModelProto) parser, then the
 * tokenizer built on it (vocabulary tables, charsmap) and one encode. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/spm_model.h"
#include "io/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    spm_model m;
    mg_error err;
    if (spm_model_parse(&m, buf, size, &err) == MG_OK) {
        for (int i = 0; i < m.n_pieces; i++)
            if (!m.pieces[i].str || m.pieces[i].str[m.pieces[i].len] != '\0')
                abort();
    }
    spm_model_free(&m);
    mg_tokenizer *tok = NULL;
    if (mg_tokenizer_load(&tok, buf, size, &err) == MG_OK) {
        static const char text[] = "Calm piano, 80s pop  with\tdrums <extra_id_0> caf\xc3\xa9 \xef\xbc\xa1";
        int32_t *ids = NULL;
        int n = 0;
        if (mg_tokenize(tok, text, sizeof text - 1, 0, &ids, &n, &err) == MG_OK) {
            for (int i = 0; i < n; i++)
                if (ids[i] < 0)
                    abort();
            free(ids);
        }
        mg_tokenizer_free(tok);
    }
    free(buf);
    return 0;
}
