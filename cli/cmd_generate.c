/* cmd_generate.c - `peft generate`: continue a prompt of token ids. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "error.h"
#include "export/adapter_load.h"
#include "model/generate.h"
#include "model/model.h"
#include "peft/peft.h"
#include "run_open.h"
#include "tokenizer/tokenizer.h"

/* "12,7 99" -> ids (commas and/or spaces). */
static int parse_id_list(const char *s, int **out, int *n) {
    int cap = 16, count = 0;
    int *ids = malloc((size_t)cap * sizeof *ids);
    if (!ids) return err_set(PEFT_ENOMEM, "out of memory");
    const char *p = s;
    while (*p) {
        while (*p == ',' || *p == ' ') p++;
        if (!*p) break;
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 0 || v > 0x7fffffff || (*end && *end != ',' && *end != ' ')) {
            free(ids);
            return err_set(PEFT_EUSAGE, "generate: --prompt-ids expects comma-separated token ids, got '%s'", s);
        }
        if (count == cap) {
            int *nid = realloc(ids, (size_t)(cap *= 2) * sizeof *ids);
            if (!nid) { free(ids); return err_set(PEFT_ENOMEM, "out of memory"); }
            ids = nid;
        }
        ids[count++] = (int)v;
        p = end;
    }
    if (!count) {
        free(ids);
        return err_set(PEFT_EUSAGE, "generate: --prompt-ids is empty");
    }
    *out = ids;
    *n = count;
    return PEFT_OK;
}

