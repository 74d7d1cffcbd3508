#include "model/config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "io/file.h"
#include "io/json.h"

static int parse_rope_scaling(const cJSON *root, const char *file, model_config *c) {
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(root, "rope_scaling");
    if (!rs || cJSON_IsNull(rs)) return PEFT_OK;
    if (!cJSON_IsObject(rs)) return err_set(PEFT_EFORMAT, "%s: key 'rope_scaling' must be an object or null", file);
    const char *type = NULL;
    PEFT_TRY(json_get_string_opt(rs, "rope_type", file, &type));
    if (!type) PEFT_TRY(json_get_string_opt(rs, "type", file, &type));
    if (!type) return err_set(PEFT_EFORMAT, "%s: 'rope_scaling' has no 'rope_type'", file);
    if (!strcmp(type, "default")) return PEFT_OK;
    PEFT_TRY(json_get_double_req(rs, "factor", file, &c->rope_factor));
    if (!(c->rope_factor > 0)) return err_set(PEFT_EFORMAT, "%s: rope_scaling 'factor' must be positive", file);
    if (!strcmp(type, "linear")) {
        c->rope_scaling = ROPE_SCALING_LINEAR;
        return PEFT_OK;
    }
    if (strcmp(type, "llama3") != 0)
        return err_set(PEFT_EUNSUPPORTED, "%s: rope_scaling type '%s' is not supported (supported: llama3, linear)",
                       file, type);
    c->rope_scaling = ROPE_SCALING_LLAMA3;
    PEFT_TRY(json_get_double_req(rs, "low_freq_factor", file, &c->rope_low_freq_factor));
    PEFT_TRY(json_get_double_req(rs, "high_freq_factor", file, &c->rope_high_freq_factor));
    PEFT_TRY(json_get_int_req(rs, "original_max_position_embeddings", file, &c->rope_original_max_positions));
    if (!(c->rope_high_freq_factor > c->rope_low_freq_factor) || c->rope_original_max_positions <= 0)
        return err_set(PEFT_EFORMAT, "%s: rope_scaling needs high_freq_factor > low_freq_factor and a positive "
                       "original_max_position_embeddings", file);
    return PEFT_OK;
}

static int parse_gpt2(const cJSON *root, const char *file, model_config *c) {
    PEFT_TRY(json_get_int_req(root, "vocab_size", file, &c->vocab_size));
    PEFT_TRY(json_get_int_req(root, "n_embd", file, &c->hidden_size));
    PEFT_TRY(json_get_int_req(root, "n_layer", file, &c->num_layers));
    PEFT_TRY(json_get_int_req(root, "n_head", file, &c->num_heads));
    PEFT_TRY(json_get_int_req(root, "n_positions", file, &c->max_positions));
    c->intermediate_size = 0; /* config_finish: 4 * n_embd */
    PEFT_TRY(json_get_int_opt(root, "n_inner", file, &c->intermediate_size));
    c->norm_eps = 1e-5;
    PEFT_TRY(json_get_double_opt(root, "layer_norm_epsilon", file, &c->norm_eps));
    const char *act = "gelu_new";
    PEFT_TRY(json_get_string_opt(root, "activation_function", file, &act));
    if (!strcmp(act, "gelu_new") || !strcmp(act, "gelu_pytorch_tanh")) c->act = ACT_GELU_TANH;
    else if (!strcmp(act, "gelu")) c->act = ACT_GELU_ERF;
    else return err_set(PEFT_EUNSUPPORTED, "%s: activation_function '%s' is not supported (gelu_new, gelu)", file, act);
    bool flag = false;
    PEFT_TRY(json_get_bool_opt(root, "scale_attn_by_inverse_layer_idx", file, &flag));
    if (flag) return err_set(PEFT_EUNSUPPORTED, "%s: scale_attn_by_inverse_layer_idx=true is not supported", file);
    flag = true;
    PEFT_TRY(json_get_bool_opt(root, "scale_attn_weights", file, &flag));
    if (!flag) return err_set(PEFT_EUNSUPPORTED, "%s: scale_attn_weights=false is not supported", file);
    c->num_kv_heads = c->num_heads;
    c->qkv_bias = c->o_bias = c->mlp_bias = true;
    c->tie_word_embeddings = true;
    PEFT_TRY(json_get_bool_opt(root, "tie_word_embeddings", file, &c->tie_word_embeddings));
    return PEFT_OK;
}

