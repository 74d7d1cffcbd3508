#include "data/batch.h"

#include <stdlib.h>
#include <string.h>

#include "error.h"

int data_batch_init(data_batch *b, int cap_B, int cap_T) {
    memset(b, 0, sizeof *b);
    b->cap_B = cap_B;
    b->cap_T = cap_T;
    size_t n = (size_t)cap_B * cap_T;
    b->tokens = malloc(n * sizeof *b->tokens);
    b->targets = malloc(n * sizeof *b->targets);
    b->rec_ids = malloc((size_t)cap_T * sizeof *b->rec_ids);
    b->rec_mask = malloc((size_t)cap_T);
    if (!b->tokens || !b->targets || !b->rec_ids || !b->rec_mask) {
        data_batch_free(b);
        return err_set(PEFT_ENOMEM, "out of memory for a batch of %d x %d", cap_B, cap_T);
    }
    return PEFT_OK;
}

void data_batch_free(data_batch *b) {
    free(b->tokens);
    free(b->targets);
    free(b->rec_ids);
    free(b->rec_mask);
    memset(b, 0, sizeof *b);
}

int data_batch_fill(data_batch *b, dataset *d, dataset_split split, const uint64_t *indices, int n, int vocab) {
    PEFT_ASSERT(n > 0 && n <= b->cap_B && dataset_get_info(d)->seq_len <= b->cap_T);
    /* first pass: the longest record sets T */
    int T = 0, len;
    for (int i = 0; i < n; i++) {
        PEFT_TRY(dataset_read(d, split, indices[i], b->rec_ids, b->rec_mask, &len));
        if (len > T) T = len;
    }
    b->B = n;
    b->T = T;
    b->n_targets = 0;
    for (int i = 0; i < n; i++) {
        PEFT_TRY(dataset_read(d, split, indices[i], b->rec_ids, b->rec_mask, &len));
        int *tok = b->tokens + (size_t)i * T, *tgt = b->targets + (size_t)i * T;
        for (int t = 0; t < len; t++) {
            if (b->rec_ids[t] >= vocab)
                return err_set(PEFT_EMISMATCH, "dataset record %llu holds token id %d but the model's vocabulary has "
                               "%d entries (was the dataset prepared with another tokenizer?)",
                               (unsigned long long)indices[i], b->rec_ids[t], vocab);
            tok[t] = b->rec_ids[t];
            tgt[t] = t + 1 < len && b->rec_mask[t + 1] ? b->rec_ids[t + 1] : -1;
            b->n_targets += tgt[t] >= 0;
        }
        for (int t = len; t < T; t++) {
            tok[t] = 0;
            tgt[t] = -1;
        }
    }
    return PEFT_OK;
}
