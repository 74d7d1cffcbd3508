/*
 * peft.h - a PEFT method attached to a model: its trainable tensors (one flat buffer, registered
 * under the key names peft or AdapterHub use), their initialisation, and the training-step
 * plumbing around model_forward/model_backward.
 *
 *     peft_config c;  peft_config_defaults(&c, PEFT_LORA);  c.r = 8;  ...
 *     peft_model *p;
 *     peft_model_create(m, &c, tk, &p);          // hooks the model, allocates and initialises
 *     peft_model_reserve(p, B, T);                // scratch for batches up to B x T tokens
 *     model_acts_init(m, B, peft_model_positions(p, T), peft_model_prefix_len(p), &a);
 *     peft_model_zero_grad(p);
 *     peft_model_forward(p, a, tokens, targets, B, T, &nll, &count);
 *     peft_model_backward(p, a, 1.0f / count);   // gradients in peft_model_grads(p)
 *     ...optimizer updates peft_model_params(p) in place: the model reads them directly...
 *     peft_model_free(p);                         // detaches the hooks
 *
 * Methods (DESIGN.md's table; formulas in FORMATS.md §2 and §3.6): full, lora (rsLoRA, dropout,
 * layers_to_transform, bias), dora, ia3, prompt, prefix (direct or through the reparameterising
 * MLP), houlsby, bapna, pfeiffer, parallel, io. Errors (PEFT_EUSAGE naming the flag) come from
 * peft_model_create before any work: an unknown target module (the message lists the model's
 * module names), r <= 0, a layer index out of range, and so on.
 */
#ifndef PEFT_PEFT_H
#define PEFT_PEFT_H

#include <stdbool.h>
#include <stdint.h>

#include "model/model.h"
#include "rng.h"
#include "tokenizer/tokenizer.h"
#include "train/tensor_table.h"

typedef enum {
    PEFT_FULL, PEFT_LORA, PEFT_DORA, PEFT_IA3, PEFT_PROMPT, PEFT_PREFIX,
    PEFT_HOULSBY, PEFT_BAPNA, PEFT_PFEIFFER, PEFT_PARALLEL, PEFT_IO,
    PEFT_METHOD_COUNT
} peft_method;

typedef struct peft_config {
    peft_method method;
    /* lora, dora */
    int r;
    float lora_alpha;
    float lora_dropout;
    bool use_rslora;
    const char *lora_bias;           /* "none" | "lora_only" | "all": base biases that train (peft's bias=) */
    bool lora_b_bias;                /* a trainable lora_B.bias (peft's lora_bias=True) */
    const char *target_modules;      /* comma-separated; NULL: peft's default for the family */
    const char *layers_to_transform; /* comma-separated layer indices; NULL: all */
    const char *feedforward_modules; /* ia3; NULL: the family's default */
    /* prompt, prefix */
    int num_virtual_tokens;
    const char *prompt_init_text;    /* prompt: initialise from these tokens' embeddings */
    bool prefix_projection;
    int encoder_hidden_size;         /* 0: token_dim */
    /* bottleneck adapters */
    float reduction_factor;          /* 0: the method's preset (16, or 2 for parallel) */
    const char *non_linearity;       /* NULL: the method's preset */
    uint64_t seed;
} peft_config;

/* "lora" -> PEFT_LORA ...; PEFT_EUSAGE naming --method with the list otherwise. "qlora" is LoRA
 * over an NF4 base (QLoRA): it parses as PEFT_LORA, and peft_method_is_qlora() tells the caller to
 * load the base with NF4 by default. */
int peft_method_parse(const char *s, peft_method *out);
bool peft_method_is_qlora(const char *s);
const char *peft_method_name(peft_method m);
void peft_config_defaults(peft_config *c, peft_method method);

/* The comma-separated target_modules (feedforward_modules for IA3) a config resolves to: its own,
 * or peft's default for the model family (FORMATS.md §2.2, §2.5). */
const char *peft_config_targets(const peft_config *c, model_arch arch);
const char *peft_config_feedforward(const peft_config *c, model_arch arch);

typedef struct peft_model peft_model;

int peft_model_create(model *m, const peft_config *c, const tokenizer *tk, peft_model **out);
void peft_model_free(peft_model *p);
int peft_model_reserve(peft_model *p, int B, int T);
/* The positions and prefix length model_acts_init needs for T real tokens. */
int peft_model_positions(const peft_model *p, int T);
int peft_model_prefix_len(const peft_model *p);

const tensor_table *peft_model_table(const peft_model *p);
float *peft_model_params(peft_model *p);
float *peft_model_grads(peft_model *p);
void peft_model_zero_grad(peft_model *p);
/* Dropout is active only while training. */
void peft_model_set_training(peft_model *p, bool training);
/* The dropout stream (seeded from the config's seed); checkpoints save and restore it. */
rng_state *peft_model_dropout_rng(peft_model *p);
/* Trainable and total parameter counts, as peft's print_trainable_parameters reports them. */
void peft_model_counts(const peft_model *p, long long *trainable, long long *total);
const peft_config *peft_model_config(const peft_model *p);

/* Runs the model on B sequences of T tokens; targets [B, T] are next-token targets of the real
 * tokens (< 0: no loss), extended here for virtual tokens. */
int peft_model_forward(peft_model *p, model_acts *a, const int *tokens, const int *targets, int B, int T,
                       double *nll, int *count);
/* Gradients of loss_scale * nll into peft_model_grads (accumulating). */
void peft_model_backward(peft_model *p, model_acts *a, float loss_scale);

/* The trained virtual-token embeddings [n, C] (prompt tuning) and prefix key/values [n, L*2*kv]
 * (prefix tuning, through the MLP when projected); NULL and 0 for other methods. For generation. */
const float *peft_model_virtual(peft_model *p, int *n);
const float *peft_model_prefix(peft_model *p, int *n);

/* The tensor exported as peft's "prompt_embeddings" for prefix tuning with projection: the MLP's
 * output [nvt, L*2*kv_dim] for the current parameters. NULL for other methods. */
const float *peft_model_prefix_output(peft_model *p);

#endif
