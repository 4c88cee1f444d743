/* Vectors of LANES float32 in gcc vector types, and exact conversions from and to the
 * element types mixlab's CPU kernels take (mix.c, loss.c).
 *
 * One vector is one AVX-512 register, two AVX2 ones, or whatever the target has (the
 * compiler splits them). fp16/bf16 are widened exactly on load and rounded to nearest-even
 * on store, as torch does.
 */
#ifndef MIXLAB_SIMD_H
#define MIXLAB_SIMD_H

#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "mixlab's bfloat16 code assumes little-endian words (the even bfloat16 in the low half)"
#endif

enum { MIXLAB_F32 = 0, MIXLAB_F16 = 1, MIXLAB_BF16 = 2, MIXLAB_F64 = 3 };
enum { LANES = 16 };
typedef float vf32 __attribute__((vector_size(4 * LANES)));
typedef int32_t vi32 __attribute__((vector_size(4 * LANES)));
typedef uint32_t vu32 __attribute__((vector_size(4 * LANES)));
typedef uint16_t vu16 __attribute__((vector_size(2 * LANES)));

static inline vf32 load_f32(const void *p) {
    vf32 v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void store_f32(void *p, vf32 v) { memcpy(p, &v, sizeof v); }

static inline float bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* c10::BFloat16's round_to_nearest_even: NaN becomes the canonical quiet NaN 0x7fc0. */
static inline uint16_t f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    return f != f ? (uint16_t)0x7fc0u : (uint16_t)rounded;
}

static inline vf32 load_bf16(const void *p) {
#if defined(__AVX512F__) /* gcc 12 splits the generic widening below into halves */
    __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p));
    return (vf32)_mm512_slli_epi32(w, 16);
#else
    vu16 h;
    memcpy(&h, p, sizeof h);
    return (vf32)(__builtin_convertvector(h, vu32) << 16);
#endif
}

/* The same rounding, lane by lane; the result's high halves hold the bfloat16s. */
static inline vu32 round_to_bf16_high(vf32 f) {
    vu32 u = (vu32)f;
    vu32 rounded = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
    vu32 nan = (vu32)(f != f);
    return (rounded & ~nan) | (0x7fc00000u & nan);
}

#if defined(__AVX512BF16__) && defined(__AVX512VL__)
/* AVX512-BF16 rounds to nearest-even in one instruction, but flushes subnormal inputs to
 * zero: vectors holding one (fpclass 0x20) take the exact integer rounding above. NaNs
 * stay NaN (their payload may differ from c10's 0x7fc0; torch's vector code gives 0xffff). */
static inline int has_subnormal(vf32 v) { return _mm512_fpclass_ps_mask((__m512)v, 0x20) != 0; }
#endif

static inline void store_bf16(void *p, vf32 v) {
#if defined(__AVX512BF16__) && defined(__AVX512VL__)
    if (!has_subnormal(v)) {
        _mm256_storeu_si256((__m256i *)p, (__m256i)_mm512_cvtneps_pbh((__m512)v));
        return;
    }
#endif
    vu16 h = __builtin_convertvector(round_to_bf16_high(v) >> 16, vu16);
    memcpy(p, &h, sizeof h);
}

/* gcc 12 does not vectorize _Float16 <-> float; F16C (AVX-512F: 16 at a time) does,
 * rounding to nearest-even like the scalar conversion. */
static inline vf32 load_f16(const void *p) {
#if defined(__AVX512F__)
    return (vf32)_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
#elif defined(__F16C__) && defined(__AVX__)
    __m256 half[2] = {_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)),
                      _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p + 1))};
    vf32 v;
    memcpy(&v, half, sizeof v);
    return v;
#else
    vf32 v;
    for (int i = 0; i < LANES; i++) v[i] = (float)((const _Float16 *)p)[i];
    return v;
#endif
}

static inline void store_f16(void *p, vf32 v) {
#if defined(__AVX512F__)
    _mm256_storeu_si256((__m256i *)p, _mm512_cvtps_ph((__m512)v, _MM_FROUND_TO_NEAREST_INT));
#elif defined(__F16C__) && defined(__AVX__)
    __m256 half[2];
    memcpy(half, &v, sizeof v);
    _mm_storeu_si128((__m128i *)p, _mm256_cvtps_ph(half[0], _MM_FROUND_TO_NEAREST_INT));
    _mm_storeu_si128((__m128i *)p + 1, _mm256_cvtps_ph(half[1], _MM_FROUND_TO_NEAREST_INT));
#else
    for (int i = 0; i < LANES; i++) ((_Float16 *)p)[i] = (_Float16)v[i];
#endif
}

/* One float16 as float32 and back (nearest-even). Without AVX512-FP16 gcc converts
 * _Float16 by a libgcc call; F16C does it in one instruction. */
static inline float f16_to_f32(const void *p) {
#if defined(__F16C__)
    uint16_t h;
    memcpy(&h, p, sizeof h);
    return _cvtsh_ss(h);
#else
    return (float)*(const _Float16 *)p;
#endif
}

static inline void store_f16_one(void *p, float f) {
#if defined(__F16C__)
    uint16_t h = _cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT);
    memcpy(p, &h, sizeof h);
#else
    *(_Float16 *)p = (_Float16)f;
#endif
}

