/* ps_client.c - the worker's side of the MPI parameter server (see ps_client.h). */
#include "ps_client.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

typedef struct ps_client {
    ps base;
    transport *tr;
    const tensor_table *t;
    int S;
    size_t *off, *cnt;          /* each server's range */
    float *params;              /* [t->total]: the newest parameters received */
    long version;               /* their version (steps done) */
    uint8_t *state;             /* this worker's saved state from the resumed checkpoint */
} ps_client;

static int server_error(ps_client *c, const wire_msg *m, int from) {
    const Peft__Wire__Error *e = m->env->error;
    char name[96];
    int code = e->code < 0 && e->code >= PEFT_EINTERNAL ? e->code : PEFT_EFORMAT;
    return err_set(code, "%s rejected this worker: %s", transport_rank_name(c->tr, from, name, sizeof name),
                   e->message ? e->message : "(no message)");
}

/* Receives the reply of server k (TAG_REPLY) of the expected kind, turning Error frames and
 * timeouts into errors. */
static int expect_reply(ps_client *c, int k, int kind, wire_msg *m) {
    int from;
    int rc = transport_recv(c->tr, k, TAG_REPLY, c->tr->timeout, m, &from);
    char name[96];
    if (rc == TRANSPORT_TIMEOUT)
        transport_abort(c->tr, 1, "no %s from %s within %.0f s (--comm-timeout); ending the job", wire_kind_name(kind),
                        transport_rank_name(c->tr, k, name, sizeof name), c->tr->timeout);
    if (rc) return rc;
    if (m->env->body_case == PEFT__WIRE__ENVELOPE__BODY_ERROR) {
        rc = server_error(c, m, from);
        wire_msg_free(m);
        return rc;
    }
    if (m->env->body_case != (Peft__Wire__Envelope__BodyCase)kind) {
        rc = err_set(PEFT_EFORMAT, "%s answered with %s, expected %s", transport_rank_name(c->tr, k, name, sizeof name),
                     wire_kind_name(m->env->body_case), wire_kind_name(kind));
        wire_msg_free(m);
        return rc;
    }
    return PEFT_OK;
}

/* Receives Params from every server into c->params; fills info from server 0's. */
static int receive_params(ps_client *c, ps_step_info *info) {
    for (int k = 0; k < c->S; k++) {
        wire_msg m;
        PEFT_TRY(expect_reply(c, k, PEFT__WIRE__ENVELOPE__BODY_PARAMS, &m));
        char name[96];
        int rc = wire_check_params(&m, transport_rank_name(c->tr, k, name, sizeof name), c->off[k], c->cnt[k]);
        if (!rc) {
            const Peft__Wire__Params *p = m.env->params;
            wire_payload_copy(&m, 0, c->cnt[k], c->params + c->off[k]);
            if (k == 0) c->version = (long)p->version;
            if (k == 0 && info) {
                info->step = (long)p->step;
                info->skipped_total = (long)p->skipped;
                info->lr = p->lr;
                info->grad_norm = p->grad_norm;
                info->skipped = p->last_skipped;
                info->loss_sum = p->loss_sum;
                info->tokens = p->tokens;
                if (p->mean_timing) {
                    info->mean_timing.compute = p->mean_timing->compute;
                    info->mean_timing.comm = p->mean_timing->comm;
                    info->mean_timing.wait = p->mean_timing->wait;
                }
            }
            if (info && p->stop) info->stop = true;
        }
        wire_msg_free(&m);
        PEFT_TRY(rc);
    }
    return PEFT_OK;
}

static int client_pull(ps *base, float *params, long *version) {
    ps_client *c = (ps_client *)base;
    memcpy(params, c->params, c->t->total * sizeof(float));
    if (version) *version = c->version;
    return PEFT_OK;
}

static int client_push(ps *base, const ps_push_msg *msg, ps_step_info *info) {
    ps_client *c = (ps_client *)base;
    memset(info, 0, sizeof *info);
    Peft__Wire__Timing tm = PEFT__WIRE__TIMING__INIT;
    tm.compute = msg->timing.compute;
    tm.comm = msg->timing.comm;
    tm.wait = msg->timing.wait;
    double sq = 0.0;
    bool finite = true;
    if (base->async) { /* no server exchange in asynchronous mode: the worker reports its own norm */
        const size_t n = c->t->total;
        finite = msg->tokens > 0 && grads_finite_range(msg->grad_sum, 0, n, c->t);
        if (finite) sq = grad_sq_norm_range(msg->grad_sum, 0, n, c->t) / ((double)msg->tokens * (double)msg->tokens);
    }
    const double comm0 = c->tr->comm_seconds;
    for (int k = 0; k < c->S; k++) {
        Peft__Wire__Push p = PEFT__WIRE__PUSH__INIT;
        p.version = c->version;
        p.offset = c->off[k];
        p.count = c->cnt[k];
        p.tokens = msg->tokens;
        p.loss_sum = msg->loss_sum;
        p.worker_state.data = (uint8_t *)msg->worker_state;
        p.worker_state.len = msg->worker_state_len;
        p.stop_requested = msg->stop_requested;
        p.grad_sq_norm = sq;
        p.grad_finite = finite;
        p.timing = &tm;
        wire_envelope env = PEFT__WIRE__ENVELOPE__INIT;
        env.body_case = PEFT__WIRE__ENVELOPE__BODY_PUSH;
        env.push = &p;
        PEFT_TRY(transport_send(c->tr, k, TAG_REQUEST, &env, msg->grad_sum + c->off[k], c->cnt[k]));
    }
    int rc = receive_params(c, info);
    info->comm_seconds = c->tr->comm_seconds - comm0;
    return rc;
}

