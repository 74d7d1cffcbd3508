/*
 * progress.h - progress reporting for long work: on a terminal one live line rewritten in place,
 * elsewhere a plain line every `interval` seconds. Writes to stderr.
 */
#ifndef PEFT_PROGRESS_H
#define PEFT_PROGRESS_H

#include <stdbool.h>

typedef struct progress {
    bool tty;
    double start, last, interval;
    bool shown;
} progress;

void progress_init(progress *p, double interval_seconds);
double progress_elapsed(const progress *p);
/* True when it is time to report again (always false between intervals). */
bool progress_due(progress *p);
/* Prints the line (printf-style); on a terminal it replaces the previous one. */
void progress_show(progress *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Ends the live line so normal output can follow. */
void progress_done(progress *p);

#endif
