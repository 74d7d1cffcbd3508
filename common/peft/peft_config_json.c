#include "peft/peft_config_json.h"

#include <float.h>
#include <math.h>
#include <string.h>

#include "error.h"
#include "io/json.h"

static void add_str(cJSON *o, const char *k, const char *v) {
    if (v) cJSON_AddStringToObject(o, k, v);
    else cJSON_AddNullToObject(o, k);
}

void peft_config_to_json(const peft_config *c, cJSON *o) {
    cJSON_AddStringToObject(o, "method", peft_method_name(c->method));
    cJSON_AddNumberToObject(o, "r", c->r);
    cJSON_AddNumberToObject(o, "lora_alpha", c->lora_alpha);
    cJSON_AddNumberToObject(o, "lora_dropout", c->lora_dropout);
    cJSON_AddBoolToObject(o, "use_rslora", c->use_rslora);
    add_str(o, "lora_bias", c->lora_bias);
    cJSON_AddBoolToObject(o, "lora_b_bias", c->lora_b_bias);
    add_str(o, "target_modules", c->target_modules);
    add_str(o, "layers_to_transform", c->layers_to_transform);
    add_str(o, "feedforward_modules", c->feedforward_modules);
    cJSON_AddNumberToObject(o, "num_virtual_tokens", c->num_virtual_tokens);
    add_str(o, "prompt_init_text", c->prompt_init_text);
    cJSON_AddBoolToObject(o, "prefix_projection", c->prefix_projection);
    cJSON_AddNumberToObject(o, "encoder_hidden_size", c->encoder_hidden_size);
    cJSON_AddNumberToObject(o, "reduction_factor", c->reduction_factor);
    add_str(o, "non_linearity", c->non_linearity);
    cJSON_AddNumberToObject(o, "peft_seed", (double)c->seed);
}

/* A number stored as a float: finite as a float too. */
static int get_float(const cJSON *o, const char *key, const char *where, float *out) {
    double d = *out;
    PEFT_TRY(json_get_double_opt(o, key, where, &d));
    if (fabs(d) > FLT_MAX) return err_set(PEFT_EFORMAT, "%s: key '%s' is out of range", where, key);
    *out = (float)d;
    return PEFT_OK;
}

int peft_config_from_json(const cJSON *o, const char *where, peft_config *out) {
    const char *method;
    PEFT_TRY(json_get_string_req(o, "method", where, &method));
    peft_method m;
    if (peft_method_parse(method, &m)) return err_set(PEFT_EFORMAT, "%s: unknown method '%s'", where, method);
    peft_config_defaults(out, m);
    PEFT_TRY(json_get_int_opt(o, "r", where, &out->r));
    PEFT_TRY(get_float(o, "lora_alpha", where, &out->lora_alpha));
    PEFT_TRY(get_float(o, "lora_dropout", where, &out->lora_dropout));
    PEFT_TRY(json_get_bool_opt(o, "use_rslora", where, &out->use_rslora));
    PEFT_TRY(json_get_string_opt(o, "lora_bias", where, &out->lora_bias));
    PEFT_TRY(json_get_bool_opt(o, "lora_b_bias", where, &out->lora_b_bias));
    PEFT_TRY(json_get_string_opt(o, "target_modules", where, &out->target_modules));
    PEFT_TRY(json_get_string_opt(o, "layers_to_transform", where, &out->layers_to_transform));
    PEFT_TRY(json_get_string_opt(o, "feedforward_modules", where, &out->feedforward_modules));
    PEFT_TRY(json_get_int_opt(o, "num_virtual_tokens", where, &out->num_virtual_tokens));
    PEFT_TRY(json_get_string_opt(o, "prompt_init_text", where, &out->prompt_init_text));
    PEFT_TRY(json_get_bool_opt(o, "prefix_projection", where, &out->prefix_projection));
    PEFT_TRY(json_get_int_opt(o, "encoder_hidden_size", where, &out->encoder_hidden_size));
    PEFT_TRY(get_float(o, "reduction_factor", where, &out->reduction_factor));
    PEFT_TRY(json_get_string_opt(o, "non_linearity", where, &out->non_linearity));
    double d = (double)out->seed;
    PEFT_TRY(json_get_double_opt(o, "peft_seed", where, &d));
    if (!(d >= 0 && d < 0x1p64) || d != floor(d))
        return err_set(PEFT_EFORMAT, "%s: key 'peft_seed' must be a non-negative integer", where);
    out->seed = (uint64_t)d;
    return PEFT_OK;
}
