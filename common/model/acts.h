/*
 * acts.h - the activation arena of one model (private to common/model/).
 *
 * Shape legend: L layers, N = B*T rows (T = virtual + real positions), C hidden, I intermediate,
 * QKV = (H + 2 KV) * hd, A = H * hd, S = P + T, V vocabulary. Per-layer buffers are laid out
 * layer after layer with the capacity's strides.
 */
#ifndef PEFT_ACTS_H
#define PEFT_ACTS_H

#include <stdbool.h>
#include <stddef.h>

#include "kernels/attention.h"
#include "model/model.h"

struct model_acts {
    int B, T, P;             /* capacity */
    int cur_B, cur_T, cur_P; /* shape of the last forward */
    int attn_threads;        /* threads attn_work has slices for (OpenMP's maximum at init) */
    bool fuse_head;          /* model_acts_set_fused_head */
    bool head_fused;         /* the last forward took the fused path: dhead holds the head's input gradient */
    size_t bytes;
    float *arena;
    float *resid;      /* [L+1, N, C] residual stream entering each layer; [L] leaves the last */
    float *ln1;        /* [L, N, C] */
    float *ln1_mean;   /* [L, N] (LayerNorm only) */
    float *ln1_rstd;   /* [L, N] */
    float *qkv;        /* [L, N, QKV] q | k | v, RoPE applied */
    float *probs;      /* [L, B, H, T, S] */
    float *atty;       /* [L, N, A] attention output before the output projection */
    float *resid_mid;  /* [L, N, C] */
    float *ln2;        /* [L, N, C] */
    float *ln2_mean;   /* [L, N] */
    float *ln2_rstd;   /* [L, N] */
    float *fc;         /* [L, N, I] c_fc / gate_proj output */
    float *up;         /* [L, N, I] up_proj output (llama) */
    float *act;        /* [L, N, I] GELU(fc) or silu(gate) * up */
    float *lnf;        /* [N, C] */
    float *lnf_mean;   /* [N] */
    float *lnf_rstd;   /* [N] */
    float *logits;     /* [N, V]; becomes d loss / d logits in backward. Fused: only the first
                        * HEAD_ROWS rows are used, as the block buffer */
    float *dhead;      /* [N, C] fused: d sum(nll) / d lnf (the head's input gradient, unscaled) */
    float *nll;        /* [N] */
    float *rope_cos;   /* [P + T, hd/2] */
    float *rope_sin;
    /* backward scratch */
    float *dres;       /* [N, C] gradient of the residual stream */
    float *dln;        /* [N, C] */
    float *dqkv;       /* [N, QKV] */
    float *datty;      /* [N, A] */
    float *dfc;        /* [N, I] */
    float *dup;        /* [N, I] */
    float *dact;       /* [N, I] */
    float *attn_work;  /* attention_work_floats: forward and backward scratch */
    float *dembed;     /* [N, C] d loss / d input embeddings */
};

/* Rows of the output head per block on the fused path: 512 x 50257 logits are 103 MB. Smaller
 * blocks re-read the whole head weight (154 MB for GPT-2) once per block and run the two products
 * at small M: at 4 x 256 tokens, 64-row blocks took 1.56 s per step in the head's products, 512-row
 * blocks 1.17 s (docs/BENCHMARKS.md, optimisation 4). */
#define HEAD_ROWS 512

/* The attention layout shared by forward.c and backward.c. */
void model_attn_shape(const model *m, const model_acts *a, attn_shape *s);

#endif