int cmd_generate(int argc, char **argv) {
    const char *model_dir = NULL, *prompt = NULL, *text = NULL, *run = NULL, *adapter = NULL;
    bool json = false;
    int step = -1;
    gen_options o = {.max_new_tokens = 32, .temperature = 0.0f, .top_k = 0, .seed = 0, .stop_token = -1};
    bool ignore_eos = false;
    compute_flags cf = {0};
    arg_spec specs[] = {
        {"--model", ARG_STRING, &model_dir, "DIR", "Hugging Face model directory (with --run: overrides the run's)", 0, false},
        {"--run", ARG_STRING, &run, "RUN_DIR", "generate with a trained run: base model + its checkpoint", 0, false},
        {"--step", ARG_INT, &step, "N", "with --run: the checkpoint's step (-1: the latest)", 0, false},
        {"--adapter", ARG_STRING, &adapter, "DIR", "with --model: a peft or AdapterHub adapter directory", 0, false},
        {"--prompt", ARG_STRING, &text, "TEXT", "prompt text (the model directory's tokenizer)", 0, false},
        {"--prompt-ids", ARG_STRING, &prompt, "IDS", "prompt token ids, comma-separated", 0, false},
        {"--json", ARG_BOOL, &json, NULL, "print {\"input_ids\", \"new_tokens\"} (and \"text\") as JSON", 0, false},
        {"--max-new-tokens", ARG_INT, &o.max_new_tokens, "N", "tokens to generate", 0, false},
        {"--temperature", ARG_FLOAT, &o.temperature, "T", "0: greedy; otherwise sample softmax(logits/T)", 0, false},
        {"--top-k", ARG_INT, &o.top_k, "K", "sample among the K most likely tokens (0: all)", 0, false},
        {"--seed", ARG_U64, &o.seed, "S", "sampling seed", 0, false},
        {"--ignore-eos", ARG_BOOL, &ignore_eos, NULL, "do not stop at the model's eos_token_id", 0, false},
        COMPUTE_FLAG_SPECS(cf),
    };
    const arg_command cmd = {"generate", "(--model DIR [--adapter DIR] | --run RUN_DIR) (--prompt TEXT | --prompt-ids IDS) [--max-new-tokens N] "
                             "[--temperature T] [--top-k K] [--seed S] [--json]",
                             "Continues the prompt with a key/value cache. Prints the text (prompt and\n"
                             "continuation) when the model has a tokenizer, else (or with --json) one JSON line\n"
                             "{\"input_ids\": [prompt and new ids], \"new_tokens\": N}."};
    int rc = args_parse(&cmd, specs, (int)(sizeof specs / sizeof specs[0]), argc, argv);
    if (rc) return rc;
    if (o.max_new_tokens <= 0) return err_set(PEFT_EUSAGE, "generate: --max-new-tokens must be positive");
    if (o.temperature < 0) return err_set(PEFT_EUSAGE, "generate: --temperature must be >= 0");
    if (o.top_k < 0) return err_set(PEFT_EUSAGE, "generate: --top-k must be >= 0");
    if (!prompt == !text) return err_set(PEFT_EUSAGE, "generate: give exactly one of --prompt and --prompt-ids");
    if (!model_dir && !run) return err_set(PEFT_EUSAGE, "generate: give --model or --run");
    if (adapter && (run || !model_dir)) return err_set(PEFT_EUSAGE, "generate: --adapter goes with --model, not --run");
    gemm_backend be;
    PEFT_TRY(compute_setup(&cf, &be));
    model_opts mo;
    PEFT_TRY(compute_model_opts(&cf, 0, &mo));
    int *ids = NULL, n = 0;
    model *m = NULL;
    tokenizer *tk = NULL;
    run_handle rh = {0};
    adapter_file *af = NULL;
    peft_model *p = NULL;
    int *out = malloc((size_t)o.max_new_tokens * sizeof *out);
    if (!out) { rc = err_set(PEFT_ENOMEM, "out of memory"); goto out_free; }
    if (run) {
        if ((rc = run_open_with(run, step, model_dir, be, compute_storage_given(&cf) ? &mo : NULL, &rh))) goto out_free;
        m = rh.m;
        tk = rh.tk;
        model_dir = rh.model_dir;
        p = rh.p;
    } else {
        if ((rc = model_load_with(model_dir, be, &mo, &m))) goto out_free;
        if ((rc = model_tokenizer_load(model_dir, &tk))) goto out_free;
        if (adapter && (rc = adapter_open(adapter, m, &af))) goto out_free;
        if (adapter && (rc = adapter_apply(af, m, adapter_config(af), tk, &p))) goto out_free;
    }
    if (p) {
        o.virtual_embeds = peft_model_virtual(p, &o.n_virtual);
        o.prefix = peft_model_prefix(p, &o.n_prefix);
    }
    if (text) {
        if (!tk) {
            rc = err_set(PEFT_EUSAGE, "generate: %s has no tokenizer (tokenizer.json); use --prompt-ids", model_dir);
            goto out_free;
        }
        tok_ids t = {0};
        if ((rc = tokenizer_encode(tk, text, strlen(text), true, &t))) goto out_free;
        ids = t.v;
        n = (int)t.n;
    } else if ((rc = parse_id_list(prompt, &ids, &n))) {
        goto out_free;
    }
    if (!ignore_eos) o.stop_token = m->cfg.eos_token_id;
    if (p && (rc = peft_model_reserve(p, 1, n))) goto out_free;
    int n_out;
    if ((rc = model_generate(m, ids, n, &o, out, &n_out))) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", err_msg());
        rc = err_set(rc, "generate: %s", msg);
        goto out_free;
    }
    if (tk && !json) {
        int *all = malloc((size_t)(n + n_out) * sizeof *all);
        char *s;
        size_t len;
        if (!all) { rc = err_set(PEFT_ENOMEM, "out of memory"); goto out_free; }
        memcpy(all, ids, (size_t)n * sizeof *all);
        memcpy(all + n, out, (size_t)n_out * sizeof *all);
        rc = tokenizer_decode(tk, (const int32_t *)all, (size_t)(n + n_out), true, &s, &len);
        free(all);
        if (rc) goto out_free;
        fwrite(s, 1, len, stdout);
        fputc('\n', stdout);
        free(s);
    } else {
        printf("{\"input_ids\": [");
        for (int i = 0; i < n + n_out; i++) printf("%s%d", i ? ", " : "", i < n ? ids[i] : out[i - n]);
        printf("], \"new_tokens\": %d}\n", n_out);
    }
out_free:
    if (run) {
        run_close(&rh);
    } else {
        peft_model_free(p);
        adapter_close(af);
        tokenizer_free(tk);
        model_free(m);
    }
    free(ids);
    free(out);
    return rc;
}
