#include "kernels/ops.h"
#include "kernels/fastmath.h"
#include "kernels/parallel.h"

#include <math.h>
#include <string.h>

void layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *weight,
                       const float *bias, int N, int C, float eps) {
#pragma omp parallel for if (PEFT_PAR((size_t)N * C))
    for (int i = 0; i < N; i++) {
        const float *x = inp + (size_t)i * C;
        float *y = out + (size_t)i * C;
        double m = 0.0, v = 0.0;
        for (int j = 0; j < C; j++) m += x[j];
        m /= C;
        for (int j = 0; j < C; j++) {
            double d = x[j] - m;
            v += d * d;
        }
        v /= C;
        float s = (float)(1.0 / sqrt(v + eps)), mf = (float)m;
        for (int j = 0; j < C; j++) y[j] = (x[j] - mf) * s * weight[j] + (bias ? bias[j] : 0.0f);
        mean[i] = mf;
        rstd[i] = s;
    }
}

void layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                        const float *weight, const float *mean, const float *rstd, int N, int C) {
#pragma omp parallel for if (PEFT_PAR((size_t)N * C))
    for (int i = 0; i < N; i++) {
        const float *x = inp + (size_t)i * C, *dy = dout + (size_t)i * C;
        float *dx = dinp + (size_t)i * C;
        float m = mean[i], s = rstd[i];
        /* dx = s * (g - mean(g) - xhat * mean(g * xhat)), g = dy * weight */
        float gmean = 0.0f, gxmean = 0.0f;
        for (int j = 0; j < C; j++) {
            float g = dy[j] * weight[j];
            gmean += g;
            gxmean += g * (x[j] - m) * s;
        }
        gmean /= C;
        gxmean /= C;
        for (int j = 0; j < C; j++) {
            float xhat = (x[j] - m) * s;
            dx[j] += s * (dy[j] * weight[j] - gmean - xhat * gxmean);
        }
    }
    if (!dweight && !dbias) return;
#pragma omp parallel for if (PEFT_PAR((size_t)N * C))
    for (int j = 0; j < C; j++) {
        float dw = 0.0f, db = 0.0f;
        for (int i = 0; i < N; i++) {
            float dy = dout[(size_t)i * C + j];
            dw += dy * (inp[(size_t)i * C + j] - mean[i]) * rstd[i];
            db += dy;
        }
        if (dweight) dweight[j] += dw;
        if (dbias) dbias[j] += db;
    }
}

void rmsnorm_forward(float *out, float *rstd, const float *inp, const float *weight, int N, int C, float eps) {
#pragma omp parallel for if (PEFT_PAR((size_t)N * C))
    for (int i = 0; i < N; i++) {
        const float *x = inp + (size_t)i * C;
        float *y = out + (size_t)i * C;
        double ss = 0.0;
        for (int j = 0; j < C; j++) ss += (double)x[j] * x[j];
        float s = (float)(1.0 / sqrt(ss / C + eps));
        for (int j = 0; j < C; j++) y[j] = x[j] * s * weight[j];
        rstd[i] = s;
    }
}

void rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp, const float *weight,
                      const float *rstd, int N, int C) {
#pragma omp parallel for if (PEFT_PAR((size_t)N * C))
    for (int i = 0; i < N; i++) {
        const float *x = inp + (size_t)i * C, *dy = dout + (size_t)i * C;
        float *dx = dinp + (size_t)i * C;
        float s = rstd[i];
        /* y = x * s * w, s = (mean(x^2)+eps)^-1/2: dx = s * g - x * s^3 * mean(g * x), g = dy * w */
        float gx = 0.0f;
        for (int j = 0; j < C; j++) gx += dy[j] * weight[j] * x[j];
        gx /= C;
        float s3 = s * s * s;
        for (int j = 0; j < C; j++) dx[j] += s * dy[j] * weight[j] - x[j] * s3 * gx;
    }
    if (!dweight) return;
#pragma omp parallel for if (PEFT_PAR((size_t)N * C))
    for (int j = 0; j < C; j++) {
        float dw = 0.0f;
        for (int i = 0; i < N; i++) dw += dout[(size_t)i * C + j] * inp[(size_t)i * C + j] * rstd[i];
        dweight[j] += dw;
    }
}

#define GELU_K 0.7978845608028654f /* sqrt(2/pi) */
#define GELU_C 0.044715f

void gelu_forward(float *out, const float *inp, size_t n, int tanh_approx) {
    if (tanh_approx) {
#pragma omp parallel for simd if (PEFT_PAR(n))
        for (size_t i = 0; i < n; i++) {
            float x = inp[i];
            out[i] = 0.5f * x * (1.0f + fast_tanhf(GELU_K * (x + GELU_C * x * x * x)));
        }
    } else {
#pragma omp parallel for if (PEFT_PAR(n))
        for (size_t i = 0; i < n; i++) out[i] = 0.5f * inp[i] * (1.0f + erff(inp[i] * 0.7071067811865476f));
    }
}

