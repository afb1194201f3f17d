/* The loaded model: what mg_model is inside the engine (the golden checker
 * and benchmarks use the parts directly). */
#ifndef MG_MODEL_H
#define MG_MODEL_H
#include "runtime/musicgen.h"
#include "model/decoder.h"
#include "model/encodec.h"
#include "io/tokenizer.h"

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
    int           n_threads; /* as loaded: mg_model_recover makes the same backend */
    mg_backend_options backend_opts; /* likewise */
    /* The scheduler decodes the audio of generations that end in the same
     * step as one EnCodec batch: where the backend says a batch costs about
     * one decode (caps.batched_encodec_cheap); elsewhere each alone, so the
     * first response is not held back. */
    int           encodec_batch_jobs;
    int           broken;    /* a lost device could not be re-created: jobs fail fast */
    char          broken_msg[256];
};

/* 1 when the backend failed in a way only a new backend recovers from (a
 * CUDA context killed by a kernel fault). */
int     mg_model_device_lost(const mg_model *m);
/* Re-creates the backend on the same device and format and loads every
 * weight again; the caller (the scheduler, holding m->run) has released
 * every job's state first. On failure the model is marked broken. */
mg_code mg_model_recover(mg_model *m, mg_error *err);
#endif
