/* cmd_export.c - `peft export`: a trained run into a format other tools load (common/export/). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "error.h"
#include "export/export.h"
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

static int export_merged(run_handle *rh, const char *out) {
    PEFT_TRY(peft_model_merge(rh->p));
    PEFT_TRY(model_save(rh->m, out));
    static const char *tok_files[] = {"tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt",
                                      "special_tokens_map.json", "generation_config.json"};
    for (size_t i = 0; i < sizeof tok_files / sizeof tok_files[0]; i++) PEFT_TRY(copy_if_present(rh->model_dir, out, tok_files[i]));
    return PEFT_OK;
}

/* A GGUF adapter is one file: --out FILE.gguf, or DIR/adapter.gguf. */
static int export_gguf_file(run_handle *rh, const char *out, char *written, size_t cap) {
    size_t n = strlen(out);
    if (n > 5 && !strcmp(out + n - 5, ".gguf")) {
        snprintf(written, cap, "%s", out);
    } else {
        PEFT_TRY(file_mkdirs(out));
        PEFT_TRY(file_join(written, cap, out, "adapter.gguf"));
    }
    return export_gguf(rh->p, written);
}

/* Removes what a failed export left in its new directory. */
static void remove_partial(const char *out) {
    static const char *names[] = {"adapter_config.json", "adapter_model.safetensors", "adapter.safetensors", "adapter.gguf"};
    char path[4200];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!file_join(path, sizeof path, out, names[i])) unlink(path);
    rmdir(out);
}

int cmd_export(int argc, char **argv) {
    const char *run = NULL, *format = NULL, *out = NULL, *model_dir = NULL, *name = "default";
    int step = -1;
    arg_spec specs[] = {
        {"--run", ARG_STRING, &run, "RUN_DIR", "the trained run", ARG_REQUIRED, false},
        {"--step", ARG_INT, &step, "N", "the checkpoint's step (-1: the latest)", 0, false},
        {"--format", ARG_STRING, &format, "peft|adapterhub|merged|gguf", "what to write (see above)", ARG_REQUIRED, false},
        {"--out", ARG_STRING, &out, "DIR", "directory to write (must not exist); gguf: also FILE.gguf", ARG_REQUIRED, false},
        {"--model", ARG_STRING, &model_dir, "DIR", "base model (default: the one the run trained on)", 0, false},
        {"--adapter-name", ARG_STRING, &name, "NAME", "adapterhub: the adapter's name in keys and config", 0, false},
    };
    const arg_command cmd = {"export", "--run RUN_DIR [--step N] --format peft|adapterhub|merged|gguf --out DIR",
                             "Writes a trained run for other tools:\n"
                             "  peft        adapter_config.json + adapter_model.safetensors (lora, dora, ia3, prompt,\n"
                             "              prefix) for PeftModel.from_pretrained(base, DIR)\n"
                             "  adapterhub  adapter_config.json + adapter.safetensors (houlsby, pfeiffer, parallel,\n"
                             "              bapna) for model.load_adapter(DIR, use_safetensors=True); io adapters,\n"
                             "              which AdapterHub cannot express, are written in peft's own format\n"
                             "  merged      a plain Hugging Face model with full, lora, dora or ia3 folded in\n"
                             "  gguf        a llama.cpp LoRA adapter (llama/mistral models) for llama-cli --lora FILE"};
    int rc = args_parse(&cmd, specs, (int)(sizeof specs / sizeof specs[0]), argc, argv);
    if (rc) return rc;
    if (strcmp(format, "peft") && strcmp(format, "adapterhub") && strcmp(format, "merged") && strcmp(format, "gguf"))
        return err_set(PEFT_EUSAGE, "export: --format must be peft, adapterhub, merged or gguf, got '%s'", format);
    if (file_exists(out)) return err_set(PEFT_EUSAGE, "export: %s already exists; choose a new --out", out);
    run_handle rh;
    PEFT_TRY(run_open(run, step, model_dir, GEMM_OPENBLAS, &rh));
    const peft_method meth = peft_model_config(rh.p)->method;
    char written[4200];
    snprintf(written, sizeof written, "%s", out);
    bool own_io = false;
    if (!strcmp(format, "merged")) {
        rc = export_merged(&rh, out);
    } else if (!strcmp(format, "gguf")) {
        rc = export_gguf_file(&rh, out, written, sizeof written);
        if (rc && strcmp(written, out)) remove_partial(out);
    } else {
        own_io = meth == PEFT_IO && !strcmp(format, "adapterhub");
        /* check the method fits before creating anything */
        if (!strcmp(format, "peft") && meth != PEFT_LORA && meth != PEFT_DORA && meth != PEFT_IA3 && meth != PEFT_PROMPT &&
            meth != PEFT_PREFIX)
            rc = export_peft(rh.p, rh.model_dir, out);
        else if (!strcmp(format, "adapterhub") && !own_io && meth != PEFT_HOULSBY && meth != PEFT_PFEIFFER &&
                 meth != PEFT_PARALLEL && meth != PEFT_BAPNA)
            rc = export_adapterhub(rh.p, rh.model_dir, name, out);
        if (!rc && !(rc = file_mkdirs(out))) {
            rc = own_io ? export_io(rh.p, rh.model_dir, out)
                        : (!strcmp(format, "peft") ? export_peft(rh.p, rh.model_dir, out)
                                                   : export_adapterhub(rh.p, rh.model_dir, name, out));
            if (rc) remove_partial(out);
        }
    }
    if (rc == PEFT_OK) {
        if (own_io)
            fprintf(stderr, "peft: note: AdapterHub cannot express io adapters (bottlenecks on the embedding output and "
                            "before the final norm); wrote peft's own io-adapter format (docs/formats.md), which "
                            "peft eval/generate/train --adapter load and AdapterHub does not\n");
        printf("wrote %s: %s at step %lld of %s, format %s\n", written, peft_method_name(meth), (long long)rh.ckpt.step,
               run, own_io ? "peft-io-adapter" : format);
    }
    run_close(&rh);
    return rc;
}
