/* libFuzzer target: the query-string request form (GET), with two named
 * models to choose from ("model"), each with its own limits. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "service/request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const mg_request_model models[] = {
        {.name = "small", .duration = {.min = MG_MIN_DURATION, .max = 30, .dflt = 10},
         .max_top_k = 2048, .audio_rate = 32000},
        {.name = "short", .duration = {.min = MG_MIN_DURATION, .max = 5, .dflt = 5},
         .max_top_k = 64, .audio_rate = 32000},
    };
    mg_request_limits lim = {.default_format = MG_AUDIO_WAV, .max_guidance = 10,
                             .models = models, .n_models = 2};
    mg_request req;
    mg_error err;
    memset(&req, 0, sizeof req);
    char *args = malloc(size ? size : 1);
    if (!args)
        return 0;
    memcpy(args, data, size);
    if (mg_request_parse_query(args, size, &lim, &req, &err) == MG_OK) {
        /* a valid request has a prompt, a known model and a duration in that model's range */
        if (!req.prompt || !req.prompt[0] || req.model >= 2 || !(req.duration >= 1
            && req.duration <= models[req.model].duration.max)
            || (req.has_top_k && req.top_k > models[req.model].max_top_k))
            abort();
        mg_request_free(&req);
    } else if (req.prompt) {
        abort();
    }
    free(args);
    return 0;
}
