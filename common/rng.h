/*
 * rng.h - a small, seedable, portable random number generator (xoshiro256**, seeded through
 * splitmix64). Same seed, same stream on every machine: runs are reproducible. The state is a
 * plain struct so it can be checkpointed byte for byte.
 */
#ifndef PEFT_RNG_H
#define PEFT_RNG_H

#include <stdint.h>

typedef struct rng_state { uint64_t s[4]; } rng_state;

void rng_seed(rng_state *r, uint64_t seed);
uint64_t rng_next(rng_state *r);
/* Uniform in [0, 1) with 24 random bits. */
float rng_uniform(rng_state *r);
/* Standard normal (Box-Muller). */
float rng_normal(rng_state *r);
/* Uniform integer in [0, n), n > 0. */
uint32_t rng_below(rng_state *r, uint32_t n);

#endif
