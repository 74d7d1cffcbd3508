/*
 * model.h - a Hugging Face causal LM (GPT-2 or Llama family) held in memory: its parameters, their
 * gradients, and the forward/backward pass.
 *
 *     model *m;
 *     if (model_load("path/to/model_dir", GEMM_ONEDNN, &m)) { fprintf(stderr, "%s\n", err_msg()); ... }
 *     model_acts *a;
 *     model_acts_init(m, B, T, 0, 0, &a);          // capacity: B sequences of T positions
 *     model_batch b = {.B = B, .T = T, .tokens = ids, .targets = targets};
 *     double nll; int count;
 *     model_forward(m, a, &b, &nll, &count);        // loss = nll / count
 *     model_backward(m, a, &b, 1.0f / count, NULL, NULL);
 *     model_acts_free(a); model_free(m);
 *
 * Memory: every parameter lives in one fp32 arena (m->weights), carved into the table m->params in
 * Hugging Face state-dict order; trainable parameters get gradients in a second arena (m->grads),
 * all others have grad == NULL and backward skips their weight gradients entirely (activation
 * gradients still flow through every layer). Activations live in one arena per model_acts, sized
 * at init for the largest batch; forward and backward allocate nothing.
 *
 * Extension points used by the PEFT methods: model_batch.virtual_embeds (prompt tuning: rows
 * prepended to every sequence's input embeddings) and model_batch.prefix (prefix tuning: extra
 * key/value positions in every layer, peft's layout). Real tokens' positions start at n_prefix,
 * as Hugging Face numbers them after a cache of that length.
 *
 * Errors: model_load reports a missing tensor, a shape that does not match config.json, or an
 * unsupported dtype as PEFT_EFORMAT naming the file and tensor; model_forward returns PEFT_EUSAGE
 * for a batch over capacity and PEFT_EMISMATCH for a token id outside the vocabulary or (GPT-2)
 * more positions than n_positions.
 */
#ifndef PEFT_MODEL_H
#define PEFT_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "gemm.h"
#include "model/config.h"
#include "model/linear.h"

struct bottleneck; /* a bottleneck adapter (common/peft/bottleneck.h), attached by a PEFT method */

typedef struct block {
    param *ln1_w, *ln1_b, *ln2_w, *ln2_b; /* *_b is NULL for RMSNorm */
    linear qkv;                          /* gpt2: attn.c_attn (fused q|k|v) */
    linear q, k, v;                      /* llama: self_attn.{q,k,v}_proj */
    linear o;                            /* attn.c_proj / self_attn.o_proj */
    linear fc;                           /* mlp.c_fc / mlp.gate_proj */
    linear up;                           /* llama: mlp.up_proj */
    linear down;                         /* mlp.c_proj / mlp.down_proj */
    struct bottleneck *attn_ad;          /* adapter after attention (Houlsby, Bapna) or NULL */
    struct bottleneck *mlp_ad;           /* adapter at the feed-forward block or NULL */
} block;

/* How the frozen base is stored (the --quantize and --bf16 flags). With NF4 or bf16, the weights of
 * every transformer block's linear layers (not the embeddings, norms or lm_head, which bitsandbytes
 * leaves alone) are kept compressed (common/quant/qweight.h) and cannot be trained. */
typedef enum { MODEL_QUANT_NONE = 0, MODEL_QUANT_NF4 = 1 } model_quant;
typedef struct model_opts {
    model_quant quantize; /* NF4: quantised at load as bitsandbytes does (double quantisation) */
    bool bf16;            /* products in bf16 (fp32 accumulation); block weights stored bf16 unless NF4 */
} model_opts;

typedef struct model {
    model_config cfg;
    gemm_backend gemm;
    model_opts opts;
    struct qweight *qweights; /* [nqweights] the compressed block weights (params point here) */
    int nqweights;
    param *params;     /* [nparams], Hugging Face state-dict order */
    int nparams;
    float *weights;    /* arena holding every param's data */
    size_t nweights;
    float *grads;      /* arena for trainable params' gradients, NULL if none */
    size_t ngrads;
    param *wte, *wpe;  /* wpe NULL on llama */
    param *lnf_w, *lnf_b;
    linear head;       /* lm_head; its weight is wte when embeddings are tied */
    block *blocks;     /* [num_layers] */
    struct bottleneck *in_ad, *out_ad; /* io adapters: after the embeddings, before the final norm */
    int grad_floor;    /* backward stops after this layer (0: runs down to the embeddings); a PEFT
                        * method whose lowest trainable tensor sits in layer k sets k */
} model;

/* Loads DIR (config.json + model.safetensors or a sharded index). model_load_with() takes storage
 * options (NULL: fp32). A directory bitsandbytes quantised (the bnb-4bit layout of FORMATS.md §4.4:
 * weight, weight.absmax, weight.quant_map, weight.nested_absmax, weight.nested_quant_map,
 * weight.quant_state.bitsandbytes__nf4) loads those layers as NF4 without re-quantising, whatever
 * opts says; fp4, a quantised tensor outside the blocks' linears, or a quant state that does not
 * fit the layer is PEFT_EUNSUPPORTED / PEFT_EFORMAT naming the file and tensor. */
