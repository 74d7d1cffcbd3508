/* export_peft.c - a run as Hugging Face peft writes it (FORMATS.md §2): adapter_config.json with
 * the fields peft 0.20 saves (the key sets of ../shared/golden/peft), adapter_model.safetensors
 * with the keys our tensor table already uses (peft's, adapter name stripped), F32,
 * metadata {"format":"pt"}. */
#include <stdio.h>
#include <string.h>

#include "error.h"
#include "export/export.h"
#include "export/export_impl.h"
#include "io/json.h"
#include "peft/peft_impl.h"

#define ADD(expr)                                                                            \
    do {                                                                                     \
        if (!(expr)) { rc = err_set(PEFT_ENOMEM, "out of memory"); goto out; }               \
    } while (0)

/* Fields every peft config carries. */
static int add_common(cJSON *o, const char *peft_type, const char *base_model) {
    if (!cJSON_AddNullToObject(o, "auto_mapping") || !cJSON_AddStringToObject(o, "base_model_name_or_path", base_model) ||
        !cJSON_AddTrueToObject(o, "inference_mode") || !cJSON_AddNullToObject(o, "modules_to_save") ||
        !cJSON_AddStringToObject(o, "peft_type", peft_type) ||
        !cJSON_AddStringToObject(o, "peft_version", EXPORT_PEFT_VERSION) || !cJSON_AddNullToObject(o, "revision") ||
        !cJSON_AddStringToObject(o, "task_type", "CAUSAL_LM"))
        return err_set(PEFT_ENOMEM, "out of memory");
    return PEFT_OK;
}

/* LoraConfig as peft 0.20 saves it (the 42 keys of golden/peft/MODEL-lora/adapter_config.json). */
static int lora_config(const peft_model *p, cJSON *o) {
    const peft_config *c = &p->cfg;
    const bool gpt2 = p->m->cfg.arch == ARCH_GPT2;
    int rc = PEFT_OK;
    static const char *nulls[] = {"alora_invocation_tokens", "arrow_config", "corda_config", "eva_config",
                                  "exclude_modules", "layer_replication", "layers_pattern", "lora_ga_config",
                                  "megatron_config", "monteclora_config", "target_parameters",
                                  "trainable_token_indices", "use_bdlora", "velora_config"};
    for (size_t i = 0; i < sizeof nulls / sizeof nulls[0]; i++) ADD(cJSON_AddNullToObject(o, nulls[i]));
    ADD(cJSON_AddObjectToObject(o, "alpha_pattern"));
    ADD(cJSON_AddObjectToObject(o, "rank_pattern"));
    ADD(cJSON_AddObjectToObject(o, "loftq_config"));
    ADD(cJSON_AddStringToObject(o, "bias", c->lora_bias ? c->lora_bias : "none"));
    ADD(cJSON_AddFalseToObject(o, "ensure_weight_tying"));
    ADD(cJSON_AddBoolToObject(o, "fan_in_fan_out", gpt2)); /* peft forces it for Conv1D */
    ADD(cJSON_AddTrueToObject(o, "init_lora_weights"));
    PEFT_TRY(export_add_int_list(o, "layers_to_transform", c->layers_to_transform));
    PEFT_TRY(export_add_number(o, "lora_alpha", c->lora_alpha));
    ADD(cJSON_AddBoolToObject(o, "lora_bias", c->lora_b_bias));
    PEFT_TRY(json_add_py_float(o, "lora_dropout", c->lora_dropout, true));
    ADD(cJSON_AddStringToObject(o, "megatron_core", "megatron.core"));
    ADD(cJSON_AddNumberToObject(o, "qalora_group_size", 16));
    ADD(cJSON_AddNumberToObject(o, "r", c->r));
    PEFT_TRY(export_add_list(o, "target_modules", peft_config_targets(c, p->m->cfg.arch)));
    ADD(cJSON_AddBoolToObject(o, "use_dora", c->method == PEFT_DORA));
    ADD(cJSON_AddFalseToObject(o, "use_qalora"));
    ADD(cJSON_AddBoolToObject(o, "use_rslora", c->use_rslora));
out:
    return rc;
}

/* IA3Config (golden/peft/MODEL-ia3). IA3Config has no layers_to_transform: a run restricted to some
 * layers lists the adapted modules by their full paths, which peft's list rule matches exactly. */
static int ia3_config(const peft_model *p, cJSON *o) {
    const peft_config *c = &p->cfg;
    int rc = PEFT_OK;
    ADD(cJSON_AddNullToObject(o, "exclude_modules"));
    ADD(cJSON_AddBoolToObject(o, "fan_in_fan_out", p->m->cfg.arch == ARCH_GPT2));
    ADD(cJSON_AddTrueToObject(o, "init_ia3_weights"));
    if (!c->layers_to_transform) {
        PEFT_TRY(export_add_list(o, "target_modules", peft_config_targets(c, p->m->cfg.arch)));
        PEFT_TRY(export_add_list(o, "feedforward_modules", peft_config_feedforward(c, p->m->cfg.arch)));
        return PEFT_OK;
    }
    cJSON *t = cJSON_AddArrayToObject(o, "target_modules"), *f = cJSON_AddArrayToObject(o, "feedforward_modules");
    ADD(t && f);
    for (int i = 0; i < p->nhooks; i++) {
        cJSON_AddItemToArray(t, cJSON_CreateString(p->hooked[i]->module));
        if (p->hooks[i].kind == HOOK_IA3_IN) cJSON_AddItemToArray(f, cJSON_CreateString(p->hooked[i]->module));
    }
out:
    return rc;
}

