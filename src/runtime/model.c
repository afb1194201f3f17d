#include "runtime/model.h"
#include "runtime/scheduler.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* "cuda" -> 0, "cuda:N" -> N; -1 when the name is not a CUDA device. */
static int cuda_index(const char *dev)
{
    if (strcmp(dev, "cuda") == 0)
        return 0;
    if (strncmp(dev, "cuda:", 5) != 0 || dev[5] < '0' || dev[5] > '9')
        return -1;
    char *end;
    long n = strtol(dev + 5, &end, 10);
    return *end || n > 255 ? -1 : (int)n;
}

/* The runtime's choices that follow from what the new backend can do. */
static void pick_policies(mg_model *m)
{
    mg_backend_caps caps;
    mg_backend_get_caps(m->be, &caps);
    m->encodec_batch_jobs = caps.batched_encodec_cheap;
}

/* The backend named by opt->device, with matrix weights in opt->dtype and
 * the switches of opt->backend (kept in m->backend_opts for a re-creation).
 * "auto" takes GPU 0 when it is usable (bf16 unless f32 was asked for), else
 * the CPU; m->device says which. */
static mg_code mg_model_pick_backend(mg_model *m, const mg_model_options *opt, mg_error *err)
{
    if (opt && opt->backend)
        m->backend_opts = *opt->backend;
    else
        mg_backend_options_default(&m->backend_opts);
    const char *dev = opt && opt->device ? opt->device : "cpu";
    const char *dt = opt && opt->dtype ? opt->dtype : NULL;
    int is_auto = strcmp(dev, "auto") == 0, gpu = cuda_index(dev);
    if (!is_auto && gpu < 0 && strcmp(dev, "cpu") != 0)
        return mg_fail_field(err, MG_ERR_INVALID, "device",
                             "unknown device '%s' (expected cpu, cuda, cuda:N or auto)", dev);
    mg_dtype wdt = MG_DT_F32;
    if (!dt || strcmp(dt, "f32") == 0)
        wdt = MG_DT_F32;
    else if (strcmp(dt, "bf16") == 0)
        wdt = MG_DT_BF16;
    else if (strcmp(dt, "q8") == 0)
        wdt = MG_DT_Q8;
    else
        return mg_fail_field(err, MG_ERR_INVALID, "dtype",
                             "unknown weight format '%s' (expected f32, bf16 or q8)", dt);
#ifdef MG_HAVE_CUDA
    /* the GPU keeps matrix weights in bf16 (default) or f32; q8 is a CPU format,
     * so "auto" with q8 means the CPU */
    if (gpu >= 0 && wdt == MG_DT_Q8)
        return mg_fail_field(err, MG_ERR_UNSUPPORTED, "dtype",
                             "weight format 'q8' is not implemented on CUDA (use bf16 or f32)");
    if ((gpu >= 0 || is_auto) && wdt != MG_DT_Q8) {
        mg_error probe = {0};
        mg_dtype mdt = dt && wdt == MG_DT_F32 ? MG_DT_F32 : MG_DT_BF16;
        if (gpu < 0)
            gpu = 0;
        mg_code rc = mg_backend_cuda_create(&m->be, gpu, mdt, &m->backend_opts,
                                            is_auto ? &probe : err);
        if (rc == MG_OK) {
            snprintf(m->device, sizeof m->device, "cuda:%d", gpu);
            snprintf(m->dtype, sizeof m->dtype, "%s", mdt == MG_DT_F32 ? "f32" : "bf16");
            pick_policies(m);
            return MG_OK;
        }
        if (!is_auto)
            return mg_fail_context(err, "device '%s'", dev);
    }
#else
    if (gpu >= 0)
        return mg_fail_field(err, MG_ERR_UNSUPPORTED, "device",
                             "device '%s': this build has no CUDA backend (built without nvcc "
                             "or with CUDA=0)", dev);
#endif
    snprintf(m->device, sizeof m->device, "cpu");
    snprintf(m->dtype, sizeof m->dtype, "%s",
             wdt == MG_DT_Q8 ? "q8" : wdt == MG_DT_BF16 ? "bf16" : "f32");
    mg_code rc = mg_backend_cpu_create(&m->be, opt ? opt->n_threads : 0, wdt, &m->backend_opts,
                                       err);
    if (rc == MG_OK)
        pick_policies(m);
    return rc;
}

/* T5, decoder and EnCodec weights onto m->be (from the loader's mapping
 * and, when valid, the converted-weights cache). */
static mg_code load_parts(mg_model *m, mg_error *err)
{
    mg_code rc = mg_t5_load(&m->t5, &m->ld, &m->cfg, err);
    if (rc == MG_OK)
        rc = mg_decoder_load(&m->dec, &m->ld, &m->cfg, err);
    if (rc == MG_OK)
        rc = mg_encodec_load(&m->ec, &m->ld, &m->cfg, err);
    return rc;
}

