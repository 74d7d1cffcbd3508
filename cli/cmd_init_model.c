/* cmd_init_model.c - `peft init-model`: a random model directory in exact Hugging Face format. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "error.h"
#include "io/file.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

/* Vocabulary size and BOS/EOS from the tokenizer (an explicit --vocab-size may only be larger). */
static int adopt_tokenizer(const char *path, int vocab_flag, model_config *c) {
    tokenizer *tk;
    PEFT_TRY(tokenizer_load(path, &tk));
    int v = tokenizer_vocab_size(tk);
    if (vocab_flag && vocab_flag < v) {
        tokenizer_free(tk);
        return err_set(PEFT_EUSAGE, "init-model: --vocab-size %d is smaller than %s's %d tokens", vocab_flag, path, v);
    }
    if (!vocab_flag) c->vocab_size = v;
    c->bos_token_id = tokenizer_bos_id(tk);
    c->eos_token_id = tokenizer_eos_id(tk);
    if (c->bos_token_id < 0) c->bos_token_id = c->eos_token_id;
    tokenizer_free(tk);
    return PEFT_OK;
}

/* Copies tokenizer.json (a file or from a directory) and its companions into dir. */
static int copy_tokenizer_files(const char *path, const char *dir) {
    static const char *names[] = {"tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt",
                                  "special_tokens_map.json"};
    char from[4200], to[4200];
    if (!file_is_dir(path)) {
        PEFT_TRY(file_join(to, sizeof to, dir, "tokenizer.json"));
        PEFT_TRY(file_copy(path, to));
        /* a tokenizer_config.json beside the file carries BOS/EOS */
        const char *slash = strrchr(path, '/');
        snprintf(from, sizeof from, "%.*stokenizer_config.json", slash ? (int)(slash - path + 1) : 0, path);
        PEFT_TRY(file_join(to, sizeof to, dir, "tokenizer_config.json"));
        return file_exists(from) ? file_copy(from, to) : PEFT_OK;
    }
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        PEFT_TRY(file_join(from, sizeof from, path, names[i]));
        PEFT_TRY(file_join(to, sizeof to, dir, names[i]));
        if (file_exists(from)) PEFT_TRY(file_copy(from, to));
    }
    return PEFT_OK;
}

