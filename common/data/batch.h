/*
 * batch.h - dataset records into a model batch: token ids [B, T] and next-token targets [B, T].
 *
 * Records shorter than the batch's longest are right-padded with token 0 and target -1; causal
 * attention keeps padding from influencing real positions. targets[t] = ids[t+1] where the record's
 * mask marks token t+1 as a target, else -1; the last position of a record has no target.
 */
#ifndef PEFT_BATCH_H
#define PEFT_BATCH_H

#include <stdint.h>

#include "data/dataset.h"

typedef struct data_batch {
    int cap_B, cap_T;  /* capacity */
    int B, T;          /* the last fill: sequences and padded length */
    int *tokens;       /* [cap_B * cap_T], row stride T of the last fill */
    int *targets;      /* [cap_B * cap_T] */
    long long n_targets;
    int32_t *rec_ids;  /* scratch [cap_T] */
    uint8_t *rec_mask; /* scratch [cap_T] */
} data_batch;

int data_batch_init(data_batch *b, int cap_B, int cap_T);
void data_batch_free(data_batch *b);

/* Fills the batch with records indices[0..n) of a split (n <= cap_B). PEFT_EMISMATCH naming the
 * dataset when a token id is >= vocab (a dataset prepared for another model). */
int data_batch_fill(data_batch *b, dataset *d, dataset_split split, const uint64_t *indices, int n, int vocab);

#endif