static int parse_llama(const cJSON *root, const char *file, model_config *c) {
    PEFT_TRY(json_get_int_req(root, "vocab_size", file, &c->vocab_size));
    PEFT_TRY(json_get_int_req(root, "hidden_size", file, &c->hidden_size));
    PEFT_TRY(json_get_int_req(root, "num_hidden_layers", file, &c->num_layers));
    PEFT_TRY(json_get_int_req(root, "num_attention_heads", file, &c->num_heads));
    PEFT_TRY(json_get_int_req(root, "intermediate_size", file, &c->intermediate_size));
    PEFT_TRY(json_get_int_req(root, "max_position_embeddings", file, &c->max_positions));
    c->num_kv_heads = c->num_heads;
    PEFT_TRY(json_get_int_opt(root, "num_key_value_heads", file, &c->num_kv_heads));
    c->head_dim = 0;
    PEFT_TRY(json_get_int_opt(root, "head_dim", file, &c->head_dim));
    c->norm_eps = 1e-6;
    PEFT_TRY(json_get_double_opt(root, "rms_norm_eps", file, &c->norm_eps));
    c->rope_theta = 10000.0;
    PEFT_TRY(json_get_double_opt(root, "rope_theta", file, &c->rope_theta));
    const char *act = "silu";
    PEFT_TRY(json_get_string_opt(root, "hidden_act", file, &act));
    if (strcmp(act, "silu") != 0)
        return err_set(PEFT_EUNSUPPORTED, "%s: hidden_act '%s' is not supported (silu)", file, act);
    c->act = ACT_SILU;
    bool attention_bias = false;
    PEFT_TRY(json_get_bool_opt(root, "attention_bias", file, &attention_bias));
    c->qkv_bias = attention_bias || !strcmp(c->model_type, "qwen2");
    c->o_bias = attention_bias;
    PEFT_TRY(json_get_bool_opt(root, "mlp_bias", file, &c->mlp_bias));
    c->tie_word_embeddings = false;
    PEFT_TRY(json_get_bool_opt(root, "tie_word_embeddings", file, &c->tie_word_embeddings));
    return parse_rope_scaling(root, file, c);
}

int config_load(const char *path, model_config *out) {
    char file[4096];
    if (file_is_dir(path)) PEFT_TRY(file_join(file, sizeof file, path, "config.json"));
    else snprintf(file, sizeof file, "%s", path);
    cJSON *root;
    PEFT_TRY(json_load_file(file, &root));
    int rc = config_from_json(root, file, out);
    cJSON_Delete(root);
    return rc;
}

