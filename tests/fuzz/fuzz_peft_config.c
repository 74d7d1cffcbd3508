/*
 * fuzz_peft_config.c - libFuzzer target for the method configuration JSON
 * (common/peft/peft_config_json.c): the run configuration stored in every checkpoint, which
 * eval --run, generate --run and export --run read back.
 *
 * Input: JSON text. json_parse_buffer() then peft_config_from_json(); the configuration it
 * accepts must survive a round trip through peft_config_to_json().
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/json.h"
#include "peft/peft_config_json.h"

static int same_str(const char *a, const char *b) { return (!a && !b) || (a && b && !strcmp(a, b)); }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    cJSON *root;
    if (json_parse_buffer("adapter_config.json", (const char *)data, size, &root)) return 0;
    peft_config c;
    if (peft_config_from_json(root, "adapter_config.json", &c) == 0) {
        cJSON *again = cJSON_CreateObject();
        if (!again) abort();
        peft_config_to_json(&c, again);
        peft_config d;
        if (peft_config_from_json(again, "round trip", &d) != 0) abort();
        if (d.method != c.method || d.r != c.r || !same_str(d.target_modules, c.target_modules) ||
            !same_str(d.layers_to_transform, c.layers_to_transform) || d.num_virtual_tokens != c.num_virtual_tokens)
            abort();
        cJSON_Delete(again);
    }
    cJSON_Delete(root);
    return 0;
}
