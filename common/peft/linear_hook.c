#include "peft/linear_hook.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "quant/qweight.h"

int linear_hook_reserve(linear_hook *h, const linear *l, int cap) {
    if (cap <= h->cap) return PEFT_OK;
    linear_hook_free(h);
    const size_t n = (size_t)cap, in = (size_t)l->in, out = (size_t)l->out, r = (size_t)h->r;
    bool lora = h->kind == HOOK_LORA || h->kind == HOOK_DORA;
    bool drop = lora && h->dropout > 0.0f;
    if (lora) {
        h->h = malloc(n * r * sizeof(float));
        h->dh = malloc(n * r * sizeof(float));
        if (!h->h || !h->dh) goto out_nomem;
    }
    if (drop || h->kind == HOOK_IA3_IN) {
        h->xin = malloc(n * in * sizeof(float));
        if (!h->xin) goto out_nomem;
    }
    if (drop && !(h->keep = malloc(n * in * sizeof(float)))) goto out_nomem;
    if ((h->kind == HOOK_IA3_OUT || h->kind == HOOK_DORA) && !(h->ys = malloc(n * out * sizeof(float)))) goto out_nomem;
    if (h->kind == HOOK_IA3_IN && !(h->dxs = malloc(n * in * sizeof(float)))) goto out_nomem;
    if (h->kind != HOOK_LORA && !(h->colsum = malloc((in > out ? in : out) * sizeof(double)))) goto out_nomem;
    if (h->kind == HOOK_DORA) {
        h->norm = malloc(out * sizeof(float));
        h->BA = malloc(out * in * sizeof(float));
        h->wrow = malloc(in * sizeof(float));
        if (!h->norm || !h->BA || !h->wrow) goto out_nomem;
    }
    h->cap = cap;
    return PEFT_OK;
out_nomem:
    linear_hook_free(h);
    return err_set(PEFT_ENOMEM, "%s: out of memory for the adapter's activations", l->module);
}

void linear_hook_free(linear_hook *h) {
    free(h->h);
    free(h->dh);
    free(h->xin);
    free(h->keep);
    free(h->ys);
    free(h->dxs);
    free(h->norm);
    free(h->colsum);
    free(h->BA);
    free(h->wrow);
    h->h = h->dh = h->xin = h->keep = h->ys = h->dxs = h->norm = h->BA = h->wrow = NULL;
    h->colsum = NULL;
    h->cap = 0;
}

/* The LoRA path's input: x itself, or x with inverted dropout applied (mask kept for backward). */
static const float *lora_input(linear_hook *h, const linear *l, const float *x, int ldx, int N, int *ld) {
    if (!(h->dropout > 0.0f && *h->training)) {
        *ld = ldx;
        return x;
    }
    const int in = l->in;
    const float scale = 1.0f / (1.0f - h->dropout);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < in; j++) {
            float k = rng_uniform(h->rng) >= h->dropout ? scale : 0.0f;
            h->keep[(size_t)i * in + j] = k;
            h->xin[(size_t)i * in + j] = x[(size_t)i * ldx + j] * k;
        }
    *ld = in;
    return h->xin;
}

static bool dropout_active(const linear_hook *h) { return h->dropout > 0.0f && *h->training; }

/* sum[j] = sum over rows i of a[i, j] * b[i, j] (b NULL: of a[i, j]) for j < n, in double, row by
 * row: walking a column at a time strides a whole row per element, which for GPT-2's 2304-float
 * rows hits the same few L1 sets every time. Each column's sum runs over i in order, as before. */
static void column_sums(double *sum, const float *a, int lda, const float *b, int ldb, int N, int n) {
    for (int j = 0; j < n; j++) sum[j] = 0.0;
    for (int i = 0; i < N; i++) {
        const float *ar = a + (size_t)i * lda, *br = b ? b + (size_t)i * ldb : NULL;
        if (br)
            for (int j = 0; j < n; j++) sum[j] += (double)ar[j] * br[j];
        else
            for (int j = 0; j < n; j++) sum[j] += ar[j];
    }
}

/* y (+)= s * (B h + b_B) where h = A xin */
static void lora_forward_delta(gemm_backend be, linear_hook *h, const linear *l, float *y, int ldy, const float *xin,
                               int ldin, int N) {
    gemm_f32(be, 0, 1, N, h->r, l->in, 1.0f, xin, ldin, h->A, l->in, 0.0f, h->h, h->r);
    gemm_f32(be, 0, 1, N, l->out, h->r, h->scaling, h->h, h->r, h->B, h->r, 1.0f, y, ldy);
    if (h->B_bias) {
        const float *bb = h->B_bias;
        const float s = h->scaling;
        for (int i = 0; i < N; i++)
            for (int j = 0; j < l->out; j++) y[(size_t)i * ldy + j] += s * bb[j];
    }
}

