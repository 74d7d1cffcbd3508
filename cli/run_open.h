/*
 * run_open.h - a trained run as a usable model: the base model named in the checkpoint's run
 * configuration (or an override), the PEFT method rebuilt from that configuration, and the
 * checkpoint's parameters loaded into it. Used by eval --run and generate --run.
 */
#ifndef PEFT_RUN_OPEN_H
#define PEFT_RUN_OPEN_H

#include <stdint.h>

#include <cjson/cJSON.h>

#include "gemm.h"
#include "model/model.h"
#include "peft/peft.h"
#include "store/checkpoint.h"
#include "tokenizer/tokenizer.h"

typedef struct run_handle {
    ckpt_loaded ckpt;
    cJSON *config;          /* parsed run configuration (peft_config strings point into it) */
    char model_dir[4096];
    model *m;
    tokenizer *tk;          /* NULL if the model directory has none */
    peft_model *p;
} run_handle;

/* step -1: the latest checkpoint. model_override NULL: the model directory the run trained on.
 * PEFT_EMISMATCH when the rebuilt method's tensors differ from the checkpoint's (names, shapes). */
int run_open(const char *run_dir, int64_t step, const char *model_override, gemm_backend be, run_handle *out);
/* The same with the base stored as opts says; opts NULL: as the run trained (its configuration's
 * "base_quantize" and "base_bf16"). run_open() loads an fp32 base. */
int run_open_with(const char *run_dir, int64_t step, const char *model_override, gemm_backend be,
                  const model_opts *opts, run_handle *out);
void run_close(run_handle *r);

#endif
