/* Loader error paths: every broken model is a clear error naming the tensor,
 * field or file, never a crash. */
#include <sys/stat.h>

#include "check.h"
#include "io/config.h"
#include "runtime/musicgen.h"
#include "test_util.h"

static char golden_a[4096];

static int load_dir(const char *dir, mg_error *err)
{
    mg_model *m = NULL;
    mg_model_options opt = {.n_threads = 1};
    mg_code rc = mg_model_load(&m, dir, &opt, err);
    mg_model_free(m);
    return rc;
}

/* --- pure header parsing --- */
static mg_code parse_bytes(const char *header, uint64_t hlen_field, size_t data_bytes, mg_error *err)
{
    size_t hl = strlen(header), len = 8 + hl + data_bytes;
    uint8_t *buf = calloc(len, 1);
    for (int i = 0; i < 8; i++)
        buf[i] = (uint8_t)(hlen_field >> (8 * i));
    memcpy(buf + 8, header, hl);
    mg_safetensors st;
    mg_code rc = mg_st_parse(&st, buf, len, err);
    if (rc == MG_OK)
        mg_st_close(&st);
    free(buf);
    return rc;
}

static void test_header_parsing(void)
{
    mg_error err = {0};
    const char *ok = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    CHECK(parse_bytes(ok, strlen(ok), 8, &err) == MG_OK, "valid header: %s", err.msg);
    CHECK(parse_bytes(ok, strlen(ok), 4, &err) == MG_ERR_CORRUPT && strstr(err.msg, "'a'"),
          "truncated data names the tensor: %s", err.msg);
    CHECK(parse_bytes(ok, 1ull << 60, 8, &err) == MG_ERR_CORRUPT, "absurd header length");
    CHECK(parse_bytes("{not json", 9, 0, &err) == MG_ERR_CORRUPT && strstr(err.msg, "JSON"),
          "header not JSON: %s", err.msg);
    CHECK(parse_bytes("[1,2]", 5, 0, &err) == MG_ERR_CORRUPT, "header not an object");
    const char *bad_dt = "{\"w\":{\"dtype\":\"F8_E4M3\",\"shape\":[2],\"data_offsets\":[0,2]}}";
    CHECK(parse_bytes(bad_dt, strlen(bad_dt), 2, &err) == MG_ERR_UNSUPPORTED && strstr(err.msg, "'w'"),
          "unsupported dtype: %s", err.msg);
    const char *size = "{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}";
    CHECK(parse_bytes(size, strlen(size), 8, &err) == MG_ERR_CORRUPT, "size mismatch: %s", err.msg);
    const char *neg = "{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,0]}}";
    CHECK(parse_bytes(neg, strlen(neg), 0, &err) == MG_ERR_CORRUPT, "negative dim");
    const char *back = "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}";
    CHECK(parse_bytes(back, strlen(back), 8, &err) == MG_ERR_CORRUPT, "reversed offsets");
    mg_safetensors st;
    CHECK(mg_st_parse(&st, (const uint8_t *)"abc", 3, &err) == MG_ERR_CORRUPT, "3-byte file");
}

static void test_half_conversions(void)
{
    CHECK(mg_f16_to_f32(0x3c00) == 1.0f && mg_f16_to_f32(0xc000) == -2.0f, "f16 basics");
    CHECK(mg_f16_to_f32(0x0001) == 5.9604644775390625e-08f, "f16 subnormal");
    CHECK(mg_bf16_to_f32(0x3f80) == 1.0f, "bf16 one");
    int roundtrip = 1;
    for (uint32_t h = 0; h < 0x7c00; h++)
        roundtrip &= mg_f32_to_f16(mg_f16_to_f32((uint16_t)h)) == h;
    CHECK(roundtrip, "every finite f16 survives f16 -> f32 -> f16");
    CHECK(mg_f32_to_bf16(1.00390625f) == 0x3f80, "bf16 round to nearest even");
}

/* --- model folders with one thing broken --- */
typedef struct { const char *name, *rename, *dtype; int drop, swap_shape; } edit_spec;

static int apply_edit(tu_tensor *t, void *ud)
{
    const edit_spec *e = ud;
    if (strcmp(t->name, e->name))
        return 1;
    if (e->drop)
        return 0;
    if (e->rename)
        snprintf(t->name, sizeof t->name, "%s", e->rename);
    if (e->dtype)
        snprintf(t->dtype, sizeof t->dtype, "%s", e->dtype);
    if (e->swap_shape && t->ndim == 2) {
        int64_t a = t->shape[0];
        t->shape[0] = t->shape[1];
        t->shape[1] = a;
    }
    return 1;
}

