/* shard.c - one range of the flat parameter vector and its optimizer step (see shard.h). */
#include "train/shard.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

int shard_init(shard *sh, const tensor_table *t, size_t offset, size_t count, const float *init, const ps_config *cfg,
               bool grad_buffer) {
    memset(sh, 0, sizeof *sh);
    PEFT_ASSERT(offset + count <= t->total);
    sh->t = t;
    sh->cfg = *cfg;
    sh->offset = offset;
    sh->count = count;
    size_t n = t->total ? t->total : 1;
    sh->params = calloc(n, sizeof(float));
    sh->m = calloc(n, sizeof(float));
    sh->v = calloc(n, sizeof(float));
    if (grad_buffer) sh->grad = calloc(n, sizeof(float));
    if (!sh->params || !sh->m || !sh->v || (grad_buffer && !sh->grad)) {
        shard_free(sh);
        return err_set(PEFT_ENOMEM, "out of memory for the optimizer state of %zu values", count);
    }
    if (init && count) memcpy(sh->params + offset, init, count * sizeof(float));
    return PEFT_OK;
}

void shard_free(shard *sh) {
    free(sh->params);
    free(sh->m);
    free(sh->v);
    free(sh->grad);
    memset(sh, 0, sizeof *sh);
}

size_t shard_chunks(const shard *sh) { return (sh->count + PS_NORM_CHUNK - 1) / PS_NORM_CHUNK; }

void shard_prepare(shard *sh, float *grad, long long tokens, double *partials, bool *finite) {
    const size_t a = sh->offset, b = sh->offset + sh->count, nc = shard_chunks(sh);
    *finite = tokens > 0 && grads_finite_range(grad, a, b, sh->t);
    if (!*finite) {
        for (size_t c = 0; c < nc; c++) partials[c] = 0.0;
        return;
    }
    grad_scale_range(grad, a, b, sh->t, (float)(1.0 / (double)tokens));
#pragma omp parallel for schedule(static) if (nc > 64)
    for (size_t c = 0; c < nc; c++) {
        size_t c0 = a + c * PS_NORM_CHUNK, c1 = c0 + PS_NORM_CHUNK < b ? c0 + PS_NORM_CHUNK : b;
        partials[c] = grad_sq_norm_range(grad, c0, c1, sh->t);
    }
}

double shard_sum_partials(const double *partials, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += partials[i];
    return s;
}

void shard_update(shard *sh, float *grad, double global_sq, bool finite, ps_step_info *info) {
    const ps_config *c = &sh->cfg;
    info->lr = schedule_lr(c->schedule, c->learning_rate, sh->taken, c->warmup_steps, c->total_steps);
    if (!finite) {
        sh->skipped++;
        info->skipped = true;
        info->grad_norm = NAN;
    } else {
        info->skipped = false;
        info->grad_norm = sqrt(global_sq);
        const size_t a = sh->offset, b = sh->offset + sh->count;
        if (c->max_grad_norm > 0) grad_scale_range(grad, a, b, sh->t, clip_coef(global_sq, c->max_grad_norm));
        adamw_update(sh->params, grad, sh->m, sh->v, a, b, sh->t, &c->adam, sh->taken + 1, info->lr);
        sh->taken++;
    }
    info->step = sh->taken + sh->skipped;
    info->skipped_total = sh->skipped;
}

bool shard_save_due(const ps_config *cfg, long step, bool stop) {
    if (!cfg->run_dir) return false;
    return stop || step >= cfg->total_steps || (cfg->save_steps > 0 && step % cfg->save_steps == 0);
}
