/* inspect_run.h - `peft inspect RUN_DIR` (cmd_inspect.c dispatches here for a directory holding
 * checkpoints.lmdb). Errors are those of ckpt_list/ckpt_load (checkpoint.h). */
#ifndef PEFT_INSPECT_RUN_H
#define PEFT_INSPECT_RUN_H

int inspect_run(const char *run_dir);

#endif
