#include "model/linear.h"

#include "kernels/parallel.h"
#include "peft/linear_hook.h"

void linear_base_forward(gemm_backend be, const linear *l, float *y, int ldy, const float *x, int ldx, int N,
                         int accumulate) {
    const float *W = l->weight->data;
    if (l->in_major) gemm_f32(be, 0, 0, N, l->out, l->in, 1.0f, x, ldx, W, l->out, accumulate ? 1.0f : 0.0f, y, ldy);
    else gemm_f32(be, 0, 1, N, l->out, l->in, 1.0f, x, ldx, W, l->in, accumulate ? 1.0f : 0.0f, y, ldy);
    if (!l->bias) return;
    const float *b = l->bias->data;
    const int out = l->out;
#pragma omp parallel for if (PEFT_PAR((size_t)N * l->out))
    for (int i = 0; i < N; i++) {
        float *row = y + (size_t)i * ldy;
        for (int j = 0; j < out; j++) row[j] += b[j];
    }
}

void linear_base_backward(gemm_backend be, const linear *l, float *dx, int lddx, const float *dy, int lddy,
                          const float *x, int ldx, int N, int accumulate_dx) {
    const float *W = l->weight->data;
    if (dx) {
        float beta = accumulate_dx ? 1.0f : 0.0f;
        if (l->in_major) gemm_f32(be, 0, 1, N, l->in, l->out, 1.0f, dy, lddy, W, l->out, beta, dx, lddx);
        else gemm_f32(be, 0, 0, N, l->in, l->out, 1.0f, dy, lddy, W, l->in, beta, dx, lddx);
    }
    if (l->weight->grad) {
        if (l->in_major) gemm_f32(be, 1, 0, l->in, l->out, N, 1.0f, x, ldx, dy, lddy, 1.0f, l->weight->grad, l->out);
        else gemm_f32(be, 1, 0, l->out, l->in, N, 1.0f, dy, lddy, x, ldx, 1.0f, l->weight->grad, l->in);
    }
    if (l->bias && l->bias->grad) {
        float *db = l->bias->grad;
        const int out = l->out;
#pragma omp parallel for if (PEFT_PAR((size_t)N * out))
        for (int j = 0; j < out; j++) {
            float s = 0.0f;
            for (int i = 0; i < N; i++) s += dy[(size_t)i * lddy + j];
            db[j] += s;
        }
    }
}

void linear_forward(gemm_backend be, const linear *l, float *y, int ldy, const float *x, int ldx, int N,
                    int accumulate) {
    if (l->hook) linear_hook_forward(be, l, y, ldy, x, ldx, N, accumulate);
    else linear_base_forward(be, l, y, ldy, x, ldx, N, accumulate);
}

void linear_backward(gemm_backend be, const linear *l, float *dx, int lddx, const float *dy, int lddy,
                     const float *x, int ldx, int N, int accumulate_dx) {
    if (l->hook) linear_hook_backward(be, l, dx, lddx, dy, lddy, x, ldx, N, accumulate_dx);
    else linear_base_backward(be, l, dx, lddx, dy, lddy, x, ldx, N, accumulate_dx);
}
