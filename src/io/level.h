/* The output level stage: what happens to samples above full scale before
 * they are quantised. MusicGen's float output is not bounded to [-1, 1]
 * (real weights give peaks near 2.0), and hard clipping flattens exactly the
 * transients a listener notices.
 *
 *   limit  a causal look-ahead peak limiter (the default): the gain drops
 *          smoothly before a peak so that no sample exceeds MG_LEVEL_CEILING,
 *          and recovers afterwards; a signal that never exceeds the ceiling
 *          passes bit for bit. It needs MG_LEVEL_LOOKAHEAD_MS of future
 *          samples, which the stage holds back and releases at flush, so the
 *          sample count and alignment of the stream are unchanged.
 *   clip   hard clip to [-1, 1].
 *   off    no processing (for float output: WAV as 32-bit float).
 * Every level turns NaN into 0: it is never audio. */
#ifndef MG_LEVEL_H
#define MG_LEVEL_H
#include <stddef.h>
#include "base/error.h"

typedef enum { MG_LEVEL_LIMIT, MG_LEVEL_CLIP, MG_LEVEL_OFF } mg_level;

/* The limiter's peak ceiling: 0.98 (-0.18 dBFS), under full scale with room
 * for a lossy codec's overshoot to stay mostly inside it. */
#define MG_LEVEL_CEILING 0.98f
/* The limiter's look-ahead, which is also its attack time. */
#define MG_LEVEL_LOOKAHEAD_MS 5
/* The limiter's release time constant (gain recovery after a peak). */
#define MG_LEVEL_RELEASE_MS 60

/* Parses name[0..len) (not necessarily NUL-terminated), case-insensitive:
 * "limit", "clip", "off". The error names the field "level" and echoes the
 * rejected value. */
mg_code     mg_level_parse(const char *name, size_t len, mg_level *out, mg_error *err);
/* "limit", "clip", "off" ("unknown" for anything else). */
const char *mg_level_name(mg_level l);

/* A level stage on one stream of interleaved frames. */
typedef struct mg_level_stage mg_level_stage;

mg_code mg_level_stage_open(mg_level_stage **out, mg_level l, int sample_rate, int channels,
                            mg_error *err);
/* Frames the stage holds back (0 for clip and off). */
size_t  mg_level_stage_delay(const mg_level_stage *s);
/* Processes in[0..n) frames; writes the frames that are final to out (room
 * for n frames) and returns their count: n once the look-ahead is full, fewer
 * before. The result depends only on the sequence of samples, never on how
 * it is split into calls. */
size_t  mg_level_stage_process(mg_level_stage *s, const float *in, size_t n, float *out);
/* Releases the frames still held (room for mg_level_stage_delay frames);
 * returns their count. Over a whole stream, process + flush return as many
 * frames as went in. */
size_t  mg_level_stage_flush(mg_level_stage *s, float *out);
void    mg_level_stage_free(mg_level_stage *s);

#endif
