/* The windows a generation decodes. One window holds at most the model's
 * positions; a longer clip (long-form generation, audiocraft's windowed
 * continuation) is decoded window after window, window n starting n * stride
 * frames into the clip and prompted with the frames of window n-1 it overlaps
 * (the last window - stride frames), the text conditioning unchanged. A code
 * prompt from the caller is the first window's prompt. */
#ifndef MG_GEN_PLAN_IMPL_H
#define MG_GEN_PLAN_IMPL_H
#include "runtime/runtime_impl.h"

typedef struct {
    int frames;        /* of the whole clip, the caller's prompt included */
    int steps;         /* token selections of all windows together */
    int prompt_frames; /* the caller's code prompt (prompt_audio's kept frames) */
    int prompt_trimmed_frames; /* prompt_audio's frames cut to fit */
    int window;        /* frames a window holds at most */
    int stride;        /* frames between the starts of two windows */
    int n_windows;
    int max_columns;   /* decoder columns of the longest window */
    int max_prompt;    /* frames of the longest window prompt */
    int fixed_steps;   /* max_new_tokens given: one window of that many steps */
} mg_gen_plan;

/* One window: frames [start, end) of the clip, of which the first `prompt`
 * are forced (its prompt); `steps` token selections fill the rest of its
 * `total` columns (1 + prompt + steps, delay pattern included). */
typedef struct {
    int start, end, prompt, steps, total;
} mg_gen_window;

/* Checks max_new_tokens, duration, prompt_frames/prompt_codes (not the codes
 * themselves) or prompt_audio's length (mg_gen_prompt_audio_fit) and
 * extend_stride against the model, each error naming its field. */
mg_code mg_gen_plan_make(const mg_model *m, const mg_gen_params *p, mg_gen_plan *out,
                         mg_error *err);
/* Window n; D = the delay pattern's span (mg_config.ec_codebooks). */
void    mg_gen_plan_window(const mg_gen_plan *pl, int D, int n, mg_gen_window *w);
#endif
