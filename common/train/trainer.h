/*
 * trainer.h - the training loop of one worker: batches from a dataset, forward/backward through a
 * peft_model, push/pull through the parameter-server interface (ps.h), evaluation, logging to the
 * terminal and RUN_DIR/metrics.jsonl, and checkpoints in RUN_DIR/checkpoints.lmdb.
 *
 * Each optimizer step consumes a global batch of G = batch_size x grad_accum sequences from the
 * global sample order (sampler.h); the loss is averaged over every unmasked token of that global
 * batch (the server divides the summed gradient by the pushed token count).
 */
#ifndef PEFT_TRAINER_H
#define PEFT_TRAINER_H

#include <stdbool.h>
#include <stdint.h>

#include "data/dataset.h"
#include "peft/peft.h"
#include "train/ps.h"

typedef struct trainer_config {
    const char *run_dir;
    const char *config_json;    /* the resolved run configuration, stored with each checkpoint */
    int batch_size;             /* per device */
    int grad_accum;
    long max_steps;             /* resolved: > 0 */
    long logging_steps, eval_steps, save_steps;
    int save_total_limit;
    uint64_t seed;              /* data order */
    int eval_batches;           /* 0: the whole validation split */
} trainer_config;

typedef struct trainer_result {
    double final_train_loss, final_val_loss; /* NaN when not measured */
    long steps, skipped;
    double seconds, tokens_per_second;
} trainer_result;

int trainer_run(const trainer_config *tc, model *m, peft_model *p, dataset *d, ps *server, trainer_result *out);

/* Mean loss over the validation split (or its first `batches` batches); NaN if it is empty. */
int trainer_evaluate(model *m, peft_model *p, dataset *d, int batch_size, int batches, double *loss);

#endif
