/* Token selection: classifier-free guidance, temperature, top-k, top-p,
 * softmax and a seeded, counter-based draw (the same numbers on any backend,
 * thread count or batch). */
#ifndef MG_SAMPLING_H
#define MG_SAMPLING_H
#include <stdint.h>

typedef struct {
    int      do_sample;       /* 0: greedy argmax */
    float    temperature;     /* > 0 */
    int      top_k;           /* 0: off */
    float    top_p;           /* 1: off */
    float    guidance_scale;  /* <= 1: no guidance */
} mg_sampling;

/* A uniform in [0, 1) that depends only on (seed, step, row). */
double mg_rng_uniform(uint64_t seed, uint64_t step, uint64_t row);

/* out = uncond + (cond - uncond) * g */
void mg_cfg_mix(const float *cond, const float *uncond, float g, float *out, int n);
/* Temperature, top-k, top-p on one row of scores, in place (-inf = removed),
 * in the reference's order. Greedy skips them (argmax of the mixed scores). */
void mg_warp_scores(float *scores, int n, const mg_sampling *s, float *scratch);
void mg_softmax(const float *scores, float *probs, int n);
int  mg_argmax(const float *x, int n); /* first index on ties */
/* Inverse-CDF draw from probs with uniform u. */
int  mg_draw(const float *probs, int n, double u);

/* Row r of mg_select_tokens alone (rows are independent: backends may run
 * them in parallel). */
void mg_select_token_row(const float *logits, int rows, int r, int V, const mg_sampling *s,
                         uint64_t seed, uint64_t step, float *scores, int32_t *tokens,
                         float *scratch);
/* One step for `rows` rows of V scores: logits holds rows conditional rows,
 * then (guidance > 1) rows unconditional rows. scores [rows, V] receives the
 * processed scores, tokens the choices. scratch: 2*V floats. */
void mg_select_tokens(const float *logits, int rows, int V, const mg_sampling *s,
                      uint64_t seed, uint64_t step, float *scores, int32_t *tokens,
                      float *scratch);
#endif
