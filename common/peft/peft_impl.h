/* peft_impl.h - the peft_model internals shared by peft.c (building) and peft_step.c (running). */
#ifndef PEFT_PEFT_IMPL_H
#define PEFT_PEFT_IMPL_H

#include "peft/bottleneck.h"
#include "peft/linear_hook.h"
#include "peft/peft.h"
#include "rng.h"

struct peft_model {
    peft_config cfg;
    model *m;
    tensor_table table;
    float *params, *grads;      /* [table.total] */
    bool training;
    rng_state dropout_rng;
    linear_hook *hooks;         /* [nhooks] */
    linear **hooked;            /* the layers they are attached to */
    int nhooks;
    bottleneck *adapters;       /* [nadapters] */
    int nadapters;
    /* prompt / prefix */
    int nv;                     /* virtual tokens (prompt) */
    int np;                     /* prefix positions */
    float *virt, *dvirt;        /* prompt: [nv, C] into params/grads */
    float *prefix, *dprefix;    /* prefix: [np, L*2*K]: params/grads, or the MLP's output and its gradient */
    /* prefix projection MLP: emb [np, D] -> tanh(emb W0^T + b0) W2^T + b2 */
    int enc_hidden, token_dim;
    float *emb, *demb, *w0, *dw0, *b0, *db0, *w2, *dw2, *b2, *db2;
    float *mlp_h, *mlp_dh;      /* [np, enc_hidden] tanh outputs and their gradient */
    float *prefix_out, *dprefix_out; /* [np, L*2*K] owned */
    /* batches */
    int cap_B, cap_T;
    int *targets_ext;           /* [cap_B, nv + cap_T] */
    model_batch batch;          /* the last forward's batch (backward needs it) */
    long long base_params;
    int grad_floor;             /* the lowest layer holding a trainable tensor (0 for most methods) */
    /* model params that read the flat buffer while attached (full, trained biases) */
    param **redirected;
    float **orig_data;
    int nred;
};

#endif
