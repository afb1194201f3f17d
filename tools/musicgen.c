/* musicgen: text-to-music from the command line.
 *   musicgen -m MODEL_DIR -p "prompt" -d SECONDS [-t TEMP] [-k TOPK] [-g GUIDANCE]
 *            [--top-p P] [--greedy] [--seed N] [--threads N] [--dtype f32|bf16|q8]
 *            [--device cpu|cuda|cuda:N|auto] [--weights-cache DIR|off]
 *            [--extend-stride SEC] [--continue AUDIO_FILE] [--level limit|clip|off]
 *            [-f wav|flac|ogg|mp3] -o FILE */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backend_env.h"
#include "io/audio.h"
#include "io/audio_decode.h"
#include "io/channels.h"
#include "io/config.h"
#include "io/level.h"
#include "runtime/duration.h"
#include "runtime/model_info.h"
#include "runtime/musicgen.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: musicgen -m MODEL_DIR -p PROMPT -o FILE [options]\n"
            "  -m, --model DIR        model folder (Hugging Face layout of facebook/musicgen-small)\n"
            "  -p, --prompt TEXT      what the music should be\n"
            "  -d, --duration SEC     seconds of audio, %g up to %g (default %g); past the model's\n"
            "                         window the clip is made window by window (long-form);\n"
            "                         with --continue, the kept prompt's seconds included\n"
            "      --extend-stride SEC  long-form: new seconds each window after the first adds,\n"
            "                         less than the model's window (default %g, or half the window)\n"
            "      --continue FILE    continue this audio (WAV, FLAC, Ogg, MP3): the output is its\n"
            "                         last window - stride seconds, re-decoded, then the new music\n"
            "      --level L          output level: limit (default: a true-peak limiter), clip, or\n"
            "                         off (float WAV, no change)\n"
            "  -t, --temperature T    sampling temperature (default: generation_config.json)\n"
            "  -k, --top-k K          keep the K most likely codes (0 = off)\n"
            "      --top-p P          nucleus sampling mass (1 = off)\n"
            "  -g, --guidance G       classifier-free guidance scale (1 = off)\n"
            "      --greedy           argmax instead of sampling\n"
            "  -s, --seed N           random seed (default 0): same seed, same audio\n"
            "  -j, --threads N        CPU threads (default: all cores)\n"
            "      --dtype FMT        weight format: f32 (exact, CPU default), bf16 (CUDA default) or\n"
            "                         q8 (fastest on the CPU)\n"
            "      --device DEV       cpu (default), cuda, cuda:N, or auto (the GPU when usable)\n"
            "      --weights-cache DIR  keep bf16/q8 weights converted in DIR for the next run\n"
            "                         (default: the model folder; off: convert every time)\n"
            "  -f, --format FMT       wav (16-bit PCM, default), flac, ogg (Opus) or mp3\n"
            "  -o, --output FILE      where to write the audio\n"
            "  -q, --quiet            no progress bar or summary\n",
            MG_MIN_DURATION, MG_MAX_DURATION, MG_DEFAULT_DURATION, MG_DEFAULT_EXTEND_STRIDE);
}

typedef struct {
    double start;
    int    tty;
} progress_state;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int progress(void *ud, int step, int total)
{
    progress_state *p = ud;
    if (!p->tty)
        return 0;
    double el = now_s() - p->start, eta = step ? el / step * (total - step) : 0;
    int width = 30, fill = total ? step * width / total : 0;
    fprintf(stderr, "\r[%.*s%*s] %d/%d steps  %.1fs elapsed  ETA %.1fs ", fill,
            "##############################", width - fill, "", step, total, el, eta);
    if (step == total) /* EnCodec runs next, for about a second on the CPU: say so */
        fprintf(stderr, "\ndecoding the audio (EnCodec)...\n");
    return 0;
}

/* Every usage error: one line naming the option, a pointer to --help, exit 2. */
static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("musicgen: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs("\nmusicgen: see musicgen --help\n", stderr);
    va_end(ap);
    return 2;
}

/* A finite number (the range is checked by the caller, with its own message). */
static int parse_number(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v))
        return -1;
    *out = v;
    return 0;
}

