/* How long a clip may be: the one place that decides a duration's range and
 * default. The nginx module decides it at nginx -t (from musicgen_max_duration,
 * musicgen_default_duration and the model) and its request parser checks
 * against the result; the CLI decides it for -d; the engine (mg_gen_steps)
 * checks a generation against the engine's cap by the same rule. A clip
 * longer than the model's window is generated window by window (long-form,
 * gen_plan_impl.h), so the window no longer bounds the maximum. */
#ifndef MG_DURATION_H
#define MG_DURATION_H
#include "base/error.h"
#include "runtime/model_info.h"

#define MG_DEFAULT_DURATION 10.0  /* seconds of audio when a request names none */
#define MG_MIN_DURATION     1.0   /* seconds: the shortest clip a front end accepts */
/* Seconds: the longest clip the engine generates. Until the audio streams,
 * a result holds all of it (an hour is 460 MB of float samples per item at
 * 32 kHz, on top of the decoding), and an hour is hours of decoding on a
 * CPU: past that a request is more likely a mistake than a wish. */
#define MG_MAX_DURATION     3600.0
/* Seconds of new audio each long-form window after the first adds, as
 * audiocraft's default (its windows keep the last 12 s of 30). */
#define MG_DEFAULT_EXTEND_STRIDE 18.0

typedef struct {
    double min, max;  /* seconds, both accepted */
    double dflt;      /* seconds, in [min, max] */
} mg_duration_range;

/* The range of durations and the default:
 *   min   MG_MIN_DURATION, or the model's window when that is shorter;
 *   max   the operator's max when > 0 (it must be at least min and at most
 *         MG_MAX_DURATION, by the rule of mg_duration_fits), else the
 *         model's window to the millisecond (one window's clips);
 *   dflt  the operator's dflt when > 0 (it must lie in [min, max]), else
 *         MG_DEFAULT_DURATION, or max when that is shorter.
 * A duration fits when it rounds to at most MG_MAX_DURATION's frames (a
 * generation makes round(duration * frame_rate) frames); the window's own
 * rule (at most max_frames) only decides the default maximum, so that one
 * written with fewer decimals than the window has is still one window.
 * model NULL: no window (max must then be given, at most MG_MAX_DURATION).
 * Errors are MG_ERR_INVALID with err->field "max_duration" or
 * "default_duration", the message starting with that name and giving the
 * value and the limit it breaks. */
mg_code mg_duration_limits(const mg_model_info *model, double max, double dflt,
                           mg_duration_range *out, mg_error *err);
/* The frames a generation of that many seconds makes: round(seconds *
 * frame_rate), on seconds as a float (the engine's mg_gen_params keeps a
 * float), so every caller counts the same frames for the same request. */
double  mg_duration_frames(const mg_model_info *model, double seconds);
/* Whether the engine generates a clip of that many seconds (the rule above:
 * positive, at most MG_MAX_DURATION's frames): what mg_duration_limits
 * requires of a maximum, and what the engine requires of every generation
 * given by duration. A request at most a maximum that fits fits too (the
 * rounding is monotonic). */
int     mg_duration_fits(const mg_model_info *model, double seconds);
/* The frames between the starts of two long-form windows for a stride of
 * that many seconds: round(seconds * frame_rate); 0 seconds is the default,
 * MG_DEFAULT_EXTEND_STRIDE or half the window when that is shorter (a
 * window of one frame then has none: it cannot generate past itself). A
 * stride given must be at least one frame and shorter than the window:
 * else MG_ERR_INVALID, err->field "extend_stride". The engine plans windows
 * with it; nginx -t checks musicgen_extend_stride and, for a maximum
 * duration past the window, that long-form generation is possible. */
mg_code mg_extend_stride_frames(const mg_model_info *model, double seconds, int *frames,
                                mg_error *err);
#endif
