/* Vectorised exponentials for x <= 0 (AVX-512), shared by the activations
 * (GELU, ELU) and the attention softmax. */
#ifndef MG_CPU_EXP_AVX512_H
#define MG_CPU_EXP_AVX512_H
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#ifndef TARGET_AVX512
#define TARGET_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma")))
#endif

/* expm1 for x <= 0, within ~2 ulp of expm1f: x = n·ln2 + r, |r| <= ln2/2,
 * expm1(x) = 2^n·expm1(r) + (2^n - 1) with a degree-7 Taylor polynomial for
 * expm1(r) (its truncation error is below float rounding), so small |x|
 * keep their relative precision (n = 0 gives expm1(r) itself). libm's
 * scalar expm1f was 15 % of EnCodec. */
/* expm1(r) for |r| <= ln2/2, and n with x = n·ln2 + r. */
TARGET_AVX512 static inline __m512 expm1_reduced_avx512(__m512 x, __m512 *n_out)
{
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145752f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.42860677e-06f), r);
    *n_out = n;
    __m512 p = _mm512_set1_ps(1.0f / 5040);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    return _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, r);
}

TARGET_AVX512 static inline __m512 expm1_neg_avx512(__m512 x)
{
    x = _mm512_max_ps(x, _mm512_set1_ps(-88.0f)); /* expm1 is -1 in float below */
    __m512 n, p = expm1_reduced_avx512(x, &n);
    __m512 two_n = _mm512_scalef_ps(_mm512_set1_ps(1.0f), n);
    return _mm512_fmadd_ps(p, two_n, _mm512_sub_ps(two_n, _mm512_set1_ps(1.0f)));
}

/* exp(x) for x <= 0 (softmax), 0 below -104 as expf gives (masked keys). */
TARGET_AVX512 static inline __m512 exp_neg_avx512(__m512 x)
{
    x = _mm512_max_ps(x, _mm512_set1_ps(-104.0f));
    __m512 n, p = expm1_reduced_avx512(x, &n);
    return _mm512_scalef_ps(_mm512_add_ps(p, _mm512_set1_ps(1.0f)), n);
}

#endif
#endif
