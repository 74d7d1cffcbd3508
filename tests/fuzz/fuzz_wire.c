/*
 * fuzz_wire.c - libFuzzer target for every message a rank receives (proto/wire.c over protobuf-c):
 * the frame decoder and each validation the server and workers apply, then the payloads they
 * decode further (the tensor table of a hello, the worker state of a push or welcome).
 *
 * Input: 24 bytes of what the receiver expects, then the frame as it came off the wire:
 *     u32 offset, u32 count (masked to 20 bits), i32 version, u8 max_lag, u8 workers - 1,
 *     u8 chunks, u8 unused, u32 total (0: any), i32 step      (all little-endian)
 * A message a check accepts must be safe to use as the receiver then uses it: its payload is
 * copied out in full (ASan checks every read), and the sizes it announces match the expectation.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "train/run_state.h"
#include "train/tensor_table.h"
#include "wire.h"

#define EXPECT_BYTES 24

static uint32_t le32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }

static void copy_all(const wire_msg *m) {
    float *dst = malloc((m->payload_floats ? m->payload_floats : 1) * sizeof *dst);
    if (!dst) abort();
    wire_payload_copy(m, 0, m->payload_floats, dst);
    free(dst);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < EXPECT_BYTES) return 0;
    uint64_t offset = le32(data), count = le32(data + 4) & 0xFFFFF, total = le32(data + 16);
    int64_t version = (int32_t)le32(data + 8), step = (int32_t)le32(data + 20), max_lag = data[12];
    int workers = 1 + data[13];
    size_t chunks = data[14];
    wire_msg m;
    if (wire_decode(data + EXPECT_BYTES, size - EXPECT_BYTES, "rank 1", &m)) return 0;
    if (m.payload_floats * sizeof(float) != size - EXPECT_BYTES - (size_t)(m.payload - (data + EXPECT_BYTES))) abort();
    (void)wire_kind_name(m.env->body_case);
    const wire_envelope *e = m.env;
    worker_state ws;
    switch (e->body_case) {
    case PEFT__WIRE__ENVELOPE__BODY_HELLO:
        if (wire_check_hello(&m, "rank 1", total, workers) == 0) {
            if (e->hello->total == 0 || e->hello->worker_index < 0 || e->hello->worker_index >= workers) abort();
            tensor_table t;
            if (e->hello->table.len && tt_deserialize(e->hello->table.data, e->hello->table.len, "hello", &t) == 0)
                tt_free(&t);
        }
        break;
    case PEFT__WIRE__ENVELOPE__BODY_PUSH:
        if (wire_check_push(&m, "rank 1", offset, count, version, max_lag) == 0) {
            if (m.payload_floats != count || e->push->version > version) abort();
            copy_all(&m);
            (void)worker_state_decode(e->push->worker_state.data, e->push->worker_state.len, "push", &ws);
        }
        break;
    case PEFT__WIRE__ENVELOPE__BODY_PARAMS:
        if (wire_check_params(&m, "rank 1", offset, count) == 0) {
            if (m.payload_floats != count) abort();
            copy_all(&m);
        }
        break;
    case PEFT__WIRE__ENVELOPE__BODY_CHECKPOINT_SHARD:
    case PEFT__WIRE__ENVELOPE__BODY_RESTORE_SHARD:
        if (wire_check_shard(&m, "rank 1", offset, count) == 0) {
            if (m.payload_floats != 3 * count) abort();
            copy_all(&m);
        }
        break;
    case PEFT__WIRE__ENVELOPE__BODY_PEER_NORM:
        if (wire_check_peer_norm(&m, "rank 1", step, chunks) == 0) {
            double sum = 0;
            for (size_t i = 0; i < chunks; i++) sum += e->peer_norm->chunk_sq[i];
            (void)sum;
        }
        break;
    case PEFT__WIRE__ENVELOPE__BODY_WELCOME:
        if (e->welcome->worker_state.len)
            (void)worker_state_decode(e->welcome->worker_state.data, e->welcome->worker_state.len, "welcome", &ws);
        break;
    default: /* pull, checkpoint request, stop, error: nothing beyond the decode */
        break;
    }
    wire_msg_free(&m);
    return 0;
}
