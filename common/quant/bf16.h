/* bf16.h - bfloat16 conversions as PyTorch does them: fp32 -> bf16 rounds to nearest even (NaN
 * stays a quiet NaN), bf16 -> fp32 is exact. */
#ifndef PEFT_BF16_H
#define PEFT_BF16_H

#include <stdint.h>
#include <string.h>

static inline uint16_t bf16_from_f32(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static inline float bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* The bf16 value nearest to f, as a float. */
static inline float bf16_round(float f) { return bf16_to_f32(bf16_from_f32(f)); }

#endif
