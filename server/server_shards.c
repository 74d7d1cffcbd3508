/* server_shards.c - shards between servers: restore on resume, gather for checkpoints (see server_impl.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "io/file.h"
#include "server_impl.h"
#include "store/checkpoint.h"
#include "train/run_state.h"

/* ---- shards between servers: restore on resume, gather for checkpoints ---------------------- */

int send_shard(server *s, int dest, int kind, int64_t step, const float *p, const float *m, const float *v,
                      size_t off, size_t cnt) {
    float *buf = malloc((3 * cnt + 1) * sizeof(float));
    if (!buf) return err_set(PEFT_ENOMEM, "out of memory");
    memcpy(buf, p + off, cnt * sizeof(float));
    memcpy(buf + cnt, m + off, cnt * sizeof(float));
    memcpy(buf + 2 * cnt, v + off, cnt * sizeof(float));
    wire_envelope env = PEFT__WIRE__ENVELOPE__INIT;
    Peft__Wire__CheckpointShard cs = PEFT__WIRE__CHECKPOINT_SHARD__INIT;
    Peft__Wire__RestoreShard rs = PEFT__WIRE__RESTORE_SHARD__INIT;
    if (kind == PEFT__WIRE__ENVELOPE__BODY_CHECKPOINT_SHARD) {
        cs.step = step, cs.offset = off, cs.count = cnt, cs.skipped = s->sh.skipped;
        env.body_case = PEFT__WIRE__ENVELOPE__BODY_CHECKPOINT_SHARD;
        env.checkpoint_shard = &cs;
    } else {
        rs.step = step, rs.offset = off, rs.count = cnt, rs.skipped = s->sh.skipped;
        env.body_case = PEFT__WIRE__ENVELOPE__BODY_RESTORE_SHARD;
        env.restore_shard = &rs;
    }
    int rc = transport_send(s->tr, dest, TAG_PEER, &env, buf, 3 * cnt);
    free(buf);
    return rc;
}

/* Receives a shard of `kind` from server j into p, m, v: for a checkpoint j's range, for a restore
 * this server's own. */
static int recv_shard(server *s, int j, int kind, float *p, float *m, float *v, int64_t *step, int64_t *skipped) {
    wire_msg msg;
    int from;
    int rc = transport_recv(s->tr, j, TAG_PEER, s->tr->timeout, &msg, &from);
    if (rc == TRANSPORT_TIMEOUT) silent_abort(s, j, wire_kind_name(kind));
    if (rc) return rc;
    char name[96];
    size_t off, cnt;
    ps_shard_range(s->table.total, s->S, kind == PEFT__WIRE__ENVELOPE__BODY_RESTORE_SHARD ? s->k : j, &off, &cnt);
    if (msg.env->body_case != (Peft__Wire__Envelope__BodyCase)kind)
        rc = err_set(PEFT_EFORMAT, "message from %s: expected %s, got %s", name_of(s, j, name), wire_kind_name(kind),
                     wire_kind_name(msg.env->body_case));
    if (!rc) rc = wire_check_shard(&msg, name_of(s, j, name), off, cnt);
    if (!rc) {
        wire_payload_copy(&msg, 0, cnt, p + off);
        wire_payload_copy(&msg, cnt, cnt, m + off);
        wire_payload_copy(&msg, 2 * cnt, cnt, v + off);
        if (kind == PEFT__WIRE__ENVELOPE__BODY_CHECKPOINT_SHARD) {
            *step = msg.env->checkpoint_shard->step;
            *skipped = msg.env->checkpoint_shard->skipped;
        } else {
            *step = msg.env->restore_shard->step;
            *skipped = msg.env->restore_shard->skipped;
        }
    }
    wire_msg_free(&msg);
    return rc;
}

/* Server 0: reads the checkpoint, keeps its range, sends the others theirs; fills the workers'
 * saved states. The others: receive their shard. */
