#include "io/level.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "io/echo_impl.h"

/* ---- names ---- */

static const char *const level_names[] = { "limit", "clip", "off" };

mg_code mg_level_parse(const char *name, size_t len, mg_level *out, mg_error *err)
{
    if (!out)
        return mg_fail_field(err, MG_ERR_INVALID, "level", "level: NULL argument");
    for (size_t i = 0; name && i < sizeof level_names / sizeof level_names[0]; i++) {
        if (strlen(level_names[i]) == len && strncasecmp(level_names[i], name, len) == 0) {
            *out = (mg_level)i;
            return MG_OK;
        }
    }
    char shown[40];
    mg_echo_value(shown, sizeof shown, name, len);
    return mg_fail_field(err, MG_ERR_INVALID, "level",
                         "level: unknown output level \"%s\" (expected limit, clip or off)", shown);
}

const char *mg_level_name(mg_level l)
{
    if ((unsigned)l < sizeof level_names / sizeof level_names[0])
        return level_names[l];
    return "unknown";
}

/* ---- the stage ----
 *
 * The limiter delays the signal by L frames (the look-ahead). For each input
 * frame t it computes the gain that frame needs, g[t] = min(1, ceiling /
 * peak[t]), then
 *   m[t] = min(g[t-L .. t])          (a sliding minimum, kept as a deque)
 *   G[t] = mean(m[t-L+1 .. t])       (a box filter: the gain moves smoothly
 *                                     over L frames, never as a step)
 * and outputs frame t-L scaled by G[t] (through a release filter that can
 * only lower it). Every m in G[t]'s window covers frame t-L, so
 * G[t] <= g[t-L]: the output never exceeds the ceiling. Where every g in
 * reach is 1 the gain is exactly 1 and the samples pass bit for bit. */

typedef struct {
    uint64_t t;
    double   g;
} gain_at;

struct mg_level_stage {
    mg_level level;
    int      channels;
    size_t   lookahead;     /* L frames; 0 for clip and off */
    uint64_t t;             /* frames consumed */
    float   *delay;         /* L frames of input, slot t % L */
    gain_at *mins;          /* the sliding-minimum deque, capacity L + 1 */
    size_t   mins_head, mins_len;
    double  *box;           /* the last L values of m, slot t % L */
    double   box_sum;
    size_t   box_below;     /* how many of them are below 1 */
    double   gain;          /* the released gain applied to the output */
    double   release;       /* the release filter's coefficient per frame */
};

mg_code mg_level_stage_open(mg_level_stage **out, mg_level l, int sample_rate, int channels,
                            mg_error *err)
{
    if (!out)
        return mg_fail(err, MG_ERR_INVALID, "level stage: NULL argument");
    *out = NULL;
    if ((unsigned)l > MG_LEVEL_OFF)
        return mg_fail_field(err, MG_ERR_INVALID, "level", "level: bad value %d", (int)l);
    if (sample_rate <= 0 || sample_rate > 1000000)
        return mg_fail(err, MG_ERR_INVALID, "level stage: bad sample rate %d", sample_rate);
    if (channels < 1 || channels > 2)
        return mg_fail(err, MG_ERR_INVALID, "level stage: %d channels (1 or 2)", channels);
    mg_level_stage *s = calloc(1, sizeof *s);
    if (!s)
        return mg_fail(err, MG_ERR_NOMEM, "level stage: out of memory");
    s->level = l;
    s->channels = channels;
    if (l == MG_LEVEL_LIMIT) {
        size_t L = (size_t)sample_rate * MG_LEVEL_LOOKAHEAD_MS / 1000;
        s->lookahead = L ? L : 1;
        s->delay = calloc(s->lookahead * (size_t)channels, sizeof *s->delay);
        s->mins = calloc(s->lookahead + 1, sizeof *s->mins);
        s->box = malloc(s->lookahead * sizeof *s->box);
        if (!s->delay || !s->mins || !s->box) {
            mg_level_stage_free(s);
            return mg_fail(err, MG_ERR_NOMEM, "level stage: out of memory");
        }
        for (size_t i = 0; i < s->lookahead; i++)
            s->box[i] = 1.0;
        s->box_sum = (double)s->lookahead;
        s->gain = 1.0;
        s->release = 1.0 - exp(-1000.0 / ((double)sample_rate * MG_LEVEL_RELEASE_MS));
    }
    *out = s;
    return MG_OK;
}

size_t mg_level_stage_delay(const mg_level_stage *s)
{
    return s ? s->lookahead : 0;
}

void mg_level_stage_free(mg_level_stage *s)
{
    if (!s)
        return;
    free(s->delay);
    free(s->mins);
    free(s->box);
    free(s);
}