int config_from_json(const cJSON *root, const char *file, model_config *out) {
    model_config c;
    memset(&c, 0, sizeof c);
    c.bos_token_id = c.eos_token_id = -1;
    const char *type;
    int rc = json_get_string_req(root, "model_type", file, &type);
    if (rc) goto out;
    snprintf(c.model_type, sizeof c.model_type, "%s", type);
    if (!strcmp(type, "gpt2")) {
        c.arch = ARCH_GPT2;
        rc = parse_gpt2(root, file, &c);
    } else if (!strcmp(type, "llama") || !strcmp(type, "mistral") || !strcmp(type, "qwen2")) {
        c.arch = ARCH_LLAMA;
        rc = parse_llama(root, file, &c);
    } else {
        rc = err_set(PEFT_EUNSUPPORTED, "%s: model_type '%s' is not supported (expected gpt2, llama, mistral or qwen2)",
                     file, type);
    }
    if (rc) goto out;
    if ((rc = json_get_int_opt(root, "bos_token_id", file, &c.bos_token_id))) goto out;
    if ((rc = json_get_int_opt(root, "eos_token_id", file, &c.eos_token_id))) {
        /* Llama 3 lists several eos ids; the first is the one generation stops on by default. */
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(root, "eos_token_id");
        if (!cJSON_IsArray(e) || !cJSON_IsNumber(cJSON_GetArrayItem(e, 0))) goto out;
        c.eos_token_id = cJSON_GetArrayItem(e, 0)->valueint;
        rc = PEFT_OK;
    }
    rc = config_finish(&c, file);
    if (rc == PEFT_OK) *out = c;
out:
    return rc;
}

void config_defaults(model_arch arch, model_config *c) {
    memset(c, 0, sizeof *c);
    c->arch = arch;
    c->bos_token_id = c->eos_token_id = -1;
    if (arch == ARCH_GPT2) {
        snprintf(c->model_type, sizeof c->model_type, "gpt2");
        c->vocab_size = 50257;
        c->hidden_size = 768;
        c->num_layers = 12;
        c->num_heads = 12;
        c->max_positions = 1024;
        c->norm_eps = 1e-5;
        c->act = ACT_GELU_TANH;
        c->qkv_bias = c->o_bias = c->mlp_bias = true;
        c->tie_word_embeddings = true;
        c->bos_token_id = c->eos_token_id = 50256;
    } else {
        /* SmolLM-135M's shape: the Llama benchmark shape of DESIGN.md. */
        snprintf(c->model_type, sizeof c->model_type, "llama");
        c->vocab_size = 49152;
        c->hidden_size = 576;
        c->num_layers = 30;
        c->num_heads = 9;
        c->num_kv_heads = 3;
        c->intermediate_size = 1536;
        c->max_positions = 2048;
        c->norm_eps = 1e-5;
        c->act = ACT_SILU;
        c->rope_theta = 10000.0;
        c->tie_word_embeddings = true;
        c->bos_token_id = 1;
        c->eos_token_id = 2;
    }
}

int config_finish(model_config *c, const char *what) {
    if (c->vocab_size <= 0 || c->hidden_size <= 0 || c->num_layers <= 0 || c->num_heads <= 0 ||
        c->max_positions <= 0)
        return err_set(PEFT_EFORMAT, "%s: vocab size, hidden size, layers, heads and positions must be positive", what);
    /* far above any real model, low enough that no size product overflows */
    const struct { const char *name; int value, max; } limits[] = {
        {"vocab size", c->vocab_size, CONFIG_MAX_VOCAB},          {"hidden size", c->hidden_size, CONFIG_MAX_HIDDEN},
        {"layers", c->num_layers, CONFIG_MAX_LAYERS},             {"attention heads", c->num_heads, CONFIG_MAX_HEADS},
        {"key/value heads", c->num_kv_heads, CONFIG_MAX_HEADS},   {"head_dim", c->head_dim, CONFIG_MAX_HEAD_DIM},
        {"intermediate size", c->intermediate_size, CONFIG_MAX_INTERMEDIATE},
        {"positions", c->max_positions, CONFIG_MAX_POSITIONS}};
    for (size_t i = 0; i < sizeof limits / sizeof *limits; i++)
        if (limits[i].value > limits[i].max)
            return err_set(PEFT_EUNSUPPORTED, "%s: %s %d is over the supported maximum %d", what, limits[i].name,
                           limits[i].value, limits[i].max);
    if (c->arch == ARCH_GPT2) {
        c->num_kv_heads = c->num_heads;
        if (c->hidden_size % c->num_heads)
            return err_set(PEFT_EFORMAT, "%s: hidden size %d is not divisible by %d heads", what, c->hidden_size,
                           c->num_heads);
        c->head_dim = c->hidden_size / c->num_heads;
        if (c->intermediate_size <= 0) c->intermediate_size = 4 * c->hidden_size;
    } else {
        if (c->num_kv_heads <= 0) c->num_kv_heads = c->num_heads;
        if (c->num_heads % c->num_kv_heads)
            return err_set(PEFT_EFORMAT, "%s: %d attention heads are not divisible by %d key/value heads", what,
                           c->num_heads, c->num_kv_heads);
        if (c->head_dim <= 0) {
            if (c->hidden_size % c->num_heads)
                return err_set(PEFT_EFORMAT, "%s: hidden size %d is not divisible by %d heads", what, c->hidden_size,
                               c->num_heads);
            c->head_dim = c->hidden_size / c->num_heads;
        }
        if (c->head_dim % 2) return err_set(PEFT_EFORMAT, "%s: head_dim %d must be even for RoPE", what, c->head_dim);
        if (c->intermediate_size <= 0) return err_set(PEFT_EFORMAT, "%s: intermediate_size must be positive", what);
        if (!(c->rope_theta > 0)) return err_set(PEFT_EFORMAT, "%s: rope_theta must be positive", what);
    }
    if (!(c->norm_eps > 0)) return err_set(PEFT_EFORMAT, "%s: the norm epsilon must be positive", what);
    return PEFT_OK;
}

