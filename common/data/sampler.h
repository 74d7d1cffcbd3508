/*
 * sampler.h - which records a worker trains on, as a function of a tiny serialisable cursor.
 *
 * The data order is global (dataset.h, dataset_sample): sample g of the run is training record
 * dataset_sample(seed, N, g). A step consumes the next G samples (G = the global batch); worker w
 * of W takes the contiguous slice [G*w/W, G*(w+1)/W) of them. The cursor is just (seed, samples
 * consumed), so a run resumes exactly, and on another worker count continues the same order.
 */
#ifndef PEFT_SAMPLER_H
#define PEFT_SAMPLER_H

#include <stdint.h>

typedef struct data_cursor {
    uint64_t seed;
    uint64_t samples; /* global samples consumed so far */
} data_cursor;

/* Worker w's slice of the next step: global sample indices [*first, *first + *count). */
void sampler_worker_range(const data_cursor *c, int global_batch, int w, int W, uint64_t *first, int *count);

/* Records of the slice into out[count] for a training set of n records. */
void sampler_records(const data_cursor *c, uint64_t n, uint64_t first, int count, uint64_t *out);

/* Marks one step of the global batch as consumed. */
void sampler_advance(data_cursor *c, int global_batch);

/* The epoch (0-based, fractional) the cursor has reached on n records. */
double sampler_epoch(const data_cursor *c, uint64_t n);

#endif
