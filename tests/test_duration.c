/* The duration range (duration.h): its boundaries against an operator's
 * maximum and default, the engine's cap and a model's window (which only
 * sets the default maximum: longer clips are generated window by window),
 * the errors naming the value and the limit, and the rule the engine shares. */
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
    /* past the window: long-form generation, up to the engine's cap */
    expect_range(&SMALL, 60, 0, 1, 60, 10, "max 60: past the window");
    expect_range(&SMALL, 40.911, 40.911, 1, 40.911, 40.911, "max and default past the window");
    expect_range(&SMALL, MG_MAX_DURATION, 120, 1, MG_MAX_DURATION, 120, "max at the cap");
    /* what breaks the range, against musicgen-small and the engine's cap */
    static const struct {
        double      max, dflt;
        const char *field, *msg;
    } bad[] = {
        {3600.011, 0, "max_duration", "max_duration 3600.011 s is longer than the engine "
                                      "generates (3600 s)"},
        {1e6, 0, "max_duration", "max_duration 1000000 s is longer than the engine generates "
                                 "(3600 s)"},
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
    expect_error(NULL, 3601, 0, "max_duration", "max_duration 3601 s is longer than the engine "
                 "generates (3600 s)", "no model, past the cap");

    /* a window shorter than a second, and one with no frame */
    mg_model_info brief = SMALL;
    brief.max_frames = 25, brief.max_duration = 0.5;
    expect_range(&brief, 0, 0, 0.5, 0.5, 0.5, "a 0.5 s window");
    expect_range(&brief, 1, 0, 0.5, 1, 1, "max 1 on a 0.5 s window: two windows");
    mg_model_info empty = SMALL;
    empty.max_frames = -2, empty.max_duration = -2 / 50.0;
    expect_error(&empty, 0, 0, "max_duration", "holds no frame (-2 frames)", "an empty window");

    /* a window that is no whole number of milliseconds: shown rounded, and what
     * is shown is accepted */
    mg_model_info odd = SMALL;
    odd.frame_rate = 75, odd.max_frames = 2045, odd.max_duration = 2045 / 75.0;
    expect_range(&odd, 30, 0, 1, 30, 10, "max 30 past an odd window");
    expect_error(&odd, 0, 28, "default_duration", "exceeds the maximum, 27.267 s",
                 "the odd window's default maximum, shown");
    expect_range(&odd, 27.267, 0, 1, 27.267, 10, "the odd window as shown");
    expect_range(&odd, 0, 0, 1, 27.267, 10, "no maximum: the odd window to the millisecond");

    /* the rule the engine applies to each generation: the cap, not the window */
    CHECK(mg_duration_fits(&SMALL, 40.9) && mg_duration_fits(&SMALL, 40.911) &&
          mg_duration_fits(&SMALL, 0.001) && mg_duration_fits(&SMALL, MG_MAX_DURATION),
          "fits: within the cap");
    CHECK(!mg_duration_fits(&SMALL, 3600.011) && !mg_duration_fits(&SMALL, 1e6) &&
          !mg_duration_fits(&SMALL, NAN), "fits: past the cap");
    /* exactly half a frame past the cap rounds up, past it: a maximum nginx -t
     * accepts must be one every request up to it can generate */
    expect_error(&SMALL, 3600.01, 0, "max_duration", "the engine generates (3600 s)",
                 "half a frame past the cap");
    expect_range(&SMALL, 3600.009, 0, 1, 3600.009, 10, "within half a frame of the cap");
    mg_model_info w30 = SMALL;
    w30.max_frames = 1500, w30.max_duration = 30.0;
    CHECK(mg_duration_frames(&w30, 30.01) == 1501 && mg_duration_frames(&w30, 30.009) == 1500 &&
          mg_duration_frames(&w30, 0.009) == 0 && mg_duration_frames(&w30, 1) == 50,
          "frames: round(seconds * frame rate)");
    /* every duration up to an accepted maximum fits, as the float a request keeps */
    int all_fit = 1;
    for (double d = 3599.99; d <= 3600.009; d += 0.0001)
        all_fit &= mg_duration_fits(&SMALL, (float)d);
    CHECK(all_fit, "fits: every duration up to the accepted maximum, as a float");
    CHECK(!mg_duration_fits(&SMALL, 0) && !mg_duration_fits(&SMALL, -1), "fits: not positive");

    /* the long-form stride: the default (18 s, or half a shorter window), a
     * given one in whole frames, and what no window can advance by */
    int stride = -1;
    mg_error e = {0};
    CHECK(mg_extend_stride_frames(&SMALL, 0, &stride, &e) == MG_OK && stride == 900,
          "stride: the default is 18 s (got %d frames)", stride);
    CHECK(mg_extend_stride_frames(&SMALL, 10.011, &stride, &e) == MG_OK && stride == 501,
          "stride: given, rounded to frames (got %d)", stride);
    mg_model_info w4 = SMALL, w1 = SMALL;
    w4.max_frames = 4, w4.max_duration = 0.08;
    w1.max_frames = 1, w1.max_duration = 0.02;
    CHECK(mg_extend_stride_frames(&w4, 0, &stride, &e) == MG_OK && stride == 2,
          "stride: the default is half a window shorter than 36 s (got %d)", stride);
    CHECK(mg_extend_stride_frames(&w1, 0, &stride, &e) == MG_OK && stride == 0,
          "stride: a window of one frame has none (got %d)", stride);
    const double bad_stride[] = {0.009, 40.9, 41, -1};
    for (size_t i = 0; i < sizeof bad_stride / sizeof bad_stride[0]; i++) {
        memset(&e, 0, sizeof e);
        CHECK(mg_extend_stride_frames(&SMALL, bad_stride[i], &stride, &e) == MG_ERR_INVALID &&
                  strcmp(e.field, "extend_stride") == 0 && strstr(e.msg, "at least one frame"),
              "stride: %g s is refused naming extend_stride (%s)", bad_stride[i], e.msg);
    }
    return check_summary("test_duration");
}