long long config_num_params(const model_config *c) {
    long long C = c->hidden_size, V = c->vocab_size, I = c->intermediate_size, L = c->num_layers;
    long long q = (long long)c->num_heads * c->head_dim, kv = (long long)c->num_kv_heads * c->head_dim;
    long long n = V * C, layer;
    if (c->arch == ARCH_GPT2) {
        n += (long long)c->max_positions * C + 2 * C;        /* wpe, ln_f */
        layer = 4 * C + (C * 3 * C + 3 * C) + (C * C + C) + (C * I + I) + (I * C + C);
    } else {
        n += C;                                                /* model.norm */
        layer = 2 * C + C * (q + 2 * kv) + q * C + 3 * C * I;
        if (c->qkv_bias) layer += q + 2 * kv;
        if (c->o_bias) layer += C;
        if (c->mlp_bias) layer += 2 * I + C;
    }
    if (!c->tie_word_embeddings) n += V * C;
    return n + L * layer;
}

const char *config_class_name(const model_config *c) {
    if (c->arch == ARCH_GPT2) return "GPT2LMHeadModel";
    if (!strcmp(c->model_type, "mistral")) return "MistralForCausalLM";
    if (!strcmp(c->model_type, "qwen2")) return "Qwen2ForCausalLM";
    return "LlamaForCausalLM";
}

static void add_gpt2_keys(cJSON *o, const model_config *c) {
    cJSON_AddStringToObject(o, "activation_function", c->act == ACT_GELU_ERF ? "gelu" : "gelu_new");
    cJSON_AddNumberToObject(o, "attn_pdrop", 0.1);
    cJSON_AddNumberToObject(o, "embd_pdrop", 0.1);
    cJSON_AddNumberToObject(o, "layer_norm_epsilon", c->norm_eps);
    cJSON_AddNumberToObject(o, "n_embd", c->hidden_size);
    cJSON_AddNumberToObject(o, "n_head", c->num_heads);
    if (c->intermediate_size == 4 * c->hidden_size) cJSON_AddNullToObject(o, "n_inner");
    else cJSON_AddNumberToObject(o, "n_inner", c->intermediate_size);
    cJSON_AddNumberToObject(o, "n_layer", c->num_layers);
    cJSON_AddNumberToObject(o, "n_positions", c->max_positions);
    cJSON_AddFalseToObject(o, "reorder_and_upcast_attn");
    cJSON_AddNumberToObject(o, "resid_pdrop", 0.1);
    cJSON_AddFalseToObject(o, "scale_attn_by_inverse_layer_idx");
    cJSON_AddTrueToObject(o, "scale_attn_weights");
}

