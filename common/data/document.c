#include "data/document.h"

#include <stdlib.h>
#include <string.h>

#include "error.h"

void document_clear(document *d) { d->ids.n = 0; }

void document_free(document *d) {
    free(d->ids.v);
    free(d->mask);
    memset(d, 0, sizeof *d);
}

int doc_format_parse(const char *s, doc_format *out) {
    static const char *names[] = {"auto", "text", "prompt-completion", "chat", "tokens"};
    for (int i = 0; i < 5; i++)
        if (!strcmp(s, names[i])) {
            *out = (doc_format)i;
            return PEFT_OK;
        }
    return err_set(PEFT_EUSAGE, "--format: expected auto, text, prompt-completion, chat or tokens, got '%s'", s);
}

const char *doc_format_name(doc_format f) {
    static const char *names[] = {"auto", "text", "prompt-completion", "chat", "tokens"};
    return names[f];
}

int chat_template_parse(const char *s, chat_template *out) {
    if (!strcmp(s, "chatml")) *out = CHAT_CHATML;
    else if (!strcmp(s, "llama3")) *out = CHAT_LLAMA3;
    else return err_set(PEFT_EUSAGE, "--chat-template: expected chatml or llama3, got '%s'", s);
    return PEFT_OK;
}

chat_template chat_template_guess(const tokenizer *tk) {
    return tk && tokenizer_token_to_id(tk, "<|start_header_id|>") >= 0 ? CHAT_LLAMA3 : CHAT_CHATML;
}

/* Keeps the mask as long as the ids. */
static int sync_mask(document *d, size_t from, uint8_t m) {
    if (d->mask_cap < d->ids.cap) {
        uint8_t *nm = realloc(d->mask, d->ids.cap);
        if (!nm) return err_set(PEFT_ENOMEM, "out of memory");
        d->mask = nm;
        d->mask_cap = d->ids.cap;
    }
    memset(d->mask + from, m, d->ids.n - from);
    return PEFT_OK;
}

static int append_text(document *d, const tokenizer *tk, const char *text, bool add_special, uint8_t m,
                       const char *where) {
    size_t from = d->ids.n;
    int rc = tokenizer_encode(tk, text, strlen(text), add_special, &d->ids);
    if (rc) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", err_msg());
        return err_set(rc, "%s: %s", where, msg);
    }
    return sync_mask(d, from, m);
}

static int append_id(document *d, int id, uint8_t m) {
    if (d->ids.n == d->ids.cap) {
        size_t cap = d->ids.cap ? 2 * d->ids.cap : 64;
        int32_t *nv = realloc(d->ids.v, cap * sizeof *nv);
        if (!nv) return err_set(PEFT_ENOMEM, "out of memory");
        d->ids.v = nv;
        d->ids.cap = cap;
    }
    d->ids.v[d->ids.n++] = id;
    return sync_mask(d, d->ids.n - 1, m);
}

