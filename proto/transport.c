/* transport.c - MPI frames with deadlines and back-off polling (see transport.h). */
#include "transport.h"

#include <mpi.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "error.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

bool transport_launched_by_mpirun(void) {
    return getenv("OMPI_COMM_WORLD_SIZE") != NULL || getenv("PMIX_RANK") != NULL;
}

int transport_init(transport *t, int num_servers, double timeout) {
    memset(t, 0, sizeof *t);
    int provided;
    if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        return err_set(PEFT_EIO, "MPI_Init failed");
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &t->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &t->size);
    t->num_servers = num_servers;
    t->timeout = timeout;
    if (gethostname(t->host, sizeof t->host) != 0) snprintf(t->host, sizeof t->host, "?");
    t->host[sizeof t->host - 1] = 0;
    return PEFT_OK;
}

void transport_finalize(transport *t) {
    wire_buf_free(&t->send);
    free(t->recv);
    t->recv = NULL;
    MPI_Finalize();
}

void transport_backoff(int round) {
    long us = 10L << (round < 8 ? round : 8); /* 10 us .. 2.56 ms */
    if (us > 2000) us = 2000;
    struct timespec ts = {0, us * 1000L};
    nanosleep(&ts, NULL);
}

const char *transport_rank_name(const transport *t, int rank, char *buf, size_t len) {
    if (rank < t->num_servers) snprintf(buf, len, "rank %d (server %d)", rank, rank);
    else snprintf(buf, len, "rank %d (worker %d)", rank, rank - t->num_servers);
    return buf;
}

void transport_abort(transport *t, int exit_code, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "peft: rank %d (%s): %s\n", t->rank, t->host, msg);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, exit_code);
    _exit(exit_code);
}

int transport_send(transport *t, int dest, int tag, wire_envelope *env, const float *payload, size_t n) {
    double t0 = now();
    PEFT_TRY(wire_encode(env, payload, n, &t->send));
    if (t->send.len > (size_t)0x7fffffff)
        return err_set(PEFT_EUNSUPPORTED, "a %zu-byte message exceeds MPI's 2 GiB count limit", t->send.len);
    MPI_Request req;
    if (MPI_Isend(t->send.data, (int)t->send.len, MPI_BYTE, dest, tag, MPI_COMM_WORLD, &req) != MPI_SUCCESS)
        return err_set(PEFT_EIO, "MPI_Isend to rank %d failed", dest);
    for (int round = 0;; round++) {
        int done = 0;
        if (MPI_Test(&req, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS) return err_set(PEFT_EIO, "sending to rank %d failed", dest);
        if (done) break;
        if (now() - t0 > t->timeout) {
            char name[96];
            transport_abort(t, 1, "%s did not take a %s message within %.0f s (--comm-timeout); ending the job",
                            transport_rank_name(t, dest, name, sizeof name), wire_kind_name(env->body_case), t->timeout);
        }
        transport_backoff(round);
    }
    t->comm_seconds += now() - t0;
    return PEFT_OK;
}

static int receive_matched(transport *t, MPI_Message *msg, MPI_Status *st, wire_msg *out, int *from) {
    int count;
    MPI_Get_count(st, MPI_BYTE, &count);
    if ((size_t)count > t->recv_cap) {
        size_t cap = t->recv_cap ? t->recv_cap : 4096;
        while (cap < (size_t)count) cap *= 2;
        uint8_t *b = realloc(t->recv, cap);
        if (!b) return err_set(PEFT_ENOMEM, "out of memory for a %d-byte message", count);
        t->recv = b;
        t->recv_cap = cap;
    }
    if (MPI_Mrecv(t->recv, count, MPI_BYTE, msg, MPI_STATUS_IGNORE) != MPI_SUCCESS)
        return err_set(PEFT_EIO, "receiving from rank %d failed", st->MPI_SOURCE);
    *from = st->MPI_SOURCE;
    char name[96];
    return wire_decode(t->recv, (size_t)count, transport_rank_name(t, st->MPI_SOURCE, name, sizeof name), out);
}

int transport_try_recv(transport *t, int source, int tag, wire_msg *out, int *from) {
    int flag = 0;
    MPI_Message msg;
    MPI_Status st;
    if (MPI_Improbe(source, tag, MPI_COMM_WORLD, &flag, &msg, &st) != MPI_SUCCESS) return err_set(PEFT_EIO, "MPI_Improbe failed");
    if (!flag) return 0;
    double t0 = now();
    int rc = receive_matched(t, &msg, &st, out, from);
    t->comm_seconds += now() - t0;
    return rc ? rc : 1;
}

int transport_recv(transport *t, int source, int tag, double timeout, wire_msg *out, int *from) {
    double t0 = now();
    for (int round = 0;; round++) {
        int rc = transport_try_recv(t, source, tag, out, from);
        if (rc == 1) {
            t->wait_seconds += now() - t0;
            return PEFT_OK;
        }
        if (rc) return rc;
        if (now() - t0 > timeout) return TRANSPORT_TIMEOUT;
        transport_backoff(round);
    }
}

void transport_send_error(transport *t, int dest, int tag, int code, const char *message) {
    Peft__Wire__Error e = PEFT__WIRE__ERROR__INIT;
    e.code = code;
    e.message = (char *)message;
    wire_envelope env = PEFT__WIRE__ENVELOPE__INIT;
    env.body_case = PEFT__WIRE__ENVELOPE__BODY_ERROR;
    env.error = &e;
    double saved = t->timeout;
    t->timeout = 5.0;
    (void)transport_send(t, dest, tag, &env, NULL, 0);
    t->timeout = saved;
}
