/* A model folder's figures without its weights (model_info.h). */
#include "runtime/model_info.h"
#include "io/config.h"
#include "io/loader.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void from_config(const mg_config *c, int has_tokenizer, mg_model_info *info)
{
    memset(info, 0, sizeof *info);
    info->sample_rate = c->sample_rate;
    info->channels = c->audio_channels;
    info->frame_rate = (double)c->sample_rate / c->hop;
    /* A window is what the model was trained to make at once: audiocraft's
     * max_duration (its segment_duration, 30 s for every MusicGen
     * checkpoint) is generation_config.json's max_length of 1500 frames.
     * Past it the model runs at positions it never saw; audiocraft continues
     * window by window there, and so does the long-form plan. At most what
     * the positions hold: decoder steps = frames + delays - 1 (the delay
     * pattern: one per EnCodec codebook, a stereo model's channels sharing
     * theirs). */
    int by_positions = c->max_positions - c->ec_codebooks + 1;
    info->max_frames = c->max_length < by_positions ? c->max_length : by_positions;
    info->max_duration = info->max_frames / info->frame_rate;
    info->decoder_vocab = c->dec_vocab;
    info->has_tokenizer = has_tokenizer;
}

mg_code mg_model_inspect(const char *dir, mg_model_info *info, mg_error *err)
{
    if (!dir || !info)
        return mg_fail(err, MG_ERR_INVALID, "model inspect: NULL argument");
    memset(info, 0, sizeof *info);
    mg_config cfg;
    mg_code   rc = mg_config_load(&cfg, dir, err);
    if (rc)
        return rc;
    /* the same files, checked the same way, as a load opens (no backend:
     * nothing is converted) */
    mg_loader ld;
    if ((rc = mg_loader_open_dir(&ld, dir, NULL, err)))
        return rc;
    mg_loader_close(&ld);
    char path[4096];
    snprintf(path, sizeof path, "%s/spiece.model", dir);
    from_config(&cfg, access(path, F_OK) == 0, info);
    return MG_OK;
}

void mg_model_info_of(const mg_model *m, mg_model_info *info)
{
    from_config(mg_model_config(m), mg_model_has_tokenizer(m), info);
}
