/* How long a clip may be: the one place that decides a duration's range and
 * default. The nginx module decides it at nginx -t (from musicgen_max_duration,
 * musicgen_default_duration and the model) and its request parser checks
 * against the result; the CLI decides it for -d; the engine (mg_gen_steps)
 * checks a generation against the model's window by the same rule. */
#ifndef MG_DURATION_H
#define MG_DURATION_H
#include "base/error.h"
#include "runtime/model_info.h"

#define MG_DEFAULT_DURATION 10.0  /* seconds of audio when a request names none */
#define MG_MIN_DURATION     1.0   /* seconds: the shortest clip a front end accepts */

typedef struct {
    double min, max;  /* seconds, both accepted */
    double dflt;      /* seconds, in [min, max] */
} mg_duration_range;

/* The range of durations and the default:
 *   min   MG_MIN_DURATION, or the model's window when that is shorter;
 *   max   the operator's max when > 0 (it must be at least MG_MIN_DURATION and
 *         fit the model's window), else the window to the millisecond;
 *   dflt  the operator's dflt when > 0 (it must lie in [min, max]), else
 *         MG_DEFAULT_DURATION, or max when that is shorter.
 * A duration fits the window when it rounds to at most the window's frames
 * (a generation makes round(duration * frame_rate) frames), so a maximum
 * written with fewer decimals than the window has still fits.
 * model NULL: no window (max must then be given).
 * Errors are MG_ERR_INVALID with err->field "max_duration" or
 * "default_duration", the message starting with that name and giving the
 * value and the limit it breaks. */
mg_code mg_duration_limits(const mg_model_info *model, double max, double dflt,
                           mg_duration_range *out, mg_error *err);
/* The frames a generation of that many seconds makes: round(seconds *
 * frame_rate), on seconds as a float (the engine's mg_gen_params keeps a
 * float), so every caller counts the same frames for the same request. */
double  mg_duration_frames(const mg_model_info *model, double seconds);
/* Whether a clip of that many seconds fits the model's window (the rule
 * above: at most max_frames frames): what mg_duration_limits requires of a
 * maximum, and what the engine requires of every generation given by
 * duration. A request at most a maximum that fits fits too (the rounding
 * is monotonic). */
int     mg_duration_fits(const mg_model_info *model, double seconds);
#endif
