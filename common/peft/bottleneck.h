/*
 * bottleneck.h - a bottleneck adapter: stream += s * (W_up act(W_down v' + b_down) + b_up), where v'
 * is the adapter's input v, optionally through the adapter's own LayerNorm (Bapna & Firat), as
 * AdapterHub computes it (FORMATS.md §3.3, §3.6).
 *
 * Where v comes from is the model's business (forward.c / backward.c route it by `input`):
 *   BN_IN_SUBLAYER   the sub-layer's output (Houlsby, Bapna: the attention output a; Houlsby: m)
 *   BN_IN_STREAM     the stream after the sub-layer's residual add (Pfeiffer: u + m)
 *   BN_IN_RESIDUAL   the sub-layer's un-normalised input stream (parallel: u)
 * The routing copies v into vbuf, so the adapter keeps what backward needs.
 */
#ifndef PEFT_BOTTLENECK_H
#define PEFT_BOTTLENECK_H

#include <stdbool.h>

#include "gemm.h"

typedef enum { BN_IN_SUBLAYER, BN_IN_STREAM, BN_IN_RESIDUAL } bn_input;
typedef enum { BN_ACT_RELU, BN_ACT_SILU, BN_ACT_GELU, BN_ACT_GELU_TANH } bn_act;

typedef struct bottleneck {
    int H, d;
    bn_input input;
    bn_act act;
    float scaling;
    bool ln_before;
    /* parameters and gradients, into the run's flat buffers */
    float *ln_w, *ln_b, *dln_w, *dln_b;       /* [H] when ln_before */
    float *down_w, *down_b, *ddown_w, *ddown_b; /* [d, H], [d] */
    float *up_w, *up_b, *dup_w, *dup_b;       /* [H, d], [H] */
    /* scratch for cap rows */
    int cap;
    float *vbuf;            /* [cap, H] the input v */
    float *vln, *mean, *rstd; /* [cap, H], [cap], [cap] when ln_before */
    float *pre, *act_out;   /* [cap, d] */
    float *dact;            /* [cap, d] */
    float *dv;              /* [cap, H] gradient of v (output of backward) */
} bottleneck;

int bottleneck_act_parse(const char *name, bn_act *out);
int bottleneck_reserve(bottleneck *b, int cap);
void bottleneck_free(bottleneck *b);

/* stream[N, H] += s * f(b->vbuf) (the caller filled vbuf with v). */
void bottleneck_forward(gemm_backend be, bottleneck *b, float *stream, int N);
/* b->dv = d(stream)/dv^T dstream; parameter gradients accumulate. */
void bottleneck_backward(gemm_backend be, bottleneck *b, const float *dstream, int N);

#endif
