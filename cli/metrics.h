/*
 * metrics.h - reads RUN_DIR/metrics.jsonl, the per-step log `peft train` writes (trainer.c): one JSON
 * object a line with "step", "loss", "learning_rate", "grad_norm", "tokens_per_second", "skipped"
 * and, on evaluation steps, "val_loss".
 *
 *     metrics_log log;
 *     PEFT_TRY(metrics_read("run/metrics.jsonl", &log));
 *     for (size_t i = 0; i < log.n; i++) use(log.rows[i].step, log.rows[i].loss);
 *     metrics_free(&log);
 *
 * A resumed run appends to the same file, so steps may start again below the last one: a row whose
 * step is not above the previous row's replaces every earlier row from that step on, leaving the
 * history the final weights went through, in increasing step order. A last line without its newline
 * that does not parse (a run killed while writing it) is dropped; any other bad line is an error.
 *
 * Errors: PEFT_EIO naming the file when it cannot be read; PEFT_EFORMAT naming FILE:LINE and the key
 * for a line that is not a JSON object, lacks "step" or "loss", or has a value of the wrong type;
 * PEFT_EFORMAT "FILE: no logged steps" when nothing is left. On error *log is empty.
 */
#ifndef PEFT_METRICS_H
#define PEFT_METRICS_H

#include <stdbool.h>
#include <stddef.h>

typedef struct metrics_row {
    long step;
    double loss;
    double learning_rate;     /* NAN when absent */
    double tokens_per_second; /* NAN when absent */
    double val_loss;          /* NAN unless the step was evaluated */
    bool skipped;             /* the step's gradient was not finite and was not applied */
} metrics_row;

typedef struct metrics_log {
    metrics_row *rows; /* n rows, steps strictly increasing; owned, freed by metrics_free */
    size_t n;
} metrics_log;

int metrics_read(const char *path, metrics_log *log);
void metrics_free(metrics_log *log);

#endif
