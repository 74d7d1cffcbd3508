/* cmd_prep.c - `peft prep`: JSONL documents -> tokenized, packed, sharded LMDB dataset. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "data/dataset.h"
#include "data/document.h"
#include "data/packer.h"
#include "error.h"
#include "io/file.h"
#include "progress.h"
#include "tokenizer/tokenizer.h"

typedef struct prep_opts {
    const char *tokenizer, *input, *out, *format, *chat, *on_error;
    int seq_len, shards, eos_id;
    float val_fraction;
    uint64_t seed;
    bool no_pack;
} prep_opts;

/* Ctrl-C or SIGTERM stops the loop, so the partial directory is removed rather than left behind. */
static volatile sig_atomic_t interrupted;
static void on_signal(int sig) { interrupted = sig; }

/* Deterministic per-document split: the same seed sends the same documents to validation. */
static bool goes_to_val(uint64_t seed, uint64_t doc, float fraction) {
    uint64_t z = seed * 0x9e3779b97f4a7c15ull + doc + 0x632be59bd9b4e019ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (double)(z >> 11) * (1.0 / 9007199254740992.0) < fraction;
}

static int check_opts(const prep_opts *o, doc_format *fmt, bool *skip) {
    PEFT_TRY(doc_format_parse(o->format, fmt));
    if (o->seq_len < 2) return err_set(PEFT_EUSAGE, "prep: --seq-len must be at least 2, got %d", o->seq_len);
    if (o->shards < 1 || o->shards > 99999) return err_set(PEFT_EUSAGE, "prep: --shards must be in 1..99999");
    if (!(o->val_fraction >= 0.0f && o->val_fraction < 1.0f))
        return err_set(PEFT_EUSAGE, "prep: --val-fraction must be in [0, 1), got %g", o->val_fraction);
    if (!strcmp(o->on_error, "skip")) *skip = true;
    else if (!strcmp(o->on_error, "fail")) *skip = false;
    else return err_set(PEFT_EUSAGE, "prep: --on-error must be skip or fail, got '%s'", o->on_error);
    if (!o->tokenizer && *fmt != DOC_TOKENS && *fmt != DOC_AUTO)
        return err_set(PEFT_EUSAGE, "prep: --format %s needs --tokenizer", o->format);
    return PEFT_OK;
}