/* PromptTuningConfig / PrefixTuningConfig (golden/peft/MODEL-prompt, MODEL-prefix); prefix tuning gets
 * peft's GQA-adjusted token_dim and num_attention_heads (the key/value width). */
static int prompt_config(const peft_model *p, const char *base_model, cJSON *o) {
    const peft_config *c = &p->cfg;
    const model_config *mc = &p->m->cfg;
    const int kv = mc->num_kv_heads * mc->head_dim;
    int rc = PEFT_OK;
    ADD(cJSON_AddNumberToObject(o, "num_layers", mc->num_layers));
    ADD(cJSON_AddNumberToObject(o, "num_transformer_submodules", 1));
    ADD(cJSON_AddNumberToObject(o, "num_virtual_tokens", c->num_virtual_tokens));
    if (c->method == PEFT_PROMPT) {
        const bool text = c->prompt_init_text != NULL;
        ADD(cJSON_AddNumberToObject(o, "num_attention_heads", mc->num_heads));
        ADD(cJSON_AddStringToObject(o, "prompt_tuning_init", text ? "TEXT" : "RANDOM"));
        if (text) {
            /* peft requires the tokenizer with TEXT init (PromptTuningConfig.__post_init__) */
            ADD(cJSON_AddStringToObject(o, "prompt_tuning_init_text", c->prompt_init_text));
            ADD(cJSON_AddStringToObject(o, "tokenizer_name_or_path", base_model));
        } else {
            ADD(cJSON_AddNullToObject(o, "prompt_tuning_init_text"));
            ADD(cJSON_AddNullToObject(o, "tokenizer_name_or_path"));
        }
        ADD(cJSON_AddNullToObject(o, "tokenizer_kwargs"));
        ADD(cJSON_AddNumberToObject(o, "token_dim", mc->hidden_size));
        return PEFT_OK;
    }
    ADD(cJSON_AddNumberToObject(o, "encoder_hidden_size",
                                c->prefix_projection && c->encoder_hidden_size > 0 ? c->encoder_hidden_size : kv));
    ADD(cJSON_AddNullToObject(o, "init_weights"));
    ADD(cJSON_AddNumberToObject(o, "num_attention_heads", mc->num_kv_heads));
    ADD(cJSON_AddBoolToObject(o, "prefix_projection", c->prefix_projection));
    ADD(cJSON_AddNumberToObject(o, "token_dim", kv));
out:
    return rc;
}

/* The projected prefix is exported as the MLP's output, under prompt_embeddings; the MLP itself
 * is not saved (peft's get_prompt_embedding_to_save). */
static const char *skip_prefix_mlp(const char *name, void *ctx, char *buf, size_t cap) {
    (void)ctx, (void)buf, (void)cap;
    return strncmp(name, "prompt_encoder.", 15) ? name : NULL;
}

int export_peft(peft_model *p, const char *base_model, const char *out_dir) {
    const peft_method meth = p->cfg.method;
    const char *type = NULL;
    switch (meth) {
    case PEFT_LORA:
    case PEFT_DORA: type = "LORA"; break;
    case PEFT_IA3: type = "IA3"; break;
    case PEFT_PROMPT: type = "PROMPT_TUNING"; break;
    case PEFT_PREFIX: type = "PREFIX_TUNING"; break;
    case PEFT_FULL:
        return err_set(PEFT_EUNSUPPORTED, "export: full fine-tuning has no peft adapter format; use --format merged");
    default:
        return err_set(PEFT_EUNSUPPORTED, "export: %s adapters are AdapterHub's, not peft's; use --format adapterhub",
                       peft_method_name(meth));
    }
    cJSON *o = cJSON_CreateObject();
    st_writer *w = NULL;
    int rc = o ? add_common(o, type, base_model) : err_set(PEFT_ENOMEM, "out of memory");
    if (!rc) rc = meth == PEFT_IA3 ? ia3_config(p, o)
                                   : (meth == PEFT_LORA || meth == PEFT_DORA ? lora_config(p, o) : prompt_config(p, base_model, o));
    if (!rc) rc = st_writer_init(&w);
    if (!rc) rc = st_writer_set_metadata(w, "format", "pt");
    if (!rc && meth == PEFT_PREFIX && p->cfg.prefix_projection) {
        const model_config *mc = &p->m->cfg;
        const float *prefix = peft_model_prefix_output(p);
        const int64_t shape[2] = {p->np, (int64_t)mc->num_layers * 2 * mc->num_kv_heads * mc->head_dim};
        rc = prefix ? st_writer_add(w, "prompt_embeddings", ST_F32, 2, shape, prefix)
                    : err_set(PEFT_ENOMEM, "out of memory computing the prefix");
        if (!rc) rc = export_add_table(w, p, skip_prefix_mlp, NULL);
    } else if (!rc) {
        rc = export_add_table(w, p, NULL, NULL);
    }
    char path[4200];
    if (!rc) rc = export_path(path, sizeof path, out_dir, "adapter_model.safetensors");
    if (!rc) rc = st_writer_save(w, path);
    if (!rc) rc = export_write_json(o, out_dir, "adapter_config.json");
    st_writer_free(w);
    cJSON_Delete(o);
    return rc;
}
