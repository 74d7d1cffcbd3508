/*
 * error.h - status codes and the last error message.
 *
 * Every library function in peft returns an int status: PEFT_OK (0) on success or one of the
 * negative PEFT_E* codes below. Before returning an error a function records a one-line,
 * human-readable message with err_set(), naming the file, key or flag at fault:
 *
 *     if (n > max) return err_set(PEFT_EFORMAT, "%s: header length %llu exceeds %llu", path, n, max);
 *
 * Only main() prints it (err_msg()) and chooses the exit code (err_exit_code()). Library code never
 * calls exit(). The message lives in a thread-local buffer, valid until the next err_set() on the
 * same thread.
 */
#ifndef PEFT_ERROR_H
#define PEFT_ERROR_H

#include <stdio.h>
#include <stdlib.h>

enum peft_status {
    PEFT_OK = 0,
    PEFT_EUSAGE = -1,   /* bad flag or flag value: exit code 2 */
    PEFT_EIO = -2,      /* a file could not be opened, read, mapped or written */
    PEFT_EFORMAT = -3,  /* a file exists but its content breaks its format's rules */
    PEFT_ENOMEM = -4,   /* an allocation failed */
    PEFT_EUNSUPPORTED = -5, /* valid input that this build does not handle */
    PEFT_EMISMATCH = -6,    /* two valid inputs do not fit each other (model vs adapter, ...) */
    PEFT_EINTERNAL = -7,    /* a library call failed in a way that is our bug or the system's */
};

/* Records a printf-style message for `status` and returns `status`, so callers can write
 * `return err_set(...)`. The message should be one line without a trailing newline. */
int err_set(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The last message recorded on this thread ("" if none). Valid until the next err_set(). */
const char *err_msg(void);

/* A short fixed name for a status code ("format error", ...). Never NULL. */
const char *err_strerror(int status);

/* The process exit code main() should use for a status: 0 ok, 2 usage, 1 anything else. */
int err_exit_code(int status);

/* Invariant check for programming errors (not user input): prints file:line and aborts. */
#define PEFT_ASSERT(cond)                                                                     \
    do {                                                                                      \
        if (!(cond)) {                                                                        \
            fprintf(stderr, "peft: internal error at %s:%d: assertion '%s' failed\n",         \
                    __FILE__, __LINE__, #cond);                                               \
            abort();                                                                          \
        }                                                                                     \
    } while (0)

/* Propagates a non-zero status from an expression to the caller. */
#define PEFT_TRY(expr)                \
    do {                              \
        int peft_try_rc_ = (expr);    \
        if (peft_try_rc_ != PEFT_OK)  \
            return peft_try_rc_;      \
    } while (0)

#endif
