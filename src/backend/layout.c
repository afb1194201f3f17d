#include "backend/layout.h"
#include "io/safetensors.h"

void mg_conv_bf16_pairs_to_f32(const uint32_t *pairs, int64_t d0, int64_t d1, int64_t k,
                               int transposed, float *out)
{
    for (int64_t a = 0; a < d0; a++)
        for (int64_t b = 0; b < d1; b++)
            for (int64_t j = 0; j < k; j++) {
                int half;
                int64_t w = mg_conv_bf16_pair_word(a, b, j, d1, k, transposed, &half);
                out[(a * d1 + b) * k + j] = mg_bf16_to_f32((uint16_t)(pairs[w] >> (16 * half)));
            }
}
