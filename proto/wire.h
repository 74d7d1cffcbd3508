/*
 * wire.h - frames between ranks: encode, decode and validate (no MPI here; proto/transport.h moves
 * the bytes). The schema is proto/peft.proto; CMake generates peft.pb-c.[ch] from it.
 *
 * A frame is "PFTW", a u32 little-endian header length H, H bytes of a packed Envelope, then exactly
 * Envelope.payload_floats little-endian fp32 values. wire_decode() accepts a frame only if every part
 * of that holds and the Envelope carries a body; the wire_check_*() functions then validate a
 * decoded message against what the receiver expects (its range, the protocol version, ...).
 * Every function here treats its input as hostile: any byte string is either rejected with
 * PEFT_EFORMAT and a one-line message or decoded without reading past its end.
 *
 *     wire_buf b = {0};
 *     Peft__Wire__Envelope env = PEFT__WIRE__ENVELOPE__INIT;  ... set env.body_case and the body ...
 *     PEFT_TRY(wire_encode(&env, grad + off, count, &b));      // b.data[0..b.len) is the frame
 *     wire_msg m;
 *     PEFT_TRY(wire_decode(b.data, b.len, "rank 3", &m));      // m.env, m.payload (aliases b.data)
 *     wire_msg_free(&m);  wire_buf_free(&b);
 */
#ifndef PEFT_WIRE_H
#define PEFT_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "peft.pb-c.h"

#define PEFT_WIRE_VERSION 1u
#define WIRE_MAGIC "PFTW"
#define WIRE_PREFIX 8u
#define WIRE_MAX_HEADER (64u << 20) /* tensor tables and configs are far smaller */

typedef Peft__Wire__Envelope wire_envelope;

/* A growable send buffer, reused from frame to frame. */
typedef struct wire_buf {
    uint8_t *data;
    size_t len, cap;
} wire_buf;

/* A decoded frame. env is owned (wire_msg_free); payload points into the frame bytes given to
 * wire_decode(), so those must outlive it. payload may be unaligned for floats: use
 * wire_payload_copy(). */
typedef struct wire_msg {
    wire_envelope *env;
    const uint8_t *payload;
    size_t payload_floats;
} wire_msg;

/* Encodes env with n payload floats (env->payload_floats is set to n) into b. PEFT_ENOMEM. */
int wire_encode(wire_envelope *env, const float *payload, size_t n, wire_buf *b);
void wire_buf_free(wire_buf *b);

/* Decodes a frame of len bytes; `from` names the sender in messages ("rank 3"). PEFT_EFORMAT for
 * anything malformed: short frame, bad magic, header length past the end or above WIRE_MAX_HEADER,
 * an Envelope that does not unpack or has no body, a payload whose size differs from
 * payload_floats. */
int wire_decode(const uint8_t *frame, size_t len, const char *from, wire_msg *out);
void wire_msg_free(wire_msg *m);

/* Copies the payload's floats [first, first + n) into dst (n + first <= payload_floats). */
void wire_payload_copy(const wire_msg *m, size_t first, size_t n, float *dst);

/* The message kind's name, for messages ("push", "hello", ...). */
const char *wire_kind_name(int body_case);

/* Validation against the receiver's expectations; each returns PEFT_EFORMAT (or PEFT_EMISMATCH
 * for a tensor-table hash or a protocol version that differs) with a message naming `from`. */
int wire_check_hello(const wire_msg *m, const char *from, uint64_t expect_total_or_0, int num_workers);
/* A push for range [offset, offset+count) of a vector of `total` floats at server version `version`
 * (staleness: the push's version may lag by at most max_lag; it may never lead). */
int wire_check_push(const wire_msg *m, const char *from, uint64_t offset, uint64_t count, int64_t version,
                    int64_t max_lag);
/* Params, CheckpointShard and RestoreShard replies: the range and payload size must match. */
int wire_check_params(const wire_msg *m, const char *from, uint64_t offset, uint64_t count);
int wire_check_shard(const wire_msg *m, const char *from, uint64_t offset, uint64_t count);
/* PeerNorm with exactly `chunks` partials. */
int wire_check_peer_norm(const wire_msg *m, const char *from, int64_t step, size_t chunks);

#endif
