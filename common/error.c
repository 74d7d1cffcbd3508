#include "error.h"

#include <stdarg.h>

static _Thread_local char err_buf[1024];

int err_set(int status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err_buf, sizeof err_buf, fmt, ap);
    va_end(ap);
    return status;
}

const char *err_msg(void) { return err_buf; }

const char *err_strerror(int status) {
    switch (status) {
    case PEFT_OK: return "ok";
    case PEFT_EUSAGE: return "usage error";
    case PEFT_EIO: return "i/o error";
    case PEFT_EFORMAT: return "format error";
    case PEFT_ENOMEM: return "out of memory";
    case PEFT_EUNSUPPORTED: return "unsupported";
    case PEFT_EMISMATCH: return "mismatch";
    case PEFT_EINTERNAL: return "internal error";
    default: return "unknown error";
    }
}

int err_exit_code(int status) {
    if (status == PEFT_OK) return 0;
    return status == PEFT_EUSAGE ? 2 : 1;
}
