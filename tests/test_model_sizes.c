/* The larger MusicGen checkpoints: a random model of musicgen-medium's shape
 * (hidden 1536, 24 heads of 64, ffn 6144, the T5-base encoder and EnCodec
 * 32 kHz) but 2 decoder layers instead of 48, to keep the test's time and
 * disk small (the widths, not the depth, are what a kernel sized for small
 * would get wrong). With q8 weights: the config reads back as written, the
 * decoder keeps 8-bit attention caches with 24 heads, its teacher-forced
 * logits (and bf16's) stay as near float32's as the format allows, and a seeded
 * generation with guidance gives in-range codes and audio of the right
 * length. make bench measures the real depths (bench/sizes.sh). */
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "forced_logits.h"
#include "runtime/model_parts.h"

enum { LAYERS = 2 };

static void check_medium_config(const mg_config *c)
{
    CHECK(c->dec_hidden == 1536 && c->dec_heads == 24 && c->dec_ffn == 6144 &&
          c->dec_layers == LAYERS && c->dec_vocab == 2048 && c->num_codebooks == 4 &&
          c->max_positions == 2048,
          "decoder: hidden %d, heads %d, ffn %d, layers %d, vocab %d, codebooks %d, positions %d",
          c->dec_hidden, c->dec_heads, c->dec_ffn, c->dec_layers, c->dec_vocab, c->num_codebooks,
          c->max_positions);
    CHECK(c->t5_d_model == 768 && c->t5_layers == 12 && c->t5_heads == 12 && c->t5_d_kv == 64 &&
          c->t5_d_ff == 3072 && c->t5_vocab == 32128,
          "T5-base: d_model %d, layers %d, heads %d, d_kv %d, d_ff %d, vocab %d", c->t5_d_model,
          c->t5_layers, c->t5_heads, c->t5_d_kv, c->t5_d_ff, c->t5_vocab);
    CHECK(c->sample_rate == 32000 && c->hop == 640 && c->ec_codebook_size == 2048,
          "EnCodec 32 kHz: rate %d, hop %d, codebook %d", c->sample_rate, c->hop,
          c->ec_codebook_size);
}

/* The decoder's caches for q8 weights: 8-bit rows where the CPU has VNNI. */
static void check_q8_caches(mg_model *m)
{
    mg_backend_caps caps = {0};
    mg_backend_get_caps(mg_model_backend(m), &caps);
    const mg_config *c = mg_model_config(m);
    if (!caps.kv_q8row_fits || !caps.kv_q8row_fits(mg_model_backend(m), c->dec_heads, 64, 2048)) {
        SKIP("this CPU has no AVX-512 VNNI: q8 models keep BF16 attention caches here");
        return;
    }
    mg_error err = {0};
    mg_dec_state ds;
    mg_tensor *enc = NULL;
    uint8_t emask[2] = {1, 1};
    int have = mg_tensor_new2(&enc, mg_model_backend(m), 2, c->dec_hidden, &err) == MG_OK &&
               mg_dec_state_init(mg_model_decoder(m), &ds, 1, 8, enc, emask, 2, &err) == MG_OK;
    CHECK(have, "decoding state: %s", err.msg);
    if (have) {
        CHECK(ds.k_cache[0]->dtype == MG_DT_Q8ROW && ds.v_cache[0]->dtype == MG_DT_Q8ROW,
              "q8 weights, 24 heads of 64: 8-bit attention caches");
        mg_dec_state_free(mg_model_decoder(m), &ds);
    }
    mg_tensor_free(enc);
}

/* A compressed format against f32, teacher-forced: max |dlogit| within
 * bound of the logit scale. */
static void check_near_f32(mg_model *m, const char *dtype, mg_model *f32m, double bound)
{
    enum { L = 12 };
    int V = mg_model_config(f32m)->dec_vocab;
    float *ref = tu_forced_logits(f32m, L), *got = tu_forced_logits(m, L);
    CHECK(ref && got, "%s and f32 teacher-forced runs", dtype);
    if (ref && got) {
        double scale = 0, dev = 0;
        int64_t same_argmax = 0, rows = (int64_t)2 * 4 * L;
        for (int64_t r = 0; r < rows; r++) {
            int64_t a = 0, b = 0;
            for (int64_t v = 0; v < V; v++) {
                int64_t i = r * V + v;
                scale = fmax(scale, fabs(ref[i]));
                dev = fmax(dev, fabs(got[i] - ref[i]));
                a = ref[i] > ref[r * V + a] ? v : a;
                b = got[i] > got[r * V + b] ? v : b;
            }
            same_argmax += a == b;
        }
        printf("# medium shape, %s against f32 over %d teacher-forced columns: max |dlogit| / "
               "logit scale %.2e, argmax equal in %lld of %lld rows\n", dtype, L, dev / scale,
               (long long)same_argmax, (long long)rows);
        CHECK(scale > 0 && dev / scale < bound, "%s stays near f32 (%.2e, bound %.0e)", dtype,
              dev / scale, bound);
    }
    free(ref);
    free(got);
}

