/* cmd_inspect.c - `peft inspect PATH`: what a model directory, dataset or adapter holds. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "data/dataset.h"
#include "error.h"
#include "inspect_run.h"
#include "store/checkpoint.h"
#include "export/adapter_load.h"
#include "io/file.h"
#include "io/safetensors.h"
#include "model/config.h"

static int inspect_model(const char *dir) {
    model_config c;
    PEFT_TRY(config_load(dir, &c));
    st_model *st;
    PEFT_TRY(st_model_open(dir, &st));
    size_t per_dtype[ST_DTYPE_COUNT] = {0}, bytes = 0;
    long long stored = 0;
    for (size_t i = 0; i < st_model_count(st); i++) {
        const st_tensor *t = st_model_at(st, i);
        per_dtype[t->dtype]++;
        bytes += t->nbytes;
        stored += st_numel(t);
    }
    printf("model        %s\n", dir);
    printf("class        %s (model_type %s)\n", config_class_name(&c), c.model_type);
    printf("layers       %d\nhidden       %d\n", c.num_layers, c.hidden_size);
    printf("heads        %d query, %d key/value, head_dim %d\n", c.num_heads, c.num_kv_heads, c.head_dim);
    printf("ffn          %d (%s)\n", c.intermediate_size,
           c.act == ACT_SILU ? "SwiGLU" : c.act == ACT_GELU_TANH ? "GELU tanh" : "GELU");
    printf("vocab        %d\npositions    %d%s\n", c.vocab_size, c.max_positions,
           c.arch == ARCH_GPT2 ? " (learned)" : "");
    if (c.arch == ARCH_LLAMA) {
        printf("rope         theta %g", c.rope_theta);
        if (c.rope_scaling == ROPE_SCALING_LLAMA3)
            printf(", llama3 scaling factor %g (low %g, high %g, original %d)", c.rope_factor, c.rope_low_freq_factor,
                   c.rope_high_freq_factor, c.rope_original_max_positions);
        else if (c.rope_scaling == ROPE_SCALING_LINEAR) printf(", linear scaling factor %g", c.rope_factor);
        printf("\nbiases       q/k/v %s, o %s, mlp %s\n", c.qkv_bias ? "yes" : "no", c.o_bias ? "yes" : "no",
               c.mlp_bias ? "yes" : "no");
    }
    printf("embeddings   %s\n", c.tie_word_embeddings ? "tied to the LM head" : "separate LM head");
    printf("parameters   %lld (%.1fM)\n", config_num_params(&c), config_num_params(&c) / 1e6);
    printf("tensors      %zu, %lld values, %.1f MiB:", st_model_count(st), stored, bytes / 1048576.0);
    for (int d = 0; d < ST_DTYPE_COUNT; d++)
        if (per_dtype[d]) printf(" %zu %s", per_dtype[d], st_dtype_name((st_dtype)d));
    printf("\n");
    st_model_close(st);
    return PEFT_OK;
}

static int inspect_dataset(const char *dir) {
    dataset *d;
    PEFT_TRY(dataset_open(dir, &d));
    const dataset_info *in = dataset_get_info(d);
    printf("dataset      %s\n", dir);
    printf("sequences    of <= %d tokens, %s, %d training shard(s), split seed %llu\n", in->seq_len,
           in->packed ? "packed" : "one per document", in->num_shards, (unsigned long long)in->seed);
    printf("tokenizer    %s, vocabulary %d, eos %d\n", in->tokenizer_fingerprint[0] ? in->tokenizer_fingerprint : "none",
           in->vocab_size, in->eos_token_id);
    const char *names[2] = {"train", "val"};
    for (int s = 0; s < 2; s++)
        printf("%-12s %llu documents, %llu sequences, %llu tokens, %llu in the loss (%.1f%%)\n", names[s],
               (unsigned long long)in->documents[s], (unsigned long long)in->sequences[s],
               (unsigned long long)in->tokens[s], (unsigned long long)in->loss_tokens[s],
               in->tokens[s] ? 100.0 * in->loss_tokens[s] / in->tokens[s] : 0.0);
    dataset_close(d);
    return PEFT_OK;
}

/* Counts the comma-separated entries of a list. */
static int list_count(const char *s) {
    int n = s && *s ? 1 : 0;
    for (; s && *s; s++) n += *s == ',';
    return n;
}

