/* A model folder's loaded parts: its configuration, the backend they run on,
 * the weights (T5, decoder, EnCodec) and the tokenizer. The parts know
 * nothing of generations or of the scheduler that runs them: the runtime
 * handle (runtime_impl.h) holds them beside its scheduler. Front ends reach
 * the parts through model_parts.h. */
#ifndef MG_MODEL_IMPL_H
#define MG_MODEL_IMPL_H
#include "runtime/musicgen.h"
#include "io/loader.h"
#include "io/tokenizer.h"
#include "io/weights_cache.h"
#include "model/decoder.h"
#include "model/encodec.h"
#include "model/t5.h"

typedef struct {
    mg_config     cfg;
    mg_backend   *be;
    char          device[16]; /* "cpu", "cuda:0", ... */
    char          dtype[8];   /* matrix weight format: "f32", "bf16", "q8" */
    mg_loader     ld;        /* keeps the weight files mapped: weights may live in them */
    mg_wcache     wcache;    /* converted weights cached on disk (mapped: weights may live in it) */
    mg_tokenizer *tok;       /* NULL when the folder has no spiece.model */
    mg_t5         t5;
    mg_decoder    dec;
    mg_encodec   *ec;
    int           n_threads; /* as loaded: a re-created backend gets the same */
    mg_backend_options backend_opts; /* likewise */
} mg_model_parts;

/* Everything from DIR: configuration, backend (opt->device, opt->dtype),
 * weights (through opt->weights_cache) and tokenizer. On failure what was
 * taken is freed (mg_model_parts_close on a zeroed struct is safe). */
mg_code mg_model_parts_open(mg_model_parts *p, const char *dir, const mg_model_options *opt,
                            mg_error *err);
void    mg_model_parts_close(mg_model_parts *p);

/* The backend named by opt->device, with matrix weights in opt->dtype and
 * the switches of opt->backend, into p->be (p->device and p->dtype say
 * which; p->backend_opts keeps the switches). */
mg_code mg_model_pick_backend(mg_model_parts *m, const mg_model_options *opt, mg_error *err);
/* T5, decoder and EnCodec weights onto p->be (from the loader's mapping and,
 * when valid, the converted-weights cache), and their release. */
mg_code mg_model_load_weights(mg_model_parts *p, mg_error *err);
void    mg_model_free_weights(mg_model_parts *p);
#endif