int server_restore(server *s, const uint64_t *hashes) {
    int64_t step, skipped;
    if (s->k != 0) {
        PEFT_TRY(recv_shard(s, 0, PEFT__WIRE__ENVELOPE__BODY_RESTORE_SHARD, s->sh.params, s->sh.m, s->sh.v, &step, &skipped));
        s->sh.skipped = (long)skipped;
        s->sh.taken = (long)(step - skipped);
        return PEFT_OK;
    }
    ckpt_loaded c;
    PEFT_TRY(ckpt_load(s->cfg.ps.run_dir, s->cfg.resume_step, &c));
    run_state rs = {0};
    int rc = PEFT_OK;
    if (tt_hash(&c.table) != hashes[0] || c.table.total != s->table.total)
        rc = err_set(PEFT_EMISMATCH, "%s/" CKPT_FILE_NAME ": checkpoint %lld holds other trainable tensors than this run "
                     "builds (another --method, model or method flags?)", s->cfg.ps.run_dir, (long long)c.step);
    if (!rc) rc = run_state_decode(c.state, c.state_len, "checkpoint state", &rs);
    if (!rc && (rs.taken + rs.skipped != c.step))
        rc = err_set(PEFT_EFORMAT, "%s/" CKPT_FILE_NAME ": checkpoint %lld says %lld steps taken and %lld skipped",
                     s->cfg.ps.run_dir, (long long)c.step, (long long)rs.taken, (long long)rs.skipped);
    if (!rc) {
        const size_t n = s->table.total;
        memcpy(s->sh.params, c.params, n * sizeof(float));
        if (c.adam_m) memcpy(s->sh.m, c.adam_m, n * sizeof(float));
        if (c.adam_v) memcpy(s->sh.v, c.adam_v, n * sizeof(float));
        s->sh.taken = (long)rs.taken;
        s->sh.skipped = (long)rs.skipped;
        for (int i = 0; i < s->W && rs.workers > 0; i++) {
            memcpy(s->blobs + (size_t)i * WORKER_STATE_BYTES, rs.blobs + (size_t)(i % rs.workers) * WORKER_STATE_BYTES,
                   WORKER_STATE_BYTES);
            s->have_blob[i] = 1;
        }
        if (rs.workers > 0 && rs.workers != s->W)
            fprintf(stderr, "peft: resuming checkpoint %lld of %d workers with %d: the global data order continues%s\n",
                    (long long)c.step, rs.workers, s->W, " (dropout streams are reused across workers)");
        for (int j = 1; j < s->S && !rc; j++) {
            size_t off, cnt;
            ps_shard_range(n, s->S, j, &off, &cnt);
            rc = send_shard(s, j, PEFT__WIRE__ENVELOPE__BODY_RESTORE_SHARD, c.step, c.params, s->sh.m, s->sh.v, off, cnt);
        }
        if (!rc) fprintf(stderr, "peft: resuming from checkpoint %lld of %s\n", (long long)c.step, s->cfg.ps.run_dir);
    }
    run_state_free(&rs);
    ckpt_loaded_free(&c);
    return rc;
}

/* Server 0 gathers every shard and writes checkpoint `step`; the others send theirs when asked. */
int server_checkpoint(server *s, long step) {
    if (s->k != 0) {
        wire_msg m;
        int from;
        int rc = transport_recv(s->tr, 0, TAG_PEER, s->tr->timeout, &m, &from);
        if (rc == TRANSPORT_TIMEOUT) silent_abort(s, 0, "checkpoint request");
        if (rc) return rc;
        char name[96];
        if (m.env->body_case != PEFT__WIRE__ENVELOPE__BODY_CHECKPOINT_REQUEST || m.env->checkpoint_request->step != step)
            rc = err_set(PEFT_EFORMAT, "message from %s: expected a checkpoint request for step %ld", name_of(s, 0, name), step);
        wire_msg_free(&m);
        PEFT_TRY(rc);
        return send_shard(s, 0, PEFT__WIRE__ENVELOPE__BODY_CHECKPOINT_SHARD, step, s->sh.params, s->sh.m, s->sh.v,
                          s->sh.offset, s->sh.count);
    }
    for (int j = 1; j < s->S; j++) {
        Peft__Wire__CheckpointRequest cr = PEFT__WIRE__CHECKPOINT_REQUEST__INIT;
        cr.step = step;
        wire_envelope env = PEFT__WIRE__ENVELOPE__INIT;
        env.body_case = PEFT__WIRE__ENVELOPE__BODY_CHECKPOINT_REQUEST;
        env.checkpoint_request = &cr;
        PEFT_TRY(transport_send(s->tr, j, TAG_PEER, &env, NULL, 0));
    }
    for (int j = 1; j < s->S; j++) {
        int64_t st, sk;
        PEFT_TRY(recv_shard(s, j, PEFT__WIRE__ENVELOPE__BODY_CHECKPOINT_SHARD, s->sh.params, s->sh.m, s->sh.v, &st, &sk));
    }
    int workers = 0;
    while (workers < s->W && s->have_blob[workers]) workers++;
    run_state rs = {.taken = s->sh.taken, .skipped = s->sh.skipped, .workers = workers, .blobs = s->blobs};
    uint8_t *st = NULL;
    size_t st_len = 0;
    PEFT_TRY(run_state_encode(&rs, &st, &st_len));
    ckpt_data c = {.step = step, .config_json = s->config_json, .table = &s->table, .params = s->sh.params,
                   .adam_m = s->sh.m, .adam_v = s->sh.v, .state = st, .state_len = st_len};
    int rc = ckpt_save(s->cfg.ps.run_dir, &c, s->cfg.ps.save_total_limit);
    free(st);
    return rc;
}

