#include "args.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "error.h"
#include "io/json.h"

static cJSON *config_root; /* keeps --config strings alive */

void args_release(void) {
    cJSON_Delete(config_root);
    config_root = NULL;
}

static int set_value(const arg_command *cmd, arg_spec *s, const char *v, const char *origin) {
    char *end;
    errno = 0;
    switch (s->type) {
    case ARG_INT: {
        long x = strtol(v, &end, 10);
        if (!*v || *end || errno || x < INT32_MIN || x > INT32_MAX)
            return err_set(PEFT_EUSAGE, "%s: %s%s expects an integer, got '%s'", cmd->name, origin, s->name, v);
        *(int *)s->dst = (int)x;
        break;
    }
    case ARG_U64: {
        unsigned long long x = strtoull(v, &end, 10);
        if (!*v || *end || errno || *v == '-')
            return err_set(PEFT_EUSAGE, "%s: %s%s expects a non-negative integer, got '%s'", cmd->name, origin,
                           s->name, v);
        *(uint64_t *)s->dst = x;
        break;
    }
    case ARG_FLOAT: {
        float x = strtof(v, &end);
        if (!*v || *end || errno || !isfinite(x))
            return err_set(PEFT_EUSAGE, "%s: %s%s expects a number, got '%s'", cmd->name, origin, s->name, v);
        *(float *)s->dst = x;
        break;
    }
    case ARG_DOUBLE: {
        double x = strtod(v, &end);
        if (!*v || *end || errno || !isfinite(x))
            return err_set(PEFT_EUSAGE, "%s: %s%s expects a number, got '%s'", cmd->name, origin, s->name, v);
        *(double *)s->dst = x;
        break;
    }
    case ARG_STRING:
        *(const char **)s->dst = v;
        break;
    case ARG_BOOL:
        if (!strcmp(v, "true") || !strcmp(v, "1")) *(bool *)s->dst = true;
        else if (!strcmp(v, "false") || !strcmp(v, "0")) *(bool *)s->dst = false;
        else return err_set(PEFT_EUSAGE, "%s: %s%s expects true or false, got '%s'", cmd->name, origin, s->name, v);
        break;
    }
    s->seen = true;
    return PEFT_OK;
}

/* "--max-new-tokens" <-> "max_new_tokens" */
static bool key_matches(const char *flag, const char *key) {
    flag += 2;
    for (; *flag && *key; flag++, key++)
        if (!(*flag == *key || (*flag == '-' && *key == '_'))) return false;
    return !*flag && !*key;
}

static int apply_config(const arg_command *cmd, arg_spec *specs, int n, const char *path) {
    cJSON *root;
    PEFT_TRY(json_load_file(path, &root));
    args_release();
    config_root = root;
    char origin[1100];
    snprintf(origin, sizeof origin, "%s: key for ", path);
    for (const cJSON *item = root->child; item; item = item->next) {
        arg_spec *s = NULL;
        for (int i = 0; i < n && !s; i++)
            if (key_matches(specs[i].name, item->string)) s = &specs[i];
        if (!s) return err_set(PEFT_EUSAGE, "%s: unknown key '%s' for peft %s", path, item->string, cmd->name);
        char buf[64];
        const char *v = buf;
        if (cJSON_IsString(item)) v = item->valuestring;
        else if (cJSON_IsBool(item)) v = cJSON_IsTrue(item) ? "true" : "false";
        else if (cJSON_IsNumber(item)) snprintf(buf, sizeof buf, "%.17g", item->valuedouble);
        else return err_set(PEFT_EUSAGE, "%s: key '%s' must be a string, number or boolean", path, item->string);
        PEFT_TRY(set_value(cmd, s, v, origin));
    }
    return PEFT_OK;
}

int args_parse(const arg_command *cmd, arg_spec *specs, int n, int argc, char **argv) {
    for (int i = 0; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            args_print_help(cmd, specs, n);
            return ARGS_HELP_SHOWN;
        }
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strncmp(a, "--config=", 9)) PEFT_TRY(apply_config(cmd, specs, n, a + 9));
        else if (!strcmp(a, "--config")) {
            if (i + 1 >= argc) return err_set(PEFT_EUSAGE, "%s: --config needs a FILE.json", cmd->name);
            PEFT_TRY(apply_config(cmd, specs, n, argv[i + 1]));
        }
    }
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--config")) { i++; continue; }
        if (!strncmp(a, "--config=", 9)) continue;
        if (strncmp(a, "--", 2) != 0)
            return err_set(PEFT_EUSAGE, "%s: unexpected argument '%s' (see peft %s --help)", cmd->name, a, cmd->name);
        const char *eq = strchr(a, '=');
        size_t len = eq ? (size_t)(eq - a) : strlen(a);
        arg_spec *s = NULL;
        for (int j = 0; j < n && !s; j++)
            if (strlen(specs[j].name) == len && !strncmp(specs[j].name, a, len)) s = &specs[j];
        if (!s)
            return err_set(PEFT_EUSAGE, "%s: unknown flag '%.*s' (see peft %s --help)", cmd->name, (int)len, a,
                           cmd->name);
        const char *v;
        if (eq) v = eq + 1;
        else if (s->type == ARG_BOOL) v = "true";
        else if (i + 1 < argc) v = argv[++i];
        else return err_set(PEFT_EUSAGE, "%s: %s needs a value (%s)", cmd->name, s->name, s->meta);
        PEFT_TRY(set_value(cmd, s, v, ""));
    }
    for (int i = 0; i < n; i++)
        if ((specs[i].flags & ARG_REQUIRED) && !specs[i].seen)
            return err_set(PEFT_EUSAGE, "%s: missing required flag %s %s (see peft %s --help)", cmd->name,
                           specs[i].name, specs[i].meta ? specs[i].meta : "", cmd->name);
    return PEFT_OK;
}

void args_print_help(const arg_command *cmd, const arg_spec *specs, int n) {
    printf("usage: peft %s %s\n\n%s\n\nflags:\n", cmd->name, cmd->synopsis, cmd->summary);
    for (int i = 0; i < n; i++) {
        const arg_spec *s = &specs[i];
        char left[64], def[96] = "";
        snprintf(left, sizeof left, "%s%s%s", s->name, s->meta ? " " : "", s->meta ? s->meta : "");
        if (!(s->flags & ARG_REQUIRED)) {
            switch (s->type) {
            case ARG_INT: snprintf(def, sizeof def, " (default %d)", *(int *)s->dst); break;
            case ARG_U64: snprintf(def, sizeof def, " (default %llu)", (unsigned long long)*(uint64_t *)s->dst); break;
            case ARG_FLOAT: snprintf(def, sizeof def, " (default %g)", *(float *)s->dst); break;
            case ARG_DOUBLE: snprintf(def, sizeof def, " (default %g)", *(double *)s->dst); break;
            case ARG_STRING:
                if (*(const char **)s->dst) snprintf(def, sizeof def, " (default %s)", *(const char **)s->dst);
                break;
            case ARG_BOOL: break;
            }
        } else {
            snprintf(def, sizeof def, " (required)");
        }
        if (strlen(left) > 34) printf("  %s\n  %-34s %s%s\n", left, "", s->help, def); /* too wide: own line */
        else printf("  %-34s %s%s\n", left, s->help, def);
    }
    /* a command without a flag table (inspect) parses no --config */
    if (specs) printf("  %-34s %s\n", "--config FILE.json", "read flags from JSON (keys: flag names with underscores)");
    printf("  %-34s %s\n", "--help", "show this help");
}