static void expect_broken(const edit_spec *e, mg_code want, const char *must_mention)
{
    char dir[256], src[4200], dst[4200];
    if (tu_model_dir(dir, sizeof dir, golden_a)) {
        CHECK(0, "cannot make a temp model dir");
        return;
    }
    snprintf(src, sizeof src, "%s/model.safetensors", golden_a);
    snprintf(dst, sizeof dst, "%s/model.safetensors", dir);
    mg_error err = {0};
    if (tu_rewrite(src, dst, apply_edit, (void *)e) == 0) {
        mg_code rc = load_dir(dir, &err);
        CHECK(rc == want && strstr(err.msg, must_mention), "%s: got %s '%s', want %s mentioning '%s'",
              e->name, mg_code_name(rc), err.msg, mg_code_name(want), must_mention);
    } else {
        CHECK(0, "rewrite failed for %s", e->name);
    }
    tu_rm_dir(dir);
}

static void test_broken_models(void)
{
    edit_spec missing = {.name = "decoder.lm_heads.2.weight", .drop = 1};
    expect_broken(&missing, MG_ERR_NOT_FOUND, "decoder.lm_heads.2.weight");
    edit_spec shape = {.name = "decoder.model.decoder.layers.1.fc1.weight", .swap_shape = 1};
    expect_broken(&shape, MG_ERR_CORRUPT, "layers.1.fc1.weight");
    edit_spec dtype = {.name = "text_encoder.encoder.final_layer_norm.weight", .dtype = "I32"};
    expect_broken(&dtype, MG_ERR_CORRUPT, "final_layer_norm");
    edit_spec codebook = {.name = "audio_encoder.quantizer.layers.3.codebook.embed", .drop = 1};
    expect_broken(&codebook, MG_ERR_NOT_FOUND, "quantizer.layers.3.codebook.embed");
    edit_spec wn = {.name = "audio_encoder.decoder.layers.0.conv.weight_g", .drop = 1};
    expect_broken(&wn, MG_ERR_NOT_FOUND, "layers.0.conv");

    /* truncated file */
    char dir[256], src[4200], dst[4200];
    if (tu_model_dir(dir, sizeof dir, golden_a) == 0) {
        snprintf(src, sizeof src, "%s/model.safetensors", golden_a);
        snprintf(dst, sizeof dst, "%s/model.safetensors", dir);
        mg_error err = {0};
        if (tu_copy(src, dst) == 0) {
            struct stat sb;
            stat(dst, &sb);
            CHECK(truncate(dst, sb.st_size - 1000) == 0, "truncate");
            mg_code rc = load_dir(dir, &err);
            CHECK(rc == MG_ERR_CORRUPT && strstr(err.msg, "truncated"), "truncated file: %s", err.msg);
            CHECK(truncate(dst, 0) == 0, "truncate to 0");
            rc = load_dir(dir, &err);
            CHECK(rc == MG_ERR_CORRUPT && strstr(err.msg, "empty"), "empty file: %s", err.msg);
        }
        tu_rm_dir(dir);
    }
    mg_error err = {0};
    CHECK(load_dir("/nonexistent/model", &err) == MG_ERR_NOT_FOUND && strstr(err.msg, "config.json"),
          "missing folder: %s", err.msg);
}

/* Both spellings of weight norm, and F16/BF16 files, load. */
static int rename_wn(tu_tensor *t, void *ud)
{
    char *p;
    if ((p = strstr(t->name, "conv.weight_g")))
        strcpy(p, "conv.parametrizations.weight.original0");
    else if ((p = strstr(t->name, "conv.weight_v")))
        strcpy(p, "conv.parametrizations.weight.original1");
    return 1;
}

static int to_half(tu_tensor *t, void *ud)
{
    if (!strcmp(t->dtype, "F32"))
        snprintf(t->dtype, sizeof t->dtype, "%s", (const char *)ud);
    return 1;
}

