/* Analysis -> prompt: the documented example, table look-ups, unknown values,
 * 10..25 words and no repeated phrase over many combinations, determinism. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "service/prompt.h"

static int count_words(const char *s)
{
    int n = 0;
    for (const char *c = s; *c; c++)
        if (*c != ' ' && (c == s || c[-1] == ' '))
            n++;
    return n;
}

/* Every comma-separated piece appears once; no empty piece, no double or
 * edge spaces. Returns 1 when well formed. */
static int well_formed(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || s[0] == ' ' || s[n - 1] == ' ' || s[n - 1] == ',' || strstr(s, "  ") ||
        strstr(s, ",,"))
        return 0;
    char *copy = strdup(s);
    if (!copy)
        return 0;
    const char *pieces[64];
    int np = 0, ok = 1;
    for (char *save = NULL, *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        while (*t == ' ')
            t++;
        if (!*t || np == 64) {
            ok = 0;
            break;
        }
        for (int i = 0; i < np; i++)
            if (strcmp(pieces[i], t) == 0)
                ok = 0;
        pieces[np++] = t;
    }
    free(copy);
    return ok;
}

static char *make(const mg_analysis *a)
{
    char    *p = NULL;
    mg_error err = { 0 };
    mg_code  rc = mg_prompt_from_analysis(a, &p, &err);
    if (rc != MG_OK) {
        printf("make: %s\n", err.msg);
        return NULL;
    }
    return p;
}

