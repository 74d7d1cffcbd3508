/*
 * json.h - small helpers over cJSON for the JSON files peft reads and writes.
 *
 * json_load_file(): parses a file; PEFT_EIO if unreadable, PEFT_EFORMAT naming the file and the
 * byte offset if it is not valid JSON or not an object. The caller frees *out with cJSON_Delete.
 * json_parse_buffer(): the same for text[0, len) already in memory (need not be NUL-terminated),
 * `name` standing for the file in messages.
 *
 * Typed getters read `key` of an object. The *_req forms fail with PEFT_EFORMAT "FILE: missing
 * required key 'key'" or "FILE: key 'key' must be <type>"; the *_opt forms leave *out unchanged
 * when the key is absent or null and fail only on a wrong type.
 *
 * json_print_pretty(): prints like Python's json.dumps(obj, indent=2, sort_keys=sort) (the style
 * of Hugging Face's config files). Returns a malloc'd string the caller frees, or NULL (no memory).
 */
#ifndef PEFT_JSON_H
#define PEFT_JSON_H

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

int json_load_file(const char *path, cJSON **out);
int json_parse_buffer(const char *name, const char *text, size_t len, cJSON **out);

int json_get_int_req(const cJSON *obj, const char *key, const char *file, int *out);
int json_get_int_opt(const cJSON *obj, const char *key, const char *file, int *out);
int json_get_double_req(const cJSON *obj, const char *key, const char *file, double *out);
int json_get_double_opt(const cJSON *obj, const char *key, const char *file, double *out);
int json_get_bool_opt(const cJSON *obj, const char *key, const char *file, bool *out);
/* *out points into obj (valid while obj lives). */
int json_get_string_req(const cJSON *obj, const char *key, const char *file, const char **out);
int json_get_string_opt(const cJSON *obj, const char *key, const char *file, const char **out);

char *json_print_pretty(const cJSON *obj, bool sort_keys);

/* Adds `key` as a float the way Python's json module prints it (0.0, 4.0, 0.05, 1e-05), so a
 * config we write reads like the one the Python library writes. `single`: the value is a float32
 * (printed with the shortest digits that give back the same float32). Raw cJSON items print
 * verbatim in json_print_pretty. PEFT_ENOMEM on failure. */
int json_add_py_float(cJSON *obj, const char *key, double value, bool single);

#endif
