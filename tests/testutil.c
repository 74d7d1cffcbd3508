#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "error.h"
#include "io/file.h"
#include "rng.h"

const char *tu_fixture_path(const char *rel) {
    static char buf[4096];
    const char *root = getenv("PEFT_FIXTURES");
    snprintf(buf, sizeof buf, "%s/%s", root ? root : "tests/fixtures", rel);
    return buf;
}

double tu_max_abs_diff(const float *got, const float *want, size_t n, size_t *where) {
    double worst = 0.0;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)want[i]);
        if (d > worst || isnan(d)) {
            worst = isnan(d) ? INFINITY : d;
            at = i;
        }
    }
    if (where) *where = at;
    return worst;
}

double tu_assert_close_(const char *what, const float *got, const float *want, size_t n, double rtol,
                        const char *file, int line) {
    double scale = 1.0;
    for (size_t i = 0; i < n; i++)
        if (fabs(want[i]) > scale) scale = fabs(want[i]);
    size_t at = 0;
    double diff = tu_max_abs_diff(got, want, n, &at);
    double rel = diff / scale;
    if (!(rel <= rtol)) {
        print_error("%s: relative error %.3e > %.1e (max |diff| %.3e at [%zu]: got %.9g want %.9g, "
                    "scale %.4g, %zu elements)\n",
                    what, rel, rtol, diff, at, n ? got[at] : 0.0f, n ? want[at] : 0.0f, scale, n);
        _fail(file, line);
    }
    return rel;
}

char *tu_tmpdir(void) {
    const char *base = getenv("TMPDIR");
    char tmpl[4096];
    snprintf(tmpl, sizeof tmpl, "%s/peft-test-XXXXXX", base ? base : "/tmp");
    if (!mkdtemp(tmpl)) fail_msg("mkdtemp(%s) failed", tmpl);
    return strdup(tmpl);
}

void tu_rmtree(const char *path) {
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", path);
}

void tu_write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) fail_msg("cannot create %s", path);
    if (fwrite(data, 1, n, f) != n) fail_msg("cannot write %s", path);
    fclose(f);
}

char *tu_read_file(const char *path, size_t *len) {
    char *text;
    if (file_read_all(path, &text, len) != PEFT_OK) fail_msg("%s", err_msg());
    return text;
}

char *tu_join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    assert_non_null(p);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

void tu_write_st_raw(const char *path, const char *hdr, size_t data_len) {
    size_t n = strlen(hdr), total = 8 + n + data_len;
    unsigned char *buf = calloc(1, total);
    assert_non_null(buf);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)n >> (8 * i));
    memcpy(buf + 8, hdr, n);
    tu_write_file(path, buf, total);
    free(buf);
}

void tu_expect_error(int rc, int want, const char *p1, const char *p2, const char *p3) {
    const char *msg = err_msg();
    if (rc != want || (p1 && !strstr(msg, p1)) || (p2 && !strstr(msg, p2)) || (p3 && !strstr(msg, p3)))
        fail_msg("expected status %d (%s) and a message containing [%s] [%s] [%s]; got %d (%s): \"%s\"", want,
                 err_strerror(want), p1 ? p1 : "", p2 ? p2 : "", p3 ? p3 : "", rc, err_strerror(rc), msg);
}

bool tu_ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

float *tu_zeros(size_t n) {
    float *p = calloc(n ? n : 1, sizeof *p);
    assert_non_null(p);
    return p;
}

float *tu_randn(rng_state *r, size_t n, float mean, float std) {
    float *p = tu_zeros(n);
    for (size_t i = 0; i < n; i++) p[i] = mean + std * rng_normal(r);
    return p;
}

float *tu_copy_of(const float *src, size_t n) {
    float *p = tu_zeros(n);
    memcpy(p, src, n * sizeof *p);
    return p;
}

double tu_dot(const float *a, const float *b, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

int tu_read_jsonl(const char *path, cJSON **lines, int cap) {
    char *text;
    if (file_read_all(path, &text, NULL) != PEFT_OK) fail_msg("%s", err_msg());
    int n = 0;
    for (char *line = strtok(text, "\n"); line && n < cap; line = strtok(NULL, "\n")) {
        lines[n] = cJSON_Parse(line);
        if (!lines[n]) fail_msg("%s: line %d is not JSON", path, n + 1);
        n++;
    }
    free(text);
    return n;
}

/* A JSON list of strings or ints -> "a,b,c" in buf (NULL if absent or null). */
static const char *join_list(const cJSON *o, const char *key, char *buf, size_t cap) {
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsArray(a)) return NULL;
    buf[0] = '\0';
    for (const cJSON *e = a->child; e; e = e->next) {
        char item[64];
        if (cJSON_IsString(e)) snprintf(item, sizeof item, "%s", e->valuestring);
        else snprintf(item, sizeof item, "%d", e->valueint);
        snprintf(buf + strlen(buf), cap - strlen(buf), "%s%s", buf[0] ? "," : "", item);
    }
    return buf;
}

peft_config tu_case_config(const cJSON *c, char *targets, char *layers, char *ff) {
    const char *method = cJSON_GetObjectItem(c, "method")->valuestring;
    peft_method m;
    assert_int_equal(peft_method_parse(method, &m), PEFT_OK);
    peft_config pc;
    peft_config_defaults(&pc, m);
    const cJSON *v;
    if ((v = cJSON_GetObjectItem(c, "r"))) pc.r = v->valueint;
    if ((v = cJSON_GetObjectItem(c, "lora_alpha"))) pc.lora_alpha = (float)v->valuedouble;
    if ((v = cJSON_GetObjectItem(c, "use_rslora"))) pc.use_rslora = cJSON_IsTrue(v);
    if ((v = cJSON_GetObjectItem(c, "lora_bias"))) pc.lora_b_bias = cJSON_IsTrue(v);
    if ((v = cJSON_GetObjectItem(c, "num_virtual_tokens"))) pc.num_virtual_tokens = v->valueint;
    if ((v = cJSON_GetObjectItem(c, "prefix_projection"))) pc.prefix_projection = cJSON_IsTrue(v);
    if ((v = cJSON_GetObjectItem(c, "encoder_hidden_size"))) pc.encoder_hidden_size = v->valueint;
    if ((v = cJSON_GetObjectItem(c, "reduction_factor"))) pc.reduction_factor = (float)v->valuedouble;
    if ((v = cJSON_GetObjectItem(c, "non_linearity")) && cJSON_IsString(v)) pc.non_linearity = v->valuestring;
    pc.target_modules = join_list(c, "target_modules", targets, 512);
    pc.layers_to_transform = join_list(c, "layers_to_transform", layers, 512);
    pc.feedforward_modules = join_list(c, "feedforward_modules", ff, 512);
    return pc;
}
