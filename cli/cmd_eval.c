/* cmd_eval.c - `peft eval`: mean next-token loss and perplexity over JSONL lines or a dataset. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "data/batch.h"
#include "data/dataset.h"
#include "data/document.h"
#include "error.h"
#include "io/file.h"
#include "export/adapter_load.h"
#include "model/model.h"
#include "peft/peft.h"
#include "progress.h"
#include "run_open.h"
#include "tokenizer/tokenizer.h"

/* The model's loss on a batch, through the trained method when there is one. */
static int eval_forward(model *m, peft_model *p, model_acts *a, const int *tokens, const int *targets, int B, int T,
                        double *nll, int *count) {
    if (p) return peft_model_forward(p, a, tokens, targets, B, T, nll, count);
    model_batch b = {.B = B, .T = T, .tokens = tokens, .targets = targets};
    return model_forward(m, a, &b, nll, count);
}

/* Activations (and the method's scratch) for B sequences of T real tokens. */
static int eval_acts(model *m, peft_model *p, int B, int T, model_acts **a) {
    if (!p) return model_acts_init(m, B, T, 0, a);
    PEFT_TRY(peft_model_reserve(p, B, T));
    return model_acts_init(m, B, peft_model_positions(p, T), peft_model_prefix_len(p), a);
}

/* Loss of one sequence whose every token after the first is a target. */
static int eval_sequence(model *m, peft_model *p, model_acts *a, const int *ids, int T, int *targets, double *nll,
                         int *count) {
    *nll = 0.0;
    *count = 0;
    if (T < 2) return PEFT_OK;
    for (int t = 0; t < T; t++) targets[t] = t + 1 < T ? ids[t + 1] : -1;
    return eval_forward(m, p, a, ids, targets, 1, T, nll, count);
}

/* Each line is tokenized (text) or read (input_ids) and evaluated on its own. */
static int eval_lines(model *m, peft_model *p, const tokenizer *tk, const char *path, bool json, double *total,
                      long long *tokens, int *nlines) {
    FILE *f;
    PEFT_TRY(file_open_read(path, &f));
    const int max_T = m->cfg.arch == ARCH_GPT2 ? m->cfg.max_positions : 8192;
    model_acts *a = NULL;
    int *targets = malloc((size_t)max_T * sizeof *targets), rc = PEFT_OK;
    document doc = {0};
    char *line = NULL, where[4200];
    size_t cap = 0;
    ssize_t got;
    long lineno = 0;
    int acts_T = 0;
    if (!targets) rc = err_set(PEFT_ENOMEM, "out of memory");
    while (rc == PEFT_OK && (got = getline(&line, &cap, f)) >= 0) {
        lineno++;
        if (strspn(line, " \t\r\n") == (size_t)got) continue;
        snprintf(where, sizeof where, "%s:%ld", path, lineno);
        cJSON *j = cJSON_ParseWithLength(line, (size_t)got);
        doc_format used;
        rc = j ? document_from_json(&doc, j, DOC_AUTO, tk, CHAT_CHATML, m->cfg.vocab_size, where, &used)
               : err_set(PEFT_EFORMAT, "%s: not valid JSON", where);
        cJSON_Delete(j);
        if (rc) break;
        int T = (int)doc.ids.n;
        if (T > max_T) {
            rc = err_set(PEFT_EMISMATCH, "%s: %d tokens exceed the model's %d positions", where, T, max_T);
            break;
        }
        if (T > acts_T) { /* grow the activations to the longest line seen */
            model_acts_free(a);
            acts_T = T < 64 ? 64 : T;
            if ((rc = eval_acts(m, p, 1, acts_T, &a))) break;
        }
        double nll;
        int count;
        if ((rc = eval_sequence(m, p, a, doc.ids.v, T, targets, &nll, &count))) {
            char msg[1024];
            snprintf(msg, sizeof msg, "%s", err_msg());
            rc = err_set(rc, "%s: %s", where, msg);
            break;
        }
        *total += nll;
        *tokens += count;
        (*nlines)++;
        if (json) {
            if (count) printf("{\"loss\": %.9g, \"tokens\": %d}\n", nll / count, count);
            else printf("{\"loss\": null, \"tokens\": 0}\n");
        }
    }
    if (rc == PEFT_OK && *nlines == 0) rc = err_set(PEFT_EFORMAT, "%s: no input lines", path);
    free(line);
    free(targets);
    document_free(&doc);
    model_acts_free(a);
    fclose(f);
    return rc;
}