/* Samples far above full scale (or infinite) are taken as 80 dB over it, so
 * the gain stays a normal number and the product finite. */
#define LIMIT_INPUT_MAX 1e4f

static float sanitize(float v)
{
    if (isnan(v))
        return 0.0f;
    return v > LIMIT_INPUT_MAX ? LIMIT_INPUT_MAX : v < -LIMIT_INPUT_MAX ? -LIMIT_INPUT_MAX : v;
}

/* One frame through the limiter; writes the delayed frame to out and returns
 * 1 once the look-ahead is full, else 0. */
static int limit_frame(mg_level_stage *s, const float *in, float *out)
{
    const size_t L = s->lookahead, C = (size_t)s->channels;
    const uint64_t t = s->t++;
    float x[2];
    double peak = 0.0;
    for (size_t c = 0; c < C; c++) {
        x[c] = sanitize(in[c]);
        peak = fmax(peak, fabs((double)x[c]));
    }
    double g = peak > (double)MG_LEVEL_CEILING ? (double)MG_LEVEL_CEILING / peak : 1.0;

    /* sliding minimum of g over frames t-L .. t */
    const size_t cap = L + 1;
    while (s->mins_len && s->mins[(s->mins_head + s->mins_len - 1) % cap].g >= g)
        s->mins_len--;
    s->mins[(s->mins_head + s->mins_len) % cap] = (gain_at){ t, g };
    s->mins_len++;
    while (s->mins[s->mins_head].t + L < t) {
        s->mins_head = (s->mins_head + 1) % cap;
        s->mins_len--;
    }
    double m = s->mins[s->mins_head].g;

    /* box filter over the last L values of m */
    size_t slot = (size_t)(t % L);
    double old = s->box[slot];
    s->box_below += (m < 1.0) - (old < 1.0);
    s->box[slot] = m;
    if (slot == L - 1) {
        /* recompute the running sum once per turn so rounding cannot drift */
        double sum = 0.0;
        for (size_t i = 0; i < L; i++)
            sum += s->box[i];
        s->box_sum = sum;
    } else {
        s->box_sum += m - old;
    }
    double target = s->box_below ? fmin(1.0, s->box_sum / (double)L) : 1.0;

    /* release: the gain falls at once to the target and recovers slowly;
     * it never exceeds the target, so the ceiling holds */
    if (target <= s->gain)
        s->gain = target;
    else {
        s->gain += s->release * (target - s->gain);
        if (target == 1.0 && 1.0 - s->gain < 1e-6)
            s->gain = 1.0;   /* back to exact pass-through */
    }

    int emitted = 0;
    float *held = s->delay + slot * C;
    if (t >= L) {
        for (size_t c = 0; c < C; c++) {
            if (s->gain == 1.0) {
                out[c] = held[c];
            } else {
                float v = (float)((double)held[c] * s->gain);
                /* rounding of the product only; the gain already keeps it in */
                out[c] = v > MG_LEVEL_CEILING ? MG_LEVEL_CEILING
                       : v < -MG_LEVEL_CEILING ? -MG_LEVEL_CEILING : v;
            }
        }
        emitted = 1;
    }
    for (size_t c = 0; c < C; c++)
        held[c] = x[c];
    return emitted;
}

size_t mg_level_stage_process(mg_level_stage *s, const float *in, size_t n, float *out)
{
    const size_t C = (size_t)s->channels;
    switch (s->level) {
    case MG_LEVEL_LIMIT: {
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
            k += (size_t)limit_frame(s, in + i * C, out + k * C);
        return k;
    }
    case MG_LEVEL_CLIP:
        for (size_t i = 0; i < n * C; i++) {
            float v = in[i];
            out[i] = isnan(v) ? 0.0f : v > 1.0f ? 1.0f : v < -1.0f ? -1.0f : v;
        }
        return n;
    case MG_LEVEL_OFF:
        for (size_t i = 0; i < n * C; i++)
            out[i] = isnan(in[i]) ? 0.0f : in[i];
        return n;
    }
    return 0;
}

size_t mg_level_stage_flush(mg_level_stage *s, float *out)
{
    if (s->level != MG_LEVEL_LIMIT)
        return 0;
    /* Silence behind the last frame pushes the held frames out; silence needs
     * no gain, so it cannot change theirs. */
    static const float zero[2] = { 0.0f, 0.0f };
    size_t k = 0;
    for (size_t i = 0; i < s->lookahead; i++)
        k += (size_t)limit_frame(s, zero, out + k * (size_t)s->channels);
    return k;
}
