/*
 * transport.h - frames between MPI ranks with deadlines, never a busy wait.
 *
 * Every send and receive is non-blocking underneath and polled with exponential back-off (10 us
 * doubling to 2 ms), so a waiting rank costs almost no CPU while ranks share cores. Every wait has
 * a deadline (--comm-timeout): OpenMPI 4.1 has no fault tolerance, a rank blocked on a dead or cut
 * peer would wait forever, so past the deadline the caller names the silent rank and ends the job
 * with transport_abort() (MPI_Abort); recovery is a relaunch that resumes from a checkpoint.
 *
 * Tags keep conversations apart: TAG_REQUEST (worker -> server), TAG_REPLY (server -> worker),
 * TAG_PEER (server <-> server). Within one (source, tag) pair MPI keeps the order of messages.
 *
 * A received message aliases the transport's receive buffer: it is valid until the next receive on
 * the same transport. Errors: PEFT_EFORMAT/PEFT_EMISMATCH for a frame that does not decode (the
 * message names the sender), PEFT_ENOMEM, PEFT_EIO for an MPI failure; TRANSPORT_TIMEOUT (> 0, not
 * a peft status) when the deadline passed with nothing received.
 */
#ifndef PEFT_TRANSPORT_H
#define PEFT_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>

#include "wire.h"

enum { TAG_REQUEST = 101, TAG_REPLY = 102, TAG_PEER = 103 };
#define TRANSPORT_TIMEOUT 1000

typedef struct transport {
    int rank, size, num_servers;
    double timeout;       /* seconds a wait may last */
    char host[64];
    wire_buf send;
    uint8_t *recv;
    size_t recv_cap;
    double comm_seconds;  /* time spent moving bytes (sends, receive copies) */
    double wait_seconds;  /* time spent waiting for a message to arrive */
} transport;

/* True when this process was started by mpirun (OpenMPI's environment is present). */
bool transport_launched_by_mpirun(void);
/* MPI_Init (thread level FUNNELED) and the world's rank and size. PEFT_EIO on failure. */
int transport_init(transport *t, int num_servers, double timeout);
void transport_finalize(transport *t);

/* Sends a frame (env + n payload floats) to dest, waiting at most the timeout for it to leave. */
int transport_send(transport *t, int dest, int tag, wire_envelope *env, const float *payload, size_t n);

/* Receives the next frame with `tag` from `source` (MPI_ANY_SOURCE allowed) within `timeout`
 * seconds; *from receives the sender. TRANSPORT_TIMEOUT when nothing came. */
int transport_recv(transport *t, int source, int tag, double timeout, wire_msg *out, int *from);

/* Non-blocking: 1 and the message when one with `tag` from `source` is waiting, 0 when none. */
int transport_try_recv(transport *t, int source, int tag, wire_msg *out, int *from);

/* Sends an Error frame (best effort, short deadline) to dest. */
void transport_send_error(transport *t, int dest, int tag, int code, const char *message);

/* Prints "peft: rank R (HOST): <message>" to stderr and ends the whole job (MPI_Abort). */
void transport_abort(transport *t, int exit_code, const char *fmt, ...) __attribute__((format(printf, 3, 4), noreturn));

/* "rank 3 (worker 1 on h2)" style names; `buf` must hold 96 bytes. */
const char *transport_rank_name(const transport *t, int rank, char *buf, size_t len);

/* Sleeps for the back-off delay of poll round `round` (0, 1, ...). */
void transport_backoff(int round);

#endif
