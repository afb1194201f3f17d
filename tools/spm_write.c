#include "spm_write.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Field numbers from sentencepiece_model.proto. */
enum {
    MODEL_PIECES = 1, MODEL_TRAINER_SPEC = 2, MODEL_NORMALIZER_SPEC = 3,
    PIECE_PIECE = 1, PIECE_SCORE = 2, PIECE_TYPE = 3,
    TRAINER_MODEL_TYPE = 3, TRAINER_VOCAB_SIZE = 4,
    TRAINER_UNK_ID = 40, TRAINER_BOS_ID = 41, TRAINER_EOS_ID = 42, TRAINER_PAD_ID = 43,
    TRAINER_UNK_PIECE = 45, TRAINER_BOS_PIECE = 46, TRAINER_EOS_PIECE = 47,
    TRAINER_PAD_PIECE = 48,
    NORM_NAME = 1, NORM_ADD_DUMMY_PREFIX = 3, NORM_REMOVE_EXTRA_WS = 4, NORM_ESCAPE_WS = 5,
};
enum { WIRE_VARINT = 0, WIRE_LEN = 2, WIRE_FIXED32 = 5 };
enum { MODEL_TYPE_UNIGRAM = 1 };

/* Growable byte buffer; a failed allocation sets oom and later appends do nothing,
 * so encoders check once at the end. */
typedef struct {
    uint8_t *p;
    size_t   len, cap;
    int      oom;
} buf;

static void buf_put(buf *b, const void *data, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n)
            cap *= 2;
        uint8_t *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->len, data, n);
    b->len += n;
}

static void put_varint(buf *b, uint64_t v)
{
    uint8_t tmp[10];
    size_t n = 0;
    do {
        tmp[n] = (uint8_t)(v & 0x7f);
        v >>= 7;
        if (v)
            tmp[n] |= 0x80;
        n++;
    } while (v);
    buf_put(b, tmp, n);
}

static void put_tag(buf *b, int field, int wire)
{
    put_varint(b, ((uint64_t)field << 3) | (uint64_t)wire);
}

/* int32 fields: negative values are sign-extended to 64 bits (10 bytes). */
static void put_int32(buf *b, int field, int32_t v)
{
    put_tag(b, field, WIRE_VARINT);
    put_varint(b, (uint64_t)(int64_t)v);
}

static void put_bytes(buf *b, int field, const void *data, size_t n)
{
    put_tag(b, field, WIRE_LEN);
    put_varint(b, n);
    buf_put(b, data, n);
}

static void put_string(buf *b, int field, const char *s)
{
    put_bytes(b, field, s, strlen(s));
}

static void put_float(buf *b, int field, float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    uint8_t le[4] = {(uint8_t)u, (uint8_t)(u >> 8), (uint8_t)(u >> 16), (uint8_t)(u >> 24)};
    put_tag(b, field, WIRE_FIXED32);
    buf_put(b, le, 4);
}

mg_spm_spec mg_spm_default_spec(void)
{
    mg_spm_spec s = {
        .normalizer_name = "identity",
        .add_dummy_prefix = 1, .remove_extra_whitespaces = 1, .escape_whitespaces = 1,
        .unk_id = 2, .bos_id = -1, .eos_id = 1, .pad_id = 0,
    };
    return s;
}

/* The piece text for a special id, or the fallback name if the id is out of range. */
static const char *piece_at(const mg_spm_piece *pieces, size_t n, int id, const char *fallback)
{
    return id >= 0 && (size_t)id < n ? pieces[id].piece : fallback;
}

