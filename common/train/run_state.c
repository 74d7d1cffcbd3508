/* run_state.c - encoding of a checkpoint's resumable state (see run_state.h). */
#include "train/run_state.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "error.h"

#define RUN_STATE_HEADER 40

static void put(uint8_t **p, uint64_t v, int bytes) {
    for (int i = 0; i < bytes; i++) *(*p)++ = (uint8_t)(v >> (8 * i));
}

static uint64_t get(const uint8_t **p, int bytes) {
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++) v |= (uint64_t)(*(*p)++) << (8 * i);
    return v;
}

void worker_state_encode(const worker_state *w, uint8_t out[WORKER_STATE_BYTES]) {
    uint8_t *p = out;
    put(&p, w->cursor.seed, 8);
    put(&p, w->cursor.samples, 8);
    for (int i = 0; i < 4; i++) put(&p, w->rng.s[i], 8);
}

int worker_state_decode(const void *buf, size_t len, const char *where, worker_state *out) {
    if (len != WORKER_STATE_BYTES)
        return err_set(PEFT_EFORMAT, "%s: worker state of %zu bytes (expected %d)", where, len, WORKER_STATE_BYTES);
    const uint8_t *p = buf;
    out->cursor.seed = get(&p, 8);
    out->cursor.samples = get(&p, 8);
    for (int i = 0; i < 4; i++) out->rng.s[i] = get(&p, 8);
    return PEFT_OK;
}

int run_state_encode(const run_state *s, uint8_t **buf, size_t *len) {
    size_t n = RUN_STATE_HEADER + (size_t)s->workers * WORKER_STATE_BYTES;
    uint8_t *b = malloc(n), *p = b;
    if (!b) return err_set(PEFT_ENOMEM, "out of memory");
    memcpy(p, "PFRS", 4);
    p += 4;
    put(&p, 1, 4);
    put(&p, (uint64_t)s->taken, 8);
    put(&p, (uint64_t)s->skipped, 8);
    put(&p, (uint64_t)(s->saved_at ? s->saved_at : (int64_t)time(NULL)), 8);
    put(&p, (uint64_t)s->workers, 4);
    put(&p, WORKER_STATE_BYTES, 4);
    if (s->workers) memcpy(p, s->blobs, (size_t)s->workers * WORKER_STATE_BYTES);
    *buf = b;
    *len = n;
    return PEFT_OK;
}

int run_state_decode(const void *buf, size_t len, const char *where, run_state *out) {
    memset(out, 0, sizeof *out);
    const uint8_t *p = buf;
    if (len < RUN_STATE_HEADER || memcmp(p, "PFRS", 4) != 0) return err_set(PEFT_EFORMAT, "%s: not a peft run state", where);
    p += 4;
    uint64_t version = get(&p, 4);
    if (version != 1) return err_set(PEFT_EFORMAT, "%s: run state version %llu (this peft reads 1)", where, (unsigned long long)version);
    int64_t taken = (int64_t)get(&p, 8), skipped = (int64_t)get(&p, 8), saved_at = (int64_t)get(&p, 8);
    uint64_t workers = get(&p, 4), rec = get(&p, 4);
    if (taken < 0 || skipped < 0 || rec != WORKER_STATE_BYTES || workers > RUN_STATE_MAX_WORKERS ||
        len != RUN_STATE_HEADER + workers * WORKER_STATE_BYTES)
        return err_set(PEFT_EFORMAT, "%s: inconsistent run state (%llu workers of %llu bytes in %zu bytes)", where,
                       (unsigned long long)workers, (unsigned long long)rec, len);
    out->taken = taken;
    out->skipped = skipped;
    out->saved_at = saved_at;
    out->workers = (int)workers;
    if (workers) {
        if (!(out->blobs = malloc(workers * WORKER_STATE_BYTES))) return err_set(PEFT_ENOMEM, "out of memory");
        memcpy(out->blobs, p, workers * WORKER_STATE_BYTES);
    }
    return PEFT_OK;
}

void run_state_free(run_state *s) {
    free(s->blobs);
    memset(s, 0, sizeof *s);
}
