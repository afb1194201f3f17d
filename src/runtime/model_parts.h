/* A loaded model's parts, for programs that drive them one by one rather
 * than through mg_generate (the golden checker compares each part with the
 * reference; the benchmarks time them). Each part's own header (model/t5.h,
 * model/decoder.h, model/encodec.h, io/tokenizer.h, backend/backend.h) is
 * its API. The parts are the generations' too: drive them only while no
 * generation runs on the model. */
#ifndef MG_MODEL_PARTS_H
#define MG_MODEL_PARTS_H
#include "runtime/musicgen.h"
#include "backend/backend.h"
#include "io/tokenizer.h"
#include "model/decoder.h"
#include "model/encodec.h"
#include "model/t5.h"

mg_backend   *mg_model_backend(mg_model *m);
mg_t5        *mg_model_t5(mg_model *m);
mg_decoder   *mg_model_decoder(mg_model *m);
mg_encodec   *mg_model_encodec(mg_model *m);
mg_tokenizer *mg_model_tokenizer(mg_model *m);   /* NULL without spiece.model */
#endif
