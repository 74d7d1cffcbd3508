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
 * accumulate (so no large operand is re-read once per tile). In bf16 compute the input
 * (x or dy) is rounded to bf16 once per call into a second scratch. Compressed weights get no
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

/* Frees the tile scratch (optional, for leak checkers; it is regrown on the next call). */
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
