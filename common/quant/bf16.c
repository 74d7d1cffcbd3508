/* bf16.c - whole-matrix bf16 conversion (the scalar conversions are inline in bf16.h). */
#include "quant/bf16.h"

#include <stddef.h>

#include "kernels/parallel.h"

void bf16_from_f32_rows(uint16_t *dst, int ld_dst, const float *src, int ld_src, int rows, int cols) {
#pragma omp parallel for if (PEFT_PAR((size_t)rows * (size_t)cols))
    for (int i = 0; i < rows; i++) {
        uint16_t *d = dst + (size_t)i * (size_t)ld_dst;
        const float *s = src + (size_t)i * (size_t)ld_src;
        for (int j = 0; j < cols; j++) d[j] = bf16_from_f32(s[j]);
    }
}
