/* The windows a generation decodes (gen_plan_impl.h). */
#include "runtime/gen_plan_impl.h"
#include "runtime/duration.h"
#include "runtime/model_info.h"

#include <math.h>
#include <string.h>

void mg_gen_plan_window(const mg_gen_plan *pl, int D, int n, mg_gen_window *w)
{
    w->start = n * pl->stride;
    if (pl->fixed_steps) {
        w->prompt = pl->prompt_frames;
        w->steps = pl->fixed_steps;
        w->end = w->prompt + w->steps + 1 - D;
    } else {
        int end = w->start + pl->window;
        w->end = end < pl->frames ? end : pl->frames;
        /* window n-1 was full (it did not reach the end of the clip) */
        w->prompt = n == 0 ? pl->prompt_frames : (n - 1) * pl->stride + pl->window - w->start;
        w->steps = w->end - w->start - w->prompt + D - 1;
    }
    w->total = 1 + w->prompt + w->steps;
}

mg_code mg_gen_prompt_audio_fit(const mg_model *m, int64_t n_samples, float extend_stride,
                                mg_prompt_audio_fit *out, mg_error *err)
{
    const mg_config *c = mg_model_config(m);
    mg_model_info info;
    mg_model_info_of(m, &info);
    memset(out, 0, sizeof *out);
    int stride;
    mg_code rc = mg_extend_stride_frames(&info, extend_stride, &stride, err);
    if (rc != MG_OK)
        return rc;
    /* as the encoder counts them: a part frame at the end is padded to one */
    int64_t frames = (n_samples + c->hop - 1) / c->hop, most = info.max_frames - stride;
    if (n_samples < c->hop)
        return mg_fail_field(err, MG_ERR_INVALID, "prompt_audio", "prompt_audio: %lld samples, "
                             "less than one frame (%d samples)", (long long)n_samples, c->hop);
    if (frames <= most) {
        /* whole, as Hugging Face and audiocraft encode a prompt */
        out->frames = (int)frames;
        out->samples = n_samples;
        return MG_OK;
    }
    out->frames = (int)most;
    out->trimmed_frames = (int)(frames - most);
    out->samples = most * c->hop;
    out->first_sample = n_samples - out->samples;
    return MG_OK;
}

mg_code mg_gen_plan_make(const mg_model *m, const mg_gen_params *p, mg_gen_plan *out,
                         mg_error *err)
{
    const mg_config *c = mg_model_config(m);
    mg_model_info info;
    mg_model_info_of(m, &info);
    /* the delay pattern's span: one step per EnCodec codebook (a stereo
     * model's channels share their delays) */
    int D = c->ec_codebooks, tp = p->prompt_frames;
    memset(out, 0, sizeof *out);
    out->window = info.max_frames;
    if (p->max_new_tokens < 0)
        return mg_fail_field(err, MG_ERR_INVALID, "max_new_tokens",
                             "max_new_tokens: must be >= 0 (0: use duration)");
    if (p->prompt_audio) {
        if (p->prompt_codes)
            return mg_fail_field(err, MG_ERR_INVALID, "prompt_audio", "prompt_audio: a "
                                 "generation continues prompt_audio or prompt_codes, not both");
        mg_prompt_audio_fit fit;
        mg_code rc = mg_gen_prompt_audio_fit(m, p->prompt_samples, p->extend_stride, &fit, err);
        if (rc != MG_OK)
            return rc;
        tp = out->prompt_frames = fit.frames;
        out->prompt_trimmed_frames = fit.trimmed_frames;
    } else if (tp < 0 || (tp > 0) != (p->prompt_codes != NULL))
        return mg_fail_field(err, MG_ERR_INVALID, "prompt_codes", "prompt_codes: %d frames "
                             "with%s codes", tp, p->prompt_codes ? "" : "out");
    out->prompt_frames = tp;
    if (tp > 0 && tp >= out->window)
        return mg_fail_field(err, MG_ERR_INVALID, "prompt_codes", "prompt_codes: %d frames leave "
                             "no room in the model's window of %d frames", tp, out->window);
    mg_code rc = mg_extend_stride_frames(&info, p->extend_stride, &out->stride, err);
    if (rc != MG_OK)
        return rc;
    if (p->max_new_tokens > 0) {
        /* as Hugging Face: that many new steps after the prompt, in one window */
        int s = p->max_new_tokens;
        if (s < D || s > c->max_positions - tp)
            return mg_fail(err, MG_ERR_INVALID, "max_new_tokens: must be in [%d, %d]", D,
                           c->max_positions - tp);
        out->fixed_steps = s;
        out->frames = tp + s + 1 - D;
    } else {
        /* the whole clip, prompt included, as audiocraft and Hugging Face count it */
        if (!(p->duration > 0) || !mg_duration_fits(&info, p->duration))
            return mg_fail_field(err, MG_ERR_INVALID, "duration",
                                 "duration: must be in (0, %g] seconds", MG_MAX_DURATION);
        int want = (int)mg_duration_frames(&info, p->duration);
        out->frames = want < 1 ? 1 : want;
        if (out->frames <= tp)
            return mg_fail_field(err, MG_ERR_INVALID, "duration", "duration: %.3f s (%d frames) "
                                 "leaves nothing to generate after the prompt's %d frames",
                                 p->duration, out->frames, tp);
        if (out->frames > out->window && (out->stride < 1 || out->stride >= out->window))
            return mg_fail_field(err, MG_ERR_INVALID, "extend_stride", "extend_stride: the "
                                 "model's window of %d frames is too short for long-form "
                                 "generation", out->window);
    }
    mg_gen_window w = {0};
    for (int n = 0; n == 0 || w.end < out->frames; n++) {
        mg_gen_plan_window(out, D, n, &w);
        out->steps += w.steps;
        out->n_windows = n + 1;
        if (w.total > out->max_columns)
            out->max_columns = w.total;
        if (w.prompt > out->max_prompt)
            out->max_prompt = w.prompt;
    }
    return MG_OK;
}