/* Element j of a row of dtype dt (float32, float16 or bfloat16), as float32. */
static inline float load_one(const void *row, int dt, int64_t j) {
    if (dt == MIXLAB_F32) return ((const float *)row)[j];
    if (dt == MIXLAB_F16) return f16_to_f32((const uint16_t *)row + j);
    return bf16_to_f32(((const uint16_t *)row)[j]);
}

static inline void store_one(void *row, int dt, int64_t j, float v) {
    if (dt == MIXLAB_F32)
        ((float *)row)[j] = v;
    else if (dt == MIXLAB_F16)
        store_f16_one((uint16_t *)row + j, v);
    else
        ((uint16_t *)row)[j] = f32_to_bf16(v);
}

/* LANES elements from element j on; dt is a constant where these are inlined, so the
 * branches fold away. */
static inline vf32 load_lanes(const void *row, int dt, int64_t j) {
    if (dt == MIXLAB_F32) return load_f32((const float *)row + j);
    if (dt == MIXLAB_F16) return load_f16((const uint16_t *)row + j);
    return load_bf16((const uint16_t *)row + j);
}

static inline void store_lanes(void *row, int dt, int64_t j, vf32 v) {
    if (dt == MIXLAB_F32)
        store_f32((float *)row + j, v);
    else if (dt == MIXLAB_F16)
        store_f16((uint16_t *)row + j, v);
    else
        store_bf16((uint16_t *)row + j, v);
}

/* store_lanes for the loss's gradient, which is held to tolerances, not to bits: bfloat16
 * rounds to nearest-even in one AVX512-BF16 instruction, which turns a subnormal float32
 * (under 1.2e-38) into a signed zero, and saves store_bf16's test for one. */
static inline void store_lanes_flush(void *row, int dt, int64_t j, vf32 v) {
#if defined(__AVX512BF16__) && defined(__AVX512VL__)
    if (dt == MIXLAB_BF16) {
        __m256i h = (__m256i)_mm512_cvtneps_pbh((__m512)v);
        _mm256_storeu_si256((__m256i *)((uint16_t *)row + j), h);
        return;
    }
#endif
    store_lanes(row, dt, j, v);
}

/* n < LANES elements from element j on; the other lanes hold `fill`. AVX-512 masks them
 * in one load or store; elsewhere element by element. */
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
static inline vf32 load_tail(const void *row, int dt, int64_t j, int64_t n, float fill) {
    __mmask16 m = (__mmask16)((1u << n) - 1u);
    __m512 f = _mm512_set1_ps(fill), v;
    if (dt == MIXLAB_F32) {
        v = _mm512_mask_loadu_ps(f, m, (const float *)row + j);
    } else {
        __m256i h = _mm256_maskz_loadu_epi16(m, (const uint16_t *)row + j);
        v = dt == MIXLAB_F16 ? _mm512_cvtph_ps(h)
                             : _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
        v = _mm512_mask_blend_ps(m, f, v);
    }
    return (vf32)v;
}

static inline void store_tail(void *row, int dt, int64_t j, int64_t n, vf32 v) {
    __mmask16 m = (__mmask16)((1u << n) - 1u);
    if (dt == MIXLAB_F32) {
        _mm512_mask_storeu_ps((float *)row + j, m, (__m512)v);
        return;
    }
    uint16_t h[LANES];
    store_lanes(h, dt, 0, v);
    _mm256_mask_storeu_epi16((uint16_t *)row + j, m, _mm256_loadu_si256((const __m256i *)h));
}
#else
static inline vf32 load_tail(const void *row, int dt, int64_t j, int64_t n, float fill) {
    vf32 v;
    for (int i = 0; i < LANES; i++) v[i] = i < n ? load_one(row, dt, j + i) : fill;
    return v;
}

static inline void store_tail(void *row, int dt, int64_t j, int64_t n, vf32 v) {
    for (int i = 0; i < n; i++) store_one(row, dt, j + i, v[i]);
}
#endif

/* Lane-wise mask ? a : b (gcc's C front end has no vector ?:). */
static inline vf32 select_lanes(vi32 mask, vf32 a, vf32 b) {
    return (vf32)(((vu32)a & (vu32)mask) | ((vu32)b & ~(vu32)mask));
}

/* Lane-wise max of a and b; a NaN in b is passed over (a is kept). */
static inline vf32 max_lanes(vf32 a, vf32 b) {
#if defined(__AVX512F__)
    return (vf32)_mm512_max_ps((__m512)b, (__m512)a); /* maxps: a NaN operand yields the 2nd */
#else
    return select_lanes(b > a, b, a);
#endif
}

static inline float hmax(vf32 v) {
#if defined(__AVX512F__)
    return _mm512_reduce_max_ps((__m512)v);
#else
    float m = v[0];
    for (int i = 1; i < LANES; i++) m = v[i] > m ? v[i] : m;
    return m;
#endif
}

/* The sum of the lanes, in double (a pairwise tree). */
static inline double hsum(vf32 v) {
#if defined(__AVX512F__)
    __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256((__m512)v));
    __m512d hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd((__m512d)v, 1)));
    return _mm512_reduce_add_pd(_mm512_add_pd(lo, hi));
#else
    double s = 0.0;
    for (int i = 0; i < LANES; i++) s += v[i];
    return s;
#endif
}

#endif
