/* libFuzzer target: the query-string request form (GET). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "service/request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mg_request_limits lim = {.duration = {.min = MG_MIN_DURATION, .max = 30, .dflt = 10},
                             .default_format = MG_AUDIO_WAV, .max_top_k = 2048, .max_guidance = 10};
    mg_request req;
    mg_error err;
    memset(&req, 0, sizeof req);
    char *args = malloc(size ? size : 1);
    if (!args)
        return 0;
    memcpy(args, data, size);
    if (mg_request_parse_query(args, size, &lim, &req, &err) == MG_OK) {
        if (!req.prompt || !req.prompt[0] || !(req.duration >= 1 && req.duration <= 30))
            abort();
        mg_request_free(&req);
    } else if (req.prompt) {
        abort();
    }
    free(args);
    return 0;
}