/* A seeded generation with guidance through the public entry point. */
static void check_generation(mg_model *m)
{
    static const int32_t ids[5] = {100, 200, 300, 400, 1};
    static const uint8_t mask[5] = {1, 1, 1, 1, 1};
    const mg_config *c = mg_model_config(m);
    mg_gen_params p;
    mg_gen_params_default(m, &p);
    p.max_new_tokens = 12;
    p.seed = 5;
    p.sampling.do_sample = 1;
    p.sampling.top_k = 250;
    p.sampling.guidance_scale = 3;
    mg_gen_result res;
    mg_error err = {0};
    mg_code rc = mg_generate_ids(m, ids, mask, 1, 5, &p, NULL, &res, &err);
    CHECK(rc == MG_OK, "q8 generation with guidance: %s", err.msg);
    if (rc != MG_OK)
        return;
    int in_range = res.frames > 0, finite = 1, sound = 0;
    for (int64_t i = 0; i < (int64_t)res.batch * c->num_codebooks * res.frames; i++)
        in_range &= res.codes[i] >= 0 && res.codes[i] < c->ec_codebook_size;
    for (size_t i = 0; i < res.n_samples; i++) {
        finite &= isfinite(res.audio[i]);
        sound |= res.audio[i] != 0.0f;
    }
    CHECK(res.batch == 1 && in_range, "%d frames of codes, all in [0, %d)", res.frames,
          c->ec_codebook_size);
    CHECK(res.n_samples == (size_t)res.frames * (size_t)c->hop && finite && sound,
          "%zu samples for %d frames, finite and not silent", res.n_samples, res.frames);
    mg_gen_result_free(&res);
}

int main(int argc, char **argv)
{
    /* the tool sits beside this test binary (build/ or build-san/) */
    char self[4096], tool[4200], dir[] = "/tmp/test_model_sizes.XXXXXX", mdir[64], cmd[8400];
    snprintf(self, sizeof self, "%s", argc > 0 ? argv[0] : "");
    snprintf(tool, sizeof tool, "%s/musicgen-mkmodel", dirname(self));
    if (access(tool, X_OK) != 0) {
        CHECK(0, "%s not built", tool);
        return check_summary("test_model_sizes");
    }
    if (!mkdtemp(dir)) {
        CHECK(0, "cannot create a temporary directory");
        return check_summary("test_model_sizes");
    }
    snprintf(mdir, sizeof mdir, "%s/m", dir);
    /* bf16: half the bytes to write; q8 and f32 are converted from it */
    snprintf(cmd, sizeof cmd, "'%s' --shape medium --layers %d --dtype bf16 --seed 3 -o '%s' 2>&1",
             tool, LAYERS, mdir);
    int st = system(cmd);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "mkmodel --shape medium (%s)", cmd);

    mg_model *q8m = NULL, *f32m = NULL, *bf16m = NULL;
    mg_error err = {0};
    mg_model_options q8opt = {.n_threads = 2, .dtype = "q8", .weights_cache = "off"};
    mg_model_options f32opt = {.n_threads = 2, .dtype = "f32", .weights_cache = "off"};
    mg_model_options bf16opt = {.n_threads = 2, .dtype = "bf16", .weights_cache = "off"};
    if (mg_model_load(&q8m, mdir, &q8opt, &err) != MG_OK) {
        CHECK(0, "load the medium shape, q8: %s", err.msg);
    } else {
        check_medium_config(mg_model_config(q8m));
        check_q8_caches(q8m);
        check_generation(q8m);
        if (mg_model_load(&f32m, mdir, &f32opt, &err) != MG_OK)
            CHECK(0, "load the medium shape, f32: %s", err.msg);
        else if (mg_model_load(&bf16m, mdir, &bf16opt, &err) != MG_OK)
            CHECK(0, "load the medium shape, bf16: %s", err.msg);
        else {
            /* q8: the bound test_generate holds tiny64 to; bf16 rounds each
             * weight 16x finer than q8's 8 bits, bench_fidelity measures it
             * at ~5e-3 of the scale on musicgen-small's shape */
            check_near_f32(q8m, "q8", f32m, 5e-2);
            check_near_f32(bf16m, "bf16", f32m, 1e-2);
        }
    }
    mg_model_free(q8m);
    mg_model_free(f32m);
    mg_model_free(bf16m);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0, "remove %s", dir);
    return check_summary("test_model_sizes");
}
