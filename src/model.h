/* The loaded model: what mg_model is inside the engine (the golden checker
 * and benchmarks use the parts directly). */
#ifndef MG_MODEL_H
#define MG_MODEL_H
#include "musicgen.h"
#include "decoder.h"
#include "encodec.h"
#include "tokenizer.h"

#include <pthread.h>

struct mg_sched;

struct mg_model {
    pthread_mutex_t run;     /* the backend to one user at a time (its pool and scratch are shared) */
    mg_config     cfg;
    mg_backend   *be;
    char          device[16]; /* "cpu", "cuda:0", ... */
    char          dtype[8];   /* matrix weight format: "f32", "bf16", "q8" */
    mg_loader     ld;        /* keeps model.safetensors mapped: weights may live in it */
    mg_wcache     wcache;    /* converted weights cached on disk (mapped: weights may live in it) */
    mg_tokenizer *tok;       /* NULL when the folder has no spiece.model */
    mg_t5         t5;
    mg_decoder    dec;
    mg_encodec   *ec;
    struct mg_sched *sched;  /* decodes every generation of this model (scheduler.h) */
};
#endif
