/*
 * packer.h - documents (token ids with a loss mask) into training sequences of at most seq_len.
 *
 * Packed (the default, as Hugging Face's run_clm groups texts): documents are concatenated, each
 * followed by eos_id when eos_id >= 0 (a target exactly when the document's last token is one),
 * and cut into blocks of exactly seq_len tokens; the final block may be shorter. Unpacked: one sequence per document, truncated to seq_len (the
 * truncation is counted); padding is the batch loader's business, never stored.
 * A document's mask[t] = 1 marks token t as a prediction target.
 */
#ifndef PEFT_PACKER_H
#define PEFT_PACKER_H

#include <stdbool.h>
#include <stdint.h>

#include "data/dataset.h"

typedef struct packer {
    dataset_writer *w;
    dataset_split split;
    int seq_len;
    bool pack;
    int eos_id;           /* appended after each document when >= 0 */
    int32_t *ids;         /* [seq_len] pending block */
    uint8_t *mask;
    int fill;
    uint64_t documents, truncated, dropped_tokens;
} packer;

int packer_init(packer *p, dataset_writer *w, dataset_split split, int seq_len, bool pack, int eos_id);
/* Adds one document; writes every sequence it completes. */
int packer_add(packer *p, const int32_t *ids, const uint8_t *mask, int n);
/* Writes the final partial block (packed mode). */
int packer_flush(packer *p);
void packer_free(packer *p);

#endif
