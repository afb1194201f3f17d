#include "cpu/cpu_isa.h"

#include <stdlib.h>
#include <string.h>

static const char *const isa_names[] = {"scalar", "avx2", "avx512", "avx512vnni"};

mg_cpu_isa mg_cpu_isa_detect(void)
{
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
        return __builtin_cpu_supports("avx512vnni") ? MG_CPU_ISA_AVX512_VNNI : MG_CPU_ISA_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return MG_CPU_ISA_AVX2;
#endif
    return MG_CPU_ISA_SCALAR;
}

int mg_cpu_has_avx512bf16(void)
{
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    return mg_cpu_isa_detect() >= MG_CPU_ISA_AVX512 && __builtin_cpu_supports("avx512bf16");
#else
    return 0;
#endif
}

int mg_cpu_isa_parse(const char *name)
{
    for (int i = 0; i < (int)(sizeof isa_names / sizeof isa_names[0]); i++)
        if (!strcmp(name, isa_names[i]))
            return i;
    return -1;
}

mg_cpu_isa mg_cpu_isa_default(const char *cap)
{
    mg_cpu_isa hw = mg_cpu_isa_detect();
    int want = cap && *cap ? mg_cpu_isa_parse(cap) : -1;
    return want >= 0 && want < (int)hw ? (mg_cpu_isa)want : hw;
}

const char *mg_cpu_isa_name(mg_cpu_isa isa)
{
    return isa >= 0 && isa <= MG_CPU_ISA_AVX512_VNNI ? isa_names[isa] : "?";
}