static void free_parts(mg_model *m)
{
    if (m->ec)
        mg_encodec_free(m->ec);
    m->ec = NULL;
    mg_decoder_free(&m->dec);
    memset(&m->dec, 0, sizeof m->dec);
    if (m->t5.cfg)
        mg_t5_free(&m->t5);
    memset(&m->t5, 0, sizeof m->t5);
}

int mg_model_device_lost(const mg_model *m)
{
    return m->be && m->be->ops->lost && m->be->ops->lost(m->be);
}

mg_code mg_model_recover(mg_model *m, mg_error *err)
{
    char device[sizeof m->device], dtype[sizeof m->dtype];
    snprintf(device, sizeof device, "%s", m->device);
    snprintf(dtype, sizeof dtype, "%s", m->dtype);
    free_parts(m);
    mg_loader_drop_copies(&m->ld);
    if (m->be)
        m->be->ops->destroy(m->be);
    m->be = m->ld.be = NULL;
    /* the same device and format as before, not "auto" again */
    mg_backend_options backend = m->backend_opts;
    mg_model_options opt = {.n_threads = m->n_threads, .device = device, .dtype = dtype,
                            .backend = &backend};
    mg_code rc = mg_model_pick_backend(m, &opt, err);
    if (rc == MG_OK) {
        m->ld.be = m->be;
        if (!m->wcache.valid || m->wcache.stale)
            m->ld.wcache = NULL; /* nothing is written again: do not record */
        rc = load_parts(m, err);
    }
    if (rc != MG_OK) {
        free_parts(m);
        m->broken = 1;
        snprintf(m->broken_msg, sizeof m->broken_msg, "%.200s", err->msg);
    }
    return rc;
}

mg_code mg_model_load(mg_model **out, const char *dir, const mg_model_options *opt,
                      mg_error *err)
{
    *out = NULL;
    mg_model *m = calloc(1, sizeof *m);
    if (!m)
        return mg_fail(err, MG_ERR_NOMEM, "out of memory");
    pthread_mutex_init(&m->run, NULL);
    char path[4096];
    mg_code rc = mg_config_load(&m->cfg, dir, err);
    if (rc == MG_OK)
        rc = mg_model_pick_backend(m, opt, err);
    if (rc == MG_OK) {
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        rc = mg_loader_open(&m->ld, path, m->be, err);
    }
    const char *wc = opt ? opt->weights_cache : NULL;
    mg_backend_caps caps = {0};
    if (rc == MG_OK)
        mg_backend_get_caps(m->be, &caps);
    if (rc == MG_OK && m->be->ops->matrix_nbytes && caps.weight_dtype != MG_DT_F32 && wc &&
        *wc && strcmp(wc, "off") != 0) {
        char cpath[4096];
        mg_wcache_path(cpath, sizeof cpath, wc, dir, m->dtype);
        char tag[128];
        snprintf(tag, sizeof tag, "%s %s", m->dtype, caps.matrix_layout ? caps.matrix_layout : "");
        rc = mg_wcache_open(&m->wcache, cpath, &m->ld.st, tag, err);
        if (rc == MG_OK)
            m->ld.wcache = &m->wcache;
    }
    m->n_threads = opt ? opt->n_threads : 0;
    if (rc == MG_OK)
        rc = load_parts(m, err);
    if (rc == MG_OK) {
        snprintf(path, sizeof path, "%s/spiece.model", dir);
        if (access(path, F_OK) == 0) {
            rc = mg_tokenizer_load_file(&m->tok, path, err);
            if (rc == MG_OK && mg_tokenizer_vocab_size(m->tok) > m->cfg.t5_vocab)
                rc = mg_fail(err, MG_ERR_CORRUPT,
                             "%s: %d pieces, more than text_encoder.vocab_size %d", path,
                             mg_tokenizer_vocab_size(m->tok), m->cfg.t5_vocab);
        }
    }
    if (rc == MG_OK && m->ld.wcache)
        mg_wcache_write(&m->wcache);
    if (rc == MG_OK)
        rc = mg_sched_create(&m->sched, m, opt && opt->max_batch > 0 ? opt->max_batch
                                                                   : MG_DEFAULT_BATCH, err);
    if (rc != MG_OK) {
        mg_model_free(m);
        return rc;
    }
    *out = m;
    return MG_OK;
}

void mg_model_free(mg_model *m)
{
    if (!m)
        return;
    mg_sched_destroy(m->sched);
    free_parts(m);
    if (m->tok)
        mg_tokenizer_free(m->tok);
    mg_loader_close(&m->ld);
    if (m->be)
        m->be->ops->destroy(m->be);
    mg_wcache_close(&m->wcache);
    pthread_mutex_destroy(&m->run);
    free(m);
}

const mg_config *mg_model_config(const mg_model *m) { return &m->cfg; }

const char *mg_model_load_note(const mg_model *m) { return m->wcache.note; }
const char *mg_model_device(const mg_model *m) { return m->device; }
const char *mg_model_dtype(const mg_model *m) { return m->dtype; }

void mg_model_activity(const mg_model *m, int *running, int *waiting)
{
    mg_sched_load(m->sched, running, waiting);
}
int mg_model_has_tokenizer(const mg_model *m) { return m->tok != NULL; }