mg_code mg_spm_encode(const mg_spm_piece *pieces, size_t n, const mg_spm_spec *spec,
                      uint8_t **out, size_t *out_len, mg_error *err)
{
    *out = NULL;
    *out_len = 0;
    if (n > INT32_MAX)
        return mg_fail(err, MG_ERR_INVALID, "spiece: too many pieces");
    for (size_t i = 0; i < n; i++)
        if (!pieces[i].piece || !pieces[i].piece[0])
            return mg_fail(err, MG_ERR_INVALID, "spiece: piece %zu is empty", i);

    buf model = {0}, sub = {0};
    for (size_t i = 0; i < n; i++) {
        sub.len = 0;
        put_string(&sub, PIECE_PIECE, pieces[i].piece);
        put_float(&sub, PIECE_SCORE, pieces[i].score);
        if (pieces[i].type != MG_SPM_NORMAL)  /* NORMAL is the default; real models omit it */
            put_int32(&sub, PIECE_TYPE, (int32_t)pieces[i].type);
        if (sub.oom)
            break;
        put_bytes(&model, MODEL_PIECES, sub.p, sub.len);
    }

    sub.len = 0;
    put_int32(&sub, TRAINER_MODEL_TYPE, MODEL_TYPE_UNIGRAM);
    put_int32(&sub, TRAINER_VOCAB_SIZE, (int32_t)n);
    put_int32(&sub, TRAINER_UNK_ID, spec->unk_id);
    put_int32(&sub, TRAINER_BOS_ID, spec->bos_id);
    put_int32(&sub, TRAINER_EOS_ID, spec->eos_id);
    put_int32(&sub, TRAINER_PAD_ID, spec->pad_id);
    put_string(&sub, TRAINER_UNK_PIECE, piece_at(pieces, n, spec->unk_id, "<unk>"));
    put_string(&sub, TRAINER_BOS_PIECE, piece_at(pieces, n, spec->bos_id, "<s>"));
    put_string(&sub, TRAINER_EOS_PIECE, piece_at(pieces, n, spec->eos_id, "</s>"));
    put_string(&sub, TRAINER_PAD_PIECE, piece_at(pieces, n, spec->pad_id, "<pad>"));
    if (!sub.oom)
        put_bytes(&model, MODEL_TRAINER_SPEC, sub.p, sub.len);

    sub.len = 0;
    put_string(&sub, NORM_NAME, spec->normalizer_name ? spec->normalizer_name : "identity");
    put_int32(&sub, NORM_ADD_DUMMY_PREFIX, spec->add_dummy_prefix != 0);
    put_int32(&sub, NORM_REMOVE_EXTRA_WS, spec->remove_extra_whitespaces != 0);
    put_int32(&sub, NORM_ESCAPE_WS, spec->escape_whitespaces != 0);
    if (!sub.oom)
        put_bytes(&model, MODEL_NORMALIZER_SPEC, sub.p, sub.len);

    int oom = model.oom || sub.oom;
    free(sub.p);
    if (oom) {
        free(model.p);
        return mg_fail(err, MG_ERR_NOMEM, "spiece: out of memory");
    }
    *out = model.p;
    *out_len = model.len;
    return MG_OK;
}

#define SPACE "\xe2\x96\x81"  /* U+2581, SentencePiece's escaped space */

static const char punctuation[] = ".,!?'\"-:;()/&+%#*[]";

/* Common prompt words, most frequent first (duplicates are skipped). */
static const char *const words[] = {
    "the", "and", "with", "of", "for", "in", "on", "to", "an", "by", "from", "at", "as", "is",
    "it", "this", "that", "or", "but", "no", "not", "very", "more", "some", "all", "into",
    "over", "under", "like", "feel", "feeling", "vibe", "vibes", "made", "playing", "played",
    "plays", "play", "using", "use", "featuring", "features", "new", "old", "modern", "classic",
    "vintage", "retro", "music", "song", "songs", "track", "tune", "melody", "melodies",
    "harmony", "harmonies", "rhythm", "rhythms", "tempo", "bpm", "BPM", "chord", "chords",
    "riff", "riffs", "solo", "groove", "bassline", "beat", "beats", "intro", "outro", "verse",
    "chorus", "bridge", "drop", "build", "key", "major", "minor", "scale", "note", "notes",
    "sound", "sounds", "sounding", "style", "genre", "instrumental", "production", "mix",
    "reverb", "distortion", "distorted", "echo", "delay", "filter", "sweep", "bassy", "punchy",
    "crisp", "rich", "deep", "thick", "airy", "lush", "sparse", "layered", "background",
    "soundtrack", "score", "film", "game", "video", "loop", "loops", "sample", "samples",
    "rock", "pop", "jazz", "blues", "funk", "soul", "disco", "house", "techno", "trance",
    "dubstep", "metal", "punk", "folk", "country", "reggae", "hip", "hop", "rap", "classical",
    "orchestral", "orchestra", "cinematic", "ambient", "lofi", "lo", "fi", "chill", "chillout",
    "electronic", "electro", "edm", "dance", "indie", "acoustic", "gospel", "latin", "salsa",
    "samba", "bossa", "nova", "tango", "flamenco", "celtic", "world", "african", "afrobeat",
    "synthwave", "vaporwave", "garage", "grime", "trap", "rnb", "opera", "symphony", "choir",
    "baroque", "minimal", "experimental", "industrial", "grunge", "psychedelic", "progressive",
    "ska", "swing", "bebop", "fusion", "drums", "drum", "guitar", "guitars", "piano", "bass",
    "synth", "synths", "synthesizer", "synthesizers", "violin", "violins", "cello", "strings",
    "string", "flute", "trumpet", "saxophone", "sax", "horn", "horns", "organ", "harp", "banjo",
    "ukulele", "mandolin", "accordion", "harmonica", "clarinet", "oboe", "trombone", "tuba",
    "percussion", "kick", "snare", "hihat", "hat", "cymbal", "cymbals", "claps", "clap", "bell",
    "bells", "marimba", "xylophone", "vibraphone", "sitar", "tabla", "keys", "keyboard", "pad",
    "pads", "lead", "arp", "arpeggio", "arpeggios", "vocals", "vocal", "voice", "calm", "happy",
    "sad", "dark", "bright", "energetic", "relaxing", "relaxed", "epic", "dreamy",
    "melancholic", "uplifting", "cheerful", "peaceful", "aggressive", "angry", "mellow", "warm",
    "cold", "soft", "loud", "heavy", "light", "gentle", "intense", "emotional", "romantic",
    "mysterious", "playful", "groovy", "funky", "catchy", "smooth", "powerful", "driving",
    "slow", "fast", "upbeat", "moderate", "quiet", "atmospheric", "ethereal", "nostalgic",
    "hopeful", "joyful", "triumphant", "tense", "eerie", "spooky", "chilled", "laid", "back",
    "80s", "90s", "70s", "60s", "era", "summer", "winter", "night", "morning", "day", "evening",
    "sunset", "beach", "city", "rain", "ocean", "space", "love", "life", "heart", "dream",
    "dreams", "party", "road", "car", "travel", "adventure", "journey", "festival", "club",
    "radio", "live", "studio", "perfect", "great", "good", "nice", "beautiful", "big", "small",
    "long", "short", "high", "low", "full", "simple", "complex", "steady", "building",
    "rising", "falling", "repetitive", "electric", "analog", "digital", "bit", "chiptune",
    "retrowave", "lounge", "cafe", "coffee", "study", "sleep", "meditation", "yoga", "workout",
    "running", "cooking", "walking", "relax", "focus", "time", "sun", "moon", "star", "stars",
    "fire", "water", "wind", "forest", "mountain", "sky", "home", "people", "guitarist",
    "singer", "band", "artist", "producer", "recorded", "recording", "quality", "tones",
    "tone", "texture", "textures", "wave", "waves", "hook", "hooks", "tempo",
};

