#include "backend/options.h"

#include <string.h>

void mg_backend_options_default(mg_backend_options *o)
{
    memset(o, 0, sizeof *o);
    o->kv_q8row = 1;
    o->cuda_graphs = 1;
    o->cuda_fusion = 1;
    o->cuda_wide = 1;
}
