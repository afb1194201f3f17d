#include "model/sampling.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint64_t splitmix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

double mg_rng_uniform(uint64_t seed, uint64_t step, uint64_t row)
{
    uint64_t h = splitmix64(splitmix64(splitmix64(seed) ^ step) ^ row);
    return (double)(h >> 11) * (1.0 / 9007199254740992.0); /* 53 bits */
}

void mg_cfg_mix(const float *cond, const float *uncond, float g, float *out, int n)
{
    for (int i = 0; i < n; i++)
        out[i] = uncond[i] + (cond[i] - uncond[i]) * g;
}

static int cmp_desc(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x < y) - (x > y);
}

/* The k-th largest of a[0..n) (1-based k), reordering a: quickselect, linear
 * on average, where sorting all 2048 scores of each codebook was ~0.4 ms of
 * every decode step. The same value a descending sort puts at k-1. */
static float kth_largest(float *a, int n, int k)
{
    int lo = 0, hi = n - 1, want = k - 1;
    while (lo < hi) {
        float x = a[lo + (hi - lo) / 2];
        int i = lo, j = hi;
        while (i <= j) {
            while (a[i] > x)
                i++;
            while (a[j] < x)
                j--;
            if (i <= j) {
                float t = a[i];
                a[i++] = a[j];
                a[j--] = t;
            }
        }
        /* [lo, j] >= x >= [i, hi], and everything between equals x */
        if (want <= j)
            hi = j;
        else if (want >= i)
            lo = i;
        else
            return a[want];
    }
    return a[want];
}

void mg_softmax(const float *scores, float *probs, int n)
{
    float mx = -INFINITY;
    for (int i = 0; i < n; i++)
        if (scores[i] > mx)
            mx = scores[i];
    float sum = 0;
    for (int i = 0; i < n; i++) {
        probs[i] = scores[i] == -INFINITY ? 0.0f : expf(scores[i] - mx);
        sum += probs[i];
    }
    for (int i = 0; i < n; i++)
        probs[i] /= sum;
}

void mg_warp_scores(float *scores, int n, const mg_sampling *s, float *scratch)
{
    if (s->temperature != 1.0f)
        for (int i = 0; i < n; i++)
            scores[i] = scores[i] / s->temperature;
    if (s->top_k > 0 && s->top_k < n) {
        /* drop everything strictly below the k-th largest (ties survive) */
        memcpy(scratch, scores, (size_t)n * sizeof *scratch);
        float kth = kth_largest(scratch, n, s->top_k);
        for (int i = 0; i < n; i++)
            if (scores[i] < kth)
                scores[i] = -INFINITY;
    }
    if (s->top_p < 1.0f) {
        /* keep the smallest set of the most likely tokens whose mass reaches
         * top_p: remove, in ascending order, tokens whose cumulative mass
         * stays <= 1 - top_p; always keep the most likely one */
        float *probs = scratch;
        mg_softmax(scores, probs, n);
        float *sorted = scratch + n;
        memcpy(sorted, probs, (size_t)n * sizeof *sorted);
        qsort(sorted, (size_t)n, sizeof *sorted, cmp_desc);
        float cum = 0, cut = -1.0f; /* probabilities <= cut are removed */
        for (int i = n - 1; i > 0; i--) {
            if (cum + sorted[i] > 1.0f - s->top_p)
                break;
            cum += sorted[i];
            cut = sorted[i];
        }
        if (cut >= 0) {
            int keep = mg_argmax(probs, n); /* ties at the cut must not remove everything */
            for (int i = 0; i < n; i++)
                if (probs[i] <= cut && i != keep)
                    scores[i] = -INFINITY;
        }
    }
}

int mg_argmax(const float *x, int n)
{
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best])
            best = i;
    return best;
}

int mg_draw(const float *probs, int n, double u)
{
    double cum = 0;
    int last = 0;
    for (int i = 0; i < n; i++) {
        if (probs[i] <= 0)
            continue;
        cum += probs[i];
        last = i;
        if (u < cum)
            return i;
    }
    return last; /* rounding left u above the total */
}

void mg_select_token_row(const float *logits, int rows, int r, int V, const mg_sampling *s,
                         uint64_t seed, uint64_t step, float *scores, int32_t *tokens,
                         float *scratch)
{
    float *sc = scores + (int64_t)r * V;
    const float *cond = logits + (int64_t)r * V;
    if (s->guidance_scale > 1.0f)
        mg_cfg_mix(cond, logits + ((int64_t)rows + r) * V, s->guidance_scale, sc, V);
    else
        memcpy(sc, cond, (size_t)V * sizeof *sc);
    if (!s->do_sample) {
        tokens[r] = mg_argmax(sc, V);
        return;
    }
    mg_warp_scores(sc, V, s, scratch);
    mg_softmax(sc, scratch, V);
    tokens[r] = mg_draw(scratch, V, mg_rng_uniform(seed, step, (uint64_t)r));
}

void mg_select_tokens(const float *logits, int rows, int V, const mg_sampling *s,
                      uint64_t seed, uint64_t step, float *scores, int32_t *tokens,
                      float *scratch)
{
    for (int r = 0; r < rows; r++)
        mg_select_token_row(logits, rows, r, V, s, seed, step, scores, tokens, scratch);
}
