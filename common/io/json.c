#include "json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "io/file.h"

int json_parse_buffer(const char *name, const char *text, size_t len, cJSON **out) {
    *out = NULL;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!root) {
        long at = end ? (long)(end - text) : -1;
        return err_set(PEFT_EFORMAT, "%s: invalid JSON near byte %ld", name, at);
    }
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return err_set(PEFT_EFORMAT, "%s: expected a JSON object at the top level", name);
    }
    *out = root;
    return PEFT_OK;
}

int json_load_file(const char *path, cJSON **out) {
    *out = NULL;
    char *text;
    size_t len;
    PEFT_TRY(file_read_all(path, &text, &len));
    int rc = json_parse_buffer(path, text, len, out);
    free(text);
    return rc;
}

static const cJSON *get(const cJSON *obj, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return (v && !cJSON_IsNull(v)) ? v : NULL;
}

static int get_int(const cJSON *obj, const char *key, const char *file, int *out, bool required) {
    const cJSON *v = get(obj, key);
    if (!v) return required ? err_set(PEFT_EFORMAT, "%s: missing required key '%s'", file, key) : PEFT_OK;
    double d = v->valuedouble;
    if (!cJSON_IsNumber(v) || d != floor(d) || fabs(d) > 2147483647.0)
        return err_set(PEFT_EFORMAT, "%s: key '%s' must be an integer", file, key);
    *out = (int)d;
    return PEFT_OK;
}

static int get_double(const cJSON *obj, const char *key, const char *file, double *out, bool required) {
    const cJSON *v = get(obj, key);
    if (!v) return required ? err_set(PEFT_EFORMAT, "%s: missing required key '%s'", file, key) : PEFT_OK;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return err_set(PEFT_EFORMAT, "%s: key '%s' must be a number", file, key);
    *out = v->valuedouble;
    return PEFT_OK;
}

static int get_string(const cJSON *obj, const char *key, const char *file, const char **out,
                      bool required) {
    const cJSON *v = get(obj, key);
    if (!v) return required ? err_set(PEFT_EFORMAT, "%s: missing required key '%s'", file, key) : PEFT_OK;
    if (!cJSON_IsString(v)) return err_set(PEFT_EFORMAT, "%s: key '%s' must be a string", file, key);
    *out = v->valuestring;
    return PEFT_OK;
}

int json_get_int_req(const cJSON *o, const char *k, const char *f, int *out) { return get_int(o, k, f, out, true); }
int json_get_int_opt(const cJSON *o, const char *k, const char *f, int *out) { return get_int(o, k, f, out, false); }
int json_get_double_req(const cJSON *o, const char *k, const char *f, double *out) { return get_double(o, k, f, out, true); }
int json_get_double_opt(const cJSON *o, const char *k, const char *f, double *out) { return get_double(o, k, f, out, false); }
int json_get_string_req(const cJSON *o, const char *k, const char *f, const char **out) { return get_string(o, k, f, out, true); }
int json_get_string_opt(const cJSON *o, const char *k, const char *f, const char **out) { return get_string(o, k, f, out, false); }

int json_get_bool_opt(const cJSON *obj, const char *key, const char *file, bool *out) {
    const cJSON *v = get(obj, key);
    if (!v) return PEFT_OK;
    if (!cJSON_IsBool(v)) return err_set(PEFT_EFORMAT, "%s: key '%s' must be true or false", file, key);
    *out = cJSON_IsTrue(v);
    return PEFT_OK;
}

/* ---- pretty printer ------------------------------------------------------------------------- */

typedef struct { char *buf; size_t len, cap; bool oom; } sbuf;

static void sb_put(sbuf *s, const char *p, size_t n) {
    if (s->oom) return;
    if (s->len + n + 1 > s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 256;
        while (cap < s->len + n + 1) cap *= 2;
        char *nb = realloc(s->buf, cap);
        if (!nb) { s->oom = true; return; }
        s->buf = nb;
        s->cap = cap;
    }
    memcpy(s->buf + s->len, p, n);
    s->len += n;
    s->buf[s->len] = '\0';
}
static void sb_str(sbuf *s, const char *p) { sb_put(s, p, strlen(p)); }
static void sb_indent(sbuf *s, int depth) { for (int i = 0; i < depth; i++) sb_put(s, "  ", 2); }

