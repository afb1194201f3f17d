/* What front ends need to know about a model before they load its weights:
 * nginx -t checks the musicgen_model folder with it, the CLI checks its
 * options against it, and the duration range (duration.h) is decided from it. */
#ifndef MG_MODEL_INFO_H
#define MG_MODEL_INFO_H
#include "base/error.h"
#include "runtime/musicgen.h"

typedef struct {
    int    sample_rate;    /* Hz of the audio the model makes */
    int    channels;       /* audio channels the model makes: 1 mono, 2 stereo */
    double frame_rate;     /* codec frames per second (sample_rate / hop) */
    int    max_frames;     /* frames one window holds: max_length, at most positions - codebooks + 1 */
    double max_duration;   /* seconds: max_frames / frame_rate, the longest clip */
    int    decoder_vocab;  /* codes per codebook: the ceiling of top_k */
    int    has_tokenizer;  /* spiece.model is there: text prompts work (else token ids only) */
} mg_model_info;

/* Reads DIR/config.json and DIR/generation_config.json, checks the header of
 * DIR/model.safetensors, or of every shard DIR/model.safetensors.index.json
 * names and the index against them (the weights are neither read nor
 * converted) and looks
 * for DIR/spiece.model. Errors are those mg_model_load would give for the same
 * files. */
mg_code mg_model_inspect(const char *dir, mg_model_info *info, mg_error *err);
/* The same for a loaded model. */
void    mg_model_info_of(const mg_model *m, mg_model_info *info);
#endif
