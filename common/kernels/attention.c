#include "kernels/attention.h"
#include "kernels/parallel.h"

#include <math.h>
#include <stddef.h>

static inline const float *key_at(const float *qkv, const float *pk, const attn_shape *s, int b, int j, int g) {
    if (j < s->P) return pk + (size_t)j * s->p_ld + (size_t)g * s->hd;
    return qkv + ((size_t)b * s->T + (j - s->P)) * s->ld + s->k_off + (size_t)g * s->hd;
}

static inline const float *value_at(const float *qkv, const float *pv, const attn_shape *s, int b, int j, int g) {
    if (j < s->P) return pv + (size_t)j * s->p_ld + (size_t)g * s->hd;
    return qkv + ((size_t)b * s->T + (j - s->P)) * s->ld + s->v_off + (size_t)g * s->hd;
}

void attention_forward(float *out, float *probs, const float *qkv, const float *pk, const float *pv,
                       const attn_shape *s) {
    const int B = s->B, T = s->T, H = s->H, hd = s->hd, P = s->P, S = P + T, group = s->H / s->KV;
    const float scale = 1.0f / sqrtf((float)hd);
#pragma omp parallel for collapse(3) if (PEFT_PAR((size_t)B * H * T * S * hd))
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int t = 0; t < T; t++) {
                const int g = h / group, n = P + t + 1;
                const float *q = qkv + ((size_t)b * T + t) * s->ld + s->q_off + (size_t)h * hd;
                float *p = probs + (((size_t)b * H + h) * T + t) * S;
                float mx = -INFINITY;
                for (int j = 0; j < n; j++) {
                    const float *k = key_at(qkv, pk, s, b, j, g);
                    float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
                    for (int d = 0; d < hd; d++) dot += q[d] * k[d];
                    p[j] = dot * scale;
                    mx = p[j] > mx ? p[j] : mx;
                }
                float sum = 0.0f;
                for (int j = 0; j < n; j++) {
                    p[j] = expf(p[j] - mx);
                    sum += p[j];
                }
                float inv = 1.0f / sum;
                for (int j = 0; j < n; j++) p[j] *= inv;
                for (int j = n; j < S; j++) p[j] = 0.0f;
                float *o = out + ((size_t)b * T + t) * H * hd + (size_t)h * hd;
                for (int d = 0; d < hd; d++) o[d] = 0.0f;
                for (int j = 0; j < n; j++) {
                    const float *v = value_at(qkv, pv, s, b, j, g);
                    for (int d = 0; d < hd; d++) o[d] += p[j] * v[d];
                }
            }
}

size_t attention_work_floats(const attn_shape *s) { return (size_t)s->KV * (s->P + s->T); }

void attention_backward(float *dqkv, float *dpk, float *dpv, float *work, const float *probs, const float *dout,
                        const float *qkv, const float *pk, const float *pv, const attn_shape *s) {
    const int B = s->B, T = s->T, H = s->H, hd = s->hd, P = s->P, S = P + T, group = s->H / s->KV;
    const float scale = 1.0f / sqrtf((float)hd);
    /* One thread owns one key/value head across the whole batch, so the key, value and prefix
     * gradients it accumulates are never touched by another thread. */
#pragma omp parallel for if (PEFT_PAR((size_t)B * H * T * S * hd))
    for (int g = 0; g < s->KV; g++) {
        float *dp = work + (size_t)g * S;
        for (int b = 0; b < B; b++)
            for (int h = g * group; h < (g + 1) * group; h++)
                for (int t = 0; t < T; t++) {
                    const int n = P + t + 1;
                    const size_t row = (size_t)b * T + t;
                    const float *q = qkv + row * s->ld + s->q_off + (size_t)h * hd;
                    float *dq = dqkv + row * s->ld + s->q_off + (size_t)h * hd;
                    const float *dy = dout + row * H * hd + (size_t)h * hd;
                    const float *p = probs + (((size_t)b * H + h) * T + t) * S;
                    /* dp_j = dy . v_j and dv_j += p_j dy */
                    float pdp = 0.0f;
                    for (int j = 0; j < n; j++) {
                        const float *v = value_at(qkv, pv, s, b, j, g);
                        float *dv = j < P ? (dpv ? dpv + (size_t)j * s->p_ld + (size_t)g * hd : NULL)
                                          : dqkv + ((size_t)b * T + (j - P)) * s->ld + s->v_off + (size_t)g * hd;
                        float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
                        for (int d = 0; d < hd; d++) acc += dy[d] * v[d];
                        if (dv)
                            for (int d = 0; d < hd; d++) dv[d] += p[j] * dy[d];
                        dp[j] = acc;
                        pdp += p[j] * acc;
                    }
                    /* through the softmax: ds_j = p_j (dp_j - sum_k p_k dp_k); then the scaled dot */
                    for (int j = 0; j < n; j++) {
                        float ds = p[j] * (dp[j] - pdp) * scale;
                        const float *k = key_at(qkv, pk, s, b, j, g);
                        float *dk = j < P ? (dpk ? dpk + (size_t)j * s->p_ld + (size_t)g * hd : NULL)
                                          : dqkv + ((size_t)b * T + (j - P)) * s->ld + s->k_off + (size_t)g * hd;
                        for (int d = 0; d < hd; d++) dq[d] += ds * k[d];
                        if (dk)
                            for (int d = 0; d < hd; d++) dk[d] += ds * q[d];
                    }
                }
    }
}
