/* mg_model_inspect: a model folder's figures without its weights, equal to
 * the loaded model's; the errors mg_model_load gives for the same files. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "runtime/model_info.h"

static int same_info(const mg_model_info *a, const mg_model_info *b)
{
    return a->sample_rate == b->sample_rate && a->frame_rate == b->frame_rate &&
           a->max_frames == b->max_frames && a->max_duration == b->max_duration &&
           a->decoder_vocab == b->decoder_vocab && a->has_tokenizer == b->has_tokenizer;
}

/* $TMP/name -> target */
static int link_into(const char *tmp, const char *name, const char *target)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", tmp, name);
    return symlink(target, path);
}

int main(void)
{
    char          dir[2048], file[4096];
    mg_model_info info;
    mg_error      err = {0};
    snprintf(dir, sizeof dir, "%s/tiny-a", check_golden_dir());
    mg_code rc = mg_model_inspect(dir, &info, &err);
    if (rc != MG_OK && access(dir, F_OK) != 0) {
        SKIP("no golden model folder %s", dir);
        return check_summary("test_model_info");
    }
    /* musicgen-small's window (32 kHz, hop 640, max_length 1500 frames within
     * 2048 positions), 64 codes */
    CHECK(rc == MG_OK && info.sample_rate == 32000 && info.frame_rate == 50 &&
          info.max_frames == 1500 && info.max_duration == 30.0 && info.decoder_vocab == 64 &&
          info.has_tokenizer, "tiny-a: rc %d, %d Hz, %g fps, %d frames, %g s, vocab %d, "
          "tokenizer %d: %s", rc, info.sample_rate, info.frame_rate, info.max_frames,
          info.max_duration, info.decoder_vocab, info.has_tokenizer, err.msg);

    mg_model *m = NULL;
    mg_model_options opt = {.n_threads = 1, .device = "cpu"};
    if (mg_model_load(&m, dir, &opt, &err) == MG_OK) {
        mg_model_info loaded;
        mg_model_info_of(m, &loaded);
        CHECK(same_info(&info, &loaded), "tiny-a: inspected and loaded figures differ");
        mg_model_free(m);
    } else {
        CHECK(0, "tiny-a: load: %s", err.msg);
    }

    char tmp[] = "/tmp/mg_model_info_XXXXXX";
    if (!mkdtemp(tmp)) {
        CHECK(0, "mkdtemp");
        return check_summary("test_model_info");
    }
    /* no spiece.model: token ids only (the links name absolute paths) */
    char abs_dir[2048];
    if (!realpath(dir, abs_dir)) {
        CHECK(0, "realpath %s", dir);
        rmdir(tmp);
        return check_summary("test_model_info");
    }
    snprintf(file, sizeof file, "%s/config.json", abs_dir);
    CHECK(link_into(tmp, "config.json", file) == 0, "symlink config.json");
    snprintf(file, sizeof file, "%s/model.safetensors", abs_dir);
    CHECK(link_into(tmp, "model.safetensors", file) == 0, "symlink model.safetensors");
    rc = mg_model_inspect(tmp, &info, &err);
    /* no generation_config.json: max_length's default, 1500 */
    CHECK(rc == MG_OK && !info.has_tokenizer && info.max_frames == 1500,
          "no spiece.model: rc %d tokenizer %d: %s", rc, info.has_tokenizer, err.msg);

    /* a truncated model.safetensors: its header is checked */
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors", tmp);
    unlink(path);
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite("\x40\x00\x00\x00\x00\x00\x00\x00{\"a\"", 1, 12, f) == 12, "write");
    if (f)
        fclose(f);
    memset(&info, 0x55, sizeof info);
    rc = mg_model_inspect(tmp, &info, &err);
    CHECK(rc != MG_OK && strstr(err.msg, "model.safetensors") && info.max_frames == 0,
          "truncated model.safetensors: rc %d: %s", rc, err.msg);
    unlink(path);
    rc = mg_model_inspect(tmp, &info, &err);
    CHECK(rc != MG_OK && strstr(err.msg, "model.safetensors"), "no model.safetensors: %s",
          err.msg);

    /* a config.json without the decoder's figures */
    snprintf(path, sizeof path, "%s/config.json", tmp);
    unlink(path);
    f = fopen(path, "w");
    CHECK(f && fputs("{\"text_encoder\": {}}", f) >= 0, "write");
    if (f)
        fclose(f);
    rc = mg_model_inspect(tmp, &info, &err);
    CHECK(rc != MG_OK && strstr(err.msg, "text_encoder.vocab_size is missing"),
          "bad config.json: %s", err.msg);
    unlink(path);
    rmdir(tmp);

    rc = mg_model_inspect("/nonexistent/model", &info, &err);
    CHECK(rc != MG_OK && strstr(err.msg, "config.json"), "no folder: %s", err.msg);
    CHECK(mg_model_inspect(NULL, &info, &err) == MG_ERR_INVALID, "NULL folder accepted");
    return check_summary("test_model_info");
}
