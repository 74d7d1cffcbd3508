/* wire.c - frame encoding, decoding and validation (see wire.h). */
#include "wire.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

static void put_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static int reserve(wire_buf *b, size_t need) {
    if (need <= b->cap) return PEFT_OK;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < need) cap *= 2;
    uint8_t *d = realloc(b->data, cap);
    if (!d) return err_set(PEFT_ENOMEM, "out of memory for a %zu-byte message", need);
    b->data = d;
    b->cap = cap;
    return PEFT_OK;
}

int wire_encode(wire_envelope *env, const float *payload, size_t n, wire_buf *b) {
    env->payload_floats = n;
    size_t h = protobuf_c_message_get_packed_size(&env->base);
    if (h > WIRE_MAX_HEADER) return err_set(PEFT_EINTERNAL, "a %s header of %zu bytes is too large", wire_kind_name(env->body_case), h);
    size_t len = WIRE_PREFIX + h + n * sizeof(float);
    PEFT_TRY(reserve(b, len));
    memcpy(b->data, WIRE_MAGIC, 4);
    put_u32(b->data + 4, (uint32_t)h);
    protobuf_c_message_pack(&env->base, b->data + WIRE_PREFIX);
    if (n) memcpy(b->data + WIRE_PREFIX + h, payload, n * sizeof(float)); /* little-endian hosts only */
    b->len = len;
    return PEFT_OK;
}

void wire_buf_free(wire_buf *b) {
    free(b->data);
    memset(b, 0, sizeof *b);
}

int wire_decode(const uint8_t *frame, size_t len, const char *from, wire_msg *out) {
    memset(out, 0, sizeof *out);
    if (len < WIRE_PREFIX) return err_set(PEFT_EFORMAT, "message from %s: %zu bytes, shorter than a frame header", from, len);
    if (memcmp(frame, WIRE_MAGIC, 4) != 0) return err_set(PEFT_EFORMAT, "message from %s: not a peft frame (bad magic)", from);
    uint32_t h = get_u32(frame + 4);
    if (h > WIRE_MAX_HEADER || h > len - WIRE_PREFIX)
        return err_set(PEFT_EFORMAT, "message from %s: header length %u exceeds the %zu-byte frame", from, h, len);
    wire_envelope *env = peft__wire__envelope__unpack(NULL, h, frame + WIRE_PREFIX);
    if (!env) return err_set(PEFT_EFORMAT, "message from %s: the header does not decode as a peft.wire.Envelope", from);
    size_t rest = len - WIRE_PREFIX - h;
    if (env->body_case == PEFT__WIRE__ENVELOPE__BODY__NOT_SET) {
        peft__wire__envelope__free_unpacked(env, NULL);
        return err_set(PEFT_EFORMAT, "message from %s: the envelope carries no message", from);
    }
    if (env->payload_floats > rest / sizeof(float) || env->payload_floats * sizeof(float) != rest) {
        err_set(PEFT_EFORMAT, "message from %s: %s announces %llu payload floats but %zu bytes follow", from,
                wire_kind_name(env->body_case), (unsigned long long)env->payload_floats, rest);
        peft__wire__envelope__free_unpacked(env, NULL);
        return PEFT_EFORMAT;
    }
    out->env = env;
    out->payload = frame + WIRE_PREFIX + h;
    out->payload_floats = (size_t)env->payload_floats;
    return PEFT_OK;
}

void wire_msg_free(wire_msg *m) {
    if (m->env) peft__wire__envelope__free_unpacked(m->env, NULL);
    memset(m, 0, sizeof *m);
}

void wire_payload_copy(const wire_msg *m, size_t first, size_t n, float *dst) {
    PEFT_ASSERT(first <= m->payload_floats && n <= m->payload_floats - first);
    if (n) memcpy(dst, m->payload + first * sizeof(float), n * sizeof(float));
}

const char *wire_kind_name(int body_case) {
    switch (body_case) {
    case PEFT__WIRE__ENVELOPE__BODY_HELLO: return "hello";
    case PEFT__WIRE__ENVELOPE__BODY_WELCOME: return "welcome";
    case PEFT__WIRE__ENVELOPE__BODY_PULL: return "pull";
    case PEFT__WIRE__ENVELOPE__BODY_PUSH: return "push";
    case PEFT__WIRE__ENVELOPE__BODY_PARAMS: return "params";
    case PEFT__WIRE__ENVELOPE__BODY_PEER_NORM: return "peer-norm";
    case PEFT__WIRE__ENVELOPE__BODY_CHECKPOINT_REQUEST: return "checkpoint-request";
    case PEFT__WIRE__ENVELOPE__BODY_CHECKPOINT_SHARD: return "checkpoint-shard";
    case PEFT__WIRE__ENVELOPE__BODY_RESTORE_SHARD: return "restore-shard";
    case PEFT__WIRE__ENVELOPE__BODY_STOP: return "stop";
    case PEFT__WIRE__ENVELOPE__BODY_ERROR: return "error";
    default: return "unknown message";
    }
}

static int expect_kind(const wire_msg *m, const char *from, int kind) {
    if (m->env->body_case != (Peft__Wire__Envelope__BodyCase)kind)
        return err_set(PEFT_EFORMAT, "message from %s: expected %s, got %s", from, wire_kind_name(kind),
                       wire_kind_name(m->env->body_case));
    return PEFT_OK;
}