/* The validation split (the training split when there is none), batched. */
static int eval_dataset(model *m, peft_model *p, const tokenizer *tk, const char *model_dir, const char *data_dir,
                        int batch, double *total, long long *tokens, int *nseq) {
    dataset *d;
    PEFT_TRY(dataset_open(data_dir, &d));
    const dataset_info *in = dataset_get_info(d);
    dataset_split split = in->sequences[DATASET_VAL] ? DATASET_VAL : DATASET_TRAIN;
    model_acts *a = NULL;
    data_batch db = {0};
    uint64_t *idx = malloc((size_t)batch * sizeof *idx);
    int rc = check_dataset_fits_model(d, data_dir, tk, m->cfg.vocab_size, model_dir);
    if (!rc && !idx) rc = err_set(PEFT_ENOMEM, "out of memory");
    if (!rc) rc = data_batch_init(&db, batch, in->seq_len);
    if (!rc) rc = eval_acts(m, p, batch, in->seq_len, &a);
    progress pr;
    progress_init(&pr, 5.0);
    const uint64_t n = in->sequences[split];
    for (uint64_t i = 0; rc == PEFT_OK && i < n; i += (uint64_t)batch) {
        int B = (int)(n - i < (uint64_t)batch ? n - i : (uint64_t)batch);
        for (int k = 0; k < B; k++) idx[k] = i + (uint64_t)k;
        if ((rc = data_batch_fill(&db, d, split, idx, B, m->cfg.vocab_size))) break;
        double nll;
        int count;
        if ((rc = eval_forward(m, p, a, db.tokens, db.targets, db.B, db.T, &nll, &count))) break;
        *total += nll;
        *tokens += count;
        *nseq += B;
        if (progress_due(&pr))
            progress_show(&pr, "eval: %llu/%llu sequences, loss %.4f", (unsigned long long)(i + (uint64_t)B),
                          (unsigned long long)n, *tokens ? *total / (double)*tokens : 0.0);
    }
    progress_done(&pr);
    free(idx);
    data_batch_free(&db);
    model_acts_free(a);
    dataset_close(d);
    return rc;
}

int cmd_eval(int argc, char **argv) {
    const char *model_dir = NULL, *input = NULL, *data = NULL, *run = NULL, *adapter = NULL;
    bool json = false;
    int batch = 8, step = -1;
    compute_flags cf = {0};
    arg_spec specs[] = {
        {"--model", ARG_STRING, &model_dir, "DIR", "Hugging Face model directory (with --run: overrides the run's)", 0, false},
        {"--run", ARG_STRING, &run, "RUN_DIR", "evaluate a trained run: base model + its checkpoint", 0, false},
        {"--step", ARG_INT, &step, "N", "with --run: the checkpoint's step (-1: the latest)", 0, false},
        {"--adapter", ARG_STRING, &adapter, "DIR", "with --model: a peft or AdapterHub adapter directory", 0, false},
        {"--input", ARG_STRING, &input, "FILE.jsonl", "lines {\"text\"} (the model's tokenizer) or {\"input_ids\"}", 0, false},
        {"--data", ARG_STRING, &data, "DATA_DIR", "a dataset from peft prep (its validation split)", 0, false},
        {"--json", ARG_BOOL, &json, NULL, "with --input: one JSON line per input line: {\"loss\", \"tokens\"}", 0, false},
        {"--batch-size", ARG_INT, &batch, "N", "with --data: sequences per forward pass", 0, false},
        COMPUTE_FLAG_SPECS(cf),
    };
    const arg_command cmd = {"eval", "(--model DIR [--adapter DIR] | --run RUN_DIR [--step N]) (--input FILE.jsonl [--json] | --data DATA_DIR)",
                             "Mean next-token loss (natural log) and perplexity over all predicted tokens;\n"
                             "with --input --json also per line."};
    int rc = args_parse(&cmd, specs, (int)(sizeof specs / sizeof specs[0]), argc, argv);
    if (rc) return rc;
    if (!model_dir && !run) return err_set(PEFT_EUSAGE, "eval: give --model or --run");
    if (adapter && (run || !model_dir)) return err_set(PEFT_EUSAGE, "eval: --adapter goes with --model, not --run");
    if (!input == !data) return err_set(PEFT_EUSAGE, "eval: give exactly one of --input and --data");
    if (batch <= 0) return err_set(PEFT_EUSAGE, "eval: --batch-size must be positive");
    if (json && !input) return err_set(PEFT_EUSAGE, "eval: --json goes with --input");
    gemm_backend be;
    PEFT_TRY(compute_setup(&cf, &be));
    model_opts mo;
    PEFT_TRY(compute_model_opts(&cf, 0, &mo));
    run_handle rh = {0};
    model *m = NULL;
    tokenizer *tk = NULL;
    peft_model *p = NULL;
    adapter_file *af = NULL;
    if (run) {
        if ((rc = run_open_with(run, step, model_dir, be, compute_storage_given(&cf) ? &mo : NULL, &rh))) goto out;
        m = rh.m;
        tk = rh.tk;
        p = rh.p;
        model_dir = rh.model_dir;
    } else {
        if ((rc = model_load_with(model_dir, be, &mo, &m))) goto out;
        if ((rc = model_tokenizer_load(model_dir, &tk))) goto out;
        if (adapter && (rc = adapter_open(adapter, m, &af))) goto out;
        if (adapter && (rc = adapter_apply(af, m, adapter_config(af), tk, &p))) goto out;
    }
    double total = 0.0;
    long long tokens = 0;
    int n = 0;
    rc = input ? eval_lines(m, p, tk, input, json, &total, &tokens, &n)
               : eval_dataset(m, p, tk, model_dir, data, batch, &total, &tokens, &n);
    if (rc == PEFT_OK && !json && tokens == 0)
        rc = err_set(PEFT_EFORMAT, "%s: nothing to predict (every line has fewer than two tokens)", input ? input : data);
    if (rc == PEFT_OK && !json) {
        double loss = total / (double)tokens;
        printf("sequences %d  tokens %lld  loss %.6f  perplexity %.4f\n", n, tokens, loss, exp(loss));
    }
out:
    if (run) {
        run_close(&rh);
    } else {
        peft_model_free(p);
        adapter_close(af);
        tokenizer_free(tk);
        model_free(m);
    }
    return rc;
}
