/*
 * fastmath.h - exp for the vectorised kernels. libm's expf is a function call per element and never
 * vectorises without -ffast-math; this inline version does (under `#pragma omp simd`), provided the
 * file is compiled with -fno-trapping-math (CMakeLists.txt sets it for common/kernels/ and
 * common/model/): otherwise GCC 12 will not turn the clamp's comparisons into selects and leaves
 * every loop using it scalar.
 *
 * fast_expf: exp(x) = 2^n * exp(r), n = round(x / ln 2), |r| <= ln2/2, with a degree-6 polynomial
 * for exp(r); relative error below 3e-7 (about 2 ulp) over the clamped range [-87.3, 88.0] (tested against
 * libm's exp in tests/unit/test_fastmath.c); inputs outside it are clamped to it.
 */
#ifndef PEFT_FASTMATH_H
#define PEFT_FASTMATH_H

#include <stdint.h>
#include <string.h>

static inline float fast_expf(float x) {
    x = x < -87.3f ? -87.3f : (x > 88.0f ? 88.0f : x); /* keeps 2^n a finite float */
    /* round to nearest by the 1.5 * 2^23 trick: no libm call, so the loop vectorises */
    const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    /* r = x - n ln2, with ln2 split in two for precision */
    float r = x - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    float p = 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* tanh through fast_expf: 1 - 2 / (exp(2x) + 1). */
static inline float fast_tanhf(float x) { return 1.0f - 2.0f / (fast_expf(2.0f * x) + 1.0f); }

#endif
