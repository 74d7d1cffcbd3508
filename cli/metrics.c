/* metrics.c - reads RUN_DIR/metrics.jsonl (see metrics.h). */
#include "metrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "error.h"
#include "io/file.h"
#include "io/json.h"

void metrics_free(metrics_log *log) {
    if (!log) return;
    free(log->rows);
    log->rows = NULL;
    log->n = 0;
}

/* printf writes a non-finite double as nan, -nan, inf or -inf, which is not JSON: a copy of the line
 * with those values (after a ':') as null, so a step whose loss overflowed leaves a readable log.
 * NULL when out of memory; the caller frees. */
static char *nonfinite_to_null(const char *line) {
    static const char *words[] = {"-nan", "nan", "-inf", "inf"};
    char *out = malloc(2 * strlen(line) + 1), *o = out;
    if (!out) return NULL;
    for (const char *p = line; *p;) {
        *o++ = *p;
        if (*p++ != ':') continue;
        while (*p == ' ') *o++ = *p++;
        for (size_t w = 0; w < sizeof words / sizeof words[0]; w++) {
            size_t n = strlen(words[w]);
            if (strncmp(p, words[w], n) != 0 || (p[n] != ',' && p[n] != '}' && p[n] != ' ')) continue;
            memcpy(o, "null", 4);
            o += 4;
            p += n;
            break;
        }
    }
    *o = '\0';
    return out;
}

static int parse_row(const char *line, const char *where, metrics_row *r) {
    char *clean = nonfinite_to_null(line);
    if (!clean) return err_set(PEFT_ENOMEM, "%s: out of memory", where);
    cJSON *j = cJSON_Parse(clean);
    free(clean);
    if (!cJSON_IsObject(j)) {
        const char *what = j ? "not a JSON object" : "not valid JSON";
        cJSON_Delete(j);
        return err_set(PEFT_EFORMAT, "%s: %s", where, what);
    }
    *r = (metrics_row){.loss = NAN, .learning_rate = NAN, .tokens_per_second = NAN, .val_loss = NAN};
    int step = 0;
    int rc = json_get_int_req(j, "step", where, &step);
    const cJSON *loss = cJSON_GetObjectItemCaseSensitive(j, "loss");
    if (!rc && !loss) rc = err_set(PEFT_EFORMAT, "%s: missing required key 'loss'", where);
    if (!rc && !cJSON_IsNull(loss)) rc = json_get_double_req(j, "loss", where, &r->loss);
    if (!rc) rc = json_get_double_opt(j, "learning_rate", where, &r->learning_rate);
    if (!rc) rc = json_get_double_opt(j, "tokens_per_second", where, &r->tokens_per_second);
    if (!rc) rc = json_get_double_opt(j, "val_loss", where, &r->val_loss);
    if (!rc) rc = json_get_bool_opt(j, "skipped", where, &r->skipped);
    if (!rc && step < 0) rc = err_set(PEFT_EFORMAT, "%s: key 'step' must be >= 0, got %d", where, step);
    r->step = step;
    cJSON_Delete(j);
    return rc;
}

int metrics_read(const char *path, metrics_log *log) {
    *log = (metrics_log){0};
    char *text;
    size_t len;
    if (!file_exists(path)) return err_set(PEFT_EIO, "%s: no such file (not a directory `peft train` wrote?)", path);
    PEFT_TRY(file_read_all(path, &text, &len));
    size_t cap = 0;
    int rc = PEFT_OK;
    long lineno = 0;
    char where[4200];
    for (char *line = text; rc == PEFT_OK && line < text + len;) {
        char *nl = memchr(line, '\n', (size_t)(text + len - line));
        const bool complete = nl != NULL;
        if (nl) *nl = '\0';
        char *next = nl ? nl + 1 : text + len;
        lineno++;
        if (strspn(line, " \t\r") == strlen(line)) {
            line = next;
            continue;
        }
        snprintf(where, sizeof where, "%s:%ld", path, lineno);
        metrics_row r;
        rc = parse_row(line, where, &r);
        if (rc == PEFT_EFORMAT && !complete) { /* cut off mid-write: the run stopped there */
            rc = PEFT_OK;
            break;
        }
        if (rc) break;
        while (log->n > 0 && log->rows[log->n - 1].step >= r.step) log->n--; /* a resumed run */
        if (log->n == cap) {
            size_t ncap = cap ? 2 * cap : 256;
            metrics_row *grown = realloc(log->rows, ncap * sizeof *grown);
            if (!grown) {
                rc = err_set(PEFT_ENOMEM, "%s: out of memory", path);
                break;
            }
            log->rows = grown;
            cap = ncap;
        }
        log->rows[log->n++] = r;
        line = next;
    }
    free(text);
    if (rc == PEFT_OK && log->n == 0) rc = err_set(PEFT_EFORMAT, "%s: no logged steps (empty)", path);
    if (rc) metrics_free(log);
    return rc;
}
