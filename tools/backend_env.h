/* The backend options the CLI, benchmarks, golden checker and tests take
 * from the environment: the library never reads it (the nginx module sets
 * its options from directives), so the programs that document these
 * variables read them here, in one place. Not linked into the module. */
#ifndef MG_TOOLS_BACKEND_ENV_H
#define MG_TOOLS_BACKEND_ENV_H
#include "backend/options.h"

/* The defaults (mg_backend_options_default), changed by each variable set:
 *   MG_CPU_ISA=scalar|avx2|avx512|avx512vnni  caps the CPU kernels
 *   MG_CUDA_GRAPHS=0, MG_CUDA_FUSE=0          graph replay, fusion off
 *   MG_CUDA_PDL=1, MG_CUDA_FUSE_NORM=1        programmatic launch, norm absorption on
 *   MG_CUDA_WIDE=0|1|2                        batched linears' wide tiles
 *   MG_CUDA_CONV_BF16=1, MG_CUDA_KV_BF16=1, MG_CUDA_SELECT_MANY=1   the opt-in paths
 *   MG_CUDA_PROFILE=1                         per-kernel times, no graphs
 * A switch is on when its value is a non-zero number. */
void mg_backend_options_from_env(mg_backend_options *o);
#endif
