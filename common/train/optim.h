/*
 * optim.h - AdamW and global-norm gradient clipping on ranges of the flat buffers.
 *
 * Parameters, gradients and AdamW's two moments are flat float buffers with one tensor_table
 * layout (tensor_table.h). A parameter server owns a contiguous range [begin, end) of that layout,
 * so every function here takes one. Only tensor elements inside the range are read or written,
 * i.e. each entry's [offset, offset + numel) ∩ [begin, end): the padding between tensors and
 * everything outside the range is never touched (it may hold anything, NaN included). Ranges may
 * start or end anywhere, mid-tensor or in padding; 0 <= begin <= end <= t->total.
 *
 * One step of HF's Trainer (clip, optimizer step, then the scheduler advances; schedule.h):
 *
 *     adamw_hparams h = ADAMW_HPARAMS_DEFAULT;
 *     h.weight_decay = 0.01;                                      // --weight-decay
 *     float *m = calloc(t.total, sizeof(float)), *v = calloc(t.total, sizeof(float));
 *     for (long step = 0; step < total_steps; step++) {           // optimizer steps already taken
 *         ... forward/backward into grads ...
 *         double sq = grad_sq_norm_range(grads, 0, t.total, &t);  // servers: add their partials
 *         grad_scale_range(grads, 0, t.total, &t, clip_coef(sq, 1.0f));   // --max-grad-norm 1
 *         float lr = schedule_lr(LR_SCHEDULE_LINEAR, 5e-5f, step, warmup_steps, total_steps);
 *         adamw_update(params, grads, m, v, 0, t.total, &t, &h, step + 1, lr);
 *     }
 *
 * Note the two step conventions: schedule_lr() takes the number of updates already taken (0 first),
 * adamw_update() the 1-based number of this update (torch's state["step"] after its increment). A
 * trainer that skips non-finite steps (grads_finite_range) counts only the updates it made in the
 * latter, as torch does not increment state["step"] for a skipped optimizer.step().
 *
 * Every function parallelises with OpenMP over fixed chunks of the range; element-wise results
 * never depend on the thread count, and neither does grad_sq_norm_range(): it sums fixed runs of
 * chunks, each in order, then the runs' partial sums in order. The table's entries must be in increasing offset
 * order (tt_add and tt_deserialize lay them out so). Nothing here allocates.
 */
#ifndef PEFT_OPTIM_H
#define PEFT_OPTIM_H

#include <stdbool.h>
#include <stddef.h>

#include "train/tensor_table.h"

/* Doubles, as torch keeps them (Python floats): 1 - beta1 etc. are formed in double and rounded to
 * float once, exactly where torch rounds them. */
typedef struct adamw_hparams {
    double beta1;         /* --adam-beta1 */
    double beta2;         /* --adam-beta2 */
    double eps;           /* --adam-epsilon, added after sqrt(v_hat) */
    double weight_decay;  /* --weight-decay, decoupled; only on entries with decay set */
} adamw_hparams;

/* HF TrainingArguments' defaults (adam_beta1, adam_beta2, adam_epsilon, weight_decay). */
#define ADAMW_HPARAMS_DEFAULT ((adamw_hparams){.beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.0})

/* One AdamW update of the elements in [begin, end), as torch.optim.AdamW (single-tensor CPU path,
 * amsgrad off) computes it, operation for operation in float32:
 *
 *     p *= (float)(1 - lr*wd)                       only where the entry's decay flag is set
 *     m  = fma(g, (float)(1-beta1), m*(float)beta1)          torch: exp_avg.mul_(b1).add_(g, alpha=1-b1)
 *     v  = fma((float)(1-beta2)*g, g, v*(float)beta2)        torch: exp_avg_sq.mul_(b2).addcmul_(g, g, value=1-b2)
 *     p += ((float)(-lr/bc1) * m) / (sqrtf(v) / (float)sqrt(bc2) + (float)eps)
 *
 * with bc1 = 1 - beta1^step, bc2 = 1 - beta2^step in double. The FMAs are those of torch's AVX2 and
 * AVX512 kernels, so on such CPUs the result is bit-identical to torch given the same inputs.
 * `step` is the 1-based number of this update (>= 1); `lr` the learning rate of this update. m and v
 * start at zero. params, grads, m and v must not overlap; grads is only read. */
void adamw_update(float *params, const float *grads, float *m, float *v, size_t begin, size_t end,
                  const tensor_table *t, const adamw_hparams *h, long step, float lr);

/* Sum of squares of the gradient elements in [begin, end), accumulated in double. Bit-identical
 * for any number of threads. The global squared norm is the sum of the partials of ranges that
 * tile [0, t->total) (summing partials in a fixed order keeps that reproducible too). Non-finite
 * iff some element is NaN or Inf: squares of floats cannot overflow a double sum. */
double grad_sq_norm_range(const float *g, size_t begin, size_t end, const tensor_table *t);

/* The factor torch.nn.utils.clip_grad_norm_ scales gradients by, from the global squared norm:
 * min(1, max_norm / (sqrt(total_sq_norm) + 1e-6)), evaluated in float as torch does (its
 * `max_norm / tensor` is reciprocal-then-multiply). A NaN norm gives NaN and an infinite one 0,
 * as in torch; callers skip such steps before they get here (grads_finite_range). */
float clip_coef(double total_sq_norm, float max_norm);

/* g *= coef for the gradient elements in [begin, end). */
void grad_scale_range(float *g, size_t begin, size_t end, const tensor_table *t, float coef);

/* false iff a gradient element in [begin, end) is NaN or +-Inf (padding is not looked at). */
bool grads_finite_range(const float *g, size_t begin, size_t end, const tensor_table *t);

#endif