static void sb_quoted(sbuf *s, const char *str) {
    sb_put(s, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)str; *p; p++) {
        char esc[8];
        switch (*p) {
        case '"': sb_str(s, "\\\""); break;
        case '\\': sb_str(s, "\\\\"); break;
        case '\n': sb_str(s, "\\n"); break;
        case '\r': sb_str(s, "\\r"); break;
        case '\t': sb_str(s, "\\t"); break;
        default:
            if (*p < 0x20) { snprintf(esc, sizeof esc, "\\u%04x", *p); sb_str(s, esc); }
            else sb_put(s, (const char *)p, 1);
        }
    }
    sb_put(s, "\"", 1);
}

static int cmp_items(const void *a, const void *b) {
    return strcmp((*(const cJSON *const *)a)->string, (*(const cJSON *const *)b)->string);
}

static void print_value(sbuf *s, const cJSON *v, int depth, bool sort) {
    if (cJSON_IsNull(v)) sb_str(s, "null");
    else if (cJSON_IsTrue(v)) sb_str(s, "true");
    else if (cJSON_IsFalse(v)) sb_str(s, "false");
    else if (cJSON_IsString(v)) sb_quoted(s, v->valuestring);
    else if (cJSON_IsRaw(v)) sb_str(s, v->valuestring);
    else if (cJSON_IsNumber(v)) {
        char num[64];
        double d = v->valuedouble;
        if (d == floor(d) && fabs(d) < 1e15) snprintf(num, sizeof num, "%.0f", d);
        else {
            snprintf(num, sizeof num, "%.15g", d);
            if (strtod(num, NULL) != d) snprintf(num, sizeof num, "%.17g", d);
        }
        sb_str(s, num);
    } else if (cJSON_IsArray(v) || cJSON_IsObject(v)) {
        bool obj = cJSON_IsObject(v);
        int n = cJSON_GetArraySize(v);
        if (n == 0) { sb_str(s, obj ? "{}" : "[]"); return; }
        const cJSON **items = malloc(sizeof *items * (size_t)n);
        if (!items) { s->oom = true; return; }
        int i = 0;
        for (const cJSON *c = v->child; c; c = c->next) items[i++] = c;
        if (obj && sort) qsort(items, (size_t)n, sizeof *items, cmp_items);
        sb_str(s, obj ? "{\n" : "[\n");
        for (i = 0; i < n; i++) {
            sb_indent(s, depth + 1);
            if (obj) { sb_quoted(s, items[i]->string); sb_str(s, ": "); }
            print_value(s, items[i], depth + 1, sort);
            sb_str(s, i + 1 < n ? ",\n" : "\n");
        }
        sb_indent(s, depth);
        sb_str(s, obj ? "}" : "]");
        free(items);
    }
}

char *json_print_pretty(const cJSON *obj, bool sort_keys) {
    sbuf s = {0};
    print_value(&s, obj, 0, sort_keys);
    sb_str(&s, "\n");
    if (s.oom) { free(s.buf); return NULL; }
    return s.buf;
}

/* Python's repr of a float: the shortest digits that read back as the same value, with ".0" on an
 * integral value. `single`: shortest for the float32 value (what the user typed into a float flag). */
static void py_float_repr(double d, bool single, char *buf, size_t cap) {
    if (d == floor(d) && fabs(d) < 1e16) {
        snprintf(buf, cap, "%.1f", d);
        return;
    }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, cap, "%.*g", prec, d);
        double back = strtod(buf, NULL);
        if (single ? (float)back == (float)d : back == d) return;
    }
}

int json_add_py_float(cJSON *obj, const char *key, double value, bool single) {
    char buf[64];
    py_float_repr(value, single, buf, sizeof buf);
    return cJSON_AddRawToObject(obj, key, buf) ? PEFT_OK : err_set(PEFT_ENOMEM, "out of memory");
}
