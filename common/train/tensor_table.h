/*
 * tensor_table.h - the trainable tensors of a run, laid out in one flat float buffer.
 *
 * Every PEFT method (and full fine-tuning) registers its tensors here under the exact key names
 * peft or AdapterHub use; the parameters, their gradients and both AdamW moments are flat buffers
 * with this one layout, so the optimizer, the parameter server (which owns contiguous ranges) and
 * the checkpoint store never need to know which method produced them.
 *
 *     tensor_table t = {0};
 *     tt_add(&t, "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", 2, (int64_t[]){8, 576}, true);
 *     ...                       // offsets are assigned in order, each tensor 16-float aligned
 *     float *params = calloc(t.total, sizeof(float));
 *     tt_free(&t);
 *
 * tt_hash() is the fingerprint ranks compare in the handshake; tt_serialize()/tt_deserialize()
 * store the table in checkpoints (magic "PFTT", version 1, little-endian).
 */
#ifndef PEFT_TENSOR_TABLE_H
#define PEFT_TENSOR_TABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TT_NAME_MAX 192
#define TT_MAX_DIMS 4

typedef struct tt_entry {
    char name[TT_NAME_MAX];
    int ndim;
    int64_t shape[TT_MAX_DIMS];
    size_t numel;
    size_t offset;  /* in floats, into the flat buffers */
    bool decay;     /* AdamW weight decay applies (false for biases and norm gains, as HF's Trainer) */
} tt_entry;

typedef struct tensor_table {
    tt_entry *e;
    int n, cap;
    size_t total;   /* floats in a flat buffer, padding included */
} tensor_table;

/* Appends a tensor; PEFT_EUSAGE for a duplicate or too-long name, PEFT_ENOMEM. *index (optional)
 * receives its position. */
int tt_add(tensor_table *t, const char *name, int ndim, const int64_t *shape, bool decay, int *index);
const tt_entry *tt_find(const tensor_table *t, const char *name);
void tt_free(tensor_table *t);
/* Trainable values (padding excluded). */
size_t tt_numel(const tensor_table *t);
/* FNV-1a 64 over names, shapes and offsets. */
uint64_t tt_hash(const tensor_table *t);

/* Serialised form: a malloc'd buffer the caller frees. */
int tt_serialize(const tensor_table *t, uint8_t **buf, size_t *len);
/* Rebuilds a table from tt_serialize's bytes; PEFT_EFORMAT naming `where` on any inconsistency. */
int tt_deserialize(const uint8_t *buf, size_t len, const char *where, tensor_table *out);

#endif