static void add_llama_keys(cJSON *o, const model_config *c) {
    cJSON_AddBoolToObject(o, "attention_bias", c->o_bias);
    cJSON_AddNumberToObject(o, "attention_dropout", 0.0);
    cJSON_AddNumberToObject(o, "head_dim", c->head_dim);
    cJSON_AddStringToObject(o, "hidden_act", "silu");
    cJSON_AddNumberToObject(o, "hidden_size", c->hidden_size);
    cJSON_AddNumberToObject(o, "intermediate_size", c->intermediate_size);
    cJSON_AddNumberToObject(o, "max_position_embeddings", c->max_positions);
    cJSON_AddBoolToObject(o, "mlp_bias", c->mlp_bias);
    cJSON_AddNumberToObject(o, "num_attention_heads", c->num_heads);
    cJSON_AddNumberToObject(o, "num_hidden_layers", c->num_layers);
    cJSON_AddNumberToObject(o, "num_key_value_heads", c->num_kv_heads);
    cJSON_AddNumberToObject(o, "pretraining_tp", 1);
    cJSON_AddNumberToObject(o, "rms_norm_eps", c->norm_eps);
    if (c->rope_scaling == ROPE_SCALING_NONE) {
        cJSON_AddNullToObject(o, "rope_scaling");
    } else {
        cJSON *rs = cJSON_AddObjectToObject(o, "rope_scaling");
        cJSON_AddNumberToObject(rs, "factor", c->rope_factor);
        if (c->rope_scaling == ROPE_SCALING_LLAMA3) {
            cJSON_AddNumberToObject(rs, "high_freq_factor", c->rope_high_freq_factor);
            cJSON_AddNumberToObject(rs, "low_freq_factor", c->rope_low_freq_factor);
            cJSON_AddNumberToObject(rs, "original_max_position_embeddings", c->rope_original_max_positions);
        }
        cJSON_AddStringToObject(rs, "rope_type", c->rope_scaling == ROPE_SCALING_LLAMA3 ? "llama3" : "linear");
    }
    cJSON_AddNumberToObject(o, "rope_theta", c->rope_theta);
}

int config_save(const model_config *c, const char *dir) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return err_set(PEFT_ENOMEM, "%s: out of memory writing config.json", dir);
    cJSON *arches = cJSON_AddArrayToObject(o, "architectures");
    cJSON_AddItemToArray(arches, cJSON_CreateString(config_class_name(c)));
    if (c->bos_token_id >= 0) cJSON_AddNumberToObject(o, "bos_token_id", c->bos_token_id);
    if (c->eos_token_id >= 0) cJSON_AddNumberToObject(o, "eos_token_id", c->eos_token_id);
    cJSON_AddNumberToObject(o, "initializer_range", 0.02);
    cJSON_AddStringToObject(o, "model_type", c->model_type);
    cJSON_AddBoolToObject(o, "tie_word_embeddings", c->tie_word_embeddings);
    cJSON_AddStringToObject(o, "torch_dtype", "float32");
    cJSON_AddStringToObject(o, "transformers_version", "4.47.0");
    cJSON_AddTrueToObject(o, "use_cache");
    cJSON_AddNumberToObject(o, "vocab_size", c->vocab_size);
    if (c->arch == ARCH_GPT2) add_gpt2_keys(o, c);
    else add_llama_keys(o, c);
    char *text = json_print_pretty(o, true);
    cJSON_Delete(o);
    if (!text) return err_set(PEFT_ENOMEM, "%s: out of memory writing config.json", dir);
    char path[4096];
    int rc = file_join(path, sizeof path, dir, "config.json");
    if (rc == PEFT_OK) rc = file_write_atomic(path, text, strlen(text));
    free(text);
    return rc;
}