/* --continue FILE: decoded at the model's rate, in the model's channels,
 * planar (io/channels.h: a stereo file to a mono model is downmixed, a mono
 * one to a stereo model goes to both channels). Errors name the option and
 * the file; 1 (not a usage error: the file is at fault). */
static int read_prompt_audio(const char *path, int rate, int channels, mg_decoded_audio *out)
{
    mg_error err = {0};
    char *bytes = NULL;
    size_t n = 0;
    mg_code rc = mg_read_file(path, &bytes, &n, MG_AUDIO_DECODE_MAX_BYTES, &err);
    if (rc != MG_OK) {
        fprintf(stderr, "musicgen: --continue: %s\n", err.msg); /* "PATH: why" */
        return 1;
    }
    rc = mg_audio_decode((const uint8_t *)bytes, n, rate, "--continue", out, &err);
    free(bytes);
    if (rc != MG_OK) {
        fprintf(stderr, "musicgen: %s (%s)\n", err.msg, path); /* "--continue: why" */
        return 1;
    }
    float *planar = malloc(out->frames * (size_t)channels * sizeof *planar);
    if (!planar) {
        fprintf(stderr, "musicgen: --continue: out of memory (%s)\n", path);
        mg_decoded_audio_free(out);
        return 1;
    }
    mg_channels_to_planar(out->samples, out->channels, out->frames, channels, planar);
    free(out->samples);
    out->samples = planar;
    out->channels = channels;
    return 0;
}

/* The option as a user types it: "-d", or "--top-p" for long-only ones. */
static const char *option_name(int c, const struct option *longopts, char *buf, size_t cap)
{
    for (const struct option *o = longopts; o->name; o++)
        if (o->val == c && !(c >= 'a' && c <= 'z')) {
            snprintf(buf, cap, "--%s", o->name);
            return buf;
        }
    snprintf(buf, cap, "-%c", c);
    return buf;
}

