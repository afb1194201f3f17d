/* A model folder's parts: opened, loaded onto a backend, closed. */
#include "runtime/model_impl.h"

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

/* The backend named by opt->device, with matrix weights in opt->dtype and
 * the switches of opt->backend (kept in m->backend_opts for a re-creation).
 * "auto" takes GPU 0 when it is usable (bf16 unless f32 was asked for), else
 * the CPU; m->device says which. */
mg_code mg_model_pick_backend(mg_model_parts *m, const mg_model_options *opt, mg_error *err)
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
    return mg_backend_cpu_create(&m->be, opt ? opt->n_threads : 0, wdt, &m->backend_opts, err);
}

mg_code mg_model_load_weights(mg_model_parts *p, mg_error *err)
{
    mg_code rc = mg_t5_load(&p->t5, &p->ld, &p->cfg, err);
    if (rc == MG_OK)
        rc = mg_decoder_load(&p->dec, &p->ld, &p->cfg, err);
    if (rc == MG_OK)
        rc = mg_encodec_load(&p->ec, &p->ld, &p->cfg, err);
    return rc;
}

void mg_model_free_weights(mg_model_parts *p)
{
    if (p->ec)
        mg_encodec_free(p->ec);
    p->ec = NULL;
    mg_decoder_free(&p->dec);
    memset(&p->dec, 0, sizeof p->dec);
    if (p->t5.cfg)
        mg_t5_free(&p->t5);
    memset(&p->t5, 0, sizeof p->t5);
}

mg_code mg_model_parts_open(mg_model_parts *p, const char *dir, const mg_model_options *opt,
                            mg_error *err)
{
    char path[4096];
    mg_code rc = mg_config_load(&p->cfg, dir, err);
    if (rc == MG_OK)
        rc = mg_model_pick_backend(p, opt, err);
    if (rc == MG_OK)
        rc = mg_loader_open_dir(&p->ld, dir, p->be, err);
    const char *wc = opt ? opt->weights_cache : NULL;
    mg_backend_caps caps = {0};
    if (rc == MG_OK)
        mg_backend_get_caps(p->be, &caps);
    if (rc == MG_OK && p->be->ops->matrix_nbytes && caps.weight_dtype != MG_DT_F32 && wc &&
        *wc && strcmp(wc, "off") != 0) {
        char cpath[4096];
        mg_wcache_path(cpath, sizeof cpath, wc, dir, p->dtype);
        char tag[128];
        snprintf(tag, sizeof tag, "%s %s", p->dtype, caps.matrix_layout ? caps.matrix_layout : "");
        const mg_safetensors *files;
        size_t n_files = mg_loader_files(&p->ld, &files);
        rc = mg_wcache_open(&p->wcache, cpath, files, n_files, tag, err);
        if (rc == MG_OK)
            p->ld.wcache = &p->wcache;
    }
    p->n_threads = opt ? opt->n_threads : 0;
    if (rc == MG_OK)
        rc = mg_model_load_weights(p, err);
    if (rc == MG_OK) {
        snprintf(path, sizeof path, "%s/spiece.model", dir);
        if (access(path, F_OK) == 0) {
            rc = mg_tokenizer_load_file(&p->tok, path, err);
            if (rc == MG_OK && mg_tokenizer_vocab_size(p->tok) > p->cfg.t5_vocab)
                rc = mg_fail(err, MG_ERR_CORRUPT,
                             "%s: %d pieces, more than text_encoder.vocab_size %d", path,
                             mg_tokenizer_vocab_size(p->tok), p->cfg.t5_vocab);
        }
    }
    if (rc == MG_OK && p->ld.wcache)
        mg_wcache_write(&p->wcache);
    if (rc != MG_OK)
        mg_model_parts_close(p);
    return rc;
}

void mg_model_parts_close(mg_model_parts *p)
{
    mg_model_free_weights(p);
    if (p->tok)
        mg_tokenizer_free(p->tok);
    p->tok = NULL;
    mg_loader_close(&p->ld);
    if (p->be)
        p->be->ops->destroy(p->be);
    p->be = NULL;
    mg_wcache_close(&p->wcache);
}