/* Gradients of the LoRA path for output gradient g (stride ldg): dB, db_B, dA, and dx += ... */
static void lora_backward_delta(gemm_backend be, linear_hook *h, const linear *l, float *dx, int lddx, const float *g,
                                int ldg, const float *x, int ldx, int N) {
    const int in = l->in, out = l->out, r = h->r;
    const float s = h->scaling;
    const bool drop = dropout_active(h);
    const float *xin = drop ? h->xin : x;
    const int ldin = drop ? in : ldx;
    gemm_f32(be, 1, 0, out, r, N, s, g, ldg, h->h, r, 1.0f, h->dB, r);
    if (h->dB_bias)
        for (int j = 0; j < out; j++) {
            float acc = 0.0f;
            for (int i = 0; i < N; i++) acc += g[(size_t)i * ldg + j];
            h->dB_bias[j] += s * acc;
        }
    gemm_f32(be, 0, 0, N, r, out, s, g, ldg, h->B, r, 0.0f, h->dh, r);
    gemm_f32(be, 1, 0, r, in, N, 1.0f, h->dh, r, xin, ldin, 1.0f, h->dA, in);
    if (!dx) return;
    if (!drop) {
        gemm_f32(be, 0, 0, N, in, r, 1.0f, h->dh, r, h->A, in, 1.0f, dx, lddx);
        return;
    }
    gemm_f32(be, 0, 0, N, in, r, 1.0f, h->dh, r, h->A, in, 0.0f, h->xin, in); /* xin is free now */
    for (int i = 0; i < N; i++)
        for (int j = 0; j < in; j++) dx[(size_t)i * lddx + j] += h->xin[(size_t)i * in + j] * h->keep[(size_t)i * in + j];
}

void linear_hook_dora_norms(gemm_backend be, const linear *l, linear_hook *h) {
    const int in = l->in, out = l->out;
    const float *W = l->weight->data;
    gemm_f32(be, 0, 0, out, in, h->r, 1.0f, h->B, h->r, h->A, in, 0.0f, h->BA, in);
    if (l->in_major && !l->weight->q) {
        /* W is [in, out]: 64 columns at a time, down W's rows (a column at a time strides a whole
         * row of W per element); each column's sum still runs over i in order */
        enum { JB = 64 };
        double ss[JB];
        for (int j0 = 0; j0 < out; j0 += JB) {
            const int nj = out - j0 < JB ? out - j0 : JB;
            for (int j = 0; j < nj; j++) ss[j] = 0.0;
            for (int i = 0; i < in; i++) {
                const float *wr = W + (size_t)i * out + j0;
                for (int j = 0; j < nj; j++) {
                    double v = wr[j] + h->scaling * h->BA[(size_t)(j0 + j) * in + i];
                    ss[j] += v * v;
                }
            }
            for (int j = 0; j < nj; j++) h->norm[j0 + j] = (float)sqrt(ss[j]);
        }
        return;
    }
    for (int j = 0; j < out; j++) {
        double ss = 0.0;
        const float *row = NULL;
        if (l->weight->q) { /* compressed: [out, in], decoded one row at a time */
            qweight_tile(l->weight->q, j, 1, 0, in, h->wrow);
            row = h->wrow;
        }
        for (int i = 0; i < in; i++) {
            float w = row ? row[i] : l->in_major ? W[(size_t)i * out + j] : W[(size_t)j * in + i];
            double v = w + h->scaling * h->BA[(size_t)j * in + i];
            ss += v * v;
        }
        h->norm[j] = (float)sqrt(ss);
    }
}

