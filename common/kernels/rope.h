/*
 * rope.h - rotary position embeddings in Hugging Face's rotate-half convention.
 *
 * For head vector x (hd values) at position p and frequency index i < hd/2:
 *   x'[i]        = x[i] cos(p w_i) - x[i + hd/2] sin(p w_i)
 *   x'[i + hd/2] = x[i + hd/2] cos(p w_i) + x[i] sin(p w_i)
 * with w_i = theta^(-2i/hd), adjusted by rope_scaling ("linear": w_i / factor; "llama3": the
 * wavelength bands of transformers' _compute_llama3_parameters).
 */
#ifndef PEFT_ROPE_H
#define PEFT_ROPE_H

#include "model/config.h"

/* Fills cos/sin tables [npos, hd/2] for positions 0..npos-1 (computed in double). */
void rope_table_init(float *cos_t, float *sin_t, int npos, const model_config *c);

/* In place on x[B*T, ld] at columns off + h*hd for h < nh; row t of each sequence is at position
 * pos0 + t. inverse = 1 rotates by the negative angle: the backward pass of the forward rotation. */
void rope_apply(float *x, int ld, int off, int nh, int hd, int B, int T, int pos0, const float *cos_t,
                const float *sin_t, int inverse);

#endif
