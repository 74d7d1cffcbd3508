/*
 * run_signals.h - SIGINT, SIGTERM and SIGUSR1 end a training run gracefully: the handler only sets
 * a flag; the loop finishes its step, a checkpoint is written and every rank exits 0.
 *
 * Under mpirun: mpirun answers SIGINT/SIGTERM by sending the ranks SIGTERM and, odls_base_sigkill_timeout
 * seconds later (1 by default), SIGKILL - too soon to finish a step. SIGUSR1 to mpirun is forwarded
 * to every rank without killing anything, so `kill -USR1 <mpirun>` (what `peft launch` sends on
 * Ctrl-C) is the graceful stop. (Raising the kill timeout instead would also delay the teardown
 * after an MPI_Abort, since ranks survive the SIGTERM.) A second signal of
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
