/*
 * args.h - the flag parser every subcommand uses.
 *
 * A subcommand describes its flags in a table; args_parse() fills the destinations, prints
 * `--help` from the same table (so help and parser never disagree), and reads `--config FILE.json`
 * whose keys are the flag names with underscores (`max_new_tokens` for `--max-new-tokens`); flags
 * on the command line win over the file.
 *
 *     int steps = 10; const char *model = NULL; bool json = false;
 *     arg_spec specs[] = {
 *         {"--model", ARG_STRING, &model, "DIR", "model directory", ARG_REQUIRED},
 *         {"--max-steps", ARG_INT, &steps, "N", "steps to run", 0},
 *         {"--json", ARG_BOOL, &json, NULL, "print JSON lines", 0},
 *     };
 *     int rc = args_parse(&cmd, specs, 3, argc, argv);   // PEFT_OK, ARGS_HELP_SHOWN or PEFT_EUSAGE
 *
 * Errors (PEFT_EUSAGE, message via err_msg()) name the subcommand and the flag: an unknown flag, a
 * missing or malformed value, a missing required flag, an unknown key in --config.
 * String destinations point into argv or into the --config JSON, which stays alive until
 * args_release().
 */
#ifndef PEFT_ARGS_H
#define PEFT_ARGS_H

#include <stdbool.h>

typedef enum { ARG_INT, ARG_FLOAT, ARG_DOUBLE, ARG_STRING, ARG_BOOL, ARG_U64 } arg_type;

#define ARG_REQUIRED 1

typedef struct arg_spec {
    const char *name;   /* "--max-new-tokens" */
    arg_type type;
    void *dst;          /* int*, float*, double*, const char**, bool*, uint64_t* */
    const char *meta;   /* value placeholder in help ("N"), NULL for ARG_BOOL */
    const char *help;   /* one line; the default is printed from *dst */
    int flags;          /* ARG_REQUIRED */
    bool seen;          /* set by args_parse */
} arg_spec;

typedef struct arg_command {
    const char *name;     /* "eval" */
    const char *synopsis; /* "--model DIR --input FILE.jsonl [--json]" */
    const char *summary;  /* one sentence */
} arg_command;

#define ARGS_HELP_SHOWN 1

int args_parse(const arg_command *cmd, arg_spec *specs, int nspecs, int argc, char **argv);
void args_print_help(const arg_command *cmd, const arg_spec *specs, int nspecs);
void args_release(void);

#endif
