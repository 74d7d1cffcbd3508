#include "progress.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

void progress_init(progress *p, double interval_seconds) {
    p->tty = isatty(STDERR_FILENO);
    p->start = p->last = now();
    p->interval = p->tty ? 0.25 : interval_seconds;
    p->shown = false;
}

double progress_elapsed(const progress *p) { return now() - p->start; }

bool progress_due(progress *p) {
    double t = now();
    if (t - p->last < p->interval) return false;
    p->last = t;
    return true;
}

void progress_show(progress *p, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    if (p->tty) fputs("\r\033[K", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    if (!p->tty) fputc('\n', stderr);
    fflush(stderr);
    p->shown = true;
}

void progress_done(progress *p) {
    if (p->tty && p->shown) fputc('\n', stderr);
    p->shown = false;
}
