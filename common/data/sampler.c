#include "data/sampler.h"

#include "data/dataset.h"
#include "error.h"

void sampler_worker_range(const data_cursor *c, int global_batch, int w, int W, uint64_t *first, int *count) {
    PEFT_ASSERT(W > 0 && w >= 0 && w < W && global_batch > 0);
    const uint64_t lo = (uint64_t)global_batch * (uint64_t)w / (uint64_t)W;
    const uint64_t hi = (uint64_t)global_batch * (uint64_t)(w + 1) / (uint64_t)W;
    *first = c->samples + lo;
    *count = (int)(hi - lo);
}

void sampler_records(const data_cursor *c, uint64_t n, uint64_t first, int count, uint64_t *out) {
    for (int i = 0; i < count; i++) out[i] = dataset_sample(c->seed, n, first + (uint64_t)i);
}

void sampler_advance(data_cursor *c, int global_batch) { c->samples += (uint64_t)global_batch; }

double sampler_epoch(const data_cursor *c, uint64_t n) { return n ? (double)c->samples / (double)n : 0.0; }
