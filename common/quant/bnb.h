/*
 * bnb.h - reading weights that bitsandbytes already quantised (the bnb-4bit safetensors layout of
 * FORMATS.md §4.4, as transformers saves a Linear4bit):
 *
 *   NAME                                    U8  [(n+1)/2, 1]  packed NF4 codes, element 2i high
 *   NAME.absmax                             U8  [nblocks] (double quantisation) or F32 [nblocks]
 *   NAME.quant_map                          F32 [16]          the NF4 table
 *   NAME.nested_absmax                      F32 [nnested]     (double quantisation only)
 *   NAME.nested_quant_map                   F32 [256]         (double quantisation only)
 *   NAME.quant_state.bitsandbytes__nf4      U8  JSON {quant_type, blocksize, dtype, shape,
 *                                                     nested_blocksize, nested_dtype, nested_offset}
 *
 * The data is copied as stored, never re-quantised. Every count, dtype and shape is checked
 * against the JSON and the layer; a failure is PEFT_EFORMAT naming the file and tensor. fp4 (or
 * any quant_type but nf4), a quant_map other than the NF4 table, and storage dtypes other than
 * uint8 are PEFT_EUNSUPPORTED with a message that says so.
 */
#ifndef PEFT_BNB_H
#define PEFT_BNB_H

#include <stdbool.h>

#include "io/safetensors.h"
#include "quant/qweight.h"

/* Whether NAME has a bitsandbytes quant state (any quant type). */
bool bnb_has_state(const st_model *st, const char *name);

/* Loads NAME, which must be [rows, cols] = [out, in], into *q (QWEIGHT_NF4). */
int bnb_load_weight(const st_model *st, const char *name, int rows, int cols, bool bf16_compute, qweight *q);

#endif
