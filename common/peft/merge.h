/*
 * merge.h - folding a trained method into the base weights (peft's merge_and_unload, FORMATS.md
 * §2.4): LoRA W += s·B·A (transposed for GPT-2's Conv1D, b += s·b_B with lora_B bias), DoRA
 * W = (m / ||W + s·B·A||_row)(W + s·B·A), IA3 W rows (and the bias) times l for output scaling,
 * W columns times l for input scaling. Full fine-tuning is already the weights. Methods that add
 * computation beyond the linear layers (prompt, prefix, the bottleneck adapters) cannot be merged:
 * PEFT_EUNSUPPORTED naming the method.
 *
 * After peft_model_merge the model holds the merged weights and the method is detached
 * (peft_model_free still has to be called).
 */
#ifndef PEFT_MERGE_H
#define PEFT_MERGE_H

#include "peft/peft.h"

int peft_model_merge(peft_model *p);

#endif
