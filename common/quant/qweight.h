/*
 * qweight.h - a frozen weight matrix kept compressed: NF4 (bitsandbytes' layout, nf4.h) or bf16.
 *
 * The matrix is stored [rows, cols] = [out, in] as nn.Linear and bitsandbytes store it (GPT-2's
 * Conv1D weights are transposed once when compressed, as transformers does before quantising).
 * Nobody ever holds a full-size fp32 copy: the linear layer asks for one tile at a time,
 *
 *     qweight_tile(q, r0, nr, c0, nc, tile);   // tile[nr, nc] = W[r0 .. r0+nr, c0 .. c0+nc] in fp32
 *
 * and multiplies it (common/model/linear.c). The compute dtype is a property of the weight:
 * with `bf16_compute` the tile holds bf16 values (rounded to nearest even, carried in fp32) and the
 * layer rounds its input to bf16 too, so each product is a bf16 x bf16 product accumulated in fp32.
 * Where oneDNN has a real bf16 matmul (gemm_onednn_bf16_available()) the layer asks instead for
 * the tile in bf16 itself,
 *
 *     const uint16_t *t = qweight_tile_bf16(q, r0, nr, c0, nc, scratch, &ld);
 *
 * which for a bf16 weight is a view of the stored bits (no copy) and for NF4 the same values as
 * qweight_tile's rounded ones, as bf16 bit patterns in the scratch.
 *
 * Ownership: qweight_init_* allocate; qweight_free releases (no-op on a zeroed qweight).
 * Errors: PEFT_ENOMEM; qweight_init_nf4 passes on nf4_quantize's errors.
 */
#ifndef PEFT_QWEIGHT_H
#define PEFT_QWEIGHT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "quant/nf4.h"

typedef enum { QWEIGHT_NF4 = 1, QWEIGHT_BF16 = 2 } qweight_format;

typedef struct qweight {
    qweight_format fmt;
    int rows, cols;      /* [out, in] */
    bool bf16_compute;   /* tiles and the layer's inputs rounded to bf16 */
    nf4_tensor nf4;      /* QWEIGHT_NF4 */
    uint16_t *bf16;      /* QWEIGHT_BF16: [rows * cols] */
} qweight;

/* From fp32 w[rows, cols] (row-major [out, in]). */
int qweight_init_nf4(qweight *q, const float *w, int rows, int cols, bool bf16_compute);
int qweight_init_bf16(qweight *q, const float *w, int rows, int cols);
void qweight_free(qweight *q);

/* tile[nr, nc] (row stride nc) = W[r0 .. r0+nr, c0 .. c0+nc], dequantised (parallel over rows). */
void qweight_tile(const qweight *q, int r0, int nr, int c0, int nc, float *tile);

/* W[r0 .. r0+nr, c0 .. c0+nc] in bf16: returns the tile and sets *ld to its row stride. A bf16
 * weight returns a pointer into its own storage (*ld = cols, scratch untouched, valid while q is);
 * NF4 decodes into scratch[nr * nc] (*ld = nc) exactly bf16_from_f32 of qweight_tile's values. */
const uint16_t *qweight_tile_bf16(const qweight *q, int r0, int nr, int c0, int nc, uint16_t *scratch, int *ld);

/* Resident bytes of the compressed data (and its descriptor). */
size_t qweight_bytes(const qweight *q);

const char *qweight_format_name(qweight_format f);

#endif