void gelu_backward(float *dinp, const float *dout, const float *inp, size_t n, int tanh_approx) {
    if (tanh_approx) {
#pragma omp parallel for simd if (PEFT_PAR(n))
        for (size_t i = 0; i < n; i++) {
            float x = inp[i];
            float u = GELU_K * (x + GELU_C * x * x * x);
            float t = fast_tanhf(u);
            float du = GELU_K * (1.0f + 3.0f * GELU_C * x * x);
            dinp[i] += dout[i] * (0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * du);
        }
    } else {
#pragma omp parallel for if (PEFT_PAR(n))
        for (size_t i = 0; i < n; i++) {
            float x = inp[i];
            float cdf = 0.5f * (1.0f + erff(x * 0.7071067811865476f));
            float pdf = 0.3989422804014327f * expf(-0.5f * x * x);
            dinp[i] += dout[i] * (cdf + x * pdf);
        }
    }
}

void swiglu_forward(float *out, const float *gate, const float *up, size_t n) {
#pragma omp parallel for if (PEFT_PAR(n))
    for (size_t i = 0; i < n; i++) {
        float g = gate[i];
        out[i] = g / (1.0f + fast_expf(-g)) * up[i];
    }
}

void swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up, size_t n) {
#pragma omp parallel for if (PEFT_PAR(n))
    for (size_t i = 0; i < n; i++) {
        float g = gate[i];
        float sig = 1.0f / (1.0f + fast_expf(-g));
        float silu = g * sig;
        dup[i] += dout[i] * silu;
        dgate[i] += dout[i] * up[i] * sig * (1.0f + g * (1.0f - sig));
    }
}

double xent_forward(float *nll, const float *logits, const int *targets, int N, int V, int *count) {
    double total = 0.0;
    int valid = 0;
#pragma omp parallel for reduction(+ : total, valid) if (PEFT_PAR((size_t)N * V))
    for (int i = 0; i < N; i++) {
        if (targets[i] < 0) {
            nll[i] = 0.0f;
            continue;
        }
        const float *z = logits + (size_t)i * V;
        float mx = z[0];
#pragma omp simd reduction(max : mx)
        for (int j = 0; j < V; j++) mx = z[j] > mx ? z[j] : mx;
        float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
        for (int j = 0; j < V; j++) sum += fast_expf(z[j] - mx);
        double l = log((double)sum) + mx - z[targets[i]];
        nll[i] = (float)l;
        total += l;
        valid++;
    }
    *count = valid;
    return total;
}

void xent_backward(float *logits, const int *targets, float scale, int N, int V) {
#pragma omp parallel for if (PEFT_PAR((size_t)N * V))
    for (int i = 0; i < N; i++) {
        float *z = logits + (size_t)i * V;
        if (targets[i] < 0) {
            memset(z, 0, (size_t)V * sizeof(float));
            continue;
        }
        float mx = z[0];
#pragma omp simd reduction(max : mx)
        for (int j = 0; j < V; j++) mx = z[j] > mx ? z[j] : mx;
        float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
        for (int j = 0; j < V; j++) {
            z[j] = fast_expf(z[j] - mx);
            sum += z[j];
        }
        const float inv = scale / sum;
#pragma omp simd
        for (int j = 0; j < V; j++) z[j] *= inv;
        z[targets[i]] -= scale;
    }
}

double xent_forward_backward(float *nll, float *logits, const int *targets, int N, int V, int *count) {
    double total = 0.0;
    int valid = 0;
#pragma omp parallel for reduction(+ : total, valid) if (PEFT_PAR((size_t)N * V))
    for (int i = 0; i < N; i++) {
        float *z = logits + (size_t)i * V;
        if (targets[i] < 0) {
            nll[i] = 0.0f;
            memset(z, 0, (size_t)V * sizeof(float));
            continue;
        }
        float mx = z[0];
#pragma omp simd reduction(max : mx)
        for (int j = 0; j < V; j++) mx = z[j] > mx ? z[j] : mx;
        const float zt = z[targets[i]];
        float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
        for (int j = 0; j < V; j++) {
            z[j] = fast_expf(z[j] - mx);
            sum += z[j];
        }
        const double l = log((double)sum) + mx - zt;
        nll[i] = (float)l;
        total += l;
        valid++;
        const float inv = 1.0f / sum;
#pragma omp simd
        for (int j = 0; j < V; j++) z[j] *= inv;
        z[targets[i]] -= 1.0f;
    }
    *count = valid;
    return total;
}