/* Appends a piece (a copy of text) unless an identical one exists. */
static void add_piece(mg_spm_piece *pieces, char (*texts)[48], size_t *n, const char *text,
                     mg_spm_type type)
{
    for (size_t i = 0; i < *n; i++)
        if (strcmp(pieces[i].piece, text) == 0)
            return;
    snprintf(texts[*n], sizeof texts[*n], "%s", text);
    pieces[*n].piece = texts[*n];
    /* ids 0-2 are specials with score 0; every later id scores a bit lower */
    pieces[*n].score = type == MG_SPM_NORMAL ? -2.0f - 0.01f * (float)(*n - 3) : 0.0f;
    pieces[*n].type = type;
    (*n)++;
}

mg_code mg_spm_synthetic(uint8_t **out, size_t *out_len, mg_error *err)
{
    *out = NULL;
    *out_len = 0;
    size_t nwords = sizeof words / sizeof words[0];
    size_t nchars = 26 * 2 + 10 + strlen(punctuation);
    size_t cap = 4 + 2 * nchars + nwords;
    mg_spm_piece *pieces = calloc(cap, sizeof *pieces);
    char (*texts)[48] = calloc(cap, sizeof *texts);
    if (!pieces || !texts) {
        free(pieces);
        free(texts);
        return mg_fail(err, MG_ERR_NOMEM, "spiece: out of memory");
    }

    size_t n = 0;
    add_piece(pieces, texts, &n, "<pad>", MG_SPM_CONTROL);
    add_piece(pieces, texts, &n, "</s>", MG_SPM_CONTROL);
    add_piece(pieces, texts, &n, "<unk>", MG_SPM_UNKNOWN);
    add_piece(pieces, texts, &n, SPACE, MG_SPM_NORMAL);

    char chars[128];
    size_t nc = 0;
    for (char c = 'a'; c <= 'z'; c++)
        chars[nc++] = c;
    for (char c = '0'; c <= '9'; c++)
        chars[nc++] = c;
    for (const char *p = punctuation; *p; p++)
        chars[nc++] = *p;
    for (char c = 'A'; c <= 'Z'; c++)
        chars[nc++] = c;
    for (size_t i = 0; i < nc; i++) {
        char bare[2] = {chars[i], 0}, spaced[8];
        snprintf(spaced, sizeof spaced, SPACE "%c", chars[i]);
        add_piece(pieces, texts, &n, bare, MG_SPM_NORMAL);
        add_piece(pieces, texts, &n, spaced, MG_SPM_NORMAL);
    }
    for (size_t i = 0; i < nwords; i++) {
        char spaced[48];
        snprintf(spaced, sizeof spaced, SPACE "%s", words[i]);
        add_piece(pieces, texts, &n, spaced, MG_SPM_NORMAL);
    }

    mg_spm_spec spec = mg_spm_default_spec();
    mg_code rc = mg_spm_encode(pieces, n, &spec, out, out_len, err);
    free(pieces);
    free(texts);
    return rc;
}

mg_code mg_spm_write_synthetic(const char *path, mg_error *err)
{
    uint8_t *data;
    size_t len;
    mg_code rc = mg_spm_synthetic(&data, &len, err);
    if (rc != MG_OK)
        return rc;
    FILE *f = fopen(path, "wb");
    if (!f) {
        free(data);
        return mg_fail(err, MG_ERR_IO, "cannot create %s: %s", path, strerror(errno));
    }
    int ok = fwrite(data, 1, len, f) == len;
    ok &= fflush(f) == 0;
    int saved = errno;
    ok &= fclose(f) == 0;
    free(data);
    if (!ok)
        return mg_fail(err, MG_ERR_IO, "writing %s: %s", path, strerror(saved ? saved : errno));
    return MG_OK;
}