static const char *string_field(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int from_chat(document *d, const cJSON *messages, const tokenizer *tk, chat_template tmpl, const char *where) {
    if (!cJSON_IsArray(messages) || cJSON_GetArraySize(messages) == 0)
        return err_set(PEFT_EFORMAT, "%s: \"messages\" must be a non-empty array", where);
    const char *need[2][2] = {{"<|im_start|>", "<|im_end|>"}, {"<|start_header_id|>", "<|eot_id|>"}};
    for (int i = 0; i < 2; i++)
        if (tokenizer_token_to_id(tk, need[tmpl][i]) < 0)
            return err_set(PEFT_EUSAGE, "%s: the %s chat template needs the token %s, which the tokenizer lacks "
                           "(see --chat-template)", where, tmpl == CHAT_CHATML ? "chatml" : "llama3", need[tmpl][i]);
    char buf[256];
    int i = 0;
    if (tmpl == CHAT_LLAMA3) PEFT_TRY(append_text(d, tk, "", true, 0, where)); /* <|begin_of_text|> */
    for (const cJSON *m = messages->child; m; m = m->next, i++) {
        const char *role = string_field(m, "role"), *content = string_field(m, "content");
        if (!role || !content)
            return err_set(PEFT_EFORMAT, "%s: messages[%d] needs string \"role\" and \"content\"", where, i);
        if (strlen(role) > 64) return err_set(PEFT_EFORMAT, "%s: messages[%d].role is too long", where, i);
        uint8_t train = !strcmp(role, "assistant");
        if (tmpl == CHAT_CHATML) {
            snprintf(buf, sizeof buf, "<|im_start|>%s\n", role);
            PEFT_TRY(append_text(d, tk, buf, false, 0, where));
            PEFT_TRY(append_text(d, tk, content, false, train, where));
            PEFT_TRY(append_text(d, tk, "<|im_end|>", false, train, where));
            PEFT_TRY(append_text(d, tk, "\n", false, 0, where));
        } else {
            snprintf(buf, sizeof buf, "<|start_header_id|>%s<|end_header_id|>\n\n", role);
            PEFT_TRY(append_text(d, tk, buf, false, 0, where));
            PEFT_TRY(append_text(d, tk, content, false, train, where));
            PEFT_TRY(append_text(d, tk, "<|eot_id|>", false, train, where));
        }
    }
    return PEFT_OK;
}

static int from_tokens(document *d, const cJSON *ids, const cJSON *labels, int vocab, const char *where) {
    if (!cJSON_IsArray(ids)) return err_set(PEFT_EFORMAT, "%s: \"input_ids\" must be an array of token ids", where);
    int n = cJSON_GetArraySize(ids);
    if (labels && (!cJSON_IsArray(labels) || cJSON_GetArraySize(labels) != n))
        return err_set(PEFT_EFORMAT, "%s: \"labels\" must be an array as long as \"input_ids\"", where);
    const cJSON *lab = labels ? labels->child : NULL;
    int i = 0;
    for (const cJSON *e = ids->child; e; e = e->next, i++) {
        double v = e->valuedouble;
        if (!cJSON_IsNumber(e) || v != (double)(int)v || v < 0 || (vocab > 0 && v >= vocab))
            return err_set(PEFT_EFORMAT, "%s: input_ids[%d] is not a token id in [0, %d)", where, i, vocab);
        uint8_t m = 1;
        if (lab) {
            double l = lab->valuedouble;
            if (!cJSON_IsNumber(lab) || (l != -100 && l != v))
                return err_set(PEFT_EFORMAT, "%s: labels[%d] must be -100 or input_ids[%d]", where, i, i);
            m = l != -100;
            lab = lab->next;
        }
        PEFT_TRY(append_id(d, (int)v, m));
    }
    return PEFT_OK;
}

int document_from_json(document *d, const cJSON *line, doc_format fmt, const tokenizer *tk, chat_template tmpl,
                       int vocab, const char *where, doc_format *used) {
    document_clear(d);
    if (!cJSON_IsObject(line)) return err_set(PEFT_EFORMAT, "%s: expected a JSON object", where);
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(line, "input_ids");
    const cJSON *messages = cJSON_GetObjectItemCaseSensitive(line, "messages");
    const char *text = string_field(line, "text"), *prompt = string_field(line, "prompt");
    const char *completion = string_field(line, "completion");
    if (fmt == DOC_AUTO) {
        if (ids) fmt = DOC_TOKENS;
        else if (messages) fmt = DOC_CHAT;
        else if (prompt || completion) fmt = DOC_PROMPT_COMPLETION;
        else if (text) fmt = DOC_TEXT;
        else return err_set(PEFT_EFORMAT, "%s: expected \"text\", \"prompt\"/\"completion\", \"messages\" or "
                            "\"input_ids\"", where);
    }
    *used = fmt;
    if (fmt != DOC_TOKENS && !tk)
        return err_set(PEFT_EUSAGE, "%s: %s input needs a tokenizer (none given, or none beside the model)", where,
                       doc_format_name(fmt));
    switch (fmt) {
    case DOC_TEXT:
        if (!text) return err_set(PEFT_EFORMAT, "%s: expected a string \"text\"", where);
        return append_text(d, tk, text, true, 1, where);
    case DOC_PROMPT_COMPLETION:
        if (!prompt || !completion)
            return err_set(PEFT_EFORMAT, "%s: expected strings \"prompt\" and \"completion\"", where);
        PEFT_TRY(append_text(d, tk, prompt, true, 0, where));
        return append_text(d, tk, completion, false, 1, where);
    case DOC_CHAT:
        return from_chat(d, messages, tk, tmpl, where);
    case DOC_TOKENS:
        return from_tokens(d, ids, cJSON_GetObjectItemCaseSensitive(line, "labels"), vocab, where);
    default:
        return err_set(PEFT_EINTERNAL, "%s: bad format", where);
    }
}