static int inspect_adapter(const char *dir) {
    adapter_file *af;
    PEFT_TRY(adapter_open(dir, NULL, &af));
    const peft_config *c = adapter_config(af);
    const st_file *st = adapter_weights(af);
    printf("adapter      %s (%s format)\n", dir, adapter_format(af));
    printf("method       %s", peft_method_name(c->method));
    switch (c->method) {
    case PEFT_LORA:
    case PEFT_DORA:
        printf(", r %d, alpha %g, scaling %g%s, bias %s%s\n", c->r, c->lora_alpha,
               c->use_rslora ? c->lora_alpha / sqrt((double)c->r) : c->lora_alpha / c->r, c->use_rslora ? " (rsLoRA)" : "",
               c->lora_bias, c->lora_b_bias ? " + lora_B.bias" : "");
        printf("modules      %d: %.160s%s\n", list_count(c->target_modules), c->target_modules,
               strlen(c->target_modules) > 160 ? "..." : "");
        break;
    case PEFT_IA3:
        printf("\nmodules      %d (%d feed-forward): %.160s%s\n", list_count(c->target_modules),
               list_count(c->feedforward_modules), c->target_modules, strlen(c->target_modules) > 160 ? "..." : "");
        break;
    case PEFT_PROMPT:
    case PEFT_PREFIX: printf(", %d virtual tokens\n", c->num_virtual_tokens); break;
    default: printf(", reduction factor %g, %s\n", c->reduction_factor, c->non_linearity); break;
    }
    size_t per_dtype[ST_DTYPE_COUNT] = {0}, bytes = 0;
    long long values = 0;
    for (size_t i = 0; i < st_count(st); i++) {
        const st_tensor *t = st_at(st, i);
        per_dtype[t->dtype]++;
        bytes += t->nbytes;
        values += st_numel(t);
    }
    printf("tensors      %zu, %lld values, %.1f KiB:", st_count(st), values, bytes / 1024.0);
    for (int d = 0; d < ST_DTYPE_COUNT; d++)
        if (per_dtype[d]) printf(" %zu %s", per_dtype[d], st_dtype_name((st_dtype)d));
    printf("\n");
    adapter_close(af);
    return PEFT_OK;
}

int cmd_inspect(int argc, char **argv) {
    const arg_command cmd = {"inspect", "PATH", "Describes what PATH holds: a model directory, a dataset, an adapter directory or a run directory\n(its checkpoints: step, time, training loss, size; and its configuration)."};
    if (argc >= 1 && (!strcmp(argv[0], "--help") || !strcmp(argv[0], "-h"))) {
        args_print_help(&cmd, NULL, 0);
        return ARGS_HELP_SHOWN;
    }
    if (argc != 1 || !strncmp(argv[0], "--", 2))
        return err_set(PEFT_EUSAGE, "inspect: expected one PATH (see peft inspect --help)");
    const char *path = argv[0];
    if (!file_exists(path)) return err_set(PEFT_EIO, "%s: no such file or directory", path);
    char cfg[4096];
    PEFT_TRY(file_join(cfg, sizeof cfg, path, "config.json"));
    if (file_is_dir(path) && file_exists(cfg)) return inspect_model(path);
    PEFT_TRY(file_join(cfg, sizeof cfg, path, "manifest.json"));
    if (file_is_dir(path) && file_exists(cfg)) return inspect_dataset(path);
    PEFT_TRY(file_join(cfg, sizeof cfg, path, "adapter_config.json"));
    if (file_is_dir(path) && file_exists(cfg)) return inspect_adapter(path);
    PEFT_TRY(file_join(cfg, sizeof cfg, path, CKPT_FILE_NAME));
    if (file_is_dir(path) && file_exists(cfg)) return inspect_run(path);
    return err_set(PEFT_EUNSUPPORTED, "%s: neither a model directory (config.json), a dataset (manifest.json), an "
                   "adapter (adapter_config.json) nor a run (checkpoints.lmdb)", path);
}
