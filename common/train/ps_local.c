/* ps_local.c - the parameter server inside the worker's own process (one worker, no transport):
 * one shard covering the whole vector, checkpoints written directly. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "store/checkpoint.h"
#include "train/ps.h"
#include "train/run_state.h"
#include "train/shard.h"

typedef struct ps_local {
    ps base;
    shard sh;
    double *partials;
    uint8_t *resume_blob;
} ps_local;

static int save(ps_local *s, long step, const void *wstate, size_t wlen) {
    run_state rs = {.taken = s->sh.taken, .skipped = s->sh.skipped, .workers = wlen == WORKER_STATE_BYTES ? 1 : 0,
                    .blobs = (uint8_t *)wstate};
    uint8_t *st = NULL;
    size_t st_len = 0;
    PEFT_TRY(run_state_encode(&rs, &st, &st_len));
    ckpt_data c = {.step = step, .config_json = s->sh.cfg.config_json, .table = s->sh.t, .params = s->sh.params,
                   .adam_m = s->sh.m, .adam_v = s->sh.v, .state = st, .state_len = st_len};
    int rc = ckpt_save(s->sh.cfg.run_dir, &c, s->sh.cfg.save_total_limit);
    free(st);
    return rc;
}

static int local_push(ps *base, const ps_push_msg *msg, ps_step_info *info) {
    ps_local *s = (ps_local *)base;
    memset(info, 0, sizeof *info);
    bool finite; /* the worker's gradient buffer is the shard's: consumed in place */
    shard_prepare(&s->sh, msg->grad_sum, msg->tokens, s->partials, &finite);
    shard_update(&s->sh, msg->grad_sum, shard_sum_partials(s->partials, shard_chunks(&s->sh)), finite, info);
    info->loss_sum = msg->loss_sum;
    info->tokens = msg->tokens;
    info->stop = msg->stop_requested;
    info->mean_timing = msg->timing;
    if (shard_save_due(&s->sh.cfg, info->step, info->stop)) {
        PEFT_TRY(save(s, info->step, msg->worker_state, msg->worker_state_len));
        info->saved = true;
    }
    return PEFT_OK;
}

static int local_pull(ps *base, float *params, long *version) {
    ps_local *s = (ps_local *)base;
    memcpy(params, s->sh.params, s->sh.t->total * sizeof(float));
    if (version) *version = s->sh.taken;
    return PEFT_OK;
}

static void local_free(ps *base) {
    ps_local *s = (ps_local *)base;
    shard_free(&s->sh);
    free(s->partials);
    free(s->resume_blob);
    free(s);
}

static const ps_ops local_ops = {local_pull, local_push, local_free};

int ps_local_create(const tensor_table *t, const float *init_params, const ps_config *cfg,
                    const ckpt_loaded *resume, ps **out) {
    *out = NULL;
    ps_local *s = calloc(1, sizeof *s);
    if (!s) return err_set(PEFT_ENOMEM, "out of memory");
    s->base.ops = &local_ops;
    s->base.workers = 1;
    int rc = shard_init(&s->sh, t, 0, t->total, resume ? resume->params : init_params, cfg, false);
    if (!rc && !(s->partials = malloc((shard_chunks(&s->sh) + 1) * sizeof(double))))
        rc = err_set(PEFT_ENOMEM, "out of memory");
    if (!rc && resume) {
        run_state rs;
        if (!(rc = run_state_decode(resume->state, resume->state_len, "checkpoint state", &rs))) {
            s->sh.taken = rs.taken;
            s->sh.skipped = rs.skipped;
            s->base.start_step = (long)(rs.taken + rs.skipped);
            if (rs.workers > 1)
                fprintf(stderr, "peft: resuming checkpoint %lld of %d workers with 1: the global data order continues\n",
                        (long long)(rs.taken + rs.skipped), rs.workers);
            if (rs.workers > 0) {
                s->resume_blob = rs.blobs; /* worker 0's record first */
                rs.blobs = NULL;
                s->base.resume_state = s->resume_blob;
                s->base.resume_state_len = WORKER_STATE_BYTES;
            }
            run_state_free(&rs);
        }
        if (!rc && resume->adam_m) memcpy(s->sh.m, resume->adam_m, t->total * sizeof(float));
        if (!rc && resume->adam_v) memcpy(s->sh.v, resume->adam_v, t->total * sizeof(float));
    }
    if (rc) {
        local_free(&s->base);
        return rc;
    }
    *out = &s->base;
    return PEFT_OK;
}