static void test_example(void)
{
    const char *genres[] = { "electronic" };
    mg_analysis a = { .mood = "joyful", .has_energy = 1, .energy = 8, .genres = genres,
                      .n_genres = 1, .has_tempo = 1, .tempo_bpm = 120, .has_style = 1,
                      .style_level = 7, .vocal_type = "instrumental" };
    char *p = make(&a);
    CHECK(p != NULL, "example: no prompt");
    if (!p)
        return;
    printf("example: %s (%d words)\n", p, count_words(p));
    static const char *const want[] = {
        "modern electronic", "uplifting cheerful", "moderate upbeat tempo",
        "with synthesizers, electronic drums, bass", "pristine clarity with professional mastering",
        "instrumental", "powerful driving dynamics", "high quality production",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        CHECK(strstr(p, want[i]) != NULL, "example: \"%s\" not in \"%s\"", want[i], p);
    CHECK(strncmp(p, "modern electronic, uplifting cheerful, ", 39) == 0, "example order: %s", p);
    CHECK(count_words(p) >= 10 && count_words(p) <= 25, "example: %d words", count_words(p));
    CHECK(well_formed(p), "example: repeated or empty phrase: %s", p);
    char *q = make(&a);
    CHECK(q && strcmp(p, q) == 0, "example: not deterministic");
    free(q);
    free(p);
}

/* One analysis, and substrings the prompt must (or must not) contain. */
typedef struct {
    const char *name;
    mg_analysis a;
    const char *want[4];
    const char *not_want[2];
} case_t;

static const char *const g_rock[] = { "Rock" };
static const char *const g_unknown[] = { "vaporwave" };
static const char *const g_prog[] = { "Progressive  Rock!" };
static const char *const g_hiphop[] = { "Hip-Hop" };
static const char *const g_two[] = { "jazz", "Soul" };
static const char *const g_same[] = { "edm", "Electronic" };
static const char *const g_blank[] = { "  ", "!!" };
static const char *const i_dup[] = { "Piano", "piano", " PIANO " };
static const char *const i_given[] = { "cello", "harp" };

static const case_t cases[] = {
    { "synonym mood", { .mood = "Happy" }, { "uplifting cheerful" }, { NULL } },
    { "mood inside text", { .mood = "very calm and quiet" }, { "peaceful serene" }, { NULL } },
    { "unknown mood", { .mood = "Bittersweetish" }, { "bittersweetish atmosphere" }, { NULL } },
    { "no mood, low energy", { .has_energy = 1, .energy = 1 },
      { "calm gentle", "soft gentle dynamics" }, { NULL } },
    { "no mood, high energy", { .has_energy = 1, .energy = 10 },
      { "intense energetic", "explosive high energy dynamics" }, { NULL } },
    { "known genre", { .genres = g_rock, .n_genres = 1 },
      { "contemporary rock", "with electric guitar, bass guitar, drums" }, { NULL } },
    { "unknown genre", { .genres = g_unknown, .n_genres = 1 },
      { "vaporwave", "with piano, bass, drums" }, { NULL } },
    { "genre word inside text", { .genres = g_prog, .n_genres = 1 },
      { "progressive rock", "electric guitar" }, { NULL } },
    { "genre synonym", { .genres = g_hiphop, .n_genres = 1 },
      { "contemporary hip hop", "808 bass" }, { NULL } },
    { "two genres", { .genres = g_two, .n_genres = 2 },
      { "jazz with r&b influences", "with piano, electric piano, upright bass" }, { NULL } },
    { "same genre twice", { .genres = g_same, .n_genres = 2 }, { "contemporary electronic," },
      { "influences" } },
    { "blank genres", { .genres = g_blank, .n_genres = 2 }, { "contemporary music" }, { NULL } },
    { "no genre", { .mood = "sad" }, { "contemporary music", "melancholic emotional" }, { NULL } },
    { "instruments deduplicated", { .instruments = i_dup, .n_instruments = 3 },
      { "with piano," }, { "piano, piano" } },
    { "instruments given", { .genres = g_rock, .n_genres = 1, .instruments = i_given,
                             .n_instruments = 2 }, { "with cello, harp" }, { "electric guitar" } },
    { "vintage style", { .has_style = 1, .style_level = 0 },
      { "vintage music", "warm lo-fi analog texture" }, { NULL } },
    { "futuristic style", { .has_style = 1, .style_level = 10 },
      { "futuristic music", "cutting-edge polished sound design" }, { NULL } },
    { "slow tempo", { .has_tempo = 1, .tempo_bpm = 50 }, { "very slow tempo" }, { NULL } },
    { "fast tempo", { .has_tempo = 1, .tempo_bpm = 180 }, { "very fast tempo" }, { NULL } },
    { "no tempo", { .mood = "calm" }, { NULL }, { " tempo" } },
    { "female vocals", { .vocal_type = "Female" }, { "female vocals" }, { "instrumental" } },
    { "male and female", { .vocal_type = "male and female" }, { "male and female vocals" },
      { NULL } },
    { "unknown vocals", { .vocal_type = "Yodel" }, { "yodel vocals" }, { NULL } },
    { "unknown vocals ending in vocals", { .vocal_type = "robotic vocals" },
      { "robotic vocals" }, { "vocals vocals" } },
    { "no vocals given", { .mood = "calm" }, { NULL }, { "vocals" } },
    { "NaN counts as not given", { .has_energy = 1, .energy = NAN, .has_style = 1,
                                   .style_level = NAN, .has_tempo = 1, .tempo_bpm = NAN },
      { "balanced dynamics", "contemporary music" }, { " tempo" } },
    { "out-of-range clamped", { .has_energy = 1, .energy = 99, .has_style = 1,
                                .style_level = -5 },
      { "explosive", "vintage" }, { NULL } },
    { "invalid UTF-8 dropped", { .mood = "\xff\xfe" "cozy\xc0\xaf" }, { "cozy atmosphere" },
      { "\xff" } },
    { "UTF-8 kept", { .mood = "m\xc3\xa9lancolique" }, { "m\xc3\xa9lancolique atmosphere" },
      { NULL } },
    { "empty analysis", { 0 }, { "contemporary music", "high quality production" }, { NULL } },
};

static void test_cases(void)
{
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const case_t *c = &cases[i];
        char *p = make(&c->a);
        CHECK(p != NULL, "%s: no prompt", c->name);
        if (!p)
            continue;
        for (int k = 0; k < 4 && c->want[k]; k++)
            CHECK(strstr(p, c->want[k]) != NULL, "%s: \"%s\" not in \"%s\"", c->name, c->want[k], p);
        for (int k = 0; k < 2 && c->not_want[k]; k++)
            CHECK(strstr(p, c->not_want[k]) == NULL, "%s: \"%s\" in \"%s\"", c->name,
                  c->not_want[k], p);
        int w = count_words(p);
        CHECK(w >= 10 && w <= 25, "%s: %d words: %s", c->name, w, p);
        CHECK(well_formed(p), "%s: malformed: %s", c->name, p);
        free(p);
    }
}

/* Many combinations, including the longest free text: always 10..25 words,
 * well formed and the same twice. */