static void client_free(ps *base) {
    ps_client *c = (ps_client *)base;
    free(c->off);
    free(c->cnt);
    free(c->params);
    free(c->state);
    free(c);
}

static const ps_ops client_ops = {client_pull, client_push, client_free};

int ps_client_create(transport *tr, const tensor_table *t, const float *init_params, const char *config_json,
                     long total_steps, int staleness, ps **out) {
    *out = NULL;
    ps_client *c = calloc(1, sizeof *c);
    if (!c) return err_set(PEFT_ENOMEM, "out of memory");
    c->base.ops = &client_ops;
    c->base.worker = tr->rank - tr->num_servers;
    c->base.workers = tr->size - tr->num_servers;
    c->base.async = staleness > 0;
    c->tr = tr;
    c->t = t;
    c->S = tr->num_servers;
    c->version = -1;
    c->off = calloc((size_t)c->S, sizeof *c->off);
    c->cnt = calloc((size_t)c->S, sizeof *c->cnt);
    c->params = calloc(t->total ? t->total : 1, sizeof(float));
    uint8_t *table = NULL;
    size_t table_len = 0;
    int rc = c->off && c->cnt && c->params ? PEFT_OK : err_set(PEFT_ENOMEM, "out of memory");
    if (!rc && c->base.worker == 0) rc = tt_serialize(t, &table, &table_len);
    const uint64_t hash = tt_hash(t);
    for (int k = 0; rc == PEFT_OK && k < c->S; k++) {
        ps_shard_range(t->total, c->S, k, &c->off[k], &c->cnt[k]);
        Peft__Wire__Hello h = PEFT__WIRE__HELLO__INIT;
        h.protocol_version = PEFT_WIRE_VERSION;
        h.table_hash = hash;
        h.total = t->total;
        h.worker_index = c->base.worker;
        h.num_workers = c->base.workers;
        h.host = tr->host;
        h.total_steps = total_steps;
        if (c->base.worker == 0) {
            h.table.data = table;
            h.table.len = table_len;
            h.config_json = (char *)(config_json ? config_json : "");
        }
        wire_envelope env = PEFT__WIRE__ENVELOPE__INIT;
        env.body_case = PEFT__WIRE__ENVELOPE__BODY_HELLO;
        env.hello = &h;
        bool with_params = c->base.worker == 0;
        rc = transport_send(tr, k, TAG_REQUEST, &env, with_params ? init_params + c->off[k] : NULL, with_params ? c->cnt[k] : 0);
    }
    free(table);
    for (int k = 0; rc == PEFT_OK && k < c->S; k++) {
        wire_msg m;
        if ((rc = expect_reply(c, k, PEFT__WIRE__ENVELOPE__BODY_WELCOME, &m))) break;
        const Peft__Wire__Welcome *w = m.env->welcome;
        char name[96];
        transport_rank_name(tr, k, name, sizeof name);
        if (w->offset != c->off[k] || w->count != c->cnt[k])
            rc = err_set(PEFT_EMISMATCH, "%s owns [%llu, +%llu), this worker expected [%zu, +%zu)", name,
                         (unsigned long long)w->offset, (unsigned long long)w->count, c->off[k], c->cnt[k]);
        if (!rc && k == 0) {
            c->base.start_step = (long)w->version;
            if (w->worker_state.len) {
                if (!(c->state = malloc(w->worker_state.len))) rc = err_set(PEFT_ENOMEM, "out of memory");
                else {
                    memcpy(c->state, w->worker_state.data, w->worker_state.len);
                    c->base.resume_state = c->state;
                    c->base.resume_state_len = w->worker_state.len;
                }
            }
        }
        wire_msg_free(&m);
    }
    if (!rc) rc = receive_params(c, NULL); /* every server sends its starting range after the welcome */
    if (rc) {
        client_free(&c->base);
        return rc;
    }
    *out = &c->base;
    return PEFT_OK;
}
