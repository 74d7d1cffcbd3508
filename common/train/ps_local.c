/* ps_local.c - the parameter server in the worker's own process (one worker, no transport). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "train/ps.h"

struct ps {
    const tensor_table *t;
    ps_config cfg;
    float *params, *m, *v;
    long steps, skipped;
};

int ps_local_create(const tensor_table *t, const float *init_params, const ps_config *cfg, ps **out) {
    *out = NULL;
    ps *s = calloc(1, sizeof *s);
    if (!s) return err_set(PEFT_ENOMEM, "out of memory");
    s->t = t;
    s->cfg = *cfg;
    size_t n = t->total ? t->total : 1;
    s->params = malloc(n * sizeof(float));
    s->m = calloc(n, sizeof(float));
    s->v = calloc(n, sizeof(float));
    if (!s->params || !s->m || !s->v) {
        ps_free(s);
        return err_set(PEFT_ENOMEM, "out of memory for the optimizer state (%zu values)", t->total);
    }
    memcpy(s->params, init_params, t->total * sizeof(float));
    *out = s;
    return PEFT_OK;
}

void ps_free(ps *s) {
    if (!s) return;
    free(s->params);
    free(s->m);
    free(s->v);
    free(s);
}

int ps_push(ps *s, float *grad, long long tokens, ps_step_info *info) {
    const tensor_table *t = s->t;
    const size_t n = t->total;
    memset(info, 0, sizeof *info);
    info->lr = schedule_lr(s->cfg.schedule, s->cfg.learning_rate, s->steps, s->cfg.warmup_steps, s->cfg.total_steps);
    if (tokens <= 0 || !grads_finite_range(grad, 0, n, t)) {
        s->skipped++;
        info->skipped = true;
        info->step = s->steps;
        info->grad_norm = NAN;
        return PEFT_OK;
    }
    grad_scale_range(grad, 0, n, t, (float)(1.0 / (double)tokens));
    double sq = grad_sq_norm_range(grad, 0, n, t);
    info->grad_norm = sqrt(sq);
    if (s->cfg.max_grad_norm > 0) grad_scale_range(grad, 0, n, t, clip_coef(sq, s->cfg.max_grad_norm));
    adamw_update(s->params, grad, s->m, s->v, 0, n, t, &s->cfg.adam, s->steps + 1, info->lr);
    s->steps++;
    info->step = s->steps;
    return PEFT_OK;
}

int ps_pull(ps *s, float *params, long *version) {
    memcpy(params, s->params, s->t->total * sizeof(float));
    if (version) *version = s->steps;
    return PEFT_OK;
}

const float *ps_params(const ps *s) { return s->params; }
const float *ps_adam_m(const ps *s) { return s->m; }
const float *ps_adam_v(const ps *s) { return s->v; }
long ps_steps(const ps *s) { return s->steps; }
long ps_skipped(const ps *s) { return s->skipped; }

void ps_restore(ps *s, const float *params, const float *m, const float *v, long steps) {
    const size_t n = s->t->total;
    memcpy(s->params, params, n * sizeof(float));
    if (m) memcpy(s->m, m, n * sizeof(float));
    else memset(s->m, 0, n * sizeof(float));
    if (v) memcpy(s->v, v, n * sizeof(float));
    else memset(s->v, 0, n * sizeof(float));
    s->steps = steps;
}
