/* Which SIMD kernels the CPU backend runs: detected once per backend, and
 * capped by the backend option cpu_isa (scalar|avx2|avx512|avx512vnni; the
 * tools read it from MG_CPU_ISA) so every path can be tested (and compared)
 * on one machine. */
#ifndef MG_CPU_ISA_H
#define MG_CPU_ISA_H

/* Ordered: each level includes the ones below it. */
typedef enum {
    MG_CPU_ISA_SCALAR,       /* portable C */
    MG_CPU_ISA_AVX2,         /* AVX2 + FMA */
    MG_CPU_ISA_AVX512,       /* AVX-512 F/BW/VL/DQ */
    MG_CPU_ISA_AVX512_VNNI,  /* + VNNI int8 dot products */
} mg_cpu_isa;

/* The best level this CPU (and OS) supports. */
mg_cpu_isa  mg_cpu_isa_detect(void);
/* 1: the CPU also has AVX512-BF16 (vdpbf16ps), outside the ladder above. */
int         mg_cpu_has_avx512bf16(void);
/* The level to use: the detected one, lowered to cap (a name as
 * mg_cpu_isa_parse takes it) when cap names a lower one. */
mg_cpu_isa  mg_cpu_isa_default(const char *cap);
const char *mg_cpu_isa_name(mg_cpu_isa isa);
/* Parses a level's name; -1 when unknown. */
int         mg_cpu_isa_parse(const char *name);
#endif
