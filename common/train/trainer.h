/*
 * trainer.h - the training loop of one worker: batches from a dataset, forward/backward through a
 * peft_model, push/pull through the parameter-server interface (ps.h), and, on worker 0 only,
 * evaluation and logging to the terminal and RUN_DIR/metrics.jsonl. Checkpoints are the server's
 * job (ps_config.save_steps).
 *
 * Synchronous mode: step s consumes the global batch of G = batch_size x grad_accum x W sequences
 * from the global sample order (sampler.h); worker w of W takes its contiguous slice. The loss is
 * averaged over every unmasked token of the global batch (the servers divide the summed gradient
 * by the pushed token count), so W workers with batch b match one process with batch W*b.
 * Asynchronous mode (bounded staleness): update u uses sequences [u*g, (u+1)*g) with
 * g = batch_size x grad_accum, and worker w computes updates w, w+W, w+2W, ...
 *
 * SIGINT/SIGTERM (run_signals.h): the step in progress finishes, the servers write a checkpoint
 * and trainer_run returns PEFT_OK with result.stopped set. A step whose gradient holds NaN or Inf is
 * skipped by the servers (parameters and moments unchanged), logged and counted; max_skipped_in_a_row
 * of them in a row end the run with PEFT_EFORMAT (the checkpoints written before stay as they are).
 */
#ifndef PEFT_TRAINER_H
#define PEFT_TRAINER_H

#include <stdbool.h>
#include <stdint.h>

#include "data/dataset.h"
#include "peft/peft.h"
#include "train/ps.h"

typedef struct trainer_config {
    const char *run_dir;        /* metrics.jsonl goes here (worker 0) */
    int batch_size;             /* per device */
    int grad_accum;
    long max_steps;             /* resolved: > 0 */
    long logging_steps, eval_steps;
    uint64_t seed;              /* data order */
    int eval_batches;           /* 0: the whole validation split */
    int max_skipped_in_a_row;   /* this many consecutive non-finite steps end the run (0: never) */
} trainer_config;

typedef struct trainer_result {
    double final_train_loss, final_val_loss; /* NaN when not measured */
    long steps, skipped;
    double seconds, tokens_per_second;
    bool stopped;               /* ended early by SIGINT/SIGTERM (checkpoint written) */
} trainer_result;

int trainer_run(const trainer_config *tc, model *m, peft_model *p, dataset *d, ps *server, trainer_result *out);

/* Mean loss over the validation split (or its first `batches` batches); NaN if it is empty. */
int trainer_evaluate(model *m, peft_model *p, dataset *d, int batch_size, int batches, double *loss);

#endif
