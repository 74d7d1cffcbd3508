/*
 * tu_model.h - the tiny models that the model-level tests (test_gradcheck_model.c,
 * test_method_init.c, test_method_gradcheck.c) build, and lookups into a model.
 *
 *     model_config cfg;
 *     tu_tiny_config(ARCH_LLAMA, &cfg);      // vocab 37, hidden 16, 2 layers, 4 heads (2 kv)
 *     cfg.qkv_bias = true;                   // the test's own variations
 *     model *m = tu_tiny_model(&cfg, 42, &rng);
 *     ...
 *     model_free(m);
 *
 * Failures fail the current cmocka test.
 */
#ifndef PEFT_TU_MODEL_H
#define PEFT_TU_MODEL_H

#include "model/model.h"
#include "rng.h"

enum { TU_TINY_VOCAB = 37, TU_TINY_HIDDEN = 16, TU_TINY_LAYERS = 2 };

/* config_defaults(arch) with vocab 37, hidden 16, 2 layers, 4 heads, 32 positions; Llama: 2 kv
 * heads, intermediate 24. Not finished: the caller may change more. */
void tu_tiny_config(model_arch arch, model_config *cfg);

/* config_finish(cfg) (cfg is finished in place) and model_init_random(cfg, seed, OpenBLAS), then
 * every weight re-drawn from *rng: matrices N(0, 0.2^2) (unit-scale activations for 16 inputs),
 * norm gains 1 + 0.1 N(0, 1), biases 0.1 N(0, 1). At HF's init (0.02) most gradients are too small
 * for fp32 finite differences to resolve, and the logits are far from order 1. The caller
 * model_frees it. */
model *tu_tiny_model(model_config *cfg, uint64_t seed, rng_state *rng);

/* The linear layer whose module path is `module` ("transformer.h.0.attn.c_attn"); fails the test
 * if there is none. */
const linear *tu_find_linear(const model *m, const char *module);

/* The module path of a peft tensor name "base_model.model.<module><suffix>" into buf (cap bytes);
 * fails the test if name does not have that form or the path does not fit. */
void tu_module_of(const char *name, const char *suffix, char *buf, size_t cap);

#endif
