/*
 * linear_hook.h - PEFT methods that live on one linear layer: LoRA (with rsLoRA scaling, dropout
 * and lora_B bias), DoRA, and IA3 (output or, for feed-forward modules, input scaling).
 *
 *   LoRA:    y = W x + b + s * (B A drop(x) + b_B)                   s = alpha/r or alpha/sqrt(r)
 *   DoRA:    y = (m / ||W + s B A||_row) * (W x + s B A drop(x)) + b  the norm is detached
 *   IA3 out: y = (W x + b) * l          IA3 in (feed-forward): y = W (x * l) + b
 * (FORMATS.md §2.2, §2.3, §2.5.) The hook's tensors point into the run's flat parameter and
 * gradient buffers; its scratch (saved activations) is sized for `cap` rows by linear_hook_reserve
 * and reused every step. The base weight is only read through the linear layer, so the method does
 * not care how the frozen weight is stored.
 */
#ifndef PEFT_LINEAR_HOOK_H
#define PEFT_LINEAR_HOOK_H

#include <stdbool.h>

#include "gemm.h"
#include "model/linear.h"
#include "rng.h"

typedef enum { HOOK_LORA, HOOK_DORA, HOOK_IA3_OUT, HOOK_IA3_IN } linear_hook_kind;

typedef struct linear_hook {
    linear_hook_kind kind;
    int r;
    float scaling;
    float dropout;        /* LoRA/DoRA input dropout probability */
    const bool *training; /* dropout applies only while *training */
    rng_state *rng;       /* the run's dropout stream */
    /* parameters [and gradients], into the flat buffers */
    float *A, *dA;         /* [r, in] */
    float *B, *dB;         /* [out, r] */
    float *B_bias, *dB_bias; /* [out] or NULL */
    float *mag, *dmag;     /* [out] DoRA magnitude */
    float *l, *dl;         /* IA3 vector: [out] or [in] */
    /* scratch for `cap` rows */
    int cap;
    float *h;      /* [cap, r] A drop(x) */
    float *dh;     /* [cap, r] */
    float *xin;    /* [cap, in] the dropped (LoRA) or scaled (IA3 in) input */
    float *keep;   /* [cap, in] dropout scale per element (0 or 1/(1-p)) */
    float *ys;     /* [cap, out] IA3 out: the base output u = W x + b, kept from forward to backward;
                    * DoRA: z */
    float *dxs;    /* [cap, in] IA3 in: the base layer's input gradient */
    float *norm;   /* [out] DoRA row norms */
    float *BA;     /* [out, in] DoRA scratch */
    float *wrow;   /* [in] DoRA: one decoded row of a compressed base weight */
    double *colsum; /* [max(in, out)] DoRA and IA3: per-column sums over rows, accumulated row by row */
} linear_hook;

/* Allocates scratch for up to cap rows (no-op if already that large). */
int linear_hook_reserve(linear_hook *h, const linear *l, int cap);
void linear_hook_free(linear_hook *h);

void linear_hook_forward(gemm_backend be, const linear *l, float *y, int ldy, const float *x, int ldx, int N,
                         int accumulate);
/* Backward of the last linear_hook_forward of this layer, on the same x: DoRA and IA3 (out) read what
 * that forward saved in the scratch, LoRA the A drop(x) and dropout mask. */
void linear_hook_backward(gemm_backend be, const linear *l, float *dx, int lddx, const float *dy, int lddy,
                          const float *x, int ldx, int N, int accumulate_dx);

/* DoRA: ||W + s B A|| per output row into h->norm (also used to initialise the magnitude). */
void linear_hook_dora_norms(gemm_backend be, const linear *l, linear_hook *h);

#endif
