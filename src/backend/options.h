/* What a backend is created with besides its device, threads and weight
 * format: switches between paths that compute the same thing, or, for the
 * opt-in ones, paths within the CPU's precision contract that have not run
 * on the hardware they target yet. Library code never reads the environment:
 * the CLI, benchmarks, golden checker and mg-kernel-test fill this from
 * MG_CPU_ISA and MG_CUDA_* (tools/backend_env.c); tests set what they
 * compare; the nginx module keeps the defaults but for the paths
 * musicgen_cuda_opt_in names. */
#ifndef MG_BACKEND_OPTIONS_H
#define MG_BACKEND_OPTIONS_H

typedef struct mg_backend_options {
    /* CPU: the highest kernel level to use, by name ("scalar", "avx2",
     * "avx512", "avx512vnni"), so every path can be run and compared on one
     * machine; "" or an unknown name: the best this CPU has. */
    char cpu_isa[16];
    /* 1: Q8 models keep their attention caches in 8 bits where the backend
     * has the kernel for the shape (caps.kv_q8row_fits); 0: in BF16, so that
     * benchmarks and tests can compare the two on the same weights. */
    int  kv_q8row;
    /* CUDA (MG_CUDA_GRAPHS ...): */
    int  cuda_graphs;      /* 1: a repeated segment of launches replays from a CUDA graph */
    int  cuda_fusion;      /* 1: peephole fusion of recorded launches into epilogues */
    /* 1: programmatic dependent launch (Hopper); off by default because an
     * H100's graph-replayed decode steps were slower with it (1.74 vs 1.60 ms) */
    int  cuda_pdl;
    int  cuda_fuse_norm;   /* 1: a tensor-core linear absorbs the norm before it */
    int  cuda_wide;        /* batched linears' wide tiles: 0 never, 1 above 64 rows, 2 also up to 32 */
    /* Opt-in until mg-kernel-test and the golden parity have run them on a
     * GPU: BF16 EnCodec conv weights on the tensor cores and BF16
     * self-attention caches for bf16 models, and the scheduler's joint token
     * selection in one wait (select_tokens_many). */
    int  cuda_conv_bf16;
    int  cuda_kv_bf16;
    int  cuda_select_many;
    int  cuda_profile;     /* 1: no graphs; every launch timed, summed per kernel */
} mg_backend_options;

/* The options a backend created with NULL options runs with. */
void mg_backend_options_default(mg_backend_options *o);
#endif
