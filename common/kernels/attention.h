/*
 * attention.h - causal multi-head attention with grouped-query heads and optional prefix
 * key/value positions (prefix tuning), forward/backward.
 *
 * Shape legend: B batch, T positions, H query heads, KV key/value heads (H % KV == 0, query head h
 * reads key/value head h / (H/KV)), hd head size, P prefix positions, S = P + T.
 *
 * Queries, keys and values are read out of one row-major buffer qkv[B*T, ld]: the query of head h
 * at column q_off + h*hd, key/value of head g at k_off + g*hd and v_off + g*hd. GPT-2's fused
 * c_attn output and Llama's separate projections written side by side both fit this.
 * Prefix keys/values (may be NULL when P == 0): row p of pk/pv (stride p_ld) holds KV*hd values,
 * head-major; every query sees all P of them, unmasked, ahead of its causal window.
 *
 * probs[B,H,T,S] holds the softmax (row t uses entries 0..P+t, the rest are 0).
 *
 * Both passes are blocked matrix products per head (attention.c) and use OpenMP internally, with at
 * most `threads` threads (the work buffer holds one slice per thread); call them from the main
 * thread only. work: attention_work_floats(s) floats, for any shape up to s.
 */
#ifndef PEFT_ATTENTION_H
#define PEFT_ATTENTION_H

#include <stddef.h>

typedef struct attn_shape {
    int B, T, H, KV, hd, P;
    int ld, q_off, k_off, v_off; /* layout of qkv (and dqkv) */
    int p_ld;                    /* row stride of pk, pv, dpk, dpv */
    int threads;                 /* slices of the work buffer (<= 0: one) */
} attn_shape;

size_t attention_work_floats(const attn_shape *s);

/* out[B*T, H*hd] (row stride H*hd). */
void attention_forward(float *out, float *probs, float *work, const float *qkv, const float *pk, const float *pv,
                       const attn_shape *s);

/* Accumulates into dqkv (same layout as qkv) and, when not NULL, dpk/dpv. */
void attention_backward(float *dqkv, float *dpk, float *dpv, float *work, const float *probs, const float *dout,
                        const float *qkv, const float *pk, const float *pv, const attn_shape *s);

#endif
