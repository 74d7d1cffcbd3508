/* qweight.c - compressed frozen weights and their tile decoder. */
#include "quant/qweight.h"

#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "kernels/parallel.h"
#include "quant/bf16.h"

int qweight_init_nf4(qweight *q, const float *w, int rows, int cols, bool bf16_compute) {
    memset(q, 0, sizeof *q);
    q->fmt = QWEIGHT_NF4;
    q->rows = rows;
    q->cols = cols;
    q->bf16_compute = bf16_compute;
    return nf4_quantize(w, (size_t)rows * (size_t)cols, 64, true, &q->nf4);
}

int qweight_init_bf16(qweight *q, const float *w, int rows, int cols) {
    memset(q, 0, sizeof *q);
    const size_t n = (size_t)rows * (size_t)cols;
    q->fmt = QWEIGHT_BF16;
    q->rows = rows;
    q->cols = cols;
    q->bf16_compute = true;
    q->bf16 = malloc(n * sizeof *q->bf16);
    if (!q->bf16) return err_set(PEFT_ENOMEM, "out of memory for a bf16 weight of %zu values", n);
#pragma omp parallel for if (PEFT_PAR(n))
    for (size_t i = 0; i < n; i++) q->bf16[i] = bf16_from_f32(w[i]);
    return PEFT_OK;
}

void qweight_free(qweight *q) {
    nf4_free(&q->nf4);
    free(q->bf16);
    memset(q, 0, sizeof *q);
}

void qweight_tile(const qweight *q, int r0, int nr, int c0, int nc, float *tile) {
    const size_t cols = (size_t)q->cols;
#pragma omp parallel for schedule(static) if (PEFT_PAR((size_t)nr * (size_t)nc))
    for (int r = 0; r < nr; r++) {
        float *dst = tile + (size_t)r * (size_t)nc;
        const size_t e0 = (size_t)(r0 + r) * cols + (size_t)c0;
        if (q->fmt == QWEIGHT_BF16) {
            for (int c = 0; c < nc; c++) dst[c] = bf16_to_f32(q->bf16[e0 + (size_t)c]);
            continue;
        }
        nf4_dequantize(&q->nf4, e0, e0 + (size_t)nc, dst);
        if (q->bf16_compute)
            for (int c = 0; c < nc; c++) dst[c] = bf16_round(dst[c]);
    }
}

const uint16_t *qweight_tile_bf16(const qweight *q, int r0, int nr, int c0, int nc, uint16_t *scratch, int *ld) {
    const size_t cols = (size_t)q->cols;
    if (q->fmt == QWEIGHT_BF16) {
        *ld = q->cols;
        return q->bf16 + (size_t)r0 * cols + (size_t)c0;
    }
    enum { CHUNK = 256 }; /* values decoded to fp32 at a time, on the stack */
#pragma omp parallel for schedule(static) if (PEFT_PAR((size_t)nr * (size_t)nc))
    for (int r = 0; r < nr; r++) {
        uint16_t *dst = scratch + (size_t)r * (size_t)nc;
        const size_t e0 = (size_t)(r0 + r) * cols + (size_t)c0;
        float buf[CHUNK];
        for (int c = 0; c < nc; c += CHUNK) {
            int n = nc - c < CHUNK ? nc - c : CHUNK;
            nf4_dequantize(&q->nf4, e0 + (size_t)c, e0 + (size_t)c + (size_t)n, buf);
            for (int i = 0; i < n; i++) dst[c + i] = bf16_from_f32(buf[i]);
        }
    }
    *ld = nc;
    return scratch;
}

size_t qweight_bytes(const qweight *q) {
    if (q->fmt == QWEIGHT_NF4) return nf4_bytes(&q->nf4) + sizeof *q - sizeof q->nf4;
    return (size_t)q->rows * (size_t)q->cols * sizeof *q->bf16 + sizeof *q;
}

const char *qweight_format_name(qweight_format f) { return f == QWEIGHT_NF4 ? "nf4" : "bf16"; }
