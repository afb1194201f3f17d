/* Channel layouts between the engine and audio files. The engine's audio is
 * planar, [channels, n] with the left channel first (a stereo model decodes
 * each channel alone); files and the streaming encoder take interleaved
 * frames. */
#ifndef MG_CHANNELS_H
#define MG_CHANNELS_H
#include <stddef.h>

/* planar channel c at planar + c * stride (c < channels, n samples each)
 * -> out, n interleaved frames of `channels` samples. */
void mg_channels_interleave(const float *planar, int channels, size_t n, size_t stride,
                            float *out);
/* n interleaved frames of in_channels samples -> out, planar [out_channels,
 * n]: the channels as they are when the counts match, averaged into mono
 * (as mg_audio_downmix) for a mono out, a mono in copied to every channel
 * (as the reference gives a mono prompt to a stereo model). Channel counts
 * are 1 or 2. */
void mg_channels_to_planar(const float *in, int in_channels, size_t n, int out_channels,
                           float *out);
#endif
