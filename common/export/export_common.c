/* export_common.c - JSON and safetensors helpers shared by the exporters. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "export/export.h"
#include "export/export_impl.h"
#include "io/file.h"
#include "io/json.h"

int export_add_number(cJSON *o, const char *key, double v) {
    if (v == floor(v) && fabs(v) < 1e15) return cJSON_AddNumberToObject(o, key, v) ? PEFT_OK : err_set(PEFT_ENOMEM, "out of memory");
    return json_add_py_float(o, key, v, true);
}

int export_add_list(cJSON *o, const char *key, const char *list) {
    cJSON *a = cJSON_AddArrayToObject(o, key);
    if (!a) return err_set(PEFT_ENOMEM, "out of memory");
    for (const char *s = list; s && *s;) {
        const char *comma = strchr(s, ',');
        size_t n = comma ? (size_t)(comma - s) : strlen(s);
        while (n && (*s == ' ' || *s == '\t')) s++, n--;
        while (n && (s[n - 1] == ' ' || s[n - 1] == '\t')) n--;
        if (n) {
            char item[256];
            snprintf(item, sizeof item, "%.*s", (int)n, s);
            cJSON_AddItemToArray(a, cJSON_CreateString(item));
        }
        if (!comma) break;
        s = comma + 1;
    }
    return PEFT_OK;
}

int export_add_int_list(cJSON *o, const char *key, const char *list) {
    if (!list) return cJSON_AddNullToObject(o, key) ? PEFT_OK : err_set(PEFT_ENOMEM, "out of memory");
    cJSON *a = cJSON_AddArrayToObject(o, key);
    if (!a) return err_set(PEFT_ENOMEM, "out of memory");
    for (const char *s = list; *s;) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s) return err_set(PEFT_EUSAGE, "layers_to_transform: '%s' is not a list of integers", list);
        cJSON_AddItemToArray(a, cJSON_CreateNumber((double)v));
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return err_set(PEFT_EUSAGE, "layers_to_transform: '%s' is not a list of integers", list);
    }
    return PEFT_OK;
}

int export_add_table(st_writer *w, peft_model *p, export_rename_fn rename, void *ctx) {
    const tensor_table *t = peft_model_table(p);
    const float *params = peft_model_params(p);
    char buf[TT_NAME_MAX + 64];
    for (int i = 0; i < t->n; i++) {
        const tt_entry *e = &t->e[i];
        const char *name = rename ? rename(e->name, ctx, buf, sizeof buf) : e->name;
        if (!name) continue;
        PEFT_TRY(st_writer_add(w, name, ST_F32, e->ndim, e->shape, params + e->offset));
    }
    return PEFT_OK;
}

int export_path(char *buf, size_t cap, const char *dir, const char *name) { return file_join(buf, cap, dir, name); }

int export_write_json(const cJSON *obj, const char *dir, const char *name) {
    char path[4200];
    PEFT_TRY(file_join(path, sizeof path, dir, name));
    char *s = json_print_pretty(obj, true);
    if (!s) return err_set(PEFT_ENOMEM, "out of memory");
    size_t n = strlen(s);
    if (n && s[n - 1] == '\n') n--; /* json.dumps writes no final newline */
    int rc = file_write_atomic(path, s, n);
    free(s);
    return rc;
}
