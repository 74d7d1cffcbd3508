/*
 * adapter_load.h - reading adapters that other tools wrote (or that `peft export` wrote) onto a
 * model: the importer behind `--adapter DIR` of eval, generate and train.
 *
 * Formats (detected from DIR/adapter_config.json):
 *   peft        "peft_type" LORA (with use_dora, use_rslora, bias, lora_bias), IA3, PROMPT_TUNING,
 *               PREFIX_TUNING; weights DIR/adapter_model.safetensors (FORMATS.md §2). The adapted
 *               modules are read off the weight keys (base_model.model.<module>.lora_A.weight /
 *               .ia3_l), so any target_modules / layers_to_transform / layers_pattern that produced
 *               the file is honoured; IA3's feed-forward modules are the ones whose ia3_l is [1, in].
 *               A projected prefix is stored as its MLP output and loads as a plain prefix.
 *   adapterhub  {"config": BnConfig, "name", ...}; weights DIR/adapter.safetensors (§3.6): the
 *               BnConfigs of houlsby (double_seq_bn), pfeiffer (seq_bn), parallel (par_bn) and
 *               bapna (ln_before, mh_adapter only), with any reduction factor and non-linearity.
 *   io          peft's own io-adapter format ({"format": "peft-io-adapter", "version": 1}).
 *
 *     adapter_file *af;  peft_model *p;
 *     PEFT_TRY(adapter_open(dir, m, &af));
 *     peft_config pc = *adapter_config(af);   pc.seed = 7;   // optional changes
 *     PEFT_TRY(adapter_apply(af, m, &pc, tk, &p));           // builds the method, loads the weights
 *     ...  peft_model_free(p);  adapter_close(af);           // close after the model's last use
 *
 * Every check names the file and the key: a missing file, an unknown or unsupported config value
 * (PEFT_EUNSUPPORTED: rank_pattern, modules_to_save, gating, ...), a weight key that fits no
 * module of the model or that the config does not imply, a missing key, a shape that differs from
 * what the model needs (PEFT_EMISMATCH), a dtype that is not F32/F16/BF16/F64. Nothing is attached
 * to the model unless adapter_apply succeeds.
 */
#ifndef PEFT_ADAPTER_LOAD_H
#define PEFT_ADAPTER_LOAD_H

#include "model/model.h"
#include "peft/peft.h"
#include "tokenizer/tokenizer.h"

typedef struct adapter_file adapter_file;

/* m NULL: read the directory without checking it against a model (peft inspect). */
int adapter_open(const char *dir, const model *m, adapter_file **out);
/* The method the file describes. Its strings live in the adapter_file: keep it open while this
 * config, or a peft_model built from it, is in use. */
const peft_config *adapter_config(const adapter_file *a);
/* "peft", "adapterhub" or "peft-io-adapter". */
const char *adapter_format(const adapter_file *a);
/* The opened weights file (valid until adapter_close). */
struct st_file;
const struct st_file *adapter_weights(const adapter_file *a);
/* Builds the method on m from cfg (adapter_config's, with at most seed or lora_dropout changed)
 * and loads the weights into it. On error *out is NULL and the model is untouched. */
int adapter_apply(adapter_file *a, model *m, const peft_config *cfg, const tokenizer *tk, peft_model **out);
void adapter_close(adapter_file *a);

#endif