static void test_alternative_files(void)
{
    struct { tu_edit_fn fn; void *ud; const char *what; } cases[] = {
        {rename_wn, NULL, "parametrizations.weight.original0/1"},
        {to_half, "F16", "F16 weights"},
        {to_half, "BF16", "BF16 weights"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char dir[256], src[4200], dst[4200];
        if (tu_model_dir(dir, sizeof dir, golden_a))
            continue;
        snprintf(src, sizeof src, "%s/model.safetensors", golden_a);
        snprintf(dst, sizeof dst, "%s/model.safetensors", dir);
        mg_error err = {0};
        int ok = tu_rewrite(src, dst, cases[i].fn, cases[i].ud) == 0;
        CHECK(ok && load_dir(dir, &err) == MG_OK, "%s load: %s", cases[i].what, err.msg);
        tu_rm_dir(dir);
    }
}

/* --- config values out of range --- */
static void expect_config_error(const char *from, const char *to, const char *field)
{
    char path[4200], *json = NULL;
    size_t len;
    mg_error err = {0};
    snprintf(path, sizeof path, "%s/config.json", golden_a);
    if (mg_read_file(path, &json, &len, 1 << 20, &err) != MG_OK) {
        CHECK(0, "read config: %s", err.msg);
        return;
    }
    char *at = strstr(json, from);
    CHECK(at != NULL, "config text '%s' found", from);
    if (!at) {
        free(json);
        return;
    }
    size_t fl = strlen(from), tl = strlen(to);
    char *edited = malloc(len + tl + 1);
    memcpy(edited, json, (size_t)(at - json));
    memcpy(edited + (at - json), to, tl);
    strcpy(edited + (at - json) + tl, at + fl);
    mg_config cfg;
    mg_code rc = mg_config_parse(&cfg, edited, strlen(edited), NULL, 0, &err);
    CHECK(rc != MG_OK && strstr(err.msg, field), "'%s' -> '%s': %s", from, to, err.msg);
    free(edited);
    free(json);
}

static void test_configs(void)
{
    expect_config_error("\"hidden_size\": 32,", "\"hidden_size\": -32,", "decoder.hidden_size");
    expect_config_error("\"num_codebooks\": 4", "\"num_codebooks\": 4000", "decoder.num_codebooks");
    expect_config_error("\"d_model\": 32", "\"d_model\": \"wide\"", "text_encoder.d_model");
    expect_config_error("\"upsampling_ratios\": [", "\"upsampling_ratios\": [0, ", "upsampling_ratios");
    expect_config_error("\"text_encoder\"", "\"text_encoder_x\"", "text_encoder");
    expect_config_error("\"sampling_rate\": 32000", "\"sampling_rate\": 1e30", "sampling_rate");
    expect_config_error("\"relative_attention_max_distance\": 128", "\"relative_attention_max_distance\": 7", "max_distance");
    expect_config_error("\"relative_attention_num_buckets\": 32", "\"relative_attention_num_buckets\": 2", "num_buckets");
    expect_config_error("\"upsampling_ratios\": [", "\"upsampling_ratios\": [64, 64, 64, ", "upsampling_ratios");
    mg_config cfg;
    mg_error err = {0};
    CHECK(mg_config_parse(&cfg, "{", 1, NULL, 0, &err) == MG_ERR_CORRUPT && strstr(err.msg, "config.json"),
          "bad JSON: %s", err.msg);
    char path[4200], *json = NULL;
    size_t len;
    snprintf(path, sizeof path, "%s/config.json", golden_a);
    if (mg_read_file(path, &json, &len, 1 << 20, &err) == MG_OK) {
        const char *gen = "{\"top_k\": -3}";
        CHECK(mg_config_parse(&cfg, json, len, gen, strlen(gen), &err) != MG_OK &&
              strstr(err.msg, "generation_config.top_k"), "generation top_k: %s", err.msg);
        gen = "{\"top_k\": 250, \"guidance_scale\": 3.0, \"do_sample\": true}";
        CHECK(mg_config_parse(&cfg, json, len, gen, strlen(gen), &err) == MG_OK &&
              cfg.top_k == 250 && cfg.do_sample && cfg.guidance_scale == 3.0f, "generation config read");
        CHECK(cfg.hop == 640 && cfg.num_codebooks == 4 && cfg.dec_vocab == 64, "tiny shapes from config");
    }
    free(json);
}

int main(void)
{
    snprintf(golden_a, sizeof golden_a, "%s/tiny-a", check_golden_dir());
    test_header_parsing();
    test_half_conversions();
    char probe[4200];
    snprintf(probe, sizeof probe, "%s/model.safetensors", golden_a);
    if (access(probe, R_OK) != 0) {
        SKIP("golden tiny-a model not found at %s", golden_a);
    } else {
        test_broken_models();
        test_alternative_files();
        test_configs();
    }
    return check_summary("test_loader");
}