int wire_check_hello(const wire_msg *m, const char *from, uint64_t expect_total, int num_workers) {
    PEFT_TRY(expect_kind(m, from, PEFT__WIRE__ENVELOPE__BODY_HELLO));
    const Peft__Wire__Hello *h = m->env->hello;
    if (h->protocol_version != PEFT_WIRE_VERSION)
        return err_set(PEFT_EMISMATCH, "hello from %s: protocol version %u, this rank speaks %u (mixed peft builds?)", from,
                       h->protocol_version, PEFT_WIRE_VERSION);
    if (h->num_workers != num_workers)
        return err_set(PEFT_EMISMATCH, "hello from %s: it counts %d workers, this server %d", from, h->num_workers, num_workers);
    if (h->worker_index < 0 || h->worker_index >= num_workers)
        return err_set(PEFT_EFORMAT, "hello from %s: worker index %d outside [0, %d)", from, h->worker_index, num_workers);
    if (h->total == 0 || h->total > ((uint64_t)1 << 40))
        return err_set(PEFT_EFORMAT, "hello from %s: %llu trainable values is not a size", from, (unsigned long long)h->total);
    if (expect_total && h->total != expect_total)
        return err_set(PEFT_EMISMATCH, "hello from %s: %llu trainable values, worker 0 has %llu", from,
                       (unsigned long long)h->total, (unsigned long long)expect_total);
    return PEFT_OK;
}

int wire_check_push(const wire_msg *m, const char *from, uint64_t offset, uint64_t count, int64_t version,
                    int64_t max_lag) {
    PEFT_TRY(expect_kind(m, from, PEFT__WIRE__ENVELOPE__BODY_PUSH));
    const Peft__Wire__Push *p = m->env->push;
    if (p->offset != offset || p->count != count || m->payload_floats != count)
        return err_set(PEFT_EFORMAT, "push from %s: range [%llu, +%llu) with %zu floats, this server owns [%llu, +%llu)", from,
                       (unsigned long long)p->offset, (unsigned long long)p->count, m->payload_floats,
                       (unsigned long long)offset, (unsigned long long)count);
    if (p->version > version)
        return err_set(PEFT_EFORMAT, "push from %s: computed on version %lld, but this server is at %lld", from,
                       (long long)p->version, (long long)version);
    if (p->version < version - max_lag) /* not version - p->version: a hostile version would overflow */
        return err_set(PEFT_EFORMAT, "push from %s: stale (version %lld, server at %lld, at most %lld behind allowed)", from,
                       (long long)p->version, (long long)version, (long long)max_lag);
    /* a NaN/Inf loss is not malformed: its step is skipped like its gradient */
    if (p->tokens < 0) return err_set(PEFT_EFORMAT, "push from %s: %lld tokens", from, (long long)p->tokens);
    if (p->worker_state.len > 4096)
        return err_set(PEFT_EFORMAT, "push from %s: %zu bytes of worker state (at most 4096)", from, p->worker_state.len);
    return PEFT_OK;
}

static int check_range(const wire_msg *m, const char *from, const char *what, uint64_t got_off, uint64_t got_count,
                       uint64_t offset, uint64_t count, size_t floats) {
    if (got_off != offset || got_count != count || m->payload_floats != floats)
        return err_set(PEFT_EFORMAT, "%s from %s: range [%llu, +%llu) with %zu floats, expected [%llu, +%llu)", what, from,
                       (unsigned long long)got_off, (unsigned long long)got_count, m->payload_floats,
                       (unsigned long long)offset, (unsigned long long)count);
    return PEFT_OK;
}

int wire_check_params(const wire_msg *m, const char *from, uint64_t offset, uint64_t count) {
    PEFT_TRY(expect_kind(m, from, PEFT__WIRE__ENVELOPE__BODY_PARAMS));
    const Peft__Wire__Params *p = m->env->params;
    return check_range(m, from, "params", p->offset, p->count, offset, count, count);
}

int wire_check_shard(const wire_msg *m, const char *from, uint64_t offset, uint64_t count) {
    uint64_t off, cnt;
    if (m->env->body_case == PEFT__WIRE__ENVELOPE__BODY_CHECKPOINT_SHARD) {
        off = m->env->checkpoint_shard->offset;
        cnt = m->env->checkpoint_shard->count;
    } else if (m->env->body_case == PEFT__WIRE__ENVELOPE__BODY_RESTORE_SHARD) {
        off = m->env->restore_shard->offset;
        cnt = m->env->restore_shard->count;
    } else {
        return err_set(PEFT_EFORMAT, "message from %s: expected a shard, got %s", from, wire_kind_name(m->env->body_case));
    }
    return check_range(m, from, wire_kind_name(m->env->body_case), off, cnt, offset, count, 3 * count);
}

int wire_check_peer_norm(const wire_msg *m, const char *from, int64_t step, size_t chunks) {
    PEFT_TRY(expect_kind(m, from, PEFT__WIRE__ENVELOPE__BODY_PEER_NORM));
    const Peft__Wire__PeerNorm *p = m->env->peer_norm;
    if (p->step != step || p->n_chunk_sq != chunks || m->payload_floats != 0)
        return err_set(PEFT_EFORMAT, "peer-norm from %s: step %lld with %zu partials, expected step %lld with %zu", from,
                       (long long)p->step, p->n_chunk_sq, (long long)step, chunks);
    for (size_t i = 0; i < chunks; i++)
        if (!(p->chunk_sq[i] >= 0.0) && p->finite)
            return err_set(PEFT_EFORMAT, "peer-norm from %s: partial %zu is %g", from, i, p->chunk_sq[i]);
    return PEFT_OK;
}
