/*
 * dataset.h - tokenized training data on disk: DATA_DIR/manifest.json, DATA_DIR/shard-NNNNN.lmdb
 * (one LMDB environment per shard) and DATA_DIR/val.lmdb.
 *
 * A record is one training sequence. Key: the sequence's global index as a big-endian u64. Value:
 *
 *     offset  size     field
 *     0       4        magic "PFTS" (0x50 0x46 0x54 0x53)
 *     4       2        record version (1), little-endian
 *     6       2        flags (0)
 *     8       4        n: token count (<= seq_len), little-endian
 *     12      4        loss tokens: how many mask bytes are 1
 *     16      4*n      token ids, u32 little-endian
 *     16+4n   n        mask: 1 where the token is a prediction target (counts in the loss)
 *
 * Training sequence i lives in shard i % num_shards; validation sequences in val.lmdb with their
 * own indices from 0. manifest.json (format "peft-dataset", version 1) records seq_len, packing,
 * the tokenizer's fingerprint, the seed, and per-file sequence and token counts.
 *
 * Writing (peft prep): dataset_writer_open() creates DIR.partial-PID next to DIR; records are
 * appended in order; dataset_writer_finish() writes the manifest, syncs and renames the directory
 * to DIR, so an interrupted prep never leaves something that looks finished. An existing DIR is
 * never touched: PEFT_EUSAGE.
 *
 * Reading (workers, eval): dataset_open() validates the manifest and opens every environment
 * read-only (MDB_RDONLY | MDB_NOLOCK is not used: several readers may share a node). Records are
 * copied straight out of the memory map into the caller's arrays.
 *
 * Sampling: epoch e of the training set is a seeded permutation of [0, N) (a Feistel network with
 * cycle walking: O(1) memory, any position computable directly), and the global sample stream is
 * epoch 0, then epoch 1, ... Global sample g is record dataset_sample(seed, N, g); a step with
 * global batch G uses samples [s*G, (s+1)*G) and worker w of W takes its contiguous slice, so the
 * whole data order is a function of (seed, N, g) alone: a run resumes exactly, on any worker count,
 * from the number of samples consumed.
 */
#ifndef PEFT_DATASET_H
#define PEFT_DATASET_H

#include <stdbool.h>
#include <stdint.h>

#define DATASET_FORMAT "peft-dataset"
#define DATASET_VERSION 1
#define DATASET_RECORD_MAGIC "PFTS"
#define DATASET_RECORD_VERSION 1
#define DATASET_RECORD_HEADER 16

typedef enum { DATASET_TRAIN = 0, DATASET_VAL = 1 } dataset_split;

typedef struct dataset_info {
    int seq_len;
    bool packed;
    int num_shards;
    uint64_t seed;
    char tokenizer_fingerprint[32]; /* "" when prepared from token ids without a tokenizer */
    int vocab_size;                 /* largest id + 1 the tokenizer can produce (0 if unknown) */
    int eos_token_id;               /* -1 if none */
    uint64_t sequences[2];          /* per split */
    uint64_t tokens[2];             /* non-padding tokens per split */
    uint64_t loss_tokens[2];        /* tokens with mask 1 per split */
    uint64_t documents[2];
} dataset_info;

/* ---- writing ---- */
typedef struct dataset_writer dataset_writer;

/* info supplies seq_len, packed, num_shards, seed, tokenizer fields; counts are filled as records
 * are added. */
int dataset_writer_open(const char *dir, const dataset_info *info, dataset_writer **out);
/* Appends one sequence (n <= seq_len tokens) to a split. */
int dataset_writer_add(dataset_writer *w, dataset_split split, const int32_t *ids, const uint8_t *mask, int n);
/* Adds to the document counts recorded in the manifest. */
void dataset_writer_count_documents(dataset_writer *w, dataset_split split, uint64_t n);
/* The counts so far (valid until finish/abort). */
const dataset_info *dataset_writer_info(const dataset_writer *w);
/* Overrides the vocabulary size recorded in the manifest (prep from raw ids learns it at the end). */
void dataset_writer_set_vocab_size(dataset_writer *w, int vocab_size);
/* Commits, writes manifest.json and renames the directory into place. Frees w either way. */
int dataset_writer_finish(dataset_writer *w);
/* Abandons the write and removes the partial directory; frees w. NULL is a no-op. */
void dataset_writer_abort(dataset_writer *w);

/* ---- reading ---- */
typedef struct dataset dataset;

int dataset_open(const char *dir, dataset **out);
void dataset_close(dataset *d);
const dataset_info *dataset_get_info(const dataset *d);
/* Copies record `index` of a split into ids/mask (capacity seq_len); *n gets its length.
 * PEFT_EFORMAT naming the file if the record is missing or malformed. */
int dataset_read(dataset *d, dataset_split split, uint64_t index, int32_t *ids, uint8_t *mask, int *n);

/* Record of global sample g in a training set of n records under seed (see above). */
uint64_t dataset_sample(uint64_t seed, uint64_t n, uint64_t g);

#endif
