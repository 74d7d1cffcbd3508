/*
 * fuzz_config.c - libFuzzer target for config.json (common/model/config.c over common/io/json.c).
 *
 * Input: the text of a config.json. json_parse_buffer() and config_from_json() are the parsing
 * half of config_load(); on success the target asserts the invariants the model code relies on
 * (positive sizes, head_dim * heads consistent, kv heads divide heads) and calls the helpers that
 * inspect and init-model use on a loaded config.
 */
#include <stdint.h>
#include <stdlib.h>

#include "io/json.h"
#include "model/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    cJSON *root;
    if (json_parse_buffer("config.json", (const char *)data, size, &root)) return 0;
    model_config c;
    if (config_from_json(root, "config.json", &c) == 0) {
        if (c.vocab_size <= 0 || c.hidden_size <= 0 || c.num_layers <= 0 || c.num_heads <= 0 ||
            c.num_kv_heads <= 0 || c.head_dim <= 0 || c.intermediate_size <= 0 || c.max_positions <= 0)
            abort();
        if (c.num_heads % c.num_kv_heads) abort();
        if (c.arch == ARCH_GPT2 && c.head_dim * c.num_heads != c.hidden_size) abort();
        if (config_num_params(&c) <= 0) abort();
        (void)config_class_name(&c);
    }
    cJSON_Delete(root);
    return 0;
}
