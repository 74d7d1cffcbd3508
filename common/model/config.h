/*
 * config.h - the architecture of a Hugging Face causal language model (config.json).
 *
 * Two families are understood:
 *   gpt2  (model_type "gpt2"): learned positions, LayerNorm, GELU, fused c_attn, Conv1D weights
 *         stored [in, out], q/k/v/o and MLP biases, head tied to wte;
 *   llama (model_type "llama", "mistral", "qwen2"; SmolLM and TinyLlama are "llama"): RMSNorm,
 *         RoPE (rotate-half), SwiGLU, grouped-query attention, optional q/k/v/o and MLP biases
 *         (qwen2: q/k/v biases always), optional tied embeddings, optional rope_scaling of type
 *         "llama3" or "linear".
 * Every size is derived once here (head_dim, kv heads, intermediate size) so the model code
 * never looks at the JSON again.
 *
 * config_load() reports a missing or ill-typed required key, an unknown model_type or an
 * unsupported rope_scaling as PEFT_EFORMAT / PEFT_EUNSUPPORTED naming the file and the key.
 */
#ifndef PEFT_CONFIG_H
#define PEFT_CONFIG_H

#include <stdbool.h>

#include <cjson/cJSON.h>

typedef enum { ARCH_GPT2, ARCH_LLAMA } model_arch;
typedef enum { ACT_GELU_TANH, ACT_GELU_ERF, ACT_SILU } model_act;
typedef enum { ROPE_SCALING_NONE, ROPE_SCALING_LINEAR, ROPE_SCALING_LLAMA3 } rope_scaling_type;

typedef struct model_config {
    model_arch arch;
    char model_type[32];          /* as in config.json: "gpt2", "llama", "mistral", "qwen2" */
    int vocab_size;
    int hidden_size;              /* C */
    int num_layers;               /* L */
    int num_heads;                /* H */
    int num_kv_heads;             /* KV (== H without grouped-query attention) */
    int head_dim;                 /* hd; H*hd may differ from C on llama */
    int intermediate_size;        /* I */
    int max_positions;
    double norm_eps;
    model_act act;
    bool tie_word_embeddings;
    bool qkv_bias, o_bias, mlp_bias;
    double rope_theta;
    rope_scaling_type rope_scaling;
    double rope_factor, rope_low_freq_factor, rope_high_freq_factor;
    int rope_original_max_positions;
    int bos_token_id, eos_token_id; /* -1 when absent */
} model_config;

/* Reads DIR/config.json (or a path to a .json file). */
int config_load(const char *path, model_config *out);
/* The same from a parsed config.json; `file` names it in messages. */
int config_from_json(const cJSON *root, const char *file, model_config *out);

/* Fills defaults for a new model of `arch` (the sizes of the HF classes' defaults, scaled down);
 * callers override sizes then call config_finish(). */
void config_defaults(model_arch arch, model_config *out);

/* Upper bounds config_finish() enforces (PEFT_EUNSUPPORTED past them): far above real models,
 * and low enough that no product of sizes overflows. */
#define CONFIG_MAX_VOCAB (1 << 24)
#define CONFIG_MAX_HIDDEN (1 << 16)
#define CONFIG_MAX_LAYERS 1024
#define CONFIG_MAX_HEADS 1024
#define CONFIG_MAX_HEAD_DIM 4096
#define CONFIG_MAX_INTERMEDIATE (1 << 20)
#define CONFIG_MAX_POSITIONS (1 << 24)

/* Derives dependent sizes and checks the numbers make sense (positive sizes within the maxima
 * above, H divisible by KV, C divisible by H for gpt2). `what` names the source in messages (a
 * path or "--flags"). */
int config_finish(model_config *c, const char *what);

/* Writes config.json into dir exactly as transformers' save_pretrained would for this class. */
int config_save(const model_config *c, const char *dir);

/* Parameter count of the base model (tied embeddings counted once). */
long long config_num_params(const model_config *c);

/* "GPT2LMHeadModel", "LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM". */
const char *config_class_name(const model_config *c);

#endif
