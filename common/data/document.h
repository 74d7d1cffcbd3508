/*
 * document.h - one training document being built: token ids and the loss mask beside them, and
 * the input formats of `peft prep` that turn a JSON line into one.
 *
 * Formats (DESIGN.md "The command line"):
 *   {"text": "..."}                              every token is a target
 *   {"prompt": "...", "completion": "..."}       targets: the completion (and the EOS after it)
 *   {"messages": [{"role", "content"}, ...]}     targets: assistant contents and their end-of-turn
 *                                                tokens, rendered with a chat template
 *   {"input_ids": [...], "labels": [...]?}       given ids; labels -100 mark non-targets
 * Text is encoded with the tokenizer's special tokens (BOS) at the start of a document only.
 */
#ifndef PEFT_DOCUMENT_H
#define PEFT_DOCUMENT_H

#include <stdbool.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "tokenizer/tokenizer.h"

typedef enum { DOC_AUTO, DOC_TEXT, DOC_PROMPT_COMPLETION, DOC_CHAT, DOC_TOKENS } doc_format;
typedef enum { CHAT_CHATML, CHAT_LLAMA3 } chat_template;

typedef struct document {
    tok_ids ids;
    uint8_t *mask; /* [ids.cap] */
    size_t mask_cap;
} document;

void document_clear(document *d);
void document_free(document *d);

/* "auto|text|prompt-completion|chat|tokens"; PEFT_EUSAGE naming --format otherwise. */
int doc_format_parse(const char *s, doc_format *out);
const char *doc_format_name(doc_format f);
/* "chatml|llama3"; PEFT_EUSAGE naming --chat-template otherwise. */
int chat_template_parse(const char *s, chat_template *out);
/* The template a tokenizer's special tokens suggest: llama3 if it has <|start_header_id|>, else
 * chatml. */
chat_template chat_template_guess(const tokenizer *tk);

/* Builds *d (cleared first) from one parsed JSON line. `fmt` DOC_AUTO picks by the keys present;
 * tk may be NULL only for DOC_TOKENS. `where` ("FILE:LINE") prefixes every error, which is
 * PEFT_EFORMAT for a malformed line (wrong keys or types, invalid UTF-8, labels that are neither
 * the id nor -100, ids outside [0, vocab) when vocab > 0). *used receives the format applied. */
int document_from_json(document *d, const cJSON *line, doc_format fmt, const tokenizer *tk, chat_template tmpl,
                       int vocab, const char *where, doc_format *used);

#endif
