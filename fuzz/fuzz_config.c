/* libFuzzer target: config.json and generation_config.json parsing. The input
 * is config.json, then optionally a NUL byte and generation_config.json. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    size_t cfg_len = nul ? (size_t)(nul - data) : size;
    size_t gen_len = nul ? size - cfg_len - 1 : 0;
    char *cfg_text = malloc(cfg_len ? cfg_len : 1);
    char *gen_text = nul ? malloc(gen_len ? gen_len : 1) : NULL;
    if (!cfg_text || (nul && !gen_text)) {
        free(cfg_text);
        free(gen_text);
        return 0;
    }
    memcpy(cfg_text, data, cfg_len);
    if (gen_text)
        memcpy(gen_text, nul + 1, gen_len);
    mg_config cfg;
    mg_error err;
    if (mg_config_parse(&cfg, cfg_text, cfg_len, gen_text, gen_len, &err) == MG_OK) {
        /* an accepted config is one the engine can size buffers from */
        if (cfg.hop <= 0 || cfg.dec_hidden <= 0 || cfg.num_codebooks <= 0 || cfg.t5_vocab <= 0)
            abort();
    }
    free(cfg_text);
    free(gen_text);
    return 0;
}
