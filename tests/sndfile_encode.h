/* Audio files written by libsndfile itself (any format it can write, stereo
 * too; the project's own encoder writes mono only), through a temporary
 * file. Shared by the audio decoder's tests and bench_audio_prompt. */
#ifndef MG_TEST_SNDFILE_ENCODE_H
#define MG_TEST_SNDFILE_ENCODE_H
#include <sndfile.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* x[frames * channels] written as format; a malloc'd file of *len bytes, or
 * NULL (sf_strerror(NULL) then says why when libsndfile refused the format). */
static inline uint8_t *sf_encode(const float *x, size_t frames, int channels, int rate,
                                 int format, size_t *len)
{
    /* in blocks: libsndfile's Vorbis writer crashes inside libvorbis when
     * given a minute of stereo in one call */
    enum { BLOCK = 4096 };
    FILE *tmp = tmpfile();
    if (!tmp)
        return NULL;
    SF_INFO  info = { .samplerate = rate, .channels = channels, .format = format };
    SNDFILE *sf = sf_open_fd(fileno(tmp), SFM_WRITE, &info, 0);
    uint8_t *out = NULL;
    if (sf) {
        int ok = 1;
        for (size_t i = 0; ok && i < frames; i += BLOCK) {
            sf_count_t n = (sf_count_t)(frames - i < BLOCK ? frames - i : BLOCK);
            ok = sf_writef_float(sf, x + i * (size_t)channels, n) == n;
        }
        ok &= sf_close(sf) == 0;
        long n = ok && fseek(tmp, 0, SEEK_END) == 0 ? ftell(tmp) : -1;
        if (n > 0 && fseek(tmp, 0, SEEK_SET) == 0 && (out = malloc((size_t)n)) &&
            fread(out, 1, (size_t)n, tmp) != (size_t)n) {
            free(out);
            out = NULL;
        }
        *len = n > 0 ? (size_t)n : 0;
    }
    fclose(tmp);
    return out;
}

#endif
