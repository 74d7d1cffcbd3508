/*
 * generate.h - autoregressive decoding with a key/value cache.
 *
 * The cache is the model's prefix-key/value extension point: after each forward the new
 * positions' (post-RoPE) keys and values are appended to a [positions, L*2*KV*hd] buffer that the
 * next forward reads as its prefix, so decoding runs the same layer code as training.
 * Sampling: temperature 0 is greedy (argmax); otherwise softmax(logits / temperature), optionally
 * restricted to the top_k most likely tokens, drawn from a seeded RNG (same seed, same text).
 */
#ifndef PEFT_GENERATE_H
#define PEFT_GENERATE_H

#include <stdint.h>

#include "model/model.h"

typedef struct gen_options {
    int max_new_tokens;
    float temperature; /* 0: greedy */
    int top_k;         /* 0: no limit */
    uint64_t seed;
    int stop_token;    /* generation ends after emitting it; -1: never */
    /* a trained prompt or prefix (prompt tuning, prefix tuning); NULL/0 for none */
    const float *virtual_embeds;
    int n_virtual;
    const float *prefix;
    int n_prefix;
} gen_options;

/* Writes up to o->max_new_tokens new ids to out (capacity o->max_new_tokens), their count to
 * *n_out. PEFT_EUSAGE for an empty prompt, ids outside the vocabulary, or a GPT-2 prompt plus new
 * tokens longer than n_positions; PEFT_ENOMEM if the cache cannot be allocated. */
int model_generate(model *m, const int *prompt, int n_prompt, const gen_options *o, int *out, int *n_out);

/* Picks the next token from one row of logits (exposed for tests). `work` holds V floats. */
int generate_sample(const float *logits, int V, float temperature, int top_k, float *work, void *rng_state_ptr);

#endif
