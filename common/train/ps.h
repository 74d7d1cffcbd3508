/*
 * ps.h - the parameter-server interface the training loop talks to.
 *
 * A worker pulls the current parameters, computes gradients for its share of the global batch,
 * and pushes the SUM over its tokens of the per-token loss gradient together with that token count.
 * The server divides by the global token count (a token-weighted mean), skips the step if any
 * gradient is NaN or Inf, clips by the global norm, applies AdamW with the learning-rate schedule,
 * and bumps the version. The loop never touches the optimizer, so distributing training replaces
 * the transport behind this interface (ps_local_create here, MPI later), not the loop.
 *
 *     ps *s;  ps_local_create(&table, init_params, &cfg, &s);
 *     for (...) { ps_pull(s, params, &ver); ...forward/backward...; ps_push(s, grads, tokens, &info); }
 *     ps_free(s);
 *
 * Ownership: the server keeps its own copy of the parameters and both AdamW moments; ps_params()
 * etc. point into it (valid until the next push or ps_free).
 */
#ifndef PEFT_PS_H
#define PEFT_PS_H

#include <stdbool.h>
#include <stdint.h>

#include "train/optim.h"
#include "train/schedule.h"
#include "train/tensor_table.h"

typedef struct ps_config {
    adamw_hparams adam;
    float learning_rate;
    lr_schedule_type schedule;
    long warmup_steps;
    long total_steps;
    float max_grad_norm;   /* <= 0: no clipping */
} ps_config;

typedef struct ps_step_info {
    long step;             /* optimizer steps taken after this push */
    float lr;              /* the learning rate the update used */
    double grad_norm;      /* global norm of the mean gradient before clipping */
    bool skipped;          /* a NaN/Inf gradient: parameters and moments unchanged */
} ps_step_info;

typedef struct ps ps;

int ps_local_create(const tensor_table *t, const float *init_params, const ps_config *cfg, ps **out);
void ps_free(ps *s);

/* grad_sum[t->total] is consumed (scaled in place). */
int ps_push(ps *s, float *grad_sum, long long tokens, ps_step_info *info);
/* Copies the current parameters into params[t->total]; *version = optimizer steps taken. */
int ps_pull(ps *s, float *params, long *version);

/* Optimizer state, for checkpoints. */
const float *ps_params(const ps *s);
const float *ps_adam_m(const ps *s);
const float *ps_adam_v(const ps *s);
long ps_steps(const ps *s);
long ps_skipped(const ps *s);
/* Restores a checkpoint's state (m, v may be NULL: zero moments). */
void ps_restore(ps *s, const float *params, const float *m, const float *v, long steps);

#endif
