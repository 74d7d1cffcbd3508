/* server.c - the parameter-server role: handshake, the synchronous step, and server_run (see server.h). */
#include "server_impl.h"

#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "error.h"
#include "io/file.h"
#include "store/checkpoint.h"
#include "train/run_signals.h"
#include "train/run_state.h"
#include "train/shard.h"

double server_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

const char *name_of(const server *s, int rank, char *buf) { return transport_rank_name(s->tr, rank, buf, 96); }

/* Tells every worker the run cannot go on, then returns rc (whose message is already set). */
int reject_all(server *s, int rc) {
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", err_msg());
    for (int i = 0; i < s->W; i++) transport_send_error(s->tr, s->S + i, TAG_REPLY, rc, msg);
    return err_set(rc, "%s", msg);
}

void silent_abort(server *s, int rank, const char *what) {
    char name[96];
    transport_abort(s->tr, 1, "no %s from %s within %.0f s (--comm-timeout); ending the job", what, name_of(s, rank, name),
                    s->tr->timeout);
}

int send_params(server *s, int rank) {
    Peft__Wire__Timing tm = PEFT__WIRE__TIMING__INIT;
    tm.compute = s->timing.compute / s->W;
    tm.comm = s->timing.comm / s->W;
    tm.wait = s->timing.wait / s->W;
    Peft__Wire__Params p = PEFT__WIRE__PARAMS__INIT;
    p.version = s->sh.taken + s->sh.skipped;
    p.offset = s->sh.offset;
    p.count = s->sh.count;
    p.step = p.version;
    p.skipped = s->sh.skipped;
    p.lr = s->last.lr;
    p.grad_norm = s->last.grad_norm;
    p.last_skipped = s->last.skipped;
    p.loss_sum = s->loss_sum;
    p.tokens = s->tokens;
    p.stop = s->stop;
    p.mean_timing = &tm;
    wire_envelope env = PEFT__WIRE__ENVELOPE__INIT;
    env.body_case = PEFT__WIRE__ENVELOPE__BODY_PARAMS;
    env.params = &p;
    return transport_send(s->tr, rank, TAG_REPLY, &env, s->sh.params + s->sh.offset, s->sh.count);
}

/* ---- handshake ------------------------------------------------------------------------------ */

