/* run_signals.c - graceful stop on SIGINT/SIGTERM/SIGUSR1 (see run_signals.h).
 *
 * The signals are blocked in the calling thread (and so in every thread it creates afterwards:
 * the OpenMP and oneDNN compute threads, MPI's) and taken by one thread that waits for them with
 * sigwait(). A signal handler that interrupts a compute thread is not harmless: measured here,
 * oneDNN 2.6's matmul corrupted the heap when a handled signal arrived mid-step ("free(): invalid
 * pointer"). The flag-setting handler stays installed (with SA_RESTART) for threads that existed
 * before, such as OpenBLAS's pool. A second signal while the first is pending ends the process. */
#include "train/run_signals.h"

#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t stop_signal;

static void note(int sig) {
    if (stop_signal) _exit(128 + sig);
    stop_signal = sig;
}

static void *waiter(void *arg) {
    const sigset_t *set = arg;
    for (;;) {
        int sig;
        if (sigwait(set, &sig) == 0) note(sig);
    }
    return NULL;
}

void run_signals_install(void) {
    static sigset_t set;
    static int installed;
    if (installed) return;
    installed = 1;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGUSR1);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = note;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    pthread_t t;
    if (pthread_create(&t, NULL, waiter, &set) == 0) pthread_detach(t);
}

bool run_stop_requested(void) { return stop_signal != 0; }
int run_stop_signal(void) { return stop_signal; }
