/*
 * server_impl.h - what the files of the server role share (server.c: handshake, synchronous loop and
 * the role; server_shards.c: shards between servers for resume and checkpoints; server_async.c: the
 * bounded-staleness loop). Not for use outside server/.
 */
#ifndef PEFT_SERVER_IMPL_H
#define PEFT_SERVER_IMPL_H

#include <stdbool.h>
#include <stdint.h>

#include "server.h"
#include "train/shard.h"

typedef struct server {
    transport *tr;
    server_config cfg;
    int S, W, k;               /* servers, workers, this server */
    tensor_table table;
    char *config_json;
    shard sh;
    double *partials;          /* every server's chunk partials, in chunk order */
    size_t nchunks;            /* total chunks */
    uint8_t *blobs;            /* [W x WORKER_STATE_BYTES]: each worker's latest state */
    uint8_t *have_blob;        /* [W] */
    ps_step_info last;         /* what the last update did, for replies */
    double loss_sum;
    long long tokens;
    ps_timing timing;          /* sum over the step's pushes */
    bool stop;
} server;

double server_now(void);
/* "rank 3 (worker 1)"; buf holds 96 bytes. */
const char *name_of(const server *s, int rank, char *buf);
/* Tells every worker the run cannot go on (an Error frame with err_msg()), then returns rc. */
int reject_all(server *s, int rc);
/* Past --comm-timeout: names the silent rank and ends the job (MPI_Abort). */
void silent_abort(server *s, int rank, const char *what) __attribute__((noreturn));
/* This server's range of the parameters, with what the last update did, to a worker. */
int send_params(server *s, int rank);
/* The step's pushes: add one in (the first overwrites), and note its tokens, loss, stop, timing, state. */
void server_accumulate(server *s, const wire_msg *m, bool first);
void server_note_push(server *s, int i, const Peft__Wire__Push *p);

/* server_shards.c */
int send_shard(server *s, int dest, int kind, int64_t step, const float *p, const float *m, const float *v, size_t off,
               size_t cnt);
/* Server 0 reads the checkpoint and sends each server its shard; the others receive theirs. */
int server_restore(server *s, const uint64_t *hashes);
/* Server 0 gathers every shard and writes checkpoint `step` in one transaction; the others answer. */
int server_checkpoint(server *s, long step);

/* server_async.c */
int server_run_async(server *s, long start);

#endif
