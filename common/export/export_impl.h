/* export_impl.h - helpers the exporters (export_*.c) and the importer share. */
#ifndef PEFT_EXPORT_IMPL_H
#define PEFT_EXPORT_IMPL_H

#include <stdbool.h>

#include <cjson/cJSON.h>

#include "io/safetensors.h"
#include "peft/peft.h"

/* A JSON number as Python prints the value the user gave: an int when integral, else a float. */
int export_add_number(cJSON *o, const char *key, double v);
/* A comma-separated list ("q_proj, v_proj") as a JSON array of strings (spaces trimmed). */
int export_add_list(cJSON *o, const char *key, const char *comma_list);
/* A comma-separated list of integers as a JSON array of ints; null when list is NULL. */
int export_add_int_list(cJSON *o, const char *key, const char *comma_list);

/* Adds every tensor of the run's table to w as F32 under rename(name) (NULL: skip it); the data
 * stay in the peft_model, which must outlive st_writer_save. */
typedef const char *(*export_rename_fn)(const char *name, void *ctx, char *buf, size_t cap);
int export_add_table(st_writer *w, peft_model *p, export_rename_fn rename, void *ctx);

/* The BnConfig fields that tell our bottleneck methods apart (FORMATS.md §3.1, §3.6); every
 * other BnConfig field is at its default. */
typedef struct bn_preset {
    peft_method method;
    bool mh_adapter, output_adapter, original_ln_before, is_parallel, ln_before;
    const char *init_weights;
    double scaling;
    const char *non_linearity; /* the preset's */
    double reduction_factor;   /* the preset's */
} bn_preset;
/* NULL for a method that is not an AdapterHub bottleneck adapter. */
const bn_preset *export_bn_preset(peft_method m);
extern const bn_preset export_bn_presets[4];

/* The directory's file path "dir/name" into buf (PEFT_EUSAGE if it does not fit). */
int export_path(char *buf, size_t cap, const char *dir, const char *name);

#endif
