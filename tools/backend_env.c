#include "backend_env.h"

#include <stdio.h>
#include <stdlib.h>

/* A switch's value: the variable as a number when set, else the default. */
static int env_int(const char *name, int fallback)
{
    const char *v = getenv(name);
    return v ? atoi(v) : fallback;
}

static int env_switch(const char *name, int fallback)
{
    return env_int(name, fallback) != 0;
}

void mg_backend_options_from_env(mg_backend_options *o)
{
    mg_backend_options_default(o);
    const char *isa = getenv("MG_CPU_ISA");
    if (isa)
        snprintf(o->cpu_isa, sizeof o->cpu_isa, "%s", isa);
    o->cuda_graphs = env_switch("MG_CUDA_GRAPHS", o->cuda_graphs);
    o->cuda_fusion = env_switch("MG_CUDA_FUSE", o->cuda_fusion);
    o->cuda_pdl = env_switch("MG_CUDA_PDL", o->cuda_pdl);
    o->cuda_fuse_norm = env_switch("MG_CUDA_FUSE_NORM", o->cuda_fuse_norm);
    o->cuda_wide = env_int("MG_CUDA_WIDE", o->cuda_wide);
    o->cuda_conv_bf16 = env_switch("MG_CUDA_CONV_BF16", o->cuda_conv_bf16);
    o->cuda_kv_bf16 = env_switch("MG_CUDA_KV_BF16", o->cuda_kv_bf16);
    o->cuda_select_many = env_switch("MG_CUDA_SELECT_MANY", o->cuda_select_many);
    o->cuda_profile = env_switch("MG_CUDA_PROFILE", o->cuda_profile);
}