int cmd_prep(int argc, char **argv) {
    prep_opts o = {.format = "auto", .on_error = "fail", .seq_len = 1024, .shards = 1, .eos_id = -1,
                   .val_fraction = 0.05f, .seed = 42};
    arg_spec specs[] = {
        {"--tokenizer", ARG_STRING, &o.tokenizer, "PATH", "model directory or tokenizer.json (not needed for input_ids)", 0, false},
        {"--input", ARG_STRING, &o.input, "FILE.jsonl", "one JSON document per line", ARG_REQUIRED, false},
        {"--out", ARG_STRING, &o.out, "DATA_DIR", "dataset directory to create (must not exist)", ARG_REQUIRED, false},
        {"--seq-len", ARG_INT, &o.seq_len, "N", "tokens per training sequence", 0, false},
        {"--shards", ARG_INT, &o.shards, "N", "training shards (LMDB environments)", 0, false},
        {"--val-fraction", ARG_FLOAT, &o.val_fraction, "F", "fraction of documents held out for validation", 0, false},
        {"--format", ARG_STRING, &o.format, "F", "auto|text|prompt-completion|chat|tokens", 0, false},
        {"--chat-template", ARG_STRING, &o.chat, "T", "chatml|llama3 (default: from the tokenizer's tokens)", 0, false},
        {"--no-pack", ARG_BOOL, &o.no_pack, NULL, "one sequence per document, truncated to --seq-len", 0, false},
        {"--eos-token-id", ARG_INT, &o.eos_id, "ID", "separator after each document (default: the tokenizer's EOS)", 0, false},
        {"--seed", ARG_U64, &o.seed, "S", "seed of the validation split", 0, false},
        {"--on-error", ARG_STRING, &o.on_error, "fail|skip", "what a malformed line does", 0, false},
    };
    const arg_command cmd = {"prep", "--input FILE.jsonl --out DATA_DIR [--tokenizer PATH] [--seq-len N] [--shards N] ...",
                             "Tokenizes JSONL documents ({\"text\"}, {\"prompt\",\"completion\"}, {\"messages\"} or\n"
                             "{\"input_ids\"}) into training sequences with a loss mask, packed (EOS between\n"
                             "documents) or one per document, in sharded LMDB environments with a manifest."};
    int rc = args_parse(&cmd, specs, (int)(sizeof specs / sizeof specs[0]), argc, argv);
    if (rc) return rc;
    doc_format fmt = DOC_AUTO;
    bool skip = false;
    PEFT_TRY(check_opts(&o, &fmt, &skip));

    tokenizer *tk = NULL;
    if (o.tokenizer) PEFT_TRY(tokenizer_load(o.tokenizer, &tk));
    chat_template tmpl = chat_template_guess(tk);
    if (o.chat && (rc = chat_template_parse(o.chat, &tmpl))) goto out_tk;
    dataset_info info = {.seq_len = o.seq_len, .packed = !o.no_pack, .num_shards = o.shards, .seed = o.seed,
                         .eos_token_id = o.eos_id, .vocab_size = tk ? tokenizer_vocab_size(tk) : 0};
    if (tk) {
        snprintf(info.tokenizer_fingerprint, sizeof info.tokenizer_fingerprint, "%s", tokenizer_fingerprint(tk));
        if (info.eos_token_id < 0) info.eos_token_id = tokenizer_eos_id(tk);
    }
    FILE *in;
    if ((rc = file_open_read(o.input, &in))) goto out_tk;
    struct stat st;
    double total_bytes = fstat(fileno(in), &st) == 0 ? (double)st.st_size : 0.0;
    dataset_writer *w = NULL;
    packer packs[2] = {0};
    document doc = {0};
    if ((rc = dataset_writer_open(o.out, &info, &w))) goto out_in;
    for (int s = 0; s < 2 && rc == PEFT_OK; s++)
        rc = packer_init(&packs[s], w, (dataset_split)s, o.seq_len, !o.no_pack, info.eos_token_id);
    if (rc) goto out_abort;

    progress pr;
    progress_init(&pr, 5.0);
    struct sigaction sa = {.sa_handler = on_signal}, old_int, old_term;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    char *line = NULL, where[4200];
    size_t cap = 0;
    ssize_t got;
    long lineno = 0, skipped = 0;
    uint64_t docs = 0, max_id = 0;
    double bytes = 0;
    while ((got = getline(&line, &cap, in)) >= 0) {
        if (interrupted) break; /* reported below */
        lineno++;
        bytes += (double)got;
        if (strspn(line, " \t\r\n") == (size_t)got) continue;
        snprintf(where, sizeof where, "%s:%ld", o.input, lineno);
        cJSON *j = cJSON_ParseWithLength(line, (size_t)got);
        doc_format used;
        rc = j ? document_from_json(&doc, j, fmt, tk, tmpl, info.vocab_size, where, &used)
               : err_set(PEFT_EFORMAT, "%s: not valid JSON", where);
        cJSON_Delete(j);
        if (rc == PEFT_EFORMAT && skip) {
            if (skipped < 5) fprintf(stderr, "peft: skipped %s\n", err_msg());
            skipped++;
            rc = PEFT_OK;
            continue;
        }
        if (rc) break;
        for (size_t i = 0; i < doc.ids.n; i++)
            if ((uint64_t)doc.ids.v[i] > max_id) max_id = (uint64_t)doc.ids.v[i];
        dataset_split split = goes_to_val(o.seed, docs++, o.val_fraction) ? DATASET_VAL : DATASET_TRAIN;
        if ((rc = packer_add(&packs[split], doc.ids.v, doc.mask, (int)doc.ids.n))) break;
        if (progress_due(&pr)) {
            double rate = bytes / progress_elapsed(&pr);
            progress_show(&pr, "prep: %.1f/%.1f MB (%.0f%%), %llu documents, %.2f MB/s, eta %.0fs", bytes / 1e6,
                          total_bytes / 1e6, total_bytes > 0 ? 100.0 * bytes / total_bytes : 0.0,
                          (unsigned long long)docs, rate / 1e6, total_bytes > bytes ? (total_bytes - bytes) / rate : 0.0);
        }
    }
    progress_done(&pr);
    /* also a signal during a read, which ends getline() as EOF would: it must not pass for the end */
    if (rc == PEFT_OK && interrupted)
        rc = err_set(PEFT_EIO, "prep: interrupted by signal %d; %s not written", (int)interrupted, o.out);
    if (rc == PEFT_OK && ferror(in)) rc = err_set(PEFT_EIO, "%s: read error", o.input);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    free(line);
    if (rc == PEFT_OK && docs == 0) rc = err_set(PEFT_EFORMAT, "%s: no documents (empty input)", o.input);
    for (int s = 0; s < 2 && rc == PEFT_OK; s++) rc = packer_flush(&packs[s]);
    if (rc) goto out_abort;
    if (!tk) dataset_writer_set_vocab_size(w, (int)max_id + 1);
    /* summary before finish: finish frees the writer */
    const dataset_info *fin = dataset_writer_info(w);
    double masked = fin->tokens[0] + fin->tokens[1] > 0
                        ? 1.0 - (double)(fin->loss_tokens[0] + fin->loss_tokens[1]) / (fin->tokens[0] + fin->tokens[1])
                        : 0.0;
    char summary[1024];
    snprintf(summary, sizeof summary,
             "prep: %s: %llu documents (%llu train, %llu val), %llu tokens, %llu + %llu sequences of <= %d tokens, "
             "%.1f%% of tokens masked out of the loss, %.2f MB in %.1f s (%.2f MB/s)",
             o.out, (unsigned long long)docs, (unsigned long long)fin->documents[0], (unsigned long long)fin->documents[1],
             (unsigned long long)(fin->tokens[0] + fin->tokens[1]), (unsigned long long)fin->sequences[0],
             (unsigned long long)fin->sequences[1], o.seq_len, 100.0 * masked, bytes / 1e6, progress_elapsed(&pr),
             bytes / 1e6 / progress_elapsed(&pr));
    uint64_t truncated = packs[0].truncated + packs[1].truncated;
    rc = dataset_writer_finish(w);
    w = NULL;
    if (rc) goto out_abort;
    printf("%s\n", summary);
    if (skipped) fprintf(stderr, "peft: prep skipped %ld malformed line(s) of %s (--on-error skip)\n", skipped, o.input);
    if (truncated)
        fprintf(stderr, "peft: prep truncated %llu document(s) longer than --seq-len %d (--no-pack)\n",
                (unsigned long long)truncated, o.seq_len);
out_abort:
    dataset_writer_abort(w);
    for (int s = 0; s < 2; s++) packer_free(&packs[s]);
    document_free(&doc);
out_in:
    fclose(in);
out_tk:
    tokenizer_free(tk);
    return rc;
}
