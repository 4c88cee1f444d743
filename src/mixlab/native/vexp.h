/* exp(x) for x <= 0 on vectors of float32 (loss.c's softmax), with a tested error bound
 * (tests/test_native_loss.py: within 1.5e-7 relative on [log(FLT_MIN), 0]).
 *
 * Cody-Waite reduction x = k ln2 + r, |r| <= ln2/2, and Cephes' degree-6 polynomial for
 * exp(r); results below FLT_MIN flush to 0; -inf gives 0, NaN gives NaN.
 */
#ifndef MIXLAB_VEXP_H
#define MIXLAB_VEXP_H

#include "simd.h"

static inline vf32 vexp(vf32 x) {
    const float lowest = -87.33654f; /* log(FLT_MIN) */
    const float magic = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
    vi32 under = x < lowest;
    vf32 xc = select_lanes(under, (vf32){} + lowest, x);
    vf32 shifted = xc * 1.44269504f + magic;
    vf32 k = shifted - magic;
    vi32 ki = (vi32)shifted - 0x4b400000; /* the integer k, from the float's mantissa */
    vf32 r = xc - k * 0.693359375f;
    r = r - k * -2.12194440e-4f;
    vf32 p = (vf32){} + 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    vf32 scale = (vf32)((ki + 127) << 23);
    return select_lanes(under, (vf32){}, p * scale);
}

#endif
