/* cmd_tokenize.c - `peft tokenize`: text <-> token ids with a Hugging Face tokenizer. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "error.h"
#include "io/file.h"
#include "tokenizer/tokenizer.h"

static int encode_line(const tokenizer *tk, const char *text, size_t len, bool special, tok_ids *ids,
                       const char *where) {
    ids->n = 0;
    int rc = tokenizer_encode(tk, text, len, special, ids);
    if (rc) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", err_msg());
        return err_set(rc, "%s: %s", where, msg);
    }
    printf("{\"input_ids\": [");
    for (size_t i = 0; i < ids->n; i++) printf("%s%d", i ? ", " : "", ids->v[i]);
    printf("]}\n");
    return PEFT_OK;
}

static int decode_line(const tokenizer *tk, const char *line, bool skip_special, const char *where) {
    int *ids, n;
    PEFT_TRY(parse_input_ids(line, where, &ids, &n));
    char *text;
    size_t len;
    int rc = tokenizer_decode(tk, (const int32_t *)ids, (size_t)n, skip_special, &text, &len);
    free(ids);
    if (rc) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", err_msg());
        return err_set(rc, "%s: %s", where, msg);
    }
    fwrite(text, 1, len, stdout);
    fputc('\n', stdout);
    free(text);
    return PEFT_OK;
}

int cmd_tokenize(int argc, char **argv) {
    const char *path = NULL, *text = NULL, *input = NULL;
    bool decode = false, special = false;
    arg_spec specs[] = {
        {"--tokenizer", ARG_STRING, &path, "PATH", "model directory or tokenizer.json", ARG_REQUIRED, false},
        {"--text", ARG_STRING, &text, "TEXT", "text to encode (or, with --decode, a JSON id list line)", 0, false},
        {"--input", ARG_STRING, &input, "FILE", "encode (or decode) each line of FILE", 0, false},
        {"--decode", ARG_BOOL, &decode, NULL, "input lines are {\"input_ids\": [...]}; print the text", 0, false},
        {"--add-special-tokens", ARG_BOOL, &special, NULL, "encode: add BOS etc. as the tokenizer's post-processor says; "
                                                          "decode: keep special tokens", 0, false},
    };
    const arg_command cmd = {"tokenize", "--tokenizer PATH (--text T | --input FILE) [--decode]",
                             "Prints one JSON line {\"input_ids\": [...]} per input line, or with --decode the text\n"
                             "of each {\"input_ids\": [...]} line."};
    int rc = args_parse(&cmd, specs, (int)(sizeof specs / sizeof specs[0]), argc, argv);
    if (rc) return rc;
    if (!text == !input) return err_set(PEFT_EUSAGE, "tokenize: give exactly one of --text and --input");
    tokenizer *tk;
    PEFT_TRY(tokenizer_load(path, &tk));
    tok_ids ids = {0};
    if (text) {
        rc = decode ? decode_line(tk, text, !special, "--text") : encode_line(tk, text, strlen(text), special, &ids, "--text");
    } else {
        FILE *f;
        if ((rc = file_open_read(input, &f)) == PEFT_OK) {
            char *line = NULL, where[4200];
            size_t cap = 0;
            ssize_t got;
            long lineno = 0;
            while (rc == PEFT_OK && (got = getline(&line, &cap, f)) >= 0) {
                lineno++;
                if (got > 0 && line[got - 1] == '\n') line[--got] = '\0';
                snprintf(where, sizeof where, "%s:%ld", input, lineno);
                rc = decode ? decode_line(tk, line, !special, where)
                            : encode_line(tk, line, (size_t)got, special, &ids, where);
            }
            free(line);
            fclose(f);
        }
    }
    free(ids.v);
    tokenizer_free(tk);
    return rc;
}