static int receive_hellos(server *s, uint64_t *hashes) {
    uint8_t *seen = calloc((size_t)s->W, 1);
    if (!seen) return err_set(PEFT_ENOMEM, "out of memory");
    int rc = PEFT_OK;
    float *init = NULL;
    for (int got = 0; rc == PEFT_OK && got < s->W; got++) {
        wire_msg m;
        int from;
        rc = transport_recv(s->tr, MPI_ANY_SOURCE, TAG_REQUEST, s->tr->timeout, &m, &from);
        if (rc == TRANSPORT_TIMEOUT) {
            for (int i = 0; i < s->W; i++)
                if (!seen[i]) silent_abort(s, s->S + i, "hello");
        }
        char name[96];
        name_of(s, from, name);
        if (rc) break;
        if (from < s->S) rc = err_set(PEFT_EFORMAT, "message from %s: servers do not send hellos", name);
        if (!rc) rc = wire_check_hello(&m, name, 0, s->W);
        const Peft__Wire__Hello *h = rc ? NULL : m.env->hello;
        if (!rc && h->worker_index != from - s->S)
            rc = err_set(PEFT_EFORMAT, "hello from %s: it says it is worker %d", name, h->worker_index);
        if (!rc && seen[h->worker_index]) rc = err_set(PEFT_EFORMAT, "hello from %s: a second hello", name);
        if (!rc) {
            seen[h->worker_index] = 1;
            hashes[h->worker_index] = h->table_hash;
        }
        if (!rc && h->worker_index == 0 && h->total_steps <= 0)
            rc = err_set(PEFT_EFORMAT, "hello from %s: a run of %lld steps", name, (long long)h->total_steps);
        if (!rc && h->worker_index == 0) {
            s->cfg.ps.total_steps = (long)h->total_steps;
            if ((rc = tt_deserialize(h->table.data, h->table.len, name, &s->table))) {
            } else if (tt_hash(&s->table) != h->table_hash || s->table.total != h->total) {
                rc = err_set(PEFT_EFORMAT, "hello from %s: its tensor table does not match its own hash", name);
            } else {
                size_t off, cnt;
                ps_shard_range(s->table.total, s->S, s->k, &off, &cnt);
                if (m.payload_floats != cnt)
                    rc = err_set(PEFT_EFORMAT, "hello from %s: %zu initial values for a range of %zu", name, m.payload_floats, cnt);
                else if (!(init = malloc((cnt ? cnt : 1) * sizeof(float))) || !(s->config_json = strdup(h->config_json ? h->config_json : "")))
                    rc = err_set(PEFT_ENOMEM, "out of memory");
                else
                    wire_payload_copy(&m, 0, cnt, init);
            }
        } else if (!rc && m.payload_floats != 0) {
            rc = err_set(PEFT_EFORMAT, "hello from %s: only worker 0 sends initial parameters", name);
        }
        if (m.env) wire_msg_free(&m);
    }
    for (int i = 1; rc == PEFT_OK && i < s->W; i++)
        if (hashes[i] != hashes[0]) {
            char name[96];
            rc = err_set(PEFT_EMISMATCH, "hello from %s: tensor-table hash %016llx differs from worker 0's %016llx "
                         "(different --method, model or method flags?)", name_of(s, s->S + i, name),
                         (unsigned long long)hashes[i], (unsigned long long)hashes[0]);
        }
    if (!rc) {
        size_t off, cnt;
        ps_shard_range(s->table.total, s->S, s->k, &off, &cnt);
        if (!s->cfg.ps.config_json) s->cfg.ps.config_json = s->config_json;
        rc = shard_init(&s->sh, &s->table, off, cnt, init, &s->cfg.ps, true);
    }
    free(init);
    free(seen);
    return rc;
}

/* ---- the synchronous step ---------------------------------------------------------------------- */

/* Adds a push's payload to the gradient range (the first push of a step overwrites). */
void server_accumulate(server *s, const wire_msg *m, bool first) {
    float *g = s->sh.grad + s->sh.offset;
    if (first) {
        wire_payload_copy(m, 0, s->sh.count, g);
        return;
    }
    for (size_t i = 0; i < s->sh.count; i++) {
        float x;
        memcpy(&x, m->payload + i * sizeof(float), sizeof x);
        g[i] += x;
    }
}

void server_note_push(server *s, int i, const Peft__Wire__Push *p) {
    s->tokens += p->tokens;
    s->loss_sum += p->loss_sum;
    s->stop |= p->stop_requested;
    if (p->timing) {
        s->timing.compute += p->timing->compute;
        s->timing.comm += p->timing->comm;
        s->timing.wait += p->timing->wait;
    }
    if (p->worker_state.len == WORKER_STATE_BYTES) {
        memcpy(s->blobs + (size_t)i * WORKER_STATE_BYTES, p->worker_state.data, WORKER_STATE_BYTES);
        s->have_blob[i] = 1;
    }
}

/* Receives worker i's next push (answering pulls on the way) and adds it in. */
static int take_push(server *s, int i, long version, int64_t max_lag) {
    const int rank = s->S + i;
    for (;;) {
        wire_msg m;
        int from;
        int rc = transport_recv(s->tr, rank, TAG_REQUEST, s->tr->timeout, &m, &from);
        if (rc == TRANSPORT_TIMEOUT) silent_abort(s, rank, "push");
        if (rc) return rc;
        char name[96];
        name_of(s, rank, name);
        if (m.env->body_case == PEFT__WIRE__ENVELOPE__BODY_PULL) {
            wire_msg_free(&m);
            PEFT_TRY(send_params(s, rank));
            continue;
        }
        rc = wire_check_push(&m, name, s->sh.offset, s->sh.count, version, max_lag);
        if (!rc) {
            server_accumulate(s, &m, i == 0 || s->cfg.staleness > 0);
            server_note_push(s, i, m.env->push);
        }
        wire_msg_free(&m);
        return rc;
    }
}

