/*
 * run_signals.h - SIGINT and SIGTERM end a training run gracefully: the handler only sets a flag;
 * the loop finishes its step, a checkpoint is written and every rank exits 0. A second signal of
 * the same kind while the first is pending restores the default action, so a user who presses
 * Ctrl-C twice gets the immediate stop they asked for.
 */
#ifndef PEFT_RUN_SIGNALS_H
#define PEFT_RUN_SIGNALS_H

#include <stdbool.h>

void run_signals_install(void);
bool run_stop_requested(void);
/* The signal number that asked to stop (0: none). */
int run_stop_signal(void);

#endif
