/*
 * cli.h - what the subcommands of the `peft` binary share.
 *
 * Each subcommand is `int cmd_NAME(int argc, char **argv)` (argv starts after the subcommand's
 * name) returning a peft status; main() prints err_msg() as one line "peft: ..." and exits with
 * err_exit_code(). ARGS_HELP_SHOWN counts as success.
 */
#ifndef PEFT_CLI_H
#define PEFT_CLI_H

#include <stdbool.h>

#include "args.h"
#include "gemm.h"

int cmd_init_model(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_prep(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_launch(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_plot(int argc, char **argv);

/* The compute flags of every command that runs a model: --gemm, --threads, and how the frozen
 * base is stored (--quantize, --bf16). */
typedef struct compute_flags {
    const char *gemm;     /* NULL: the measured default */
    int threads;          /* 0: every core */
    const char *quantize; /* "nf4" | "none"; NULL: the command's default */
    bool bf16;
} compute_flags;

#define COMPUTE_FLAG_SPECS(cf)                                                                         \
    {"--gemm", ARG_STRING, &(cf).gemm, "openblas|onednn", "matrix-product backend", 0, false},        \
    {"--threads", ARG_INT, &(cf).threads, "N", "compute threads (0: all cores)", 0, false},          \
    {"--quantize", ARG_STRING, &(cf).quantize, "nf4|none",                                             \
     "frozen block weights as NF4 with double quantisation (bitsandbytes); default none (qlora: nf4)", 0, false}, \
    {"--bf16", ARG_BOOL, &(cf).bf16, NULL,                                                             \
     "frozen block weights in bf16 (NF4 with --quantize nf4), products in bf16 with fp32 accumulation", 0, false}

/* Parses --gemm and sets the thread pools; PEFT_EUSAGE naming the flag on a bad value. */
int compute_setup(const compute_flags *cf, gemm_backend *be);

/* The base's storage from --quantize (dflt when absent) and --bf16; PEFT_EUSAGE naming --quantize
 * on a bad value. compute_storage_given: whether either flag was given. */
struct model_opts;
int compute_model_opts(const compute_flags *cf, int dflt_nf4, struct model_opts *o);
bool compute_storage_given(const compute_flags *cf);

/* The tokenizer stored with a model (DIR/tokenizer.json or DIR/vocab.json + merges.txt); *out is
 * NULL when the directory has none. */
struct tokenizer;
int model_tokenizer_load(const char *model_dir, struct tokenizer **out);

/* Checks that a dataset was prepared with the model's tokenizer (fingerprints, when both exist)
 * and fits its vocabulary: PEFT_EMISMATCH naming both directories otherwise. */
struct dataset;
int check_dataset_fits_model(const struct dataset *d, const char *data_dir, const struct tokenizer *tk,
                             int model_vocab, const char *model_dir);

/* Parses a JSON array of integers (`{"input_ids":[...]}` lines) into a malloc'd array.
 * `where` names the file and line in messages. */
int parse_input_ids(const char *json_line, const char *where, int **ids, int *n);

#endif