/* Every server's norm partials, finiteness and stop flags, combined in server order. */
static int exchange_norms(server *s, long step, const double *mine, bool *finite) {
    size_t base = 0;
    size_t *first = calloc((size_t)s->S, sizeof *first);
    if (!first) return err_set(PEFT_ENOMEM, "out of memory");
    for (int j = 0; j < s->S; j++) {
        size_t off, cnt;
        ps_shard_range(s->table.total, s->S, j, &off, &cnt);
        first[j] = base;
        base += (cnt + PS_NORM_CHUNK - 1) / PS_NORM_CHUNK;
    }
    const size_t mine_n = shard_chunks(&s->sh);
    memcpy(s->partials + first[s->k], mine, mine_n * sizeof(double));
    int rc = PEFT_OK;
    Peft__Wire__PeerNorm pn = PEFT__WIRE__PEER_NORM__INIT;
    pn.step = step;
    pn.n_chunk_sq = mine_n;
    pn.chunk_sq = (double *)mine;
    pn.finite = *finite;
    pn.stop = s->stop;
    pn.tokens = s->tokens;
    wire_envelope env = PEFT__WIRE__ENVELOPE__INIT;
    env.body_case = PEFT__WIRE__ENVELOPE__BODY_PEER_NORM;
    env.peer_norm = &pn;
    for (int j = 0; j < s->S && !rc; j++)
        if (j != s->k) rc = transport_send(s->tr, j, TAG_PEER, &env, NULL, 0);
    for (int j = 0; j < s->S && !rc; j++) {
        if (j == s->k) continue;
        wire_msg m;
        int from;
        rc = transport_recv(s->tr, j, TAG_PEER, s->tr->timeout, &m, &from);
        if (rc == TRANSPORT_TIMEOUT) silent_abort(s, j, "norm partials");
        if (rc) break;
        char name[96];
        size_t n = (j + 1 < s->S ? first[j + 1] : s->nchunks) - first[j];
        rc = wire_check_peer_norm(&m, name_of(s, j, name), step, n);
        if (!rc && m.env->peer_norm->tokens != s->tokens)
            rc = err_set(PEFT_EFORMAT, "peer-norm from %s: %lld tokens in step %ld, this server counted %lld", name,
                         (long long)m.env->peer_norm->tokens, step, s->tokens);
        if (!rc) {
            memcpy(s->partials + first[j], m.env->peer_norm->chunk_sq, n * sizeof(double));
            *finite = *finite && m.env->peer_norm->finite;
            s->stop |= m.env->peer_norm->stop;
        }
        wire_msg_free(&m);
    }
    free(first);
    return rc;
}

static int run_sync(server *s) {
    double *mine = malloc((shard_chunks(&s->sh) + 1) * sizeof(double));
    if (!mine) return err_set(PEFT_ENOMEM, "out of memory");
    int rc = PEFT_OK;
    const long total = s->cfg.ps.total_steps;
    while (rc == PEFT_OK && s->sh.taken + s->sh.skipped < total) {
        const long version = s->sh.taken + s->sh.skipped;
        s->tokens = 0;
        s->loss_sum = 0.0;
        memset(&s->timing, 0, sizeof s->timing);
        for (int i = 0; i < s->W && rc == PEFT_OK; i++) rc = take_push(s, i, version, 0);
        if (rc) return free(mine), reject_all(s, rc);
        s->stop |= run_stop_requested();
        bool finite;
        shard_prepare(&s->sh, s->sh.grad, s->tokens, mine, &finite);
        if (s->S > 1 && (rc = exchange_norms(s, version, mine, &finite))) break;
        if (s->S == 1) memcpy(s->partials, mine, shard_chunks(&s->sh) * sizeof(double));
        shard_update(&s->sh, s->sh.grad, shard_sum_partials(s->partials, s->nchunks), finite, &s->last);
        const long step = s->sh.taken + s->sh.skipped;
        if (shard_save_due(&s->cfg.ps, step, s->stop) && (rc = server_checkpoint(s, step))) {
            if (s->k == 0) rc = reject_all(s, rc);
            break;
        }
        for (int i = 0; i < s->W && rc == PEFT_OK; i++) rc = send_params(s, s->S + i);
        if (s->stop) break;
    }
    free(mine);
    return rc;
}

