/*
 * ps.h - the parameter-server interface the training loop of a worker talks to.
 *
 * A worker pulls the current parameters, computes gradients for its share of the global batch and
 * pushes the SUM over its tokens of the per-token loss gradient with that token count. The servers
 * combine the pushes of a step in worker order, divide by the global token count (a token-weighted
 * mean), skip the step if any gradient is NaN or Inf, clip by the global norm, apply AdamW with the
 * learning-rate schedule, write checkpoints when due and bump the version. The loop never touches
 * the optimizer: one process trains through ps_local_create() (the server lives in the worker's
 * process), `mpirun` runs through ps_client_create() (worker/ps_client.h) with servers on other
 * ranks (server/server.h). Same loop, same numbers.
 *
 *     ps *s;  PEFT_TRY(ps_local_create(&table, init_params, &cfg, NULL, &s));
 *     ps_pull(s, params, &ver);
 *     while (...) { ...forward/backward...; ps_push(s, &push, &info); ps_pull(s, params, &ver); }
 *     ps_free(s);
 *
 * Errors: PEFT_ENOMEM, PEFT_EIO (a checkpoint could not be written), and for the MPI client the
 * transport's errors (a server rejected a message: PEFT_EFORMAT/PEFT_EMISMATCH with its message).
 */
#ifndef PEFT_PS_H
#define PEFT_PS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "train/optim.h"
#include "train/schedule.h"
#include "train/tensor_table.h"

/* Chunk of the flat vector over which a squared-norm partial is taken. The global clipping norm is
 * the sum of the chunk partials in chunk order, and server ranges are whole chunks, so any number of
 * servers computes exactly the same norm. */
#define PS_NORM_CHUNK 1024

typedef struct ps_config {
    adamw_hparams adam;
    float learning_rate;
    lr_schedule_type schedule;
    long warmup_steps;
    long total_steps;      /* the run's last step */
    float max_grad_norm;   /* <= 0: no clipping */
    /* checkpoints (run_dir NULL: none) */
    const char *run_dir;
    const char *config_json;
    long save_steps;       /* <= 0: only at the end */
    int save_total_limit;
} ps_config;

typedef struct ps_timing {
    double compute, comm, wait; /* seconds in a step */
} ps_timing;

/* What a worker pushes after a step. */
typedef struct ps_push_msg {
    float *grad_sum;       /* [table->total], consumed (may be scaled in place) */
    long long tokens;
    double loss_sum;
    const void *worker_state; /* this worker's resumable state after the step (stored in checkpoints) */
    size_t worker_state_len;
    bool stop_requested;   /* SIGINT/SIGTERM: make this the last step */
    ps_timing timing;      /* of this step (MPI: reported with the push) */
} ps_push_msg;

typedef struct ps_step_info {
    long step;             /* steps done after this push (taken + skipped) */
    long skipped_total;    /* steps skipped so far */
    float lr;              /* the learning rate the update used */
    double grad_norm;      /* global norm of the mean gradient before clipping (NaN: skipped) */
    bool skipped;          /* a NaN/Inf gradient: parameters and moments unchanged */
    double loss_sum;       /* the step's summed loss over every worker */
    long long tokens;      /* the step's loss tokens over every worker */
    bool stop;             /* the run ends after this step (stop requested); checkpoint written */
    bool saved;            /* a checkpoint of this step was written */
    ps_timing mean_timing; /* mean over workers of what they reported with their previous push */
    double comm_seconds;   /* this worker's time moving bytes during the push and its reply (MPI) */
} ps_step_info;

typedef struct ps ps;

/* The server inside this process: one worker. `resume` (may be NULL) restores a checkpoint. */
struct ckpt_loaded;
int ps_local_create(const tensor_table *t, const float *init_params, const ps_config *cfg,
                    const struct ckpt_loaded *resume, ps **out);
void ps_free(ps *s);

/* Copies the current parameters into params[t->total]; *version = optimizer steps taken. */
int ps_pull(ps *s, float *params, long *version);
int ps_push(ps *s, const ps_push_msg *msg, ps_step_info *info);

/* Where this worker starts: steps already done (taken + skipped), and its saved state from the
 * checkpoint being resumed (NULL/0 on a fresh run or when the checkpoint has none for it). */
long ps_start_step(const ps *s);
void ps_resume_state(const ps *s, const void **state, size_t *len);
/* This worker's index and the number of workers; asynchronous mode (bounded staleness). */
void ps_topology(const ps *s, int *worker, int *workers, bool *async);

/* Server k's range of a flat vector of `total` floats among S servers: whole PS_NORM_CHUNKs,
 * balanced; may be empty when total is small. */
void ps_shard_range(size_t total, int S, int k, size_t *offset, size_t *count);

/* The implementation behind a ps (ps_local.c, worker/ps_client.c). */
typedef struct ps_ops {
    int (*pull)(ps *s, float *params, long *version);
    int (*push)(ps *s, const ps_push_msg *msg, ps_step_info *info);
    void (*free)(ps *s);
} ps_ops;

struct ps {
    const ps_ops *ops;
    long start_step;
    const void *resume_state;
    size_t resume_state_len;
    int worker, workers;
    bool async;
};

#endif