int cmd_init_model(int argc, char **argv) {
    const char *arch = "gpt2", *out = NULL;
    int hidden = 0, layers = 0, heads = 0, kv_heads = 0, inter = 0, vocab = 0, positions = 0, head_dim = 0;
    float rope_theta = 0.0f;
    const char *tie = NULL, *tok_path = NULL;
    uint64_t seed = 42;
    arg_spec specs[] = {
        {"--arch", ARG_STRING, &arch, "gpt2|llama", "architecture family", 0, false},
        {"--out", ARG_STRING, &out, "DIR", "directory to write (created)", ARG_REQUIRED, false},
        {"--hidden-size", ARG_INT, &hidden, "N", "hidden size (0: the family's 124M/135M default)", 0, false},
        {"--num-hidden-layers", ARG_INT, &layers, "N", "layers (0: default)", 0, false},
        {"--num-attention-heads", ARG_INT, &heads, "N", "attention heads (0: default)", 0, false},
        {"--num-key-value-heads", ARG_INT, &kv_heads, "N", "llama: key/value heads (0: = attention heads)", 0, false},
        {"--head-dim", ARG_INT, &head_dim, "N", "llama: head size (0: hidden / heads)", 0, false},
        {"--intermediate-size", ARG_INT, &inter, "N", "feed-forward size (0: 4x hidden for gpt2)", 0, false},
        {"--vocab-size", ARG_INT, &vocab, "N", "vocabulary size (0: default)", 0, false},
        {"--max-position-embeddings", ARG_INT, &positions, "N", "maximum positions (0: default)", 0, false},
        {"--rope-theta", ARG_FLOAT, &rope_theta, "X", "llama: RoPE base (0: 10000)", 0, false},
        {"--tie-word-embeddings", ARG_STRING, &tie, "true|false", "share input embeddings and LM head", 0, false},
        {"--seed", ARG_U64, &seed, "S", "random seed", 0, false},
        {"--tokenizer", ARG_STRING, &tok_path, "PATH", "copy this tokenizer (model dir or tokenizer.json) into DIR; "
                                                      "sets the vocabulary size and BOS/EOS ids", 0, false},
    };
    const arg_command cmd = {"init-model", "--out DIR [--arch gpt2|llama] [sizes] [--seed S]",
                             "Writes config.json and model.safetensors of a randomly initialised GPT-2 or Llama "
                             "model\n(Hugging Face's initialisation), for tests, benchmarks and pretraining from "
                             "scratch.\nDefaults: gpt2 = GPT-2 124M, llama = SmolLM-135M shape."};
    int rc = args_parse(&cmd, specs, (int)(sizeof specs / sizeof specs[0]), argc, argv);
    if (rc) return rc;
    model_config c;
    if (!strcmp(arch, "gpt2")) config_defaults(ARCH_GPT2, &c);
    else if (!strcmp(arch, "llama")) config_defaults(ARCH_LLAMA, &c);
    else return err_set(PEFT_EUSAGE, "init-model: --arch must be gpt2 or llama, got '%s'", arch);
    const struct { int *v; const char *flag; } sizes[] = {
        {&hidden, "--hidden-size"}, {&layers, "--num-hidden-layers"}, {&heads, "--num-attention-heads"},
        {&kv_heads, "--num-key-value-heads"}, {&inter, "--intermediate-size"}, {&vocab, "--vocab-size"},
        {&positions, "--max-position-embeddings"}, {&head_dim, "--head-dim"}};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        if (*sizes[i].v < 0) return err_set(PEFT_EUSAGE, "init-model: %s must be positive", sizes[i].flag);
    if (hidden) {
        c.hidden_size = hidden;
        if (!inter && c.arch == ARCH_GPT2) c.intermediate_size = 0; /* config_finish: 4 * hidden, once bounded */
    }
    if (layers) c.num_layers = layers;
    if (heads) {
        c.num_heads = heads;
        if (!kv_heads && c.arch == ARCH_LLAMA) c.num_kv_heads = heads;
    }
    if (kv_heads) {
        if (c.arch == ARCH_GPT2) return err_set(PEFT_EUSAGE, "init-model: --num-key-value-heads is for llama");
        c.num_kv_heads = kv_heads;
    }
    if (head_dim) {
        if (c.arch == ARCH_GPT2) return err_set(PEFT_EUSAGE, "init-model: --head-dim is for llama");
        c.head_dim = head_dim;
    } else {
        c.head_dim = 0;
    }
    if (inter) c.intermediate_size = inter;
    if (vocab) {
        c.vocab_size = vocab;
        if (c.bos_token_id >= vocab) c.bos_token_id = c.eos_token_id = vocab - 1;
    }
    if (positions) c.max_positions = positions;
    if (tok_path) PEFT_TRY(adopt_tokenizer(tok_path, vocab, &c));
    if (rope_theta > 0) c.rope_theta = rope_theta;
    if (tie) {
        if (strcmp(tie, "true") && strcmp(tie, "false"))
            return err_set(PEFT_EUSAGE, "init-model: --tie-word-embeddings must be true or false, got '%s'", tie);
        c.tie_word_embeddings = !strcmp(tie, "true");
        if (c.arch == ARCH_GPT2 && !c.tie_word_embeddings)
            return err_set(PEFT_EUSAGE, "init-model: GPT-2 always ties its embeddings");
    }
    if ((rc = config_finish(&c, "init-model")) != PEFT_OK) { /* the sizes come from flags: a usage error */
        char msg[512];
        snprintf(msg, sizeof msg, "%s", err_msg());
        return err_set(PEFT_EUSAGE, "%s", msg);
    }
    model *m;
    PEFT_TRY(model_init_random(&c, seed, GEMM_OPENBLAS, &m));
    rc = model_save(m, out);
    if (rc == PEFT_OK && tok_path) rc = copy_tokenizer_files(tok_path, out);
    if (rc == PEFT_OK)
        printf("wrote %s: %s, %d layers, hidden %d, %d heads (%d kv), vocab %d, %lld parameters\n", out,
               config_class_name(&c), c.num_layers, c.hidden_size, c.num_heads, c.num_kv_heads, c.vocab_size,
               config_num_params(&c));
    model_free(m);
    return rc;
}
