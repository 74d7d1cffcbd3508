/*
 * shard.h - the optimizer state of one contiguous range of the flat parameter vector, and one
 * synchronous step over it: what a parameter server does, in or out of the worker's process.
 *
 * The buffers are full-length (table->total floats, calloc'd) but only the range is touched, so only
 * its pages become resident; indices stay absolute, as the optimizer kernels and the tensor table
 * use them. The gradient the step consumes is passed in: a server accumulates the workers' pushes in
 * its own buffer (shard_init with grad_buffer true), the in-process server uses the worker's
 * gradient buffer directly (no copy per step).
 *
 *     shard sh;  PEFT_TRY(shard_init(&sh, t, off, cnt, init, &cfg, true));
 *     // per step: sum the workers' gradients into sh.grad[off..off+cnt) in worker order, then
 *     shard_prepare(&sh, sh.grad, tokens, partials, &finite);   // mean gradient, norm partials
 *     ... sum every server's partials in chunk order into sq, AND their finite flags ...
 *     shard_update(&sh, sh.grad, sq, finite, &info);            // skip, or clip + AdamW
 */
#ifndef PEFT_SHARD_H
#define PEFT_SHARD_H

#include "train/ps.h"

typedef struct shard {
    const tensor_table *t;
    ps_config cfg;
    size_t offset, count;
    float *params, *m, *v;        /* [t->total]; only [offset, offset+count) is used */
    float *grad;                  /* [t->total] accumulator, or NULL (shard_init's grad_buffer) */
    long taken, skipped;          /* optimizer steps taken / skipped */
} shard;

/* init: the range's initial parameters ([count] floats, may be NULL for zeros); grad_buffer: also
 * allocate sh->grad. PEFT_ENOMEM. */
int shard_init(shard *sh, const tensor_table *t, size_t offset, size_t count, const float *init, const ps_config *cfg,
               bool grad_buffer);
void shard_free(shard *sh);

/* Number of PS_NORM_CHUNK chunks in the range. */
size_t shard_chunks(const shard *sh);

/* Divides grad's range ([t->total], absolute indices) by tokens (tokens <= 0 leaves it and reports
 * non-finite), writes the squared norm of each chunk to partials[shard_chunks()], and whether every
 * value is finite. */
void shard_prepare(shard *sh, float *grad, long long tokens, double *partials, bool *finite);

/* Sums partials[n] in order: the global squared norm when given every server's partials in
 * chunk order. */
double shard_sum_partials(const double *partials, size_t n);

/* One optimizer step with the global squared norm and finiteness: skipped (nothing changes) when
 * !finite, else clip and AdamW. Fills info's step, skipped_total, lr, grad_norm, skipped. */
void shard_update(shard *sh, float *grad, double global_sq, bool finite, ps_step_info *info);

/* True when a checkpoint is due after `step` (steps done) of a run of `total` steps. */
bool shard_save_due(const ps_config *cfg, long step, bool stop);

#endif
