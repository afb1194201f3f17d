/* Portable kernels compiled once per SIMD level from one body and picked at
 * run time by the backend's level: the CPU backend's kernels and the
 * benchmarks' measuring loops use the same macros. */
#ifndef MG_CPU_KERNEL_H
#define MG_CPU_KERNEL_H
#include "cpu/cpu_isa.h"

/* Every kernel with SIMD code is picked at run time by the backend's isa
 * (MG_CPU_ISA lowers it, so each level can be tested on one machine): the
 * hand-written ones per level, and the portable ones that -O2 vectorises
 * (fixed trip counts, 16 partial sums) compiled once per level from one
 * body. MG_CPU_KERNEL(name, ret, params, args) wraps the always-inline
 * name##_body into name##_scalar, name##_avx2 and name##_avx512 (the same
 * C, so the same sums: -ffp-contract=off adds no fused multiply-adds), and
 * name##_for(isa) returns the one to call; MG_CPU_KERNEL_VOID(name, params,
 * args) the same for a body that returns nothing. */
#define MG_CPU_BODY static inline __attribute__((always_inline))
#if defined(__x86_64__) && defined(__GNUC__)
#define MG_CPU_KERNEL_(name, ret, params, call)                                             \
    static ret name##_scalar params { call }                                                \
    __attribute__((target("avx2,fma"))) static ret name##_avx2 params { call }              \
    __attribute__((target("avx512f"))) static ret name##_avx512 params { call }             \
    static inline __typeof__(&name##_scalar) name##_for(mg_cpu_isa isa)                     \
    {                                                                                       \
        return isa >= MG_CPU_ISA_AVX512 ? name##_avx512                                     \
             : isa >= MG_CPU_ISA_AVX2   ? name##_avx2 : name##_scalar;                     \
    }
#else
#define MG_CPU_KERNEL_(name, ret, params, call)                                             \
    static ret name##_scalar params { call }                                                \
    static inline __typeof__(&name##_scalar) name##_for(mg_cpu_isa isa)                     \
    {                                                                                       \
        (void)isa;                                                                          \
        return name##_scalar;                                                               \
    }
#endif
#define MG_CPU_KERNEL(name, ret, params, args) \
    MG_CPU_KERNEL_(name, ret, params, return name##_body args;)
#define MG_CPU_KERNEL_VOID(name, params, args) MG_CPU_KERNEL_(name, void, params, name##_body args;)
#endif
