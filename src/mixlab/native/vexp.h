/* exp(x) for x <= 60 on vectors of float32 (the loss's softmax), with tested error bounds
 * (tests/test_native_loss.py: within 1.5e-7 relative on [log(FLT_MIN), 60], 3e-6 coarse).
 *
 * x = (16 q + j) ln2/16 + r, |r| <= ln2/32: exp(x) = 2^q 2^(j/16) exp(r), with 2^(j/16)
 * from a 16-entry table (one register, one permute) and exp(r) - 1 a cubic (its error,
 * r^4/24, is under 1e-8). That is 7 multiply-adds a vector where a degree-6 polynomial
 * over |r| <= ln2/2 takes 11, and the multiply-add pipes are what bounds the loss.
 * Results below FLT_MIN are 0; -inf gives 0, NaN gives NaN.
 */
#ifndef MIXLAB_VEXP_H
#define MIXLAB_VEXP_H

#include "simd.h"

/* The bits of 2^(j/16) less j << 19: adding (16 q + j) << 19 (the low bits of the rounded
 * 16 x / ln2) then adds q to the exponent field, and only that. */
static const vu32 EXP2_TABLE = {
    0x3f800000, 0x3f7daac3, 0x3f7b95c2, 0x3f79c3d3, 0x3f7837f0, 0x3f76f532,
    0x3f75fed7, 0x3f75583f, 0x3f7504f3, 0x3f7508a4, 0x3f75672a, 0x3f76248c,
    0x3f7744fd, 0x3f78ccdf, 0x3f7ac0c7, 0x3f7d257d,
};

/* `coarse` (a constant where inlined) drops the second part of ln2/16 and exp(r)'s cubic
 * term: within 3e-6 relative, for float16/bfloat16 logits, whose own rounding is >= 4e-4;
 * 5 multiply-adds instead of 7. */
static inline __attribute__((always_inline)) vf32 vexp_to(vf32 x, int coarse) {
    const float lowest = -87.33654f; /* log(FLT_MIN) */
    const float magic = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
    vf32 shifted = x * 23.0831203f + magic; /* its low bits: n = round(16 x / ln2) */
    vf32 n = shifted - magic;
    vf32 r = x - n * 0.0433216989f; /* ln2/16 in two parts (Cody-Waite) */
    if (!coarse) r = r - n * -1.19040888e-10f;
    vu32 bits = (vu32)shifted;
    vf32 scale = (vf32)(__builtin_shuffle(EXP2_TABLE, bits) + (bits << 19));
    /* coarse: exp(r) = 1 + r + r^2/2; else exp(r) - 1 = r + r^2/2 + r^3/6, added last */
    vf32 poly = coarse ? (r * 0.5f + 1.0f) * r + 1.0f : r + r * r * (0.5f + r * 0.166666672f);
#if defined(__AVX512F__)
    /* one compare into a mask and a zero-masked last step; NaN is kept (NLT_UQ) */
    __mmask16 keep = _mm512_cmp_ps_mask((__m512)x, _mm512_set1_ps(lowest), _CMP_NLT_UQ);
    if (coarse) return (vf32)_mm512_maskz_mul_ps(keep, (__m512)scale, (__m512)poly);
    return (vf32)_mm512_maskz_fmadd_ps(keep, (__m512)scale, (__m512)poly, (__m512)scale);
#else
    vi32 under = x < lowest;
    return select_lanes(under, (vf32){}, coarse ? scale * poly : scale + scale * poly);
#endif
}

static inline vf32 vexp(vf32 x) { return vexp_to(x, 0); }

#endif
