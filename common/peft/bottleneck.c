#include "peft/bottleneck.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "kernels/ops.h"

int bottleneck_act_parse(const char *name, bn_act *out) {
    if (!strcmp(name, "relu")) *out = BN_ACT_RELU;
    else if (!strcmp(name, "swish") || !strcmp(name, "silu")) *out = BN_ACT_SILU;
    else if (!strcmp(name, "gelu")) *out = BN_ACT_GELU;
    else if (!strcmp(name, "gelu_new")) *out = BN_ACT_GELU_TANH;
    else return err_set(PEFT_EUSAGE, "--non-linearity: expected relu, swish, silu, gelu or gelu_new, got '%s'", name);
    return PEFT_OK;
}

int bottleneck_reserve(bottleneck *b, int cap) {
    if (cap <= b->cap) return PEFT_OK;
    bottleneck_free(b);
    const size_t n = (size_t)cap, H = (size_t)b->H, d = (size_t)b->d;
    b->vbuf = malloc(n * H * sizeof(float));
    b->pre = malloc(n * d * sizeof(float));
    b->act_out = malloc(n * d * sizeof(float));
    b->dact = malloc(n * d * sizeof(float));
    b->dv = malloc(n * H * sizeof(float));
    bool ok = b->vbuf && b->pre && b->act_out && b->dact && b->dv;
    if (b->ln_before) {
        b->vln = malloc(n * H * sizeof(float));
        b->mean = malloc(n * sizeof(float));
        b->rstd = malloc(n * sizeof(float));
        ok = ok && b->vln && b->mean && b->rstd;
    }
    if (!ok) {
        bottleneck_free(b);
        return err_set(PEFT_ENOMEM, "out of memory for adapter activations");
    }
    b->cap = cap;
    return PEFT_OK;
}

void bottleneck_free(bottleneck *b) {
    free(b->vbuf);
    free(b->vln);
    free(b->mean);
    free(b->rstd);
    free(b->pre);
    free(b->act_out);
    free(b->dact);
    free(b->dv);
    b->vbuf = b->vln = b->mean = b->rstd = b->pre = b->act_out = b->dact = b->dv = NULL;
    b->cap = 0;
}

static void act_forward(bn_act a, float *out, const float *in, size_t n) {
    switch (a) {
    case BN_ACT_RELU:
        for (size_t i = 0; i < n; i++) out[i] = in[i] > 0.0f ? in[i] : 0.0f;
        break;
    case BN_ACT_SILU:
        for (size_t i = 0; i < n; i++) out[i] = in[i] / (1.0f + expf(-in[i]));
        break;
    case BN_ACT_GELU:
    case BN_ACT_GELU_TANH:
        gelu_forward(out, in, n, a == BN_ACT_GELU_TANH);
        break;
    }
}

/* dpre = act'(pre) * dout, in place on dpre (which holds dout); scratch holds n floats. */
static void act_backward(bn_act a, float *dpre, const float *pre, float *scratch, size_t n) {
    const float *dout = dpre;
    switch (a) {
    case BN_ACT_RELU:
        for (size_t i = 0; i < n; i++) dpre[i] = pre[i] > 0.0f ? dout[i] : 0.0f;
        break;
    case BN_ACT_SILU:
        for (size_t i = 0; i < n; i++) {
            float s = 1.0f / (1.0f + expf(-pre[i]));
            dpre[i] = dout[i] * s * (1.0f + pre[i] * (1.0f - s));
        }
        break;
    case BN_ACT_GELU:
    case BN_ACT_GELU_TANH:
        memcpy(scratch, dout, n * sizeof(float));
        memset(dpre, 0, n * sizeof(float));
        gelu_backward(dpre, scratch, pre, n, a == BN_ACT_GELU_TANH);
        break;
    }
}

void bottleneck_forward(gemm_backend be, bottleneck *b, float *stream, int N) {
    PEFT_ASSERT(N <= b->cap);
    const int H = b->H, d = b->d;
    const float *v = b->vbuf;
    if (b->ln_before) {
        layernorm_forward(b->vln, b->mean, b->rstd, b->vbuf, b->ln_w, b->ln_b, N, H, 1e-5f);
        v = b->vln;
    }
    gemm_f32(be, 0, 1, N, d, H, 1.0f, v, H, b->down_w, H, 0.0f, b->pre, d);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < d; j++) b->pre[(size_t)i * d + j] += b->down_b[j];
    act_forward(b->act, b->act_out, b->pre, (size_t)N * d);
    gemm_f32(be, 0, 1, N, H, d, b->scaling, b->act_out, d, b->up_w, d, 1.0f, stream, H);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < H; j++) stream[(size_t)i * H + j] += b->scaling * b->up_b[j];
}

void bottleneck_backward(gemm_backend be, bottleneck *b, const float *dstream, int N) {
    const int H = b->H, d = b->d;
    const float s = b->scaling;
    const float *v = b->ln_before ? b->vln : b->vbuf;
    /* up: out = s (act W_up^T + b_up) */
    gemm_f32(be, 1, 0, H, d, N, s, dstream, H, b->act_out, d, 1.0f, b->dup_w, d);
    for (int j = 0; j < H; j++) {
        float acc = 0.0f;
        for (int i = 0; i < N; i++) acc += dstream[(size_t)i * H + j];
        b->dup_b[j] += s * acc;
    }
    gemm_f32(be, 0, 0, N, d, H, s, dstream, H, b->up_w, d, 0.0f, b->dact, d);
    act_backward(b->act, b->dact, b->pre, b->act_out, (size_t)N * d); /* act_out is no longer needed */
    /* down */
    gemm_f32(be, 1, 0, d, H, N, 1.0f, b->dact, d, v, H, 1.0f, b->ddown_w, H);
    for (int j = 0; j < d; j++) {
        float acc = 0.0f;
        for (int i = 0; i < N; i++) acc += b->dact[(size_t)i * d + j];
        b->ddown_b[j] += acc;
    }
    if (!b->ln_before) {
        gemm_f32(be, 0, 0, N, H, d, 1.0f, b->dact, d, b->down_w, H, 0.0f, b->dv, H);
        return;
    }
    gemm_f32(be, 0, 0, N, H, d, 1.0f, b->dact, d, b->down_w, H, 0.0f, b->vln, H); /* vln is free now */
    memset(b->dv, 0, (size_t)N * H * sizeof(float));
    layernorm_backward(b->dv, b->dln_w, b->dln_b, b->vln, b->vbuf, b->ln_w, b->mean, b->rstd, N, H);
}
