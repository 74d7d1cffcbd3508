/*
 * export.h - a trained peft_model written in the formats other tools load (FORMATS.md is the
 * specification; docs/formats.md shows the layouts):
 *
 *   export_peft        Hugging Face peft (§2): OUT/adapter_config.json + OUT/adapter_model.safetensors
 *                      for lora (rsLoRA, layers_to_transform, bias, lora_bias), dora, ia3, prompt and
 *                      prefix (a projected prefix is saved as the MLP's output, as peft does).
 *                      PeftModel.from_pretrained(base, OUT) loads it.
 *   export_adapterhub  AdapterHub `adapters` 1.1.0 (§3.6): OUT/adapter_config.json (nested BnConfig,
 *                      version) + OUT/adapter.safetensors with full key names, for houlsby
 *                      (double_seq_bn), pfeiffer (seq_bn), parallel (par_bn) and bapna (a BnConfig
 *                      with ln_before). model.load_adapter(OUT, use_safetensors=True) loads it.
 *   export_io          io adapters, which AdapterHub cannot express: peft's own format (same two
 *                      files, adapter_config.json {"format": "peft-io-adapter", "version": 1, ...}).
 *   export_gguf        a llama.cpp LoRA adapter (GGUF v3, §6) for llama/mistral models: Q/K rows of
 *                      lora_B permuted as convert_hf_to_gguf permutes the base weights, alpha
 *                      adjusted for rsLoRA. llama-cli --lora FILE loads it.
 *
 * `base_model` is the base model's name or path (base_model_name_or_path / model_name). Each
 * function writes its files atomically (tmp + rename) into an existing directory (export_gguf: to
 * `path`). Errors: PEFT_EUNSUPPORTED naming the method (and the format to use instead) when the
 * format cannot express it; PEFT_EIO naming the file; PEFT_ENOMEM.
 */
#ifndef PEFT_EXPORT_H
#define PEFT_EXPORT_H

#include "peft/peft.h"

#define EXPORT_PEFT_VERSION "0.20.0"          /* the peft release whose on-disk format we write */
#define EXPORT_ADAPTERS_VERSION "adapters.1.1.0"
#define EXPORT_IO_FORMAT "peft-io-adapter"

int export_peft(peft_model *p, const char *base_model, const char *out_dir);
int export_adapterhub(peft_model *p, const char *base_model, const char *adapter_name, const char *out_dir);
int export_io(peft_model *p, const char *base_model, const char *out_dir);
int export_gguf(peft_model *p, const char *path);

/* Writes `obj` as Python's json.dumps(obj, indent=2, sort_keys=True) does (no final newline). */
struct cJSON;
int export_write_json(const struct cJSON *obj, const char *dir, const char *name);

#endif
