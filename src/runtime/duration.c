/* A duration's range and default (duration.h). */
#include "runtime/duration.h"

#include <math.h>
#include <string.h>

/* Seconds as an operator would write them: to the millisecond, no trailing zeros. */
static double shown(double s)
{
    return round(s * 1000) / 1000;
}

double mg_duration_frames(const mg_model_info *model, double seconds)
{
    /* on the float a request stores: the same rounding whatever the caller holds */
    return floor((double)(float)seconds * model->frame_rate + 0.5);
}

int mg_duration_fits(const mg_model_info *model, double seconds)
{
    return seconds > 0 &&
           mg_duration_frames(model, seconds) <= mg_duration_frames(model, MG_MAX_DURATION);
}

/* One window's clip: at most max_frames frames. */
static int fits_window(const mg_model_info *model, double seconds)
{
    return seconds > 0 && mg_duration_frames(model, seconds) <= model->max_frames;
}

mg_code mg_duration_limits(const mg_model_info *model, double max, double dflt,
                           mg_duration_range *out, mg_error *err)
{
    if (!out)
        return mg_fail(err, MG_ERR_INVALID, "duration limits: NULL argument");
    memset(out, 0, sizeof *out);
    if (!isfinite(max) || !isfinite(dflt))
        return mg_fail(err, MG_ERR_INVALID, "duration limits: not a finite number");
    double window = INFINITY;
    if (model) {
        if (!(model->frame_rate > 0) || !(model->max_duration > 0))
            return mg_fail_field(err, MG_ERR_INVALID, "max_duration", "max_duration: the "
                                 "model's window holds no frame (%d frames)", model->max_frames);
        /* to the millisecond, as messages show it and users write it back */
        window = shown(model->max_duration);
        if (!(window > 0) || !fits_window(model, window))
            window = model->max_duration;
    } else if (!(max > 0)) {
        return mg_fail_field(err, MG_ERR_INVALID, "max_duration",
                             "max_duration: needed when there is no model");
    }
    out->min = MG_MIN_DURATION < window ? MG_MIN_DURATION : window;
    out->max = window;
    if (max > 0) {
        if (max < out->min)
            return mg_fail_field(err, MG_ERR_INVALID, "max_duration", "max_duration %.10g s "
                                 "is shorter than the shortest clip, %.10g s", max, out->min);
        if (model ? !mg_duration_fits(model, max) : max > MG_MAX_DURATION)
            return mg_fail_field(err, MG_ERR_INVALID, "max_duration", "max_duration %.10g s "
                                 "is longer than the engine generates (%.10g s)", max,
                                 MG_MAX_DURATION);
        out->max = max;
    }
    if (dflt > 0) {
        if (dflt < out->min || dflt > out->max)
            return mg_fail_field(err, MG_ERR_INVALID, "default_duration", "default_duration "
                                 "%.10g s %s, %.10g s", dflt, dflt < out->min
                                 ? "is shorter than the shortest clip" : "exceeds the maximum",
                                 dflt < out->min ? out->min : shown(out->max));
        out->dflt = dflt;
    } else {
        out->dflt = MG_DEFAULT_DURATION < out->max ? MG_DEFAULT_DURATION : out->max;
    }
    return MG_OK;
}

mg_code mg_extend_stride_frames(const mg_model_info *model, double seconds, int *frames,
                                mg_error *err)
{
    if (seconds == 0) {
        int dflt = (int)mg_duration_frames(model, MG_DEFAULT_EXTEND_STRIDE);
        *frames = dflt <= model->max_frames / 2 ? dflt : model->max_frames / 2;
        return MG_OK;
    }
    double n = mg_duration_frames(model, seconds);
    if (!(seconds > 0) || !(n >= 1) || n >= model->max_frames)
        return mg_fail_field(err, MG_ERR_INVALID, "extend_stride",
                             "extend_stride: must be in (0, %.2f) seconds (the model's window), "
                             "at least one frame", model->max_duration);
    *frames = (int)n;
    return MG_OK;
}