void linear_hook_forward(gemm_backend be, const linear *l, float *y, int ldy, const float *x, int ldx, int N,
                         int accumulate) {
    linear_hook *h = l->hook;
    PEFT_ASSERT(N <= h->cap);
    const int in = l->in, out = l->out;
    int ldin;
    switch (h->kind) {
    case HOOK_LORA: {
        linear_base_forward(be, l, y, ldy, x, ldx, N, accumulate);
        const float *xin = lora_input(h, l, x, ldx, N, &ldin);
        lora_forward_delta(be, h, l, y, ldy, xin, ldin, N);
        return;
    }
    case HOOK_DORA: {
        /* z = W x + s B A drop(x) (no bias); y = (m / n) z + b */
        linear dense = *l;
        dense.bias = NULL;
        linear_base_forward(be, &dense, h->ys, out, x, ldx, N, 0);
        const float *xin = lora_input(h, l, x, ldx, N, &ldin);
        lora_forward_delta(be, h, l, h->ys, out, xin, ldin, N);
        linear_hook_dora_norms(be, l, h);
        const float *b = l->bias ? l->bias->data : NULL;
        for (int i = 0; i < N; i++) {
            float *dst = y + (size_t)i * ldy;
            const float *z = h->ys + (size_t)i * out;
            for (int j = 0; j < out; j++) {
                float v = h->mag[j] / h->norm[j] * z[j] + (b ? b[j] : 0.0f);
                dst[j] = accumulate ? dst[j] + v : v;
            }
        }
        return;
    }
    case HOOK_IA3_OUT:
        /* u = W x + b stays in ys for backward's dl (dividing y by l would lose precision) */
        linear_base_forward(be, l, h->ys, out, x, ldx, N, 0);
        for (int i = 0; i < N; i++) {
            const float *u = h->ys + (size_t)i * out;
            float *dst = y + (size_t)i * ldy;
            if (accumulate)
                for (int j = 0; j < out; j++) dst[j] += u[j] * h->l[j];
            else
                for (int j = 0; j < out; j++) dst[j] = u[j] * h->l[j];
        }
        return;
    case HOOK_IA3_IN:
        for (int i = 0; i < N; i++)
            for (int j = 0; j < in; j++) h->xin[(size_t)i * in + j] = x[(size_t)i * ldx + j] * h->l[j];
        linear_base_forward(be, l, y, ldy, h->xin, in, N, accumulate);
        return;
    }
}

void linear_hook_backward(gemm_backend be, const linear *l, float *dx, int lddx, const float *dy, int lddy,
                          const float *x, int ldx, int N, int accumulate_dx) {
    linear_hook *h = l->hook;
    const int in = l->in, out = l->out;
    switch (h->kind) {
    case HOOK_LORA:
        linear_base_backward(be, l, dx, lddx, dy, lddy, x, ldx, N, accumulate_dx);
        lora_backward_delta(be, h, l, dx, lddx, dy, lddy, x, ldx, N);
        return;
    case HOOK_DORA: {
        /* dm_j = sum_i dy_ij z_ij / n_j; dz = dy * m / n (n is a constant); bias grad from dy */
        column_sums(h->colsum, dy, lddy, h->ys, out, N, out);
        for (int j = 0; j < out; j++) h->dmag[j] += (float)(h->colsum[j] / h->norm[j]);
        for (int i = 0; i < N; i++)
            for (int j = 0; j < out; j++)
                h->ys[(size_t)i * out + j] = dy[(size_t)i * lddy + j] * h->mag[j] / h->norm[j];
        linear dense = *l;
        dense.bias = NULL;
        linear_base_backward(be, &dense, dx, lddx, h->ys, out, x, ldx, N, accumulate_dx);
        if (l->bias && l->bias->grad) {
            float *db = l->bias->grad;
            for (int i = 0; i < N; i++)
                for (int j = 0; j < out; j++) db[j] += dy[(size_t)i * lddy + j];
        }
        lora_backward_delta(be, h, l, dx, lddx, h->ys, out, x, ldx, N);
        return;
    }
    case HOOK_IA3_OUT: {
        /* y = u * l with u = W x + b (ys, saved by this layer's forward): dl_j = sum_i dy_ij u_ij,
         * du = dy * l */
        column_sums(h->colsum, dy, lddy, h->ys, out, N, out);
        for (int j = 0; j < out; j++) h->dl[j] += (float)h->colsum[j];
        for (int i = 0; i < N; i++)
            for (int j = 0; j < out; j++) h->ys[(size_t)i * out + j] = dy[(size_t)i * lddy + j] * h->l[j];
        linear_base_backward(be, l, dx, lddx, h->ys, out, x, ldx, N, accumulate_dx);
        return;
    }
    case HOOK_IA3_IN: {
        /* y = W (x * l) + b: g = dy W; dl_j = sum_i g_ij x_ij; dx = g * l */
        linear_base_backward(be, l, h->dxs, in, dy, lddy, h->xin, in, N, 0);
        column_sums(h->colsum, h->dxs, in, x, ldx, N, in);
        for (int j = 0; j < in; j++) h->dl[j] += (float)h->colsum[j];
        if (!dx) return;
        for (int i = 0; i < N; i++)
            for (int j = 0; j < in; j++) {
                float g = h->dxs[(size_t)i * in + j] * h->l[j];
                float *d = &dx[(size_t)i * lddx + j];
                *d = accumulate_dx ? *d + g : g;
            }
        return;
    }
    }
}
