/* The duration range (duration.h): its boundaries against an operator's
 * maximum and default and a model's window, the errors naming the value and
 * the limit, and the window rule the engine shares. */
#include <math.h>
#include <string.h>

#include "check.h"
#include "runtime/duration.h"

/* musicgen-small's shape: 32 kHz, hop 640, 2048 positions, 4 codebooks */
static const mg_model_info SMALL = {.sample_rate = 32000, .frame_rate = 50, .max_frames = 2045,
                                    .max_duration = 2045 / 50.0, .decoder_vocab = 2048};

static void expect_range(const mg_model_info *m, double max, double dflt, double want_min,
                         double want_max, double want_dflt, const char *what)
{
    mg_duration_range r;
    mg_error          e = {0};
    mg_code           rc = mg_duration_limits(m, max, dflt, &r, &e);
    CHECK(rc == MG_OK && r.min == want_min && r.max == want_max && r.dflt == want_dflt,
          "%s: rc %d [%g, %g] default %g: %s", what, rc, r.min, r.max, r.dflt, e.msg);
}

static void expect_error(const mg_model_info *m, double max, double dflt, const char *field,
                         const char *msg, const char *what)
{
    mg_duration_range r;
    mg_error          e = {0};
    mg_code           rc = mg_duration_limits(m, max, dflt, &r, &e);
    CHECK(rc == MG_ERR_INVALID && strcmp(e.field, field) == 0 && strstr(e.msg, msg),
          "%s: rc %d field '%s': %s", what, rc, e.field, e.msg);
}

int main(void)
{
    /* no operator maximum: the window, the default 10 s */
    expect_range(&SMALL, 0, 0, MG_MIN_DURATION, 40.9, MG_DEFAULT_DURATION, "the window");
    expect_range(&SMALL, 30, 0, 1, 30, 10, "max 30");
    expect_range(&SMALL, 30, 12.5, 1, 30, 12.5, "max 30, default 12.5");
    expect_range(&SMALL, 1, 1, 1, 1, 1, "max 1, default 1: the shortest");
    expect_range(&SMALL, 5, 0, 1, 5, 5, "max 5: the default is the maximum");
    expect_range(&SMALL, 40.9, 40.9, 1, 40.9, 40.9, "max at the window");
    /* as nginx stores it: a float a little past the decimal the operator wrote */
    expect_range(&SMALL, (float)40.9, 0, 1, (float)40.9, 10, "max 40.9 as a float");
    /* up to half a frame past the window rounds into it; beyond does not */
    expect_range(&SMALL, 40.9099, 0, 1, 40.9099, 10, "max within half a frame");
    /* what breaks the range, against musicgen-small's window */
    static const struct {
        double      max, dflt;
        const char *field, *msg;
    } bad[] = {
        {40.911, 0, "max_duration", "max_duration 40.911 s is longer than the model can "
                                    "generate (40.9 s)"},
        {60, 0, "max_duration", "max_duration 60 s is longer than the model can generate (40.9 s)"},
        {0.999, 0, "max_duration", "max_duration 0.999 s is shorter than the shortest clip, 1 s"},
        {30, 30.5, "default_duration", "default_duration 30.5 s exceeds the maximum, 30 s"},
        {5, 10, "default_duration", "default_duration 10 s exceeds the maximum, 5 s"},
        {0, 41, "default_duration", "default_duration 41 s exceeds the maximum, 40.9 s"},
        {30, 0.5, "default_duration", "default_duration 0.5 s is shorter than the shortest "
                                      "clip, 1 s"},
        {NAN, 0, "", "not a finite number"},
        {30, INFINITY, "", "not a finite number"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect_error(&SMALL, bad[i].max, bad[i].dflt, bad[i].field, bad[i].msg, bad[i].msg);

    /* no model: the operator's maximum alone, and it is needed */
    expect_range(NULL, 600, 0, 1, 600, 10, "no model, max 600");
    expect_error(NULL, 0, 0, "max_duration", "needed when there is no model", "no model, no max");

    /* a window shorter than a second, and one with no frame */
    mg_model_info brief = SMALL;
    brief.max_frames = 25, brief.max_duration = 0.5;
    expect_range(&brief, 0, 0, 0.5, 0.5, 0.5, "a 0.5 s window");
    expect_error(&brief, 1, 0, "max_duration", "longer than the model can generate (0.5 s)",
                 "max 1 on a 0.5 s window");
    mg_model_info empty = SMALL;
    empty.max_frames = -2, empty.max_duration = -2 / 50.0;
    expect_error(&empty, 0, 0, "max_duration", "holds no frame (-2 frames)", "an empty window");

    /* a window that is no whole number of milliseconds: shown rounded, and what
     * is shown is accepted */
    mg_model_info odd = SMALL;
    odd.frame_rate = 75, odd.max_frames = 2045, odd.max_duration = 2045 / 75.0;
    expect_error(&odd, 30, 0, "max_duration", "can generate (27.267 s)", "an odd window");
    expect_range(&odd, 27.267, 0, 1, 27.267, 10, "the odd window as shown");
    expect_range(&odd, 0, 0, 1, 27.267, 10, "no maximum: the odd window to the millisecond");

    /* the window rule the engine applies to each generation */
    CHECK(mg_duration_fits(&SMALL, 40.9) && mg_duration_fits(&SMALL, 40.9099) &&
          mg_duration_fits(&SMALL, 0.001), "fits: within the window");
    CHECK(!mg_duration_fits(&SMALL, 40.911) && !mg_duration_fits(&SMALL, 1e6) &&
          !mg_duration_fits(&SMALL, NAN), "fits: past the window");
    /* exactly half a frame past a 30 s window rounds up, past it: a maximum
     * nginx -t accepts must be one every request up to it can generate */
    mg_model_info w30 = SMALL;
    w30.max_frames = 1500, w30.max_duration = 30.0;
    expect_error(&w30, 30.01, 0, "max_duration", "can generate (30 s)", "half a frame past");
    expect_range(&w30, 30.009, 0, 1, 30.009, 10, "within half a frame");
    CHECK(mg_duration_frames(&w30, 30.01) == 1501 && mg_duration_frames(&w30, 30.009) == 1500 &&
          mg_duration_frames(&w30, 0.009) == 0 && mg_duration_frames(&w30, 1) == 50,
          "frames: round(seconds * frame rate)");
    /* every duration up to an accepted maximum fits, as the float a request keeps */
    int all_fit = 1;
    for (double d = 29.99; d <= 30.009; d += 0.0001)
        all_fit &= mg_duration_fits(&w30, (float)d);
    CHECK(all_fit, "fits: every duration up to the accepted maximum, as a float");
    CHECK(!mg_duration_fits(&SMALL, 0) && !mg_duration_fits(&SMALL, -1), "fits: not positive");
    return check_summary("test_duration");
}
