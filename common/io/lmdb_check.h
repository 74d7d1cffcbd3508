/*
 * lmdb_check.h - the one checking macro for LMDB calls: on a non-zero return it records
 * "<path>: <call> failed: <mdb_strerror>" (naming the function it happened in for internal
 * calls), stores PEFT_EIO in rcvar and jumps to `label`. Full-disk errors (ENOSPC, MDB_MAP_FULL)
 * read the same way to the user as any other; callers that must tell them apart (to grow the
 * map, say) check the LMDB return code themselves.
 */
#ifndef PEFT_LMDB_CHECK_H
#define PEFT_LMDB_CHECK_H

#include <lmdb.h>

#include "error.h"

#define LMDB_CHECK(call, path, rcvar, label)                                                          \
    do {                                                                                              \
        int lmdb_rc_ = (call);                                                                        \
        if (lmdb_rc_ != MDB_SUCCESS) {                                                                \
            (rcvar) = err_set(PEFT_EIO, "%s: %s failed in %s: %s", (path), #call, __func__,           \
                              mdb_strerror(lmdb_rc_));                                                \
            goto label;                                                                               \
        }                                                                                             \
    } while (0)

#endif
