/*
 * checkpoint.h - the checkpoint store RUN_DIR/checkpoints.lmdb.
 *
 * One checkpoint is one LMDB write transaction holding everything a run needs to resume: the run
 * config, the trainable tensor table, the flat parameters, both AdamW moments, the step and the
 * trainer's opaque state (learning-rate schedule position, every worker's data cursor and RNG
 * state). A crash at any point leaves the previous checkpoint whole; --save-total-limit prunes in
 * the same transaction.
 *
 *     ckpt_data c = {.step = 500, .config_json = cfg, .table = &table, .params = params,
 *                    .adam_m = m, .adam_v = v, .state = st, .state_len = st_len};
 *     PEFT_TRY(ckpt_save(run_dir, &c, 3));          // keeps the 3 newest steps
 *     ...
 *     ckpt_loaded r;
 *     PEFT_TRY(ckpt_load(run_dir, -1, &r));         // the checkpoint saved last
 *     memcpy(params, r.params, r.table.total * sizeof(float));
 *     ckpt_loaded_free(&r);
 *
 * Each call opens the store, does its work in one transaction and closes it: no handle stays open
 * between calls. Processes may save and load concurrently (LMDB's lock file serialises writers;
 * readers see the last committed checkpoint). Within one process, do not call these functions for
 * the same run dir from two threads at once (LMDB forbids opening one environment twice in a
 * process), and a forked child must not inherit a call in progress.
 *
 * File layout (LMDB, MDB_NOSUBDIR: checkpoints.lmdb plus checkpoints.lmdb-lock; one unnamed
 * database; keys are ASCII and sort bytewise, so steps sort numerically):
 *
 *     key                                   value after the header
 *     ckpt/<step>/config                    the run config, UTF-8 JSON without a terminating NUL
 *     ckpt/<step>/tensors                   tt_serialize() of the tensor table ("PFTT", version 1)
 *     ckpt/<step>/params                    table.total fp32, little-endian (padding included)
 *     ckpt/<step>/adam_m                    same length as params; absent if not saved
 *     ckpt/<step>/adam_v                    same length as params; absent if not saved
 *     ckpt/<step>/state                     the trainer's opaque state bytes (may be empty)
 *     latest                                u64 little-endian: the step saved most recently
 *
 * <step> is the step as 20-digit zero-padded decimal ("ckpt/00000000000000000500/params"). Every
 * value starts with an 8-byte header: the magic "PFTC", a u16 format version (1) and a u16 field
 * id (1 config, 2 tensors, 3 params, 4 adam_m, 5 adam_v, 6 state, 7 latest), both little-endian.
 * Readers reject any key outside this scheme, any header that does not match its key, and any
 * length that disagrees with the tensor table.
 */
#ifndef PEFT_CHECKPOINT_H
#define PEFT_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "train/tensor_table.h"

#define CKPT_FILE_NAME "checkpoints.lmdb"
#define CKPT_VERSION 1

/* What ckpt_save() writes. Nothing is retained after the call. params, adam_m and adam_v hold
 * table->total floats each; adam_m or adam_v NULL means "not stored". state may be NULL when
 * state_len is 0. config_json is a NUL-terminated string. */
typedef struct ckpt_data {
    int64_t step;                /* >= 0 */
    const char *config_json;
    const tensor_table *table;
    const float *params;         /* [table->total] */
    const float *adam_m;         /* [table->total] or NULL */
    const float *adam_v;         /* [table->total] or NULL */
    const void *state;           /* [state_len] opaque trainer state */
    size_t state_len;
} ckpt_data;

/* Writes checkpoint c->step into run_dir/checkpoints.lmdb in one write transaction, creating the
 * file (and its -lock file) if absent. An existing checkpoint for the same step is replaced as a
 * whole. The "latest" record is set to c->step. When save_total_limit > 0, the same transaction
 * deletes the lowest-numbered steps until at most save_total_limit remain; the step just written
 * is never among them. save_total_limit 0 keeps every step.
 * The map grows as needed. Errors (nothing changes in the store on any of them):
 *   PEFT_EUSAGE  run_dir is not a directory, c->step < 0 or save_total_limit < 0;
 *   PEFT_EIO     an LMDB call or a write failed (full disk, ...), naming the file;
 *   PEFT_EFORMAT pruning found a key that does not belong to the layout;
 *   PEFT_ENOMEM. */
int ckpt_save(const char *run_dir, const ckpt_data *c, int save_total_limit);

/* The steps in the store, ascending, in a malloc'd array the caller frees with free() (NULL when
 * *n is 0). A run dir without checkpoints.lmdb has no steps (PEFT_OK, *n = 0).
 * PEFT_EUSAGE if run_dir is not a directory, PEFT_EIO, PEFT_EFORMAT for a key that does not belong
 * to the layout, PEFT_ENOMEM. On error *steps is NULL and *n is 0. */
int ckpt_list(const char *run_dir, int64_t **steps, int *n);

/* A checkpoint copied out of the store; every pointer is owned by the struct and released by
 * ckpt_loaded_free(). adam_m and adam_v are NULL when they were not saved; state is NULL when
 * state_len is 0. params, adam_m and adam_v hold table.total floats. */
typedef struct ckpt_loaded {
    int64_t step;
    char *config_json;           /* NUL-terminated */
    tensor_table table;
    float *params, *adam_m, *adam_v;
    void *state;
    size_t state_len;
} ckpt_loaded;

/* Loads checkpoint `step` (-1: the one saved most recently) into *out after checking every record
 * of it. Errors (with *out zeroed, nothing to free):
 *   PEFT_EUSAGE   run_dir is not a directory, it holds no checkpoints, or `step` does not exist
 *                 (the message lists the available steps);
 *   PEFT_EFORMAT  a record is malformed, missing or inconsistent, naming the file, step and record;
 *   PEFT_EIO, PEFT_ENOMEM. */
int ckpt_load(const char *run_dir, int64_t step, ckpt_loaded *out);

/* Frees everything in *c and zeroes it. NULL is a no-op. */
void ckpt_loaded_free(ckpt_loaded *c);

/* One key/value pair as the store holds it (layout above). */
typedef struct ckpt_record {
    const void *key;
    size_t key_len;
    const void *value;
    size_t value_len;
} ckpt_record;

/* Decodes the checkpoint that the "latest" record among recs[0, n) names, with the same record
 * checks as ckpt_load(); every key must belong to the layout, and none may appear twice. For the
 * fuzz target (tests/fuzz/fuzz_checkpoint.c) and tests: the store itself is LMDB's to check.
 * PEFT_EFORMAT naming `path` (*out zeroed, nothing to free), PEFT_ENOMEM. */
int ckpt_decode_records(const char *path, const ckpt_record *recs, size_t n, ckpt_loaded *out);

#endif
