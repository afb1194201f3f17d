/* mg-golden: the EnCodec encoder's checks. They record what they compute
 * through a sink (golden_model.c's results: compared afterwards with every
 * tensor the manifest lists), so the continuation checker can reuse the
 * prompt-audio part on its own golden file. */
#ifndef MG_GOLDEN_ENCODE_H
#define MG_GOLDEN_ENCODE_H
#include <stdint.h>
#include "io/safetensors.h"
#include "runtime/model_parts.h"

typedef struct {
    void *ud;
    void (*put_f32)(void *ud, const char *name, const float *data, int64_t n);
    void (*put_int)(void *ud, const char *name, const int64_t *data, int64_t n);
    /* a golden tensor used as given (an input of the computation) */
    void (*put_input)(void *ud, const char *name);
    /* a computation that could not run (counted as a failure) */
    void (*fail)(void *ud, const char *what, const char *msg);
} golden_sink;

/* golden_encodec_encode: for each "<tag>.input_values" [B, 1, n], records
 * "<tag>.encoder_layer_out.NN" and "<tag>.embeddings" (one pass, traced),
 * "<tag>.audio_codes" [1, B, K, frames] and "<tag>.reconstruction" (their
 * decode). */
void golden_check_encode(mg_model *m, const mg_safetensors *g, const golden_sink *s);

/* golden_continuation's audio prompt: encodes "prompt_audio" [B, C, n] (C:
 * the model's audio channels, each encoded alone and interleaved; its
 * "prompt_padding_mask" must be all ones) and records "prompt_audio_codes"
 * [B*K, frames], the code prompt generate() continues from. Returns those
 * codes (malloc'd, [B, K, frames], *batch and *frames set), NULL when the
 * encode failed (reported through the sink). */
int32_t *golden_encode_prompt_audio(mg_model *m, const mg_safetensors *g, const golden_sink *s,
                                    int *batch, int *frames);
#endif
