/*
 * run_state.h - the resumable state a checkpoint keeps beside the parameters and AdamW moments
 * (ckpt_data.state): optimizer steps taken and skipped (the learning-rate schedule position and
 * AdamW's bias correction) and each worker's own state (its data cursor and dropout RNG).
 *
 * Byte layout, little-endian: "PFRS", u32 version (1), u64 taken, u64 skipped, i64 saved_at (Unix
 * seconds), u32 workers W,
 * u32 WORKER_STATE_BYTES, then W worker records of WORKER_STATE_BYTES: u64 data seed, u64 samples
 * consumed (the global cursor, sampler.h), 4 x u64 xoshiro256** state (rng.h).
 */
#ifndef PEFT_RUN_STATE_H
#define PEFT_RUN_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "data/sampler.h"
#include "rng.h"

#define WORKER_STATE_BYTES 48
#define RUN_STATE_MAX_WORKERS 65536

typedef struct worker_state {
    data_cursor cursor;
    rng_state rng;
} worker_state;

void worker_state_encode(const worker_state *w, uint8_t out[WORKER_STATE_BYTES]);
/* PEFT_EFORMAT naming `where` unless len == WORKER_STATE_BYTES. */
int worker_state_decode(const void *buf, size_t len, const char *where, worker_state *out);

typedef struct run_state {
    int64_t taken, skipped;
    int64_t saved_at;  /* Unix time the checkpoint was written (run_state_encode fills it when 0) */
    int workers;
    uint8_t *blobs; /* workers x WORKER_STATE_BYTES, owned (run_state_free) */
} run_state;

/* A malloc'd encoding of s into *buf. PEFT_ENOMEM. */
int run_state_encode(const run_state *s, uint8_t **buf, size_t *len);
/* PEFT_EFORMAT naming `where` for anything that does not follow the layout; PEFT_ENOMEM. */
int run_state_decode(const void *buf, size_t len, const char *where, run_state *out);
void run_state_free(run_state *s);

#endif
