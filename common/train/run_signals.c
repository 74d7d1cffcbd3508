/* run_signals.c - graceful stop on SIGINT/SIGTERM (see run_signals.h). */
#include "train/run_signals.h"

#include <signal.h>
#include <string.h>

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig) {
    if (stop_signal) signal(sig, SIG_DFL);
    stop_signal = sig;
}

void run_signals_install(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

bool run_stop_requested(void) { return stop_signal != 0; }
int run_stop_signal(void) { return stop_signal; }
