/*
 * shard.h - the optimizer state of one contiguous range of the flat parameter vector, and one
 * synchronous step over it: what a parameter server does, in or out of the worker's process.
 *
 * The buffers are full-length (table->total floats, calloc'd) but only the range is touched, so only
 * its pages become resident; indices stay absolute, as the optimizer kernels and the tensor table
 * use them.
 *
 *     shard sh;  PEFT_TRY(shard_init(&sh, t, off, cnt, init, &cfg));
 *     // per step: sum the workers' gradients into sh.grad[off..off+cnt) in worker order, then
 *     shard_prepare(&sh, tokens, partials, &finite);      // mean gradient, norm partials
 *     ... sum every server's partials in chunk order into sq, AND their finite flags ...
 *     shard_update(&sh, sq, finite, &info);               // skip, or clip + AdamW
 */
#ifndef PEFT_SHARD_H
#define PEFT_SHARD_H

#include "train/ps.h"

typedef struct shard {
    const tensor_table *t;
    ps_config cfg;
    size_t offset, count;
    float *params, *m, *v, *grad; /* [t->total]; only [offset, offset+count) is used */
    long taken, skipped;          /* optimizer steps taken / skipped */
} shard;

/* init: the range's initial parameters ([count] floats, may be NULL for zeros). PEFT_ENOMEM. */
int shard_init(shard *sh, const tensor_table *t, size_t offset, size_t count, const float *init, const ps_config *cfg);
void shard_free(shard *sh);

/* Number of PS_NORM_CHUNK chunks in the range. */
size_t shard_chunks(const shard *sh);

/* Divides sh->grad's range by tokens (tokens <= 0 leaves it and reports non-finite), writes the
 * squared norm of each chunk to partials[shard_chunks()], and whether every value is finite. */
void shard_prepare(shard *sh, long long tokens, double *partials, bool *finite);

/* Sums partials[n] in order: the global squared norm when given every server's partials in
 * chunk order. */
double shard_sum_partials(const double *partials, size_t n);

/* One optimizer step with the global squared norm and finiteness: skipped (nothing changes) when
 * !finite, else clip and AdamW. Fills info's step, skipped_total, lr, grad_norm, skipped. */
void shard_update(shard *sh, double global_sq, bool finite, ps_step_info *info);

/* True when a checkpoint is due after `step` (steps done) of a run of `total` steps. */
bool shard_save_due(const ps_config *cfg, long step, bool stop);

#endif