/* ---- the role ----------------------------------------------------------------------------------- */

static int welcome(server *s, int i) {
    Peft__Wire__Welcome w = PEFT__WIRE__WELCOME__INIT;
    w.offset = s->sh.offset;
    w.count = s->sh.count;
    w.version = s->sh.taken + s->sh.skipped;
    if (s->k == 0 && s->have_blob[i]) {
        w.worker_state.data = s->blobs + (size_t)i * WORKER_STATE_BYTES;
        w.worker_state.len = WORKER_STATE_BYTES;
    }
    wire_envelope env = PEFT__WIRE__ENVELOPE__INIT;
    env.body_case = PEFT__WIRE__ENVELOPE__BODY_WELCOME;
    env.welcome = &w;
    PEFT_TRY(transport_send(s->tr, s->S + i, TAG_REPLY, &env, NULL, 0));
    return send_params(s, s->S + i); /* the starting parameters, so no pull is needed */
}

int server_run(transport *tr, const server_config *cfg) {
    server s = {.tr = tr, .cfg = *cfg, .S = tr->num_servers, .W = tr->size - tr->num_servers, .k = tr->rank};
    const double t0 = server_now();
    struct rusage r0;
    getrusage(RUSAGE_SELF, &r0);
    uint64_t *hashes = calloc((size_t)s.W, sizeof *hashes);
    s.blobs = calloc((size_t)s.W, WORKER_STATE_BYTES);
    s.have_blob = calloc((size_t)s.W, 1);
    int rc = hashes && s.blobs && s.have_blob ? PEFT_OK : err_set(PEFT_ENOMEM, "out of memory");
    if (cfg->precheck_rc) rc = cfg->precheck_rc;
    if (!rc) rc = receive_hellos(&s, hashes);
    if (!rc) {
        /* server ranges are whole chunks, so every server's partials together are the vector's chunks */
        s.nchunks = (s.table.total + PS_NORM_CHUNK - 1) / PS_NORM_CHUNK;
        if (!(s.partials = calloc(s.nchunks + 1, sizeof(double)))) rc = err_set(PEFT_ENOMEM, "out of memory");
    }
    if (!rc && s.k == 0 && cfg->ps.run_dir) rc = file_mkdirs(cfg->ps.run_dir);
    if (!rc && cfg->resume_step != -2) rc = server_restore(&s, hashes);
    if (rc) rc = reject_all(&s, rc);
    s.last.grad_norm = NAN;
    const long start = s.sh.taken + s.sh.skipped;
    for (int i = 0; i < s.W && rc == PEFT_OK; i++) rc = welcome(&s, i);
    if (!rc && start >= s.cfg.ps.total_steps)
        fprintf(stderr, "peft: the run is already at step %ld of %ld: nothing to train\n", start, s.cfg.ps.total_steps);
    if (!rc) rc = cfg->staleness > 0 ? server_run_async(&s, start) : run_sync(&s);
    struct rusage r1;
    getrusage(RUSAGE_SELF, &r1);
    double cpu = (double)(r1.ru_utime.tv_sec - r0.ru_utime.tv_sec) + (r1.ru_utime.tv_usec - r0.ru_utime.tv_usec) * 1e-6 +
                 (double)(r1.ru_stime.tv_sec - r0.ru_stime.tv_sec) + (r1.ru_stime.tv_usec - r0.ru_stime.tv_usec) * 1e-6;
    if (cfg->verbose || rc == PEFT_OK)
        fprintf(stderr, "peft: server %d on %s: %ld steps, %.2f s CPU over %.1f s wall (%.1f%%), range of %zu values\n", s.k,
                tr->host, s.sh.taken + s.sh.skipped - start, cpu, server_now() - t0, 100.0 * cpu / (server_now() - t0 + 1e-9), s.sh.count);
    shard_free(&s.sh);
    tt_free(&s.table);
    free(s.config_json);
    free(s.partials);
    free(s.blobs);
    free(s.have_blob);
    free(hashes);
    return rc;
}