int main(int argc, char **argv)
{
    const char *model_dir = NULL, *prompt = NULL, *out_path = NULL, *format = "wav", *dtype = NULL,
               *device = NULL, *weights_cache = NULL, *continue_path = NULL, *level_arg = NULL;
    const char *duration_arg = NULL;  /* -d as typed, for its range message */
    double duration = 0, temp = -1, topk = -1, topp = -1, guidance = -1, seed = 0, threads = 0,
           stride = 0;
    const char *stride_arg = NULL;
    int greedy = 0, quiet = 0;
    static const struct option longopts[] = {
        {"model", 1, 0, 'm'}, {"prompt", 1, 0, 'p'}, {"duration", 1, 0, 'd'},
        {"temperature", 1, 0, 't'}, {"top-k", 1, 0, 'k'}, {"top-p", 1, 0, 'P'},
        {"guidance", 1, 0, 'g'}, {"greedy", 0, 0, 'G'}, {"seed", 1, 0, 's'},
        {"threads", 1, 0, 'j'}, {"format", 1, 0, 'f'}, {"output", 1, 0, 'o'},
        {"quiet", 0, 0, 'q'}, {"help", 0, 0, 'h'}, {"dtype", 1, 0, 'D'},
        {"device", 1, 0, 'V'}, {"weights-cache", 1, 0, 'W'}, {"extend-stride", 1, 0, 'S'},
        {"continue", 1, 0, 'C'}, {"level", 1, 0, 'L'}, {0, 0, 0, 0}};
    /* numeric options and their ranges; -d's and --extend-stride's are the
     * model's (checked below) */
    static const struct {
        int    opt;
        double lo, hi;
    } ranges[] = {
        {'d', -INFINITY, INFINITY}, {'t', 1e-3, 100}, {'k', 0, 1e6}, {'P', 1e-6, 1},
        {'g', 0, 100}, {'s', 0, 9007199254740992.0}, {'j', 1, 256}, {'S', -INFINITY, INFINITY},
    };
    double *values[] = {&duration, &temp, &topk, &topp, &guidance, &seed, &threads, &stride};
    char name[32];
    int c;
    opterr = 0;  /* getopt's own messages name argv[0]; ours say "musicgen:" */
    while ((c = getopt_long(argc, argv, ":m:p:d:t:k:g:s:j:f:o:qh", longopts, NULL)) != -1) {
        switch (c) {
        case 'm': model_dir = optarg; continue;
        case 'p': prompt = optarg; continue;
        case 'G': greedy = 1; continue;
        case 'f': format = optarg; continue;
        case 'o': out_path = optarg; continue;
        case 'q': quiet = 1; continue;
        case 'D': dtype = optarg; continue;
        case 'V': device = optarg; continue;
        case 'W': weights_cache = optarg; continue;
        case 'C': continue_path = optarg; continue;
        case 'L': level_arg = optarg; continue;
        case 'h': usage(stdout); return 0;
        case ':':
            return usage_error("%s needs a value",
                               optopt ? option_name(optopt, longopts, name, sizeof name)
                                      : argv[optind - 1]);
        case '?':
            if (optopt)
                return usage_error("unknown option -%c", optopt);
            return usage_error("unknown option %s", argv[optind - 1]);
        }
        size_t i = 0;
        while (i < sizeof ranges / sizeof ranges[0] && ranges[i].opt != c)
            i++;
        if (i == sizeof ranges / sizeof ranges[0])
            return usage_error("unhandled option %s", option_name(c, longopts, name, sizeof name));
        option_name(c, longopts, name, sizeof name);
        if (parse_number(optarg, values[i]))
            return usage_error("%s: must be a number (got '%s')", name, optarg);
        if (!(*values[i] >= ranges[i].lo && *values[i] <= ranges[i].hi))
            return usage_error("%s: must be at least %.10g and at most %.10g (got %s)", name,
                               ranges[i].lo, ranges[i].hi, optarg);
        if (c == 'd')
            duration_arg = optarg;
        if (c == 'S')
            stride_arg = optarg;
    }
    if (optind != argc)
        return usage_error("unexpected argument '%s'", argv[optind]);
    if (!model_dir || !prompt || !out_path) {
        const char *missing[3];
        int n = 0;
        if (!model_dir)
            missing[n++] = "-m MODEL_DIR";
        if (!prompt)
            missing[n++] = "-p PROMPT";
        if (!out_path)
            missing[n++] = "-o FILE";
        return usage_error("missing %s%s%s%s%s", missing[0], n > 1 ? ", " : "", n > 1 ? missing[1] : "",
                           n > 2 ? ", " : "", n > 2 ? missing[2] : "");
    }
    mg_error err = {0};
    mg_audio_format fmt;
    if (mg_audio_format_parse(format, strlen(format), &fmt, &err) != MG_OK)
        return usage_error("%s", err.msg);  /* "format: ..." */
    mg_level level = MG_LEVEL_LIMIT;
    if (level_arg && mg_level_parse(level_arg, strlen(level_arg), &level, &err) != MG_OK)
        return usage_error("--%s", err.msg);  /* "level: ..." */
    /* -d against the model's range, before its weights load */
    mg_model_info info;
    mg_duration_range range;
    if (mg_model_inspect(model_dir, &info, &err) != MG_OK ||
        mg_duration_limits(&info, MG_MAX_DURATION, 0, &range, &err) != MG_OK) {
        fprintf(stderr, "musicgen: %s\n", err.msg);
        return 1;
    }
    if (!duration_arg)
        duration = range.dflt;
    else if (!(duration >= range.min && duration <= range.max))
        return usage_error("-d: must be at least %.10g and at most %.10g seconds (got %s)",
                           range.min, range.max, duration_arg);
    if (stride_arg && !(stride > 0 && stride < info.max_duration))
        return usage_error("--extend-stride: must be more than 0 and less than %.10g seconds "
                           "(the model's window) (got %s)", info.max_duration, stride_arg);
    mg_decoded_audio prompt_audio = {0};
    if (continue_path && read_prompt_audio(continue_path, info.sample_rate, info.channels, &prompt_audio))
        return 1;
    double t0 = now_s();
    mg_model *m = NULL;
    mg_backend_options backend;
    mg_backend_options_from_env(&backend);
    mg_model_options opt = {.n_threads = (int)threads, .dtype = dtype, .device = device,
                            .weights_cache = weights_cache ? weights_cache : model_dir,
                            .backend = &backend};
    if (mg_model_load(&m, model_dir, &opt, &err) != MG_OK) {
        fprintf(stderr, "musicgen: %s\n", err.msg);
        mg_decoded_audio_free(&prompt_audio);
        return 1;
    }
    if (!quiet && *mg_model_load_note(m))
        fprintf(stderr, "musicgen: %s\n", mg_model_load_note(m));
    double t_load = now_s() - t0;
    mg_gen_params p;
    mg_gen_params_default(m, &p);
    p.duration = (float)duration;
    p.seed = (uint64_t)seed;
    if (temp > 0) p.sampling.temperature = (float)temp;
    if (topk >= 0) p.sampling.top_k = (int)topk;
    if (topp > 0) p.sampling.top_p = (float)topp;
    if (guidance >= 0) p.sampling.guidance_scale = (float)guidance;
    p.sampling.do_sample = !greedy;
    p.extend_stride = (float)stride;
    int rc = 1;
    uint8_t *bytes = NULL;
    size_t n_bytes = 0;
    mg_prompt_audio_fit fit = {0};
    if (prompt_audio.samples) {
        p.prompt_audio = prompt_audio.samples;
        p.prompt_samples = (int64_t)prompt_audio.frames;
        if (mg_gen_prompt_audio_fit(m, p.prompt_samples, p.extend_stride, &fit, &err) != MG_OK) {
            fprintf(stderr, "musicgen: --continue: %s (%s)\n", err.msg, continue_path);
            goto out;
        }
        /* the clip counts the prompt: -d must leave something to generate */
        if (mg_duration_frames(&info, duration) <= fit.frames) {
            rc = usage_error("-d: %s s is not longer than the %.2f s kept of --continue's audio "
                             "(the duration counts the prompt)",
                             duration_arg ? duration_arg : "the default", fit.frames / info.frame_rate);
            goto out;
        }
    }

    progress_state ps = {.start = now_s(), .tty = !quiet && isatty(2)};
    mg_gen_hooks hooks = {.progress = progress, .ud = &ps};
    mg_gen_result res;
    const char *prompts[1] = {prompt};
    if (mg_generate(m, prompts, 1, &p, &hooks, &res, &err) != MG_OK) {
        fprintf(stderr, "musicgen: %s\n", err.msg);
        goto out;
    }
    if (mg_audio_encode_planar(res.audio, res.channels, res.n_samples, res.sample_rate, fmt,
                               level, &bytes, &n_bytes, &err) != MG_OK) {
        fprintf(stderr, "musicgen: %s\n", err.msg);
        mg_gen_result_free(&res);
        goto out;
    }
    FILE *f = fopen(out_path, "wb");
    int write_ok = f && fwrite(bytes, 1, n_bytes, f) == n_bytes;
    int saved = errno;
    if (f && fclose(f) != 0 && write_ok) {
        write_ok = 0;
        saved = errno;
    }
    if (!write_ok) {
        fprintf(stderr, "musicgen: %s: %s\n", out_path, strerror(saved ? saved : EIO));
    } else {
        rc = 0;
        if (!quiet) {
            double audio_s = (double)res.n_samples / res.sample_rate, total = now_s() - t0;
            fprintf(stderr,
                    "musicgen: %s, %.2f s of %s audio (%d frames, %d steps)\n"
                    "  %s, %s weights: load %.2f s, T5 %.1f ms, decode %.2f s (%.1f ms/step), "
                    "EnCodec %.2f s\n"
                    "  total %.2f s, real-time factor %.2f\n",
                    out_path, audio_s, res.channels == 2 ? "stereo" : "mono", res.frames,
                    res.steps, mg_model_device(m),
                    mg_model_dtype(m), t_load, res.t5_ms,
                    res.decode_ms / 1e3, res.decode_ms / (res.steps ? res.steps : 1),
                    res.encodec_ms / 1e3, total, (total - t_load) / audio_s);
            if (prompt_audio.samples)
                fprintf(stderr, "  continued the last %.2f s of %s", res.prompt_frames / info.frame_rate,
                        continue_path);
            if (prompt_audio.samples && res.prompt_trimmed_frames)
                fprintf(stderr, " (%.2f s before them cut to fit the window)",
                        res.prompt_trimmed_frames / info.frame_rate);
            if (prompt_audio.samples)
                fputc('\n', stderr);
        }
    }
    mg_gen_result_free(&res);
out:
    free(bytes);
    mg_model_free(m);
    mg_decoded_audio_free(&prompt_audio);
    return rc;
}
