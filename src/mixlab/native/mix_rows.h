/* The row operations of mix.c: dst[j] <- a*cur[j] + b*src[j] for n elements, per dtype,
 * and CutMix's copy of a box line (copy_run).
 *
 * Arithmetic is float32 (fp16/bf16 are widened on load and rounded to nearest-even on
 * store, as torch does); no FMA contraction (-ffp-contract=off), so float32 results are
 * bit-identical to mixlab.reference.mix.
 */
#ifndef MIXLAB_MIX_ROWS_H
#define MIXLAB_MIX_ROWS_H

#include <stdint.h>
#include <string.h>

#include "simd.h"

/* In place dst == cur; `mix` out of place writes a third buffer. `ahead` is the same run of
 * the row after next, prefetched meanwhile. src may equal cur (a fixed point, perm[i] == i):
 * it still computes lam*x + (1-lam)*x, as the reference does, so roundings and inf/NaN come
 * out the same. */

#define DEFINE_MIX(name, T, LOAD, STORE, TO_F32, FROM_F32)                                   \
    static void name(void *dst, const void *cur, const void *src, const void *ahead,          \
                     int64_t n, float a, float b) {                                          \
        T *d = dst;                                                                          \
        const T *c = cur, *s = src;                                                          \
        int64_t j = 0;                                                                       \
        for (; j + LANES <= n; j += LANES) {                                                 \
            __builtin_prefetch((const T *)ahead + j);                                        \
            STORE(d + j, a * LOAD(c + j) + b * LOAD(s + j));                                 \
        }                                                                                    \
        for (; j < n; j++) d[j] = FROM_F32(a * TO_F32(c[j]) + b * TO_F32(s[j]));            \
    }

#define IDENTITY(v) (v)
#define HALF_TO_F32(h) ((float)(h))
#define F32_TO_HALF(f) ((_Float16)(f))
DEFINE_MIX(mix_f32, float, load_f32, store_f32, IDENTITY, IDENTITY)
DEFINE_MIX(mix_f16, _Float16, load_f16, store_f16, HALF_TO_F32, F32_TO_HALF)

/* The words of 2 * LANES bfloat16s, rounded to nearest-even from their even and odd
 * elements. AVX512-BF16 rounds both in one instruction (a permute restores the order)
 * unless a value is subnormal, which it would flush to zero: those take the integer
 * rounding, so the bits are the reference's either way. */
static inline vu32 pack_bf16_pairs(vf32 even, vf32 odd) {
#if defined(__AVX512BF16__) && defined(__AVX512BW__)
    if (!has_subnormal(even) && !has_subnormal(odd)) {
        const __m512i interleave = _mm512_set_epi16(
            31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6, 21, 5,
            20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
        __m512i halves = (__m512i)_mm512_cvtne2ps_pbh((__m512)odd, (__m512)even);
        return (vu32)_mm512_permutexvar_epi16(interleave, halves);
    }
#endif
    return round_to_bf16_high(odd) | (round_to_bf16_high(even) >> 16);
}

/* bfloat16 is the top half of a float32, so a 32-bit word holding two of them widens
 * without shuffles: the even element is word << 16, the odd one word & 0xffff0000. Both
 * halves are mixed as float32 and rounded back in place; 2 * LANES elements a step. */
static void mix_bf16(void *dst, const void *cur, const void *src, const void *ahead, int64_t n,
                     float a, float b) {
    uint16_t *d = dst;
    const uint16_t *c = cur, *s = src;
    int64_t j = 0;
    for (; j + 2 * LANES <= n; j += 2 * LANES) {
        __builtin_prefetch((const uint16_t *)ahead + j);
        vu32 wc, ws;
        memcpy(&wc, c + j, sizeof wc);
        memcpy(&ws, s + j, sizeof ws);
        vf32 even = a * (vf32)(wc << 16) + b * (vf32)(ws << 16);
        vf32 odd = a * (vf32)(wc & 0xffff0000u) + b * (vf32)(ws & 0xffff0000u);
        vu32 out = pack_bf16_pairs(even, odd);
        memcpy(d + j, &out, sizeof out);
    }
    for (; j < n; j++) d[j] = f32_to_bf16(a * bf16_to_f32(c[j]) + b * bf16_to_f32(s[j]));
}

typedef void (*MixRow)(void *, const void *, const void *, const void *, int64_t, float, float);

static MixRow mix_row(int dtype) {
    return dtype == MIXLAB_F32 ? mix_f32 : dtype == MIXLAB_F16 ? mix_f16 : mix_bf16;
}

/* The first and the last `size` bytes of n (size <= n <= 2 * size): two fixed-size moves
 * where size is a constant (gcc turns a memcpy of variable size into rep movsb, whose
 * start-up costs more than a short line). */
static inline void copy_ends(char *d, const char *s, int64_t n, size_t size) {
    memcpy(d, s, size);
    memcpy(d + n - size, s + n - size, size);
}

/* The row operation of CutMix: n bytes from s to d. Box lines are short (a CIFAR box line
 * is 46 or 92 bytes): fixed-size moves the compiler inlines as vector loads and stores,
 * the last one overlapping the one before, instead of a libc call per line. */
static inline void copy_run(char *d, const char *s, int64_t n) {
    if (n >= 64) {
        int64_t j = 0;
        for (; j + 64 <= n; j += 64) memcpy(d + j, s + j, 64);
        if (j < n) memcpy(d + n - 64, s + n - 64, 64);
    } else if (n >= 32) {
        copy_ends(d, s, n, 32);
    } else if (n >= 16) {
        copy_ends(d, s, n, 16);
    } else if (n >= 8) {
        copy_ends(d, s, n, 8);
    } else if (n >= 4) {
        copy_ends(d, s, n, 4);
    } else {
        for (int64_t j = 0; j < n; j++) d[j] = s[j];
    }
}

#endif
