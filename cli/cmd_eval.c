/* cmd_eval.c - `peft eval`: mean next-token loss and perplexity over JSONL token sequences. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "error.h"
#include "model/model.h"

typedef struct line_list {
    int **ids;
    int *len;
    int n, cap, max_len;
} line_list;

static void lines_free(line_list *l) {
    for (int i = 0; i < l->n; i++) free(l->ids[i]);
    free(l->ids);
    free(l->len);
}

static int read_lines(const char *path, line_list *out) {
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "r");
    if (!f) return err_set(PEFT_EIO, "%s: cannot open", path);
    char *buf = NULL;
    size_t cap = 0;
    ssize_t got;
    int rc = PEFT_OK, lineno = 0;
    while ((got = getline(&buf, &cap, f)) >= 0) {
        lineno++;
        if (got <= 1 && (got == 0 || buf[0] == '\n')) continue;
        if (out->n == out->cap) {
            int nc = out->cap ? 2 * out->cap : 64;
            int **ni = realloc(out->ids, (size_t)nc * sizeof *ni);
            if (ni) out->ids = ni;
            int *nl = realloc(out->len, (size_t)nc * sizeof *nl);
            if (nl) out->len = nl;
            if (!ni || !nl) { rc = err_set(PEFT_ENOMEM, "%s: out of memory", path); break; }
            out->cap = nc;
        }
        char where[1200];
        snprintf(where, sizeof where, "%s:%d", path, lineno);
        if ((rc = parse_input_ids(buf, where, &out->ids[out->n], &out->len[out->n]))) break;
        if (out->len[out->n] > out->max_len) out->max_len = out->len[out->n];
        out->n++;
    }
    free(buf);
    fclose(f);
    if (rc == PEFT_OK && out->n == 0) rc = err_set(PEFT_EFORMAT, "%s: no input lines", path);
    if (rc) lines_free(out);
    return rc;
}

int cmd_eval(int argc, char **argv) {
    const char *model_dir = NULL, *input = NULL;
    bool json = false;
    compute_flags cf = {0};
    arg_spec specs[] = {
        {"--model", ARG_STRING, &model_dir, "DIR", "Hugging Face model directory", ARG_REQUIRED, false},
        {"--input", ARG_STRING, &input, "FILE.jsonl", "lines {\"input_ids\": [...]}", ARG_REQUIRED, false},
        {"--json", ARG_BOOL, &json, NULL, "one JSON line per input line: {\"loss\", \"tokens\"}", 0, false},
        COMPUTE_FLAG_SPECS(cf),
    };
    const arg_command cmd = {"eval", "--model DIR --input FILE.jsonl [--json]",
                             "Mean next-token loss (natural log) and perplexity of the model on each sequence\n"
                             "and over all of them (token-weighted)."};
    int rc = args_parse(&cmd, specs, (int)(sizeof specs / sizeof specs[0]), argc, argv);
    if (rc) return rc;
    gemm_backend be;
    PEFT_TRY(compute_setup(&cf, &be));
    line_list lines;
    PEFT_TRY(read_lines(input, &lines));
    model *m = NULL;
    model_acts *a = NULL;
    if ((rc = model_load(model_dir, be, &m))) goto out_free;
    if ((rc = model_acts_init(m, 1, lines.max_len, 0, &a))) goto out_free;
    int *targets = malloc((size_t)lines.max_len * sizeof *targets);
    if (!targets) { rc = err_set(PEFT_ENOMEM, "out of memory"); goto out_free; }
    double total = 0.0;
    long long total_tokens = 0;
    for (int i = 0; i < lines.n && rc == PEFT_OK; i++) {
        const int T = lines.len[i];
        double nll = 0.0;
        int count = 0;
        if (T >= 2) {
            for (int t = 0; t < T; t++) targets[t] = t + 1 < T ? lines.ids[i][t + 1] : -1;
            model_batch b = {.B = 1, .T = T, .tokens = lines.ids[i], .targets = targets};
            if ((rc = model_forward(m, a, &b, &nll, &count))) {
                char msg[1024];
                snprintf(msg, sizeof msg, "%s", err_msg());
                rc = err_set(rc, "%s: line %d: %s", input, i + 1, msg);
                break;
            }
        }
        total += nll;
        total_tokens += count;
        if (json) {
            if (count) printf("{\"loss\": %.9g, \"tokens\": %d}\n", nll / count, count);
            else printf("{\"loss\": null, \"tokens\": 0}\n");
        }
    }
    free(targets);
    if (rc == PEFT_OK && !json) {
        double loss = total_tokens ? total / (double)total_tokens : NAN;
        printf("sequences %d  tokens %lld  loss %.6f  perplexity %.4f\n", lines.n, total_tokens, loss, exp(loss));
    }
out_free:
    model_acts_free(a);
    model_free(m);
    lines_free(&lines);
    return rc;
}