static void test_combinations(void)
{
    static const char *const moods[] = {
        NULL, "joyful", "sad", "calm", "angry", "epic", "dreamy", "unknownmood",
        "extraordinarily long mood description with many words",
    };
    static const char *const g1[] = { "electronic" };
    static const char *const g2[] = { "rock", "jazz" };
    static const char *const g3[] = { "supercalifragilistic wonderfulness extravaganza",
                                      "another totally unknown genre name" };
    static const char *const g8[] = { "pop", "metal", "classical", "cinematic", "folk", "latin",
                                      "lofi", "ambient" };
    static const struct { const char *const *v; size_t n; } genre_sets[] = {
        { NULL, 0 }, { g1, 1 }, { g2, 2 }, { g3, 2 }, { g8, 8 },
    };
    static const char *const i3[] = { "grand piano", "string quartet", "tubular bells" };
    static const char *const ilong[] = { "very long instrument name here", "second long instrument name",
                                         "third long instrument name", "fourth" };
    static const struct { const char *const *v; size_t n; } instr_sets[] = {
        { NULL, 0 }, { i3, 1 }, { i3, 3 }, { ilong, 4 },
    };
    static const char *const vocal_types[] = { NULL, "instrumental", "female", "choir",
                                               "spoken word", "some unknown vocal style" };
    static const float levels[] = { -1, 0, 3, 5, 7.5f, 10 };
    static const float tempos[] = { -1, 40, 90, 120, 150, 200 };

    int combos = 0, bad_words = 0, bad_form = 0, nondet = 0, failed = 0, min_w = 99, max_w = 0;
    for (size_t m = 0; m < sizeof moods / sizeof moods[0]; m++)
    for (size_t g = 0; g < sizeof genre_sets / sizeof genre_sets[0]; g++)
    for (size_t in = 0; in < sizeof instr_sets / sizeof instr_sets[0]; in++)
    for (size_t v = 0; v < sizeof vocal_types / sizeof vocal_types[0]; v++)
    for (size_t e = 0; e < sizeof levels / sizeof levels[0]; e += 2)
    for (size_t s = 1; s < sizeof levels / sizeof levels[0]; s += 2)
    for (size_t t = 0; t < sizeof tempos / sizeof tempos[0]; t++) {
        mg_analysis a = {
            .mood = moods[m], .genres = genre_sets[g].v, .n_genres = genre_sets[g].n,
            .instruments = instr_sets[in].v, .n_instruments = instr_sets[in].n,
            .vocal_type = vocal_types[v],
            .has_energy = levels[e] >= 0, .energy = levels[e],
            .has_style = levels[s] >= 0, .style_level = levels[s],
            .has_tempo = tempos[t] >= 0, .tempo_bpm = tempos[t],
        };
        char *p = make(&a), *q = make(&a);
        combos++;
        if (!p || !q) {
            failed++;
        } else {
            int w = count_words(p);
            min_w = w < min_w ? w : min_w;
            max_w = w > max_w ? w : max_w;
            if (w < 10 || w > 25) {
                if (bad_words++ < 3)
                    printf("bad word count %d: %s\n", w, p);
            }
            if (!well_formed(p) && bad_form++ < 3)
                printf("malformed: %s\n", p);
            nondet += strcmp(p, q) != 0;
        }
        free(p);
        free(q);
    }
    printf("combinations: %d, words %d..%d\n", combos, min_w, max_w);
    CHECK(failed == 0, "combinations: %d failed", failed);
    CHECK(bad_words == 0, "combinations: %d outside 10..25 words", bad_words);
    CHECK(bad_form == 0, "combinations: %d malformed", bad_form);
    CHECK(nondet == 0, "combinations: %d not deterministic", nondet);
}

static void test_errors(void)
{
    mg_error    err = { 0 };
    char       *p = (char *)1;
    mg_analysis a = { 0 };
    CHECK(mg_prompt_from_analysis(NULL, &p, &err) == MG_ERR_INVALID, "NULL analysis accepted");
    CHECK(mg_prompt_from_analysis(&a, NULL, &err) == MG_ERR_INVALID, "NULL out accepted");
}

static void test_utf8(void)
{
    static const struct { const char *s; size_t len, want; } cases[] = {
        { "a", 1, 1 },
        { "\xc3\xa9", 2, 2 },
        { "\xe2\x82\xac", 3, 3 },
        { "\xf0\x9f\x8e\xb5", 4, 4 },
        { "\xc3", 1, 0 },               /* truncated */
        { "\xe2\x82", 2, 0 },
        { "\xc0\xaf", 2, 0 },           /* overlong */
        { "\xe0\x80\xaf", 3, 0 },
        { "\xed\xa0\x80", 3, 0 },       /* surrogate */
        { "\xf4\x90\x80\x80", 4, 0 },   /* above U+10FFFF */
        { "\x80", 1, 0 },               /* lone continuation */
        { "\xff", 1, 0 },
        { "\xc3\x28", 2, 0 },           /* bad continuation */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        CHECK(mg_utf8_seq_len((const unsigned char *)cases[i].s, cases[i].len) == cases[i].want,
              "utf8 case %zu", i);
    CHECK(mg_utf8_seq_len((const unsigned char *)"", 0) == 0, "utf8 empty");
}

int main(void)
{
    test_example();
    test_cases();
    test_combinations();
    test_errors();
    test_utf8();
    return check_summary("prompt");
}
