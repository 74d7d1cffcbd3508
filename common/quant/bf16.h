/* bf16.h - bfloat16 conversions as PyTorch does them: fp32 -> bf16 rounds to nearest even (NaN
 * stays a quiet NaN), bf16 -> fp32 is exact. A bf16 value is carried as its uint16_t bit pattern
 * (the upper half of the fp32 bits), the layout oneDNN's dnnl_bf16 and safetensors' BF16 use. */
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

/* dst[rows, cols] (row stride ld_dst) = bf16_from_f32 of src[rows, cols] (row stride ld_src),
 * element by element (bf16.c; parallel over rows when the matrix is large). */
void bf16_from_f32_rows(uint16_t *dst, int ld_dst, const float *src, int ld_src, int rows, int cols);

#endif
