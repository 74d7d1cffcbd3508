/* server_async.c - the asynchronous loop with bounded staleness (see server.h). */
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "server_impl.h"
#include "train/run_signals.h"

/* ---- the asynchronous loop (bounded staleness) -------------------------------------------------- */

int server_run_async(server *s, long start) {
    const long total = s->cfg.ps.total_steps;
    const int W = s->W, K = s->cfg.staleness;
    long *quota = calloc((size_t)W, sizeof *quota), *pushes = calloc((size_t)W, sizeof *pushes);
    uint8_t *pending = calloc((size_t)W, 1), *told_stop = calloc((size_t)W, 1);
    double *mine = malloc((shard_chunks(&s->sh) + 1) * sizeof(double));
    int rc = quota && pushes && pending && told_stop && mine ? PEFT_OK : err_set(PEFT_ENOMEM, "out of memory");
    for (long u = start; u < total && !rc; u++) quota[u % W]++;
    double last_msg = server_now();
    for (int round = 0; rc == PEFT_OK;) {
        bool all_done = true;
        for (int i = 0; i < W; i++)
            if (!told_stop[i] && (pushes[i] < quota[i] || pending[i])) all_done = false;
        if (all_done) break;
        wire_msg m;
        int from;
        int got = transport_try_recv(s->tr, MPI_ANY_SOURCE, TAG_REQUEST, &m, &from);
        if (got == 0 && s->k != 0) { /* a checkpoint request from server 0 */
            got = transport_try_recv(s->tr, 0, TAG_PEER, &m, &from);
            if (got == 1) {
                int64_t step = m.env->body_case == PEFT__WIRE__ENVELOPE__BODY_CHECKPOINT_REQUEST ? m.env->checkpoint_request->step : -1;
                wire_msg_free(&m);
                if (step < 0) rc = err_set(PEFT_EFORMAT, "server 0 sent an unexpected message");
                else rc = send_shard(s, 0, PEFT__WIRE__ENVELOPE__BODY_CHECKPOINT_SHARD, step, s->sh.params, s->sh.m, s->sh.v,
                                     s->sh.offset, s->sh.count);
                last_msg = server_now();
                continue;
            }
        }
        if (got < 0 || got > 1) {
            rc = got;
            break;
        }
        if (got == 0) {
            if (server_now() - last_msg > s->tr->timeout)
                for (int i = 0; i < W; i++)
                    if (!pending[i] && pushes[i] < quota[i] && !told_stop[i]) silent_abort(s, s->S + i, "push");
            transport_backoff(round++);
            continue;
        }
        round = 0;
        last_msg = server_now();
        char name[96];
        name_of(s, from, name);
        const int i = from - s->S;
        if (from < s->S || m.env->body_case != PEFT__WIRE__ENVELOPE__BODY_PUSH) {
            if (m.env->body_case == PEFT__WIRE__ENVELOPE__BODY_PULL && i >= 0) {
                wire_msg_free(&m);
                rc = send_params(s, from);
                continue;
            }
            rc = err_set(PEFT_EFORMAT, "message from %s: unexpected %s", name, wire_kind_name(m.env->body_case));
            wire_msg_free(&m);
            break;
        }
        const long version = s->sh.taken + s->sh.skipped;
        rc = wire_check_push(&m, name, s->sh.offset, s->sh.count, version, (int64_t)(K + 1) * W + 1);
        if (!rc && (pending[i] || pushes[i] >= quota[i]))
            rc = err_set(PEFT_EFORMAT, "push from %s: more pushes than its share of the steps", name);
        if (rc) {
            wire_msg_free(&m);
            break;
        }
        s->tokens = 0;
        s->loss_sum = 0.0;
        memset(&s->timing, 0, sizeof s->timing);
        server_accumulate(s, &m, true);
        server_note_push(s, i, m.env->push);
        double sq = m.env->push->grad_sq_norm;
        bool finite = m.env->push->grad_finite;
        wire_msg_free(&m);
        bool local_finite;
        shard_prepare(&s->sh, s->sh.grad, s->tokens, mine, &local_finite);
        shard_update(&s->sh, s->sh.grad, sq, finite && local_finite, &s->last);
        s->timing.compute *= W, s->timing.comm *= W, s->timing.wait *= W; /* one push: its own timing */
        pushes[i]++;
        pending[i] = 1;
        s->stop |= run_stop_requested();
        const long step = s->sh.taken + s->sh.skipped;
        if (s->k == 0 && step < total && !s->stop && shard_save_due(&s->cfg.ps, step, false) && (rc = server_checkpoint(s, step)))
            break;
        long slowest = -1;
        for (int j = 0; j < W; j++)
            if (pushes[j] < quota[j] && !told_stop[j] && (slowest < 0 || pushes[j] < slowest)) slowest = pushes[j];
        for (int j = 0; j < W && rc == PEFT_OK; j++) {
            if (!pending[j] || (!s->stop && slowest >= 0 && pushes[j] < quota[j] && pushes[j] - slowest > K)) continue;
            pending[j] = 0;
            if (s->stop) told_stop[j] = 1;
            rc = send_params(s, s->S + j);
        }
    }
    /* the final checkpoint: server 0 gathers, the others answer its request */
    if (rc == PEFT_OK && s->cfg.ps.run_dir) {
        const long step = s->sh.taken + s->sh.skipped;
        if (s->k == 0) rc = server_checkpoint(s, step);
        else {
            wire_msg m;
            int from;
            rc = transport_recv(s->tr, 0, TAG_PEER, s->tr->timeout, &m, &from);
            if (rc == TRANSPORT_TIMEOUT) silent_abort(s, 0, "checkpoint request");
            if (!rc) {
                int64_t st = m.env->body_case == PEFT__WIRE__ENVELOPE__BODY_CHECKPOINT_REQUEST ? m.env->checkpoint_request->step : -1;
                wire_msg_free(&m);
                rc = st < 0 ? err_set(PEFT_EFORMAT, "server 0 sent an unexpected message")
                            : send_shard(s, 0, PEFT__WIRE__ENVELOPE__BODY_CHECKPOINT_SHARD, st, s->sh.params, s->sh.m,
                                         s->sh.v, s->sh.offset, s->sh.count);
            }
        }
    }
    free(quota);
    free(pushes);
    free(pending);
    free(told_stop);
    free(mine);
    return rc;
}

