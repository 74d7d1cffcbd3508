/*
 * linear.h - a frozen-or-trainable linear layer over the GEMM interface.
 *
 * A linear maps x[N, in] to y[N, out] = x W^T + b. Its weight is stored as Hugging Face stores it:
 * [out, in] for nn.Linear, [in, out] for GPT-2's Conv1D (in_major = 1); the GEMM transposes as
 * needed, so no transposed copy of any weight ever exists. Row strides (ldx, ldy) let a layer
 * read or write a column block of a wider buffer (Llama's q/k/v into one qkv buffer).
 * The weight's storage format is the layer's business: a frozen weight may be kept compressed
 * (param.q: NF4 or bf16, common/quant/qweight.h, always [out, in] so in_major = 0). Such a layer
 * multiplies tile by tile: each product decodes blocks of W's rows or columns into a scratch of
 * LINEAR_TILE_ELEMS floats (owned here, grown once; a weight smaller than that is one tile, a larger
 * one never exists in fp32 whole) and runs one GEMM per tile: the tiles split the output's columns
 * when the reduced dimension is the smaller one, else they split the reduced dimension and
 * accumulate (so no large operand is re-read once per tile). bf16 compute (qweight's bf16_compute:
 * a bf16 weight, or NF4 under `--bf16`) takes one of two paths with the same values:
 *   - real bf16 products, when the backend is GEMM_ONEDNN and gemm_onednn_bf16_available(): the
 *     input (x or dy) is converted to bf16 once per call into a bf16 scratch, NF4 tiles are decoded
 *     straight to bf16 (a scratch of LINEAR_TILE_ELEMS bf16 values), a bf16 weight is multiplied
 *     in place as it is stored (no tile, no copy), and gemm_bf16 accumulates in fp32;
 *   - emulated, otherwise (OpenBLAS, or a CPU without oneDNN's bf16 matmul, such as the AVX2 dev
 *     machine): the input is rounded to bf16 values once per call into a second fp32 scratch, the
 *     tiles are rounded likewise, and gemm_f32 multiplies them.
 * The two differ only in the order of the fp32 accumulation. Compressed weights get no
 * gradient. Like the GEMM interface, the scratch makes these calls single-threaded callers only.
 */
#ifndef PEFT_LINEAR_H
#define PEFT_LINEAR_H

#include <stddef.h>
#include <stdint.h>

#include "gemm.h"

typedef struct param {
    char name[128];   /* the Hugging Face state-dict key */
    int ndim;         /* 1 or 2 */
    int64_t shape[2]; /* as stored in the checkpoint */
    size_t numel;
    float *data;      /* into the owner's arena */
    float *grad;      /* NULL while the parameter is frozen */
    struct qweight *q; /* compressed storage (data == NULL), or NULL */
} param;

struct linear_hook; /* a PEFT method on this layer (common/peft/linear_hook.h), NULL if none */

typedef struct linear {
    char module[112]; /* module path, e.g. "model.layers.3.self_attn.q_proj" */
    int in, out;
    int in_major;     /* 1: weight stored [in, out] (Conv1D) */
    param *weight;
    param *bias;      /* NULL if the layer has none */
    struct linear_hook *hook;
} linear;

/* The plain layer, ignoring any hook (what hooks build on). */
void linear_base_forward(gemm_backend be, const linear *l, float *y, int ldy, const float *x, int ldx, int N,
                         int accumulate);
void linear_base_backward(gemm_backend be, const linear *l, float *dx, int lddx, const float *dy, int lddy,
                          const float *x, int ldx, int N, int accumulate_dx);

/* Floats in the tile scratch of a compressed layer (1 MiB). */
#define LINEAR_TILE_ELEMS (1 << 18)

/* Frees the scratch buffers (optional, for leak checkers; they are regrown on the next call). */
void linear_scratch_release(void);

/* y[N, out] (stride ldy) = x[N, in] (stride ldx) W^T + b; accumulate = 1 adds to y instead.
 * With a hook, the method's version of the layer (LoRA, DoRA, IA3) runs instead. */
void linear_forward(gemm_backend be, const linear *l, float *y, int ldy, const float *x, int ldx, int N,
                    int accumulate);

/* dx[N, in] (+)= dy W (accumulate_dx = 1 adds); dW += dy^T x and db += sum(dy) when the weight or
 * bias has a gradient. dx may be NULL when no input gradient is needed. */
void linear_backward(gemm_backend be, const linear *l, float *dx, int lddx, const float *dy, int lddy,
                     const float *x, int ldx, int N, int accumulate_dx);

#endif
