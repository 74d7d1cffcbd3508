/*
 * ops.h - the elementwise and row-wise transformer kernels, forward/backward pairs (llm.c form:
 * outputs first, then inputs, then sizes).
 *
 * Shape legend: N = rows (tokens, B*T), C = channels, V = vocabulary, n = element count.
 * Backward functions ACCUMULATE (+=) into their input-gradient and parameter-gradient outputs,
 * so residual branches can share one buffer; parameter-gradient pointers may be NULL (frozen
 * parameters: their gradient is not computed at all).
 * Every kernel parallelises with OpenMP internally; call them from the main thread only.
 * Each has a finite-difference check in tests/unit/test_gradcheck.c.
 */
#ifndef PEFT_OPS_H
#define PEFT_OPS_H

#include <stddef.h>

/* out[N,C] = (inp - mean) * rstd * weight + bias; saves mean[N], rstd[N]. bias may be NULL. */
void layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *weight,
                       const float *bias, int N, int C, float eps);
void layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                        const float *weight, const float *mean, const float *rstd, int N, int C);

/* out[N,C] = inp * rsqrt(mean(inp^2) + eps) * weight; saves rstd[N]. */
void rmsnorm_forward(float *out, float *rstd, const float *inp, const float *weight, int N, int C, float eps);
void rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp, const float *weight,
                      const float *rstd, int N, int C);

/* GELU, tanh approximation ("gelu_new") when tanh_approx, else the exact erf form. */
void gelu_forward(float *out, const float *inp, size_t n, int tanh_approx);
void gelu_backward(float *dinp, const float *dout, const float *inp, size_t n, int tanh_approx);

/* out = silu(gate) * up (SwiGLU's gating), elementwise over n. */
void swiglu_forward(float *out, const float *gate, const float *up, size_t n);
void swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up, size_t n);

/* Softmax cross-entropy over rows with targets: row i with targets[i] >= 0 gets
 * nll[i] = -log softmax(logits[i])[targets[i]], rows with targets[i] < 0 get nll[i] = 0.
 * Returns the sum of nll over valid rows (double) and their count in *count. */
double xent_forward(float *nll, const float *logits, const int *targets, int N, int V, int *count);
/* In place: logits[N,V] becomes d(scale * sum nll)/d logits; rows without a target become 0. */
void xent_backward(float *logits, const int *targets, float scale, int N, int V);

/* Both at once, for a block of rows that is still in cache: nll as xent_forward (returning the sum
 * and *count), and logits become d(sum nll)/d logits (scale 1) as xent_backward. */
double xent_forward_backward(float *nll, float *logits, const int *targets, int N, int V, int *count);

#endif
