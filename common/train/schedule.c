#include "train/schedule.h"

#include <math.h>
#include <string.h>

#include "error.h"

static const char *const SCHEDULE_NAMES[] = {
    [LR_SCHEDULE_LINEAR] = "linear",
    [LR_SCHEDULE_COSINE] = "cosine",
    [LR_SCHEDULE_CONSTANT] = "constant",
    [LR_SCHEDULE_CONSTANT_WITH_WARMUP] = "constant_with_warmup",
};
#define SCHEDULE_COUNT ((int)(sizeof SCHEDULE_NAMES / sizeof SCHEDULE_NAMES[0]))

int schedule_parse(const char *name, lr_schedule_type *out) {
    for (int i = 0; i < SCHEDULE_COUNT; i++)
        if (!strcmp(name, SCHEDULE_NAMES[i])) {
            *out = (lr_schedule_type)i;
            return PEFT_OK;
        }
    return err_set(PEFT_EUSAGE, "--lr-scheduler-type: unknown schedule '%s' (expected linear, cosine, constant "
                   "or constant_with_warmup)", name);
}

const char *schedule_name(lr_schedule_type type) {
    return (int)type >= 0 && (int)type < SCHEDULE_COUNT ? SCHEDULE_NAMES[type] : "?";
}

/* transformers' lambdas, with its int -> float conversions: each quotient is of two doubles. */
static double warmup_factor(long step, long warmup) {
    return (double)step / (double)(warmup > 1 ? warmup : 1);
}

/* num / max(1, total - warmup) */
static double over_decay_steps(long num, long warmup, long total) {
    long span = total - warmup;
    return (double)num / (double)(span > 1 ? span : 1);
}

static double schedule_lambda(lr_schedule_type type, long step, long warmup, long total) {
    switch (type) {
    case LR_SCHEDULE_CONSTANT:
        return 1.0;
    case LR_SCHEDULE_CONSTANT_WITH_WARMUP:
        return step < warmup ? warmup_factor(step, warmup) : 1.0;
    case LR_SCHEDULE_LINEAR: {
        if (step < warmup) return warmup_factor(step, warmup);
        double f = over_decay_steps(total - step, warmup, total);
        return f > 0.0 ? f : 0.0;
    }
    case LR_SCHEDULE_COSINE: {
        if (step < warmup) return warmup_factor(step, warmup);
        double progress = over_decay_steps(step - warmup, warmup, total);
        double f = 0.5 * (1.0 + cos(M_PI * 0.5 * 2.0 * progress));
        return f > 0.0 ? f : 0.0;
    }
    }
    PEFT_ASSERT(!"unknown lr_schedule_type");
    return 0.0;
}

float schedule_lr(lr_schedule_type type, float base_lr, long step, long warmup_steps, long total_steps) {
    PEFT_ASSERT(step >= 0 && warmup_steps >= 0 && total_steps >= 0);
    return (float)((double)base_lr * schedule_lambda(type, step, warmup_steps, total_steps));
}
