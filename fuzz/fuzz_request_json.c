/* libFuzzer target: the JSON request parser and validator, both request
 * forms (prompt, and the analysis form that goes through the prompt builder). */
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
    /* no NUL terminator: the parser must respect size */
    char *body = malloc(size ? size : 1);
    if (!body)
        return 0;
    memcpy(body, data, size);
    if (mg_request_parse_json(body, size, &lim, &req, &err) == MG_OK) {
        if (!req.prompt || !req.prompt[0] || !(req.duration >= 1 && req.duration <= 30))
            abort(); /* a valid request always has a prompt and an in-range duration */
        mg_request_free(&req);
    } else if (req.prompt) {
        abort(); /* on error *req holds nothing to free */
    }
    free(body);
    return 0;
}
