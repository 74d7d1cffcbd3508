/* cmd_export.c - `peft export`: a trained run into a format other tools load. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "error.h"
#include "io/file.h"
#include "peft/merge.h"
#include "run_open.h"

/* Copies the tokenizer files of the base model directory. */
static int copy_if_present(const char *from_dir, const char *to_dir, const char *name) {
    char from[4200], to[4200];
    PEFT_TRY(file_join(from, sizeof from, from_dir, name));
    PEFT_TRY(file_join(to, sizeof to, to_dir, name));
    return file_exists(from) ? file_copy(from, to) : PEFT_OK;
}

int cmd_export(int argc, char **argv) {
    const char *run = NULL, *format = NULL, *out = NULL, *model_dir = NULL;
    int step = -1;
    arg_spec specs[] = {
        {"--run", ARG_STRING, &run, "RUN_DIR", "the trained run", ARG_REQUIRED, false},
        {"--step", ARG_INT, &step, "N", "the checkpoint's step (-1: the latest)", 0, false},
        {"--format", ARG_STRING, &format, "merged", "merged: a Hugging Face model directory with the method folded in", ARG_REQUIRED, false},
        {"--out", ARG_STRING, &out, "DIR", "directory to write (must not exist)", ARG_REQUIRED, false},
        {"--model", ARG_STRING, &model_dir, "DIR", "base model (default: the one the run trained on)", 0, false},
    };
    const arg_command cmd = {"export", "--run RUN_DIR [--step N] --format merged --out DIR",
                             "Writes a trained run for other tools. merged: config.json, model.safetensors and the\n"
                             "tokenizer files of a plain Hugging Face model with full, lora, dora or ia3 folded into\n"
                             "the weights (peft's merge_and_unload)."};
    int rc = args_parse(&cmd, specs, (int)(sizeof specs / sizeof specs[0]), argc, argv);
    if (rc) return rc;
    if (strcmp(format, "merged") != 0) return err_set(PEFT_EUSAGE, "export: --format must be merged, got '%s'", format);
    if (file_exists(out)) return err_set(PEFT_EUSAGE, "export: %s already exists; choose a new --out", out);
    run_handle rh;
    PEFT_TRY(run_open(run, step, model_dir, GEMM_OPENBLAS, &rh));
    if ((rc = peft_model_merge(rh.p)) == PEFT_OK) rc = model_save(rh.m, out);
    static const char *tok_files[] = {"tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt",
                                      "special_tokens_map.json", "generation_config.json"};
    for (size_t i = 0; rc == PEFT_OK && i < sizeof tok_files / sizeof tok_files[0]; i++)
        rc = copy_if_present(rh.model_dir, out, tok_files[i]);
    if (rc == PEFT_OK)
        printf("wrote %s: %s merged into %s at step %lld\n", out, peft_method_name(peft_model_config(rh.p)->method),
               rh.model_dir, (long long)rh.ckpt.step);
    run_close(&rh);
    return rc;
}