int model_load(const char *dir, gemm_backend be, model **out);
int model_load_with(const char *dir, gemm_backend be, const model_opts *opts, model **out);
/* A new model with Hugging Face's initialisation (N(0, 0.02), GPT-2's residual projections scaled
 * by 1/sqrt(2L), zero biases, unit norms), deterministic for a seed; with opts, the block weights
 * are compressed from exactly the values the fp32 model would hold. */
int model_init_random(const model_config *cfg, uint64_t seed, gemm_backend be, model **out);
int model_init_random_with(const model_config *cfg, uint64_t seed, gemm_backend be, const model_opts *opts,
                           model **out);
/* Writes DIR/config.json and DIR/model.safetensors (creating DIR). PEFT_EUNSUPPORTED for a model
 * with compressed weights. */
int model_save(const model *m, const char *dir);

/* Converts a loaded or initialised fp32 model's block weights to the storage opts asks for (as
 * model_load_with would have stored them) and releases their fp32 copies. Before any gradients.
 * On failure the model is unusable and must be freed. */
int model_compress(model *m, const model_opts *opts);

/* Resident bytes of the weights: the fp32 arena and the compressed block weights, with the number
 * of parameters each holds. */
typedef struct model_storage {
    size_t f32_params, f32_bytes;
    size_t compressed_params, compressed_bytes;
} model_storage;
void model_storage_stats(const model *m, model_storage *s);
void model_free(model *m);

param *model_find_param(const model *m, const char *name);
/* Allocates gradients for the params `want` selects (all of them when want == NULL) and frees
 * any previous gradients. PEFT_EUNSUPPORTED if it selects a compressed weight. */
int model_set_trainable(model *m, bool (*want)(const param *p, void *ctx), void *ctx);
void model_zero_grad(model *m);

typedef struct model_acts model_acts;

/* Capacity: B sequences of up to T positions (virtual + real tokens) after up to P prefix
 * positions. */
int model_acts_init(const model *m, int B, int T, int P, model_acts **out);
void model_acts_free(model_acts *a);
/* Bytes held by the activations. */
size_t model_acts_bytes(const model_acts *a);
/* For training loops (forward with targets, then backward): the output head runs in blocks of
 * rows, each block's logits turned into d nll / d logits and multiplied back through the head while
 * in cache, so no [N, V] logits are written (the arena's pages for them stay untouched) and the
 * backward pass starts from the head's input gradient. A forward with targets then leaves
 * model_logits() NULL. Used only when the head has no trainable weight, bias or hook (otherwise
 * the unfused path runs). Off by default. */
void model_acts_set_fused_head(model_acts *a, bool on);

typedef struct model_batch {
    int B, T;                    /* B sequences of T real tokens */
    const int *tokens;           /* [B, T] */
    const int *targets;          /* [B, n_virtual + T]: the token each position predicts, < 0 for no
                                  * loss; NULL for inference */
    const float *virtual_embeds; /* [n_virtual, C] or NULL */
    int n_virtual;
    const float *prefix;         /* [n_prefix, L * 2 * KV * hd], rows [K_0|V_0|K_1|V_1|...] or NULL */
    int n_prefix;
} model_batch;

/* Runs the model. With targets, *nll_sum and *count receive the summed next-token loss and the
 * number of positions with a target. Logits stay available through model_logits(). */
int model_forward(model *m, model_acts *a, const model_batch *b, double *nll_sum, int *count);

/* Gradients of loss_scale * nll_sum for the batch the last forward ran: accumulated into every
 * trainable param's grad, into dvirtual [n_virtual, C] and dprefix (prefix's layout) when not
 * NULL. Must follow model_forward on the same batch, at most once. When m->grad_floor > 0 the
 * pass stops after that layer: nothing below it is trainable, and model_dembed() is not computed. */
void model_backward(model *m, model_acts *a, const model_batch *b, float loss_scale, float *dvirtual,
                    float *dprefix);

/* After a forward: logits [B, n_virtual + T, V] (row-major; NULL after a fused forward, see
 * model_acts_set_fused_head), per-position nll [B, n_virtual + T],
 * and d loss / d input embeddings [B, n_virtual + T, C] after a backward. */
const float *model_logits(const model_acts *a);
const float *model_nll(const model_acts *a);
const float *model_dembed(const model_acts *a);
/* Keys and values (post-RoPE) the last forward computed for layer l: rows of B*T, stride *ld. */
void model_layer_kv(const model *m, const model_acts *a, int l, const float **k, const float **v, int *ld);

/* FLOPs of one forward+backward over N tokens with context S (the count docs/BENCHMARKS.md uses):
 * 2*params-in-matmuls*N forward (+ attention 4*N*S*H*hd/2 causal), backward twice the matmul
 * work when every weight gradient is computed, once (activation gradients only) otherwise. */
double model_flops_per_step(const model_config *c, long long ntokens, int seq_len, bool weight_grads);

#endif
