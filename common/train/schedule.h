/*
 * schedule.h - learning-rate schedules, as transformers' get_scheduler() builds them.
 *
 * Each schedule is transformers' LambdaLR lambda times the base learning rate, evaluated in double
 * (as torch's LambdaLR does) and rounded to float once:
 *
 *     linear                 warmup: step / max(1, warmup); then max(0, (total - step) / max(1, total - warmup))
 *     cosine                 warmup as linear; then max(0, 0.5 * (1 + cos(pi * 2 * 0.5 * progress))),
 *                            progress = (step - warmup) / max(1, total - warmup)   (num_cycles 0.5)
 *     constant               1
 *     constant_with_warmup   warmup: step / max(1, warmup); then 1
 *
 * Step convention: `step` is the number of optimizer steps already taken, i.e. 0 for the first
 * update. That is what HF's Trainer does: it builds the LambdaLR (which evaluates the lambda at 0),
 * uses that lr for the first optimizer.step(), then calls scheduler.step(). So with warmup the first
 * update has lr 0, and the last of `total` updates (step total-1) has lr base/(total-warmup) under
 * "linear". Past the end the formulas are kept as they are: "linear" stays at 0, while "cosine"
 * rises again (progress > 1), exactly as transformers' lambda does.
 *
 *     lr_schedule_type type;
 *     PEFT_TRY(schedule_parse(value_of_lr_scheduler_type_flag, &type));
 *     float lr = schedule_lr(type, 5e-5f, step, warmup_steps, total_steps);
 */
#ifndef PEFT_SCHEDULE_H
#define PEFT_SCHEDULE_H

typedef enum lr_schedule_type {
    LR_SCHEDULE_LINEAR,                /* "linear": get_linear_schedule_with_warmup (HF's default) */
    LR_SCHEDULE_COSINE,                /* "cosine": get_cosine_schedule_with_warmup, num_cycles 0.5 */
    LR_SCHEDULE_CONSTANT,              /* "constant": get_constant_schedule */
    LR_SCHEDULE_CONSTANT_WITH_WARMUP,  /* "constant_with_warmup": get_constant_schedule_with_warmup */
} lr_schedule_type;

/* Parses an --lr-scheduler-type value (HF's SchedulerType names). PEFT_EUSAGE, naming the flag and
 * listing the known names, for anything else; *out is unchanged then. */
int schedule_parse(const char *name, lr_schedule_type *out);

/* The name schedule_parse() accepts for type ("?" for a value outside the enum). */
const char *schedule_name(lr_schedule_type type);

/* Learning rate of the update that follows `step` (>= 0) completed updates, see above.
 * warmup_steps >= 0, total_steps >= 0 (only "linear" and "cosine" read total_steps). */
float schedule_lr(lr_schedule_type type, float base_lr, long step, long warmup_steps, long total_steps);

#endif
