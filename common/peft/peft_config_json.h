/*
 * peft_config_json.h - a peft_config as JSON (stored in every checkpoint as part of the run's
 * configuration) and back, so `eval --run` and `export --run` rebuild the exact method.
 * Keys are the flag names with underscores (method, r, lora_alpha, target_modules, ...).
 */
#ifndef PEFT_PEFT_CONFIG_JSON_H
#define PEFT_PEFT_CONFIG_JSON_H

#include <cjson/cJSON.h>

#include "peft/peft.h"

/* Adds the method's keys to obj. */
void peft_config_to_json(const peft_config *c, cJSON *obj);
/* Reads them back; string fields point into obj (keep it alive). PEFT_EFORMAT naming `where`. */
int peft_config_from_json(const cJSON *obj, const char *where, peft_config *out);

#endif
