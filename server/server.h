/*
 * server.h - the parameter-server role: ranks 0..S-1 of a distributed `peft train`.
 *
 * Server k owns the range ps_shard_range(total, S, k) of the flat parameter vector, its AdamW
 * moments and its gradient accumulator (train/shard.h). It needs no model and no dataset: worker 0's
 * Hello brings the tensor table, the run configuration and the initial parameters; on resume,
 * server 0 reads the checkpoint and hands every other server its shard.
 *
 * Synchronous mode: per step it takes one push from every worker IN WORKER ORDER (receiving by
 * source, so the sum is deterministic), divides by the global token count, exchanges norm partials
 * with the other servers (summed in chunk order: any S gives the same norm), skips a non-finite
 * step, clips, applies AdamW and the schedule, and answers each worker with its new range.
 * Checkpoints: server 0 gathers every shard and writes one LMDB transaction when due.
 * Asynchronous mode (staleness K > 0): each push is applied as it arrives with the norm its worker
 * reports; a worker more than K pushes ahead of the slowest unfinished worker waits for its reply.
 *
 * Every incoming message is validated (wire.h); a bad one is answered with an Error frame naming
 * what was wrong, logged, and ends the run with a non-zero status (never a crash). Every wait has
 * the --comm-timeout deadline; past it the server names the silent rank and aborts the job.
 */
#ifndef PEFT_SERVER_H
#define PEFT_SERVER_H

#include <stdint.h>

#include "train/ps.h"
#include "transport.h"

typedef struct server_config {
    ps_config ps;            /* total_steps and config_json come from worker 0's hello */
    int staleness;           /* 0: synchronous */
    int64_t resume_step;     /* -2: fresh run, -1: the latest checkpoint, >= 0: that step */
    int precheck_rc;         /* != PEFT_OK: refuse the run with err_msg() (e.g. RUN_DIR in use) */
    int verbose;
} server_config;

int server_run(transport *tr, const server_config *cfg);

#endif
