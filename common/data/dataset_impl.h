/* dataset_impl.h - what dataset_write.c and dataset_read.c share (private to common/data/ and its
 * fuzz target, tests/fuzz/fuzz_dataset.c). */
#ifndef PEFT_DATASET_IMPL_H
#define PEFT_DATASET_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "data/dataset.h"

/* Address space reserved per LMDB environment; files only grow as data is written. */
#define DATASET_MAP_SIZE (64ull << 30)

/* DIR/shard-NNNNN.lmdb for training shard i, DIR/val.lmdb for the validation split. */
void dataset_file_name(char *buf, size_t cap, const char *dir, dataset_split split, int shard);

void dataset_key_encode(uint8_t key[8], uint64_t index);

/* Encodes a record (layout in dataset.h) into buf (DATASET_RECORD_HEADER + 5n bytes); returns its
 * size. */
size_t dataset_record_encode(uint8_t *buf, const int32_t *ids, const uint8_t *mask, int n, uint32_t loss_tokens);

/* Validates a stored record against seq_len and decodes it; PEFT_EFORMAT naming `where`. */
int dataset_record_decode(const uint8_t *buf, size_t len, int seq_len, int32_t *ids, uint8_t *mask, int *n,
                          const char *where, uint64_t index);

/* Validates the text of a manifest.json (text[0, len)) as dataset_open() does, without opening the
 * shards; PEFT_EFORMAT naming `file`. */
int dataset_manifest_parse(const char *file, const char *text, size_t len, dataset_info *out);

#endif
